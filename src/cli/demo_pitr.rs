//! The demo's point-in-time step, on a one-member sandbox of its own: `backup --follow` (the
//! library call the CLI makes) logs every revision into a directory store while 100 ConfigMaps are
//! written and then deleted "by accident" with one range delete; the member is stopped and
//! restored to the revision just before the delete — the full snapshot plus the logged events
//! replayed natively — and it boots with the 100 ConfigMaps back, each at its original revision.
//! Renders its own lines; the demo only calls it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{DeleteOptions, GetOptions};
use serde::Serialize;

use super::exit::{Exit, ExitError};
use crate::etcd::connect;
use crate::restore::pitr::{select, Target};
use crate::restore::{self, RestoreSource};
use crate::revlog::follow::{follow, FollowOptions, FollowReport, SegmentLimits};
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::snapshot::{catalog, BackupOptions, CompressionKind, Encoding, NoProgress};
use crate::store::{FileStore, ObjectStore};

const PREFIX: &str = "/registry/configmaps/pitr-demo/";
const KEYS: i64 = 100;

#[derive(Debug, Serialize)]
pub struct DemoPitr {
    pub follow: FollowReport,
    /// The revision after the 100 puts, the one restored to.
    pub before_delete: i64,
    /// The revision of the accidental range delete.
    pub deleted_at: i64,
    /// The chosen snapshot and the segments replayed.
    pub snapshot: String,
    pub segments_replayed: usize,
    /// After the restore: the member's revision and the ConfigMaps it serves.
    pub restored_revision: i64,
    pub keys_back: i64,
    /// Whether every restored ConfigMap has the mod revision it had in the source.
    pub revisions_kept: bool,
    pub elapsed_ms: u128,
}

impl DemoPitr {
    pub fn ok(&self) -> bool {
        self.keys_back == KEYS
            && self.restored_revision == self.before_delete
            && self.revisions_kept
            && self.follow.gaps.is_empty()
    }

    pub fn check(&self) -> Result<(), ExitError> {
        if self.ok() {
            return Ok(());
        }
        Err(ExitError {
            code: Exit::Warning,
            message: format!(
                "demo point-in-time restore: {} ConfigMaps back at revision {} (revisions kept: {}), {} gap(s); expected {KEYS} at {}, kept, none",
                self.keys_back,
                self.restored_revision,
                self.revisions_kept,
                self.follow.gaps.len(),
                self.before_delete
            ),
        })
    }

    pub fn table(&self) -> String {
        format!(
            "`cpkeep backup --follow --segment-interval 1s`: snapshot {} at revision {}, then {} segment(s) holding revisions {}…{} ({} events)\n\
             {KEYS} ConfigMaps written (revision {}), then deleted by one range delete at revision {}\n\
             `cpkeep restore --store … --to-revision {}`: snapshot {} + {} segment(s) replayed at their own revisions\n\
             the restored member serves {} ConfigMaps at revision {}; original mod revisions kept: {}\n",
            self.follow.snapshots.first().map_or("-", |s| s.id.as_str()),
            self.follow.snapshots.first().map_or(0, |s| s.revision),
            self.follow.segments_written,
            self.follow.first_revision.unwrap_or(0),
            self.follow.last_revision.unwrap_or(0),
            self.follow.events,
            self.before_delete,
            self.deleted_at,
            self.before_delete,
            self.snapshot,
            self.segments_replayed,
            self.keys_back,
            self.restored_revision,
            if self.revisions_kept { "yes" } else { "NO" }
        )
    }
}

