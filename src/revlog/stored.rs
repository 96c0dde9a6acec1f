//! Revision log segments in an object store: storing a closed segment (encoded, then its manifest
//! written last), listing a cluster's segments with what is wrong with each, and fetching one back
//! checked against its manifest. The one part of `revlog` that talks to a store; it never talks to
//! etcd and never prints.
//!
//! A segment is small (at most `--segment-size` of plaintext), so it is encoded and decoded in
//! memory: no temporary file. The follower encodes as it writes ([`SegmentEncoder`]), so it holds
//! compressed bytes only.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::error::RevlogError;
use super::manifest::{parse_manifest_key, Previous, SegmentManifest, StoredObject};
use super::segment::{read_segment, Segment, SegmentSummary};
use crate::failure::FailureClass;
use crate::snapshot::{CompressionInfo, CompressionKind, Encoding, EncryptionInfo};
use crate::store::{ObjectStore, StoreError};

/// Age identities that can decrypt a segment.
pub type Identities<'a> = Option<&'a [Box<dyn age::Identity + Send + Sync>]>;

/// A failure storing or fetching a segment.
#[derive(Debug, thiserror::Error)]
pub enum StoredLogError {
    #[error("{key}: {source}")]
    Store {
        key: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("{key}: {source}")]
    Segment {
        key: String,
        #[source]
        source: Box<RevlogError>,
    },
    #[error("{key}: {reason}")]
    Verify { key: String, reason: String },
    #[error("{key}: encrypted to {recipients}: pass --identity FILE")]
    NeedsIdentity { key: String, recipients: String },
    #[error("cannot encode a segment: {0}")]
    Encode(String),
}

impl StoredLogError {
    /// The failure class: a store that cannot be reached is the store's; a segment that does not
    /// match its manifest is refused; encoding failures are failures.
    pub fn class(&self) -> FailureClass {
        match self {
            StoredLogError::Store { source, .. } => source.class(),
            StoredLogError::Segment { .. }
            | StoredLogError::Verify { .. }
            | StoredLogError::NeedsIdentity { .. } => FailureClass::Refused,
            StoredLogError::Encode(_) => FailureClass::Failed,
        }
    }
}

/// One segment manifest found under `<cluster>/log/`, or an object there that is not a complete
/// segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedSegment {
    /// The manifest's key, or for an object without a manifest the object's key.
    pub manifest_key: String,
    pub manifest: Option<SegmentManifest>,
    /// What is wrong: an unreadable manifest, a missing or resized object, an object without
    /// manifest (a segment whose upload did not finish).
    pub problem: Option<String>,
}

impl ListedSegment {
    /// The revisions the listed thing claims, from its manifest or else from its name.
    pub fn revisions(&self) -> Option<(i64, i64)> {
        match &self.manifest {
            Some(m) => Some((m.first_revision, m.last_revision)),
            None => segment_name_revisions(&self.manifest_key),
        }
    }
}

/// Prefix of a cluster's log in a store.
pub fn log_prefix(cluster_id: &str) -> String {
    format!("{cluster_id}/log/")
}

/// A segment's stored bytes, encoded while it was written (see [`SegmentEncoder`]).
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub stored: Bytes,
    pub sha256: [u8; 32],
}

/// The encoding a segment is written through, as it is written: zstd, then age, into memory. A
/// follower holds its open segment this way, so it keeps the compressed bytes, not the plaintext.
pub struct SegmentEncoder(Chain);

enum Chain {
    Plain(Vec<u8>),
    Zstd(zstd::Encoder<'static, Vec<u8>>),
    Age(age::stream::StreamWriter<Vec<u8>>),
    ZstdAge(zstd::Encoder<'static, age::stream::StreamWriter<Vec<u8>>>),
}

impl SegmentEncoder {
    pub fn new(enc: &Encoding) -> io::Result<Self> {
        let age_wrap = || -> io::Result<age::stream::StreamWriter<Vec<u8>>> {
            let recipients = enc.recipients.iter().map(|r| r as &dyn age::Recipient);
            let encryptor = age::Encryptor::with_recipients(recipients)
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
            encryptor.wrap_output(Vec::new())
        };
        let level = enc.level;
        Ok(SegmentEncoder(
            match (enc.compression, enc.recipients.is_empty()) {
                (CompressionKind::None, true) => Chain::Plain(Vec::new()),
                (CompressionKind::Zstd, true) => Chain::Zstd(zstd_over(Vec::new(), level)?),
                (CompressionKind::None, false) => Chain::Age(age_wrap()?),
                (CompressionKind::Zstd, false) => Chain::ZstdAge(zstd_over(age_wrap()?, level)?),
            },
        ))
    }

    /// Ends the encoding: the stored bytes and their sha256.
    pub fn finish(self) -> io::Result<EncodedSegment> {
        let out = match self.0 {
            Chain::Plain(v) => v,
            Chain::Zstd(z) => z.finish()?,
            Chain::Age(a) => a.finish()?,
            Chain::ZstdAge(z) => z.finish()?.finish()?,
        };
        let sha256: [u8; 32] = Sha256::digest(&out).into();
        Ok(EncodedSegment {
            stored: Bytes::from(out),
            sha256,
        })
    }
}

/// A zstd stream over `w`, with its checksum: a segment's frame checks itself on decode.
fn zstd_over<W: Write>(w: W, level: i32) -> io::Result<zstd::Encoder<'static, W>> {
    let mut z = zstd::Encoder::new(w, level)?;
    z.include_checksum(true)?;
    Ok(z)
}

impl Write for SegmentEncoder {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Chain::Plain(w) => w.write(data),
            Chain::Zstd(w) => w.write(data),
            Chain::Age(w) => w.write(data),
            Chain::ZstdAge(w) => w.write(data),
        }
    }

    /// Nothing to flush: everything is in memory until [`finish`](Self::finish) (a zstd flush
    /// would end a block early and cost ratio).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encodes `plaintext` (a finished segment described by `summary`) as `encoding` says, stores it,
