//! A restore from start to end: the plan (who the member is, where it goes, what is in the way),
//! then its application — the snapshot brought in and checked, its db given the new membership
//! (a local file rewritten into a fresh db; a stored one downloaded as the new db and edited in
//! place), verified by the reader and the structural check, the raft snapshot and WAL written,
//! everything fsynced, and the new data dir renamed into place last.
//!
//! Everything is built in `<data-dir>.part` (and `<wal-dir>.part`): a crash or kill at any point
//! leaves the old data dir untouched, or, after `--move-aside` renamed it, no data dir and the old
//! one at `<data-dir>.bak-<timestamp>`. A failure (rather than a kill) at any point is rolled back:
//! the old directories are back where they were and no `.part` is left. An existing, non-empty
//! data dir is never written into or removed. The input is only read.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::error::RestoreError;
use super::ids::id_hex;
use super::membership::{InitialCluster, Membership};
use super::pitr::{feed_segments, segment_feed, PitrPlan};
use super::replay::Replay;
use super::rewrite::{rewrite_with_replay, Bump, RewriteOptions, RewriteReport};
use super::{inplace, raftsnap, wal};
use crate::bolt::{self, Db};
use crate::fsx;
use crate::snapshot::{self, FileEncoding, Manifest};
use crate::store::ObjectStore;

/// etcd's defaults, which etcdutl's flags share.
pub const DEFAULT_NAME: &str = "default";
pub const DEFAULT_PEER_URL: &str = "http://localhost:2380";
pub const DEFAULT_TOKEN: &str = "etcd-cluster";

/// What to restore as whom, and where (etcdutl's flags).
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub name: String,
    /// `name=url,...`; defaults to this member alone at its advertised URLs.
    pub initial_cluster: Option<String>,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: Vec<String>,
    /// Defaults to `<name>.etcd`, as etcd's.
    pub data_dir: Option<PathBuf>,
    pub wal_dir: Option<PathBuf>,
    pub skip_hash_check: bool,
    pub bump: Option<Bump>,
    pub clear_alarms: bool,
    pub move_aside: bool,
    /// Switch auth off in the restored db. Only for the restore drill's private copy, which
    /// must be readable without credentials; never for a member that will serve.
    pub disable_auth: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            name: DEFAULT_NAME.to_string(),
            initial_cluster: None,
            initial_cluster_token: DEFAULT_TOKEN.to_string(),
            initial_advertise_peer_urls: vec![DEFAULT_PEER_URL.to_string()],
            data_dir: None,
            wal_dir: None,
            skip_hash_check: false,
            bump: None,
            clear_alarms: false,
            move_aside: false,
            disable_auth: false,
        }
    }
}

/// Where the snapshot comes from.
pub enum RestoreSource<'a> {
    /// A file: raw, zstd or age (told by content).
    File {
        path: PathBuf,
        identities: Option<Vec<Box<dyn age::Identity + Send + Sync>>>,
    },
    /// A stored snapshot, streamed from the store.
    Stored {
        store: &'a dyn ObjectStore,
        manifest: Box<Manifest>,
        identities: Option<Vec<Box<dyn age::Identity + Send + Sync>>>,
    },
    /// A stored snapshot and its revision log replayed up to a target ([`super::pitr::select`]).
    PointInTime {
        store: &'a dyn ObjectStore,
        plan: Box<PitrPlan>,
        /// For the snapshot, and (a second copy: identities cannot be cloned) for the log.
        identities: Identities,
        log_identities: Identities,
    },
}

/// A directory the restore replaces.
#[derive(Debug, Clone, Serialize)]
pub struct Aside {
    pub path: PathBuf,
    /// Where it goes (`<path>.bak-<UTC timestamp>`).
    pub to: PathBuf,
}

