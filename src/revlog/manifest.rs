//! The segment manifest: the JSON document written LAST beside each stored segment (a segment
//! exists only when its manifest does), the segments' object keys, and the check that a list of
//! manifests forms one unbroken chain after a full snapshot. Pure data; never prints, never talks
//! to etcd or a store.
//!
//! Layout in a store, beside the snapshots of `snapshot::manifest`:
//! `<cluster-id>/log/<first %016d>-<last %016d>.evlog[.zst][.age]` and the same name with `.json`.
//! The revisions are zero-padded decimal so that a store's lexical listing is revision order (and
//! a human reads the numbers etcd prints): 16 digits last 317 years at a million revisions a
//! second. A larger revision gets more digits; it still parses, and the chain check sorts by
//! number, not by name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ChainBreak, RevlogError};
use super::segment::SegmentSummary;
use crate::snapshot::{CompressionInfo, CompressionKind, EncryptionInfo};

/// Version of the segment manifest format; readers refuse newer ones.
pub const FORMAT_VERSION: u32 = 1;

/// Digits of the zero-padded revisions in a segment's name.
const REVISION_DIGITS: usize = 16;

/// Everything known about one stored segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentManifest {
    pub format_version: u32,
    /// Hex, as etcdctl prints it.
    pub cluster_id: String,
    /// Object key of the segment, relative to the store root.
    pub object_key: String,
    pub first_revision: i64,
    pub last_revision: i64,
    pub event_count: u64,
    /// When cpkeep received the first and the last revision (not etcd's time: etcd records none).
    pub first_event_time: DateTime<Utc>,
    pub last_event_time: DateTime<Utc>,
    pub stored_size: u64,
    /// sha256 of the stored object (compressed, encrypted): checkable without the age identity.
    pub stored_sha256: String,
    pub plaintext_size: u64,
    pub plaintext_sha256: String,
    /// The previous segment's `stored_sha256`; `None` only for the first segment after a full
    /// snapshot, which names that snapshot in `follows_snapshot` instead.
    #[serde(default)]
    pub previous_sha256: Option<String>,
    /// The id of the full snapshot this segment's chain starts from (first segment only).
    #[serde(default)]
    pub follows_snapshot: Option<String>,
    /// Whether the segment ends with the lease table taken at its close.
    pub has_leases: bool,
    pub compression: CompressionInfo,
    pub encryption: Option<EncryptionInfo>,
    pub tool_version: String,
}

/// Where a segment's chain links back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// The first segment after this full snapshot id.
    Snapshot(String),
    /// The previous segment's `stored_sha256`.
    Segment(String),
}

/// What the caller knows of the stored object, once it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub compression: CompressionInfo,
    pub encryption: Option<EncryptionInfo>,
    pub stored_size: u64,
    pub stored_sha256: String,
}

impl SegmentManifest {
    /// The manifest of a segment written with `summary` and stored as `stored`.
    pub fn new(
        cluster_id: &str,
        summary: &SegmentSummary,
        stored: StoredObject,
        previous: Previous,
    ) -> Self {
        let (previous_sha256, follows_snapshot) = match previous {
            Previous::Snapshot(id) => (None, Some(id)),
            Previous::Segment(sha) => (Some(sha), None),
        };
        SegmentManifest {
            format_version: FORMAT_VERSION,
            cluster_id: cluster_id.to_string(),
            object_key: object_key_for(
                cluster_id,
                summary.first_revision,
                summary.last_revision,
                stored.compression.algorithm,
                stored.encryption.is_some(),
            ),
            first_revision: summary.first_revision,
            last_revision: summary.last_revision,
            event_count: summary.event_count,
            first_event_time: summary.first_event_time,
            last_event_time: summary.last_event_time,
            stored_size: stored.stored_size,
            stored_sha256: stored.stored_sha256,
            plaintext_size: summary.plaintext_size,
            plaintext_sha256: summary.plaintext_sha256.clone(),
            previous_sha256,
            follows_snapshot,
            has_leases: summary.has_leases,
            compression: stored.compression,
            encryption: stored.encryption,
            tool_version: crate::VERSION.to_string(),
        }
    }

    /// The manifest's own key in the store.
    pub fn key(&self) -> String {
        manifest_key_for(&self.cluster_id, self.first_revision, self.last_revision)
    }

    /// Parses and checks a manifest read from a store (`key` names it in errors).
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Self, RevlogError> {
        let bad = |reason: String| RevlogError::BadManifest {
            key: key.to_string(),
            reason,
        };
        let m: SegmentManifest = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a cpkeep segment manifest: {e}")))?;
        if m.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "format {} is newer than this cpkeep understands ({FORMAT_VERSION}): upgrade cpkeep",
                m.format_version
            )));
        }
        m.validate().map_err(bad)?;
        Ok(m)
    }

    /// Checks what one manifest claims on its own.
    pub fn validate(&self) -> Result<(), String> {
        if self.first_revision < 1 || self.last_revision < self.first_revision {
            return Err(format!(
                "revisions {}…{} are not a range",
                self.first_revision, self.last_revision
            ));
        }
        // Every revision has at least one event.
        let revisions = (self.last_revision - self.first_revision) as u64 + 1;
        if self.event_count < revisions {
            return Err(format!(
                "{} events cannot cover {revisions} revisions",
                self.event_count
            ));
        }
        if self.last_event_time < self.first_event_time {
            return Err("last_event_time is before first_event_time".into());
        }
        match (&self.previous_sha256, &self.follows_snapshot) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err("exactly one of previous_sha256 and follows_snapshot is set".into()),
        }
        for (name, sha) in [
            ("stored_sha256", Some(&self.stored_sha256)),
            ("plaintext_sha256", Some(&self.plaintext_sha256)),
            ("previous_sha256", self.previous_sha256.as_ref()),
        ] {
            if let Some(sha) = sha {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("{name} {sha:?} is not a sha256 in hex"));
                }
            }
        }
        let expected = object_key_for(
            &self.cluster_id,
            self.first_revision,
            self.last_revision,
            self.compression.algorithm,
            self.encryption.is_some(),
        );
        if self.object_key != expected {
            return Err(format!(
                "object_key {} should be {expected}",
                self.object_key
            ));
        }
        Ok(())
    }
}

