//! `--config FILE`: a real command reads its flags from the file, flags and env win over it, bad
//! files are refused with the key and line, `config show` says where each value came from and
//! redacts secrets.

use crate::harness::{cpkeep, cpkeep_env, sandbox, Etcd};

fn s(a: &[&str]) -> Vec<String> {
    a.iter().map(|x| x.to_string()).collect()
}

fn write(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("cpkeep.yaml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_takes_its_flags_from_the_file_and_flags_win() {
    let sb = sandbox(Etcd::V35, 3).await;
    let tmp = tempfile::tempdir().unwrap();
    let files = sb.tls_files();
    let cfg = write(
        tmp.path(),
        &format!(
            "connection:\n  endpoints: [{}]\n  cacert: {}\n  cert: {}\n  key: {}\n  timeout: 3s\nhealth:\n  quota-bytes: 1KiB\n",
            sb.endpoints().join(", "),
            files.ca.unwrap().display(),
            files.cert.unwrap().display(),
            files.key.unwrap().display()
        ),
    );
    // Only the file says where etcd is and how to authenticate; its health section sets a tiny
    // quota, so every member's db is "near" it: WARNING.
    let run = cpkeep(&s(&["--config", &cfg, "-o", "json", "cluster", "health"])).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["verdict"], "WARNING");
    assert!(j["reasons"].to_string().contains("quota"), "{j}");
    assert_eq!(j["healthy_voters"], 3, "{j}");
    // The flag beats the file.
    let run = cpkeep(&s(&[
        "--config",
        &cfg,
        "cluster",
        "health",
        "--quota-bytes",
        "8GiB",
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A flag beats the file: a dead endpoint on the command line makes it UNKNOWN.
    let run = cpkeep(&s(&[
        "--config",
        &cfg,
        "cluster",
        "health",
        "--endpoints",
        "https://127.0.0.1:1",
        "--timeout",
        "500ms",
    ]))
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);

    // CPKEEP_CONFIG names the file too.
    let run = cpkeep_env(
        &s(&["cluster", "health"]),
        &[("CPKEEP_CONFIG", cfg.clone())],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[tokio::test]
async fn show_names_each_source_and_redacts_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "connection: {timeout: 7s, user: \"root:hunter2\"}\nbackup: {store: \"s3://AKIA:topsecret@bucket/prod\", keep-last: 4}\nhealth: {max-applied-lag: 100}\n",
    );
    let run = cpkeep_env(
        &s(&[
            "--config",
            &cfg,
            "-o",
            "json",
            "config",
            "show",
            "cluster",
            "health",
            "--quota-bytes",
            "4GiB",
        ]),
        &[("CPKEEP_ENDPOINTS", "https://10.0.0.1:2379".to_string())],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    let get = |flag: &str| {
        j["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["flag"] == flag)
            .cloned()
            .unwrap_or_else(|| panic!("no {flag} in {j}"))
    };
    assert_eq!(get("timeout")["source"], "file");
    assert_eq!(get("timeout")["line"], 1);
    assert_eq!(get("timeout")["value"], "7s");
    assert_eq!(get("max-applied-lag")["source"], "file");
    assert_eq!(get("quota-bytes")["source"], "flag");
    assert_eq!(get("endpoints")["source"], "env");
    assert_eq!(get("no-discover")["source"], "default");
    assert_eq!(get("user")["value"], "root:<redacted>");
    assert!(!run.stdout.contains("hunter2"));

    let run = cpkeep(&s(&["--config", &cfg, "config", "show", "backup"])).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("s3://<redacted>@bucket/prod"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("topsecret"));

    // The env beats the file.
    let run = cpkeep_env(
        &s(&[
            "--config", &cfg, "-o", "json", "config", "show", "cluster", "health",
        ]),
        &[("CPKEEP_TIMEOUT", "9s".to_string())],
    )
    .await;
    let j = run.json();
    let t = j["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["flag"] == "timeout")
        .unwrap()
        .clone();
    assert_eq!(
        (t["value"].as_str(), t["source"].as_str()),
        (Some("9s"), Some("env")),
        "{j}"
    );
}

#[tokio::test]
async fn bad_files_are_refused_with_the_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, needles) in [
        (
            "backup:\n  store: file:///x\n  keep-lsat: 4\n",
            vec![
                "cpkeep.yaml: line 3: backup.keep-lsat",
                "no flag --keep-lsat",
            ],
        ),
        (
            "health:\n  schedule: \"*/5 * *\"\n",
            vec!["line 2: health.schedule", "3 fields"],
        ),
        (
            "connection:\n  timeout: 0s\n",
            vec!["line 2: connection.timeout", "more than zero"],
        ),
        ("backupp: {}\n", vec!["backupp", "no such section"]),
    ] {
        let cfg = write(tmp.path(), text);
        // Any command refuses the file before it does anything; `config validate` says the same.
        for args in [
            vec!["--config", &cfg, "version"],
            vec!["--config", &cfg, "config", "validate"],
        ] {
            let run = cpkeep(&s(&args)).await;
            assert_eq!(run.code, 3, "{text:?} {args:?}: {}", run.stderr);
            let line = run.assert_one_clear_line();
            for n in &needles {
                assert!(line.contains(n), "{text:?}: {line:?} lacks {n:?}");
            }
        }
    }
    let run = cpkeep(&s(&["--config", "/nonexistent/cpkeep.yaml", "version"])).await;
    assert_eq!(run.code, 3);
    assert!(run
        .assert_one_clear_line()
        .contains("/nonexistent/cpkeep.yaml"));
    let run = cpkeep(&s(&["config", "validate"])).await;
    assert_eq!(run.code, 3);
    assert!(run
        .assert_one_clear_line()
        .contains("no configuration file"));
    let good = write(tmp.path(), "health: {schedule: \"*/15 * * * *\"}\n");
    let run = cpkeep(&s(&["--config", &good, "config", "validate"])).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("0 */15 * * * *"), "{}", run.stdout);
}

/// The annotated configuration deploy/ ships (the ConfigMap's config.yaml) is valid for this
/// binary: a renamed flag breaks this test, not a cluster.
#[tokio::test]
async fn the_deployed_configuration_validates() {
    let cm = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/base/configmap.yaml"
    ))
    .unwrap();
    let docs: serde_json::Value = serde_saphyr::from_str(&cm).unwrap();
    let text = docs["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), text);
    let run = cpkeep(&s(&["--config", &cfg, "-o", "json", "config", "validate"])).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sections: Vec<String> = run.json()["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["section"].as_str().unwrap().to_string())
        .collect();
    for want in ["backup", "certs", "connection", "daemon", "drill", "health"] {
        assert!(
            sections.iter().any(|s| s == want),
            "{want} missing: {sections:?}"
        );
    }
}
