//! Tests of the bbolt layer beyond the unit tests beside each decoder, grouped by capability and
//! by failure class:
//! - `fixtures`: committed snapshots made by real etcd 3.5.30 and 3.4.23;
//! - `real_etcd`: bigger snapshots made by real etcd at test time (multi-level trees, overflow);
//! - `synthetic`: hand-laid files for what etcd does not produce on demand (other page sizes, page
//!   orders, stale pages holding newer revisions, inline and branch-rooted buckets);
//! - `corruption`: truncation, bad metas, cycles, garbage, random byte flips.
//!
//! Every test that scans also checks the answer against `oracle`, a whole-file walker written
//! independently of the streaming scanner, which itself is checked against etcdutl's hash and key
//! count on real snapshots.

mod builder;
mod corruption;
mod etcd_live;
mod fixtures;
mod fuzz;
mod oracle;
mod reader;
mod reader_corruption;
mod real_etcd;
mod synthetic;
mod writer;

use std::path::{Path, PathBuf};

use super::{BoltError, SnapshotFacts, SnapshotScanner};

/// Chunk sizes every scan is repeated with: bytes, odd, a page, a gRPC message, whole.
pub(super) const CHUNK_SIZES: [usize; 5] = [1, 7, 4096, 32 * 1024, usize::MAX];

/// Scans `db` fed in chunks of `chunk` bytes.
pub(super) fn scan(db: &[u8], chunk: usize) -> Result<SnapshotFacts, BoltError> {
    let mut s = SnapshotScanner::new();
    for c in db.chunks(chunk.clamp(1, db.len().max(1))) {
        s.feed(c)?;
    }
    s.finish()
}

/// Scans `db` with every chunk size, asserts they agree, and returns the facts.
pub(super) fn scan_all(db: &[u8]) -> Result<SnapshotFacts, BoltError> {
    scan_with(db, &CHUNK_SIZES)
}

/// Scans `db` whole and with each of `chunk_sizes`, asserts they agree, and returns the facts.
pub(super) fn scan_with(db: &[u8], chunk_sizes: &[usize]) -> Result<SnapshotFacts, BoltError> {
    let whole = scan(db, usize::MAX);
    for &chunk in chunk_sizes {
        let r = scan(db, chunk);
        match (&whole, &r) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "chunk size {chunk}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "chunk size {chunk}"),
            _ => panic!("chunk size {chunk}: {r:?} but whole: {whole:?}"),
        }
    }
    whole
}

pub(super) fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool directory from `var` (tools/env.sh sets it), else `tools/<default>` in the repository.
/// Panics, naming what is missing, if `names` are not all there: tests never skip.
pub(super) fn tool_dir(var: &str, default: &str, names: &[&str]) -> PathBuf {
    let dir = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("tools").join(default));
    for n in names {
        let p = dir.join(n);
        assert!(
            p.is_file(),
            "missing tool {} (set {var} or run scripts/install-tools.sh)",
            p.display()
        );
    }
    dir
}

/// A snapshot file as etcdctl saves it: the bbolt bytes and the 32-byte sha256 trailer, checked.
pub(super) fn read_snapshot(path: &Path) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(bytes.len() % 512, 32, "{}: not db + sha256", path.display());
    let db_len = bytes.len() - 32;
    assert_eq!(
        Sha256::digest(&bytes[..db_len]).as_slice(),
        &bytes[db_len..],
        "{}: trailer is not the sha256 of the db",
        path.display()
    );
    bytes.truncate(db_len);
    bytes
}

pub(super) fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
