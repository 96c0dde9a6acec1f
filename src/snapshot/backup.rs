//! `cpkeep backup`: choose a member, stream its snapshot into the store, write the manifest last.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::encode::Encoding;
use super::manifest::{
    make_id, CompressionInfo, CompressionKind, EncryptionInfo, Manifest, FORMAT_VERSION,
};
use super::source::choose_source;
use super::stream::{stream_snapshot, StreamControl};
use super::{Progress, SnapshotError};
use crate::etcd::{hex_id, ConnectionOptions, Endpoint, Verdict};
use crate::store::ObjectStore;

/// How to take a backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Take the snapshot from this member instead of choosing one.
    pub endpoint: Option<Endpoint>,
    /// Back up even when quorum is lost.
    pub allow_degraded: bool,
    /// Fail when the stream brings no bytes for this long.
    pub stall_timeout: Duration,
    pub encoding: Encoding,
    /// The recipients as the user wrote them (public keys), for the manifest.
    pub recipients: Vec<String>,
    /// The node running the backup, for the manifest.
    pub node_name: String,
    /// Cancels the stream (no partial object, no open multipart upload is left) and counts the
    /// bytes sent to the store.
    pub control: StreamControl,
}

/// The outcome of a backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub store: String,
    pub source_endpoint: String,
    pub source_is_leader: bool,
    pub cluster_verdict: Verdict,
    pub elapsed_ms: u128,
    /// Plaintext throughput.
    pub mib_per_s: f64,
    /// db size over stored size.
    pub ratio: f64,
}

pub async fn backup(
    conn: &ConnectionOptions,
    store: &dyn ObjectStore,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport, SnapshotError> {
    // A store that cannot take the object fails now, not after the whole snapshot has streamed.
    store.check_writable().await?;
    let (source, health) = choose_source(conn, opts.endpoint.as_ref(), opts.allow_degraded).await?;
    // The clock snapshot IDs are made of (one-second resolution); tests can fix it.
    let started_at = crate::testhooks::now();
    let cluster_id = hex_id(source.status.cluster_id);
    let id = make_id(started_at, source.status.revision);
    let encrypted = !opts.encoding.recipients.is_empty();
    let object_key =
        Manifest::object_key_for(&cluster_id, &id, opts.encoding.compression, encrypted);
    tracing::info!(
        member = %source.member_name,
        endpoint = %source.endpoint,
        leader = source.is_leader,
        key = %object_key,
        "streaming snapshot to {}",
        store.url()
    );
    // Ids have one-second resolution: never let a second backup in the same second replace the first.
    match store.get(&Manifest::key_for(&cluster_id, &id)).await {
        Ok(_) => {
            return Err(SnapshotError::Usage(format!(
                "snapshot {id} already exists in {}; try again in a second",
                store.url()
            )))
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let writer = store.create(&object_key).await?;
    let streamed = stream_snapshot(
        &source.endpoint,
        conn,
        opts.stall_timeout,
        opts.encoding.clone(),
        writer,
        progress,
        &opts.control,
    )
    .await?;

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        id: id.clone(),
        cluster_id: cluster_id.clone(),
        member_id: hex_id(source.status.member_id),
        member_name: source.member_name.clone(),
        node_name: opts.node_name.clone(),
        etcd_version: source.status.version.clone(),
        // What the db holds, as `snapshot verify` and etcdutl read it back: a db whose `key` bucket
        // is empty (a new cluster, or every key deleted and compacted) is at revision 0, whatever
        // the member's head (which the ID keeps).
        revision: streamed.facts.revision.unwrap_or(0),
        raft_index: source.status.raft_index,
        raft_term: source.status.raft_term,
        consistent_index: streamed.facts.consistent_index,
        db_size: streamed.db_len,
        db_sha256: hex::encode(streamed.db_sha256),
        trailer_included: true,
        object_key: object_key.clone(),
        stored_size: streamed.encoded.stored_len,
        stored_sha256: hex::encode(streamed.encoded.stored_sha256),
        compression: CompressionInfo {
            algorithm: opts.encoding.compression,
            level: (opts.encoding.compression == CompressionKind::Zstd)
                .then_some(opts.encoding.level),
        },
        encryption: encrypted.then(|| EncryptionInfo {
            scheme: "age".to_string(),
            recipients: opts.recipients.clone(),
        }),
        tool_version: crate::VERSION.to_string(),
        started_at,
        finished_at: crate::testhooks::now(),
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| SnapshotError::Encode(format!("manifest: {e}")))?;
    if let Err(e) = store
        .put(&Manifest::key_for(&cluster_id, &id), Bytes::from(json))
        .await
    {
        // Without its manifest the object is not a snapshot; remove it rather than leave a leftover.
        let _ = store.delete(&object_key).await;
        return Err(e.into());
    }
    let secs = streamed.elapsed.as_secs_f64().max(1e-6);
    Ok(BackupReport {
        store: store.url(),
        source_endpoint: source.endpoint.to_string(),
        source_is_leader: source.is_leader,
        cluster_verdict: health.verdict,
        elapsed_ms: streamed.elapsed.as_millis(),
        mib_per_s: streamed.db_len as f64 / secs / (1024.0 * 1024.0),
        ratio: streamed.db_len as f64 / (streamed.encoded.stored_len.max(1)) as f64,
        manifest,
    })
}
