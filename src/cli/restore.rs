//! `cpkeep restore`: etcdutl-compatible flags, the source (a file, or a stored snapshot streamed
//! from the store), the plan (`--dry-run` prints it), and the report.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::exit::{snapshot_failure, Exit, ExitError};
use super::output::{Render, Renderer};
use super::store_args::StoreArgs;
use crate::restore::{
    self, Bump, RestoreError, RestoreOptions, RestorePlan, RestoreReport, RestoreSource,
};
use crate::snapshot::{catalog, load_identities};
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A snapshot file (raw db, .zst or age, told by content), or with --store a stored
    /// snapshot's ID or `latest`.
    pub snapshot: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// age identity file, for encrypted snapshots.
    #[arg(long, env = "CPKEEP_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Which cluster's snapshot, when the store holds several.
    #[arg(long)]
    pub cluster_id: Option<String>,

    /// This member's name.
    #[arg(long, default_value = restore::run::DEFAULT_NAME)]
    pub name: String,
    /// The restored cluster: name=peerURL[,name=peerURL...] [default: this member alone]
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Cluster token, part of every member ID: use the same on every member.
    #[arg(long, default_value = restore::run::DEFAULT_TOKEN)]
    pub initial_cluster_token: String,
    /// This member's peer URLs (comma-separated), as in --initial-cluster.
    #[arg(long, value_delimiter = ',', default_value = restore::run::DEFAULT_PEER_URL)]
    pub initial_advertise_peer_urls: Vec<String>,
    /// The data directory to create [default: <name>.etcd]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A separate WAL directory to create [default: <data-dir>/member/wal]
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// Restore a file without etcd's sha256 trailer (a copy of a member's member/snap/db). Its
    /// structure is checked instead.
    #[arg(long)]
    pub skip_hash_check: bool,
    /// Add N to the snapshot's latest revision. Kubernetes caches resource versions in every
    /// watcher and informer: after a restore, revisions must move forward, not repeat. Use a
    /// margin larger than the writes lost since the snapshot, e.g. 1000000000.
    #[arg(long, value_name = "N")]
    pub bump_revision: Option<u64>,
    /// With --bump-revision: mark every earlier revision compacted, so watchers get "compacted"
    /// and relist instead of missing what changed (what Kubernetes needs after a restore).
    #[arg(long, requires = "bump_revision")]
    pub mark_compacted: bool,
    /// Drop NOSPACE/CORRUPT alarms the snapshot carries (they are reported either way).
    #[arg(long)]
    pub clear_alarms: bool,
    /// Rename an existing non-empty data (and WAL) directory to <dir>.bak-<timestamp> first.
    #[arg(long)]
    pub move_aside: bool,
    /// Print the plan, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl RestoreArgs {
    fn options(&self) -> RestoreOptions {
        RestoreOptions {
            name: self.name.clone(),
            initial_cluster: self.initial_cluster.clone(),
            initial_cluster_token: self.initial_cluster_token.clone(),
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
            data_dir: self.data_dir.clone(),
            wal_dir: self.wal_dir.clone(),
            skip_hash_check: self.skip_hash_check,
            bump: self.bump_revision.map(|by| Bump {
                by,
                mark_compacted: self.mark_compacted,
            }),
            clear_alarms: self.clear_alarms,
            move_aside: self.move_aside,
            disable_auth: false,
        }
    }
}

/// Maps a restore failure to its exit code: 1 failed while restoring (corrupt or unreadable
/// snapshot, write error), 2 refused (something is in the way), 3 could not start (bad flags).
pub fn restore_failure(e: RestoreError) -> anyhow::Error {
    let code = match &e {
        RestoreError::Fetch(s) => return snapshot_failure_owned(s.to_string(), s.class()),
        RestoreError::NotEmpty(_) | RestoreError::AlreadyExists(_) => Exit::Critical,
        RestoreError::Snapshot(_) | RestoreError::Write(_) | RestoreError::Io { .. } => {
            Exit::Warning
        }
        _ => Exit::Unknown,
    };
    ExitError {
        code,
        message: e.to_string(),
    }
    .into()
}

fn snapshot_failure_owned(message: String, class: crate::snapshot::FailureClass) -> anyhow::Error {
    use crate::snapshot::FailureClass;
    let code = match class {
        FailureClass::Failed => Exit::Warning,
        FailureClass::Refused => Exit::Critical,
        FailureClass::Unusable => Exit::Unknown,
    };
    ExitError { code, message }.into()
}

