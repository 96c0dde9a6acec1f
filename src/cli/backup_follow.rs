//! `cpkeep backup --follow`: the flags resolved as `backup` resolves them, then the revision log
//! (revlog::follow) until SIGTERM/SIGINT, then its report; `--prune` prunes snapshots at the end.

use std::sync::Arc;

use super::backup::{node_name, BackupArgs, StandbyReport};
use super::exit::{classified, snapshot_failure, ExitError};
use super::output::{Render, Renderer};
use super::snapshot::prune_cluster;
use super::Exit;
use crate::etcd::Endpoint;
use crate::revlog::follow::{follow, FollowOptions, FollowReport, SegmentLimits};
use crate::snapshot::{BackupOptions, StreamControl};

impl Render for FollowReport {
    fn table(&self) -> String {
        let mut t = String::new();
        for (i, s) in self.snapshots.iter().enumerate() {
            let what = if i == 0 {
                "snapshot"
            } else {
                "healing snapshot"
            };
            t += &format!(
                "{what} {} at revision {} ({})\n",
                s.id, s.revision, s.object_key
            );
        }
        let range = match (self.first_revision, self.last_revision) {
            (Some(f), Some(l)) => format!("revisions {f}…{l}"),
            _ => "no revision".to_string(),
        };
        t += &format!(
            "log        {} segments, {} events, {range} in {}\n",
            self.segments_written, self.events, self.store
        );
        t += &format!(
            "watch      {} reconnects, {} duplicates dropped, complete through {}, max lag {} ms\n",
            self.watch.reconnects,
            self.watch.duplicates_dropped,
            self.watch.complete_through,
            self.watch.max_lag_ms
        );
        if self.upload_retries > 0 {
            t += &format!("uploads    {} retried\n", self.upload_retries);
        }
        for g in &self.gaps {
            t += &format!(
                "GAP        after revision {}: {} (new snapshot: {})\n",
                g.after_revision,
                g.reason,
                g.new_snapshot.as_deref().unwrap_or("none, stopped first")
            );
        }
        t
    }
}

pub async fn run(args: BackupArgs, out: &Renderer, quiet: bool) -> anyhow::Result<Exit> {
    let progress = super::progress::for_stderr(quiet);
    let conn = args.conn.resolve()?;
    let (encoding, recipients) = args.encoding.encoding().map_err(snapshot_failure)?;
    let endpoint = match &args.endpoint {
        Some(e) => Some(Endpoint::parse(e, conn.tls.is_some())?),
        None => None,
    };
    let policy = args.retention.policy();
    if args.prune && !policy.has_rules() {
        return Err(ExitError {
            code: Exit::Unknown,
            message: "--prune needs a retention rule: --keep-last N and/or --keep-hourly/--keep-daily/--keep-weekly/--keep-monthly".into(),
        }
        .into());
    }
    if args.only_on_leader {
        if let Some(standby) = crate::snapshot::standby(&conn)
            .await
            .map_err(snapshot_failure)?
        {
            out.print(&StandbyReport { standby })?;
            return Ok(Exit::Ok);
        }
    }
    let store: Arc<dyn crate::store::ObjectStore> = Arc::from(args.store.open().await?);
    let opts = FollowOptions {
        backup: BackupOptions {
            endpoint,
            allow_degraded: args.allow_degraded,
            stall_timeout: args.stall_timeout,
            encoding,
            recipients,
            node_name: node_name(args.node_name.as_deref()),
            control: StreamControl {
                cancel: super::signals::cancel_on_signals(),
                ..Default::default()
            },
        },
        limits: SegmentLimits {
            interval: args.follow.segment_interval,
            size: args.follow.segment_size,
        },
        log_buffer: args.follow.log_buffer,
        allow_old_etcd: args.follow.allow_old_etcd,
    };
    let report = follow(&conn, store.clone(), &opts, progress.as_ref())
        .await
        .map_err(|e| classified(e.class(), &e))?;
    out.print(&report)?;
    if args.prune {
        // Snapshots only: the log's segments are not the retention's business yet.
        match prune_cluster(store.as_ref(), &report.cluster_id, &policy, false).await {
            Ok(r) if r.errors.is_empty() => {}
            Ok(r) => {
                eprintln!(
                    "cpkeep: log stored, but pruning failed: {}",
                    r.errors.join("; ")
                );
                return Ok(Exit::Warning);
            }
            Err(e) => {
                eprintln!("cpkeep: log stored, but pruning failed: {e}");
                return Ok(Exit::Warning);
            }
        }
    }
    Ok(Exit::Ok)
}
