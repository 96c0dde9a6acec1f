//! `cpkeep backup`: one verified, streamed snapshot into a store, optionally followed by a prune.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::connection::ConnectionArgs;
use super::exit::{snapshot_failure, ExitError};
use super::output::{Render, Renderer};
use super::snapshot::{prune_cluster, RetentionArgs};
use super::store_args::StoreArgs;
use super::Exit;
use crate::etcd::Endpoint;
use crate::snapshot::{
    backup, BackupOptions, BackupReport, CompressionKind, Encoding, SnapshotError,
};
use crate::units::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    None,
}

/// How stored snapshots are encoded.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Encoding")]
pub struct EncodingArgs {
    /// Compression of the stored object.
    #[arg(long, value_enum, default_value = "zstd", env = "CPKEEP_COMPRESSION")]
    pub compression: CompressionArg,

    /// zstd level (1-19; 3 is fast and compresses etcd data about 4.5x).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,

    /// zstd worker threads [default: the CPU count, at most 4; 0 = single-threaded]
    #[arg(long)]
    pub zstd_threads: Option<u32>,

    /// Encrypt to this age X25519 recipient (age1…); repeatable. A snapshot holds every Secret.
    #[arg(long = "encrypt-to", env = "CPKEEP_ENCRYPT_TO", value_delimiter = ',')]
    pub encrypt_to: Vec<String>,

    /// Encrypt to the recipients listed in FILE (one per line, # comments); repeatable.
    #[arg(long = "encrypt-to-file", env = "CPKEEP_ENCRYPT_TO_FILE")]
    pub encrypt_to_file: Vec<PathBuf>,
}

impl EncodingArgs {
    /// Parses the recipients and builds the encoding; returns the public recipients for the manifest.
    /// Asking for encryption (a flag or variable that is set, even to nothing) without naming a
    /// recipient is an error, never a plaintext snapshot.
    pub fn encoding(&self) -> Result<(Encoding, Vec<String>), SnapshotError> {
        let mut texts: Vec<String> = self
            .encrypt_to
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        // clap drops an empty CPKEEP_ENCRYPT_TO, which a ConfigMap key left blank produces.
        let env_set = |name: &str| std::env::var_os(name).is_some();
        let asked_to = !self.encrypt_to.is_empty() || env_set("CPKEEP_ENCRYPT_TO");
        if asked_to && texts.iter().all(|t| t.is_empty()) {
            return Err(SnapshotError::NoRecipient {
                asked: "--encrypt-to / CPKEEP_ENCRYPT_TO is empty".to_string(),
            });
        }
        for f in &self.encrypt_to_file {
            let body = std::fs::read_to_string(f).map_err(|e| SnapshotError::BadFile {
                what: "recipients file",
                path: f.clone(),
                reason: crate::certs::error::io_reason(&e),
            })?;
            let found: Vec<String> = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if found.is_empty() {
                return Err(SnapshotError::NoRecipient {
                    asked: format!(
                        "the recipients file {} holds only blank lines and comments",
                        f.display()
                    ),
                });
            }
            texts.extend(found);
        }
        let mut recipients = Vec::new();
        for t in texts.iter().filter(|t| !t.is_empty()) {
            let r =
                age::x25519::Recipient::from_str(t).map_err(|e| SnapshotError::BadRecipient {
                    recipient: t.clone(),
                    reason: format!("{e} (expected an age X25519 recipient: age1…)"),
                })?;
            recipients.push(r);
        }
        let threads = self.zstd_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(4) as u32)
                .unwrap_or(1)
        });
        let compression = match self.compression {
            CompressionArg::Zstd => CompressionKind::Zstd,
            CompressionArg::None => CompressionKind::None,
        };
        let public: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
        Ok((
            Encoding {
                compression,
                level: self.zstd_level,
                threads,
                recipients,
            },
            public,
        ))
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub conn: ConnectionArgs,

    #[command(flatten)]
    pub encoding: EncodingArgs,

    /// Take the snapshot from this member [default: the healthy follower with the highest applied index]
    #[arg(long, env = "CPKEEP_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Back up even when quorum is lost (the member may be behind).
    #[arg(long)]
    pub allow_degraded: bool,

    /// Fail when the snapshot stream brings no bytes for this long.
    #[arg(long, default_value = "60s", value_parser = super::duration::positive, env = "CPKEEP_STALL_TIMEOUT")]
    pub stall_timeout: Duration,

    /// Node name recorded in the manifest [default: $NODE_NAME, else the host name]
    #[arg(long, env = "CPKEEP_NODE_NAME")]
    pub node_name: Option<String>,

    /// Prune this cluster's snapshots after a successful backup (needs a --keep-* rule).
    #[arg(long)]
    pub prune: bool,

    /// Back up only when the member of the first endpoint is the leader, else exit 0 having done
    /// nothing: for a daemon on every control-plane node, so one node (the leader's) backs up.
    #[arg(long, env = "CPKEEP_ONLY_ON_LEADER")]
    pub only_on_leader: bool,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub follow: FollowArgs,
}

