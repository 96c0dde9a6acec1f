//! `cpkeep daemon` against a real etcd sandbox, with second-level schedules: /metrics follows the
//! cluster, runs are counted, a job slower than its interval is skipped and not overlapped, and
//! SIGTERM ends the daemon cleanly within its grace. Every wait polls with a deadline.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cpkeep::sandbox::S3Sandbox;

use crate::backup_s3::{s3, s3_behind_fault};
use crate::harness::{sandbox, Etcd};
use crate::proxy::Fault;

/// A free loopback port (bound, then released for the daemon).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The daemon process, killed if a test fails before it stopped it.
struct Daemon {
    child: tokio::process::Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn start(config: &Path, port: u16) -> Daemon {
    start_env(config, port, &[])
}

/// [`start`] with extra environment (the AWS chain's settings for an S3 store).
fn start_env(config: &Path, port: u16, env: &[(&str, String)]) -> Daemon {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpkeep"));
    cmd.arg("--config")
        .arg(config)
        .args(["daemon", "--listen", &format!("127.0.0.1:{port}")]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPKEEP_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CPKEEP_PKI_DIR", "/nonexistent-cpkeep-test-pki")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Daemon {
        child: cmd.spawn().expect("start cpkeep daemon"),
    }
}

/// GET `path`: the status line's code, the Content-Type and the body; None while nothing answers.
async fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    Some((code, ctype, body.to_string()))
}

