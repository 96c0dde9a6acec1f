//! The restore drill: proves a snapshot can bring a cluster back, not merely that its bytes are
//! intact. Restores it natively into a private temp dir, boots a real etcd binary on it on loopback
//! ports, and compares what etcd serves with what the snapshot holds: the revision, the number of
//! live keys, and every live key's value and mod revision. Then stops etcd and removes everything.
//!
//! The restored copy has auth switched off (so the drill can read it without credentials) and
//! alarms cleared; it only ever binds 127.0.0.1 and never touches anything outside its temp dir.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use serde::Serialize;

use super::error::RestoreError;
use super::pitr::PitrPlan;
use super::run::{apply, plan, RestoreOptions, RestoreSource};
use crate::bolt::etcd::{meta, revisions};
use crate::bolt::{crc32c::Crc32c, Db};
use crate::etcd::{connect, ConnectionOptions, Endpoint};
use crate::revlog::{fetch_segment, EventKind};
use crate::store::ObjectStore;

/// How to run the drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The etcd binary to boot.
    pub etcd_bin: PathBuf,
    /// How long etcd may take to boot and elect itself.
    pub boot_timeout: Duration,
}

/// What the drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub ok: bool,
    pub etcd_bin: PathBuf,
    /// The revision the snapshot holds (its last key's) and the one etcd served.
    pub snapshot_revision: i64,
    pub served_revision: i64,
    /// Live keys (latest revision not a tombstone) in the snapshot, and served by etcd.
    pub snapshot_keys: u64,
    pub served_keys: u64,
    /// Keys whose value and mod revision were compared (all of them).
    pub compared_keys: u64,
    pub restore_seconds: f64,
    pub boot_seconds: f64,
    pub compare_seconds: f64,
    /// What differed (the first few).
    pub problems: Vec<String>,
    /// A point-in-time drill: the revision the snapshot's log was replayed to (the expected
    /// state is the snapshot's with the log's events applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_replayed_to: Option<i64>,
}

const MAX_PROBLEMS: usize = 20;
const PAGE: i64 = 1000;

/// A point-in-time drill: what [`drill_point_in_time`] restores besides the snapshot.
pub struct PointInTime<'a> {
    pub store: &'a dyn ObjectStore,
    /// The chosen snapshot (the one `snapshot` is a copy of) and its log.
    pub plan: PitrPlan,
    /// Three copies (identities cannot be cloned): for the restore's download of the snapshot,
    /// its replay, and the drill's own reading of the log.
    pub identities: [Identities; 3],
}

type Identities = Option<Vec<Box<dyn age::Identity + Send + Sync>>>;

/// Runs the drill on `snapshot`, a raw snapshot file (db with or without etcd's trailer).
pub async fn drill(snapshot: &Path, options: &DrillOptions) -> Result<DrillReport, RestoreError> {
    check_bin(options)?;
    let expected = expected_of(snapshot).await?;
    let source = RestoreSource::File {
        path: snapshot.to_path_buf(),
        identities: None,
    };
    run_drill(expected, source, !has_trailer(snapshot)?, options).await
}

/// The drill of a point-in-time restore: the stored snapshot (`snapshot` is its checked local
/// copy) restored with its revision log up to the target, booted, and compared with a model
/// built apart from the restore: the snapshot's live keys with the log's events applied.
pub async fn drill_point_in_time(
    snapshot: &Path,
    pitr: PointInTime<'_>,
    options: &DrillOptions,
) -> Result<DrillReport, RestoreError> {
    check_bin(options)?;
    let mut expected = expected_of(snapshot).await?;
    let [for_snapshot, for_log, for_model] = pitr.identities;
    let from = expected.revision.max(expected.compacted);
    let target = pitr.plan.target_revision;
    for m in &pitr.plan.manifests {
        let segment = fetch_segment(pitr.store, m, for_model.as_deref())
            .await
            .map_err(|e| RestoreError::PointInTime(format!("revision log segment {e}")))?;
        for record in segment
            .revisions
            .iter()
            .filter(|r| r.revision > from && r.revision <= target)
        {
            for e in &record.events {
                match e.kind {
                    EventKind::Put => {
                        expected.keys.insert(
                            e.kv.key.clone(),
                            Want {
                                mod_revision: e.kv.mod_revision,
                                crc: crc(&e.kv.value),
                                len: e.kv.value.len() as u64,
                            },
                        );
                    }
                    EventKind::Delete => {
                        expected.keys.remove(&e.kv.key);
                    }
                }
            }
            expected.revision = record.revision;
        }
    }
    let source = RestoreSource::PointInTime {
        store: pitr.store,
        plan: Box::new(pitr.plan),
        identities: for_snapshot,
        log_identities: for_log,
    };
    let mut report = run_drill(expected, source, false, options).await?;
    report.log_replayed_to = Some(target);
    Ok(report)
}