/// `--follow`: the revision log after the snapshot.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Revision log")]
pub struct FollowArgs {
    /// After the snapshot, keep watching and store every revision as log segments until SIGTERM/SIGINT.
    #[arg(long, env = "CPKEEP_FOLLOW")]
    pub follow: bool,

    /// Close a log segment after this long (an interval without writes stores nothing).
    #[arg(long, default_value = "60s", value_parser = super::duration::positive, env = "CPKEEP_SEGMENT_INTERVAL")]
    pub segment_interval: Duration,

    /// Close a log segment when its plaintext reaches this size.
    #[arg(long, default_value = "64MiB", value_parser = positive_bytes, env = "CPKEEP_SEGMENT_SIZE")]
    pub segment_size: u64,

    /// Closed segments waiting for the store, at most; when full, the watch pauses (etcd keeps the history).
    #[arg(long, default_value = "64MiB", value_parser = positive_bytes, env = "CPKEEP_LOG_BUFFER")]
    pub log_buffer: u64,

    /// Follow etcd older than 3.5.13 / 3.4.31 anyway (their watch can lose events after a compaction).
    #[arg(long)]
    pub allow_old_etcd: bool,
}

/// A size that must be more than zero.
fn positive_bytes(s: &str) -> Result<u64, String> {
    match crate::units::parse_bytes(s)? {
        0 => Err("must be more than zero (examples: 1MiB, 64MiB)".to_string()),
        n => Ok(n),
    }
}

/// The node name: flag, then the downward-API variable Kubernetes sets, then the host name.
pub(super) fn node_name(flag: Option<&str>) -> String {
    flag.map(String::from)
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// `backup --only-on-leader` on a node whose member does not lead; JSON `{"standby": {...}}`.
#[derive(Serialize)]
pub(super) struct StandbyReport {
    pub(super) standby: crate::snapshot::Standby,
}

impl Render for StandbyReport {
    fn table(&self) -> String {
        let s = &self.standby;
        format!(
            "no backup: member {} at {} is not the leader (leader: {}); --only-on-leader\n",
            s.member_id,
            s.endpoint,
            s.leader_id
                .as_deref()
                .unwrap_or("none, an election is under way")
        )
    }
}

impl Render for BackupReport {
    fn table(&self) -> String {
        let m = &self.manifest;
        format!(
            "snapshot {id} stored in {store}\n\
             object     {key} ({stored}, {ratio:.1}x smaller{enc})\n\
             member     {name} ({mid}, {role}) at {ep}\n\
             cluster    {cid} ({verdict})\n\
             revision   {rev}, db {db}, sha256 {sha}\n\
             took       {secs:.2} s ({rate:.0} MiB/s)\n",
            id = m.id,
            store = self.store,
            key = m.object_key,
            stored = human_bytes(m.stored_size),
            ratio = self.ratio,
            enc = if m.encrypted() { ", age-encrypted" } else { "" },
            name = m.member_name,
            mid = m.member_id,
            role = if self.source_is_leader {
                "leader"
            } else {
                "follower"
            },
            ep = self.source_endpoint,
            cid = m.cluster_id,
            verdict = self.cluster_verdict.as_str(),
            rev = m.revision,
            db = human_bytes(m.db_size),
            sha = m.db_sha256,
            secs = self.elapsed_ms as f64 / 1000.0,
            rate = self.mib_per_s,
        )
    }
}

/// What one backup run did.
pub enum BackupRun {
    Stored(Box<BackupOutcome>),
    /// `--only-on-leader` and this node's member does not lead: nothing was done.
    Standby(crate::snapshot::Standby),
}

/// A stored snapshot, then the prune's outcome when `--prune` asked.
pub struct BackupOutcome {
    pub report: BackupReport,
    /// `Some(Err(why))` when the backup was stored but pruning failed.
    pub pruned: Option<Result<(), String>>,
}

/// Where a backup run failed, for the daemon's `step` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStep {
    Snapshot,
    Upload,
}

