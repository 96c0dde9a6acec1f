//! `cpkeep backup --follow` against real etcd 3.5 and 3.4 and real stores (a directory, SeaweedFS):
//! the log holds every revision after the snapshot exactly as etcd's own watch returns it, with
//! the lease table; it survives the watched member's death (no gap, no duplicate) and a store
//! outage (chain unbroken); a compaction past it is a gap, reported and healed by a new snapshot.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpkeep::revlog::stored::{fetch_segment, list_segments};
use cpkeep::revlog::{check_chain, EventKind, SegmentManifest};
use cpkeep::sandbox::Sandbox;
use cpkeep::store::{FileStore, ObjectStore};
use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};

use crate::backup_s3::s3;
use crate::harness::{conn_args, cpkeep, cpkeep_command, sandbox, Etcd, Run};

/// A running `backup --follow`, its output gathered as it comes.
struct Follower {
    child: tokio::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn gather(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    use tokio::io::AsyncBufReadExt;
    let text = Arc::new(Mutex::new(String::new()));
    let t = text.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut t = t.lock().unwrap();
            t.push_str(&l);
            t.push('\n');
        }
    });
    text
}

impl Follower {
    fn start(args: &[String], env: &[(&str, String)]) -> Self {
        let mut child = cpkeep_command(args, env).spawn().unwrap();
        let stdout = gather(child.stdout.take().unwrap());
        let stderr = gather(child.stderr.take().unwrap());
        Follower {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then the run's exit code and output.
    async fn stop(mut self) -> Run {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("backup --follow did not stop after SIGTERM")
            .unwrap();
        // The pipes close with the process; let the readers take the last lines.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.stdout.lock().unwrap().ends_with("}\n") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
            elapsed: Duration::ZERO,
        }
    }
}

/// Polls `what` every 100 ms until it holds, failing with `why` and the follower's stderr after
/// `secs`.
async fn wait_until<F, Fut>(secs: u64, why: &str, f: &Follower, mut what: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what().await {
        assert!(Instant::now() < deadline, "{why}; stderr:\n{}", f.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The snapshot manifests in a store (keys `<cluster>/<id>.json`, not under `log/`).
async fn snapshot_manifests(store: &dyn ObjectStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list("")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".json") && !k.contains("/log/"))
        .collect();
    keys.sort();
    keys
}

/// Every readable segment manifest of the store's one cluster. With `strict` (the follower has
/// stopped) a listing problem fails the test; while it runs, an object whose manifest is not
/// written yet is expected.
async fn segments_of(store: &dyn ObjectStore, strict: bool) -> Vec<SegmentManifest> {
    let Some(cluster) = snapshot_manifests(store)
        .await
        .first()
        .and_then(|k| k.split('/').next().map(String::from))
    else {
        return Vec::new();
    };
    let listed = list_segments(store, &cluster).await.unwrap_or_default();
    let mut out = Vec::new();
    for l in listed {
        assert!(
            !strict || l.problem.is_none(),
            "{}: {:?}",
            l.manifest_key,
            l.problem
        );
        out.extend(l.manifest);
    }
    out.sort_by_key(|m| m.first_revision);
    out
}

async fn segments(store: &dyn ObjectStore) -> Vec<SegmentManifest> {
    segments_of(store, true).await
}

async fn logged_through(store: &dyn ObjectStore) -> i64 {
    segments_of(store, false)
        .await
        .last()
        .map_or(0, |m| m.last_revision)
}

fn follow_args(sb: &Sandbox, v: Etcd, store: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "backup".into(),
        "--follow".into(),
        "--segment-interval".into(),
        "1s".into(),
        "--store".into(),
        store.into(),
        "-o".into(),
        "json".into(),
    ];
    a.extend(conn_args(sb, &sb.endpoints(), "5s"));
    // The sandbox's 3.4 is older than 3.4.31 (see `old_etcd_is_refused`).
    if v == Etcd::V34 {
        a.push("--allow-old-etcd".into());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

async fn client(sb: &Sandbox, member: usize) -> Client {
    let conn = sb.connection(Duration::from_secs(10)).unwrap();
    cpkeep::etcd::connect(&conn.endpoints[member], &conn)
        .await
        .unwrap()
}

/// Puts, overwrites, deletes, multi-key transactions and keys with a lease; the revision after.
async fn write_mix(c: &mut Client, round: usize, lease: i64) -> i64 {
    for i in 0..5 {
        c.put(
            format!("/registry/pods/r{round}/p{i}"),
            format!("v{i}"),
            None,
        )
        .await
        .unwrap();
    }
    c.put(format!("/registry/pods/r{round}/p0"), "updated", None)
        .await
        .unwrap();
    c.delete(format!("/registry/pods/r{round}/p1"), None)
        .await
        .unwrap();
    let txn = Txn::new()
        .when([Compare::version(
            format!("/registry/pods/r{round}/p2"),
            CompareOp::Greater,
            0,
        )])
        .and_then([
            TxnOp::put(format!("/registry/pods/r{round}/t1"), "a", None),
            TxnOp::put(format!("/registry/pods/r{round}/p2"), "b", None),
            TxnOp::delete(format!("/registry/pods/r{round}/p3"), None),
            TxnOp::put(
                format!("/registry/leases/r{round}"),
                "held",
                Some(PutOptions::new().with_lease(lease)),
            ),
        ]);
    c.txn(txn).await.unwrap();
    let r = c
        .put(
            format!("/registry/events/r{round}"),
            "e",
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    r.header().unwrap().revision()
}

/// What etcd's own watch returns from `from` through `to`: (revision, [(kind, kv)]).
async fn etcd_history(
    c: &Client,
    from: i64,
    to: i64,
) -> Vec<(i64, Vec<(EventKind, Vec<u8>, i64, i64, i64, Vec<u8>, i64)>)> {
    let mut wc = c.watch_client().max_decoding_message_size(512 << 20);
    let mut stream = wc
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(from),
            ),
        )
        .await
        .unwrap();
    let mut out: Vec<(i64, Vec<_>)> = Vec::new();
    while out.last().map_or(from - 1, |r| r.0) < to {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("etcd's watch went quiet")
            .unwrap()
            .unwrap();
        for e in resp.events() {
            let kv = e.kv().unwrap();
            let kind = match e.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => EventKind::Delete,
            };
            let item = (
                kind,
                kv.key().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.value().to_vec(),
                kv.lease(),
            );
            match out.last_mut() {
                Some(r) if r.0 == kv.mod_revision() => r.1.push(item),
                _ => out.push((kv.mod_revision(), vec![item])),
            }
        }
    }
    out.retain(|r| r.0 <= to);
    out
}

/// Checks the stored log: one unbroken chain from the snapshot's revision + 1 through at least
/// `through`, every revision equal to etcd's own watch, no duplicate; returns the lease tables' leases.
async fn check_log(
    store: &dyn ObjectStore,
    identities: Option<&[Box<dyn age::Identity + Send + Sync>]>,
    c: &Client,
    snapshot: &str,
    snapshot_revision: i64,
    through: i64,
) -> Vec<cpkeep::revlog::LeaseEntry> {
    let manifests = segments(store).await;
    let chain = check_chain(&manifests, Some(snapshot)).unwrap();
    assert_eq!(chain.first_revision, snapshot_revision + 1, "{chain:?}");
    assert!(
        chain.last_revision >= through,
        "{chain:?} through {through}"
    );
    let expected = etcd_history(c, snapshot_revision + 1, chain.last_revision).await;
    let mut logged = Vec::new();
    let mut leases = Vec::new();
    for m in &manifests {
        let seg = fetch_segment(store, m, identities).await.unwrap();
        for r in seg.revisions {
            let events: Vec<_> = r
                .events
                .into_iter()
                .map(|e| {
                    let kv = e.kv;
                    (
                        e.kind,
                        kv.key,
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version,
                        kv.value,
                        kv.lease,
                    )
                })
                .collect();
            logged.push((r.revision, events));
        }
        leases.extend(seg.leases.map(|t| t.leases).unwrap_or_default());
    }
    assert_eq!(logged.len(), expected.len(), "revisions logged vs etcd's");
    for (l, e) in logged.iter().zip(&expected) {
        assert_eq!(l, e, "revision {} differs from etcd's watch", e.0);
    }
    leases
}

fn report(run: &Run) -> serde_json::Value {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run.json()
}

async fn log_is_written(v: Etcd) {
    let sb = sandbox(v, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let url = format!("file://{}", dir.path().display());
    let mut c = client(&sb, 0).await;
    c.put("/registry/before", "snapshot", None).await.unwrap();
    // Encrypted, as a log holds every Secret written: segments are read back with the identity.
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let f = Follower::start(
        &follow_args(&sb, v, &url, &["--encrypt-to", &recipient]),
        &[],
    );
    wait_until(60, "no snapshot stored", &f, || async {
        !snapshot_manifests(&store).await.is_empty()
    })
    .await;
    let lease = c.lease_grant(300, None).await.unwrap().id();
    let mut last = 0;
    for round in 0..3 {
        last = write_mix(&mut c, round, lease).await;
    }
    // A lease granted and revoked within one segment: its keys' deletes are logged.
    let short = c.lease_grant(120, None).await.unwrap().id();
    c.put(
        "/registry/short",
        "x",
        Some(PutOptions::new().with_lease(short)),
    )
    .await
    .unwrap();
    last = last.max(
        c.lease_revoke(short)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
    );
    wait_until(60, "the log never reached the last write", &f, || async {
        logged_through(&store).await >= last
    })
    .await;
    let run = f.stop().await;
    let r = report(&run);
    let snap = &r["snapshots"][0];
    let (id, rs) = (
        snap["id"].as_str().unwrap(),
        snap["log_from"].as_i64().unwrap() - 1,
    );
    assert_eq!(r["gaps"].as_array().unwrap().len(), 0, "{r}");
    assert!(r["segments_written"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["first_revision"].as_i64(), Some(rs + 1), "{r}");
    assert!(r["last_revision"].as_i64().unwrap() >= last, "{r}");
    let manifests = segments(&store).await;
    assert!(manifests
        .iter()
        .all(|m| m.encryption.is_some() && m.object_key.ends_with(".evlog.zst.age")));
    let identities: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(identity)];
    let leases = check_log(&store, Some(&identities), &c, id, rs, last).await;
    let held = leases
        .iter()
        .find(|l| l.id == lease)
        .expect("the writer's lease is in a lease table");
    assert_eq!(held.granted_ttl, 300, "{held:?}");
    assert!(
        held.remaining_ttl > 0 && held.remaining_ttl <= 300,
        "{held:?}"
    );
}

async fn member_killed_mid_log(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let url = format!("file://{}", dir.path().display());
    // The follower watches the first endpoint first: that member is killed.
    let f = Follower::start(&follow_args(&sb, v, &url, &[]), &[]);
    wait_until(60, "no snapshot stored", &f, || async {
        !snapshot_manifests(&store).await.is_empty()
    })
    .await;
    let mut c = client(&sb, 1).await;
    let lease = c.lease_grant(300, None).await.unwrap().id();
    let first = write_mix(&mut c, 0, lease).await;
    wait_until(60, "the log never reached the first writes", &f, || async {
        logged_through(&store).await >= first
    })
    .await;
    sb.kill(0).unwrap();
    let mut last = 0;
    for round in 1..4 {
        // Writes go on while the follower moves over (and while an election may run).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), write_mix(&mut c, round, lease))
                .await
            {
                Ok(rev) => {
                    last = rev;
                    break;
                }
                Err(_) => assert!(Instant::now() < deadline, "writes never resumed"),
            }
        }
    }
    wait_until(
        60,
        "the log never resumed on another member",
        &f,
        || async { logged_through(&store).await >= last },
    )
    .await;
    let run = f.stop().await;
    let r = report(&run);
    assert!(r["watch"]["reconnects"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["gaps"].as_array().unwrap().len(), 0, "{r}");
    let snap = &r["snapshots"][0];
    check_log(
        &store,
        None,
        &c,
        snap["id"].as_str().unwrap(),
        snap["log_from"].as_i64().unwrap() - 1,
        last,
    )
    .await;
}

per_version!(log_is_written, member_killed_mid_log);

fn s3_flags(s3: &cpkeep::sandbox::S3Sandbox) -> Vec<&'static str> {
    let _ = s3;
    vec!["--s3-path-style"]
}

/// The store down for a while: segments wait (bounded), then are stored in order; the chain is
/// unbroken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_then_back() {
    let (mut s3, sb) = tokio::join!(s3(), sandbox(Etcd::V35, 1));
    s3.create_bucket("etcd-backups").await.unwrap();
    let store = s3.connect("etcd-backups", "p").await.unwrap();
    let mut args = follow_args(&sb, Etcd::V35, "s3://etcd-backups/p", &s3_flags(&s3));
    args.extend(["--s3-endpoint".to_string(), s3.endpoint().to_string()]);
    let f = Follower::start(&args, &s3.env());
    wait_until(60, "no snapshot stored", &f, || async {
        !snapshot_manifests(&store).await.is_empty()
    })
    .await;
    let mut c = client(&sb, 0).await;
    let lease = c.lease_grant(300, None).await.unwrap().id();
    let first = write_mix(&mut c, 0, lease).await;
    wait_until(60, "the log never reached the first writes", &f, || async {
        logged_through(&store).await >= first
    })
    .await;
    s3.kill();
    write_mix(&mut c, 1, lease).await;
    wait_until(
        60,
        "no upload failed while the store was down",
        &f,
        || async { f.stderr().contains("storing a log segment failed") },
    )
    .await;
    let during = write_mix(&mut c, 2, lease).await;
    s3.restart().await.unwrap();
    let last = write_mix(&mut c, 3, lease).await.max(during);
    wait_until(
        90,
        "the log never caught up after the store came back",
        &f,
        || async { logged_through(&store).await >= last },
    )
    .await;
    let run = f.stop().await;
    let r = report(&run);
    assert!(r["upload_retries"].as_u64().unwrap() >= 1, "{r}");
    // No member failed: the watch stream lasted the whole run (no request timeout cut it).
    assert_eq!(r["watch"]["reconnects"], 0, "{r}");
    assert_eq!(r["gaps"].as_array().unwrap().len(), 0, "{r}");
    let snap = &r["snapshots"][0];
    check_log(
        &store,
        None,
        &c,
        snap["id"].as_str().unwrap(),
        snap["log_from"].as_i64().unwrap() - 1,
        last,
    )
    .await;
}

