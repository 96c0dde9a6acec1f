//! Reading a snapshot file natively: `snapshot status` (the numbers `etcdutl snapshot status` prints)
//! and `snapshot verify` (etcd's sha256 trailer, bbolt's structure, etcd's schema, and with `deep` a
//! breakdown of where the space goes). Read-only: the file is opened for reading and never written.
//!
//! Files are told by content as `restore` tells them ([`super::detect_encoding`]): a raw db is read
//! in place; a zstd or age file (what `cpkeep backup` stores) is decoded into a private temp dir
//! first, since the bbolt reader needs random access. Input that is no snapshot at all (missing,
//! a directory, empty, other content) is an error with restore's words; a damaged snapshot is a
//! verdict (`ok: false`) for `verify` and [`SnapshotError::Corrupt`] for `status`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bolt::{self, Db};

use super::decode::{decode_file, detect_encoding, FileEncoding};
use super::trailer::TrailerOutcome;
use super::SnapshotError;

/// age identities for encrypted snapshot files.
pub type Identities<'a> = Option<&'a [Box<dyn age::Identity + Send + Sync>]>;

/// `etcdutl snapshot status`, with etcdutl's JSON field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub hash: u32,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

fn damaged(path: &Path, reason: impl ToString) -> SnapshotError {
    SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn bad_file(path: &Path, reason: impl ToString) -> SnapshotError {
    SnapshotError::BadFile {
        what: "snapshot",
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A snapshot file as a raw db on disk: the file itself, or its decoded copy in a temp dir that
/// lives as long as this.
struct Plain {
    path: std::path::PathBuf,
    encoding: FileEncoding,
    /// The trailer check made while decoding (zstd, age); None for a raw file, read in place.
    trailer: Option<TrailerOutcome>,
    _dir: Option<tempfile::TempDir>,
}

/// Tells `path`'s encoding and, for zstd and age, decodes it into a private temp dir.
/// Unusable input is [`SnapshotError::BadFile`] or `Usage` (an age file without identities); a
/// damaged stream is [`SnapshotError::Corrupt`].
fn plain(path: &Path, identities: Identities<'_>) -> Result<Plain, SnapshotError> {
    let encoding = detect_encoding(path)?;
    if encoding == FileEncoding::Raw {
        return Ok(Plain {
            path: path.to_path_buf(),
            encoding,
            trailer: None,
            _dir: None,
        });
    }
    if encoding.encrypted() && identities.is_none() {
        return Err(SnapshotError::Usage(format!(
            "{} is age-encrypted: pass --identity FILE (the age identity it was encrypted to)",
            path.display()
        )));
    }
    let dir = tempfile::Builder::new()
        .prefix("cpkeep-inspect-")
        .tempdir()
        .map_err(|e| SnapshotError::Encode(format!("cannot create a temp dir: {e}")))?;
    let out = dir.path().join("snapshot.db");
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::fsx::MODE_SECRET)
            .open(&out)
            .map_err(|e| SnapshotError::Encode(format!("cannot create {}: {e}", out.display())))?
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let (_, trailer) = decode_file(path, identities, &mut w)?;
    std::io::Write::flush(&mut w)
        .map_err(|e| SnapshotError::Encode(format!("cannot write {}: {e}", out.display())))?;
    Ok(Plain {
        path: out,
        encoding,
        trailer: Some(trailer),
        _dir: Some(dir),
    })
}

fn open(path: &Path, shown: &Path) -> Result<Db<std::fs::File>, SnapshotError> {
    let f = std::fs::File::open(path).map_err(|e| bad_file(shown, e))?;
    Db::open(f).map_err(|e| damaged(shown, e))
}

/// The status of a snapshot file, raw, zstd or age (blocking).
pub fn status_of_file(
    path: &Path,
    identities: Identities<'_>,
) -> Result<StatusReport, SnapshotError> {
    let plain = plain(path, identities)?;
    let db = open(&plain.path, path)?;
    // A compressed or encrypted snapshot was hashed while it was decoded: a bit flipped inside a
    // zstd block can decode to other bytes without a zstd error, and only etcd's trailer tells.
    // The db is whole pages (at least 512 bytes each): a decoded stream of whole pages is a
    // compressed raw member db, with no trailer to check; any other length must end with the
    // trailer, so a stream altered in content or in length is damaged. A raw file is read in
    // place: checking it would cost a second full read, which etcdutl skips too.
    if let Some(t) = &plain.trailer {
        if !(t.db_len + 32).is_multiple_of(512) && !t.matches() {
            return Err(damaged(
                path,
                "the sha256 trailer does not match the decoded db",
            ));
        }
    }
    let s = bolt::status(&db).map_err(|e| damaged(path, e))?;
    Ok(StatusReport {
        hash: s.hash,
        revision: s.revision,
        total_key: s.total_key,
        total_size: s.total_size,
        version: s.version,
    })
}

/// What the file's tail says about etcd's sha256 trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailerState {
    /// The file ends with the sha256 of the db before it.
    Verified,
    /// The file is exactly the db (a raw copy of member/snap/db): nothing to verify.
    Absent,
    /// 32 bytes follow the db but they are not its sha256.
    Mismatch,
    /// The file's length fits neither.
    UnexpectedLength,
}

/// Bytes and keys held by one Kubernetes resource or namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub keys: u64,
    pub bytes: u64,
}

