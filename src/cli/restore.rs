//! `cpkeep restore`: etcdutl-compatible flags, the source (a file, or a stored snapshot streamed
//! from the store), the plan (`--dry-run` prints it), and the report. With `--kubeadm`, the whole
//! restore of a kubeadm control-plane node: settings from etcd's static pod manifest, etcd stopped
//! and started again through the kubelet, and the command for the other nodes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::exit::{snapshot_failure, Exit, ExitError};
use super::output::{Render, Renderer};
use super::store_args::StoreArgs;
use crate::restore::kubeadm::{
    self, HealthState, KubeadmError, KubeadmOptions, KubeadmPlan, KubeadmReport, Origin,
    OtherNodes, Overrides, Setting,
};
use crate::restore::pitr::{self, PitrPlan, Target};
use crate::restore::{
    self, Bump, RestoreError, RestoreOptions, RestorePlan, RestoreReport, RestoreSource,
};
use crate::snapshot::{catalog, load_identities};
use crate::store::ObjectStore;
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A snapshot file (raw db, .zst or age, told by content), or with --store a stored
    /// snapshot's ID or `latest`. Not with --to-revision/--to-time, which choose it.
    #[arg(required_unless_present_any = ["to_revision", "to_time"])]
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// age identity file, for encrypted snapshots.
    #[arg(long, env = "CPKEEP_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Which cluster's snapshot, when the store holds several.
    #[arg(long)]
    pub cluster_id: Option<String>,

    /// This member's name [default: default; with --kubeadm: the manifest's]
    #[arg(long)]
    pub name: Option<String>,
    /// The restored cluster: name=peerURL[,name=peerURL...] [default: this member alone; with
    /// --kubeadm: the manifest's]
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Cluster token, part of every member ID: use the same on every member [default:
    /// etcd-cluster; with --kubeadm: a new one, <manifest's or etcd-cluster>-restore-<hash of
    /// the snapshot and the members>]
    #[arg(long)]
    pub initial_cluster_token: Option<String>,
    /// This member's peer URLs (comma-separated), as in --initial-cluster [default:
    /// http://localhost:2380; with --kubeadm: the manifest's]
    #[arg(long, value_delimiter = ',')]
    pub initial_advertise_peer_urls: Option<Vec<String>>,
    /// The data directory to create [default: <name>.etcd; with --kubeadm: the manifest's]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A separate WAL directory to create [default: <data-dir>/member/wal; with --kubeadm: the
    /// manifest's --wal-dir, if any]
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
    /// Rename an existing non-empty data (and WAL) directory to <dir>.bak-<timestamp> first
    /// (always on with --kubeadm).
    #[arg(long)]
    pub move_aside: bool,
    /// Print the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Point-in-time restore (with --store): the newest snapshot at or below revision N, then
    /// its revision log replayed up to N, every event at its own revision.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..), conflicts_with = "to_time")]
    pub to_revision: Option<i64>,
    /// Point-in-time restore (with --store) to the last revision cpkeep received at or before
    /// this time (RFC 3339, e.g. 2026-12-06T17:30:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    pub to_time: Option<chrono::DateTime<chrono::Utc>>,

    /// Restore this kubeadm control-plane node's etcd member: settings from etcd's static pod
    /// manifest (flags given here override them), etcd stopped by moving the manifest out of the
    /// manifests directory, the old data dir moved aside, the manifest put back (also on failure),
    /// then a wait until the member is healthy. Prints the command for the other nodes.
    #[arg(long, help_heading = "kubeadm")]
    pub kubeadm: bool,
    /// etcd's static pod manifest [default: /etc/kubernetes/manifests/etcd.yaml]
    #[arg(long, requires = "kubeadm", help_heading = "kubeadm")]
    pub manifest: Option<PathBuf>,
    /// How long the kubelet may take to stop etcd once its manifest is moved [default: 2m]
    #[arg(long, requires = "kubeadm", value_parser = super::duration::positive, help_heading = "kubeadm")]
    pub stop_timeout: Option<Duration>,
    /// How long the restored member may take to become healthy once the manifest is back
    /// [default: 5m]
    #[arg(long, requires = "kubeadm", value_parser = super::duration::positive, help_heading = "kubeadm")]
    pub wait_timeout: Option<Duration>,
}