/// A compaction past the log's position while it cannot read (the store is down and the queue
/// full): a gap, reported, and a new full snapshot starting a new chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_past_the_log_is_a_gap() {
    let (mut s3, sb) = tokio::join!(s3(), sandbox(Etcd::V35, 1));
    s3.create_bucket("etcd-backups").await.unwrap();
    let store = s3.connect("etcd-backups", "p").await.unwrap();
    let mut args = follow_args(
        &sb,
        Etcd::V35,
        "s3://etcd-backups/p",
        &[
            "--s3-path-style",
            "--log-buffer",
            "1",
            "--segment-size",
            "64KiB",
        ],
    );
    args.extend(["--s3-endpoint".to_string(), s3.endpoint().to_string()]);
    let f = Follower::start(&args, &s3.env());
    wait_until(60, "no snapshot stored", &f, || async {
        !snapshot_manifests(&store).await.is_empty()
    })
    .await;
    let mut c = client(&sb, 0).await;
    let lease = c.lease_grant(300, None).await.unwrap().id();
    let first = write_mix(&mut c, 0, lease).await;
    wait_until(60, "the log never reached the first writes", &f, || async {
        logged_through(&store).await >= first
    })
    .await;
    s3.kill();
    // Far more than etcd and the connection buffer for a watcher that does not read: 16 MiB.
    let value = "x".repeat(4096);
    let mut head = 0;
    for i in 0..4096 {
        head = c
            .put(format!("/registry/bulk/{i:05}"), value.clone(), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
    }
    c.compact(head, None).await.unwrap();
    s3.restart().await.unwrap();
    wait_until(120, "no second snapshot after the gap", &f, || async {
        snapshot_manifests(&store).await.len() >= 2
    })
    .await;
    let last = write_mix(&mut c, 1, lease).await;
    wait_until(60, "no segment after the new snapshot", &f, || async {
        logged_through(&store).await >= last
    })
    .await;
    let run = f.stop().await;
    let r = report(&run);
    let gaps = r["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{r}");
    assert!(
        gaps[0]["reason"].as_str().unwrap().contains("compacted"),
        "{r}"
    );
    let second = &r["snapshots"][1];
    assert_eq!(gaps[0]["new_snapshot"], second["id"], "{r}");
    assert!(second["revision"].as_i64().unwrap() >= head, "{r}");
    // Two chains: the first up to the gap, the second from the new snapshot.
    let all = segments(&store).await;
    let split = all
        .iter()
        .position(|m| m.follows_snapshot.as_deref() == second["id"].as_str())
        .expect("a segment follows the new snapshot");
    let before = check_chain(&all[..split], r["snapshots"][0]["id"].as_str()).unwrap();
    assert_eq!(
        before.last_revision,
        gaps[0]["after_revision"].as_i64().unwrap()
    );
    let after = check_chain(&all[split..], second["id"].as_str()).unwrap();
    assert_eq!(after.first_revision, second["log_from"].as_i64().unwrap());
    assert!(after.last_revision >= last);
}

/// Settings that cannot work, and an etcd whose watch cannot be trusted: one clear line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused() {
    let sb = sandbox(Etcd::V34, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    for (flag, value) in [
        ("--segment-interval", "0s"),
        ("--segment-size", "0"),
        ("--log-buffer", "0"),
    ] {
        let mut a = follow_args(&sb, Etcd::V35, &url, &[]);
        match a.iter().position(|s| s == flag) {
            Some(i) => a[i + 1] = value.to_string(),
            None => a.extend([flag.to_string(), value.to_string()]),
        }
        let run = cpkeep(&a).await;
        assert_ne!(run.code, 0, "{flag} {value}: {}", run.stderr);
        assert!(
            run.stderr.contains(flag) && run.stderr.contains("more than zero"),
            "{}",
            run.stderr
        );
    }
    // The sandbox's 3.4 (3.4.23) is older than 3.4.31: refused, nothing stored.
    let run = cpkeep(&follow_args(&sb, Etcd::V35, &url, &[])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("3.4.") && line.contains("--allow-old-etcd"),
        "{line}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
