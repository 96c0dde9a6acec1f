//! `cpkeep snapshot save FILE`: what `etcdctl snapshot save` does (the raw db with etcd's sha256
//! trailer, written as `.part` then renamed), but with the trailer verified, the member chosen like a
//! backup, a stalled stream detected, and the file readable by its owner only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::encode::Encoding;
use super::source::choose_source;
use super::stream::{stream_snapshot, StreamControl};
use super::{Progress, SnapshotError};
use crate::etcd::{hex_id, ConnectionOptions, Endpoint};
use crate::store::{FileStore, ObjectStore};

/// The outcome of `snapshot save`.
#[derive(Debug, Clone, Serialize)]
pub struct SaveReport {
    pub path: PathBuf,
    pub cluster_id: String,
    pub member_name: String,
    pub source_endpoint: String,
    pub revision: Option<i64>,
    pub db_size: u64,
    pub db_sha256: String,
    pub file_size: u64,
    pub elapsed_ms: u128,
}

#[allow(clippy::too_many_arguments)]
pub async fn save(
    conn: &ConnectionOptions,
    endpoint: Option<&Endpoint>,
    allow_degraded: bool,
    stall: Duration,
    out: &Path,
    force: bool,
    progress: &dyn Progress,
    control: &StreamControl,
) -> Result<SaveReport, SnapshotError> {
    if out.exists() && !force {
        return Err(SnapshotError::Exists(out.to_path_buf()));
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| SnapshotError::Usage(format!("{} is not a file path", out.display())))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (source, _) = choose_source(conn, endpoint, allow_degraded).await?;
    let store = FileStore::open(dir)?;
    let writer = store.create(&name).await?;
    let s = stream_snapshot(
        &source.endpoint,
        conn,
        stall,
        Encoding::raw(),
        writer,
        progress,
        control,
    )
    .await?;
    Ok(SaveReport {
        path: out.to_path_buf(),
        cluster_id: hex_id(source.status.cluster_id),
        member_name: source.member_name,
        source_endpoint: source.endpoint.to_string(),
        revision: s.facts.revision,
        db_size: s.db_len,
        db_sha256: hex::encode(s.db_sha256),
        file_size: s.receipt.size,
        elapsed_ms: s.elapsed.as_millis(),
    })
}
