//! Point-in-time restore (`restore --store --to-revision/--to-time`) against real etcd 3.5 and 3.4,
//! real SeaweedFS and the file store: a writer changes keys after a `cpkeep backup`; a small
//! test-only recorder (below, kept apart from the assertions) watches the source from the
//! snapshot's revision + 1 and stores the log with `put_segment`; restores to several revisions
//! are booted on real etcd and compared with the source at every revision in between.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use cpkeep::bolt::etcd::OwnedKeyValue;
use cpkeep::revlog::{
    put_segment, Event, EventKind, LeaseEntry, LeaseTable, Previous, SegmentWriter,
};
use cpkeep::sandbox::Sandbox;
use cpkeep::snapshot::{CompressionKind, Encoding};
use cpkeep::store::ObjectStore;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn,
    TxnOp, WatchOptions,
};

use crate::backup_s3::s3;
use crate::harness::{conn_args, cpkeep, cpkeep_env, sandbox_with, Etcd, Run};
use crate::restore::{args, first_watch_answer, member_client, restore_args, Solo};

// ---------------------------------------------------------------------------------------------
// The test-only recorder (the lead switches these tests to `backup --follow` later).

/// What the recorder stored: each revision with the time it was received (µs, as stored).
struct Recorded {
    revisions: Vec<(i64, DateTime<Utc>)>,
    /// Segment object keys (relative to the store root), in order.
    segments: Vec<String>,
}

/// Revisions per segment: small, so that every test log has several segments.
const PER_SEGMENT: usize = 3;

/// A watch of the whole keyspace from `from`.
async fn watch_from(client: &mut Client, from: i64) -> etcd_client::WatchStream {
    client
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(from),
            ),
        )
        .await
        .unwrap()
}

/// Follows `stream` (a watch from the snapshot's revision + 1 on `client`'s cluster) until it has
/// passed the revision `until` holds once set (0 before), storing segments of [`PER_SEGMENT`]
/// revisions, each closed with the lease table.
async fn record(
    mut client: Client,
    mut stream: etcd_client::WatchStream,
    store: Arc<dyn ObjectStore>,
    cluster: String,
    snapshot_id: String,
    from: i64,
    until: Arc<AtomicI64>,
) -> Recorded {
    let encoding = Encoding {
        compression: CompressionKind::Zstd,
        level: 3,
        threads: 0,
        recipients: Vec::new(),
    };
    let mut previous = Previous::Snapshot(snapshot_id);
    let mut pending: Vec<(i64, DateTime<Utc>, Vec<Event>)> = Vec::new();
    let mut out = Recorded {
        revisions: Vec::new(),
        segments: Vec::new(),
    };
    let mut last = from - 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let end = until.load(Ordering::SeqCst);
        if end > 0 && last >= end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recorder's watch stalled at {last}"
        );
        // Short waits, so that the end revision, once set, is seen while the stream is quiet.
        let Ok(msg) = tokio::time::timeout(Duration::from_millis(100), stream.message()).await
        else {
            continue;
        };
        let msg = msg.unwrap().expect("the recorder's watch ended");
        let at = Utc::now().trunc_subsecs(6);
        for e in msg.events() {
            let kv = e.kv().unwrap();
            let event = Event {
                kind: match e.event_type() {
                    EventType::Put => EventKind::Put,
                    EventType::Delete => EventKind::Delete,
                },
                kv: OwnedKeyValue {
                    key: kv.key().to_vec(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                    version: kv.version(),
                    value: kv.value().to_vec(),
                    lease: kv.lease(),
                },
            };
            let rev = kv.mod_revision();
            match pending.last_mut() {
                Some((r, _, events)) if *r == rev => events.push(event),
                _ => {
                    if pending.len() == PER_SEGMENT {
                        close(
                            &mut client,
                            &*store,
                            &cluster,
                            &mut pending,
                            &mut previous,
                            &encoding,
                            &mut out,
                        )
                        .await;
                    }
                    pending.push((rev, at, vec![event]));
                    out.revisions.push((rev, at));
                }
            }
            last = rev;
        }
    }
    close(
        &mut client,
        &*store,
        &cluster,
        &mut pending,
        &mut previous,
        &encoding,
        &mut out,
    )
    .await;
    out
}