fn stem(cluster_id: &str, first: i64, last: i64) -> String {
    format!(
        "{cluster_id}/log/{first:0w$}-{last:0w$}",
        w = REVISION_DIGITS
    )
}

/// A segment's object key: `<cluster-id>/log/<first>-<last>.evlog[.zst][.age]`.
pub fn object_key_for(
    cluster_id: &str,
    first: i64,
    last: i64,
    compression: CompressionKind,
    encrypted: bool,
) -> String {
    format!(
        "{}.evlog{}{}",
        stem(cluster_id, first, last),
        compression.extension(),
        if encrypted { ".age" } else { "" }
    )
}

/// The revision etcd is at after booting from a db whose revision (last key, or a compaction
/// above it) is `db_revision`: etcd's store starts at revision 1 with no change in it, so an empty
/// db (revision 0) is at 1. A log after such a db starts at the next revision.
pub fn boot_revision(db_revision: i64) -> i64 {
    db_revision.max(1)
}

/// A segment manifest's key: `<cluster-id>/log/<first>-<last>.json`.
pub fn manifest_key_for(cluster_id: &str, first: i64, last: i64) -> String {
    format!("{}.json", stem(cluster_id, first, last))
}

/// The revision range a segment manifest's key names, if it is one (`<cluster-id>/log/…json`).
pub fn parse_manifest_key(key: &str) -> Option<(String, i64, i64)> {
    let (cluster, name) = key.split_once("/log/")?;
    let range = name.strip_suffix(".json")?;
    let (first, last) = range.split_once('-')?;
    let digits = |s: &str| {
        (s.len() >= REVISION_DIGITS && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    Some((cluster.to_string(), digits(first)?, digits(last)?))
}

/// An unbroken chain of segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub follows_snapshot: String,
    pub first_revision: i64,
    pub last_revision: i64,
    pub segments: usize,
    pub event_count: u64,
}

/// Checks that `manifests` (in any order) form one chain: the first follows a full snapshot
/// (`snapshot`, when given), each next one starts at the revision after the previous one's last
/// and names its `stored_sha256`, all in one cluster. The first break is the error, naming the
/// segment where it is found; a missing segment shows as a gap.
pub fn check_chain(
    manifests: &[SegmentManifest],
    snapshot: Option<&str>,
) -> Result<ChainReport, RevlogError> {
    let mut sorted: Vec<&SegmentManifest> = manifests.iter().collect();
    sorted.sort_by_key(|m| (m.first_revision, m.last_revision));
    let Some(first) = sorted.first() else {
        return Err(RevlogError::ChainBroken {
            segment: "(none)".into(),
            reason: ChainBreak::Empty,
        });
    };
    let broken = |m: &SegmentManifest, reason| RevlogError::ChainBroken {
        segment: m.object_key.clone(),
        reason,
    };
    let follows = first
        .follows_snapshot
        .clone()
        .ok_or_else(|| broken(first, ChainBreak::NoSnapshot))?;
    if let Some(expected) = snapshot.filter(|s| *s != follows) {
        return Err(broken(
            first,
            ChainBreak::WrongSnapshot {
                expected: expected.to_string(),
                found: follows,
            },
        ));
    }
    for m in &sorted {
        m.validate().map_err(|reason| RevlogError::BadManifest {
            key: m.key(),
            reason,
        })?;
        if m.cluster_id != first.cluster_id {
            return Err(broken(
                m,
                ChainBreak::WrongCluster {
                    expected: first.cluster_id.clone(),
                    found: m.cluster_id.clone(),
                },
            ));
        }
    }
    for pair in sorted.windows(2) {
        let [prev, m] = pair else { continue };
        let expected_first = prev.last_revision + 1;
        if m.first_revision > expected_first {
            return Err(broken(
                m,
                ChainBreak::Gap {
                    expected_first,
                    found_first: m.first_revision,
                },
            ));
        }
        if m.first_revision < expected_first {
            return Err(broken(
                m,
                ChainBreak::Overlap {
                    previous_last: prev.last_revision,
                    found_first: m.first_revision,
                },
            ));
        }
        match &m.previous_sha256 {
            None => {
                return Err(broken(
                    m,
                    ChainBreak::MissingPrevious {
                        previous_last: prev.last_revision,
                    },
                ))
            }
            Some(sha) if *sha != prev.stored_sha256 => {
                return Err(broken(
                    m,
                    ChainBreak::WrongPrevious {
                        expected: prev.stored_sha256.clone(),
                        found: sha.clone(),
                    },
                ))
            }
            Some(_) => {}
        }
    }
    Ok(ChainReport {
        follows_snapshot: follows,
        first_revision: first.first_revision,
        last_revision: sorted
            .last()
            .map_or(first.last_revision, |m| m.last_revision),
        segments: sorted.len(),
        event_count: sorted.iter().map(|m| m.event_count).sum(),
    })
}
