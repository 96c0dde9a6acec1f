//! `cpkeep backup` and `cpkeep snapshot …` against real etcd, with a local directory store; faults
//! injected by a TCP proxy, a killed member, a full or read-only filesystem.

use std::path::Path;
use std::time::Duration;

use crate::harness::{
    conn_args, cpkeep, cpkeep_env, etcdutl_status, files_ending, fill, sandbox, sandbox_with, tool,
    Etcd, Run, Tmpfs,
};
use crate::proxy::{Fault, FaultProxy};

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

async fn backup(sb: &cpkeep::sandbox::Sandbox, store: &str, extra: &[&str]) -> Run {
    let mut a = args(&["backup", "-o", "json", "--store", store]);
    a.extend(conn_args(sb, &sb.endpoints(), "3s"));
    a.extend(extra.iter().map(|s| s.to_string()));
    cpkeep(&a).await
}

async fn list(store: &str, all: bool) -> serde_json::Value {
    let mut a = args(&["snapshot", "list", "-o", "json", "--store", store]);
    if all {
        a.push("--all".into());
    }
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

/// Nothing complete is listed, and no partial file is left.
async fn assert_nothing_stored(dir: &Path) {
    let store = dir.display().to_string();
    if dir.exists() {
        let l = list(&store, false).await;
        assert_eq!(l.as_array().map(|a| a.len()), Some(0), "{l}");
        assert!(files_ending(dir, ".part").is_empty(), "partial files left");
        assert!(
            files_ending(dir, ".json").is_empty(),
            "a manifest was written"
        );
    }
}

async fn roundtrip_to_directory(v: Etcd) {
    let sb = sandbox(v, 3).await;
    fill(&sb, 3000, 600).await;
    let store = tempfile::tempdir().unwrap();
    let s = store.path().display().to_string();
    let run = backup(&sb, &s, &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let j = run.json();
    let m = &j["manifest"];
    assert_eq!(
        j["source_is_leader"], false,
        "a follower should serve the snapshot: {j}"
    );
    assert!(m["etcd_version"].as_str().unwrap().starts_with(v.prefix()));
    assert_eq!(m["compression"]["algorithm"], "zstd");
    assert!(
        m["stored_size"].as_u64().unwrap() < m["db_size"].as_u64().unwrap() / 2,
        "{m}"
    );
    let key = m["object_key"].as_str().unwrap();
    let object = store.path().join(key);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&object).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(key.ends_with(".db.zst"));
    assert!(key.starts_with(m["cluster_id"].as_str().unwrap()));

    let l = list(&s, false).await;
    let entries = l.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    for f in [
        "id",
        "cluster_id",
        "revision",
        "created",
        "db_size",
        "stored_size",
        "compression",
        "encrypted",
    ] {
        assert!(!entries[0][f].is_null(), "list lacks {f}: {l}");
    }
    assert_eq!(entries[0]["id"], m["id"]);

    // get: a raw file etcdutl accepts (it verifies the trailer), with the manifest's revision.
    let out = store.path().join("got.db");
    let run = cpkeep(&args(&[
        "snapshot",
        "get",
        "latest",
        "--store",
        &s,
        "-O",
        &out.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let st = etcdutl_status(&out);
    assert_eq!(
        st["revision"].as_i64(),
        m["revision"].as_i64(),
        "{st} vs {m}"
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        m["db_size"].as_u64().unwrap() + 32
    );
    // The object itself decompresses with the stock zstd tool to the very same bytes.
    let plain = std::process::Command::new(tool("zstd"))
        .args(["-dc"])
        .arg(&object)
        .output()
        .unwrap();
    assert!(plain.status.success());
    assert_eq!(plain.stdout, std::fs::read(&out).unwrap());
    // An existing output file is not replaced without --force.
    let run = cpkeep(&args(&[
        "snapshot",
        "get",
        "latest",
        "--store",
        &s,
        "-O",
        &out.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 3);
    run.assert_one_clear_line();
}

async fn encrypted_backup_decrypts_with_the_age_cli(v: Etcd) {
    use age::secrecy::ExposeSecret;
    let sb = sandbox(v, 1).await;
    fill(&sb, 500, 300).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let key_file = dir.path().join("key.txt");
    std::fs::write(
        &key_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let recipients_file = dir.path().join("recipients.txt");
    let other = age::x25519::Identity::generate().to_public();
    std::fs::write(&recipients_file, format!("# ops team\n{other}\n")).unwrap();
    let store = dir.path().join("store");
    let s = store.display().to_string();
    let public = identity.to_public().to_string();
    let run = backup(
        &sb,
        &s,
        &[
            "--encrypt-to",
            &public,
            "--encrypt-to-file",
            &recipients_file.display().to_string(),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = run.json()["manifest"].clone();
    assert_eq!(m["encryption"]["recipients"].as_array().unwrap().len(), 2);
    assert!(
        !run.stdout.contains("AGE-SECRET-KEY"),
        "secret key in output"
    );
    let object = store.join(m["object_key"].as_str().unwrap());
    assert!(object.display().to_string().ends_with(".db.zst.age"));
    // The stock age CLI decrypts it, zstd decompresses it, etcdutl accepts it.
    let decrypted = dir.path().join("dec.zst");
    let st = std::process::Command::new(tool("age"))
        .args(["-d", "-i"])
        .arg(&key_file)
        .arg("-o")
        .arg(&decrypted)
        .arg(&object)
        .status()
        .unwrap();
    assert!(st.success());
    let plain = dir.path().join("plain.db");
    let st = std::process::Command::new(tool("zstd"))
        .args(["-dq"])
        .arg(&decrypted)
        .arg("-o")
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        etcdutl_status(&plain)["revision"].as_i64(),
        m["revision"].as_i64()
    );
    // get without the identity is refused; with it, it works.
    let out = dir.path().join("got.db").display().to_string();
    let run = cpkeep(&args(&[
        "snapshot", "get", "latest", "--store", &s, "-O", &out,
    ]))
    .await;
    assert_eq!(run.code, 3);
    assert!(run.assert_one_clear_line().contains("--identity"));
    let run = cpkeep(&args(&[
        "snapshot",
        "get",
        "latest",
        "--store",
        &s,
        "-O",
        &out,
        "--identity",
        &key_file.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&plain).unwrap());
    // A wrong identity is a clear failure, and writes nothing.
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
    let out2 = dir.path().join("got2.db");
    let run = cpkeep(&args(&[
        "snapshot",
        "get",
        "latest",
        "--store",
        &s,
        "-O",
        &out2.display().to_string(),
        "--identity",
        &wrong.display().to_string(),
    ]))
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.assert_one_clear_line().contains("decrypt"));
    assert!(!out2.exists() && files_ending(dir.path(), "got2.db.part").is_empty());
}

async fn save_writes_a_verified_raw_file(v: Etcd) {
    let sb = sandbox(v, 3).await;
    fill(&sb, 200, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    let mut a = args(&[
        "snapshot",
        "save",
        "-o",
        "json",
        &file.display().to_string(),
    ]);
    a.extend(conn_args(&sb, &sb.endpoints(), "3s"));
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    let st = etcdutl_status(&file);
    assert_eq!(st["revision"].as_i64(), j["revision"].as_i64());
    assert_eq!(st["totalSize"].as_u64(), j["db_size"].as_u64());
    let before = std::fs::read(&file).unwrap();
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 3);
    assert!(run.assert_one_clear_line().contains("--force"));
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

async fn quorum_lost_is_refused_unless_degraded_is_allowed(v: Etcd) {
    let mut sb = sandbox(v, 3).await;
    fill(&sb, 50, 50).await;
    sb.kill(1).unwrap();
    sb.kill(2).unwrap();
    let store = tempfile::tempdir().unwrap();
    let s = store.path().display().to_string();
    let run = backup(&sb, &s, &[]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.assert_one_clear_line().contains("quorum lost"));
    assert_nothing_stored(store.path()).await;
    let run = backup(&sb, &s, &["--allow-degraded"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(list(&s, false).await.as_array().unwrap().len(), 1);
}

per_version!(
    roundtrip_to_directory,
    encrypted_backup_decrypts_with_the_age_cli,
    save_writes_a_verified_raw_file,
    quorum_lost_is_refused_unless_degraded_is_allowed,
);

/// A single plain-HTTP member filled with a few MB, reached through a fault proxy.
async fn proxied(fault: Fault) -> (cpkeep::sandbox::Sandbox, FaultProxy) {
    let sb = sandbox_with(Etcd::V35, 1, |o| o.tls = false).await;
    fill(&sb, 4000, 1000).await;
    let m = &sb.members()[0];
    let proxy = FaultProxy::start(format!("{}:{}", m.ip, m.client_port), fault).await;
    (sb, proxy)
}

async fn backup_through(proxy: &FaultProxy, store: &str, extra: &[&str]) -> Run {
    let mut a = args(&[
        "backup",
        "--store",
        store,
        "--endpoints",
        &proxy.endpoint(),
        "--endpoint",
        &proxy.endpoint(),
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    cpkeep(&a).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_stream_fails_and_leaves_nothing() {
    let (_sb, proxy) = proxied(Fault::Flip { at: 1_500_000 }).await;
    let store = tempfile::tempdir().unwrap();
    let run = backup_through(&proxy, &store.path().display().to_string(), &[]).await;
    assert!(proxy.triggered.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("integrity check failed") || line.contains("snapshot stream"),
        "{line}"
    );
    assert!(line.contains(&proxy.endpoint()), "{line}");
    assert_nothing_stored(store.path()).await;
    assert_eq!(
        list(&store.path().display().to_string(), true)
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_killed_mid_stream_fails_fast() {
    let (mut sb, proxy) = proxied(Fault::Freeze { at: 1_000_000 }).await;
    let store = tempfile::tempdir().unwrap();
    let s = store.path().display().to_string();
    let p = proxy.endpoint();
    let task = tokio::spawn(async move {
        cpkeep(&args(&[
            "backup",
            "--store",
            &s,
            "--endpoints",
            &p,
            "--endpoint",
            &p,
            "--stall-timeout",
            "60s",
        ]))
        .await
    });
    for _ in 0..200 {
        if proxy.triggered.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        proxy.triggered.load(std::sync::atomic::Ordering::SeqCst),
        "stream never reached the fault"
    );
    sb.kill(0).unwrap();
    let run = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("backup hung")
        .unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.assert_one_clear_line().contains("snapshot stream"),
        "{}",
        run.stderr
    );
    assert_nothing_stored(store.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_times_out() {
    let (_sb, proxy) = proxied(Fault::Freeze { at: 1_000_000 }).await;
    let store = tempfile::tempdir().unwrap();
    let run = backup_through(
        &proxy,
        &store.path().display().to_string(),
        &["--stall-timeout", "2s"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.assert_one_clear_line().contains("stalled"),
        "{}",
        run.stderr
    );
    assert!(run.elapsed < Duration::from_secs(15), "{:?}", run.elapsed);
    assert_nothing_stored(store.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_read_only_directories_fail_cleanly() {
    let sb = sandbox_with(Etcd::V35, 1, |o| o.tls = false).await;
    fill(&sb, 3000, 1000).await;
    let fs = Tmpfs::mount("512k");
    let s = fs.dir.path().display().to_string();
    let mut a = args(&[
        "backup",
        "--store",
        &s,
        "--compression",
        "none",
        "--endpoints",
    ]);
    a.push(sb.endpoints()[0].clone());
    let run = cpkeep(&a).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(line.contains("No space left"), "{line}");
    assert!(line.contains(&s), "{line}");
    assert_nothing_stored(fs.dir.path()).await;
}

/// A store that cannot take the snapshot is refused before anything is asked of the cluster (the
/// endpoint here is dead: its error would come first otherwise), exit 3, one line naming the store.
#[tokio::test]
async fn unusable_stores_are_refused_before_the_snapshot_streams() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a store").unwrap();
    let ro = Tmpfs::mount("8m");
    ro.read_only();
    let under = file.join("store");
    for (store, says) in [
        (file.clone(), "not a directory"),
        (
            under.clone(),
            &format!("{} is not a directory", file.display()) as &str,
        ),
        (
            ro.dir.path().join("store"),
            "cannot write there: read-only file system",
        ),
    ] {
        let s = store.display().to_string();
        let run = cpkeep(&args(&["backup", "--store", &s, "--endpoints", &dead])).await;
        assert_eq!(run.code, 3, "{s}: {}", run.stderr);
        let line = run.assert_one_clear_line();
        assert!(line.contains(&format!("store {s}: {says}")), "{line}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a store");
    // A zero stall timeout could only fail later: refused while parsing.
    let s = dir.path().join("store").display().to_string();
    let run = cpkeep(&args(&[
        "backup",
        "--store",
        &s,
        "--endpoints",
        &dead,
        "--stall-timeout",
        "0s",
    ]))
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("--stall-timeout") && line.contains("more than zero"),
        "{line}"
    );
    let run = cpkeep(&args(&[
        "snapshot",
        "save",
        &s,
        "--endpoints",
        &dead,
        "--stall-timeout",
        "0s",
    ]))
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(!dir.path().join("store").exists());
    // Reading a store directory that does not exist is no empty store (an unmounted volume looks
    // the same): listing, pruning and restoring `latest` say so.
    let missing = dir.path().join("unmounted").display().to_string();
    for a in [
        args(&["snapshot", "list", "--store", &missing]),
        args(&["snapshot", "prune", "--store", &missing, "--keep-last", "1"]),
        args(&["restore", "latest", "--store", &missing, "--data-dir", &s]),
    ] {
        let run = cpkeep(&a).await;
        assert_eq!(run.code, 3, "{a:?}: {}\n{}", run.stdout, run.stderr);
        let line = run.assert_one_clear_line();
        assert!(
            line.contains(&format!("store {missing}: the directory does not exist")),
            "{a:?}: {line}"
        );
    }
    assert!(!dir.path().join("unmounted").exists());
    assert!(!dir.path().join("store").exists());
}

/// `file://` URLs are URLs: percent-escapes are decoded (RFC 8089).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_urls_are_decoded() {
    let sb = sandbox_with(Etcd::V35, 1, |o| o.tls = false).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/etcd%20backups", dir.path().display());
    let ep = sb.endpoints()[0].clone();
    let run = cpkeep(&args(&["backup", "--store", &url, "--endpoints", &ep])).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        files_ending(&dir.path().join("etcd backups"), ".json").len(),
        1
    );
    assert_eq!(list(&url, false).await.as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_recipient_is_refused_before_anything_is_written() {
    let sb = sandbox_with(Etcd::V35, 1, |o| o.tls = false).await;
    let store = tempfile::tempdir().unwrap();
    let target = store.path().join("never");
    let run = cpkeep(&args(&[
        "backup",
        "--store",
        &target.display().to_string(),
        "--endpoints",
        &sb.endpoints()[0],
        "--encrypt-to",
        "age1notarecipient",
    ]))
    .await;
    assert_eq!(run.code, 3);
    assert!(run
        .assert_one_clear_line()
        .contains("bad age recipient \"age1notarecipient\""));
    assert!(!target.exists());
}

/// Asking for encryption without naming a recipient (an empty flag or variable, as a blank ConfigMap
/// key gives the shipped CronJob, or a recipients file of comments) is exit 3, one line, and no
/// snapshot — never a silent plaintext backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_without_a_recipient_is_refused_not_stored_in_clear() {
    let sb = sandbox_with(Etcd::V35, 1, |o| o.tls = false).await;
    let store = tempfile::tempdir().unwrap();
    let target = store.path().join("never");
    let comments = store.path().join("recipients.txt");
    std::fs::write(&comments, "# the team's key goes here\n\n   \n").unwrap();
    let base = |extra: &[&str]| {
        let mut a = vec![
            "backup".to_string(),
            "--store".into(),
            target.display().to_string(),
            "--endpoints".into(),
            sb.endpoints()[0].clone(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // (arguments, environment, what the refusal says)
    type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            base(&["--encrypt-to", ""]),
            vec![],
            "--encrypt-to / CPKEEP_ENCRYPT_TO is empty",
        ),
        (
            base(&[]),
            vec![("CPKEEP_ENCRYPT_TO", String::new())],
            "CPKEEP_ENCRYPT_TO is empty",
        ),
        (
            base(&[]),
            vec![("CPKEEP_ENCRYPT_TO", "  ".into())],
            "CPKEEP_ENCRYPT_TO is empty",
        ),
        (
            base(&[]),
            vec![("CPKEEP_ENCRYPT_TO", " , ".into())],
            "CPKEEP_ENCRYPT_TO is empty",
        ),
        (
            base(&["--encrypt-to-file", &comments.display().to_string()]),
            vec![],
            "holds only blank lines and comments",
        ),
    ];
    for (a, env, words) in cases {
        let run = cpkeep_env(&a, &env).await;
        assert_eq!(run.code, 3, "{words}: {}", run.stderr);
        let line = run.assert_one_clear_line();
        assert!(line.contains(words), "{line}");
        assert!(
            line.contains("refusing to store the snapshot unencrypted"),
            "{line}"
        );
        assert!(!target.exists(), "{words}: nothing stored");
    }
    // An empty CPKEEP_ENCRYPT_TO_FILE is already a usage error (clap wants a value).
    let run = cpkeep_env(&base(&[]), &[("CPKEEP_ENCRYPT_TO_FILE", String::new())]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.assert_one_clear_line().contains("--encrypt-to-file"));
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_what_the_rules_say_and_removes_leftovers() {
    let sb = sandbox_with(Etcd::V35, 1, |o| o.tls = false).await;
    fill(&sb, 100, 100).await;
    let store = tempfile::tempdir().unwrap();
    let s = store.path().display().to_string();
    let ep = sb.endpoints()[0].clone();
    // Snapshot IDs have one-second resolution: each backup gets its own second from a fixed clock
    // instead of waiting for the real one.
    let t0 = chrono::Utc::now();
    let at = |secs: i64| {
        vec![(
            "CPKEEP_TEST_NOW",
            (t0 + chrono::Duration::seconds(secs)).to_rfc3339(),
        )]
    };
    for second in 0..3 {
        let run = cpkeep_env(
            &args(&["backup", "--store", &s, "--endpoints", &ep]),
            &at(second),
        )
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let l = list(&s, false).await;
    let ids: Vec<String> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let cluster = l[0]["cluster_id"].as_str().unwrap().to_string();
    // Leftovers: an object without manifest from long ago, and an abandoned .part.
    let cdir = store.path().join(&cluster);
    std::fs::write(cdir.join("20200101T000000Z-r1.db.zst"), b"junk").unwrap();
    let part = cdir.join("20200102T000000Z-r2.db.zst.part");
    std::fs::write(&part, b"junk").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&part)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(list(&s, true).await.as_array().unwrap().len(), 5);

    let run = cpkeep(&args(&[
        "snapshot",
        "prune",
        "--store",
        &s,
        "--keep-last",
        "1",
        "--dry-run",
        "-o",
        "json",
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan = run.json();
    assert_eq!(
        plan["plan"]["delete"].as_array().unwrap().len(),
        3,
        "{plan}"
    );
    assert_eq!(plan["plan"]["abort"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(
        list(&s, true).await.as_array().unwrap().len(),
        5,
        "dry run deleted something"
    );

    let run = cpkeep(&args(&[
        "snapshot",
        "prune",
        "--store",
        &s,
        "--keep-last",
        "1",
    ]))
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = list(&s, true).await;
    let left: Vec<&str> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec![ids[0].as_str()], "{after}");
    assert!(!part.exists());

    // Without a rule nothing is deleted.
    let run = cpkeep(&args(&["snapshot", "prune", "--store", &s])).await;
    assert_eq!(run.code, 3);
    assert!(run.assert_one_clear_line().contains("no retention rule"));

    // backup --prune keeps the rule after the new snapshot.
    let run = cpkeep_env(
        &args(&[
            "backup",
            "--store",
            &s,
            "--endpoints",
            &ep,
            "--prune",
            "--keep-last",
            "1",
        ]),
        &at(3),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = list(&s, true).await;
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_ne!(after[0]["id"].as_str().unwrap(), ids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_on_leader_backs_up_on_the_leaders_node_alone() {
    let sb = sandbox(Etcd::V35, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let leader = sb.leader().await.unwrap();
    let follower = sb.follower().await.unwrap();
    // Each node's daemon names its own member first (kubeadm: https://127.0.0.1:2379).
    let on_node = |i: usize| {
        let eps = sb.endpoints();
        let mut a = args(&[
            "backup",
            "-o",
            "json",
            "--only-on-leader",
            "--store",
            &store,
        ]);
        a.extend(conn_args(&sb, &[eps[i].clone()], "3s"));
        a
    };
    let r = cpkeep(&on_node(follower)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(
        j["standby"]["endpoint"].as_str(),
        Some(sb.endpoints()[follower].as_str()),
        "{j}"
    );
    assert!(j["standby"]["leader_id"].is_string(), "{j}");
    assert_nothing_stored(&dir.path().join("store")).await;

    let r = cpkeep(&on_node(leader)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert!(j.get("standby").is_none(), "{j}");
    assert_eq!(
        list(&store, false).await.as_array().map(|a| a.len()),
        Some(1)
    );
}