/// A backup failure and the step it happened in.
pub struct BackupFailure {
    pub step: BackupStep,
    pub error: anyhow::Error,
}

/// Everything `cpkeep backup` does but printing: resolves the flags (reading every file they name
/// now), takes the snapshot into the store, then prunes when asked. Shared with the daemon.
/// `control` cancels the snapshot (its upload is aborted) and counts the bytes sent.
pub async fn backup_once(
    args: &BackupArgs,
    progress: &dyn crate::snapshot::Progress,
    control: crate::snapshot::StreamControl,
) -> Result<BackupRun, BackupFailure> {
    let setup = |e: anyhow::Error| BackupFailure {
        step: BackupStep::Snapshot,
        error: e,
    };
    let conn = args.conn.resolve().map_err(|e| setup(e.into()))?;
    let (encoding, recipients) = args
        .encoding
        .encoding()
        .map_err(|e| setup(snapshot_failure(e)))?;
    let endpoint = match &args.endpoint {
        Some(e) => Some(Endpoint::parse(e, conn.tls.is_some()).map_err(|e| setup(e.into()))?),
        None => None,
    };
    let policy = args.retention.policy();
    if args.prune && !policy.has_rules() {
        return Err(setup(ExitError {
            code: Exit::Unknown,
            message: "--prune needs a retention rule: --keep-last N and/or --keep-hourly/--keep-daily/--keep-weekly/--keep-monthly".into(),
        }
        .into()));
    }
    if args.only_on_leader {
        if let Some(standby) = crate::snapshot::standby(&conn)
            .await
            .map_err(|e| setup(snapshot_failure(e)))?
        {
            tracing::info!(
                endpoint = %standby.endpoint,
                member = %standby.member_id,
                leader = standby.leader_id.as_deref().unwrap_or("none"),
                "not the leader: no backup on this node"
            );
            return Ok(BackupRun::Standby(standby));
        }
    }
    let store = args.store.open().await.map_err(|e| BackupFailure {
        step: BackupStep::Upload,
        error: e.into(),
    })?;
    let opts = BackupOptions {
        endpoint,
        allow_degraded: args.allow_degraded,
        stall_timeout: args.stall_timeout,
        encoding,
        recipients,
        node_name: node_name(args.node_name.as_deref()),
        control,
    };
    let report = backup(&conn, store.as_ref(), &opts, progress)
        .await
        .map_err(|e| BackupFailure {
            step: if matches!(e, crate::snapshot::SnapshotError::Store(_)) {
                BackupStep::Upload
            } else {
                BackupStep::Snapshot
            },
            error: snapshot_failure(e),
        })?;
    let pruned = if args.prune {
        let r = prune_cluster(store.as_ref(), &report.manifest.cluster_id, &policy, false).await;
        Some(match r {
            Ok(r) if r.errors.is_empty() => {
                tracing::info!(
                    deleted = r.deleted_objects,
                    aborted = r.aborted_uploads,
                    "pruned"
                );
                Ok(())
            }
            Ok(r) => Err(r.errors.join("; ")),
            Err(e) => Err(e.to_string()),
        })
    } else {
        None
    };
    Ok(BackupRun::Stored(Box::new(BackupOutcome {
        report,
        pruned,
    })))
}

pub async fn run(args: BackupArgs, out: &Renderer, quiet: bool) -> anyhow::Result<Exit> {
    if args.follow.follow {
        return super::backup_follow::run(args, out, quiet).await;
    }
    let progress = super::progress::for_stderr(quiet);
    let control = crate::snapshot::StreamControl {
        cancel: super::signals::cancel_on_signals(),
        ..Default::default()
    };
    let outcome = match backup_once(&args, progress.as_ref(), control)
        .await
        .map_err(|f| f.error)?
    {
        BackupRun::Stored(o) => o,
        BackupRun::Standby(s) => {
            out.print(&StandbyReport { standby: s })?;
            return Ok(Exit::Ok);
        }
    };
    out.print(&outcome.report)?;
    if let Some(Err(why)) = outcome.pruned {
        eprintln!("cpkeep: backup stored, but pruning failed: {why}");
        return Ok(Exit::Warning);
    }
    Ok(Exit::Ok)
}
