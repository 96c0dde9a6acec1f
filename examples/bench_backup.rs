//! The backup benchmark behind BENCHMARKS.md (run it with bench/backup.sh).
//!
//! Starts a kubeadm-like TLS etcd (one member, real etcd 3.5) and a SeaweedFS S3 server on loopback,
//! fills etcd with Kubernetes-like objects to each target size, and measures side by side, in one run:
//! (a) `etcdctl snapshot save` to tmpfs, (b) the naive pipeline `etcdctl snapshot save` to disk +
//! `zstd -3` + upload (curl, SigV4), (c) `cpkeep backup` to S3, (d) `cpkeep backup` to a directory.
//! Wall time, peak RSS and bytes written to local disk come from bench/measure.py (getrusage).
//!
//! usage: bench_backup <cpkeep> <etcd-bin-dir> <work-dir> <size-MiB>...

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cpkeep::sandbox::{S3Sandbox, S3SandboxOptions, Sandbox, SandboxOptions};

#[path = "common/fill.rs"]
mod fill;
use fill::fill;

/// Runs a command under bench/measure.py and returns its JSON line.
fn measure(label: &str, env: &[(&str, String)], cmd: &[String]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/measure.py");
    let out = Command::new("python3")
        .arg(script)
        .args(cmd)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .output()
        .expect("run measure.py");
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("{}")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
    if v["rc"] != 0 {
        eprintln!("{label} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    v
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: bench_backup <cpkeep> <etcd-bin-dir> <work-dir> <size-MiB>...");
        std::process::exit(2);
    }
    let cpkeep = PathBuf::from(&args[1]);
    let bin = PathBuf::from(&args[2]);
    let work = PathBuf::from(&args[3]);
    std::fs::create_dir_all(&work)?;
    let runs = 3;
    println!(
        "| db size | tool | wall s (median of {runs}) | peak RSS MiB | written to local disk MiB |"
    );
    println!("|---|---|---|---|---|");
    for size_mib in &args[4..] {
        let size_mib: u64 = size_mib.parse()?;
        let mut opts = SandboxOptions::new(bin.join("etcd"), 1);
        opts.quota_bytes = Some(8 * 1024 * 1024 * 1024);
        opts.dir = Some(work.join(format!("etcd-{size_mib}")));
        let sb = Sandbox::start(opts).await?;
        let s3 = S3Sandbox::start(S3SandboxOptions {
            dir: Some(work.join(format!("s3-{size_mib}"))),
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
        if std::env::var_os("CPKEEP_BENCH_HOLD").is_some() {
            // For profiling by hand: print how to reach the cluster and wait to be killed.
            let f = sb.tls_files();
            println!(
                "--endpoints={} --cacert={} --cert={} --key={}",
                sb.endpoints()[0],
                f.ca.unwrap_or_default().display(),
                f.cert.unwrap_or_default().display(),
                f.key.unwrap_or_default().display()
            );
            println!(
                "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} S3={}",
                s3.access_key(),
                s3.secret_key(),
                s3.endpoint()
            );
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let files = sb.tls_files();
        let (ca, cert, key) = (
            files.ca.unwrap_or_default().display().to_string(),
            files.cert.unwrap_or_default().display().to_string(),
            files.key.unwrap_or_default().display().to_string(),
        );
        let ep = sb.endpoints()[0].clone();
        let etcdctl = bin.join("etcdctl").display().to_string();
        let tls = format!("--endpoints={ep} --cacert={ca} --cert={cert} --key={key}");
        let shm = PathBuf::from("/dev/shm").join(format!("cpkeep-bench-{size_mib}.db"));
        let disk = work.join("naive");
        std::fs::create_dir_all(&disk)?;
        let s3env = s3.env();
        let sigv4 = format!("{}:{}", s3.access_key(), s3.secret_key());
        let mut cases: Vec<(&str, Vec<String>)> = Vec::new();
        cases.push((
            "(a) etcdctl snapshot save → tmpfs",
            vec![
                "bash".into(),
                "-c".into(),
                format!("{etcdctl} {tls} snapshot save {} >/dev/null", shm.display()),
            ],
        ));
        cases.push((
            "(b) etcdctl save → disk, zstd -3, curl upload",
            vec![
                "bash".into(),
                "-c".into(),
                format!(
                    "set -e; {etcdctl} {tls} snapshot save {d}/s.db >/dev/null; zstd -3 -q -f {d}/s.db -o {d}/s.db.zst; \
                     curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user {sigv4} -T {d}/s.db.zst {e}/bench/naive/s.db.zst; rm -f {d}/s.db {d}/s.db.zst",
                    d = disk.display(),
                    e = s3.endpoint()
                ),
            ],
        ));
        let cp = cpkeep.display().to_string();
        let common = format!("-q --endpoints={ep} --cacert={ca} --cert={cert} --key={key}");
        cases.push((
            "(c) cpkeep backup → S3",
            vec![
                "bash".into(),
                "-c".into(),
                format!(
                    "{cp} backup {common} --store s3://bench/cpkeep --s3-endpoint {} --s3-path-style >/dev/null",
                    s3.endpoint()
                ),
            ],
        ));
        cases.push((
            "(d) cpkeep backup → directory",
            vec![
                "bash".into(),
                "-c".into(),
                format!(
                    "{cp} backup {common} --store {}/dir >/dev/null",
                    work.display()
                ),
            ],
        ));
        for (label, cmd) in &cases {
            let mut walls = Vec::new();
            let mut rss: f64 = 0.0;
            let mut written: f64 = 0.0;
            for _ in 0..runs {
                // Ids have one-second resolution.
                tokio::time::sleep(Duration::from_millis(1100)).await;
                let v = measure(label, &s3env, cmd);
                walls.push(v["wall_s"].as_f64().unwrap_or(f64::NAN));
                rss = rss.max(v["maxrss_mib"].as_f64().unwrap_or(0.0));
                written = written.max(v["written_mib"].as_f64().unwrap_or(0.0));
                let _ = std::fs::remove_file(&shm);
            }
            println!(
                "| {size_mib} MiB | {label} | {:.2} | {rss:.0} | {written:.0} |",
                median(walls)
            );
        }
        drop(s3);
        drop(sb);
        let _ = std::fs::remove_dir_all(work.join(format!("etcd-{size_mib}")));
        let _ = std::fs::remove_dir_all(work.join(format!("s3-{size_mib}")));
        let _ = std::fs::remove_dir_all(work.join("dir"));
    }
    Ok(())
}
