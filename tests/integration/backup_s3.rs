//! `cpkeep backup` into a real S3 server (SeaweedFS, signed requests): multipart streaming, listing,
//! fetching, and the failures: wrong keys, missing bucket, a server killed mid-upload, a corrupted
//! stream (no multipart upload left open).

use std::time::Duration;

use cpkeep::sandbox::{S3Sandbox, S3SandboxOptions};

use crate::harness::{
    conn_args, cpkeep_env, etcdutl_status, fill, sandbox, sandbox_with, Etcd, Run,
};
use crate::proxy::{Fault, FaultProxy};

pub(crate) async fn s3() -> S3Sandbox {
    match S3Sandbox::start(S3SandboxOptions::default()).await {
        Ok(s) => s,
        Err(e) => panic!("SeaweedFS did not start: {e}"),
    }
}

fn store_flags(s3: &S3Sandbox, url: &str) -> Vec<String> {
    vec![
        "--store".into(),
        url.into(),
        "--s3-endpoint".into(),
        s3.endpoint().to_string(),
        "--s3-path-style".into(),
        "--s3-part-size".into(),
        "5MiB".into(),
    ]
}

async fn run(s3: &S3Sandbox, args: Vec<String>) -> Run {
    cpkeep_env(&args, &s3.env()).await
}

pub(crate) async fn pending_and_objects(s3: &S3Sandbox, bucket: &str) -> (usize, usize) {
    let c = s3.client();
    let uploads = c
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let objects = c.list_objects_v2().bucket(bucket).send().await.unwrap();
    (uploads.uploads().len(), objects.contents().len())
}

/// SeaweedFS with an `etcd-backups` bucket, and a one-member plain-HTTP etcd holding about 12 MB
/// (three 5 MiB parts uncompressed) behind a proxy that applies `fault` to the stream.
pub(crate) async fn s3_behind_fault(
    fault: Fault,
) -> (S3Sandbox, cpkeep::sandbox::Sandbox, FaultProxy) {
    let (s3, sb) = tokio::join!(s3(), sandbox_with(Etcd::V35, 1, |o| o.tls = false));
    s3.create_bucket("etcd-backups").await.unwrap();
    fill(&sb, 12_000, 900).await;
    let m = &sb.members()[0];
    let proxy = FaultProxy::start(format!("{}:{}", m.ip, m.client_port), fault).await;
    (s3, sb, proxy)
}

/// `backup --compression none` through `proxy` into `s3://etcd-backups/p`.
fn backup_through_proxy(s3: &S3Sandbox, proxy: &FaultProxy) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "backup".into(),
        "--compression".into(),
        "none".into(),
        "--endpoints".into(),
        proxy.endpoint(),
        "--endpoint".into(),
        proxy.endpoint(),
    ];
    a.extend(store_flags(s3, "s3://etcd-backups/p"));
    a
}

