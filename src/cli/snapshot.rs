//! `cpkeep snapshot list|get|save|prune`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::connection::ConnectionArgs;
use super::exit::{snapshot_failure, ExitError};
use super::output::{Render, Renderer};
use super::store_args::StoreArgs;
use super::table::Table;
use super::Exit;
use crate::etcd::Endpoint;
use crate::snapshot::{
    apply_prune, catalog, fetch_to_file, plan_prune, save, Fetched, PruneReport, RetentionPolicy,
    SaveReport, SnapshotEntry, SnapshotError,
};
use crate::store::ObjectStore;
use crate::units::human_bytes;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List stored snapshots, newest first (complete ones only unless --all).
    List(ListArgs),
    /// Download a stored snapshot as a raw db file that etcdctl/etcdutl accept.
    Get(GetArgs),
    /// Save a verified snapshot of a live member to a local file (like etcdctl snapshot save).
    Save(SaveArgs),
    /// Delete snapshots no retention rule keeps, stale leftovers and abandoned uploads.
    Prune(PruneArgs),
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Retention")]
pub struct RetentionArgs {
    /// Keep the newest N snapshots.
    #[arg(long, default_value_t = 0)]
    pub keep_last: usize,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: usize,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_daily: usize,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: usize,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: usize,
    /// Incomplete leftovers and unfinished uploads older than this are removed.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,
}