/// Where the space of a snapshot goes (`verify --deep`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeepReport {
    /// Live keys (latest revision not a tombstone) per `/registry/<resource>/…`.
    pub resources: BTreeMap<String, Usage>,
    /// Live keys per namespace (for `/registry/<resource>/<namespace>/<name>`).
    pub namespaces: BTreeMap<String, Usage>,
    /// The largest live values: (key, bytes).
    pub largest: Vec<(String, u64)>,
    pub revisions: u64,
    pub tombstones: u64,
    pub live_keys: u64,
    /// Bytes of key+value of every revision stored.
    pub stored_bytes: u64,
    /// Of which the latest revision of live keys.
    pub live_bytes: u64,
    /// Share of stored key+value bytes that a compaction at the latest revision and a defrag
    /// would free (old revisions and tombstones).
    pub reclaimable_share: f64,
}

/// The result of `snapshot verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub source: String,
    pub ok: bool,
    /// How the file was encoded (zstd and age files are checked decoded).
    pub encoding: FileEncoding,
    pub trailer: TrailerState,
    pub file_size: u64,
    pub db_size: u64,
    pub page_size: u32,
    pub meta_note: Option<String>,
    pub status: Option<StatusReport>,
    pub pages_total: u64,
    pub pages_reachable: u64,
    pub pages_free: u64,
    pub revisions: u64,
    pub consistent_index: Option<u64>,
    pub term: Option<u64>,
    /// Checks against the store's manifest, for stored snapshots.
    pub manifest_checks: Vec<String>,
    /// Everything found wrong.
    pub problems: Vec<String>,
    pub deep: Option<DeepReport>,
}