/// The plan, as `--dry-run` prints it.
#[derive(Debug, Serialize)]
struct DryRun {
    dry_run: bool,
    #[serde(flatten)]
    plan: RestorePlan,
    source: String,
}

fn plan_lines(p: &RestorePlan) -> String {
    let mut s = format!(
        "member      {} ({:x}) of cluster {:x}\n",
        p.name, p.member_id, p.cluster_id
    );
    for m in &p.members {
        s.push_str(&format!(
            "  {:<10}{:x}  {}\n",
            m.name,
            m.id,
            m.peer_urls.join(",")
        ));
    }
    s.push_str(&format!("data dir    {}\n", p.data_dir.display()));
    if let Some(w) = &p.wal_dir {
        s.push_str(&format!("wal dir     {}\n", w.display()));
    }
    for a in &p.move_aside {
        s.push_str(&format!(
            "move aside  {} -> {}\n",
            a.path.display(),
            a.to.display()
        ));
    }
    s
}

impl Render for DryRun {
    fn table(&self) -> String {
        format!(
            "dry run: nothing written\nsource      {}\n{}",
            self.source,
            plan_lines(&self.plan)
        )
    }
}

impl Render for RestoreReport {
    fn table(&self) -> String {
        let mut s = format!("restored    {}\n", self.source);
        s.push_str(&plan_lines(&self.plan));
        let db = &self.db;
        if db.revision != db.snapshot_revision {
            s.push_str(&format!(
                "revision    {} (snapshot {}, bumped{})\n",
                db.revision,
                db.snapshot_revision,
                if db.compacted_at.is_some() {
                    ", earlier revisions marked compacted"
                } else {
                    ""
                }
            ));
        } else {
            s.push_str(&format!("revision    {}\n", db.revision));
        }
        s.push_str(&format!(
            "db          {} keys, {} ({})\n",
            db.keys,
            human_bytes(db.db_size),
            if self.hash_checked {
                "sha256 verified, rewritten, checked"
            } else {
                "NO sha256 check (--skip-hash-check), structure checked, rewritten, checked"
            }
        ));
        if db.alarms.is_empty() {
            s.push_str("alarms      none\n");
        } else {
            s.push_str(&format!(
                "alarms      {} ({})\n",
                db.alarms.join(", "),
                if db.alarms_cleared {
                    "cleared"
                } else {
                    "kept: etcd will start with them raised; --clear-alarms drops them"
                }
            ));
        }
        s.push_str(&format!("took        {:.1}s\n", self.seconds));
        s
    }
}

pub async fn run(a: RestoreArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let options = a.options();
    let plan = restore::plan(&options, chrono::Utc::now()).map_err(restore_failure)?;
    let identities = match &a.identity {
        Some(p) => Some(load_identities(p).map_err(snapshot_failure)?),
        None => None,
    };
    let store = match &a.store.store {
        Some(_) => Some(a.store.open().await?),
        None => None,
    };
    let source = match &store {
        None => {
            let path = PathBuf::from(&a.snapshot);
            if !path.exists() {
                return Err(ExitError {
                    code: Exit::Unknown,
                    message: format!(
                        "cannot read snapshot {}: no such file (pass --store URL to restore a stored snapshot)",
                        path.display()
                    ),
                }
                .into());
            }
            RestoreSource::File { path, identities }
        }
        Some(store) => {
            let cat = catalog(store.as_ref()).await.map_err(snapshot_failure)?;
            let entry = cat
                .find(&a.snapshot, a.cluster_id.as_deref())
                .map_err(snapshot_failure)?;
            let manifest = entry.manifest.clone().ok_or_else(|| ExitError {
                code: Exit::Unknown,
                message: format!("snapshot {} has no readable manifest", entry.id),
            })?;
            RestoreSource::Stored {
                store: store.as_ref(),
                manifest: Box::new(manifest),
                identities,
            }
        }
    };
    if a.dry_run {
        let source = match &source {
            RestoreSource::File { path, .. } => path.display().to_string(),
            RestoreSource::Stored { manifest, .. } => {
                format!("{} ({})", manifest.id, manifest.object_key)
            }
        };
        out.print(&DryRun {
            dry_run: true,
            plan,
            source,
        })?;
        return Ok(Exit::Ok);
    }
    let report = restore::apply(&plan, &options, source)
        .await
        .map_err(restore_failure)?;
    out.print(&report)?;
    Ok(Exit::Ok)
}
