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
}