/// An RFC 3339 time on the command line.
fn rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e}: expected RFC 3339, e.g. 2026-12-06T17:30:00Z"))
}

impl RestoreArgs {
    /// The point-in-time target, if any.
    fn target(&self) -> Option<Target> {
        self.to_revision
            .map(Target::Revision)
            .or(self.to_time.map(Target::Time))
    }

    /// Refuses flags that cannot go together before anything is read.
    fn check(&self) -> anyhow::Result<()> {
        let usage = |m: String| -> anyhow::Result<()> {
            Err(ExitError {
                code: Exit::Unknown,
                message: m,
            }
            .into())
        };
        let Some(flag) = (match (self.to_revision, self.to_time) {
            (Some(_), _) => Some("--to-revision"),
            (_, Some(_)) => Some("--to-time"),
            _ => None,
        }) else {
            return Ok(());
        };
        if self.store.store.is_none() {
            return usage(format!(
                "{flag} needs --store URL: the revision log it replays is read from a store"
            ));
        }
        if let Some(s) = &self.snapshot {
            return usage(format!(
                "{flag} chooses the snapshot itself (the newest one its log can carry): drop {s:?}"
            ));
        }
        if self.skip_hash_check {
            return usage(format!("{flag} restores a stored snapshot, whose hash is always checked: drop --skip-hash-check"));
        }
        Ok(())
    }

    fn bump(&self) -> Option<Bump> {
        self.bump_revision.map(|by| Bump {
            by,
            mark_compacted: self.mark_compacted,
        })
    }

    fn options(&self) -> RestoreOptions {
        RestoreOptions {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| restore::run::DEFAULT_NAME.to_string()),
            initial_cluster: self.initial_cluster.clone(),
            initial_cluster_token: self
                .initial_cluster_token
                .clone()
                .unwrap_or_else(|| restore::run::DEFAULT_TOKEN.to_string()),
            initial_advertise_peer_urls: self
                .initial_advertise_peer_urls
                .clone()
                .unwrap_or_else(|| vec![restore::run::DEFAULT_PEER_URL.to_string()]),
            data_dir: self.data_dir.clone(),
            wal_dir: self.wal_dir.clone(),
            skip_hash_check: self.skip_hash_check,
            bump: self.bump(),
            clear_alarms: self.clear_alarms,
            move_aside: self.move_aside,
            disable_auth: false,
        }
    }

    fn kubeadm_options(&self, src: &Source<'_>) -> KubeadmOptions {
        let mut o = KubeadmOptions::new(
            self.manifest
                .clone()
                .unwrap_or_else(|| PathBuf::from(kubeadm::DEFAULT_MANIFEST)),
        );
        o.overrides = Overrides {
            name: self.name.clone(),
            initial_cluster: self.initial_cluster.clone(),
            initial_cluster_token: self.initial_cluster_token.clone(),
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
            data_dir: self.data_dir.clone(),
            wal_dir: self.wal_dir.clone(),
        };
        o.skip_hash_check = self.skip_hash_check;
        o.bump = self.bump();
        o.clear_alarms = self.clear_alarms;
        o.source_args = src.args.clone();
        o.source_note = src.note.clone();
        o.snapshot_id = src.id.clone();
        if let Some(t) = self.stop_timeout {
            o.stop_timeout = t;
        }
        if let Some(t) = self.wait_timeout {
            o.wait_timeout = t;
        }
        o
    }
}

/// A restore failure with the exit code of its class ([`RestoreError::class`]).
pub fn restore_failure(e: RestoreError) -> anyhow::Error {
    super::exit::classified(e.class(), &e)
}

/// A kubeadm restore failure with the exit code of its class ([`KubeadmError::class`]).
fn kubeadm_failure(e: KubeadmError) -> anyhow::Error {
    super::exit::classified(e.class(), &e)
}

/// The plan, as `--dry-run` prints it.
#[derive(Debug, Serialize)]
struct DryRun {
    dry_run: bool,
    #[serde(flatten)]
    plan: RestorePlan,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    point_in_time: Option<PitrPlan>,
}

