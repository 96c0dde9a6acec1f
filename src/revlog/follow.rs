//! `cpkeep backup --follow`: a full snapshot, then the revision log after it, segment by segment,
//! until cancelled; a gap (history lost to a compaction, revisions never received) is reported and
//! healed by a new full snapshot that starts a new chain. It owns the order of things and the
//! report; watching (watch.rs), leases (leases.rs) and storing (uploader.rs) are its parts.
//!
//! Never prints (tracing and the returned [`FollowReport`]), never prunes. The revision the watch
//! starts from is read before the snapshot is taken, so a compaction between the snapshot and the
//! watch cannot open a hole; events at or below the snapshot's own revision are dropped.

mod backoff;
pub mod error;
mod leases;
mod uploader;
mod version;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use error::FollowError;
pub use version::watch_is_trustworthy;
pub use watch::{Gap, SegmentLimits, WatchStats};

use crate::etcd::{probe_cluster, ConnectionOptions};
use crate::snapshot::{backup, BackupOptions, BackupReport, Progress, SnapshotError};
use crate::store::ObjectStore;
use backoff::Backoff;
use watch::{ChainEnd, Watcher};

/// How to follow.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The full snapshots' settings; its `control.cancel` stops the whole run.
    pub backup: BackupOptions,
    pub limits: SegmentLimits,
    /// Closed segments' stored (encoded) bytes waiting for the store, at most (`--log-buffer`).
    pub log_buffer: u64,
    /// Follow an etcd whose watch is known to lose events after a compaction (a warning only).
    pub allow_old_etcd: bool,
}

/// A full snapshot the run took.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotTaken {
    pub id: String,
    /// The db's revision, as its manifest records it.
    pub revision: i64,
    /// The first revision of the chain that follows it: the revision after the db's (after 1
    /// for an empty db, as etcd's store starts at 1 with no change in it).
    pub log_from: i64,
    pub object_key: String,
}

/// What one `backup --follow` run did.
#[derive(Debug, Clone, Serialize)]
pub struct FollowReport {
    pub store: String,
    pub cluster_id: String,
    /// The first full snapshot, then one per gap.
    pub snapshots: Vec<SnapshotTaken>,
    pub segments_written: u64,
    /// Of the segments stored.
    pub first_revision: Option<i64>,
    pub last_revision: Option<i64>,
    pub events: u64,
    pub gaps: Vec<Gap>,
    /// Failed segment uploads that were retried.
    pub upload_retries: u64,
    pub watch: WatchStats,
    pub elapsed_ms: u64,
}

