//! The command line itself: version, help, exit codes of usage errors.

use crate::harness::cpkeep;

#[tokio::test]
async fn version_in_table_and_json() {
    let run = cpkeep(&["version".into()]).await;
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .starts_with(&format!("cpkeep {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        run.stdout
    );
    let run = cpkeep(&["version".into(), "-o".into(), "json".into()]).await;
    let j: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn help_exits_0_and_names_the_commands() {
    let run = cpkeep(&["--help".into()]).await;
    assert_eq!(run.code, 0);
    for c in ["cluster", "version", "demo"] {
        assert!(run.stdout.contains(c), "{}", run.stdout);
    }
    let run = cpkeep(&["cluster".into(), "health".into(), "--help".into()]).await;
    assert_eq!(run.code, 0);
    for flag in [
        "--endpoints",
        "--cacert",
        "--cert",
        "--key",
        "--timeout",
        "--user",
        "--password",
        "--quota-bytes",
        "CPKEEP_ENDPOINTS",
    ] {
        assert!(run.stdout.contains(flag), "help lacks {flag}");
    }
}

#[tokio::test]
async fn unknown_command_exits_3() {
    let run = cpkeep(&["frobnicate".into()]).await;
    assert_eq!(run.code, 3);
    // Usage errors are one line too, naming what is wrong, without clap's usage block.
    let line = run.assert_one_clear_line();
    assert!(line.contains("frobnicate"), "{line}");
    let run = cpkeep(&[
        "cluster".into(),
        "health".into(),
        "--timeout".into(),
        "abc".into(),
    ])
    .await;
    assert_eq!(run.code, 3);
    let line = run.assert_one_clear_line();
    assert!(line.contains("--timeout") && line.contains("abc"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_start_to_finish() {
    let etcd = crate::harness::Etcd::V35.etcd();
    let run = cpkeep(&[
        "demo".into(),
        "--etcd-bin".into(),
        etcd.display().to_string(),
    ])
    .await;
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let ok = run.stdout.find("VERDICT: OK").expect("healthy step");
    let warn = run.stdout.find("VERDICT: WARNING").expect("degraded step");
    assert!(ok < warn, "{}", run.stdout);
    assert!(
        run.stdout.contains("fault tolerance 0 now / 1 by design"),
        "{}",
        run.stdout
    );
    // The restore step: all three members rebuilt from the store, booted, data back, the write
    // made after the backup gone, and the cluster healthy again.
    let restored = run
        .stdout
        .find("300/300 sample keys back, key written after the backup gone")
        .expect("restore step");
    assert!(warn < restored, "{}", run.stdout);
    let healthy_again = run.stdout[restored..]
        .find("VERDICT: OK")
        .expect("healthy after the restore");
    assert!(
        run.stdout[restored + healthy_again..].contains("3 voters (3 healthy"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches("old data moved to").count(), 3);
    // The certificates step, after the restore: a kubeadm node PKI whose etcd leaves expire in 5
    // days is CRITICAL naming exactly those three, `certs renew --within 30d` renews exactly them
    // (old files backed up), and the check is OK again.
    let etcd_leaves = ["etcd-healthcheck-client", "etcd-peer", "etcd-server"];
    let certs = restored + healthy_again;
    let critical = certs
        + run.stdout[certs..]
            .find("VERDICT: CRITICAL (etcd-healthcheck-client, etcd-peer, etcd-server)\n")
            .expect("certs check before the renewal: CRITICAL naming the three etcd leaves");
    let renewed = critical
        + run.stdout[critical..]
            .find("`cpkeep certs renew --within 30d`")
            .expect("certs renew step");
    let ok_again = renewed
        + run.stdout[renewed..]
            .find("`cpkeep certs check` again")
            .expect("certs check after the renewal");
    let row = |section: &str, name: &str| -> Vec<String> {
        section
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in:\n{section}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let before = &run.stdout[certs..critical];
    let renew = &run.stdout[renewed..ok_again];
    let after = &run.stdout[ok_again..];
    for name in etcd_leaves {
        let r = row(before, name);
        assert_eq!(r[r.len() - 3..], ["5d", "etcd-ca", "CRITICAL"], "{before}");
        let r = row(renew, name);
        assert_eq!(r[1], "etcd-ca", "{renew}");
        assert_eq!(r.last().map(String::as_str), Some("yes"), "{renew}");
        let r = row(after, name);
        assert_eq!(r[r.len() - 2..], ["etcd-ca", "OK"], "{after}");
    }
    // apiserver-etcd-client, signed by etcd's CA too, was never near expiry: OK and not renewed.
    assert_eq!(row(before, "apiserver-etcd-client").last().unwrap(), "OK");
    assert!(!renew.contains("apiserver-etcd-client"), "{renew}");
    assert_eq!(
        renew.lines().filter(|l| l.contains(" etcd-ca ")).count(),
        3,
        "{renew}"
    );
    assert!(
        renew.contains("6 old files backed up in ")
            && renew.contains("/node/etc/kubernetes/pki-backup/"),
        "{renew}"
    );
    assert!(after.contains("\nVERDICT: OK\n"), "{after}");
    // The bootstrap step, last: the example inventory planned, every haproxy.cfg valid for the
    // real haproxy, and a second plan run changing nothing.
    let boot = after
        .find("`cpkeep bootstrap plan` on `cpkeep bootstrap example`")
        .expect("bootstrap step");
    let (after, boot) = after.split_at(boot);
    assert!(!after.contains("CRITICAL"), "{after}");
    for host in ["cp1", "cp2", "cp3"] {
        assert!(
            boot.contains(&format!("haproxy -c -f nodes/{host}/haproxy.cfg: valid")),
            "{boot}"
        );
    }
    assert!(
        boot.contains("tolerates 1 control-plane failure(s); CA hash sha256:"),
        "{boot}"
    );
    assert!(boot.contains("plan run again: nothing changed"), "{boot}");
    // The sandbox is gone afterwards: no etcd of ours left listening on the demo's endpoints.
    let first = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("endpoints: "))
        .and_then(|l| l.split(", ").next())
        .expect("endpoints line")
        .trim_start_matches("https://")
        .to_string();
    assert!(
        std::net::TcpStream::connect(&first).is_err(),
        "{first} still answers"
    );
}