/// What a restore will do, decided before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub name: String,
    #[serde(serialize_with = "hex_id")]
    pub member_id: u64,
    #[serde(serialize_with = "hex_id")]
    pub cluster_id: u64,
    pub members: Vec<PlannedMember>,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    /// Existing directories moved aside first (only with `--move-aside`).
    pub move_aside: Vec<Aside>,
    /// `.part` directories an interrupted restore left (they carry cpkeep's marker), removed
    /// first.
    pub leftovers: Vec<PathBuf>,
    #[serde(skip)]
    pub(crate) membership: Membership,
}

/// One member of the restored cluster.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedMember {
    pub name: String,
    #[serde(serialize_with = "hex_id")]
    pub id: u64,
    pub peer_urls: Vec<String>,
}

fn hex_id<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id_hex(*id))
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    #[serde(flatten)]
    pub plan: RestorePlan,
    /// How the input was encoded (`raw`, `zstd`, `age`), or `stored` for a store object.
    pub source: String,
    /// Whether etcd's sha256 trailer was checked (false only with --skip-hash-check).
    pub hash_checked: bool,
    #[serde(flatten)]
    pub db: RewriteReport,
    pub wal_file: PathBuf,
    pub snap_file: PathBuf,
    pub seconds: f64,
}

/// Validates the options and looks at the target directories; writes nothing.
pub fn plan(
    options: &RestoreOptions,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RestorePlan, RestoreError> {
    let usage = RestoreError::Usage;
    if options.name.is_empty() {
        return Err(usage("--name cannot be empty".into()));
    }
    if options.initial_advertise_peer_urls.is_empty() {
        return Err(usage(
            "--initial-advertise-peer-urls cannot be empty".into(),
        ));
    }
    let initial = match &options.initial_cluster {
        Some(s) => s.clone(),
        None => options
            .initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{}={u}", options.name))
            .collect::<Vec<_>>()
            .join(","),
    };
    let cluster = InitialCluster::parse(&initial)?;
    let membership = Membership::new(&cluster, &options.initial_cluster_token)?;
    let me = membership.member(&options.name).ok_or_else(|| {
        usage(format!(
            "--initial-cluster has no member named {:?} (members: {})",
            options.name,
            membership
                .members()
                .iter()
                .map(|m| m.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut advertised = options.initial_advertise_peer_urls.clone();
    advertised.sort();
    advertised.dedup();
    let mut listed = me.peer_urls().to_vec();
    listed.sort();
    if advertised != listed {
        return Err(usage(format!(
            "--initial-advertise-peer-urls {} differ from {:?}'s URLs in --initial-cluster ({}); they must be the same",
            advertised.join(","),
            options.name,
            listed.join(",")
        )));
    }
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", options.name)));
    let stamp = now.format("%Y%m%dT%H%M%SZ");
    let mut move_aside = Vec::new();
    let mut leftovers = Vec::new();
    let mut dirs = vec![("--data-dir", data_dir.clone())];
    dirs.extend(options.wal_dir.clone().map(|w| ("--wal-dir", w)));
    for (flag, dir) in &dirs {
        if options.wal_dir.as_ref() == Some(&data_dir) {
            return Err(usage("--wal-dir must differ from --data-dir".into()));
        }
        check_directory(flag, dir)?;
        let part = part_of(dir);
        if part.exists() {
            if part.join(PART_MARKER).is_file() {
                leftovers.push(part);
            } else {
                return Err(usage(format!(
                    "{} exists and was not made by cpkeep: check and remove it, then run again",
                    part.display()
                )));
            }
        }
        if is_non_empty(dir)? {
            if !options.move_aside {
                return Err(RestoreError::NotEmpty(dir.clone()));
            }
            // Two restores within a second must not collide: the first free of -bak-<stamp>,
            // -bak-<stamp>-2, ...
            let base = format!("{}.bak-{stamp}", dir.display());
            let to = (1..1000)
                .map(|n| match n {
                    1 => PathBuf::from(&base),
                    n => PathBuf::from(format!("{base}-{n}")),
                })
                .find(|p| !p.exists())
                .ok_or_else(|| usage(format!("{base} and 998 more already exist")))?;
            move_aside.push(Aside {
                path: dir.clone(),
                to,
            });
        }
    }
    let members = membership
        .members()
        .iter()
        .map(|m| PlannedMember {
            name: m.name().to_string(),
            id: m.id(),
            peer_urls: m.peer_urls().to_vec(),
        })
        .collect();
    Ok(RestorePlan {
        name: options.name.clone(),
        member_id: me.id(),
        cluster_id: membership.cluster_id(),
        members,
        data_dir,
        wal_dir: options.wal_dir.clone(),
        move_aside,
        leftovers,
        membership,
    })
}

/// etcd's auth bucket and the key saying whether auth is on (one byte, 1 or 0).
const AUTH_BUCKET: &[u8] = b"auth";
const AUTH_ENABLED_KEY: &[u8] = b"authEnabled";

/// A file in every `.part` directory this module creates: a leftover carrying it is cpkeep's own
/// and may be removed; any other `.part` directory is not touched.
pub const PART_MARKER: &str = ".cpkeep-restore-in-progress";

/// `<dir>.part`: where a directory is built before it is renamed into place.
pub fn part_of(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", dir.display()))
}

/// Refuses a directory path that names a file, or lies below one: neither can become a data dir
/// (and "not empty, pass --move-aside" would send the operator the wrong way).
fn check_directory(flag: &'static str, dir: &Path) -> Result<(), RestoreError> {
    let existing = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| std::fs::symlink_metadata(a).is_ok());
    match existing {
        Some(e) if !e.is_dir() => Err(RestoreError::NotADirectory {
            flag,
            dir: dir.to_path_buf(),
            file: e.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

fn is_non_empty(dir: &Path) -> Result<bool, RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(RestoreError::io("read", dir, e)),
    }
}

/// Failpoints of [`apply`] ([`crate::testhooks`]), scoped to the plan's data dir: after the
/// `.part` dirs are built, before anything outside them changes; after the old dirs were moved
/// aside; before each rename of a `.part` dir into place (`RENAME`, scoped to the directory
/// renamed: the data dir, then the WAL dir).
pub const FAILPOINT_BUILT: &str = "restore.built";
pub const FAILPOINT_MOVED_ASIDE: &str = "restore.moved-aside";
pub const FAILPOINT_RENAME: &str = "restore.rename";

/// Carries out `plan` from `source`. On failure nothing has changed: the `.part` directories are
/// removed, and directories moved aside or renamed into place are put back as they were (see
/// [`Switch::roll_back`]); an error says where things are when even that fails.
pub async fn apply(
    plan: &RestorePlan,
    options: &RestoreOptions,
    source: RestoreSource<'_>,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let data_part = part_of(&plan.data_dir);
    let wal_part = plan.wal_dir.as_deref().map(part_of);
    let leftovers = plan.leftovers.clone();
    blocking(move || {
        for leftover in &leftovers {
            std::fs::remove_dir_all(leftover)
                .map_err(|e| RestoreError::io("remove the leftover", leftover, e))?;
        }
        Ok(())
    })
    .await?;
    let built = build(plan, options, source, &data_part, wal_part.as_deref()).await;
    let built = match built {
        Ok(b) => crate::testhooks::failpoint(FAILPOINT_BUILT, &plan.data_dir)
            .map_err(|e| RestoreError::io("switch to", &plan.data_dir, e))
            .map(|()| b),
        Err(e) => Err(e),
    };
    let (source_kind, hash_checked, db, wal_file, snap_file) = match built {
        Ok(r) => r,
        Err(e) => {
            remove_parts(&data_part, wal_part.as_deref()).await;
            return Err(e);
        }
    };
    // Nothing outside the .part directories has changed yet; now the switch.
    let mut renames = vec![(data_part.clone(), plan.data_dir.clone())];
    if let (Some(part), Some(dir)) = (&wal_part, &plan.wal_dir) {
        renames.push((part.clone(), dir.clone()));
    }
    let (p, r) = (plan.clone(), renames.clone());
    blocking(move || {
        let mut switch = Switch::default();
        match switch.run(&p, &r) {
            Ok(()) => Ok(()),
            Err(e) => Err(switch.roll_back(&p, &r, e)),
        }
    })
    .await?;
    let moved = |p: PathBuf| -> PathBuf {
        match p.strip_prefix(&data_part) {
            Ok(rest) => plan.data_dir.join(rest),
            Err(_) => match (&wal_part, &plan.wal_dir) {
                (Some(wp), Some(w)) => p.strip_prefix(wp).map(|r| w.join(r)).unwrap_or(p),
                _ => p,
            },
        }
    };
    Ok(RestoreReport {
        plan: plan.clone(),
        source: source_kind,
        hash_checked,
        db,
        wal_file: moved(wal_file),
        snap_file: moved(snap_file),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs blocking file work (large directory removals, renames, fsyncs) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RestoreError> + Send + 'static,
) -> Result<T, RestoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RestoreError::Snapshot(format!("restore task failed: {e}")))?
}

/// Removes the `.part` directories (best effort: they hold nothing but this restore's work).
async fn remove_parts(data_part: &Path, wal_part: Option<&Path>) {
    let parts: Vec<PathBuf> = std::iter::once(data_part.to_path_buf())
        .chain(wal_part.map(Path::to_path_buf))
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        for p in &parts {
            let _ = std::fs::remove_dir_all(p);
        }
    })
    .await;
}

/// The switch from the old directories to the new, step by step, with what was done so far, so
/// that a failure at any step can be undone.
#[derive(Default)]
struct Switch {
    /// Directories moved aside (plan order).
    moved_aside: Vec<Aside>,
    /// Empty directories removed to make room for a rename.
    removed_empty: Vec<PathBuf>,
    /// `.part` directories renamed into place: (part, dir).
    renamed: Vec<(PathBuf, PathBuf)>,
}

impl Switch {
    fn run(
        &mut self,
        plan: &RestorePlan,
        renames: &[(PathBuf, PathBuf)],
    ) -> Result<(), RestoreError> {
        let scope = &plan.data_dir;
        for a in &plan.move_aside {
            std::fs::rename(&a.path, &a.to)
                .map_err(|e| RestoreError::io("move aside", &a.path, e))?;
            self.moved_aside.push(a.clone());
        }
        crate::testhooks::failpoint(FAILPOINT_MOVED_ASIDE, scope)
            .map_err(|e| RestoreError::io("switch to", scope, e))?;
        for (from, _) in renames {
            let marker = from.join(PART_MARKER);
            std::fs::remove_file(&marker).map_err(|e| RestoreError::io("remove", &marker, e))?;
            fsx::sync_dir(from).map_err(|e| RestoreError::io("fsync", from, e))?;
        }
        for (from, to) in renames {
            if to.is_dir() {
                // An empty directory (checked by the plan) is replaced.
                std::fs::remove_dir(to).map_err(|e| RestoreError::io("replace", to, e))?;
                self.removed_empty.push(to.clone());
            }
            crate::testhooks::failpoint(FAILPOINT_RENAME, to)
                .and_then(|()| std::fs::rename(from, to))
                .map_err(|e| RestoreError::io("rename into place", from, e))?;
            self.renamed.push((from.clone(), to.clone()));
            fsx::sync_dir(parent_of(to))
                .map_err(|e| RestoreError::io("fsync", parent_of(to), e))?;
        }
        Ok(())
    }

    /// Undoes what [`Switch::run`] did, newest first: the new directories leave, the empty ones
    /// and the ones moved aside come back, the `.part` directories go. Returns `err`, with where
    /// things are when a step of the undo fails too.
    fn roll_back(
        self,
        plan: &RestorePlan,
        renames: &[(PathBuf, PathBuf)],
        err: RestoreError,
    ) -> RestoreError {
        let mut stuck = Vec::new();
        for (part, dir) in self.renamed.iter().rev() {
            if let Err(e) = std::fs::rename(dir, part) {
                stuck.push(format!(
                    "the restored {} could not be taken back ({e})",
                    dir.display()
                ));
            }
        }
        for dir in self.removed_empty.iter().rev() {
            if let Err(e) = std::fs::create_dir(dir) {
                stuck.push(format!(
                    "the empty {} could not be made again ({e})",
                    dir.display()
                ));
            }
        }
        for a in self.moved_aside.iter().rev() {
            if let Err(e) = std::fs::rename(&a.to, &a.path) {
                stuck.push(format!(
                    "{} is at {} ({e})",
                    a.path.display(),
                    a.to.display()
                ));
            }
        }
        for (part, _) in renames {
            let _ = std::fs::remove_dir_all(part);
        }
        let dirs: Vec<&Path> = std::iter::once(plan.data_dir.as_path())
            .chain(plan.wal_dir.as_deref())
            .collect();
        for d in &dirs {
            let _ = fsx::sync_dir(parent_of(d));
        }
        if stuck.is_empty() {
            return err;
        }
        RestoreError::RolledBackPartly {
            cause: Box::new(err),
            state: stuck.join("; "),
        }
    }
}

fn parent_of(p: &Path) -> &Path {
    p.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

type Built = (String, bool, RewriteReport, PathBuf, PathBuf);

async fn build(
    plan: &RestorePlan,
    options: &RestoreOptions,
    source: RestoreSource<'_>,
    data_part: &Path,
    wal_part: Option<&Path>,
) -> Result<Built, RestoreError> {
    let snap_dir = data_part.join("member").join("snap");
    // Parents are created as etcdutl does; they hold nothing of ours and stay on failure.
    let parent = parent_of(data_part);
    std::fs::create_dir_all(parent).map_err(|e| RestoreError::io("create directory", parent, e))?;
    for d in [
        data_part.to_path_buf(),
        data_part.join("member"),
        snap_dir.clone(),
    ] {
        std::fs::create_dir(&d)
            .and_then(|()| set_mode(&d, 0o700))
            .map_err(|e| RestoreError::io("create directory", &d, e))?;
        if d == data_part {
            mark(&d)?;
        }
    }
    if let Some(w) = wal_part {
        std::fs::create_dir(w)
            .and_then(|()| set_mode(w, 0o700))
            .map_err(|e| RestoreError::io("create directory", w, e))?;
        mark(w)?;
    }
    let incoming = snap_dir.join("db.incoming");
    let (membership, updates_for) = (plan.membership.clone(), plan.member_id);
    let mut updates = membership.db_updates();
    if options.disable_auth {
        updates.puts.push(super::membership::DbPut {
            bucket: AUTH_BUCKET,
            key: AUTH_ENABLED_KEY.to_vec(),
            value: vec![0],
        });
    }
    let rewrite_options = RewriteOptions {
        updates,
        bump: options.bump,
        clear_alarms: options.clear_alarms,
    };
    let out_path = snap_dir.join("db");
    let (source_kind, hash_checked, report) = match source {
        RestoreSource::File { path, identities } => {
            let (kind, checked, report) = rewrite_file(
                &path,
                identities,
                &incoming,
                &out_path,
                rewrite_options,
                options.skip_hash_check,
            )
            .await?;
            (kind.to_string(), checked, report)
        }
        RestoreSource::Stored {
            store,
            manifest,
            identities,
        } => {
            let report =
                restore_stored(store, &manifest, identities, &out_path, rewrite_options).await?;
            (format!("stored:{}", manifest.id), true, report)
        }
        RestoreSource::PointInTime {
            store,
            plan,
            identities,
            log_identities,
        } => {
            let report = restore_point_in_time(
                store,
                &plan,
                identities,
                log_identities,
                &incoming,
                &out_path,
                rewrite_options,
            )
            .await?;
            (
                format!(
                    "stored:{} + revision log to {}",
                    plan.snapshot_id, plan.target_revision
                ),
                true,
                report,
            )
        }
    };
    // The WAL is 64 MB preallocated and fsynced: written on a blocking thread, like every other
    // large file operation, so the runtime's two workers stay free.
    let wal_dir = match wal_part {
        Some(w) => w.to_path_buf(),
        None => data_part.join("member").join("wal"),
    };
    let (data_part, wal_part) = (data_part.to_path_buf(), wal_part.map(Path::to_path_buf));
    let (snap_file, wal) = blocking(move || {
        if incoming.exists() {
            std::fs::remove_file(&incoming)
                .map_err(|e| RestoreError::io("remove", &incoming, e))?;
        }
        let snap_file = raftsnap::write_snap(&snap_dir, &membership)?;
        let wal = wal::write_wal(&wal_dir, &membership, updates_for)?;
        for d in [snap_dir.as_path(), &data_part.join("member"), &data_part] {
            fsx::sync_dir(d).map_err(|e| RestoreError::io("fsync", d, e))?;
        }
        if let Some(w) = &wal_part {
            fsx::sync_dir(w).map_err(|e| RestoreError::io("fsync", w, e))?;
        }
        Ok((snap_file, wal))
    })
    .await?;
    Ok((source_kind, hash_checked, report, wal.path, snap_file))
}

type Identities = Option<Vec<Box<dyn age::Identity + Send + Sync>>>;

/// Rewrites a local snapshot file into `out`: a raw file in place, an encoded one (zstd, age)
/// decoded into `incoming` first. Returns the input's kind and whether its hash was checked.
async fn rewrite_file(
    path: &Path,
    identities: Identities,
    incoming: &Path,
    out: &Path,
    rewrite_options: RewriteOptions,
    skip_hash_check: bool,
) -> Result<(&'static str, bool, RewriteReport), RestoreError> {
    let encoding = snapshot::detect_encoding(path)?;
    // A raw file's sha256 is computed on another thread while it is rewritten (nothing is
    // published before both are done and agree).
    let (db_path, kind, hash) = if encoding == FileEncoding::Raw {
        let hash = if skip_hash_check {
            Hash::Done(None)
        } else {
            trailer_fits(path)?;
            let p = path.to_path_buf();
            Hash::Running(std::thread::spawn(move || snapshot::trailer_of_file(&p)))
        };
        (path.to_path_buf(), "raw", hash)
    } else {
        let mut file = secret_file(incoming)?;
        let (path2, incoming2) = (path.to_path_buf(), incoming.to_path_buf());
        let (enc, outcome) = tokio::task::spawn_blocking(move || {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
            let r = snapshot::decode_file(&path2, identities.as_deref(), &mut w);
            use std::io::Write;
            w.flush()
                .map_err(|e| RestoreError::io("write", &incoming2, e))?;
            Ok::<_, RestoreError>(r?)
        })
        .await
        .map_err(|e| RestoreError::Snapshot(format!("decode task failed: {e}")))??;
        let kind = if enc.encrypted() { "age" } else { "zstd" };
        let outcome = Some(outcome).filter(|_| !skip_hash_check);
        // Judged now: a decoded file with a bad trailer is not worth rewriting.
        judge(outcome.as_ref(), path)?;
        (incoming.to_path_buf(), kind, Hash::Done(outcome))
    };
    // Without a hash to vouch for it, the source's structure is checked before it is rewritten.
    let check_source = matches!(hash, Hash::Done(None));
    let (db_path2, out2) = (db_path.clone(), out.to_path_buf());
    let rewritten = tokio::task::spawn_blocking(move || {
        let input = File::open(&db_path2).map_err(|e| RestoreError::io("open", &db_path2, e))?;
        rewrite_and_verify(
            input,
            &db_path2,
            &out2,
            &rewrite_options,
            check_source,
            None,
        )
    })
    .await
    .map_err(|e| RestoreError::Snapshot(format!("rewrite task failed: {e}")))?;
    // A bad hash explains a failed rewrite better than the rewrite's own error: judge it first.
    let hash_checked = match hash {
        Hash::Done(outcome) => judge(outcome.as_ref(), &db_path)?,
        Hash::Running(job) => {
            let outcome = tokio::task::spawn_blocking(move || job.join())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| RestoreError::Snapshot("the sha256 thread failed".into()))??;
            judge(Some(&outcome), &db_path)?
        }
    };
    Ok((kind, hash_checked, rewritten?))
}

/// Restores a stored snapshot into `out`: downloaded and decoded straight into it (the manifest's
/// sha256s and etcd's trailer checked while it streams, writeback started as it lands), then the
/// restore's changes committed to it in place. The db is written once: a rewrite would need it
/// whole on disk first anyway (it reads in key order, and bbolt's copy-on-write puts the roots it
/// starts from near the end of the file), and then write it all a second time.
async fn restore_stored(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    identities: Identities,
    out: &Path,
    rewrite_options: RewriteOptions,
) -> Result<RewriteReport, RestoreError> {
    let landing = fsx::EarlyWriter::new(secret_file(out)?);
    let landing = snapshot::fetch_into(store, manifest, identities, landing, out).await?;
    let file = landing
        .finish()
        .map_err(|e| RestoreError::io("write", out, e))?;
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let report = inplace::edit_in_place(file, &out, &rewrite_options);
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "db edited in place, synced and checked"
        );
        report
    })
    .await
    .map_err(|e| RestoreError::Snapshot(format!("restore task failed: {e}")))?
}

/// Restores a stored snapshot with its revision log replayed up to the plan's target: the
/// snapshot downloaded and decoded into `incoming` (checked against its manifest and trailer as
/// it streams), then rewritten into `out` with the log's events appended to `key` as segments
/// are fetched, one at a time, alongside. A rewrite rather than an edit in place: an appended
/// leaf holds at most 65,535 pairs, and a log holds any number of events.
async fn restore_point_in_time(
    store: &dyn ObjectStore,
    plan: &PitrPlan,
    identities: Identities,
    log_identities: Identities,
    incoming: &Path,
    out: &Path,
    rewrite_options: RewriteOptions,
) -> Result<RewriteReport, RestoreError> {
    let landing = std::io::BufWriter::with_capacity(1 << 20, secret_file(incoming)?);
    snapshot::fetch_into(store, &plan.snapshot, identities, landing, incoming).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replay = Replay {
        target: plan.target_revision,
        feed: segment_feed(rx),
    };
    let (src, out2) = (incoming.to_path_buf(), out.to_path_buf());
    let rewriting = tokio::task::spawn_blocking(move || {
        let input = File::open(&src).map_err(|e| RestoreError::io("open", &src, e))?;
        rewrite_and_verify(
            input,
            &src,
            &out2,
            &rewrite_options,
            false,
            Some(&mut replay),
        )
    });
    let feeding = feed_segments(store, plan.manifests.clone(), log_identities.as_deref(), tx);
    let ((), rewritten) = tokio::join!(feeding, rewriting);
    rewritten.map_err(|e| RestoreError::Snapshot(format!("rewrite task failed: {e}")))?
}

/// How the snapshot's integrity is (being) established.
enum Hash {
    /// Known: the trailer's outcome, or `None` with --skip-hash-check.
    Done(Option<crate::snapshot::TrailerOutcome>),
    /// Being computed on another thread.
    Running(
        std::thread::JoinHandle<
            Result<crate::snapshot::TrailerOutcome, crate::snapshot::SnapshotError>,
        >,
    ),
}

/// Whether the trailer vouches for the data (`Ok(false)`: not checked, --skip-hash-check).
fn judge(
    outcome: Option<&crate::snapshot::TrailerOutcome>,
    path: &Path,
) -> Result<bool, RestoreError> {
    match outcome {
        None => Ok(false),
        Some(t) if t.matches() => Ok(true),
        Some(t) if t.trailer.is_none() || t.db_len % 512 != 0 => Err(no_trailer(path)),
        Some(_) => Err(RestoreError::Snapshot(format!(
            "{}: etcd's sha256 trailer does not match the data: the snapshot is corrupt or truncated",
            path.display()
        ))),
    }
}

/// Checks, before anything is hashed, that a raw file is its db followed by etcd's 32-byte trailer:
/// a file shorter than its db (as its meta page says) was cut short, and one exactly as long as
/// its db has no trailer (a copy of a member's db).
fn trailer_fits(path: &Path) -> Result<(), RestoreError> {
    let file = File::open(path).map_err(|e| RestoreError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| RestoreError::io("read", path, e))?
        .len();
    let db = match Db::open(file) {
        Ok(db) => db,
        Err(crate::bolt::BoltError::Truncated { expected, actual }) => {
            return Err(truncated(path, actual, expected))
        }
        Err(e) => {
            return Err(RestoreError::Snapshot(format!(
                "{}: not a readable bbolt db: {e}",
                path.display()
            )))
        }
    };
    let need = db.data_size();
    match len {
        l if l < need => Err(truncated(path, l, need)),
        l if l == need + snapshot::TRAILER_LEN as u64 => Ok(()),
        // Exactly the db, or the db and bytes that cannot be a trailer: a member's file.
        _ => Err(no_trailer(path)),
    }
}

fn truncated(path: &Path, len: u64, need: u64) -> RestoreError {
    RestoreError::Snapshot(format!(
        "{}: truncated: the file has {len} bytes, its db needs {need} (cut short while copying or downloading?)",
        path.display()
    ))
}

fn no_trailer(path: &Path) -> RestoreError {
    RestoreError::Snapshot(format!(
        "{}: no sha256 trailer (a raw member/snap/db copy?): pass --skip-hash-check to restore it unverified",
        path.display()
    ))
}

fn mark(dir: &Path) -> Result<(), RestoreError> {
    let marker = dir.join(PART_MARKER);
    std::fs::write(&marker, b"").map_err(|e| RestoreError::io("create", &marker, e))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn secret_file(path: &Path) -> Result<File, RestoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(fsx::MODE_SECRET)
        .open(path)
        .map_err(|e| RestoreError::io("create", path, e))
}

/// Rewrites `input` (read from `src`) into `out` and proves the result: the reader opens it, the structural check
/// passes, and etcd's view of it (revision, pairs) is what was written. With `check_source`, the
/// source's structure is checked first (no trailer vouched for it).
fn rewrite_and_verify<S: bolt::PageSource>(
    input: S,
    src: &Path,
    out: &Path,
    options: &RewriteOptions,
    check_source: bool,
    replay: Option<&mut Replay>,
) -> Result<RewriteReport, RestoreError> {
    let corrupt = |what: &Path, reason: String| {
        RestoreError::Snapshot(format!("{}: {reason}", what.display()))
    };
    let db = Db::open(input).map_err(|e| corrupt(src, e.to_string()))?;
    if check_source {
        let report = bolt::check(&db);
        if let Some(p) = report
            .problems
            .iter()
            .find(|p| p.kind != bolt::ProblemKind::Meta)
        {
            return Err(corrupt(
                src,
                format!(
                    "not a sound bbolt file ({} problems; first: page {}: {})",
                    report.problem_count, p.page, p.reason
                ),
            ));
        }
    }
    let file = secret_file(out)?;
    let started = std::time::Instant::now();
    let report = rewrite_with_replay(&db, file, options, replay)?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "db rewritten and synced"
    );
    let started = std::time::Instant::now();
    let written = File::open(out).map_err(|e| RestoreError::io("open", out, e))?;
    let written = Db::open(written)
        .map_err(|e| corrupt(out, format!("the restored db does not read back: {e}")))?;
    let status = bolt::status(&written)
        .map_err(|e| corrupt(out, format!("the restored db fails its check: {e}")))?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "db read back and checked"
    );
    if status.revision != report.revision || status.total_key != report.keys {
        return Err(corrupt(
            out,
            format!(
                "the restored db reads back as revision {} with {} keys, {} and {} were written",
                status.revision, status.total_key, report.revision, report.keys
            ),
        ));
    }
    Ok(report)
}