/// Verifies a snapshot file, raw, zstd or age (blocking). Input that is no snapshot is an error;
/// a damaged snapshot is a report with `ok: false`.
pub fn verify_file(
    path: &Path,
    deep: bool,
    identities: Identities<'_>,
) -> Result<VerifyReport, SnapshotError> {
    let bad_report = |encoding: FileEncoding, file_size: u64, problem: String| VerifyReport {
        source: path.display().to_string(),
        ok: false,
        encoding,
        trailer: TrailerState::UnexpectedLength,
        file_size,
        db_size: 0,
        page_size: 0,
        meta_note: None,
        status: None,
        pages_total: 0,
        pages_reachable: 0,
        pages_free: 0,
        revisions: 0,
        consistent_index: None,
        term: None,
        manifest_checks: Vec::new(),
        problems: vec![problem],
        deep: None,
    };
    let plain = match plain(path, identities) {
        Ok(p) => p,
        // Recognised, but its zstd or age stream is damaged: a verdict, not an error.
        Err(SnapshotError::Corrupt { reason, .. }) => {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let encoding = detect_encoding(path)?;
            return Ok(bad_report(encoding, size, reason));
        }
        Err(e) => return Err(e),
    };
    let file_size = std::fs::metadata(&plain.path)
        .map_err(|e| bad_file(path, e))?
        .len();
    let mut problems = Vec::new();
    let db = match open(&plain.path, path) {
        Ok(db) => db,
        // Not even openable: still a verdict, not an error, so `verify` can say "bad".
        Err(SnapshotError::Corrupt { reason, .. }) => {
            return Ok(bad_report(plain.encoding, file_size, reason))
        }
        Err(e) => return Err(e),
    };
    let db_size = db.data_size();
    let trailer = trailer_state(&plain.path, file_size, db_size)?;
    match trailer {
        TrailerState::Verified | TrailerState::Absent => {}
        TrailerState::Mismatch => problems.push("the sha256 trailer does not match the db".to_string()),
        TrailerState::UnexpectedLength => problems.push(format!(
            "the file has {file_size} bytes; the db is {db_size} (expected that, or 32 more for the trailer)"
        )),
    }
    let report = bolt::check(&db);
    for p in &report.problems {
        problems.push(format!("page {}: {}", p.page, p.reason));
    }
    if report.problem_count > report.problems.len() as u64 {
        problems.push(format!(
            "… and {} more structural problems",
            report.problem_count - report.problems.len() as u64
        ));
    }
    let status = if report.problem_count == 0 {
        match bolt::status(&db) {
            Ok(s) => Some(StatusReport {
                hash: s.hash,
                revision: s.revision,
                total_key: s.total_key,
                total_size: s.total_size,
                version: s.version,
            }),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        }
    } else {
        None
    };
    let meta = match bolt::etcd::meta(&db) {
        Ok(m) => {
            if m.consistent_index.is_none() {
                problems.push("the meta bucket has no consistent_index".to_string());
            }
            Some(m)
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let (revisions, deep_report) = if report.problem_count == 0 {
        scan_revisions(&db, deep, &mut problems)
    } else {
        (0, None)
    };
    Ok(VerifyReport {
        source: path.display().to_string(),
        ok: problems.is_empty(),
        encoding: plain.encoding,
        trailer,
        file_size,
        db_size,
        page_size: db.page_size(),
        meta_note: db.meta_note().map(String::from),
        status,
        pages_total: report.pages_total,
        pages_reachable: report.pages_reachable,
        pages_free: report.pages_free,
        revisions,
        consistent_index: meta.as_ref().and_then(|m| m.consistent_index),
        term: meta.as_ref().and_then(|m| m.term),
        manifest_checks: Vec::new(),
        problems,
        deep: deep_report,
    })
}

fn trailer_state(path: &Path, file_size: u64, db_size: u64) -> Result<TrailerState, SnapshotError> {
    if file_size == db_size {
        return Ok(TrailerState::Absent);
    }
    if file_size != db_size + 32 {
        return Ok(TrailerState::UnexpectedLength);
    }
    let mut f = std::fs::File::open(path).map_err(|e| bad_file(path, e))?;
    let mut hasher = Sha256::new();
    let mut left = db_size;
    let mut buf = vec![0u8; 1024 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        f.read_exact(&mut buf[..want])
            .map_err(|e| bad_file(path, e))?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    let mut tail = [0u8; 32];
    f.read_exact(&mut tail).map_err(|e| bad_file(path, e))?;
    Ok(if hasher.finalize().as_slice() == tail {
        TrailerState::Verified
    } else {
        TrailerState::Mismatch
    })
}

/// Decodes every revision; with `deep`, accounts space per resource and namespace.
fn scan_revisions<S: bolt::PageSource>(
    db: &Db<S>,
    deep: bool,
    problems: &mut Vec<String>,
) -> (u64, Option<DeepReport>) {
    let mut revs = match bolt::etcd::revisions(db) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e.to_string());
            return (0, None);
        }
    };
    let mut count = 0u64;
    let mut d = DeepReport::default();
    // Latest revision of each key: (bytes of key+value, tombstone).
    let mut latest: HashMap<Vec<u8>, (u64, bool)> = HashMap::new();
    while let Some(next) = revs.next_revision() {
        match next {
            Ok((rev, kv)) => {
                count += 1;
                if deep {
                    let bytes = (kv.key.len() + kv.value.len()) as u64;
                    d.stored_bytes += bytes;
                    if rev.tombstone {
                        d.tombstones += 1;
                    }
                    latest.insert(kv.key.to_vec(), (bytes, rev.tombstone));
                }
            }
            Err(e) => {
                problems.push(e.to_string());
                break;
            }
        }
    }
    if !deep {
        return (count, None);
    }
    d.revisions = count;
    let mut largest: Vec<(String, u64)> = Vec::new();
    for (key, (bytes, tomb)) in &latest {
        if *tomb {
            continue;
        }
        d.live_keys += 1;
        d.live_bytes += bytes;
        let k = String::from_utf8_lossy(key).into_owned();
        let parts: Vec<&str> = k.trim_start_matches('/').split('/').collect();
        if parts.first() == Some(&"registry") && parts.len() >= 3 {
            let r = d.resources.entry(parts[1].to_string()).or_default();
            r.keys += 1;
            r.bytes += bytes;
            if parts.len() >= 4 {
                let n = d.namespaces.entry(parts[2].to_string()).or_default();
                n.keys += 1;
                n.bytes += bytes;
            }
        } else {
            let r = d
                .resources
                .entry("(outside /registry)".to_string())
                .or_default();
            r.keys += 1;
            r.bytes += bytes;
        }
        largest.push((k, *bytes));
    }
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    largest.truncate(10);
    d.largest = largest;
    d.reclaimable_share = if d.stored_bytes == 0 {
        0.0
    } else {
        (d.stored_bytes - d.live_bytes.min(d.stored_bytes)) as f64 / d.stored_bytes as f64
    };
    (count, Some(d))
}