/// Writes the pending revisions as one segment with the lease table as it is now.
async fn close(
    client: &mut Client,
    store: &dyn ObjectStore,
    cluster: &str,
    pending: &mut Vec<(i64, DateTime<Utc>, Vec<Event>)>,
    previous: &mut Previous,
    encoding: &Encoding,
    out: &mut Recorded,
) {
    if pending.is_empty() {
        return;
    }
    let listing = client.leases().await.unwrap();
    let header_revision = listing.header().unwrap().revision();
    let mut leases = Vec::new();
    let mut ids: Vec<i64> = listing.leases().iter().map(|l| l.id()).collect();
    ids.sort();
    for id in ids {
        let t = client
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        leases.push(LeaseEntry {
            id,
            granted_ttl: t.granted_ttl(),
            remaining_ttl: t.ttl(),
            keys: t.keys().to_vec(),
        });
    }
    let table = LeaseTable {
        taken_at: Utc::now().trunc_subsecs(6),
        header_revision,
        leases,
    };
    let mut w = SegmentWriter::new(Vec::new()).unwrap();
    for (rev, at, events) in pending.drain(..) {
        w.append(rev, at, &events).unwrap();
    }
    let (bytes, summary) = w.finish(Some(&table)).unwrap();
    let m = put_segment(
        store,
        cluster,
        bytes.into(),
        &summary,
        previous.clone(),
        encoding,
    )
    .await
    .unwrap();
    *previous = Previous::Segment(m.stored_sha256.clone());
    out.segments.push(m.object_key.clone());
}

// ---------------------------------------------------------------------------------------------
// The source: a backup, then a writer, then the log.

/// A plain one-member source with a few keys (one with a lease) before its backup.
struct Source {
    sb: Sandbox,
    client: Client,
    /// The snapshot's revision, and the source's head after the writer.
    snapshot_revision: i64,
    head: i64,
    /// The lease granted after the snapshot whose key expires on the restored cluster.
    short_lease: i64,
    recorded: Recorded,
    snapshot_id: String,
}

const SHORT_TTL: i64 = 8;