async fn roundtrip(v: Etcd) {
    let (s3, sb) = tokio::join!(s3(), sandbox(v, 3));
    s3.create_bucket("etcd-backups").await.unwrap();
    // About 12 MB uncompressed: three 5 MiB parts with --compression none.
    fill(&sb, 10_000, 900).await;
    let url = "s3://etcd-backups/prod/eu-1";
    let mut a: Vec<String> = vec![
        "backup".into(),
        "-o".into(),
        "json".into(),
        "--compression".into(),
        "none".into(),
    ];
    a.extend(store_flags(&s3, url));
    a.extend(conn_args(&sb, &sb.endpoints(), "3s"));
    // Snapshot IDs have one-second resolution: the two backups get their own seconds from a fixed
    // clock instead of waiting for the real one.
    let t0 = chrono::Utc::now();
    let at = |secs: i64| {
        let mut env = s3.env();
        env.push((
            "CPKEEP_TEST_NOW",
            (t0 + chrono::Duration::seconds(secs)).to_rfc3339(),
        ));
        env
    };
    let r = cpkeep_env(&a, &at(0)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = r.json()["manifest"].clone();
    assert!(m["stored_size"].as_u64().unwrap() > 10 * 1024 * 1024, "{m}");
    assert!(!r.stdout.contains(s3.secret_key()) && !r.stderr.contains(s3.secret_key()));
    let key = format!("prod/eu-1/{}", m["object_key"].as_str().unwrap());
    let head = s3
        .client()
        .head_object()
        .bucket("etcd-backups")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), m["stored_size"].as_i64());
    // A multipart upload's ETag ends with -<parts>.
    assert!(
        head.e_tag().unwrap_or_default().contains("-3"),
        "{:?}",
        head.e_tag()
    );
    assert_eq!(pending_and_objects(&s3, "etcd-backups").await, (0, 2));

    // A compressed one too, then list and fetch both.
    let mut a: Vec<String> = vec!["backup".into()];
    a.extend(store_flags(&s3, url));
    a.extend(conn_args(&sb, &sb.endpoints(), "3s"));
    let r = cpkeep_env(&a, &at(1)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut a: Vec<String> = vec!["snapshot".into(), "list".into(), "-o".into(), "json".into()];
    a.extend(store_flags(&s3, url));
    let r = run(&s3, a).await;
    let l = r.json();
    let list = l.as_array().unwrap();
    assert_eq!(list.len(), 2, "{l}");
    assert_eq!(list[0]["compression"], "zstd");
    assert_eq!(list[1]["compression"], "none");
    let dir = tempfile::tempdir().unwrap();
    for e in list {
        let out = dir.path().join(format!("{}.db", e["id"].as_str().unwrap()));
        let mut a: Vec<String> = vec![
            "snapshot".into(),
            "get".into(),
            e["id"].as_str().unwrap().into(),
            "-O".into(),
            out.display().to_string(),
        ];
        a.extend(store_flags(&s3, url));
        let r = run(&s3, a).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            etcdutl_status(&out)["revision"].as_i64(),
            e["revision"].as_i64()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v35_roundtrip_through_s3() {
    roundtrip(Etcd::V35).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v34_roundtrip_through_s3() {
    roundtrip(Etcd::V34).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_and_missing_bucket_are_one_clear_line() {
    let (s3, sb) = tokio::join!(s3(), sandbox_with(Etcd::V35, 1, |o| o.tls = false));
    s3.create_bucket("etcd-backups").await.unwrap();
    let mut env = s3.env();
    let wrong = "definitely-not-the-secret-0123456789".to_string();
    for (k, v) in env.iter_mut() {
        if *k == "AWS_SECRET_ACCESS_KEY" {
            *v = wrong.clone();
        }
    }
    let mut a: Vec<String> = vec![
        "backup".into(),
        "--endpoints".into(),
        sb.endpoints()[0].clone(),
    ];
    a.extend(store_flags(&s3, "s3://etcd-backups/p"));
    let r = cpkeep_env(&a, &env).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.assert_one_clear_line();
    assert!(line.contains("SignatureDoesNotMatch"), "{line}");
    assert!(line.contains("s3://etcd-backups/p"), "{line}");
    assert!(!r.stderr.contains(&wrong) && !r.stderr.contains(s3.secret_key()));
    assert_eq!(pending_and_objects(&s3, "etcd-backups").await, (0, 0));

    let mut a: Vec<String> = vec![
        "backup".into(),
        "--endpoints".into(),
        sb.endpoints()[0].clone(),
    ];
    a.extend(store_flags(&s3, "s3://no-such-bucket/p"));
    let r = run(&s3, a).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.assert_one_clear_line();
    assert!(line.contains("NoSuchBucket"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_stream_leaves_no_upload_open() {
    // Late in the stream, after parts have been uploaded.
    let (s3, _sb, proxy) = s3_behind_fault(Fault::Flip { at: 11_000_000 }).await;
    let a = backup_through_proxy(&s3, &proxy);
    let r = run(&s3, a).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.assert_one_clear_line().contains("integrity"),
        "{}",
        r.stderr
    );
    assert_eq!(pending_and_objects(&s3, "etcd-backups").await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_killed_mid_upload_fails_without_hanging() {
    let (mut s3, _sb, proxy) = s3_behind_fault(Fault::Pause {
        at: 7_000_000,
        millis: 3000,
    })
    .await;
    let a = backup_through_proxy(&s3, &proxy);
    let env = s3.env();
    let task = tokio::spawn(async move { cpkeep_env(&a, &env).await });
    for _ in 0..200 {
        if proxy.triggered.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        proxy.triggered.load(std::sync::atomic::Ordering::SeqCst),
        "stream never reached the pause"
    );
    s3.kill();
    let r = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("backup hung")
        .unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.assert_one_clear_line();
    assert!(line.contains("s3://etcd-backups/p"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_upload_aborts_the_multipart_upload() {
    // What a CronJob's pod gets at its activeDeadlineSeconds: SIGTERM while the snapshot streams.
    let (s3, _sb, proxy) = s3_behind_fault(Fault::Freeze { at: 11_000_000 }).await;
    let a = backup_through_proxy(&s3, &proxy);
    let child = crate::harness::cpkeep_command(&a, &s3.env())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(pending_and_objects(&s3, "etcd-backups").await.0 == 1
        && proxy.triggered.load(std::sync::atomic::Ordering::SeqCst))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never reached an open upload and a frozen stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("backup did not stop after SIGTERM")
        .unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: Duration::ZERO,
    };
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.assert_one_clear_line().contains("cancelled"),
        "{}",
        r.stderr
    );
    assert_eq!(pending_and_objects(&s3, "etcd-backups").await, (0, 0));
}
