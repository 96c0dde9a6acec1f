//! The revision log benchmark behind BENCHMARKS.md (run it with bench/pitr.sh).
//!
//! Starts a TLS etcd 3.5 member and a SeaweedFS S3 server on loopback, fills etcd to SIZE MiB, starts
//! `cpkeep backup --follow` against it, then drives EVENTS puts of 1 KiB values at RATE puts/s
//! (64 concurrent writers, paced), and measures, in one run:
//! - the log's lag: for every 500th put, the time cpkeep recorded receiving its revision (read back
//!   from the stored segments) minus the time etcd acknowledged the put;
//! - cpkeep's peak RSS while following (VmHWM of the process);
//! - restore wall time and RSS, side by side: `etcdutl snapshot restore` of a snapshot of the end
//!   state, and `cpkeep restore --store … --to-revision END` (the full snapshot plus every logged
//!   event replayed), taking turns, median of 3.
//!
//! usage: bench_pitr <cpkeep> <etcd-bin-dir> <work-dir> <size-MiB> <events> <rate>

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cpkeep::sandbox::{S3Sandbox, S3SandboxOptions, Sandbox, SandboxOptions};
use cpkeep::store::{open_store, StoreUrl};
use etcd_client::PutOptions;

#[path = "common/fill.rs"]
mod fill;
use fill::{fill, value};