/// The chosen snapshot, the segments and the revision reached, for a dry run.
fn pitr_lines(p: &PitrPlan) -> String {
    let mut s = format!(
        "snapshot    {} at revision {}
",
        p.snapshot_id, p.snapshot_revision
    );
    let replayed = p.segments.iter().filter(|g| !g.leases_only).count();
    if p.segments.is_empty() {
        s.push_str(
            "log         none needed: the target is the snapshot's revision
",
        );
    } else {
        s.push_str(&format!(
            "log         {replayed} segment{} replayed from revision {}
",
            if replayed == 1 { "" } else { "s" },
            p.snapshot_revision + 1
        ));
    }
    for g in &p.segments {
        s.push_str(&format!(
            "  {}  revisions {}…{}, {} events{}
",
            g.object_key,
            g.first_revision,
            g.last_revision,
            g.event_count,
            if g.leases_only {
                " (read for its lease table only)"
            } else {
                ""
            }
        ));
    }
    s.push_str(&format!(
        "reaches     revision {}{}
",
        p.target_revision,
        p.target_time
            .map(|t| format!(
                " (received {})",
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ))
            .unwrap_or_default()
    ));
    s
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
            "dry run: nothing written\nsource      {}\n{}{}",
            self.source,
            self.point_in_time
                .as_ref()
                .map(pitr_lines)
                .unwrap_or_default(),
            plan_lines(&self.plan)
        )
    }
}

