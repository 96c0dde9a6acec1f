//! `cpkeep restore` (and the library's plan/apply) against real etcd 3.5 and 3.4: what a restored
//! cluster serves (keys, values, revisions, compaction, leases, users and roles, member and cluster
//! IDs), revision bumps seen by watchers, a byte-level cross-check with etcdutl, restores from a
//! directory store and from S3 with age, and the failures, which must leave nothing behind.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cpkeep::restore::ids::{cluster_id, member_id};
use cpkeep::restore::run::{part_of, PART_MARKER};
use cpkeep::restore::{RestoreOptions, RestoreSource};
use cpkeep::sandbox::{S3Sandbox, S3SandboxOptions, Sandbox};
use etcd_client::{
    Client, CompactionOptions, ConnectOptions, GetOptions, LeaseTimeToLiveOptions, Permission,
    PutOptions, WatchOptions,
};

use crate::harness::{
    conn_args, cpkeep, cpkeep_env, etcdutl, etcdutl_status, fill, sandbox, sandbox_with, Etcd, Run,
};

pub(crate) fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// One key as etcd serves it: key, value, create revision, mod revision, version, lease.
type Kv = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// What was written before the snapshot, and what a restore must bring back.
#[derive(Debug, Clone)]
struct Written {
    /// The header revision when the snapshot was taken (the last write).
    revision: i64,
    /// Where the history was compacted.
    compacted: i64,
    lease: i64,
    /// Every key, as a range over all keys returned it at snapshot time.
    kvs: Vec<Kv>,
}

