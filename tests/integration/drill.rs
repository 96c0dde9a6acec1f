//! `snapshot verify --restore-test`: the restore drill boots a real etcd (3.5 and 3.4) on a native
//! restore of a fresh snapshot and compares every live key; an etcd that cannot boot makes the
//! snapshot BAD; no etcd to run is unusable input.

use std::path::Path;

use crate::harness::{conn_args, cpkeep, fill, sandbox, Etcd};

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

async fn drill(file: &Path, etcd: &Path) -> crate::harness::Run {
    cpkeep(&args(&[
        "snapshot",
        "verify",
        "-o",
        "json",
        "--restore-test",
        "--etcd-bin",
        &etcd.display().to_string(),
        &file.display().to_string(),
    ]))
    .await
}

async fn drill_boots_a_restored_copy(v: Etcd) {
    let sb = sandbox(v, 1).await;
    fill(&sb, 500, 400).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    let mut a = args(&["snapshot", "save", &file.display().to_string()]);
    a.extend(conn_args(&sb, &sb.endpoints(), "3s"));
    assert_eq!(cpkeep(&a).await.code, 0);
    let before = std::fs::read(&file).unwrap();

    let run = drill(&file, &v.etcd()).await;
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let j = run.json();
    let d = &j["restore_test"];
    assert_eq!(d["ok"], true, "{j}");
    assert!(d["served_keys"].as_u64().unwrap() > 400, "{d}");
    assert_eq!(d["served_keys"], d["snapshot_keys"], "{d}");
    assert_eq!(d["compared_keys"], d["snapshot_keys"], "{d}");
    assert_eq!(d["served_revision"], j["status"]["revision"], "{d}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the input was changed"
    );

    // A raw member db (no trailer) is drilled too.
    let raw = dir.path().join("raw.db");
    std::fs::write(&raw, &before[..before.len() - 32]).unwrap();
    let run = drill(&raw, &v.etcd()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["restore_test"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v35_drill_boots_a_restored_copy() {
    drill_boots_a_restored_copy(Etcd::V35).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v34_drill_boots_a_restored_copy() {
    drill_boots_a_restored_copy(Etcd::V34).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_that_cannot_boot_is_bad_and_no_etcd_is_unusable() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/etcd-3.5.30-leases/snapshot.db");
    // `false` exits at once: the drill reports it as BAD, on one line.
    let run = drill(&file, Path::new("/bin/false")).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("restore drill") && line.contains("exited"),
        "{line}"
    );

    let run = drill(&file, Path::new("/nonexistent/etcd")).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(line.contains("/nonexistent/etcd"), "{line}");
}
