//! Snapshots made by real etcd 3.5 and 3.4 at test time with every kind of workload etcd has
//! (puts, overwrites, deletes, a physical compaction, an online defrag, leases granted, kept alive
//! and revoked, auth enabled with users and roles), compared live with `etcdutl snapshot status
//! -w json` (and etcdctl 3.4's own `snapshot status`) field by field.

use std::process::Command;

use super::reader::{check_against_etcdutl, check_revisions};
use super::{manifest_dir, read_snapshot, tool_dir};
use crate::bolt::{check, etcd, Db};

fn generate(version: &str) -> tempfile::TempDir {
    let etcd35 = tool_dir(
        "CPKEEP_ETCD35_DIR",
        "etcd-3.5/bin",
        &["etcd", "etcdctl", "etcdutl"],
    );
    let etcd34 = tool_dir("CPKEEP_ETCD34_DIR", "etcd-3.4/bin", &["etcd", "etcdctl"]);
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(manifest_dir().join("fixtures/make-bolt-fixtures.sh"))
        .args(["scenario"])
        .arg(out.path())
        .args([version, "all"])
        .env("CPKEEP_ETCD35_DIR", &etcd35)
        .env("CPKEEP_ETCD34_DIR", &etcd34)
        .output()
        .expect("bash must be installed");
    assert!(
        run.status.success(),
        "make-bolt-fixtures.sh scenario failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

fn generate_and_compare(version: &str) {
    let out = generate(version);
    let status = check_against_etcdutl(out.path());
    if version == "3.4" {
        assert!(out.path().join("snapshot.status-etcdctl.json").is_file());
    }
    let db = Db::open(read_snapshot(&out.path().join("snapshot.db"))).unwrap();
    assert_eq!(check_revisions(&db), {
        let key = db.bucket(b"key").unwrap().unwrap();
        key.iter().count() as u64
    });
    assert!(check(&db).is_ok());
    // What the workload left: two live leases, auth on with two users, a compaction.
    assert_eq!(etcd::leases(&db).unwrap().len(), 2);
    let auth = etcd::auth(&db).unwrap();
    assert!(auth.enabled);
    assert_eq!(auth.users.len(), 2);
    let meta = etcd::meta(&db).unwrap();
    assert!(meta.finished_compact_revision.is_some());
    assert!(status.revision > meta.finished_compact_revision.unwrap_or(0));
    assert_eq!(meta.term.is_some(), version == "3.5");
}

#[test]
fn etcd_3_5_all_workloads_match_etcdutl() {
    generate_and_compare("3.5");
}

#[test]
fn etcd_3_4_all_workloads_match_etcdutl_and_etcdctl() {
    generate_and_compare("3.4");
}