impl RetentionArgs {
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            stale_after: self.stale_after,
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also list incomplete leftovers and unfinished uploads.
    #[arg(long)]
    pub all: bool,
    /// Only this cluster's snapshots.
    #[arg(long)]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Snapshot ID, or `latest`.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// File to write (raw db with etcd's sha256 trailer).
    #[arg(short = 'O', long = "output-file")]
    pub output_file: PathBuf,
    /// age identity file for encrypted snapshots.
    #[arg(long, env = "CPKEEP_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Which cluster, when the store holds several.
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// File to write.
    pub file: PathBuf,
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Take the snapshot from this member [default: the healthy follower with the highest applied index]
    #[arg(long, env = "CPKEEP_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Save even when quorum is lost.
    #[arg(long)]
    pub allow_degraded: bool,
    /// Fail when the stream brings no bytes for this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// The cluster to prune [default: the only one in the store]
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Print the plan, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The listing as `snapshot list` prints it.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Listing {
    entries: Vec<SnapshotEntry>,
    #[serde(skip)]
    all: bool,
}

impl Render for Listing {
    fn table(&self) -> String {
        let mut headers = vec![
            "ID",
            "CLUSTER",
            "REVISION",
            "CREATED",
            "DB SIZE",
            "STORED",
            "COMPRESSION",
            "ENCRYPTED",
        ];
        if self.all {
            headers.push("STATE");
        }
        let mut t = Table::new(headers);
        for e in &self.entries {
            let mut row = vec![
                e.id.clone(),
                e.cluster_id.clone(),
                e.revision
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.created
                    .map(|c| c.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_else(|| "-".into()),
                e.db_size.map(human_bytes).unwrap_or_else(|| "-".into()),
                e.stored_size.map(human_bytes).unwrap_or_else(|| "-".into()),
                e.compression
                    .map(|c| format!("{c:?}").to_lowercase())
                    .unwrap_or_else(|| "-".into()),
                if e.encrypted { "yes" } else { "no" }.to_string(),
            ];
            if self.all {
                row.push(if e.complete {
                    "complete".to_string()
                } else {
                    format!("INCOMPLETE: {}", e.problem.clone().unwrap_or_default())
                });
            }
            t.row(row);
        }
        t.render()
    }
}

impl Render for Fetched {
    fn table(&self) -> String {
        format!(
            "wrote {} (snapshot {}, revision {}, db {}, sha256 {}, trailer verified)\n",
            self.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            self.id,
            self.revision,
            human_bytes(self.db_size),
            self.db_sha256
        )
    }
}

impl Render for SaveReport {
    fn table(&self) -> String {
        format!(
            "saved {} from member {} at {} (cluster {}, revision {}, db {}, sha256 {}, trailer verified)\n",
            self.path.display(),
            self.member_name,
            self.source_endpoint,
            self.cluster_id,
            self.revision.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
            human_bytes(self.db_size),
            self.db_sha256
        )
    }
}

impl Render for PruneReport {
    fn table(&self) -> String {
        let mut t = Table::new(["ACTION", "SNAPSHOT", "WHY"]);
        for k in &self.plan.keep {
            t.row(["keep".to_string(), k.id.clone(), k.reasons.join(", ")]);
        }
        for d in &self.plan.delete {
            t.row([
                if self.dry_run {
                    "would delete"
                } else {
                    "delete"
                }
                .to_string(),
                d.id.clone(),
                d.why.clone(),
            ]);
        }
        for a in &self.plan.abort {
            t.row([
                if self.dry_run { "would abort" } else { "abort" }.to_string(),
                a.key.clone(),
                "unfinished upload".to_string(),
            ]);
        }
        let mut s = format!("cluster {}\n", self.plan.cluster_id);
        s.push_str(&t.render());
        if !self.dry_run {
            s.push_str(&format!(
                "deleted {} objects, aborted {} uploads\n",
                self.deleted_objects, self.aborted_uploads
            ));
        }
        for e in &self.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        s
    }
}

/// Plans and (unless dry-run) applies a prune for one cluster.
pub async fn prune_cluster(
    store: &dyn ObjectStore,
    cluster_id: &str,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<PruneReport, SnapshotError> {
    let cat = catalog(store).await?;
    let plan = plan_prune(&cat, cluster_id, policy, chrono::Utc::now())?;
    if dry_run {
        return Ok(PruneReport {
            plan,
            dry_run: true,
            deleted_objects: 0,
            aborted_uploads: 0,
            errors: Vec::new(),
        });
    }
    Ok(apply_prune(store, plan).await)
}

pub async fn run(cmd: SnapshotCommand, out: &Renderer, quiet: bool) -> anyhow::Result<Exit> {
    match cmd {
        SnapshotCommand::List(a) => {
            let store = a.store.open().await?;
            let cat = catalog(store.as_ref()).await.map_err(snapshot_failure)?;
            let mut entries: Vec<SnapshotEntry> = cat
                .entries
                .into_iter()
                .filter(|e| a.all || e.complete)
                .filter(|e| a.cluster_id.as_ref().is_none_or(|c| &e.cluster_id == c))
                .collect();
            if a.all {
                for p in cat.pending {
                    let (cluster, name) = p.key.split_once('/').unwrap_or(("", &p.key));
                    entries.push(SnapshotEntry {
                        id: name.split(".db").next().unwrap_or(name).to_string(),
                        cluster_id: cluster.to_string(),
                        revision: None,
                        created: p.initiated,
                        db_size: None,
                        stored_size: None,
                        compression: None,
                        encrypted: false,
                        member_name: None,
                        etcd_version: None,
                        object_key: Some(p.key.clone()),
                        manifest_key: None,
                        complete: false,
                        problem: Some(format!("upload in progress or abandoned ({})", p.id)),
                        manifest: None,
                    });
                }
            }
            out.print(&Listing {
                entries,
                all: a.all,
            })?;
            Ok(Exit::Ok)
        }
        SnapshotCommand::Get(a) => {
            let store = a.store.open().await?;
            let cat = catalog(store.as_ref()).await.map_err(snapshot_failure)?;
            let entry = cat
                .find(&a.id, a.cluster_id.as_deref())
                .map_err(snapshot_failure)?;
            let manifest = entry.manifest.clone().ok_or_else(|| ExitError {
                code: Exit::Unknown,
                message: format!("snapshot {} has no readable manifest", entry.id),
            })?;
            let fetched = fetch_to_file(
                store.as_ref(),
                &manifest,
                &a.output_file,
                a.identity.as_deref(),
                a.force,
            )
            .await
            .map_err(snapshot_failure)?;
            out.print(&fetched)?;
            Ok(Exit::Ok)
        }
        SnapshotCommand::Save(a) => {
            let conn = a.conn.resolve()?;
            let endpoint = match &a.endpoint {
                Some(e) => Some(Endpoint::parse(e, conn.tls.is_some())?),
                None => None,
            };
            let progress = super::progress::for_stderr(quiet);
            let report = save(
                &conn,
                endpoint.as_ref(),
                a.allow_degraded,
                a.stall_timeout,
                &a.file,
                a.force,
                progress.as_ref(),
            )
            .await
            .map_err(snapshot_failure)?;
            out.print(&report)?;
            Ok(Exit::Ok)
        }
        SnapshotCommand::Prune(a) => {
            let store = a.store.open().await?;
            let cluster = match a.cluster_id {
                Some(c) => c,
                None => {
                    let cat = catalog(store.as_ref()).await.map_err(snapshot_failure)?;
                    let mut ids: Vec<String> =
                        cat.entries.iter().map(|e| e.cluster_id.clone()).collect();
                    ids.sort();
                    ids.dedup();
                    match ids.len() {
                        0 => {
                            return Err(ExitError {
                                code: Exit::Unknown,
                                message: format!("{}: no snapshots to prune", store.url()),
                            }
                            .into())
                        }
                        1 => ids.remove(0),
                        _ => {
                            return Err(ExitError {
                                code: Exit::Unknown,
                                message: format!(
                                    "the store holds snapshots of several clusters ({}): pass --cluster-id",
                                    ids.join(", ")
                                ),
                            }
                            .into())
                        }
                    }
                }
            };
            let report = prune_cluster(store.as_ref(), &cluster, &a.retention.policy(), a.dry_run)
                .await
                .map_err(snapshot_failure)?;
            out.print(&report)?;
            Ok(if report.errors.is_empty() {
                Exit::Ok
            } else {
                Exit::Warning
            })
        }
    }
}