async fn source(
    v: Etcd,
    store_flags: &[String],
    env: &[(&str, String)],
    store: Arc<dyn ObjectStore>,
) -> Source {
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    let mut c = member_client(&sb, 0).await;
    let old_lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("/k/a", "a0", None).await.unwrap();
    c.put("/k/old", "o", Some(PutOptions::new().with_lease(old_lease)))
        .await
        .unwrap();
    c.put("/k/gone", "g", None).await.unwrap();
    let mut a = args(&["backup", "-o", "json"]);
    a.extend(store_flags.iter().cloned());
    a.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let run = cpkeep_env(&a, env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = run.json()["manifest"].clone();
    let snapshot_revision = m["revision"].as_i64().unwrap();
    let cluster = m["cluster_id"].as_str().unwrap().to_string();
    let id = m["id"].as_str().unwrap().to_string();

    let mut watcher = member_client(&sb, 0).await;
    let stream = watch_from(&mut watcher, snapshot_revision + 1).await;
    let until = Arc::new(AtomicI64::new(0));
    let recorder = tokio::spawn(record(
        watcher,
        stream,
        store,
        cluster.clone(),
        id.clone(),
        snapshot_revision + 1,
        until.clone(),
    ));
    let head = write_history(&mut c).await;
    until.store(head, Ordering::SeqCst);
    let short_lease = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .find(|id| *id != old_lease)
        .unwrap_or_default();
    let recorded = recorder.await.unwrap();
    Source {
        sb,
        client: c,
        snapshot_revision,
        head,
        short_lease,
        recorded,
        snapshot_id: id,
    }
}

/// Puts, updates, deletes, multi-key transactions and keys with leases (one granted after the
/// snapshot with a short TTL); returns the head revision.
async fn write_history(c: &mut Client) -> i64 {
    let lease = c.lease_grant(600, None).await.unwrap().id();
    let short = c.lease_grant(SHORT_TTL, None).await.unwrap().id();
    let with = |l: i64| Some(PutOptions::new().with_lease(l));
    c.put("/k/b", "b1", None).await.unwrap();
    c.put("/k/a", "a1", None).await.unwrap();
    c.txn(Txn::new().and_then(vec![
        TxnOp::put("/k/c", "c1", None),
        TxnOp::put("/k/d", "d1", None),
        TxnOp::delete("/k/gone", None),
    ]))
    .await
    .unwrap();
    c.put("/l/x", "x1", with(lease)).await.unwrap();
    c.put("/k/b", "b2", None).await.unwrap();
    c.delete("/k/c", None).await.unwrap();
    c.txn(
        Txn::new()
            .when(vec![Compare::value("/k/b", CompareOp::Equal, "b2")])
            .and_then(vec![
                TxnOp::put("/k/e", "e1", with(lease)),
                TxnOp::put("/k/b", "b3", None),
                TxnOp::put("/k/old", "o2", None),
            ]),
    )
    .await
    .unwrap();
    c.put("/l/y", "y1", with(lease)).await.unwrap();
    c.put("/l/x", "x2", None).await.unwrap();
    c.delete("/k/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    c.put("/k/a", "a2", None).await.unwrap();
    c.put("/exp/z", "z1", with(short)).await.unwrap();
    let last = c.put("/k/f", "f1", None).await.unwrap();
    last.header().unwrap().revision()
}

/// Every key at `rev` (0: head) with everything etcd keeps of it, and the header's revision.
async fn state(c: &mut Client, rev: i64) -> (i64, Vec<(Vec<u8>, Vec<u8>, i64, i64, i64, i64)>) {
    let mut o = GetOptions::new().with_all_keys();
    if rev > 0 {
        o = o.with_revision(rev);
    }
    let r = c.get("", Some(o)).await.unwrap();
    let kvs = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect();
    (r.header().unwrap().revision(), kvs)
}

/// `restore --to-revision` into `solo`'s data dir; the JSON report.
async fn restore_to(
    solo: &Solo,
    flags: &[String],
    env: &[(&str, String)],
    extra: &[&str],
) -> serde_json::Value {
    let mut a = restore_args("", &solo.options(), extra);
    a.retain(|x| !x.is_empty());
    a.extend(flags.iter().cloned());
    let run = cpkeep_env(&a, env).await;
    assert_eq!(run.code, 0, "{a:?}\n{}\n{}", run.stdout, run.stderr);
    run.json()
}

/// The restored cluster at `target` equals the source at every revision from the snapshot's on;
/// at head it is the source at the target; a watch from target + 1 sees nothing older.
async fn assert_exact(source: &mut Client, from: i64, restored: &mut Client, target: i64) {
    for r in from..=target {
        let (_, want) = state(source, r).await;
        let (_, got) = state(restored, r).await;
        assert_eq!(got, want, "the keyspace at revision {r} (target {target})");
    }
    let (rev, head) = state(restored, 0).await;
    assert_eq!(rev, target, "the restored head revision");
    assert_eq!(
        head,
        state(source, target).await.1,
        "head = source at {target}"
    );
    let put = restored.put("/after", "1", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), target + 1);
    let first = first_watch_answer(restored, target + 1).await;
    let revs: Vec<(i64, Vec<u8>)> = first
        .events()
        .iter()
        .map(|e| {
            (
                e.kv().unwrap().mod_revision(),
                e.kv().unwrap().key().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        revs,
        vec![(target + 1, b"/after".to_vec())],
        "a watch from {}",
        target + 1
    );
}

fn s3_flags(s3: &cpkeep::sandbox::S3Sandbox, url: &str) -> Vec<String> {
    vec![
        "--store".into(),
        url.into(),
        "--s3-endpoint".into(),
        s3.endpoint().to_string(),
        "--s3-path-style".into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Exactness, leases, --to-time, on SeaweedFS.

async fn exact_at_every_revision(v: Etcd) {
    let dir = tempfile::tempdir().unwrap();
    let s3 = s3().await;
    s3.create_bucket("etcd-backups").await.unwrap();
    let url = "s3://etcd-backups/pitr";
    let flags = s3_flags(&s3, url);
    let env = s3.env();
    let store: Arc<dyn ObjectStore> = Arc::new(s3.connect("etcd-backups", "pitr").await.unwrap());
    let mut src = source(v, &flags, &env, store).await;
    assert!(
        src.recorded.segments.len() >= 4,
        "{:?}",
        src.recorded.segments
    );
    let (rs, head) = (src.snapshot_revision, src.head);
    assert!(head - rs >= 10, "{rs}..{head}");

    // Inside the first segment, a segment's last revision, the middle, and the head.
    let targets = [rs + 2, rs + PER_SEGMENT as i64, (rs + head) / 2, head];
    for (i, &t) in targets.iter().enumerate() {
        let mut solo = Solo::new(dir.path(), &format!("pitr{i}"), 20 + i as u8);
        let j = restore_to(&solo, &flags, &env, &["--to-revision", &t.to_string()]).await;
        assert_eq!(j["revision"].as_i64(), Some(t), "{j}");
        assert_eq!(j["replay"]["to_revision"].as_i64(), Some(t), "{j}");
        assert_eq!(j["replay"]["from_revision"].as_i64(), Some(rs), "{j}");
        let mut c = solo.boot(v).await;
        assert_exact(&mut src.client, rs, &mut c, t).await;
        if t == head {
            // The key with the lease granted after the snapshot: restored with it, and gone
            // once its TTL has run on the restored cluster.
            let (_, kvs) = state(&mut c, 0).await;
            let z = kvs
                .iter()
                .find(|k| k.0 == b"/exp/z")
                .expect("/exp/z restored");
            assert_eq!(z.5, src.short_lease, "/exp/z's lease");
            assert_eq!(
                j["replay"]["leases_added"].as_array().map(|a| a.len()),
                Some(2),
                "{j}"
            );
            let ttl = c.lease_time_to_live(src.short_lease, None).await.unwrap();
            assert_eq!(ttl.granted_ttl(), SHORT_TTL);
            let deadline = Instant::now() + Duration::from_secs(SHORT_TTL as u64 + 30);
            loop {
                let r = c.get("/exp/z", None).await.unwrap();
                if r.kvs().is_empty() {
                    break;
                }
                assert!(Instant::now() < deadline, "/exp/z did not expire");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // The lease without a short TTL keeps its keys.
            assert_eq!(c.get("/l/y", None).await.unwrap().kvs().len(), 1);
        }
        solo.stop();
    }

    // --to-time: the time a revision was received names exactly it (one whose successor came
    // later).
    let recorded = &src.recorded.revisions;
    let (t, at) = recorded
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| w[0])
        .nth(recorded.len() / 3)
        .expect("revisions received at distinct times");
    let mut solo = Solo::new(dir.path(), "bytime", 30);
    let j = restore_to(&solo, &flags, &env, &["--to-time", &at.to_rfc3339()]).await;
    assert_eq!(j["revision"].as_i64(), Some(t), "{j}");
    let mut c = solo.boot(v).await;
    assert_exact(&mut src.client, rs, &mut c, t).await;
    solo.stop();

    // --bump-revision and --mark-compacted count from the target.
    let t = (rs + head) / 2;
    let mut solo = Solo::new(dir.path(), "bumped", 31);
    let j = restore_to(
        &solo,
        &flags,
        &env,
        &[
            "--to-revision",
            &t.to_string(),
            "--bump-revision",
            "1000",
            "--mark-compacted",
        ],
    )
    .await;
    assert_eq!(j["revision"].as_i64(), Some(t + 1000), "{j}");
    assert_eq!(j["compacted_at"].as_i64(), Some(t + 1000), "{j}");
    let mut c = solo.boot(v).await;
    let (rev, kvs) = state(&mut c, 0).await;
    assert_eq!(rev, t + 1000);
    assert_eq!(kvs, state(&mut src.client, t).await.1);
    let r = first_watch_answer(&mut c, t).await;
    assert_eq!(r.compact_revision(), t + 1000, "{r:?}");
    solo.stop();
    drop(src.sb);
}

// ---------------------------------------------------------------------------------------------
// Damage, on the file store.

fn flags_for(store: &Path) -> Vec<String> {
    vec!["--store".into(), store.display().to_string()]
}

async fn attempt(store: &Path, data: &Path, extra: &[&str]) -> Run {
    let mut a = args(&["restore", "-o", "json", "--data-dir"]);
    a.push(data.display().to_string());
    a.extend(flags_for(store));
    a.extend(extra.iter().map(|s| s.to_string()));
    cpkeep(&a).await
}

fn refused(run: &Run, words: &[&str]) -> String {
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let line = run.assert_one_clear_line().to_string();
    for w in words {
        assert!(line.contains(w), "{w:?} not in {line}");
    }
    line
}

/// The manifest (JSON) of segment object `key` in a file store.
fn manifest_of(store: &Path, key: &str) -> std::path::PathBuf {
    let stem = key.split(".evlog").next().unwrap();
    store.join(format!("{stem}.json"))
}

async fn damaged_log_refuses_past_the_damage(v: Etcd) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    std::fs::create_dir(&root).unwrap();
    let flags = flags_for(&root);
    let store: Arc<dyn ObjectStore> = Arc::new(cpkeep::store::FileStore::open(&root).unwrap());
    let src = source(v, &flags, &[], store).await;
    let (rs, head) = (src.snapshot_revision, src.head);
    let segs = &src.recorded.segments;
    assert!(segs.len() >= 4, "{segs:?}");
    // The second segment is damaged; the first ends at rs + PER_SEGMENT.
    let reachable = rs + PER_SEGMENT as i64;
    let victim = segs[1].clone();
    let object = root.join(&victim);
    let good = std::fs::read(&object).unwrap();
    let data = dir.path().join("restored");
    let target = (head - 1).to_string();

    // A flipped byte: found while fetching, the restore stops and leaves nothing.
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x10;
    std::fs::write(&object, &bad).unwrap();
    let line = refused(
        &attempt(&root, &data, &["--to-revision", &target]).await,
        &[
            &victim,
            &format!("last revision that can be reached is {reachable}"),
        ],
    );
    assert!(line.contains("sha256"), "{line}");
    assert!(!data.exists(), "a refused restore left {}", data.display());
    // Before the damage it still works.
    let run = attempt(&root, &data, &["--to-revision", &reachable.to_string()]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["revision"].as_i64(), Some(reachable));
    std::fs::remove_dir_all(&data).unwrap();
    // The text report says what was replayed.
    let mut a = args(&["restore", "--data-dir"]);
    a.push(data.display().to_string());
    a.extend(flags.iter().cloned());
    a.extend(["--to-revision".to_string(), reachable.to_string()]);
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in [
        format!(
            "events of {PER_SEGMENT} revisions ({}…{reachable}) from 1 segment",
            rs + 1
        ),
        format!("revision    {reachable} (snapshot {rs}, revision log to {reachable})"),
    ] {
        assert!(
            run.stdout.contains(&line),
            "{line:?} not in\n{}",
            run.stdout
        );
    }
    std::fs::remove_dir_all(&data).unwrap();

    // Missing: its manifest is there, its object is not.
    std::fs::remove_file(&object).unwrap();
    refused(
        &attempt(&root, &data, &["--to-revision", &target, "--dry-run"]).await,
        &[
            &victim,
            "missing",
            &format!("last revision that can be reached is {reachable}"),
        ],
    );
    // Missing whole (manifest too): a gap, named by the segment after it.
    let manifest = manifest_of(&root, &victim);
    let manifest_text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    refused(
        &attempt(&root, &data, &["--to-revision", &target]).await,
        &[
            &segs[2],
            "missing",
            &format!("last revision that can be reached is {reachable}"),
        ],
    );
    std::fs::write(&object, &good).unwrap();
    std::fs::write(&manifest, &manifest_text).unwrap();

    // A wrong previous hash in the third segment's manifest.
    let third = manifest_of(&root, &segs[2]);
    let text = std::fs::read_to_string(&third).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let prev = j["previous_sha256"].as_str().unwrap().to_string();
    let wrong = format!(
        "{}{}",
        if prev.starts_with('0') { "1" } else { "0" },
        &prev[1..]
    );
    std::fs::write(&third, text.replace(&prev, &wrong)).unwrap();
    let second_last = src.recorded.revisions[2 * PER_SEGMENT - 1].0;
    refused(
        &attempt(&root, &data, &["--to-revision", &target]).await,
        &[
            &segs[2],
            "previous sha256",
            &format!("last revision that can be reached is {second_last}"),
        ],
    );
    std::fs::write(&third, &text).unwrap();

    // Beyond the log's end: the last revision and its time.
    let line = refused(
        &attempt(&root, &data, &["--to-revision", &(head + 5).to_string()]).await,
        &["beyond", "last revision that can be reached (from snapshot"],
    );
    assert!(line.contains(&format!("is {head}, received at")), "{line}");
    // Older than every snapshot.
    if rs > 1 {
        refused(
            &attempt(&root, &data, &["--to-revision", "1"]).await,
            &["older than every snapshot"],
        );
    }
    // The snapshot's own revision needs no log.
    let run = attempt(
        &root,
        &data,
        &["--to-revision", &rs.to_string(), "--dry-run"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(
        j["point_in_time"]["segments"].as_array().map(|a| a.len()),
        Some(0),
        "{j}"
    );
    // The dry run names the snapshot, the segments and the revision reached.
    let mut a = args(&["restore", "--dry-run", "--data-dir"]);
    a.push(data.display().to_string());
    a.extend(flags.iter().cloned());
    a.extend(["--to-revision".to_string(), target.clone()]);
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("reaches     revision {target}")),
        "{}",
        run.stdout
    );
    for s in segs.iter().take(segs.len() - 1) {
        assert!(run.stdout.contains(s.as_str()), "{s} not in {}", run.stdout);
    }
    assert!(!data.exists());

    // The drill: the snapshot with its log to the target, booted and compared with the
    // snapshot's keys with the log's events applied.
    let mut a = args(&[
        "snapshot",
        "verify",
        "-o",
        "json",
        &src.snapshot_id,
        "--restore-test",
        "--etcd-bin",
    ]);
    a.push(v.etcd().display().to_string());
    a.extend(flags.iter().cloned());
    a.extend(["--to-revision".to_string(), target.clone()]);
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let j = run.json();
    let d = &j["restore_test"];
    assert_eq!(d["ok"], true, "{j}");
    assert_eq!(d["log_replayed_to"].as_i64(), Some(head - 1), "{d}");
    assert_eq!(d["served_revision"].as_i64(), Some(head - 1), "{d}");
    assert_eq!(d["served_keys"], d["snapshot_keys"], "{d}");
    assert!(d["compared_keys"].as_u64().unwrap() > 0, "{d}");
    // Past the log's end the drill is refused like the restore.
    a.pop();
    a.push((head + 5).to_string());
    let run = cpkeep(&a).await;
    refused(&run, &["beyond"]);
    drop(src);
}

// ---------------------------------------------------------------------------------------------
// With the real log writer: `backup --follow` records, the restore replays.

/// Polls `what` every 100 ms until it holds, failing with `why` after `secs`.
async fn wait_for<F, Fut>(secs: u64, why: &str, log: &Path, mut what: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what().await {
        assert!(
            Instant::now() < deadline,
            "{why}; backup --follow said:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `backup --follow` child writing to the file store at `root`, with its stderr in `log`.
struct Follower {
    child: tokio::process::Child,
    log: std::path::PathBuf,
    store: cpkeep::store::FileStore,
}

impl Follower {
    /// Starts following `sb` and waits for its full snapshot.
    async fn start(v: Etcd, sb: &Sandbox, root: &Path, log: &Path) -> Follower {
        std::fs::create_dir_all(root).unwrap();
        let mut a = args(&[
            "backup",
            "--follow",
            "--segment-interval",
            "1s",
            "--store",
            &root.display().to_string(),
        ]);
        a.extend(conn_args(sb, &sb.endpoints(), "5s"));
        if v == Etcd::V34 {
            a.push("--allow-old-etcd".into());
        }
        let child = crate::harness::cpkeep_command(&a, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let f = Follower {
            child,
            log: log.to_path_buf(),
            store: cpkeep::store::FileStore::open(root).unwrap(),
        };
        wait_for(60, "no snapshot stored", log, || async {
            f.cluster().await.is_some()
        })
        .await;
        f
    }

    /// The cluster whose snapshot the follower stored.
    async fn cluster(&self) -> Option<String> {
        self.store
            .list("")
            .await
            .unwrap_or_default()
            .iter()
            .find(|o| o.key.ends_with(".json") && !o.key.contains("/log/"))
            .and_then(|o| o.key.split('/').next().map(String::from))
    }

    /// Waits until a stored segment holds `head`, then stops the follower with SIGTERM.
    async fn stop_after(mut self, head: i64) {
        let logged = || async {
            let Some(cluster) = self.cluster().await else {
                return false;
            };
            cpkeep::revlog::list_segments(&self.store, &cluster)
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|l| l.manifest.as_ref())
                .any(|m| m.last_revision >= head)
        };
        wait_for(
            60,
            "the log never reached the last write",
            &self.log,
            logged,
        )
        .await;
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("backup --follow did not stop after SIGTERM")
            .unwrap();
        assert!(status.success(), "backup --follow exited {status}");
    }
}

async fn replays_what_backup_follow_logged(v: Etcd) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    let mut c = member_client(&sb, 0).await;
    c.put("/k/before", "b", None).await.unwrap();
    let follower = Follower::start(v, &sb, &root, &dir.path().join("follow.log")).await;
    let head = write_history(&mut c).await;
    follower.stop_after(head).await;

    let flags = flags_for(&root);
    for (i, t) in [head - 4, head].into_iter().enumerate() {
        let mut solo = Solo::new(dir.path(), &format!("followed{i}"), 40 + i as u8);
        let j = restore_to(&solo, &flags, &[], &["--to-revision", &t.to_string()]).await;
        assert_eq!(j["revision"].as_i64(), Some(t), "{j}");
        let rs = j["replay"]["from_revision"].as_i64().unwrap();
        let mut restored = solo.boot(v).await;
        assert_exact(&mut c, rs, &mut restored, t).await;
        solo.stop();
    }
}

/// Every member of a 3-member cluster restored from the followed log to one revision (through
/// the CLI, as an operator restores each node): the cluster boots with quorum, and every member
/// serves exactly the source's keyspace at every revision up to the target.
async fn three_members_restore_to_one_revision(v: Etcd) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut sb = sandbox_with(v, 3, |o| o.tls = false).await;
    let mut c = member_client(&sb, 0).await;
    c.put("/k/before", "b", None).await.unwrap();
    let follower = Follower::start(v, &sb, &root, &dir.path().join("follow.log")).await;
    let first = c
        .get("/k/before", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
        + 1;
    let head = write_history(&mut c).await;
    follower.stop_after(head).await;
    let target = head - 3;
    let mut want = Vec::new();
    for r in first..=target {
        want.push(state(&mut c, r).await.1);
    }
    drop(c);

    sb.stop();
    for i in 0..3 {
        let o = sb.restore_options(i).unwrap();
        let mut a = restore_args("", &o, &["--to-revision", &target.to_string()]);
        a.retain(|x| !x.is_empty());
        a.extend(flags_for(&root));
        let run = cpkeep(&a).await;
        assert_eq!(run.code, 0, "{a:?}\n{}\n{}", run.stdout, run.stderr);
        let j = run.json();
        assert_eq!(j["revision"].as_i64(), Some(target), "{j}");
        assert_eq!(j["members"].as_array().map(Vec::len), Some(3), "{j}");
    }
    sb.start_stopped().await.unwrap();
    for i in 0..3 {
        let mut m = member_client(&sb, i).await;
        for (r, expected) in (first..=target).zip(&want) {
            assert_eq!(
                &state(&mut m, r).await.1,
                expected,
                "member {i} at revision {r}"
            );
        }
        let (rev, _) = state(&mut m, 0).await;
        assert_eq!(rev, target, "member {i}'s head revision");
    }
    let mut m = member_client(&sb, 1).await;
    let voters = m.member_list().await.unwrap().members().len();
    assert_eq!(voters, 3);
    let put = m.put("/after", "1", None).await.unwrap();
    assert_eq!(
        put.header().unwrap().revision(),
        target + 1,
        "the restored cluster takes writes"
    );
}

/// `snapshot list` shows how far each snapshot's log reaches and what stops it; `snapshot prune`
/// removes the segments no kept snapshot needs and keeps those it does.
async fn list_and_prune_see_the_log(v: Etcd) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    let mut c = member_client(&sb, 0).await;
    let follower = Follower::start(v, &sb, &root, &dir.path().join("follow.log")).await;
    let cluster = follower.cluster().await.unwrap();
    let put = |k: String| {
        let mut c = c.clone();
        async move {
            c.put(k, "v", None)
                .await
                .unwrap()
                .header()
                .unwrap()
                .revision()
        }
    };
    let mut head_a = 0;
    for i in 0..5 {
        head_a = put(format!("/a/{i}")).await;
    }
    let reached = |head: i64| {
        let (store, cluster) = (&follower.store, cluster.clone());
        async move {
            cpkeep::revlog::list_segments(store, &cluster)
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|l| l.manifest.as_ref())
                .any(|m| m.last_revision >= head)
        }
    };
    wait_for(
        60,
        "the first writes were not logged",
        &follower.log,
        || reached(head_a),
    )
    .await;
    // A second, ordinary backup at head_a: a later snapshot inside the log's window.
    let mut b = args(&["backup", "-o", "json"]);
    b.extend(flags_for(&root));
    b.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let second = cpkeep(&b).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let second_id = second.json()["manifest"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(second.json()["manifest"]["revision"].as_i64(), Some(head_a));
    let mut head_b = 0;
    for i in 0..5 {
        head_b = put(format!("/b/{i}")).await;
    }
    follower.stop_after(head_b).await;

    let list = |extra: &'static [&'static str]| {
        let mut a = args(&["snapshot", "list"]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(flags_for(&root));
        async move { cpkeep(&a).await }
    };
    let listed = list(&["-o", "json"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let rows = listed.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        assert_eq!(
            r["point_in_time"]["to_revision"].as_i64(),
            Some(head_b),
            "{r}"
        );
        assert!(r["point_in_time"].get("stopped_by").is_none(), "{r}");
    }
    let text = list(&[]).await.stdout;
    assert!(text.contains("point-in-time restore"), "{text}");
    assert!(!text.contains("GAP"), "{text}");

    // Keep only the newest snapshot: the segments ending at or before its revision go.
    let mut p = args(&["snapshot", "prune", "--keep-last", "1", "-o", "json"]);
    p.extend(flags_for(&root));
    let pruned = cpkeep(&p).await;
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let store = cpkeep::store::FileStore::open(&root).unwrap();
    let left = cpkeep::revlog::list_segments(&store, &cluster)
        .await
        .unwrap();
    assert!(!left.is_empty(), "the log after the kept snapshot stays");
    for l in &left {
        let m = l.manifest.as_ref().unwrap();
        assert!(
            m.last_revision > head_a,
            "{} should have been pruned",
            m.object_key
        );
        assert_eq!(l.problem, None);
    }
    let deleted = pruned.json()["plan"]["delete"].as_array().unwrap().clone();
    assert!(
        deleted
            .iter()
            .any(|d| d["id"].as_str().unwrap().starts_with("log ")),
        "{deleted:?}"
    );
    // The restore from the kept snapshot still reaches the head through what was kept.
    let mut solo = Solo::new(dir.path(), "pruned", 44);
    let j = restore_to(
        &solo,
        &flags_for(&root),
        &[],
        &["--to-revision", &head_b.to_string()],
    )
    .await;
    assert_eq!(j["revision"].as_i64(), Some(head_b), "{j}");
    assert!(
        j.to_string().contains(&second_id),
        "restored from the kept snapshot: {j}"
    );
    let mut restored = solo.boot(v).await;
    assert_eq!(
        state(&mut restored, 0).await.1,
        state(&mut c, head_b).await.1
    );
    solo.stop();

    // A segment's object lost: the list names it as what stops the log.
    let last = left.last().unwrap().manifest.clone().unwrap();
    std::fs::remove_file(root.join(&last.object_key)).unwrap();
    let rows = list(&["-o", "json"]).await.json();
    let stopped = rows[0]["point_in_time"]["stopped_by"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        stopped.contains(&last.object_key) || stopped.contains(&last.key()),
        "{rows}"
    );
    assert!(
        rows[0]["point_in_time"]["to_revision"].as_i64().unwrap() < head_b,
        "{rows}"
    );
}

per_version!(
    exact_at_every_revision,
    damaged_log_refuses_past_the_damage,
    replays_what_backup_follow_logged,
    three_members_restore_to_one_revision,
    list_and_prune_see_the_log
);

// ---------------------------------------------------------------------------------------------
// Bad input: refused before anything is read, one clear line, exit 3.

#[tokio::test]
async fn bad_point_in_time_flags() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let snap = dir.path().join("snap.db");
    std::fs::write(&snap, b"not a db").unwrap();
    let s = snap.display().to_string();
    for (a, words) in [
        (
            vec!["restore", "--to-revision", "5"],
            vec!["--to-revision needs --store"],
        ),
        (
            vec!["restore", &s, "--to-revision", "5"],
            vec!["--to-revision needs --store"],
        ),
        (
            vec!["restore", &s, "--store", &store, "--to-revision", "5"],
            vec!["chooses the snapshot itself"],
        ),
        (
            vec!["restore", "--store", &store, "--to-revision", "0"],
            vec!["--to-revision"],
        ),
        (
            vec!["restore", "--store", &store, "--to-revision", "-3"],
            vec!["-3"],
        ),
        (
            vec!["restore", "--store", &store, "--to-revision", "ten"],
            vec!["ten"],
        ),
        (
            vec![
                "restore",
                "--store",
                &store,
                "--to-revision",
                "5",
                "--to-time",
                "2026-12-06T17:00:00Z",
            ],
            vec!["--to-time"],
        ),
        (
            vec!["restore", "--store", &store, "--to-time", "yesterday"],
            vec!["RFC 3339"],
        ),
    ] {
        let run = cpkeep(&a.iter().map(|x| x.to_string()).collect::<Vec<_>>()).await;
        assert_eq!(run.code, 3, "{a:?}: {}", run.stderr);
        let line = run.assert_one_clear_line();
        for w in words {
            assert!(line.contains(w), "{a:?}: {w:?} not in {line}");
        }
    }
}
