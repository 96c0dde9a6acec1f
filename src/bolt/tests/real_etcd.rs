//! Bigger snapshots made by real etcd at test time (fixtures/make-bolt-fixtures.sh): 20 000 keys of
//! ~1 KiB (a `key` bucket three levels deep), values of 100 KiB and more (leaves with overflow
//! pages), deletes, a lease and a physical compaction.

use std::process::Command;
use std::time::Instant;

use super::fixtures::check_snapshot_dir;
use super::oracle::oracle;
use super::{manifest_dir, read_json, read_snapshot, tool_dir, CHUNK_SIZES};
use crate::bolt::SnapshotScanner;

fn generate_and_check(version: &str, keys: u32, big: u32) {
    let etcd35 = tool_dir(
        "CPKEEP_ETCD35_DIR",
        "etcd-3.5/bin",
        &["etcd", "etcdctl", "etcdutl"],
    );
    let etcd34 = tool_dir("CPKEEP_ETCD34_DIR", "etcd-3.4/bin", &["etcd", "etcdctl"]);
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let run = Command::new("bash")
        .arg(manifest_dir().join("fixtures/make-bolt-fixtures.sh"))
        .arg("snapshot")
        .arg(out.path())
        .args([version, &keys.to_string(), &big.to_string()])
        .env("CPKEEP_ETCD35_DIR", &etcd35)
        .env("CPKEEP_ETCD34_DIR", &etcd34)
        .output()
        .expect("bash must be installed");
    assert!(
        run.status.success(),
        "make-bolt-fixtures.sh failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let generated = started.elapsed();

    // Byte-by-byte feeding of 28 MB takes seconds in a debug build; the committed fixtures cover it.
    let facts = check_snapshot_dir(out.path(), &CHUNK_SIZES[1..]);
    let db = read_snapshot(&out.path().join("snapshot.db"));
    let o = oracle(&db);
    assert!(o.key_depth >= 3, "key bucket depth {}", o.key_depth);
    // bbolt puts at least two entries in a leaf, however big: two big values may share one.
    assert!(o.overflowed_leaves >= 1, "{}", o.overflowed_leaves);
    let status = read_json(&out.path().join("endpoint-status.json"));
    let applied = status[0]["Status"]["raftAppliedIndex"].as_u64().unwrap();
    if version == "3.5" {
        assert_eq!(facts.consistent_index, Some(applied));
        assert_eq!(facts.term, status[0]["Status"]["raftTerm"].as_u64(), "term");
    } else {
        assert_eq!(facts.term, None);
        assert!(facts.consistent_index.is_some_and(|ci| ci <= applied));
    }

    // The random-access reader: etcdutl's status field by field, a clean check, every
    // KeyValue decoded.
    super::reader::check_against_etcdutl(out.path());
    let reader = crate::bolt::Db::open(db.as_slice()).unwrap();
    super::reader::check_revisions(&reader);

    // Memory while streaming: small against the file.
    let mut s = SnapshotScanner::new();
    for c in db.chunks(32 * 1024) {
        s.feed(c).unwrap();
    }
    let held = s.retained_bytes();
    assert!(
        held * 100 < db.len(),
        "{held} bytes held for a {} byte db",
        db.len()
    );
    assert_eq!(s.finish().unwrap(), facts);
    eprintln!(
        "etcd {version}: {} bytes, {} pages, generated in {generated:?}, checked in {:?}, \
         scanner held {held} bytes",
        db.len(),
        db.len() / 4096,
        started.elapsed() - generated
    );
}

#[test]
fn etcd_3_5_snapshot_with_deep_trees_and_overflow() {
    generate_and_check("3.5", 20_000, 3);
}

#[test]
fn etcd_3_4_snapshot_with_deep_trees_and_overflow() {
    generate_and_check("3.4", 20_000, 3);
}
