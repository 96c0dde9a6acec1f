//! The configuration file: sections and keys checked against the real command tree, values through
//! the flags' own parsers, schedules translated for tokio-cron-scheduler.

use std::path::Path;

use clap::CommandFactory;

use super::*;
use crate::cli::Cli;

fn parse(text: &str) -> Result<ConfigFile, String> {
    ConfigFile::parse(Path::new("cpkeep.yaml"), text, &Cli::command()).map_err(|e| e.to_string())
}

#[test]
fn the_issues_example_is_valid() {
    let f = parse(
        "connection: {endpoints: \"https://127.0.0.1:2379\", cacert: /etc/kubernetes/pki/etcd/ca.crt, timeout: 5s}
backup: {store: \"s3://etcd-backups/prod\", schedule: \"17 */6 * * *\", keep-last: 4, keep-daily: 7}
certs: {schedule: \"0 * * * *\", cert-dir: /etc/kubernetes/pki, prometheus: /var/lib/node-exporter/cpkeep-certs.prom}
health: {schedule: \"* * * * *\"}
drill: {schedule: \"0 3 * * 0\", enabled: false}
daemon: {listen: \"127.0.0.1:9477\", jitter: 30s}
",
    )
    .unwrap();
    assert_eq!(f.sections.len(), 6);
    assert_eq!(f.sections["backup"]["keep-last"].value, Value::Int(4));
    assert_eq!(f.sections["backup"]["keep-last"].line, 2);
}

#[test]
fn unknown_sections_keys_and_bad_values_name_the_key_and_line() {
    for (text, needles) in [
        (
            "backup:\n  store: file:///x\n  keep-lsat: 4\n",
            vec![
                "line 3",
                "backup.keep-lsat",
                "has no flag --keep-lsat",
                "keep-last",
            ],
        ),
        (
            "bakup: {store: x}\n",
            vec!["line 1: bakup", "no such section", "backup"],
        ),
        (
            "connection:\n  timeout: soon\n",
            vec!["line 2", "connection.timeout", "soon"],
        ),
        (
            "health:\n  schedule: \"* * *\"\n",
            vec!["line 2", "health.schedule", "has 3 fields"],
        ),
        (
            "health:\n  schedule: \"61 * * * *\"\n",
            vec!["minute \"61\"", "outside 0-59"],
        ),
        (
            "drill:\n  enabled: maybe\n",
            vec!["drill.enabled", "true or false"],
        ),
        (
            "daemon:\n  port: 1\n",
            vec!["daemon.port", "not a daemon setting"],
        ),
        ("backup: [1, 2]\n", vec!["cpkeep.yaml", "mapping"]),
        (
            "health:\n  consistency-schedule: \"0 25 * * *\"\n",
            vec!["line 2", "health.consistency-schedule", "hour \"25\""],
        ),
        (
            "backup:\n  consistency-schedule: \"0 * * * *\"\n",
            vec!["line 2", "backup.consistency-schedule", "no flag"],
        ),
    ] {
        let e = parse(text).unwrap_err();
        for n in needles {
            assert!(e.contains(n), "{text:?}: {e:?} lacks {n:?}");
        }
        assert!(!e.contains('\n'), "{e:?}");
    }
}

#[test]
fn the_health_section_takes_a_consistency_schedule_or_off() {
    for v in ["\"0 * * * *\"", "\"*/10 * * * * *\"", "\"off\""] {
        let f = parse(&format!("health:\n  consistency-schedule: {v}\n"));
        assert!(f.is_ok(), "{v}: {f:?}");
    }
}

#[test]
fn five_field_cron_gets_seconds_and_six_fields_pass() {
    assert_eq!(cron_fields("17 */6 * * *").unwrap(), "0 17 */6 * * *");
    assert_eq!(cron_fields("*/5 * * * * *").unwrap(), "*/5 * * * * *");
    assert_eq!(cron_fields("0 3 * * sun").unwrap(), "0 0 3 * * sun");
    assert_eq!(cron_fields("@hourly").unwrap(), "@hourly");
    assert!(cron_fields("@sometimes").is_err());
    assert!(cron_fields("0 0 */0 * *").unwrap_err().contains("step"));
    assert!(cron_fields("0 5-1 * * *")
        .unwrap_err()
        .contains("backwards"));
}