/// then stores its manifest — last, so that a segment whose manifest exists is complete.
pub async fn put_segment(
    store: &dyn ObjectStore,
    cluster_id: &str,
    plaintext: Bytes,
    summary: &SegmentSummary,
    previous: Previous,
    encoding: &Encoding,
) -> Result<SegmentManifest, StoredLogError> {
    check_plaintext(&plaintext, summary)?;
    let enc = encoding.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let mut e = SegmentEncoder::new(&enc)?;
        e.write_all(&plaintext)?;
        e.finish()
    })
    .await
    .map_err(|e| StoredLogError::Encode(format!("encoder task failed: {e}")))?
    .map_err(|e| StoredLogError::Encode(e.to_string()))?;
    put_encoded_segment(store, cluster_id, encoded, summary, previous, encoding).await
}

/// Stores a segment already encoded as `encoding` says (its plaintext is what `summary`
/// describes), then its manifest — last.
pub async fn put_encoded_segment(
    store: &dyn ObjectStore,
    cluster_id: &str,
    encoded: EncodedSegment,
    summary: &SegmentSummary,
    previous: Previous,
    encoding: &Encoding,
) -> Result<SegmentManifest, StoredLogError> {
    let object = StoredObject {
        compression: CompressionInfo {
            algorithm: encoding.compression,
            level: (encoding.compression == CompressionKind::Zstd).then_some(encoding.level),
        },
        encryption: (!encoding.recipients.is_empty()).then(|| EncryptionInfo {
            scheme: "age".to_string(),
            recipients: encoding.recipients.iter().map(|r| r.to_string()).collect(),
        }),
        stored_size: encoded.stored.len() as u64,
        stored_sha256: hex::encode(encoded.sha256),
    };
    let manifest = SegmentManifest::new(cluster_id, summary, object, previous);
    let store_err = |key: &str| {
        let key = key.to_string();
        move |source| StoredLogError::Store {
            key,
            source: Box::new(source),
        }
    };
    store
        .put(&manifest.object_key, encoded.stored)
        .await
        .map_err(store_err(&manifest.object_key))?;
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| StoredLogError::Encode(format!("manifest: {e}")))?;
    let key = manifest.key();
    store
        .put(&key, Bytes::from(json))
        .await
        .map_err(store_err(&key))?;
    Ok(manifest)
}

/// The plaintext handed to `put_segment` must be the segment `summary` describes: a caller that
/// mixed up buffers would otherwise store a manifest that lies.
fn check_plaintext(plaintext: &[u8], summary: &SegmentSummary) -> Result<(), StoredLogError> {
    let sha = hex::encode(Sha256::digest(plaintext));
    if plaintext.len() as u64 != summary.plaintext_size || sha != summary.plaintext_sha256 {
        return Err(StoredLogError::Encode(format!(
            "segment {}-{}: the bytes given are not the segment summarised",
            summary.first_revision, summary.last_revision
        )));
    }
    Ok(())
}

/// Every segment of `cluster_id` in `store`, by first revision: each manifest read and checked
/// against the object it names (present, same size), and each object no manifest names.
pub async fn list_segments(
    store: &dyn ObjectStore,
    cluster_id: &str,
) -> Result<Vec<ListedSegment>, StoredLogError> {
    let prefix = log_prefix(cluster_id);
    let objects = match store.list(&prefix).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(source) => {
            return Err(StoredLogError::Store {
                key: prefix,
                source: Box::new(source),
            })
        }
    };
    let sizes: BTreeMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut listed = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    for o in &objects {
        if parse_manifest_key(&o.key).is_none() {
            continue;
        }
        let read = match store.get(&o.key).await {
            Ok(bytes) => SegmentManifest::from_json(&o.key, &bytes).map_err(|e| e.to_string()),
            Err(e) => Err(format!("manifest unreadable: {e}")),
        };
        let entry = match read {
            Err(problem) => ListedSegment {
                manifest_key: o.key.clone(),
                manifest: None,
                problem: Some(problem),
            },
            Ok(m) => {
                named.insert(m.object_key.clone());
                let problem = match sizes.get(m.object_key.as_str()) {
                    None => Some(format!("segment object {} is missing", m.object_key)),
                    Some(&s) if s != m.stored_size => Some(format!(
                        "segment object {} has {s} bytes, its manifest says {}",
                        m.object_key, m.stored_size
                    )),
                    Some(_) => None,
                };
                ListedSegment {
                    manifest_key: o.key.clone(),
                    manifest: Some(m),
                    problem,
                }
            }
        };
        listed.push(entry);
    }
    for o in &objects {
        if o.key.ends_with(".json") || named.contains(&o.key) || !o.key.contains(".evlog") {
            continue;
        }
        listed.push(ListedSegment {
            manifest_key: o.key.clone(),
            manifest: None,
            problem: Some("no manifest: the segment's upload did not finish".to_string()),
        });
    }
    listed.sort_by_key(|l| {
        (
            l.revisions().unwrap_or((i64::MAX, i64::MAX)),
            l.manifest_key.clone(),
        )
    });
    Ok(listed)
}

