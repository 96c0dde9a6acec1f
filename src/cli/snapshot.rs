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
use crate::restore::drill::{self, DrillOptions, DrillReport};
use crate::restore::pitr::{self, Target};
use crate::snapshot::{
    apply_prune, catalog, fetch_to_file, load_identities, plan_prune, save, status_of_file,
    verify_file, Fetched, FileEncoding, Manifest, PruneReport, RetentionPolicy, SaveReport,
    SnapshotEntry, SnapshotError, StatusReport, TrailerState, VerifyReport,
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
    /// Hash, revision, total keys and size of a snapshot, as `etcdutl snapshot status` reports them;
    /// exit 2 for a damaged snapshot, 3 for a file that is not a snapshot.
    Status(InspectArgs),
    /// Check a snapshot: sha256 trailer, bbolt structure, etcd schema (and the manifest for stored
    /// ones); exit 0 good, 2 bad, 3 not a snapshot (missing, a directory, empty, other content).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A snapshot file (raw db, .zst or age, told by content), or (with --store) a stored
    /// snapshot's ID or `latest`.
    pub snapshot: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// age identity file for encrypted snapshots (files or stored).
    #[arg(long, env = "CPKEEP_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Which cluster, when the store holds several.
    #[arg(long)]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub inspect: InspectArgs,
    /// Also decode every key-value and show where the space goes.
    #[arg(long)]
    pub deep: bool,
    /// Also run a restore drill: restore natively into a temp dir, boot etcd on it on loopback
    /// ports, and compare the revision and every key's value and mod revision with the snapshot.
    #[arg(long)]
    pub restore_test: bool,
    /// The etcd binary the drill boots [default: etcd in PATH]
    #[arg(long, value_name = "PATH")]
    pub etcd_bin: Option<PathBuf>,
    /// How long etcd may take to boot in the drill.
    #[arg(long, default_value = "2m", value_parser = super::duration::positive)]
    pub boot_timeout: Duration,
    /// With --restore-test and --store: drill a point-in-time restore instead, this snapshot
    /// with its revision log replayed up to revision N, compared with the snapshot's keys with
    /// the log's events applied.
    #[arg(long, value_name = "N", requires = "restore_test", value_parser = clap::value_parser!(i64).range(1..))]
    pub to_revision: Option<i64>,
}

/// `snapshot verify`'s report, with the drill's when one ran.
#[derive(Debug, Serialize)]
pub struct Verified {
    #[serde(flatten)]
    pub verify: VerifyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_test: Option<DrillReport>,
}

impl Render for Verified {
    fn table(&self) -> String {
        let mut s = self.verify.table();
        if let Some(d) = &self.restore_test {
            s.push_str(&format!(
                "restore     {} (restored {:.1}s, etcd up {:.1}s, compared {:.1}s with {})\n",
                if d.ok { "GOOD" } else { "BAD" },
                d.restore_seconds,
                d.boot_seconds,
                d.compare_seconds,
                d.etcd_bin.display()
            ));
            let holder = match d.log_replayed_to {
                Some(n) => format!("the snapshot with its revision log to {n}"),
                None => "the snapshot".to_string(),
            };
            s.push_str(&format!(
                "  etcd served revision {} and {} keys; {holder} holds revision {} and {} keys; {} values compared\n",
                d.served_revision, d.served_keys, d.snapshot_revision, d.snapshot_keys, d.compared_keys
            ));
            for p in &d.problems {
                s.push_str(&format!("problem     {p}\n"));
            }
        }
        s
    }
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
    #[arg(long, default_value = "60s", value_parser = super::duration::positive)]
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
struct Listing {
    entries: Vec<SnapshotEntry>,
    /// Per cluster with a revision log: what a point-in-time restore reaches.
    restorable: Vec<ClusterCoverage>,
    all: bool,
}

/// One snapshot as `-o json` shows it: its catalog entry and, when its cluster has a revision
/// log, how far a point-in-time restore from it reaches.
#[derive(Serialize)]
struct ListedRow<'a> {
    #[serde(flatten)]
    entry: &'a SnapshotEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    point_in_time: Option<crate::revlog::Reach>,
}

/// `-o json` stays an array of snapshots (what scripts already read).
impl Serialize for Listing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.entries.len()))?;
        for entry in &self.entries {
            let point_in_time = self
                .restorable
                .iter()
                .find(|c| c.cluster_id == entry.cluster_id)
                .zip(entry.revision.filter(|_| entry.complete))
                .map(|(c, revision)| {
                    crate::revlog::reach(
                        &crate::revlog::SnapshotPoint {
                            id: entry.id.clone(),
                            revision,
                            time: entry.created,
                        },
                        &c.listed,
                    )
                });
            seq.serialize_element(&ListedRow {
                entry,
                point_in_time,
            })?;
        }
        seq.end()
    }
}