/// Waits for `ready` to hold, checking every 100 ms, up to `within`.
async fn until<F, Fut>(what: &str, within: Duration, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !ready().await {
        if Instant::now() > deadline {
            anyhow::bail!("demo point-in-time restore: {what} did not happen within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub async fn pitr_step(root: &std::path::Path, etcd: &std::path::Path) -> anyhow::Result<DemoPitr> {
    let started = Instant::now();
    let mut opts = SandboxOptions::new(etcd.to_path_buf(), 1);
    opts.dir = Some(root.join("pitr"));
    let mut sandbox = Sandbox::start(opts)
        .await
        .context("cannot start the point-in-time sandbox")?;
    let conn = sandbox.connection(Duration::from_secs(2))?;
    let store: Arc<dyn ObjectStore> = Arc::new(FileStore::open(&root.join("pitr-store"))?);
    let cancel = tokio_util::sync::CancellationToken::new();
    let options = FollowOptions {
        backup: BackupOptions {
            endpoint: None,
            allow_degraded: false,
            stall_timeout: Duration::from_secs(30),
            encoding: Encoding {
                compression: CompressionKind::Zstd,
                level: 3,
                threads: 0,
                recipients: Vec::new(),
            },
            recipients: Vec::new(),
            node_name: "demo".to_string(),
            control: crate::snapshot::StreamControl {
                cancel: cancel.clone(),
                ..Default::default()
            },
        },
        limits: SegmentLimits {
            interval: Duration::from_secs(1),
            size: 64 << 20,
        },
        log_buffer: 64 << 20,
        // The demo runs whatever etcd it found; it compacts nothing, which is what old watches lose.
        allow_old_etcd: true,
    };
    let follower = {
        let (conn, store) = (conn.clone(), store.clone());
        tokio::spawn(async move { follow(&conn, store, &options, &NoProgress).await })
    };
    until(
        "the follower's full snapshot",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move {
                catalog(store.as_ref())
                    .await
                    .is_ok_and(|c| c.complete().count() > 0)
            }
        },
    )
    .await?;

    let mut client = connect(&conn.endpoints[0], &conn).await?;
    for i in 0..KEYS {
        client
            .put(
                format!("{PREFIX}cm-{i:03}"),
                format!("{{\"data\":{i}}}"),
                None,
            )
            .await?;
    }
    let source = client
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    let before_delete = source.header().map_or(0, |h| h.revision());
    let source_revisions: Vec<(Vec<u8>, i64)> = source
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.mod_revision()))
        .collect();
    let deleted = client
        .delete(PREFIX, Some(DeleteOptions::new().with_prefix()))
        .await?;
    let deleted_at = deleted.header().map_or(0, |h| h.revision());
    let cluster_id = format!("{:x}", deleted.header().map_or(0, |h| h.cluster_id()));
    until(
        "the log reaching the delete",
        Duration::from_secs(30),
        || {
            let (store, cluster_id) = (store.clone(), cluster_id.clone());
            async move {
                crate::revlog::list_segments(store.as_ref(), &cluster_id)
                    .await
                    .is_ok_and(|l| {
                        l.iter()
                            .filter_map(|s| s.manifest.as_ref())
                            .any(|m| m.last_revision >= deleted_at)
                    })
            }
        },
    )
    .await?;
    cancel.cancel();
    let follow_report = follower
        .await
        .context("the follower task failed")?
        .map_err(|e| anyhow::anyhow!("demo backup --follow: {e}"))?;

    sandbox.stop();
    let cat = catalog(store.as_ref()).await?;
    let plan = select(
        store.as_ref(),
        &cat,
        None,
        Target::Revision(before_delete),
        None,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("demo point-in-time restore: {e}"))?;
    let (snapshot, segments_replayed) = (plan.snapshot_id.clone(), plan.segments.len());
    let restore_options = sandbox.restore_options(0)?;
    let restore_plan = restore::plan(&restore_options, chrono::Utc::now())?;
    restore::apply(
        &restore_plan,
        &restore_options,
        RestoreSource::PointInTime {
            store: store.as_ref(),
            plan: Box::new(plan),
            identities: None,
            log_identities: None,
        },
    )
    .await
    .context("demo point-in-time restore failed")?;
    sandbox
        .start_stopped()
        .await
        .context("the restored member did not boot")?;
    let mut client = connect(&conn.endpoints[0], &conn).await?;
    let back = client
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    let restored: Vec<(Vec<u8>, i64)> = back
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.mod_revision()))
        .collect();
    let report = DemoPitr {
        follow: follow_report,
        before_delete,
        deleted_at,
        snapshot,
        segments_replayed,
        restored_revision: back.header().map_or(0, |h| h.revision()),
        keys_back: back.kvs().len() as i64,
        revisions_kept: restored == source_revisions,
        elapsed_ms: started.elapsed().as_millis(),
    };
    sandbox.stop();
    Ok(report)
}