/// The revisions in a segment object's name (`…/<first>-<last>.evlog…`).
fn segment_name_revisions(key: &str) -> Option<(i64, i64)> {
    let name = key.rsplit('/').next()?;
    let stem = name.split(".evlog").next()?;
    let (first, last) = stem.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// Downloads the segment `manifest` describes and reads it whole: the stored bytes checked
/// against the manifest's size and sha256 before anything is decoded, then decrypted,
/// decompressed, read with every record checked, and its summary compared with the manifest.
pub async fn fetch_segment(
    store: &dyn ObjectStore,
    manifest: &SegmentManifest,
    identities: Identities<'_>,
) -> Result<Segment, StoredLogError> {
    let key = manifest.object_key.clone();
    if manifest.encryption.is_some() && identities.is_none() {
        return Err(StoredLogError::NeedsIdentity {
            key,
            recipients: manifest
                .encryption
                .as_ref()
                .map(|e| e.recipients.join(", "))
                .unwrap_or_default(),
        });
    }
    let stored = store
        .get(&key)
        .await
        .map_err(|source| StoredLogError::Store {
            key: key.clone(),
            source: Box::new(source),
        })?;
    let verify = |reason: String| StoredLogError::Verify {
        key: key.clone(),
        reason,
    };
    if stored.len() as u64 != manifest.stored_size {
        return Err(verify(format!(
            "{} bytes stored, the manifest says {}",
            stored.len(),
            manifest.stored_size
        )));
    }
    if hex::encode(Sha256::digest(&stored)) != manifest.stored_sha256 {
        return Err(verify(
            "the stored bytes' sha256 differs from the manifest: the segment is corrupt".into(),
        ));
    }
    let plain = decode(&stored, manifest, identities).map_err(verify)?;
    if plain.len() as u64 != manifest.plaintext_size
        || hex::encode(Sha256::digest(&plain)) != manifest.plaintext_sha256
    {
        return Err(verify(
            "the decoded segment differs from the manifest's plaintext size or sha256".into(),
        ));
    }
    let segment = read_segment(plain.as_slice()).map_err(|source| StoredLogError::Segment {
        key: key.clone(),
        source: Box::new(source),
    })?;
    let s = &segment.summary;
    if (
        s.first_revision,
        s.last_revision,
        s.event_count,
        s.has_leases,
    ) != (
        manifest.first_revision,
        manifest.last_revision,
        manifest.event_count,
        manifest.has_leases,
    ) {
        return Err(verify(format!(
            "the segment holds revisions {}-{} ({} events), its manifest says {}-{} ({} events)",
            s.first_revision,
            s.last_revision,
            s.event_count,
            manifest.first_revision,
            manifest.last_revision,
            manifest.event_count
        )));
    }
    Ok(segment)
}

/// Decrypts and decompresses a stored segment in memory.
fn decode(
    stored: &[u8],
    manifest: &SegmentManifest,
    identities: Identities<'_>,
) -> Result<Vec<u8>, String> {
    let mut reader: Box<dyn Read + '_> = Box::new(stored);
    if manifest.encryption.is_some() {
        let ids = identities.unwrap_or_default();
        let decryptor = age::Decryptor::new(reader).map_err(|e| format!("not an age file: {e}"))?;
        reader = Box::new(
            decryptor
                .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(|e| format!("cannot decrypt: {e}"))?,
        );
    }
    if manifest.compression.algorithm == CompressionKind::Zstd {
        reader = Box::new(zstd::Decoder::new(reader).map_err(|e| format!("zstd: {e}"))?);
    }
    let mut plain = Vec::with_capacity(usize::try_from(manifest.plaintext_size).unwrap_or(0));
    // Never more than the manifest claims (plus one byte to notice more): a corrupt stream cannot
    // grow without bound.
    reader
        .take(manifest.plaintext_size.saturating_add(1))
        .read_to_end(&mut plain)
        .map_err(|e| format!("cannot decode: {e}"))?;
    Ok(plain)
}