fn check_bin(options: &DrillOptions) -> Result<(), RestoreError> {
    if !options.etcd_bin.is_file() {
        return Err(RestoreError::Usage(format!(
            "restore drill: no etcd binary at {}: pass --etcd-bin or put etcd in PATH",
            options.etcd_bin.display()
        )));
    }
    Ok(())
}

async fn expected_of(snapshot: &Path) -> Result<Expected, RestoreError> {
    let path = snapshot.to_path_buf();
    tokio::task::spawn_blocking(move || expected_state(&path))
        .await
        .map_err(|e| {
            RestoreError::Snapshot(format!("restore drill: reading the snapshot failed: {e}"))
        })?
}

/// Restores `source` into a temp dir, boots etcd on it and compares what it serves with
/// `expected`.
async fn run_drill(
    expected: Expected,
    source: RestoreSource<'_>,
    skip_hash_check: bool,
    options: &DrillOptions,
) -> Result<DrillReport, RestoreError> {
    let fail = |reason: String| RestoreError::Snapshot(format!("restore drill: {reason}"));

    let temp = tempfile::Builder::new()
        .prefix("cpkeep-drill-")
        .tempdir()
        .map_err(|e| RestoreError::io("create a temp dir in", std::env::temp_dir(), e))?;
    let (peer, client) = (free_port()?, free_port()?);
    let peer_url = format!("http://127.0.0.1:{peer}");
    let client_url = format!("http://127.0.0.1:{client}");
    let data_dir = temp.path().join("data");
    let restore_options = RestoreOptions {
        name: "drill".into(),
        initial_cluster: Some(format!("drill={peer_url}")),
        initial_cluster_token: "cpkeep-drill".into(),
        initial_advertise_peer_urls: vec![peer_url.clone()],
        data_dir: Some(data_dir.clone()),
        skip_hash_check,
        clear_alarms: true,
        disable_auth: true,
        ..RestoreOptions::default()
    };
    let started = Instant::now();
    let p = plan(&restore_options, chrono::Utc::now())?;
    apply(&p, &restore_options, source).await?;
    let restore_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let log = temp.path().join("etcd.log");
    let mut etcd = Etcd::boot(&options.etcd_bin, &data_dir, &peer_url, &client_url, &log)?;
    let endpoint = Endpoint::parse(&client_url, false).map_err(|e| fail(e.to_string()))?;
    let conn = ConnectionOptions {
        endpoints: vec![endpoint.clone()],
        tls: None,
        credentials: None,
        timeout: Duration::from_secs(5),
    };
    let deadline = Instant::now() + options.boot_timeout;
    let mut client = loop {
        if let Some(status) = etcd.exited() {
            return Err(fail(format!(
                "etcd exited with {status} on the restored data: {}",
                log_tail(&log)
            )));
        }
        let attempt = async {
            let mut c = connect(&endpoint, &conn).await.ok()?;
            let s = c.status().await.ok()?;
            (s.leader() != 0).then_some(c)
        };
        if let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(3), attempt).await {
            break c;
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "etcd did not become ready within {}: {}",
                humantime::format_duration(options.boot_timeout),
                log_tail(&log)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let boot_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut problems = Vec::new();
    let mut note = |p: String| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(p);
        }
    };
    let mut served_keys = 0u64;
    let mut compared = 0u64;
    let mut served_revision = 0;
    let mut remaining = expected.keys.iter().peekable();
    let mut from = vec![0u8];
    loop {
        let resp = client
            .get(
                from.clone(),
                Some(GetOptions::new().with_from_key().with_limit(PAGE)),
            )
            .await
            .map_err(|e| fail(format!("reading keys from the restored etcd failed: {e}")))?;
        if let Some(h) = resp.header() {
            served_revision = served_revision.max(h.revision());
        }
        for kv in resp.kvs() {
            served_keys += 1;
            // Keys the snapshot has and etcd does not come before this one.
            while let Some((k, _)) = remaining.next_if(|(k, _)| k.as_slice() < kv.key()) {
                note(format!("key {} is missing", shown(k)));
            }
            match remaining.next_if(|(k, _)| k.as_slice() == kv.key()) {
                Some((_, want)) => {
                    compared += 1;
                    let got = (kv.mod_revision(), crc(kv.value()), kv.value().len() as u64);
                    if got != (want.mod_revision, want.crc, want.len) {
                        note(format!(
                            "key {}: etcd serves mod revision {} and {} bytes, the snapshot has {} and {} bytes (or another value)",
                            shown(kv.key()),
                            got.0,
                            got.2,
                            want.mod_revision,
                            want.len
                        ));
                    }
                }
                None => note(format!(
                    "key {} is served but not in the snapshot",
                    shown(kv.key())
                )),
            }
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    for (k, _) in remaining {
        note(format!("key {} is missing", shown(k)));
    }
    // etcd's store begins at revision 1: a db with no key and no compaction is served at 1.
    let expected_revision = expected.revision.max(expected.compacted).max(1);
    if served_revision != expected_revision {
        note(format!(
            "etcd serves revision {served_revision}, the snapshot holds revision {expected_revision}"
        ));
    }
    if served_keys != expected.keys.len() as u64 {
        note(format!(
            "etcd serves {served_keys} keys, the snapshot holds {}",
            expected.keys.len()
        ));
    }
    let compare_seconds = started.elapsed().as_secs_f64();
    etcd.stop();
    Ok(DrillReport {
        ok: problems.is_empty(),
        etcd_bin: options.etcd_bin.clone(),
        snapshot_revision: expected.revision,
        served_revision,
        snapshot_keys: expected.keys.len() as u64,
        served_keys,
        compared_keys: compared,
        restore_seconds,
        boot_seconds,
        compare_seconds,
        problems,
        log_replayed_to: None,
    })
}

/// The `etcd` in PATH, if any.
pub fn etcd_in_path() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// One live key as the snapshot holds it.
struct Want {
    mod_revision: i64,
    crc: u32,
    len: u64,
}

struct Expected {
    revision: i64,
    compacted: i64,
    keys: BTreeMap<Vec<u8>, Want>,
}

/// Every live key's latest state, from one walk of the `key` bucket (revisions ascend, so the
/// last one seen for a key is its latest). Values are kept as a CRC, not in memory.
fn expected_state(path: &Path) -> Result<Expected, RestoreError> {
    let bad = |e: String| RestoreError::Snapshot(format!("{}: {e}", path.display()));
    let db = Db::open(File::open(path).map_err(|e| RestoreError::io("open", path, e))?)
        .map_err(|e| bad(e.to_string()))?;
    let m = meta(&db).map_err(|e| bad(e.to_string()))?;
    let mut keys = BTreeMap::new();
    let mut revision = 0;
    let mut revs = revisions(&db).map_err(|e| bad(e.to_string()))?;
    while let Some(r) = revs.next_revision() {
        let (rev, kv) = r.map_err(|e| bad(e.to_string()))?;
        revision = rev.main;
        if rev.tombstone {
            keys.remove(kv.key);
        } else {
            keys.insert(
                kv.key.to_vec(),
                Want {
                    mod_revision: kv.mod_revision,
                    crc: crc(kv.value),
                    len: kv.value.len() as u64,
                },
            );
        }
    }
    Ok(Expected {
        revision,
        compacted: m.finished_compact_revision.unwrap_or(0),
        keys,
    })
}

fn has_trailer(path: &Path) -> Result<bool, RestoreError> {
    let len = std::fs::metadata(path)
        .map_err(|e| RestoreError::io("read", path, e))?
        .len();
    Ok(len % 512 == 32)
}

fn crc(bytes: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(bytes);
    c.sum()
}

fn shown(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(key);
    if s.chars().count() > 80 {
        format!("{:?}…", s.chars().take(80).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

fn free_port() -> Result<u16, RestoreError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| RestoreError::io("bind a loopback port on", "127.0.0.1", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| RestoreError::io("bind a loopback port on", "127.0.0.1", e))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    if lines.is_empty() {
        "no log output".to_string()
    } else {
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

/// The drill's etcd process, killed when dropped.
struct Etcd {
    child: Option<Child>,
}

impl Etcd {
    fn boot(
        bin: &Path,
        data_dir: &Path,
        peer_url: &str,
        client_url: &str,
        log: &Path,
    ) -> Result<Etcd, RestoreError> {
        let out = File::create(log).map_err(|e| RestoreError::io("create", log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| RestoreError::io("create", log, e))?;
        let child = Command::new(bin)
            .arg("--name=drill")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--initial-cluster=drill={peer_url}"))
            .arg("--initial-cluster-token=cpkeep-drill")
            // A db near the default quota would raise NOSPACE at once; the drill only reads.
            .arg("--quota-backend-bytes=8589934592")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // etcd must not pick up ETCD_* settings from the caller's environment.
            .env_clear()
            .spawn()
            .map_err(|e| RestoreError::io("run", bin, e))?;
        Ok(Etcd { child: Some(child) })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