struct ClusterCoverage {
    cluster_id: String,
    listed: Vec<crate::revlog::ListedSegment>,
    coverage: crate::revlog::Coverage,
}

/// The restorable windows of every cluster in `entries` that has a revision log.
async fn coverages(
    store: &dyn ObjectStore,
    entries: &[SnapshotEntry],
) -> Result<Vec<ClusterCoverage>, SnapshotError> {
    let clusters: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.cluster_id.as_str()).collect();
    let mut out = Vec::new();
    for cluster in clusters {
        let listed = list_log(store, cluster).await?;
        if listed.is_empty() {
            continue;
        }
        let points: Vec<crate::revlog::SnapshotPoint> = entries
            .iter()
            .filter(|e| e.complete && e.cluster_id == cluster)
            .filter_map(|e| {
                Some(crate::revlog::SnapshotPoint {
                    id: e.id.clone(),
                    revision: e.revision?,
                    time: e.created,
                })
            })
            .collect();
        out.push(ClusterCoverage {
            cluster_id: cluster.to_string(),
            coverage: crate::revlog::coverage(&points, &listed),
            listed,
        });
    }
    Ok(out)
}

/// A cluster's revision log segments, a store failure classed as the store's.
async fn list_log(
    store: &dyn ObjectStore,
    cluster_id: &str,
) -> Result<Vec<crate::revlog::ListedSegment>, SnapshotError> {
    crate::revlog::list_segments(store, cluster_id)
        .await
        .map_err(|e| match e {
            crate::revlog::StoredLogError::Store { source, .. } => SnapshotError::from(*source),
            other => SnapshotError::Usage(format!("cannot list the revision log: {other}")),
        })
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|c| c.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
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
                when(e.created),
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
        let mut s = t.render();
        for c in &self.restorable {
            s.push_str(&format!(
                "\ncluster {}: point-in-time restore ({} log segments)\n",
                c.cluster_id,
                c.listed.len()
            ));
            let mut w = Table::new(["FROM REVISION", "FROM", "TO REVISION", "TO", "LOGGED"]);
            for win in &c.coverage.windows {
                w.row([
                    win.from_revision.to_string(),
                    when(win.from_time),
                    win.to_revision.to_string(),
                    when(win.to_time),
                    win.logged_revisions.to_string(),
                ]);
            }
            s.push_str(&w.render());
            for g in &c.coverage.gaps {
                s.push_str(&format!(
                    "GAP: revisions {}…{} cannot be restored: {}\n",
                    g.from_revision, g.to_revision, g.reason
                ));
            }
        }
        s
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
        if self.plan.kept_segments > 0 {
            s.push_str(&format!(
                "keep {} revision log segments (after the oldest kept snapshot)\n",
                self.plan.kept_segments
            ));
        }
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

impl Render for StatusReport {
    fn table(&self) -> String {
        let mut headers = vec!["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
        let mut row = vec![
            format!("{:x}", self.hash),
            self.revision.to_string(),
            self.total_key.to_string(),
            human_bytes(self.total_size),
        ];
        if let Some(v) = &self.version {
            headers.push("VERSION");
            row.push(v.clone());
        }
        let mut t = Table::new(headers);
        t.row(row);
        t.render()
    }
}

impl Render for VerifyReport {
    fn table(&self) -> String {
        let mut s = format!(
            "{}: {}\n",
            self.source,
            if self.ok { "GOOD" } else { "BAD" }
        );
        let encoding = match self.encoding {
            FileEncoding::Raw => None,
            FileEncoding::Zstd => Some("zstd"),
            FileEncoding::Age | FileEncoding::AgeArmored => Some("age"),
        };
        if let Some(e) = encoding {
            s.push_str(&format!("encoding    {e}: checked decoded\n"));
        }
        let trailer = match self.trailer {
            TrailerState::Verified => "sha256 trailer verified",
            TrailerState::Absent => "no trailer (a raw member/snap/db): nothing to verify",
            TrailerState::Mismatch => "sha256 trailer does NOT match",
            TrailerState::UnexpectedLength => "file length fits no db",
        };
        s.push_str(&format!("trailer     {trailer}\n"));
        s.push_str(&format!(
            "structure   {} pages of {} bytes: {} reachable, {} free{}\n",
            self.pages_total,
            self.page_size,
            self.pages_reachable,
            self.pages_free,
            self.meta_note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
        if let Some(st) = &self.status {
            s.push_str(&format!(
                "etcd        revision {}, {} revisions decoded, {} keys in all buckets, hash {:x}, consistent index {}\n",
                st.revision,
                self.revisions,
                st.total_key,
                st.hash,
                self.consistent_index.map(|c| c.to_string()).unwrap_or_else(|| "-".into())
            ));
        }
        for m in &self.manifest_checks {
            s.push_str(&format!("manifest    {m}\n"));
        }
        if let Some(d) = &self.deep {
            s.push_str(&format!(
                "\nspace       {} revisions ({} tombstones) for {} live keys; {:.0}% of stored bytes would be freed by compaction + defrag\n\n",
                d.revisions, d.tombstones, d.live_keys, d.reclaimable_share * 100.0
            ));
            let mut t = Table::new(["RESOURCE", "KEYS", "BYTES"]);
            let mut rs: Vec<_> = d.resources.iter().collect();
            rs.sort_by_key(|(_, u)| std::cmp::Reverse(u.bytes));
            for (r, u) in rs {
                t.row([r.clone(), u.keys.to_string(), human_bytes(u.bytes)]);
            }
            s.push_str(&t.render());
            let mut t = Table::new(["NAMESPACE", "KEYS", "BYTES"]);
            let mut ns: Vec<_> = d.namespaces.iter().collect();
            ns.sort_by_key(|(_, u)| std::cmp::Reverse(u.bytes));
            for (n, u) in ns.into_iter().take(20) {
                t.row([n.clone(), u.keys.to_string(), human_bytes(u.bytes)]);
            }
            s.push('\n');
            s.push_str(&t.render());
            let mut t = Table::new(["LARGEST KEYS", "BYTES"]);
            for (k, b) in &d.largest {
                t.row([k.clone(), human_bytes(*b)]);
            }
            s.push('\n');
            s.push_str(&t.render());
        }
        for p in &self.problems {
            s.push_str(&format!("problem     {p}\n"));
        }
        s
    }
}

/// A snapshot file to inspect and the identities to decrypt it with: the path given, or a stored
/// snapshot downloaded (decrypted, decompressed and checked against its manifest) into a private
/// temp dir removed afterwards.
async fn local_copy(a: &InspectArgs) -> anyhow::Result<LocalCopy> {
    if a.store.store.is_none() {
        let identities = match &a.identity {
            Some(p) => Some(load_identities(p).map_err(snapshot_failure)?),
            None => None,
        };
        return Ok(LocalCopy {
            path: PathBuf::from(&a.snapshot),
            identities,
            manifest: None,
            _dir: None,
        });
    }
    let store = a.store.open().await?;
    let cat = catalog(store.as_ref()).await.map_err(snapshot_failure)?;
    let entry = cat
        .find(&a.snapshot, a.cluster_id.as_deref())
        .map_err(snapshot_failure)?;
    let manifest = entry.manifest.clone().ok_or_else(|| ExitError {
        code: Exit::Unknown,
        message: format!("snapshot {} has no readable manifest", entry.id),
    })?;
    let dir = tempfile::Builder::new()
        .prefix("cpkeep-inspect-")
        .tempdir()?;
    let path = dir.path().join(format!("{}.db", manifest.id));
    fetch_to_file(
        store.as_ref(),
        &manifest,
        &path,
        a.identity.as_deref(),
        false,
    )
    .await
    .map_err(snapshot_failure)?;
    Ok(LocalCopy {
        path,
        identities: None,
        manifest: Some(manifest),
        _dir: Some(dir),
    })
}

/// What [`local_copy`] gives.
struct LocalCopy {
    path: PathBuf,
    /// For a local file (a stored snapshot is decoded while downloading).
    identities: Option<Vec<Box<dyn age::Identity + Send + Sync>>>,
    manifest: Option<Manifest>,
    _dir: Option<tempfile::TempDir>,
}

/// Plans and (unless dry-run) applies a prune for one cluster.
pub async fn prune_cluster(
    store: &dyn ObjectStore,
    cluster_id: &str,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<PruneReport, SnapshotError> {
    let cat = catalog(store).await?;
    let segments = list_log(store, cluster_id).await?;
    let plan = plan_prune(&cat, &segments, cluster_id, policy, crate::testhooks::now())?;
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
                .iter()
                .filter(|e| a.all || e.complete)
                .filter(|e| a.cluster_id.as_ref().is_none_or(|c| &e.cluster_id == c))
                .cloned()
                .collect();
            if a.all {
                entries.extend(cat.pending_entries());
            }
            let restorable = coverages(store.as_ref(), &entries)
                .await
                .map_err(snapshot_failure)?;
            out.print(&Listing {
                entries,
                restorable,
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
                &crate::snapshot::StreamControl {
                    cancel: super::signals::cancel_on_signals(),
                    ..Default::default()
                },
            )
            .await
            .map_err(snapshot_failure)?;
            out.print(&report)?;
            Ok(Exit::Ok)
        }
        SnapshotCommand::Status(a) => {
            let copy = local_copy(&a).await?;
            let (path, ids) = (copy.path.clone(), copy.identities);
            let report = tokio::task::spawn_blocking(move || status_of_file(&path, ids.as_deref()))
                .await?
                .map_err(|e| match e {
                    // A damaged snapshot is as bad here as verify's BAD.
                    SnapshotError::Corrupt { .. } => ExitError {
                        code: Exit::Critical,
                        message: e.to_string(),
                    }
                    .into(),
                    other => snapshot_failure(other),
                })?;
            out.print(&report)?;
            Ok(Exit::Ok)
        }
        SnapshotCommand::Verify(a) => {
            let v = verify(&a).await?;
            let ok = v.verify.ok;
            out.print(&v)?;
            Ok(if ok { Exit::Ok } else { Exit::Critical })
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

/// `snapshot verify` without printing (its report says whether the snapshot is good); shared with
/// the daemon's restore drill.
pub async fn verify(a: &VerifyArgs) -> anyhow::Result<Verified> {
    if a.to_revision.is_some() && a.inspect.store.store.is_none() {
        return Err(ExitError {
            code: Exit::Unknown,
            message:
                "--to-revision drills a stored snapshot and its revision log: pass --store URL"
                    .into(),
        }
        .into());
    }
    // A stored snapshot that fails its manifest checks while downloading is BAD (exit 2),
    // not a failed operation.
    let copy = local_copy(&a.inspect).await.map_err(|e| {
        if super::exit::code_of(&e) == Exit::Warning {
            ExitError {
                code: Exit::Critical,
                message: super::exit::one_line(&e),
            }
            .into()
        } else {
            e
        }
    })?;
    let deep = a.deep;
    let (path, manifest) = (copy.path.clone(), copy.manifest.clone());
    let (p, ids) = (path.clone(), copy.identities);
    let mut report = tokio::task::spawn_blocking(move || verify_file(&p, deep, ids.as_deref()))
        .await?
        .map_err(snapshot_failure)?;
    if let Some(m) = &manifest {
        report.source = format!("{} ({})", m.id, m.object_key);
        report.manifest_checks.push(format!(
            "object sha256 and size, db sha256 and size match the manifest ({} stored, {} db)",
            human_bytes(m.stored_size),
            human_bytes(m.db_size)
        ));
        match report.status.as_ref().map(|s| s.revision) {
            Some(r) if r == m.revision => report
                .manifest_checks
                .push(format!("revision {r} matches the manifest")),
            Some(r) => {
                report.ok = false;
                report.problems.push(format!(
                    "the db's revision is {r}, the manifest says {}",
                    m.revision
                ));
            }
            None => {}
        }
    }
    let mut restore_test = None;
    if a.restore_test && report.ok {
        let etcd_bin = a
            .etcd_bin
            .clone()
            .or_else(drill::etcd_in_path)
            .ok_or_else(|| ExitError {
                code: Exit::Unknown,
                message: "restore drill: no etcd binary in PATH: pass --etcd-bin".into(),
            })?;
        let options = DrillOptions {
            etcd_bin,
            boot_timeout: a.boot_timeout,
        };
        // A snapshot etcd cannot boot from is BAD (exit 2), like a failed check.
        let bad = |e| match e {
            crate::restore::RestoreError::Usage(_) => super::restore::restore_failure(e),
            other => anyhow::Error::from(ExitError {
                code: Exit::Critical,
                message: other.to_string(),
            }),
        };
        let d = match (a.to_revision, &manifest) {
            (None, _) => drill::drill(&path, &options).await.map_err(bad)?,
            (Some(n), Some(m)) => {
                let store = a.inspect.store.open().await?;
                let cat = catalog(store.as_ref()).await.map_err(snapshot_failure)?;
                let ids = || -> anyhow::Result<_> {
                    Ok(match &a.inspect.identity {
                        Some(p) => Some(load_identities(p).map_err(snapshot_failure)?),
                        None => None,
                    })
                };
                let plan = pitr::select(
                    store.as_ref(),
                    &cat,
                    Some(&m.cluster_id),
                    Target::Revision(n),
                    ids()?.as_deref(),
                    Some(&m.id),
                )
                .await
                .map_err(super::restore::restore_failure)?;
                let pitr = drill::PointInTime {
                    store: store.as_ref(),
                    plan,
                    identities: [ids()?, ids()?, ids()?],
                };
                drill::drill_point_in_time(&path, pitr, &options)
                    .await
                    .map_err(bad)?
            }
            (Some(_), None) => return Err(ExitError {
                code: Exit::Unknown,
                message:
                    "--to-revision drills a stored snapshot and its revision log: pass --store URL"
                        .into(),
            }
            .into()),
        };
        report.ok &= d.ok;
        restore_test = Some(d);
    }
    Ok(Verified {
        verify: report,
        restore_test,
    })
}