/// Puts, overwrites, deletes, binary bytes, a key with a long lease, a compaction, then more
/// writes after it; the last operation is a put, so the snapshot's revision is the header's.
async fn populate(c: &mut Client) -> Written {
    c.put("/app/a", "1", None).await.unwrap();
    c.put("/app/b", "2", None).await.unwrap();
    c.put("/app/c", "3", None).await.unwrap();
    c.put("/app/a", "1-overwritten", None).await.unwrap();
    c.delete("/app/c", None).await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    c.put(
        "/app/leased",
        "held by a lease",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    c.put(b"/bin/\xff\x00k".to_vec(), vec![0u8, 159, 255, 1, 0], None)
        .await
        .unwrap();
    for i in 0..30 {
        c.put(
            format!("/registry/pods/default/p{i:02}"),
            format!("{{\"kind\":\"Pod\",\"n\":{i}}}"),
            None,
        )
        .await
        .unwrap();
    }
    let compacted = c
        .put("/app/marker", "before the compaction", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(compacted, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    c.put("/app/b", "2-after-the-compaction", None)
        .await
        .unwrap();
    c.delete("/registry/pods/default/p03", None).await.unwrap();
    let revision = c
        .put("/app/last", "the last write", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let kvs = dump(c).await;
    assert!(kvs.len() > 30, "{}", kvs.len());
    Written {
        revision,
        compacted,
        lease,
        kvs,
    }
}

/// A user with a password and a role with a permission, beside what `enable_auth` adds (root).
async fn add_users(c: &mut Client) {
    c.role_add("reader").await.unwrap();
    c.role_grant_permission("reader", Permission::read("/app/").with_prefix())
        .await
        .unwrap();
    c.user_add("alice", "alice-secret", None).await.unwrap();
    c.user_grant_role("alice", "reader").await.unwrap();
}

/// Every key (a range over all keys) with its revisions, version and lease.
async fn dump(c: &mut Client) -> Vec<Kv> {
    let r = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    r.kvs()
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
        .collect()
}

/// The header revision a member reports now.
pub(crate) async fn revision(c: &mut Client) -> i64 {
    c.get("/app/a", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// The keys, the revision and the compaction of a restored member are those of the snapshot.
async fn assert_same_data(c: &mut Client, w: &Written, revision_now: i64) {
    let got = dump(c).await;
    assert_eq!(got.len(), w.kvs.len(), "key count differs");
    assert_eq!(got, w.kvs, "keys or values differ from the snapshot's");
    assert_eq!(revision(c).await, revision_now, "header revision");
    // The history between the compaction and the snapshot is there; before it, it is compacted.
    let old = c
        .get("/app/b", Some(GetOptions::new().with_revision(w.compacted)))
        .await
        .unwrap();
    assert_eq!(
        old.kvs().first().map(|kv| kv.value().to_vec()),
        Some(b"2".to_vec())
    );
    let err = c
        .get(
            "/app/b",
            Some(GetOptions::new().with_revision(w.compacted - 1)),
        )
        .await
        .expect_err("a read below the compaction must fail");
    assert!(err.to_string().contains("compacted"), "{err}");
}

/// The lease is there, with its key attached and time left.
async fn assert_lease(c: &mut Client, w: &Written) {
    let leases = c.leases().await.unwrap();
    let ids: Vec<i64> = leases.leases().iter().map(|l| l.id()).collect();
    assert_eq!(ids, vec![w.lease], "leases after the restore");
    let ttl = c
        .lease_time_to_live(w.lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert!(ttl.ttl() > 0 && ttl.granted_ttl() == 3600, "{ttl:?}");
    assert_eq!(ttl.keys(), &[b"/app/leased".to_vec()]);
}

/// `cpkeep snapshot save FILE`; returns the revision it reports (checked against etcdutl).
async fn save(sb: &Sandbox, file: &Path, extra: &[&str]) -> i64 {
    let mut a = args(&["snapshot", "save", "-o", "json"]);
    a.push(file.display().to_string());
    a.extend(conn_args(sb, &sb.endpoints(), "5s"));
    a.extend(extra.iter().map(|s| s.to_string()));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rev = run.json()["revision"].as_i64().expect("revision");
    assert_eq!(etcdutl_status(file)["revision"].as_i64(), Some(rev));
    rev
}

/// A client of one sandbox member (with the sandbox's credentials, if any).
pub(crate) async fn member_client(sb: &Sandbox, index: usize) -> Client {
    let url = sb.members()[index].client_url(sb.tls());
    let conn = sb.connection_to(&[url], Duration::from_secs(5)).unwrap();
    cpkeep::etcd::connect(&conn.endpoints[0], &conn)
        .await
        .unwrap()
}

/// The `cpkeep restore` flags for `o`, as etcdutl takes them.
pub(crate) fn restore_args(snapshot: &str, o: &RestoreOptions, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["restore", "-o", "json", snapshot, "--name", &o.name]);
    if let Some(ic) = &o.initial_cluster {
        a.extend(["--initial-cluster".to_string(), ic.clone()]);
    }
    a.extend([
        "--initial-cluster-token".to_string(),
        o.initial_cluster_token.clone(),
        "--initial-advertise-peer-urls".to_string(),
        o.initial_advertise_peer_urls.join(","),
    ]);
    if let Some(d) = &o.data_dir {
        a.extend(["--data-dir".to_string(), d.display().to_string()]);
    }
    if o.move_aside {
        a.push("--move-aside".into());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

async fn restore_ok(a: &[String]) -> serde_json::Value {
    restore_ok_env(a, &[]).await
}

async fn restore_ok_env(a: &[String], env: &[(&str, String)]) -> serde_json::Value {
    let run = cpkeep_env(a, env).await;
    assert_eq!(run.code, 0, "{a:?}\n{}\n{}", run.stdout, run.stderr);
    run.json()
}

/// A free port on a loopback address.
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One plain-HTTP etcd member on its own loopback address, booted by the test on a data dir a
/// restore made. Killed on drop.
pub(crate) struct Solo {
    name: String,
    token: String,
    ip: IpAddr,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Solo {
    pub(crate) fn new(dir: &Path, name: &str, ip_last: u8) -> Self {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip_last));
        let client_port = free_port(ip);
        let mut peer_port = free_port(ip);
        while peer_port == client_port {
            peer_port = free_port(ip);
        }
        Solo {
            name: name.to_string(),
            token: format!("restore-test-{name}"),
            ip,
            client_port,
            peer_port,
            data_dir: dir.join(format!("{name}.data")),
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn client_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.peer_port)
    }

    /// This member alone, in its own data dir.
    pub(crate) fn options(&self) -> RestoreOptions {
        RestoreOptions {
            name: self.name.clone(),
            initial_cluster: Some(format!("{}={}", self.name, self.peer_url())),
            initial_cluster_token: self.token.clone(),
            initial_advertise_peer_urls: vec![self.peer_url()],
            data_dir: Some(self.data_dir.clone()),
            ..RestoreOptions::default()
        }
    }

    fn id(&self) -> u64 {
        member_id(&[self.peer_url()], &self.token)
    }

    /// Boots etcd `v` on the data dir and waits until it has a leader and answers a read.
    pub(crate) async fn boot(&mut self, v: Etcd) -> Client {
        assert!(self.child.is_none());
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(v.etcd())
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.client_url()))
            .arg(format!("--advertise-client-urls={}", self.client_url()))
            .arg(format!("--listen-peer-urls={}", self.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url()))
            .arg(format!(
                "--initial-cluster={}={}",
                self.name,
                self.peer_url()
            ))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                panic!(
                    "etcd {v:?} on {} exited with {st}:\n{}",
                    self.data_dir.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(2));
            match Client::connect([self.client_url()], Some(opts)).await {
                Ok(mut c) => match c.status().await {
                    Ok(s) if s.leader() != 0 => {
                        if c.get("/", None).await.is_ok() {
                            return c;
                        }
                    }
                    Ok(_) => last = "no leader yet".into(),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            assert!(
                Instant::now() < deadline,
                "etcd {v:?} on {} is not ready: {last}\n{}",
                self.data_dir.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Solo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A member list of exactly this one member, and the cluster ID of a one-member cluster.
async fn assert_alone(c: &mut Client, solo: &Solo) {
    let ml = c.member_list().await.unwrap();
    let ids: Vec<u64> = ml.members().iter().map(|m| m.id()).collect();
    assert_eq!(ids, vec![solo.id()]);
    assert_eq!(ml.members()[0].name(), solo.name);
    assert_eq!(ml.members()[0].peer_urls(), &[solo.peer_url()]);
    assert_eq!(
        ml.header().unwrap().cluster_id(),
        cluster_id(&[solo.id()]),
        "cluster ID"
    );
}

/// A plain one-member sandbox with `populate`d data and a snapshot file of it.
async fn populated_snapshot(v: Etcd, dir: &Path) -> (Sandbox, Written, PathBuf) {
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    let mut c = member_client(&sb, 0).await;
    let w = populate(&mut c).await;
    let file = dir.join("snap.db");
    assert_eq!(save(&sb, &file, &[]).await, w.revision);
    (sb, w, file)
}

/// The contents of every file under `dir`, by relative path (directories as empty entries).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Neither the data dir nor its `.part` exists.
fn assert_nothing_written(data_dir: &Path) {
    assert!(
        !data_dir.exists(),
        "{} was created by a failed restore",
        data_dir.display()
    );
    assert!(
        !part_of(data_dir).exists(),
        "{} was left by a failed restore",
        part_of(data_dir).display()
    );
}

/// Names in `dir` starting with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The sandbox's own three members rebuilt from a snapshot taken with auth on.

async fn three_members_get_everything_back(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    let mut c = member_client(&sb, 0).await;
    let w = populate(&mut c).await;
    add_users(&mut c).await;
    let original: Vec<u64> = {
        let ml = c.member_list().await.unwrap();
        let mut ids: Vec<u64> = ml.members().iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        ids
    };
    sb.enable_auth("root-secret").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    let rev = save(&sb, &file, &["--user", "root", "--password", "root-secret"]).await;
    assert_eq!(rev, w.revision);
    let snapshot_bytes = std::fs::read(&file).unwrap();

    sb.stop();
    let token = sb.restore_options(0).unwrap().initial_cluster_token;
    let expected: Vec<u64> = sb
        .members()
        .iter()
        .map(|m| member_id(&[m.peer_url(sb.tls())], &token))
        .collect();
    let cid = cluster_id(&expected);
    let mut sorted = expected.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, original,
        "a restore with the sandbox's token and URLs keeps its member IDs"
    );

    // Member 1 through the library, the others through the command line.
    let o = sb.restore_options(0).unwrap();
    let plan = cpkeep::restore::plan(&o, chrono::Utc::now()).unwrap();
    assert_eq!(plan.member_id, expected[0]);
    assert_eq!(plan.cluster_id, cid);
    assert_eq!(plan.move_aside.len(), 1, "the old data dir is moved aside");
    let report = cpkeep::restore::apply(
        &plan,
        &o,
        RestoreSource::File {
            path: file.clone(),
            identities: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.db.revision, w.revision);
    assert_eq!(report.db.snapshot_revision, w.revision);
    assert!(report.hash_checked);
    for (i, id) in expected.iter().enumerate().skip(1) {
        let o = sb.restore_options(i).unwrap();
        let j = restore_ok(&restore_args(&file.display().to_string(), &o, &[])).await;
        assert_eq!(j["member_id"], format!("{id:x}"), "{j}");
        assert_eq!(j["cluster_id"], format!("{cid:x}"), "{j}");
        assert_eq!(j["revision"].as_i64(), Some(w.revision), "{j}");
        assert_eq!(j["hash_checked"], true, "{j}");
        assert_eq!(j["members"].as_array().unwrap().len(), 3, "{j}");
    }
    for m in sb.members() {
        let parent = m.data_dir.parent().unwrap();
        let aside = named(parent, "data.bak-");
        assert_eq!(aside.len(), 1, "{}", parent.display());
        assert!(aside[0].join("member").join("wal").is_dir());
        assert!(!part_of(&m.data_dir).exists());
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        snapshot_bytes,
        "the snapshot was changed"
    );

    sb.start_stopped().await.unwrap();
    for (i, id) in expected.iter().enumerate() {
        let mut c = member_client(&sb, i).await;
        let ml = c.member_list().await.unwrap();
        let mut ids: Vec<u64> = ml.members().iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, sorted, "member list of member {i}");
        assert!(ml.members().iter().all(|m| !m.is_learner()));
        assert_eq!(ml.header().unwrap().cluster_id(), cid, "member {i}");
        assert_eq!(ml.header().unwrap().member_id(), *id);
        assert_same_data(&mut c, &w, w.revision).await;
    }
    let mut c = member_client(&sb, 0).await;
    assert_lease(&mut c, &w).await;
    let users = c.user_list().await.unwrap();
    let mut users = users.users().to_vec();
    users.sort();
    assert_eq!(users, vec!["alice".to_string(), "root".to_string()]);
    let roles = c.role_list().await.unwrap();
    let mut roles = roles.roles().to_vec();
    roles.sort();
    assert_eq!(roles, vec!["reader".to_string(), "root".to_string()]);
    assert_eq!(c.user_get("alice").await.unwrap().roles(), &["reader"]);
    let perms = c.role_get("reader").await.unwrap().permissions();
    assert_eq!(perms.len(), 1);
    assert_eq!(perms[0].key(), b"/app/");
    assert_eq!(perms[0].range_end(), b"/app0");
    // Auth is still on, and alice's password and permissions came back.
    let mut conn = sb
        .connection_to(&[sb.endpoints()[1].clone()], Duration::from_secs(5))
        .unwrap();
    conn.credentials = Some(cpkeep::etcd::Credentials {
        user: "alice".into(),
        password: "alice-secret".into(),
    });
    let mut alice = cpkeep::etcd::connect(&conn.endpoints[0], &conn)
        .await
        .unwrap();
    let r = alice.get("/app/a", None).await.unwrap();
    assert_eq!(r.kvs()[0].value(), b"1-overwritten");
    let denied = alice.get("/registry/pods/default/p00", None).await;
    assert!(
        denied
            .as_ref()
            .is_err_and(|e| e.to_string().contains("permission denied")),
        "{denied:?}"
    );
    // The restored cluster takes writes, and replicates them.
    let put = c.put("/app/new", "after the restore", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), w.revision + 1);
    let mut c3 = member_client(&sb, 2).await;
    let r = c3.get("/app/new", None).await.unwrap();
    assert_eq!(r.kvs()[0].value(), b"after the restore");
}

// 2. One member, new name and URLs, in a fresh directory.

async fn one_member_in_a_fresh_dir(v: Etcd) {
    let dir = tempfile::tempdir().unwrap();
    let (_sb, w, file) = populated_snapshot(v, dir.path()).await;
    let mut solo = Solo::new(&dir.path().join("restored"), "solo", 7);
    assert!(!solo.data_dir.parent().unwrap().exists());
    let j = restore_ok(&restore_args(
        &file.display().to_string(),
        &solo.options(),
        &[],
    ))
    .await;
    assert_eq!(j["member_id"], format!("{:x}", solo.id()), "{j}");
    assert_eq!(j["move_aside"].as_array().map(Vec::len), Some(0), "{j}");
    assert!(!part_of(&solo.data_dir).exists());
    assert!(!solo.data_dir.join(PART_MARKER).exists());
    let mut c = solo.boot(v).await;
    assert_alone(&mut c, &solo).await;
    assert_same_data(&mut c, &w, w.revision).await;
    assert_lease(&mut c, &w).await;
    let put = c.put("/app/new", "x", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), w.revision + 1);
}

// 3. --bump-revision, with and without --mark-compacted, as watchers see it.

/// The first watch response that carries events or a cancellation, for a watch of every key from
/// `start`.
pub(crate) async fn first_watch_answer(c: &mut Client, start: i64) -> etcd_client::WatchResponse {
    let mut stream = c
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(start),
            ),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .expect("no watch answer in 10s")
            .unwrap()
            .expect("watch stream ended");
        if msg.canceled() || msg.compact_revision() != 0 || !msg.events().is_empty() {
            return msg;
        }
    }
}

async fn bumped_revision_and_compaction_reach_watchers(v: Etcd) {
    const BUMP: i64 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let (_sb, w, file) = populated_snapshot(v, dir.path()).await;
    let f = file.display().to_string();

    let mut marked = Solo::new(dir.path(), "marked", 8);
    let j = restore_ok(&restore_args(
        &f,
        &marked.options(),
        &["--bump-revision", "1000000000", "--mark-compacted"],
    ))
    .await;
    assert_eq!(j["snapshot_revision"].as_i64(), Some(w.revision), "{j}");
    assert_eq!(j["revision"].as_i64(), Some(w.revision + BUMP), "{j}");
    assert_eq!(j["compacted_at"].as_i64(), Some(w.revision + BUMP), "{j}");
    let mut c = marked.boot(v).await;
    assert_alone(&mut c, &marked).await;
    assert_eq!(dump(&mut c).await, w.kvs, "keys after a bump");
    assert_eq!(revision(&mut c).await, w.revision + BUMP);
    // A watcher from before the restore is told to relist.
    let r = first_watch_answer(&mut c, 2).await;
    assert!(r.canceled(), "{r:?}");
    assert_eq!(r.compact_revision(), w.revision + BUMP, "{r:?}");
    let r = first_watch_answer(&mut c, w.revision).await;
    assert_eq!(r.compact_revision(), w.revision + BUMP, "{r:?}");
    let err = c
        .get("/app/a", Some(GetOptions::new().with_revision(w.revision)))
        .await
        .expect_err("history before the bump is compacted");
    assert!(err.to_string().contains("compacted"), "{err}");
    let put = c.put("/app/new", "x", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), w.revision + BUMP + 1);
    marked.stop();

    let mut bumped = Solo::new(dir.path(), "bumped", 9);
    let j = restore_ok(&restore_args(
        &f,
        &bumped.options(),
        &["--bump-revision", "1000000000"],
    ))
    .await;
    assert_eq!(j["revision"].as_i64(), Some(w.revision + BUMP), "{j}");
    assert!(j["compacted_at"].is_null(), "{j}");
    let mut c = bumped.boot(v).await;
    assert_eq!(dump(&mut c).await, w.kvs, "keys after a bump");
    assert_eq!(revision(&mut c).await, w.revision + BUMP);
    // Without --mark-compacted the old history stays watchable: only the snapshot's own
    // compaction stops a watcher.
    let r = first_watch_answer(&mut c, 2).await;
    assert!(r.canceled(), "{r:?}");
    assert_eq!(r.compact_revision(), w.compacted, "{r:?}");
    let r = first_watch_answer(&mut c, w.compacted + 1).await;
    assert!(!r.canceled() && r.compact_revision() == 0, "{r:?}");
    let first = r.events()[0].kv().unwrap();
    assert_eq!(first.mod_revision(), w.compacted + 1);
    assert_eq!(first.key(), b"/app/b");
    let old = c
        .get("/app/b", Some(GetOptions::new().with_revision(w.compacted)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"2");
    let put = c.put("/app/new", "x", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), w.revision + BUMP + 1);
}

/// The newest revision is a delete, compacted away: etcd 3.4 drops the tombstone, so the
/// snapshot's last key is older than the revision the cluster had served. The restored member must
/// still come back at that revision (etcd takes the compaction into account), and a large bump
/// must move past it.
async fn compacted_delete_at_the_head(v: Etcd) {
    const BUMP: i64 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    let mut c = member_client(&sb, 0).await;
    for i in 0..5 {
        c.put(format!("/k{i}"), "v", None).await.unwrap();
    }
    c.put("/gone", "v", None).await.unwrap();
    let head = c
        .delete("/gone", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(head, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let kvs = dump(&mut c).await;
    let file = dir.path().join("snap.db");
    let mut a = args(&["snapshot", "save", "-o", "json"]);
    a.push(file.display().to_string());
    a.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let f = file.display().to_string();

    let mut plain = Solo::new(dir.path(), "plain", 16);
    let j = restore_ok(&restore_args(&f, &plain.options(), &[])).await;
    assert_eq!(
        j["revision"],
        etcdutl_status(&file)["revision"],
        "the report's revision is the db's, as etcdutl reads it: {j}"
    );
    let mut c = plain.boot(v).await;
    assert_eq!(dump(&mut c).await, kvs);
    assert_eq!(revision(&mut c).await, head, "revision after the restore");
    let put = c.put("/new", "x", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), head + 1);
    plain.stop();

    let mut bumped = Solo::new(dir.path(), "bumped", 17);
    let j = restore_ok(&restore_args(
        &f,
        &bumped.options(),
        &["--bump-revision", "1000000000", "--mark-compacted"],
    ))
    .await;
    let reported = j["revision"].as_i64().unwrap();
    // The bump counts from where etcd boots (the compaction; on 3.4 above the last key), not from
    // the last key as etcdutl does: a small bump must still move forward.
    assert!(j["snapshot_revision"].as_i64().unwrap() <= head, "{j}");
    assert_eq!(reported, head + BUMP, "{j}");
    assert!(
        reported > head,
        "the bump must move past the served revision: {j}"
    );
    let mut c = bumped.boot(v).await;
    assert_eq!(revision(&mut c).await, reported);
    let r = first_watch_answer(&mut c, head).await;
    assert_eq!(r.compact_revision(), reported, "{r:?}");
}

// 4. The same snapshot through etcdutl and through cpkeep.

fn etcdutl_restore(file: &Path, o: &RestoreOptions, extra: &[&str]) {
    let out = Command::new(etcdutl())
        .args(["snapshot", "restore"])
        .arg(file)
        .args(["--name", &o.name])
        .args(["--initial-cluster", o.initial_cluster.as_deref().unwrap()])
        .args(["--initial-cluster-token", &o.initial_cluster_token])
        .args([
            "--initial-advertise-peer-urls",
            &o.initial_advertise_peer_urls.join(","),
        ])
        .arg("--data-dir")
        .arg(o.data_dir.as_ref().unwrap())
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdutl snapshot restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v35_matches_etcdutl_restore() {
    let v = Etcd::V35;
    let dir = tempfile::tempdir().unwrap();
    let (_sb, w, file) = populated_snapshot(v, dir.path()).await;
    let snap = etcdutl_status(&file);
    let mut ours = Solo::new(dir.path(), "same", 10);
    let theirs_dir = dir.path().join("etcdutl.data");
    let theirs_opts = RestoreOptions {
        data_dir: Some(theirs_dir.clone()),
        ..ours.options()
    };
    restore_ok(&restore_args(
        &file.display().to_string(),
        &ours.options(),
        &[],
    ))
    .await;
    etcdutl_restore(&file, &theirs_opts, &[]);
    let db = |d: &Path| d.join("member").join("snap").join("db");
    let ours_st = etcdutl_status(&db(&ours.data_dir));
    let theirs_st = etcdutl_status(&db(&theirs_dir));
    assert_eq!(ours_st["revision"], snap["revision"], "{ours_st} vs {snap}");
    assert_eq!(ours_st["totalKey"], snap["totalKey"], "{ours_st} vs {snap}");
    assert_eq!(ours_st["revision"], theirs_st["revision"]);
    assert_eq!(ours_st["totalKey"], theirs_st["totalKey"]);
    assert_eq!(
        ours_st["hash"], theirs_st["hash"],
        "the restored dbs differ: cpkeep {ours_st}, etcdutl {theirs_st}"
    );
    // The same with a bump and a compaction mark.
    let mut bumped = ours.options();
    bumped.data_dir = Some(dir.path().join("ours-bumped.data"));
    restore_ok(&restore_args(
        &file.display().to_string(),
        &bumped,
        &["--bump-revision", "1000", "--mark-compacted"],
    ))
    .await;
    let theirs_bumped = RestoreOptions {
        data_dir: Some(dir.path().join("theirs-bumped.data")),
        ..ours.options()
    };
    etcdutl_restore(
        &file,
        &theirs_bumped,
        &["--bump-revision", "1000", "--mark-compacted"],
    );
    let a = etcdutl_status(&db(bumped.data_dir.as_ref().unwrap()));
    let b = etcdutl_status(&db(theirs_bumped.data_dir.as_ref().unwrap()));
    assert_eq!(a["revision"].as_i64(), Some(w.revision + 1000), "{a}");
    assert_eq!(a["hash"], b["hash"], "bumped: cpkeep {a}, etcdutl {b}");
    assert_eq!(a["totalKey"], b["totalKey"]);

    // Both boot, on the same name and URLs in turn, and serve the same data at the same revision.
    let mut c = ours.boot(v).await;
    assert_alone(&mut c, &ours).await;
    let ours_kvs = dump(&mut c).await;
    let ours_rev = revision(&mut c).await;
    ours.stop();
    ours.data_dir = theirs_dir;
    let mut c = ours.boot(v).await;
    assert_alone(&mut c, &ours).await;
    assert_eq!(ours_kvs, dump(&mut c).await);
    assert_eq!(ours_rev, revision(&mut c).await);
    assert_eq!(ours_kvs, w.kvs);
    assert_eq!(ours_rev, w.revision);
}

// 5. From a store: a directory, and S3 with age.

async fn from_a_directory_store(v: Etcd) {
    const BUMP: i64 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    let mut c = member_client(&sb, 0).await;
    let w = populate(&mut c).await;
    // Enough pairs for branch pages above `key`'s last leaf: a bump copies that path.
    fill(&sb, 2000, 500).await;
    let kvs = dump(&mut c).await;
    let head = revision(&mut c).await;
    let store = dir.path().join("store").display().to_string();
    let mut a = args(&["backup", "--store", &store]);
    a.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let mut solo = Solo::new(dir.path(), "fromstore", 11);
    let j = restore_ok(&restore_args(
        "latest",
        &solo.options(),
        &["--store", &store],
    ))
    .await;
    assert!(j["source"].as_str().unwrap().starts_with("stored:"), "{j}");
    assert_eq!(j["written"].as_str(), Some("edited_in_place"), "{j}");
    assert_eq!(j["revision"].as_i64(), Some(head), "{j}");
    let mut c = solo.boot(v).await;
    assert_alone(&mut c, &solo).await;
    assert_eq!(
        dump(&mut c).await,
        kvs,
        "keys after a restore from the store"
    );
    assert_eq!(revision(&mut c).await, head);
    assert_lease(&mut c, &w).await;
    solo.stop();

    // Bumped and marked compacted, edited in place: what Kubernetes needs after a restore.
    let mut bumped = Solo::new(dir.path(), "bumpedfromstore", 12);
    let j = restore_ok(&restore_args(
        "latest",
        &bumped.options(),
        &[
            "--store",
            &store,
            "--bump-revision",
            "1000000000",
            "--mark-compacted",
        ],
    ))
    .await;
    assert_eq!(j["written"].as_str(), Some("edited_in_place"), "{j}");
    assert_eq!(j["revision"].as_i64(), Some(head + BUMP), "{j}");
    assert_eq!(j["compacted_at"].as_i64(), Some(head + BUMP), "{j}");
    let mut c = bumped.boot(v).await;
    assert_alone(&mut c, &bumped).await;
    assert_eq!(dump(&mut c).await, kvs, "keys after a bump");
    assert_eq!(revision(&mut c).await, head + BUMP);
    let r = first_watch_answer(&mut c, head).await;
    assert!(r.canceled(), "{r:?}");
    assert_eq!(r.compact_revision(), head + BUMP, "{r:?}");
    let put = c.put("/app/new", "x", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), head + BUMP + 1);
    let got = c.get("/app/new", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"x");
    bumped.stop();

    // A stored object changed or cut short after the backup: the download lands in the new
    // member's db, so the checks at its end must leave nothing behind. One clear line each.
    let object = largest_file(Path::new(&store));
    let good = std::fs::read(&object).unwrap();
    let target = dir.path().join("never");
    let attempt = || {
        let mut a = args(&["restore", "latest", "--store", &store, "--data-dir"]);
        a.push(target.display().to_string());
        a
    };
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&object, &flipped).unwrap();
    let run = cpkeep(&attempt()).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    // zstd's own checksum, or else the sha256 checks, catch it.
    let line = run.assert_one_clear_line().to_lowercase();
    assert!(
        line.contains("corrupt") || line.contains("sha256"),
        "{line}"
    );
    assert_nothing_written(&target);
    // Cut short: the listing no longer counts it as complete (its size is not the manifest's).
    std::fs::write(&object, &good[..good.len() - 100]).unwrap();
    let run = cpkeep(&attempt()).await;
    assert_fails(&run, 3, &["no complete snapshot"]);
    assert_nothing_written(&target);
    std::fs::write(&object, &good).unwrap();
    // The object intact but its manifest's db sha256 wrong: the whole db has landed before the
    // mismatch is known, and it must go.
    let manifest = files_under(Path::new(&store))
        .into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"db_sha256\"")))
        .expect("a manifest");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sha = j["db_sha256"].as_str().unwrap().to_string();
    let wrong = format!(
        "{}{}",
        if sha.starts_with('0') { "1" } else { "0" },
        &sha[1..]
    );
    std::fs::write(&manifest, text.replace(&sha, &wrong)).unwrap();
    let run = cpkeep(&attempt()).await;
    assert_fails(&run, 1, &["sha256"]);
    assert_nothing_written(&target);
    std::fs::write(&manifest, text).unwrap();
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// The biggest file under `dir`: a store's snapshot object (its manifests are small).
fn largest_file(dir: &Path) -> PathBuf {
    files_under(dir)
        .into_iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .expect("a stored object")
}

fn s3_flags(s3: &S3Sandbox, url: &str) -> Vec<String> {
    vec![
        "--store".into(),
        url.into(),
        "--s3-endpoint".into(),
        s3.endpoint().to_string(),
        "--s3-path-style".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v35_from_s3_with_age() {
    use age::secrecy::ExposeSecret;
    let v = Etcd::V35;
    let (s3, sb) = tokio::join!(
        async {
            S3Sandbox::start(S3SandboxOptions::default())
                .await
                .unwrap_or_else(|e| panic!("SeaweedFS did not start: {e}"))
        },
        sandbox_with(v, 1, |o| o.tls = false)
    );
    s3.create_bucket("etcd-backups").await.unwrap();
    let mut c = member_client(&sb, 0).await;
    let w = populate(&mut c).await;
    fill(&sb, 2000, 500).await;
    let kvs = dump(&mut c).await;
    let rev = revision(&mut c).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let key = dir.path().join("key.txt");
    std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    let wrong = dir.path().join("wrong.txt");
    std::fs::write(
        &wrong,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .unwrap();
    let url = "s3://etcd-backups/prod";
    let mut a = args(&["backup", "--encrypt-to", &identity.to_public().to_string()]);
    a.extend(s3_flags(&s3, url));
    a.extend(conn_args(&sb, &sb.endpoints(), "5s"));
    let run = cpkeep_env(&a, &s3.env()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let mut solo = Solo::new(dir.path(), "froms3", 12);
    let base = restore_args("latest", &solo.options(), &[]);
    let with = |extra: &[&str]| {
        let mut a = base.clone();
        a.extend(s3_flags(&s3, url));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // A wrong identity, then none: one clear line, nothing written.
    let run = cpkeep_env(
        &with(&["--identity", &wrong.display().to_string()]),
        &s3.env(),
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(line.contains("decrypt"), "{line}");
    assert_nothing_written(&solo.data_dir);
    let run = cpkeep_env(&with(&[]), &s3.env()).await;
    assert_fails(&run, 3, &["--identity"]);
    assert_nothing_written(&solo.data_dir);

    let j = restore_ok_env(
        &with(&["--identity", &key.display().to_string()]),
        &s3.env(),
    )
    .await;
    assert_eq!(j["revision"].as_i64(), Some(rev), "{j}");
    let mut c = solo.boot(v).await;
    assert_alone(&mut c, &solo).await;
    assert_eq!(dump(&mut c).await, kvs);
    assert_eq!(revision(&mut c).await, rev);
    assert_lease(&mut c, &w).await;
}

// 6. Faults: each one clear line, its exit code, and nothing written.

fn assert_fails(run: &Run, code: i32, says: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let line = run.assert_one_clear_line();
    for s in says {
        assert!(line.contains(s), "{line:?} should say {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snapshots_and_flags_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_sb, _w, file) = populated_snapshot(Etcd::V35, dir.path()).await;
    let good = std::fs::read(&file).unwrap();
    let solo = Solo::new(dir.path(), "never", 13);
    let o = solo.options();
    let run_on = |f: &Path, extra: &[&str]| restore_args(&f.display().to_string(), &o, extra);

    let corrupt = dir.path().join("corrupt.db");
    let mut bytes = good.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&corrupt, &bytes).unwrap();
    let run = cpkeep(&run_on(&corrupt, &[])).await;
    assert_fails(&run, 1, &["corrupt.db", "sha256"]);
    assert_nothing_written(&solo.data_dir);

    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &good[..good.len() / 2 + 100]).unwrap();
    let run = cpkeep(&run_on(&truncated, &[])).await;
    assert_fails(&run, 1, &["truncated.db", "truncated: the file has"]);
    assert!(!run.stderr.contains("no sha256 trailer"), "{}", run.stderr);
    assert_nothing_written(&solo.data_dir);
    // Without the hash check, the structure check still refuses it.
    let run = cpkeep(&run_on(&truncated, &["--skip-hash-check"])).await;
    assert_fails(&run, 1, &["truncated.db"]);
    assert_nothing_written(&solo.data_dir);

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a snapshot, it is a long enough text file\n",
    )
    .unwrap();
    let run = cpkeep(&run_on(&text, &[])).await;
    assert_fails(&run, 3, &["notes.txt", "not an etcd snapshot"]);
    assert_nothing_written(&solo.data_dir);

    let missing = dir.path().join("missing.db");
    let run = cpkeep(&run_on(&missing, &[])).await;
    assert_fails(&run, 3, &["missing.db", "no such file"]);
    assert_nothing_written(&solo.data_dir);

    let mut stranger = o.clone();
    stranger.name = "stranger".into();
    let run = cpkeep(&restore_args(&file.display().to_string(), &stranger, &[])).await;
    assert_fails(&run, 3, &["stranger", "--initial-cluster"]);
    assert_nothing_written(&solo.data_dir);

    // A data dir that is a file, or below one, is no directory, whatever --move-aside says: the
    // file is left as it was.
    let plain_file = dir.path().join("plain-file");
    std::fs::write(&plain_file, b"not a data dir").unwrap();
    for (data_dir, extra) in [
        (plain_file.clone(), vec![]),
        (plain_file.clone(), vec!["--move-aside"]),
        (plain_file.join("etcd"), vec![]),
    ] {
        let mut o = o.clone();
        o.data_dir = Some(data_dir.clone());
        let run = cpkeep(&restore_args(&file.display().to_string(), &o, &extra)).await;
        let says = format!(
            "--data-dir {}: {} is not a directory",
            data_dir.display(),
            plain_file.display()
        );
        assert_fails(&run, 3, &[&says]);
        assert!(!run.stderr.contains("--move-aside"), "{}", run.stderr);
        assert_eq!(std::fs::read(&plain_file).unwrap(), b"not a data dir");
    }

    // clap rejects --mark-compacted without --bump-revision before anything runs.
    let run = cpkeep(&run_on(&file, &["--mark-compacted"])).await;
    assert_fails(&run, 3, &["--bump-revision"]);
    assert_nothing_written(&solo.data_dir);

    assert_eq!(std::fs::read(&file).unwrap(), good, "the input was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_empty_data_dir_is_refused_or_moved_aside() {
    let v = Etcd::V35;
    let dir = tempfile::tempdir().unwrap();
    let (_sb, w, file) = populated_snapshot(v, dir.path()).await;
    let mut solo = Solo::new(dir.path(), "busy", 14);
    std::fs::create_dir_all(solo.data_dir.join("member").join("wal")).unwrap();
    std::fs::write(
        solo.data_dir.join("member").join("wal").join("x.wal"),
        b"old wal",
    )
    .unwrap();
    std::fs::write(solo.data_dir.join("notes"), b"keep me").unwrap();
    let before = tree(&solo.data_dir);
    let f = file.display().to_string();
    let run = cpkeep(&restore_args(&f, &solo.options(), &[])).await;
    assert_fails(&run, 2, &["not empty", "--move-aside"]);
    assert_eq!(tree(&solo.data_dir), before, "the data dir was touched");
    assert!(!part_of(&solo.data_dir).exists());
    assert!(named(dir.path(), "busy.data.bak-").is_empty());

    let mut o = solo.options();
    o.move_aside = true;
    let j = restore_ok(&restore_args(&f, &o, &[])).await;
    let aside = named(dir.path(), "busy.data.bak-");
    assert_eq!(aside.len(), 1);
    assert_eq!(
        j["move_aside"][0]["to"].as_str(),
        Some(aside[0].to_str().unwrap()),
        "{j}"
    );
    assert_eq!(
        tree(&aside[0]),
        before,
        "the old data dir moved aside changed"
    );
    assert!(!part_of(&solo.data_dir).exists());
    let mut c = solo.boot(v).await;
    assert_same_data(&mut c, &w, w.revision).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_restore_leaves_only_its_part_and_a_rerun_replaces_it() {
    let v = Etcd::V35;
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox_with(v, 1, |o| o.tls = false).await;
    fill(&sb, 3_000, 1000).await;
    let file = dir.path().join("big.db");
    let rev = save(&sb, &file, &[]).await;
    let mut solo = Solo::new(dir.path(), "killed", 15);
    let a = restore_args(&file.display().to_string(), &solo.options(), &[]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cpkeep"));
    cmd.args(&a);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPKEEP_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    // Paused by a failpoint once everything is built in the .part dir (db, raft snapshot, WAL)
    // and before anything outside it changes: killed there, deterministically.
    let mut child = cmd
        .env("CPKEEP_PKI_DIR", "/nonexistent-cpkeep-test-pki")
        .env("CPKEEP_TEST_FAILPOINTS", "restore.built=pause")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = part_of(&solo.data_dir);
    let db = part.join("member").join("snap").join("db");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "the restore ended before its failpoint: {said}");
        said.push_str(&line);
        if line.contains("failpoint restore.built reached") {
            break;
        }
    }
    assert!(db.is_file(), "paused before the db was written");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the restore finished before the kill");
    assert!(
        !solo.data_dir.exists(),
        "a killed restore made the data dir"
    );
    assert!(part.join(PART_MARKER).is_file(), "no marked leftover");

    let j = restore_ok(&a).await;
    assert_eq!(
        j["leftovers"][0].as_str(),
        Some(part.to_str().unwrap()),
        "{j}"
    );
    assert!(!part.exists());
    let mut c = solo.boot(v).await;
    assert_alone(&mut c, &solo).await;
    assert_eq!(revision(&mut c).await, rev);
    let n = c
        .get(
            "/registry/configmaps/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    assert_eq!(n, 3_000 - 1);
}

per_version!(
    three_members_get_everything_back,
    one_member_in_a_fresh_dir,
    bumped_revision_and_compaction_reach_watchers,
    from_a_directory_store,
    compacted_delete_at_the_head,
);
