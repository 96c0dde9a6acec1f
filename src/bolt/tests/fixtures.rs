//! Committed snapshots made by real etcd (fixtures/make-bolt-fixtures.sh regenerates them).

use std::path::Path;

use super::oracle::{max_revision_anywhere, oracle};
use super::{manifest_dir, read_json, read_snapshot, scan_with, CHUNK_SIZES};
use crate::bolt::SnapshotFacts;

/// Scans the snapshot in `dir` with every chunk size and checks it against etcdutl's status, the
/// oracle, and (when recorded) the server's status taken just before the snapshot.
pub(super) fn check_snapshot_dir(dir: &Path, chunk_sizes: &[usize]) -> SnapshotFacts {
    let db = read_snapshot(&dir.join("snapshot.db"));
    let status = read_json(&dir.join("snapshot.status.json"));
    let facts = scan_with(&db, chunk_sizes).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let o = oracle(&db);

    // etcdutl snapshot status, and the oracle checked against it.
    assert_eq!(facts.revision, status["revision"].as_i64(), "revision");
    assert_eq!(
        Some(facts.data_size),
        status["totalSize"].as_u64(),
        "totalSize"
    );
    assert_eq!(
        Some(o.hash),
        status["hash"].as_u64().map(|h| h as u32),
        "oracle hash"
    );
    assert_eq!(
        Some(o.total_key),
        status["totalKey"].as_u64(),
        "oracle totalKey"
    );
    assert_eq!(o.total_size, facts.data_size);

    // The meta bucket, read by the oracle.
    assert_eq!(facts.revision, o.revision);
    assert_eq!(
        facts.consistent_index, o.consistent_index,
        "consistent_index"
    );
    assert_eq!(facts.term, o.term, "term");

    assert_eq!(facts.db_size, db.len() as u64);
    assert_eq!(
        facts.data_size, facts.db_size,
        "a snapshot is exactly its pages"
    );
    assert_eq!(facts.meta_page, 0, "WriteTo gives meta 0 the higher txid");
    assert_eq!(facts.meta_note, None);
    assert_eq!(facts.freelist, None, "etcd runs with NoFreelistSync");
    assert_eq!(facts.page_size, 4096);
    facts
}

/// The server's applied index and term at the snapshot, from endpoint-status.json.
fn endpoint_status(dir: &Path) -> (u64, u64) {
    let s = read_json(&dir.join("endpoint-status.json"));
    let st = &s[0]["Status"];
    (
        st["raftAppliedIndex"].as_u64().unwrap(),
        st["raftTerm"].as_u64().unwrap(),
    )
}

#[test]
fn etcd_3_5_30_small_snapshot() {
    let dir = manifest_dir().join("fixtures/etcd-3.5.30-small");
    let facts = check_snapshot_dir(&dir, &CHUNK_SIZES);
    assert_eq!(facts.revision, Some(8));
    assert_eq!(facts.high_water_mark, 5);
    assert_eq!(facts.txid, 9);
    // A 1-member cluster with 5 puts, a delete and a lease: 3.5 records the term.
    assert!(facts.consistent_index.is_some_and(|ci| ci > 0));
    assert_eq!(facts.term, Some(2));
    // What a manifest gets: snake_case fields, null where absent.
    let json = serde_json::to_value(&facts).unwrap();
    assert_eq!(json["revision"], 8);
    assert_eq!(json["data_size"], 20480);
    assert_eq!(json["meta_note"], serde_json::Value::Null);
    // Pages 2 and 4 are stale root leaves (free pages): page 4 comes after the live root (3) and
    // holds an empty `key` bucket, page 2 an older one with one key fewer.
    let o = oracle(&read_snapshot(&dir.join("snapshot.db")));
    assert_eq!(o.live_pages.iter().copied().collect::<Vec<_>>(), vec![3]);
    assert_eq!(o.key_depth, 0, "the key bucket is inline");
}

#[test]
fn etcd_3_5_30_tree_snapshot() {
    let dir = manifest_dir().join("fixtures/etcd-3.5.30-tree");
    let facts = check_snapshot_dir(&dir, &CHUNK_SIZES);
    let (applied, term) = endpoint_status(&dir);
    // etcd 3.5 saves the consistent index on every backend commit: it is the applied index.
    assert_eq!(facts.consistent_index, Some(applied));
    assert_eq!(facts.term, Some(term));
    let o = oracle(&read_snapshot(&dir.join("snapshot.db")));
    assert!(o.key_depth >= 2, "key bucket has branch pages");
    assert!(o.overflowed_leaves >= 1, "a leaf with overflow pages");
    let workload = read_json(&dir.join("workload.json"));
    // 3.5.30 keeps the tombstone at the compaction revision.
    assert_eq!(
        facts.revision,
        workload["compacted_tombstone_revision"].as_i64()
    );
}

#[test]
fn etcd_3_4_23_tree_snapshot() {
    let dir = manifest_dir().join("fixtures/etcd-3.4.23-tree");
    let facts = check_snapshot_dir(&dir, &CHUNK_SIZES);
    let (applied, _) = endpoint_status(&dir);
    // 3.4 has no term in the meta bucket, and saves the consistent index only with key-value
    // writes: the compaction entry applied after the last delete is not counted.
    assert_eq!(facts.term, None);
    assert!(facts.consistent_index.is_some_and(|ci| ci <= applied));
    let db = read_snapshot(&dir.join("snapshot.db"));
    let o = oracle(&db);
    assert!(o.key_depth >= 2, "key bucket has branch pages");
    assert!(o.overflowed_leaves >= 1, "a leaf with overflow pages");
    // 3.4.23 compacts the put and tombstone at the compaction revision away, so the live revision
    // is below them, while stale leaves on free pages still hold them: the trap this scanner avoids.
    let removed = read_json(&dir.join("workload.json"))["compacted_tombstone_revision"]
        .as_i64()
        .unwrap();
    assert!(facts.revision < Some(removed), "{facts:?}");
    assert_eq!(max_revision_anywhere(&db, 4096), Some(removed));
}