/// Takes a full snapshot into `store`, then logs every revision after it until
/// `opts.backup.control.cancel` is cancelled; then stores what it holds and reports.
pub async fn follow(
    conn: &ConnectionOptions,
    store: Arc<dyn ObjectStore>,
    opts: &FollowOptions,
    progress: &dyn Progress,
) -> Result<FollowReport, FollowError> {
    let started = Instant::now();
    if opts.limits.interval.is_zero() || opts.limits.size == 0 || opts.log_buffer == 0 {
        return Err(FollowError::Usage(
            "--segment-interval, --segment-size and --log-buffer must be more than zero".into(),
        ));
    }
    let cancel = opts.backup.control.cancel.clone();
    let head = head_revision(conn, opts.allow_old_etcd).await?;
    let first = backup(conn, store.as_ref(), &opts.backup, progress).await?;
    let cluster_id = first.manifest.cluster_id.clone();
    let (queue, uploader) = uploader::spawn(
        store.clone(),
        cluster_id.clone(),
        opts.backup.encoding.clone(),
        opts.log_buffer,
    );
    let mut snapshots = vec![taken(&first)];
    let mut gaps: Vec<Gap> = Vec::new();
    let mut watcher = Watcher::new(
        conn,
        opts.limits,
        &queue,
        cancel.clone(),
        opts.backup.encoding.clone(),
    );
    let (mut snap, mut head) = (first, head);
    let mut start_gaps = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let failure = loop {
        let rs = crate::revlog::boot_revision(snap.manifest.revision);
        let end = watcher
            .run_chain(&snap.manifest.id, rs, head.min(rs) + 1)
            .await;
        let mut gap = match end {
            Ok(ChainEnd::Stopped) => break None,
            Err(e) => break Some(e),
            Ok(ChainEnd::Gap(g)) => g,
        };
        tracing::warn!(
            after = gap.after_revision,
            resumed_at = gap.resumed_at,
            "gap in the revision log: {}; taking a new full snapshot",
            gap.reason
        );
        // A gap before the chain held anything, again and again, would take snapshot after
        // snapshot: that is a db whose last key is below etcd's compaction (its trailing deletes
        // compacted away, so the manifest's revision understates it) until a new write lands.
        // Wait, longer each time, rather than fill the store.
        if gap.after_revision == rs {
            let wait = start_gaps.next_delay();
            tokio::select! {
                _ = cancel.cancelled() => {
                    gaps.push(gap);
                    break None;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        } else {
            start_gaps.reset();
        }
        match heal(conn, store.as_ref(), opts, progress).await {
            Some((h, s)) => {
                gap.new_snapshot = Some(s.manifest.id.clone());
                snapshots.push(taken(&s));
                gaps.push(gap);
                (snap, head) = (s, h);
            }
            None => {
                gaps.push(gap);
                break None;
            }
        }
    };
    // Everything received is stored before the run ends, whatever ended it.
    let stats = std::mem::take(&mut watcher.stats);
    drop(watcher);
    drop(queue);
    let uploaded = uploader.await.unwrap_or_default();
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(FollowReport {
        store: store.url(),
        cluster_id,
        snapshots,
        segments_written: uploaded.segments,
        first_revision: uploaded.first_revision,
        last_revision: uploaded.last_revision,
        events: uploaded.events,
        gaps,
        upload_retries: uploaded.retries,
        watch: stats,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

fn taken(r: &BackupReport) -> SnapshotTaken {
    SnapshotTaken {
        id: r.manifest.id.clone(),
        revision: r.manifest.revision,
        log_from: crate::revlog::boot_revision(r.manifest.revision) + 1,
        object_key: r.manifest.object_key.clone(),
    }
}

/// The cluster's revision now, read before a snapshot: the lowest any answering member reports
/// (a lagging member's is lower; watching from lower only costs events dropped as duplicates).
/// Refuses members whose watch cannot be trusted, unless allowed.
async fn head_revision(conn: &ConnectionOptions, allow_old: bool) -> Result<i64, FollowError> {
    let probe = probe_cluster(conn, false).await;
    let mut head: Option<i64> = None;
    let mut unanswered = Vec::new();
    for p in &probe.endpoints {
        match &p.status {
            Ok(s) => {
                if !watch_is_trustworthy(&s.version) {
                    if !allow_old {
                        return Err(FollowError::OldEtcd {
                            endpoint: p.endpoint.to_string(),
                            version: s.version.clone(),
                        });
                    }
                    tracing::warn!(
                        endpoint = %p.endpoint,
                        version = %s.version,
                        "this etcd's watch can lose events after a compaction (--allow-old-etcd)"
                    );
                }
                head = Some(head.map_or(s.revision, |h| h.min(s.revision)));
            }
            Err(why) => unanswered.push(format!("{}: {why}", p.endpoint)),
        }
    }
    head.ok_or_else(|| {
        FollowError::Etcd(crate::etcd::EtcdError::NoneAnswered(unanswered.join("; ")))
    })
}

/// A new full snapshot after a gap, retried with backoff until it is taken or the run is
/// cancelled (`None`): a gap is healed, not given up on.
async fn heal(
    conn: &ConnectionOptions,
    store: &dyn ObjectStore,
    opts: &FollowOptions,
    progress: &dyn Progress,
) -> Option<(i64, BackupReport)> {
    let cancel = &opts.backup.control.cancel;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        if cancel.is_cancelled() {
            return None;
        }
        let attempt = async {
            let head = head_revision(conn, opts.allow_old_etcd).await?;
            let snap = backup(conn, store, &opts.backup, progress).await?;
            Ok::<_, FollowError>((head, snap))
        };
        match attempt.await {
            Ok(done) => return Some(done),
            Err(FollowError::Snapshot(SnapshotError::Cancelled { .. })) => return None,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(retry_in = ?wait, "the snapshot healing a gap failed: {e}");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
