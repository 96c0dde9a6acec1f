//! The manifest: the JSON document written LAST beside each stored snapshot. A snapshot exists only
//! when its manifest does; the manifest says what the object holds and how to check it.
//!
//! Layout in a store: `<cluster-id>/<id>.db[.zst][.age]` and `<cluster-id>/<id>.json`, where `<id>` is
//! `<UTC yyyymmddThhmmssZ>-r<revision>` and the revision is the one the member reported as the
//! snapshot began (the exact revision inside the db is the manifest's `revision`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the manifest format; readers refuse newer major versions.
pub const FORMAT_VERSION: u32 = 1;

/// How the stored object is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    None,
    Zstd,
}

impl CompressionKind {
    pub fn extension(self) -> &'static str {
        match self {
            CompressionKind::None => "",
            CompressionKind::Zstd => ".zst",
        }
    }
}

/// Compression settings recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionInfo {
    pub algorithm: CompressionKind,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub level: Option<i32>,
}

/// Encryption recorded in the manifest: public recipients only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// Always "age".
    pub scheme: String,
    pub recipients: Vec<String>,
}

/// Everything known about one stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    /// Hex, as etcdctl prints it.
    pub cluster_id: String,
    pub member_id: String,
    pub member_name: String,
    /// The Kubernetes node (or host) that ran the backup.
    pub node_name: String,
    pub etcd_version: String,
    /// Main revision of the last key in the db (what `etcdutl snapshot status` reports).
    pub revision: i64,
    /// Raft index and term of the member when the snapshot began.
    pub raft_index: u64,
    pub raft_term: u64,
    /// consistent_index stored in the db's meta bucket, when present.
    #[serde(default)]
    pub consistent_index: Option<u64>,
    /// Size of the bbolt db, without etcd's 32-byte sha256 trailer.
    pub db_size: u64,
    /// sha256 of the db bytes: the trailer etcd sent, verified.
    pub db_sha256: String,
    /// Whether the stored plaintext ends with the 32-byte trailer (as `etcdctl snapshot save` writes
    /// it), so that decompressing the object gives a file etcdutl accepts.
    pub trailer_included: bool,
    /// Object key relative to the store root.
    pub object_key: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub compression: CompressionInfo,
    pub encryption: Option<EncryptionInfo>,
    pub tool_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl Manifest {
    /// The manifest's key in the store.
    pub fn key_for(cluster_id: &str, id: &str) -> String {
        format!("{cluster_id}/{id}.json")
    }

    /// The data object's key for an id and encoding.
    pub fn object_key_for(
        cluster_id: &str,
        id: &str,
        compression: CompressionKind,
        encrypted: bool,
    ) -> String {
        format!(
            "{cluster_id}/{id}.db{}{}",
            compression.extension(),
            if encrypted { ".age" } else { "" }
        )
    }

    /// Parses and checks a manifest read from a store.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a cpkeep manifest: {e}"))?;
        if m.format_version > FORMAT_VERSION {
            return Err(format!(
                "manifest format {} is newer than this cpkeep understands ({FORMAT_VERSION}): upgrade cpkeep",
                m.format_version
            ));
        }
        Ok(m)
    }

    pub fn encrypted(&self) -> bool {
        self.encryption.is_some()
    }
}

/// A snapshot id: `<UTC yyyymmddThhmmssZ>-r<revision>`.
pub fn make_id(at: DateTime<Utc>, revision: i64) -> String {
    format!("{}-r{revision}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The time an id was taken, if it is one of ours.
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let ts = id.split('-').next()?;
    NaiveDateTime::parse_from_str(ts, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_and_keys() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 17, 5, 9).unwrap();
        let id = make_id(at, 4711);
        assert_eq!(id, "20261125T170509Z-r4711");
        assert_eq!(id_time(&id), Some(at));
        assert_eq!(
            Manifest::object_key_for("c1", &id, CompressionKind::Zstd, true),
            "c1/20261125T170509Z-r4711.db.zst.age"
        );
        assert_eq!(
            Manifest::key_for("c1", &id),
            "c1/20261125T170509Z-r4711.json"
        );
        assert_eq!(id_time("nonsense"), None);
    }

    #[test]
    fn newer_format_is_refused() {
        let err = Manifest::from_json(br#"{"format_version": 99}"#).unwrap_err();
        assert!(
            err.contains("not a cpkeep manifest") || err.contains("newer"),
            "{err}"
        );
        assert!(Manifest::from_json(b"{").is_err());
    }
}