/// The value of the series `series` (name and labels as exposed) in an exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Polls /metrics until `want` holds of it, or panics with the last exposition at `deadline`.
async fn wait_metrics(
    port: u16,
    within: Duration,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some((200, _, body)) = get(port, "/metrics").await {
            if want(&body) {
                return body;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not seen within {within:?}; last /metrics:\n{last}");
}

fn config(
    extra: &str,
    dir: &Path,
    sb: &cpkeep::sandbox::Sandbox,
    timeout: &str,
    schedule: &str,
    grace: &str,
) -> std::path::PathBuf {
    let files = sb.tls_files();
    let p = |x: Option<std::path::PathBuf>| x.unwrap().display().to_string();
    let text = format!(
        "connection:\n  endpoints: \"{}\"\n  cacert: {}\n  cert: {}\n  key: {}\n  timeout: {timeout}\n\
         health:\n  schedule: \"{schedule}\"\n  no-discover: true\n\
         daemon:\n  shutdown-grace: {grace}\n",
        sb.endpoints().join(","),
        p(files.ca),
        p(files.cert),
        p(files.key),
    );
    let path = dir.join("cpkeep.yaml");
    std::fs::write(&path, text + extra).unwrap();
    path
}

/// The single value of a family whose labels include `cluster_id` (one cluster here).
fn etcd(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .filter(|rest| rest.starts_with("{cluster_id="))
            .and_then(|rest| rest.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
    })
}

async fn sigterm_exits_cleanly(d: &mut Daemon, within: Duration) {
    let pid = d.child.id().unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(within, d.child.wait())
        .await
        .unwrap_or_else(|_| panic!("the daemon did not stop within {within:?} of SIGTERM"))
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_job_fills_the_etcd_series_and_follows_a_killed_member() {
    let mut sb = sandbox(Etcd::V35, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("", dir.path(), &sb, "2s", "*/2 * * * * *", "5s");
    let port = free_port();
    let mut d = start(&cfg, port);

    // Every job series is there before any run.
    let first = wait_metrics(port, Duration::from_secs(20), "first scrape", |_| true).await;
    assert_eq!(
        value(
            &first,
            "cpkeep_job_runs_total{task=\"backup\",result=\"skipped\"}"
        ),
        Some(0.0)
    );
    assert_eq!(value(&first, "cpkeep_drill_last_result"), Some(-1.0));
    assert!(first.contains("cpkeep_build_info{"), "{first}");
    let (code, ctype, _) = get(port, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        ctype.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ctype}"
    );
    assert_eq!(get(port, "/healthz").await.unwrap().0, 200);
    assert_eq!(get(port, "/readyz").await.unwrap().0, 200);

    let m = wait_metrics(port, Duration::from_secs(20), "a health run", |t| {
        value(t, "cpkeep_job_runs_total{task=\"health\",result=\"ok\"}").unwrap_or(0.0) >= 1.0
    })
    .await;
    assert_eq!(etcd(&m, "cpkeep_etcd_voters"), Some(3.0), "{m}");
    assert_eq!(etcd(&m, "cpkeep_etcd_healthy_voters"), Some(3.0));
    assert_eq!(etcd(&m, "cpkeep_etcd_quorum"), Some(2.0));
    assert_eq!(etcd(&m, "cpkeep_etcd_fault_tolerance"), Some(1.0));
    assert_eq!(etcd(&m, "cpkeep_etcd_leader_present"), Some(1.0));
    assert_eq!(etcd(&m, "cpkeep_etcd_learners"), Some(0.0));
    assert!(etcd(&m, "cpkeep_etcd_db_size_bytes").unwrap() > 0.0);
    assert!(
        value(
            &m,
            "cpkeep_job_last_success_timestamp_seconds{task=\"health\"}"
        )
        .unwrap()
            > 1.0e9
    );

    sb.kill(2).unwrap();
    let m = wait_metrics(
        port,
        Duration::from_secs(30),
        "the killed member seen",
        |t| etcd(t, "cpkeep_etcd_healthy_voters") == Some(2.0),
    )
    .await;
    assert_eq!(etcd(&m, "cpkeep_etcd_fault_tolerance"), Some(0.0), "{m}");
    assert_eq!(etcd(&m, "cpkeep_etcd_voters"), Some(3.0));
    assert_eq!(
        value(
            &m,
            "cpkeep_job_runs_total{task=\"health\",result=\"failed\"}"
        ),
        Some(0.0)
    );

    sigterm_exits_cleanly(&mut d, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_slower_than_its_interval_is_skipped_and_sigterm_aborts_it_after_the_grace() {
    let sb = sandbox(Etcd::V35, 3).await;
    let dir = tempfile::tempdir().unwrap();
    // A frozen member holds every run for the whole 6 s timeout; the schedule ticks every second.
    let cfg = config("", dir.path(), &sb, "6s", "* * * * * *", "1s");
    sb.pause(0).unwrap();
    let port = free_port();
    let mut d = start(&cfg, port);
    let m = wait_metrics(port, Duration::from_secs(30), "skipped runs", |t| {
        value(
            t,
            "cpkeep_job_runs_total{task=\"health\",result=\"skipped\"}",
        )
        .unwrap_or(0.0)
            >= 3.0
    })
    .await;
    // Skipped while the first run is still going: no run has ended yet, so none overlapped.
    let ended = value(&m, "cpkeep_job_duration_seconds_count{task=\"health\"}").unwrap();
    assert!(ended <= 1.0, "{m}");
    // SIGTERM in the middle of a run: it is aborted after the 1 s grace, the daemon exits 0.
    let t = Instant::now();
    sigterm_exits_cleanly(&mut d, Duration::from_secs(8)).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    sb.resume(0).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_appear_in_a_directory_store_are_pruned_and_metrics_follow() {
    let sb = sandbox(Etcd::V35, 3).await;
    // Keys, so the backups' revision is above 0.
    crate::harness::fill(&sb, 50, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let backup = format!(
        "backup:\n  store: \"{}\"\n  schedule: \"*/2 * * * * *\"\n  prune: true\n  keep-last: 2\n",
        store.display()
    );
    let cfg = config(&backup, dir.path(), &sb, "3s", "*/2 * * * * *", "20s");
    let port = free_port();
    let mut d = start(&cfg, port);
    let m = wait_metrics(port, Duration::from_secs(60), "four backups", |t| {
        value(t, "cpkeep_job_runs_total{task=\"backup\",result=\"ok\"}").unwrap_or(0.0) >= 4.0
    })
    .await;
    assert!(
        etcd(&m, "cpkeep_backup_last_revision").unwrap() > 0.0,
        "{m}"
    );
    assert!(etcd(&m, "cpkeep_backup_last_db_size_bytes").unwrap() > 0.0);
    assert!(etcd(&m, "cpkeep_backup_last_stored_size_bytes").unwrap() > 0.0);
    assert!(value(&m, "cpkeep_backup_upload_bytes_total").unwrap() > 0.0);
    for step in ["snapshot", "upload", "prune"] {
        let series = format!("cpkeep_backup_step_failures_total{{step=\"{step}\"}}");
        assert_eq!(value(&m, &series), Some(0.0), "{m}");
    }
    assert_eq!(
        value(&m, "cpkeep_job_interval_seconds{task=\"backup\"}"),
        Some(2.0)
    );
    // Stopped between runs or after the running one finished: exactly the two newest are kept.
    sigterm_exits_cleanly(&mut d, Duration::from_secs(25)).await;
    let manifests = crate::harness::files_ending(&store, ".json");
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    assert!(crate::harness::files_ending(&store, ".part").is_empty());
    // A restarted daemon starts the backup's last success at the newest snapshot, not at 0.
    let port = free_port();
    let mut d = start(&cfg, port);
    let m = wait_metrics(port, Duration::from_secs(20), "first scrape", |_| true).await;
    let last = value(
        &m,
        "cpkeep_job_last_success_timestamp_seconds{task=\"backup\"}",
    )
    .unwrap();
    assert!(last > 1.0e9, "{m}");
    sigterm_exits_cleanly(&mut d, Duration::from_secs(25)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_job_writes_the_textfile_each_run() {
    let sb = sandbox(Etcd::V35, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16");
    let textfile = dir.path().join("cpkeep-certs.prom");
    let certs = format!(
        "certs:\n  schedule: \"*/2 * * * * *\"\n  cert-dir: {}\n  kubeconfig-dir: {}\n  prometheus: {}\n",
        fixture.join("pki").display(),
        fixture.display(),
        textfile.display()
    );
    // The health job off: only the certs job runs.
    let cfg = config(&certs, dir.path(), &sb, "2s", "0 0 0 1 1 *", "5s");
    let port = free_port();
    let mut d = start(&cfg, port);
    let m = wait_metrics(port, Duration::from_secs(30), "a certs run", |t| {
        value(t, "cpkeep_job_runs_total{task=\"certs\",result=\"ok\"}").unwrap_or(0.0) >= 1.0
    })
    .await;
    assert_eq!(
        value(
            &m,
            "cpkeep_job_runs_total{task=\"certs\",result=\"failed\"}"
        ),
        Some(0.0),
        "{m}"
    );
    let text = std::fs::read_to_string(&textfile).unwrap();
    assert!(text.contains("x509_cert_not_after{"), "{text}");
    // /metrics carries the same certificate series as the textfile, label for label.
    let served: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("x509_cert_not_after{"))
        .collect();
    let written: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("x509_cert_not_after{"))
        .collect();
    assert!(!served.is_empty(), "{m}");
    assert_eq!(served.len(), written.len(), "{m}\n---\n{text}");
    for line in &written {
        assert!(served.contains(line), "{line} not on /metrics:\n{m}");
    }
    sigterm_exits_cleanly(&mut d, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_drill_verifies_the_newest_backup() {
    let sb = sandbox(Etcd::V35, 1).await;
    // A new, empty cluster: its snapshot's db holds no key, so the manifest must say revision 0
    // (as the db does) for the drill to pass.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let jobs = format!(
        "backup:\n  store: \"{s}\"\n  schedule: \"*/3 * * * * *\"\n\
         drill:\n  store: \"{s}\"\n  schedule: \"*/2 * * * * *\"\n  enabled: true\n  etcd-bin: {e}\n",
        s = store.display(),
        e = Etcd::V35.etcd().display()
    );
    let cfg = config(&jobs, dir.path(), &sb, "3s", "0 0 0 1 1 *", "30s");
    let port = free_port();
    let mut d = start(&cfg, port);
    let m = wait_metrics(port, Duration::from_secs(90), "a passed drill", |t| {
        value(t, "cpkeep_drill_last_result") == Some(1.0)
    })
    .await;
    assert!(
        value(&m, "cpkeep_drill_last_duration_seconds").unwrap() > 0.0,
        "{m}"
    );
    assert!(value(&m, "cpkeep_job_runs_total{task=\"drill\",result=\"ok\"}").unwrap() >= 1.0);
    sigterm_exits_cleanly(&mut d, Duration::from_secs(40)).await;
}

/// An AWS shared credentials file, replaced the way the kubelet updates a mounted Secret (a new
/// file renamed over the old), and the environment that points the daemon's AWS chain at it.
fn credentials(dir: &Path, s3: &S3Sandbox, secret: &str) -> Vec<(&'static str, String)> {
    let path = dir.join("credentials");
    let tmp = dir.join("credentials.new");
    std::fs::write(
        &tmp,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {secret}\n",
            s3.access_key()
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    vec![
        ("AWS_SHARED_CREDENTIALS_FILE", path.display().to_string()),
        (
            "AWS_CONFIG_FILE",
            dir.join("no-aws-config").display().to_string(),
        ),
        ("AWS_REGION", s3.region().to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// The `backup` section for `s3://etcd-backups/daemon` on the sandbox's server.
fn s3_backup(s3: &S3Sandbox, schedule: &str, extra: &str) -> String {
    format!(
        "backup:\n  store: \"s3://etcd-backups/daemon\"\n  s3-endpoint: \"{}\"\n  s3-path-style: true\n  \
         s3-part-size: 5MiB\n  schedule: \"{schedule}\"\n{extra}",
        s3.endpoint()
    )
}

/// A daemon running only the S3 backup job, every 2 s.
fn backups_every_2s(
    s3: &S3Sandbox,
    sb: &cpkeep::sandbox::Sandbox,
    dir: &Path,
    env: &[(&str, String)],
) -> (u16, Daemon) {
    // The health job off (a yearly schedule): only backups run.
    let cfg = config(
        &s3_backup(s3, "*/2 * * * * *", ""),
        dir,
        sb,
        "3s",
        "0 0 0 1 1 *",
        "20s",
    );
    let port = free_port();
    (port, start_env(&cfg, port, env))
}

fn runs(text: &str, task: &str, result: &str) -> f64 {
    value(
        text,
        &format!("cpkeep_job_runs_total{{task=\"{task}\",result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn pending_and_objects(s3: &S3Sandbox) -> (usize, usize) {
    crate::backup_s3::pending_and_objects(s3, "etcd-backups").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_is_counted_by_class_and_the_daemon_recovers_when_it_ends() {
    let (mut s3, sb) = tokio::join!(s3(), sandbox(Etcd::V35, 1));
    s3.create_bucket("etcd-backups").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = credentials(dir.path(), &s3, s3.secret_key());
    let (port, mut d) = backups_every_2s(&s3, &sb, dir.path(), &env);
    wait_metrics(port, Duration::from_secs(60), "a backup to S3", |t| {
        runs(t, "backup", "ok") >= 1.0
    })
    .await;

    s3.kill();
    let down = wait_metrics(port, Duration::from_secs(120), "failed backups", |t| {
        runs(t, "backup", "failed") >= 2.0
    })
    .await;
    // A store that does not answer is a failed run (class "failed"), at the upload step; the
    // daemon lives on and stays healthy.
    let failed = value(
        &down,
        "cpkeep_job_failures_total{task=\"backup\",class=\"failed\"}",
    )
    .unwrap();
    assert!(failed >= 2.0, "{down}");
    assert_eq!(
        value(
            &down,
            "cpkeep_job_failures_total{task=\"backup\",class=\"unusable\"}"
        ),
        Some(0.0),
        "{down}"
    );
    assert!(
        value(&down, "cpkeep_backup_step_failures_total{step=\"upload\"}").unwrap() >= 2.0,
        "{down}"
    );
    assert_eq!(get(port, "/healthz").await.map(|r| r.0), Some(200));
    let ok_before = runs(&down, "backup", "ok");
    let success_before = value(
        &down,
        "cpkeep_job_last_success_timestamp_seconds{task=\"backup\"}",
    )
    .unwrap();

    s3.restart().await.unwrap();
    let up = wait_metrics(
        port,
        Duration::from_secs(120),
        "a backup after the outage",
        |t| runs(t, "backup", "ok") > ok_before,
    )
    .await;
    assert!(
        value(
            &up,
            "cpkeep_job_last_success_timestamp_seconds{task=\"backup\"}"
        )
        .unwrap()
            > success_before,
        "{up}"
    );
    sigterm_exits_cleanly(&mut d, Duration::from_secs(40)).await;
    // Every snapshot is whole: no upload left open by the failed runs.
    assert_eq!(pending_and_objects(&s3).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_credentials_file_is_read_at_the_next_run() {
    let (s3, sb) = tokio::join!(s3(), sandbox(Etcd::V35, 1));
    s3.create_bucket("etcd-backups").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The daemon starts with a stale secret: every backup is refused by the server.
    let env = credentials(dir.path(), &s3, "0000000000000000000000000000000000000000");
    let (port, mut d) = backups_every_2s(&s3, &sb, dir.path(), &env);
    let m = wait_metrics(port, Duration::from_secs(60), "a refused backup", |t| {
        runs(t, "backup", "failed") >= 1.0
    })
    .await;
    assert_eq!(runs(&m, "backup", "ok"), 0.0, "{m}");

    // The Secret is rotated in place; the same daemon process picks it up.
    credentials(dir.path(), &s3, s3.secret_key());
    wait_metrics(
        port,
        Duration::from_secs(60),
        "a backup with the new secret",
        |t| runs(t, "backup", "ok") >= 1.0,
    )
    .await;
    sigterm_exits_cleanly(&mut d, Duration::from_secs(40)).await;
    let (pending, objects) = pending_and_objects(&s3).await;
    assert_eq!(pending, 0);
    assert!(
        objects >= 2,
        "a snapshot and its manifest: {objects} objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_s3_upload_aborts_it_after_the_grace() {
    // Parts of 5 MiB are on the server before the stream freezes.
    let (s3, _sb, proxy) = s3_behind_fault(Fault::Freeze { at: 11_000_000 }).await;
    let dir = tempfile::tempdir().unwrap();
    let env = credentials(dir.path(), &s3, s3.secret_key());
    let ep = proxy.endpoint();
    let text = format!(
        "connection:\n  endpoints: \"{ep}\"\n  timeout: 3s\n\
         daemon:\n  shutdown-grace: 1s\n{}",
        s3_backup(
            &s3,
            "*/2 * * * * *",
            &format!("  endpoint: \"{ep}\"\n  compression: none\n  stall-timeout: 10m\n"),
        ),
    );
    let cfg = dir.path().join("cpkeep.yaml");
    std::fs::write(&cfg, text).unwrap();
    let port = free_port();
    let mut d = start_env(&cfg, port, &env);

    // The run is mid-upload: a multipart upload is open and the stream is frozen.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (pending, _) = pending_and_objects(&s3).await;
        if pending == 1 && proxy.triggered.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no multipart upload was opened within 60 s (frozen: {})",
            proxy.triggered.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    sigterm_exits_cleanly(&mut d, Duration::from_secs(30)).await;
    // The grace is over, the run was cancelled and aborted its upload at once (a run that ignored
    // the cancellation would hold the daemon for the whole cancel settle time, 15 s).
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(pending_and_objects(&s3).await, (0, 0));
}

/// The doctor series of the health job: consistency checked at the first run and at its own
/// schedule, so a member altered while stopped shows up as a divergent member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_job_checks_consistency_at_its_own_schedule_and_catches_a_divergent_member() {
    let mut sb = sandbox(Etcd::V35, 3).await;
    let (key, good, bad) = (
        "/registry/secrets/default/daemon-doctor",
        "daemon-doctor-ORIGINAL-41c2",
        "daemon-doctor-TAMPERED-41c2",
    );
    {
        let conn = sb.connection(Duration::from_secs(5)).unwrap();
        let mut client = cpkeep::etcd::connect(&conn.endpoints[0], &conn)
            .await
            .unwrap();
        client.put(key, good, None).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    // Health every second; consistency every 3 s (and at the first run).
    let cfg = config("", dir.path(), &sb, "3s", "* * * * * *", "5s");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace(
        "health:\n",
        "health:\n  consistency-schedule: \"*/3 * * * * *\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let port = free_port();
    let mut d = start(&cfg, port);
    let m = wait_metrics(port, Duration::from_secs(30), "a consistency check", |t| {
        etcd(t, "cpkeep_etcd_consistency_last_check_timestamp_seconds").is_some()
    })
    .await;
    assert_eq!(
        etcd(&m, "cpkeep_etcd_consistency_divergent_members"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        etcd(&m, "cpkeep_etcd_consistency_unchecked_members"),
        Some(0.0)
    );
    assert_eq!(etcd(&m, "cpkeep_etcd_version_skew"), Some(0.0));
    let ratios = m
        .lines()
        .filter(|l| l.starts_with("cpkeep_etcd_member_db_in_use_ratio{"))
        .count();
    assert_eq!(ratios, 3, "{m}");

    let f = sb.follower().await.unwrap();
    let victim = sb.members()[f].name.clone();
    sb.alter_value_while_stopped(f, good.as_bytes(), bad.as_bytes())
        .await
        .unwrap();
    let m = wait_metrics(port, Duration::from_secs(60), "the divergent member", |t| {
        etcd(t, "cpkeep_etcd_consistency_divergent_members") == Some(1.0)
    })
    .await;
    assert_eq!(
        etcd(&m, "cpkeep_etcd_healthy_voters"),
        Some(3.0),
        "{m} ({victim})"
    );
    sigterm_exits_cleanly(&mut d, Duration::from_secs(20)).await;
}