fn measure(cmd: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/measure.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["bash", "-c", cmd])
        .output()
        .expect("run measure.py");
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("{}")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
    assert_eq!(
        v["rc"],
        0,
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Peak and current RSS of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        eprintln!(
            "usage: bench_pitr <cpkeep> <etcd-bin-dir> <work-dir> <size-MiB> <events> <rate>"
        );
        std::process::exit(2);
    }
    let cpkeep = PathBuf::from(&args[1]);
    let bin = PathBuf::from(&args[2]);
    let work = PathBuf::from(&args[3]);
    let size_mib: u64 = args[4].parse()?;
    let events: u64 = args[5].parse()?;
    let rate: u64 = args[6].parse()?;
    std::fs::create_dir_all(&work)?;

    let mut opts = SandboxOptions::new(bin.join("etcd"), 1);
    opts.quota_bytes = Some(8 * 1024 * 1024 * 1024);
    opts.dir = Some(work.join("etcd"));
    let sb = Sandbox::start(opts).await?;
    let s3 = S3Sandbox::start(S3SandboxOptions {
        dir: Some(work.join("s3")),
        volume_size_mb: 1024,
        volumes: 16,
        ..S3SandboxOptions::default()
    })
    .await?;
    s3.create_bucket("bench").await?;
    let started = Instant::now();
    let keys = fill(&sb, size_mib * 1024 * 1024, 6000).await?;
    eprintln!(
        "filled {size_mib} MiB with {keys} keys in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let files = sb.tls_files();
    let (ca, cert, key) = (
        files.ca.unwrap_or_default().display().to_string(),
        files.cert.unwrap_or_default().display().to_string(),
        files.key.unwrap_or_default().display().to_string(),
    );
    let ep = sb.endpoints()[0].clone();
    let tls = format!("--endpoints={ep} --cacert={ca} --cert={cert} --key={key}");
    let store_flags = format!(
        "--store s3://bench/pitr --s3-endpoint {} --s3-path-style",
        s3.endpoint()
    );
    let cp = cpkeep.display().to_string();

    // The follower, as an operator runs it (default segment interval and size).
    let follow_log = std::fs::File::create(work.join("follow.err"))?;
    let mut follower = Command::new(&cp)
        .args(format!("backup --follow -q {tls} {store_flags}").split_whitespace())
        .envs(s3.env())
        .stdout(std::process::Stdio::null())
        .stderr(follow_log)
        .spawn()?;
    let pid = follower.id();
    // This process reads the store too (the manifests, the segments): the same credentials.
    for (k, v) in s3.env() {
        std::env::set_var(k, v);
    }
    let store = open_store(&StoreUrl::parse("s3://bench/pitr")?, &s3.s3_options()).await?;
    let conn = sb.connection(Duration::from_secs(30))?;
    let client = cpkeep::etcd::connect(&conn.endpoints[0], &conn).await?;
    let cluster_id = format!(
        "{:016x}",
        client
            .clone()
            .maintenance_client()
            .status()
            .await?
            .header()
            .unwrap()
            .cluster_id()
    );
    // The full snapshot is written before the log starts: wait for its manifest.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let listed = store
            .list(&format!("{cluster_id}/"))
            .await
            .unwrap_or_default();
        if listed
            .iter()
            .any(|o| o.key.ends_with(".json") && !o.key.contains("/log/"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot from the follower");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The load: EVENTS puts at RATE/s over 20,000 pod-like keys, paced by a shared schedule.
    let next = Arc::new(AtomicU64::new(0));
    let acks: Arc<std::sync::Mutex<BTreeMap<i64, DateTime<Utc>>>> = Arc::default();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let (_, now) = rss_mib(pid);
                peak.fetch_max(now as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let load_started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let mut kv = client.kv_client();
        let (next, acks) = (next.clone(), acks.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<(), etcd_client::Error>(());
                }
                let due = load_started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let key = format!("/registry/pods/ns-{}/pod-{:05}", i % 50, i % 20_000);
                let r = kv.put(key, value(i, 1024), None::<PutOptions>).await?;
                if i % 500 == 0 {
                    let rev = r.header().map_or(0, |h| h.revision());
                    acks.lock().unwrap().insert(rev, Utc::now());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let load_s = load_started.elapsed().as_secs_f64();
    let end = client
        .clone()
        .kv_client()
        .get("x", None)
        .await?
        .header()
        .unwrap()
        .revision();
    eprintln!(
        "{events} puts in {load_s:.1} s ({:.0}/s), head revision {end}",
        events as f64 / load_s
    );

    // Everything is logged once a segment reaches END; SIGTERM then stores the open segment.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let listed = cpkeep::revlog::list_segments(store.as_ref(), &cluster_id).await?;
        if listed
            .iter()
            .filter_map(|l| l.manifest.as_ref())
            .any(|m| m.last_revision >= end)
        {
            break;
        }
        if Instant::now() > deadline {
            // Not caught up in time: stop it and look at what was written.
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (hwm, _) = rss_mib(pid);
    sampler.abort();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = follower.wait()?;
    eprintln!("follower exited with {status}");

    // Lag, from the stored segments' receive times.
    let listed = cpkeep::revlog::list_segments(store.as_ref(), &cluster_id).await?;
    let mut received: BTreeMap<i64, DateTime<Utc>> = BTreeMap::new();
    let mut logged_events = 0u64;
    let mut last_logged = 0;
    for l in &listed {
        let m = l.manifest.as_ref().expect("a complete segment");
        let seg = cpkeep::revlog::fetch_segment(store.as_ref(), m, None).await?;
        logged_events += seg.summary.event_count;
        last_logged = last_logged.max(seg.summary.last_revision);
        for r in seg.revisions {
            received.insert(r.revision, r.received_at);
        }
    }
    let mut lags: Vec<f64> = acks
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(rev, ack)| received.get(rev).map(|r| (*r - *ack).as_seconds_f64()))
        .collect();
    let sampled = lags.len();
    lags.sort_by(|a, b| a.total_cmp(b));
    let p99 = lags[(lags.len() * 99 / 100).min(lags.len() - 1)];
    let max = *lags.last().unwrap();

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| puts | {events} in {load_s:.1} s ({:.0}/s achieved, {rate}/s asked) |",
        events as f64 / load_s
    );
    println!("| segments stored | {} ({logged_events} events, last revision {last_logged}, head {end}) |", listed.len());
    println!("| lag etcd ack → cpkeep received, p99 / max ({sampled} samples) | {p99:.3} s / {max:.3} s |");
    println!(
        "| cpkeep backup --follow peak RSS (VmHWM) | {hwm:.1} MiB (sampled VmRSS max {} MiB) |",
        peak.load(Ordering::Relaxed)
    );

    // Restore, side by side.
    let etcdctl = bin.join("etcdctl").display().to_string();
    let etcdutl = bin.join("etcdutl").display().to_string();
    let end_db = work.join("end.db");
    measure(&format!(
        "{etcdctl} {tls} snapshot save {} >/dev/null",
        end_db.display()
    ));
    let s3env: String = s3.env().iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let cases = [
        (
            "etcdutl snapshot restore (snapshot of the end state)",
            format!("{etcdutl} snapshot restore {} --data-dir @DIR@ >/dev/null 2>&1", end_db.display()),
        ),
        (
            "cpkeep restore --store s3 --to-revision END (snapshot + log replay)",
            format!("{s3env}{cp} restore -q {store_flags} --to-revision {last_logged} --data-dir @DIR@ >/dev/null"),
        ),
    ];
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut rss = vec![0f64; cases.len()];
    for round in 0..3 {
        for (i, (_, cmd)) in cases.iter().enumerate() {
            let dir = work.join(format!("restored-{round}-{i}"));
            let _ = Command::new("sync").status();
            let v = measure(&cmd.replace("@DIR@", &dir.display().to_string()));
            assert!(dir.join("member/snap/db").exists(), "{cmd}: no db");
            walls[i].push(v["wall_s"].as_f64().unwrap_or(0.0));
            rss[i] = rss[i].max(v["maxrss_mib"].as_f64().unwrap_or(0.0));
            std::fs::remove_dir_all(&dir)?;
        }
    }
    println!();
    println!("| restore to revision {last_logged} | wall s (median of 3) | peak RSS MiB |");
    println!("|---|---|---|");
    for (i, (label, _)) in cases.iter().enumerate() {
        println!(
            "| {label} | {:.2} | {:.0} |",
            median(walls[i].clone()),
            rss[i]
        );
    }
    println!(
        "\nend-state snapshot: {:.0} MiB",
        std::fs::metadata(&end_db)?.len() as f64 / 1048576.0
    );
    Ok(())
}