impl Render for RestoreReport {
    fn table(&self) -> String {
        let mut s = format!("restored    {}\n", self.source);
        s.push_str(&plan_lines(&self.plan));
        let db = &self.db;
        if let Some(r) = &db.replay {
            s.push_str(&format!(
                "replayed    {} events of {} revisions ({}…{}) from {} segment{}\n",
                r.events,
                r.revisions,
                r.from_revision + 1,
                r.to_revision,
                r.segments,
                if r.segments == 1 { "" } else { "s" }
            ));
            if !r.leases_added.is_empty() {
                s.push_str(&format!(
                    "leases      added {}\n",
                    r.leases_added.join(", ")
                ));
            }
            for w in &r.warnings {
                s.push_str(&format!("warning     {w}\n"));
            }
        }
        let reached = db
            .replay
            .as_ref()
            .map_or(db.snapshot_revision, |r| r.to_revision);
        let from = match &db.replay {
            Some(_) => format!(
                "snapshot {}, revision log to {reached}",
                db.snapshot_revision
            ),
            None => format!("snapshot {}", db.snapshot_revision),
        };
        if db.revision != reached {
            s.push_str(&format!(
                "revision    {} ({from}, bumped{})\n",
                db.revision,
                if db.compacted_at.is_some() {
                    ", earlier revisions marked compacted"
                } else {
                    ""
                }
            ));
        } else if db.replay.is_some() {
            s.push_str(&format!("revision    {} ({from})\n", db.revision));
        } else {
            s.push_str(&format!("revision    {}\n", db.revision));
        }
        s.push_str(&format!(
            "db          {} keys, {} ({})\n",
            db.keys,
            human_bytes(db.db_size),
            if self.hash_checked {
                format!("sha256 verified, {}, checked", db.written.describe())
            } else {
                format!(
                    "NO sha256 check (--skip-hash-check), structure checked, {}, checked",
                    db.written.describe()
                )
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

fn settings_lines(settings: &[Setting]) -> String {
    let mut s = String::new();
    for x in settings {
        let from = match (x.from, &x.manifest_value) {
            (Origin::Manifest, _) => "manifest".to_string(),
            (Origin::Default, _) => "etcd's default".to_string(),
            (Origin::New, _) => "new for this restore: no member of the old cluster can take a \
                                 restored member back"
                .to_string(),
            (Origin::Flag, None) => "flag".to_string(),
            (Origin::Flag, Some(m)) => format!("flag; the manifest says {m}"),
        };
        s.push_str(&format!("  {:<30}{}  ({from})\n", x.flag, x.value));
    }
    s
}

fn notes_lines(notes: &[String]) -> String {
    notes.iter().map(|n| format!("note        {n}\n")).collect()
}

fn other_nodes_lines(o: &Option<OtherNodes>) -> String {
    let Some(o) = o else {
        return "other nodes none: the restored cluster has this member only\n".to_string();
    };
    let mut s = format!(
        "other nodes on each of {}, run:\n\n    {}\n\n",
        o.members.join(", "),
        o.command
    );
    for n in &o.notes {
        s.push_str(&format!("            {n}\n"));
    }
    s
}

/// The kubeadm plan, as `--dry-run` prints it.
#[derive(Debug, Serialize)]
struct KubeadmDryRun {
    dry_run: bool,
    source: String,
    #[serde(flatten)]
    plan: KubeadmPlan,
    #[serde(skip)]
    stop_timeout: Duration,
    #[serde(skip)]
    wait_timeout: Duration,
}

impl Render for KubeadmDryRun {
    fn table(&self) -> String {
        let p = &self.plan;
        let mut s = format!(
            "dry run: nothing changed\nsource      {}\nmanifest    {}\n",
            self.source,
            p.manifest.display()
        );
        s.push_str(&settings_lines(&p.settings));
        s.push_str(&plan_lines(&p.restore));
        s.push_str(&format!("health      {}", p.health.endpoint));
        if let Some(ca) = &p.health.ca {
            s.push_str(&format!(" (CA {}", ca.display()));
            match &p.health.cert {
                Some(c) => s.push_str(&format!(", client certificate {})", c.display())),
                None => s.push(')'),
            }
        }
        s.push('\n');
        match (&p.live_members, &p.live_members_error) {
            (Some(m), _) => s.push_str(&format!("running     {}\n", m.join(", "))),
            (None, Some(e)) => s.push_str(&format!("running     member list not available: {e}\n")),
            (None, None) => {}
        }
        let dur = |d: Duration| humantime::format_duration(d).to_string();
        s.push_str(&format!(
            "steps       1. move the manifest to {} (the kubelet stops etcd)\n\
             \x20           2. wait up to {} for etcd to stop\n\
             \x20           3. restore, moving the old data aside\n\
             \x20           4. put the manifest back (also if anything fails)\n\
             \x20           5. wait up to {} for the member to answer as healthy\n",
            p.parked_manifest.display(),
            dur(self.stop_timeout),
            dur(self.wait_timeout)
        ));
        s.push_str(&notes_lines(&p.notes));
        s.push_str(&other_nodes_lines(&p.other_nodes));
        s
    }
}

impl Render for KubeadmReport {
    fn table(&self) -> String {
        let mut s = format!(
            "stopped     etcd {} {:.1}s after its manifest was moved\n",
            if self.stopped.was_running {
                "stopped"
            } else {
                "was not running; checked"
            },
            self.stopped.seconds
        );
        s.push_str(&self.restored.table());
        s.push_str(&format!(
            "manifest    back in place: {}\n",
            self.manifest.display()
        ));
        let h = &self.health;
        match h.state {
            HealthState::Healthy => s.push_str(&format!(
                "health      healthy after {:.1}s: {} answers as member {} of cluster {}, leader {}, revision {}, etcd {}\n",
                h.seconds,
                h.endpoint,
                h.member_id.as_deref().unwrap_or("?"),
                h.cluster_id.as_deref().unwrap_or("?"),
                h.leader.as_deref().unwrap_or("?"),
                h.revision.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
                h.version.as_deref().unwrap_or("?"),
            )),
            HealthState::WaitingForQuorum => s.push_str(&format!(
                "health      running, waiting for a quorum: {} accepts connections but answers only once enough \
                 members run restored; restore the other nodes, then check with cpkeep cluster health\n",
                h.endpoint
            )),
        }
        s.push_str(&notes_lines(&self.notes));
        s.push_str(&other_nodes_lines(&self.other_nodes));
        s
    }
}

/// The snapshot to restore, a description of it, how another node names it on the command line,
/// and what to tell the other nodes about it.
struct Source<'a> {
    source: RestoreSource<'a>,
    shown: String,
    args: Vec<String>,
    note: Option<String>,
    /// What identifies the snapshot (see [`KubeadmOptions::snapshot_id`]).
    id: String,
    /// The chosen snapshot and log of a point-in-time restore.
    point_in_time: Option<PitrPlan>,
}

fn absolute(p: &std::path::Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

async fn open_source<'a>(
    a: &RestoreArgs,
    store: Option<&'a dyn ObjectStore>,
) -> anyhow::Result<Source<'a>> {
    let identities = match &a.identity {
        Some(p) => Some(load_identities(p).map_err(snapshot_failure)?),
        None => None,
    };
    let mut identity_args = Vec::new();
    let mut identity_note = None;
    if let Some(p) = &a.identity {
        identity_args = vec!["--identity".to_string(), absolute(p)];
        identity_note = Some(format!(
            "the age identity {}",
            kubeadm::shell_quote(&absolute(p))
        ));
    }
    match store {
        None => {
            let path = PathBuf::from(a.snapshot.as_deref().unwrap_or_default());
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
            let abs = absolute(&path);
            let id = match std::fs::metadata(&path) {
                Ok(m) => {
                    use std::os::unix::fs::MetadataExt;
                    format!("file:{abs}:{}:{}.{}", m.len(), m.mtime(), m.mtime_nsec())
                }
                Err(_) => format!("file:{abs}"),
            };
            let mut args = vec![abs.clone()];
            args.extend(identity_args);
            Ok(Source {
                shown: path.display().to_string(),
                note: Some(match &identity_note {
                    Some(i) => format!(
                        "copy {} and {i} to the same paths on each node first",
                        kubeadm::shell_quote(&abs)
                    ),
                    None => format!(
                        "copy {} to the same path on each node first",
                        kubeadm::shell_quote(&abs)
                    ),
                }),
                args,
                id,
                source: RestoreSource::File { path, identities },
                point_in_time: None,
            })
        }
        Some(store) => {
            let cat = catalog(store).await.map_err(snapshot_failure)?;
            let chosen = match a.target() {
                Some(target) => Some(
                    pitr::select(
                        store,
                        &cat,
                        a.cluster_id.as_deref(),
                        target,
                        identities.as_deref(),
                        None,
                    )
                    .await
                    .map_err(restore_failure)?,
                ),
                None => None,
            };
            let manifest = match &chosen {
                Some(p) => (*p.snapshot).clone(),
                None => {
                    let entry = cat
                        .find(
                            a.snapshot.as_deref().unwrap_or("latest"),
                            a.cluster_id.as_deref(),
                        )
                        .map_err(snapshot_failure)?;
                    entry.manifest.clone().ok_or_else(|| ExitError {
                        code: Exit::Unknown,
                        message: format!("snapshot {} has no readable manifest", entry.id),
                    })?
                }
            };
            // The other nodes restore this very snapshot, even if `latest` moves meanwhile.
            let url = a.store.store.clone().unwrap_or_default();
            let url = if url.contains("://") {
                url
            } else {
                absolute(std::path::Path::new(&url))
            };
            let mut id = format!("stored:{}/{}", manifest.cluster_id, manifest.id);
            // A point-in-time restore names the revision it reached (also for --to-time), so
            // that every member replays to the very same one.
            let mut args = match &chosen {
                Some(p) => {
                    id.push_str(&format!("@{}", p.target_revision));
                    vec!["--to-revision".to_string(), p.target_revision.to_string()]
                }
                None => vec![manifest.id.clone()],
            };
            args.extend([
                "--store".to_string(),
                url,
                "--cluster-id".to_string(),
                manifest.cluster_id.clone(),
            ]);
            let st = &a.store;
            for (flag, v) in [
                ("--s3-endpoint", st.s3_endpoint.clone()),
                ("--s3-region", st.s3_region.clone()),
                ("--s3-ca-bundle", st.s3_ca_bundle.as_deref().map(absolute)),
            ] {
                if let Some(v) = v {
                    args.extend([flag.to_string(), v]);
                }
            }
            if st.s3_path_style {
                args.push("--s3-path-style".to_string());
            }
            args.extend(identity_args);
            let note =
                identity_note.map(|i| format!("copy {i} to the same path on each node first"));
            let Some(chosen) = chosen else {
                return Ok(Source {
                    shown: format!("{} ({})", manifest.id, manifest.object_key),
                    note,
                    args,
                    id,
                    source: RestoreSource::Stored {
                        store,
                        manifest: Box::new(manifest),
                        identities,
                    },
                    point_in_time: None,
                });
            };
            // Identities cannot be cloned: the log gets its own copy.
            let log_identities = match &a.identity {
                Some(p) => Some(load_identities(p).map_err(snapshot_failure)?),
                None => None,
            };
            Ok(Source {
                shown: format!(
                    "{} ({}) + revision log to {}",
                    manifest.id, manifest.object_key, chosen.target_revision
                ),
                note,
                args,
                id,
                point_in_time: Some(chosen.clone()),
                source: RestoreSource::PointInTime {
                    store,
                    plan: Box::new(chosen),
                    identities,
                    log_identities,
                },
            })
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM; never, if neither can be listened for.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

pub async fn run(a: RestoreArgs, out: &Renderer) -> anyhow::Result<Exit> {
    a.check()?;
    if a.kubeadm {
        return run_kubeadm(a, out).await;
    }
    let options = a.options();
    let plan = restore::plan(&options, crate::testhooks::now()).map_err(restore_failure)?;
    let store = match &a.store.store {
        Some(_) => Some(a.store.open().await?),
        None => None,
    };
    let src = open_source(&a, store.as_deref()).await?;
    if a.dry_run {
        out.print(&DryRun {
            dry_run: true,
            plan,
            source: src.shown,
            point_in_time: src.point_in_time,
        })?;
        return Ok(Exit::Ok);
    }
    let report = restore::apply(&plan, &options, src.source)
        .await
        .map_err(restore_failure)?;
    out.print(&report)?;
    Ok(Exit::Ok)
}

async fn run_kubeadm(a: RestoreArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let store = match &a.store.store {
        Some(_) => Some(a.store.open().await?),
        None => None,
    };
    let src = open_source(&a, store.as_deref()).await?;
    let options = a.kubeadm_options(&src);
    let plan = kubeadm::plan(&options, crate::testhooks::now())
        .await
        .map_err(kubeadm_failure)?;
    if a.dry_run {
        out.print(&KubeadmDryRun {
            dry_run: true,
            source: src.shown,
            plan,
            stop_timeout: options.stop_timeout,
            wait_timeout: options.wait_timeout,
        })?;
        return Ok(Exit::Ok);
    }
    let report = kubeadm::apply(&plan, &options, src.source, interrupted())
        .await
        .map_err(kubeadm_failure)?;
    out.print(&report)?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    //! The human tables of `restore --dry-run`, as snapshots (insta): a change to what operators
    //! read before a restore shows up in review as a diff of these files.

    use std::path::Path;

    use chrono::TimeZone;

    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
    }

    /// The table with the temp dir shown as `[TMP]`.
    fn shown(table: String, tmp: &Path) -> String {
        table.replace(&tmp.display().to_string(), "[TMP]")
    }

    #[test]
    fn dry_run_of_a_fresh_restore() {
        let dir = tempfile::tempdir().unwrap();
        let options = RestoreOptions {
            name: "cp1".into(),
            initial_cluster: Some(
                "cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380,cp3=https://10.0.0.3:2380"
                    .into(),
            ),
            initial_advertise_peer_urls: vec!["https://10.0.0.1:2380".into()],
            data_dir: Some(dir.path().join("etcd")),
            ..RestoreOptions::default()
        };
        let plan = restore::plan(&options, now()).unwrap();
        let table = DryRun {
            dry_run: true,
            plan,
            source: "/backups/etcd-snapshot.db".into(),
            point_in_time: None,
        }
        .table();
        insta::assert_snapshot!(shown(table, dir.path()));
    }

    #[test]
    fn dry_run_moving_data_and_wal_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (data, wal) = (dir.path().join("etcd"), dir.path().join("wal"));
        for d in [&data, &wal] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("old"), b"old").unwrap();
        }
        let options = RestoreOptions {
            data_dir: Some(data),
            wal_dir: Some(wal),
            move_aside: true,
            ..RestoreOptions::default()
        };
        let plan = restore::plan(&options, now()).unwrap();
        let table = DryRun {
            dry_run: true,
            plan,
            source: "20260501T110000Z-r4242 (0123456789abcdef/20260501T110000Z-r4242.db.zst)"
                .into(),
            point_in_time: None,
        }
        .table();
        insta::assert_snapshot!(shown(table, dir.path()));
    }

    #[test]
    fn dry_run_of_a_point_in_time_restore() {
        let dir = tempfile::tempdir().unwrap();
        let options = RestoreOptions {
            data_dir: Some(dir.path().join("etcd")),
            ..RestoreOptions::default()
        };
        let plan = restore::plan(&options, now()).unwrap();
        let id = "20260501T110000Z-r4242";
        let snapshot = crate::snapshot::Manifest {
            format_version: 1,
            id: id.into(),
            cluster_id: "0123456789abcdef".into(),
            member_id: "8e9e05c52164694d".into(),
            member_name: "cp1".into(),
            node_name: "cp1".into(),
            etcd_version: "3.5.30".into(),
            revision: 4242,
            raft_index: 5000,
            raft_term: 2,
            consistent_index: Some(5000),
            db_size: 1 << 20,
            db_sha256: "00".repeat(32),
            trailer_included: true,
            object_key: format!("0123456789abcdef/{id}.db.zst"),
            stored_size: 1 << 18,
            stored_sha256: "11".repeat(32),
            compression: crate::snapshot::CompressionInfo {
                algorithm: crate::snapshot::CompressionKind::Zstd,
                level: Some(3),
            },
            encryption: None,
            tool_version: "0.1.0".into(),
            started_at: now() - chrono::Duration::hours(1),
            finished_at: now() - chrono::Duration::hours(1),
        };
        let segment = |first: i64, last: i64, leases_only: bool| pitr::PlannedSegment {
            object_key: format!("0123456789abcdef/log/{first:016}-{last:016}.evlog.zst"),
            first_revision: first,
            last_revision: last,
            event_count: (last - first + 1) as u64 * 2,
            leases_only,
        };
        let point_in_time = PitrPlan {
            snapshot_id: id.into(),
            snapshot_revision: 4242,
            target_revision: 4300,
            target_time: Some(now() - chrono::Duration::minutes(20)),
            segments: vec![
                segment(4240, 4280, false),
                segment(4281, 4300, false),
                segment(4301, 4310, true),
            ],
            snapshot: Box::new(snapshot),
            manifests: Vec::new(),
        };
        let table = DryRun {
            dry_run: true,
            plan,
            source: format!("{id} (0123456789abcdef/{id}.db.zst) + revision log to 4300"),
            point_in_time: Some(point_in_time),
        }
        .table();
        insta::assert_snapshot!(shown(table, dir.path()));
    }

    #[test]
    fn dry_run_of_a_kubeadm_restore() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        let data = dir.path().join("var-lib-etcd");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("old"), b"old").unwrap();
        // Nothing listens on port 1: the plan says the member list is not available.
        let manifest = manifests.join("etcd.yaml");
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    \
                 - --name=cp1\n    - --data-dir={}\n    - --initial-advertise-peer-urls=https://10.0.0.1:2380\n    \
                 - --initial-cluster=cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380\n    \
                 - --initial-cluster-token=prod\n    - --listen-client-urls=http://127.0.0.1:1\n",
                data.display()
            ),
        )
        .unwrap();
        let mut options = KubeadmOptions::new(manifest);
        options.source_args = vec!["/backups/etcd-snapshot.db".into()];
        options.source_note =
            Some("copy /backups/etcd-snapshot.db to the same path on each node first".into());
        options.snapshot_id = "file:/backups/etcd-snapshot.db:1234:0.0".into();
        options.request_timeout = Duration::from_secs(2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let plan = rt.block_on(kubeadm::plan(&options, now())).unwrap();
        let table = KubeadmDryRun {
            dry_run: true,
            source: "/backups/etcd-snapshot.db".into(),
            plan,
            stop_timeout: options.stop_timeout,
            wait_timeout: options.wait_timeout,
        }
        .table();
        insta::assert_snapshot!(shown(table, dir.path()));
    }
}
