//! The demo's daemon step: `cpkeep daemon` (this very binary, as a child process) on the sandbox
//! with second-level schedules — health every second, a backup with pruning every three — and
//! `/metrics` scraped twice: once as soon as the etcd series are there, once after new writes, a
//! follower killed, and a backup of the new revision stored. The two scrapes side by side show the backup appear and the
//! etcd series follow the kill. The daemon is stopped with SIGTERM and must exit 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use crate::sandbox::{free_port, Sandbox};

/// The series the step reads off each scrape, as exposed (one cluster, so one series each).
const SHOWN: [&str; 7] = [
    "cpkeep_job_runs_total{task=\"backup\",result=\"ok\"}",
    "cpkeep_job_runs_total{task=\"health\",result=\"ok\"}",
    "cpkeep_backup_last_revision",
    "cpkeep_etcd_voters",
    "cpkeep_etcd_healthy_voters",
    "cpkeep_etcd_fault_tolerance",
    "cpkeep_etcd_leader_present",
];

/// How long either scrape may wait for what it must show.
const WAIT: Duration = Duration::from_secs(60);

/// One scrape of `/metrics`: the shown series' values (absent: not exposed yet).
#[derive(Debug, Serialize)]
pub struct Scrape {
    pub after_ms: u128,
    pub values: Vec<(String, Option<f64>)>,
}

impl Scrape {
    fn get(&self, series: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(s, _)| s == series)
            .and_then(|(_, v)| *v)
    }
}

#[derive(Debug, Serialize)]
pub struct DemoDaemon {
    pub listen: String,
    pub config: PathBuf,
    pub killed: String,
    pub first: Scrape,
    pub second: Scrape,
    /// The daemon's exit code after SIGTERM.
    pub exit_code: Option<i32>,
}

impl DemoDaemon {
    pub fn ok(&self) -> bool {
        let (a, b) = (&self.first, &self.second);
        let backups = |s: &Scrape| s.get(SHOWN[0]).unwrap_or(0.0);
        let revision = |s: &Scrape| s.get("cpkeep_backup_last_revision").unwrap_or(0.0);
        backups(b) > backups(a)
            && revision(b) > revision(a)
            && a.get("cpkeep_etcd_healthy_voters") == Some(3.0)
            && b.get("cpkeep_etcd_healthy_voters") == Some(2.0)
            && a.get("cpkeep_etcd_fault_tolerance") == Some(1.0)
            && b.get("cpkeep_etcd_fault_tolerance") == Some(0.0)
            && self.exit_code == Some(0)
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "cpkeep daemon on http://{} (config {}); {} killed between the scrapes\n",
            self.listen,
            self.config.display(),
            self.killed
        );
        s.push_str(&format!(
            "  {:<58} {:>12} {:>12}\n",
            "series",
            format!("{:.1}s", self.first.after_ms as f64 / 1000.0),
            format!("{:.1}s", self.second.after_ms as f64 / 1000.0)
        ));
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v}"));
        for series in SHOWN {
            s.push_str(&format!(
                "  {:<58} {:>12} {:>12}\n",
                series,
                show(self.first.get(series)),
                show(self.second.get(series))
            ));
        }
        s.push_str(&format!(
            "SIGTERM: exit {}\n",
            self.exit_code
                .map_or("by signal".to_string(), |c| c.to_string())
        ));
        s
    }
}

/// The value of `series` (its name and labels as exposed; a name alone matches the family's only
/// series, whatever its labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        let rest = if series.contains('{') {
            rest
        } else if let Some(r) = rest.strip_prefix('{') {
            r.split_once("} ")?.1
        } else {
            rest
        };
        rest.trim().parse().ok()
    })
}

async fn scrape(addr: SocketAddr) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = hyper::Request::get("/metrics")
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .ok()?;
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(5),
        crate::http1::exchange_body(stream, request, 4 << 20),
    )
    .await
    .ok()?
    .ok()?;
    status
        .is_success()
        .then(|| String::from_utf8_lossy(&body).into_owned())
}

/// Scrapes until `want` holds, then returns that scrape.
async fn scrape_until(
    addr: SocketAddr,
    started: Instant,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> anyhow::Result<Scrape> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(text) = scrape(addr).await {
            if want(&text) {
                return Ok(Scrape {
                    after_ms: started.elapsed().as_millis(),
                    values: SHOWN
                        .iter()
                        .map(|s| (s.to_string(), value(&text, s)))
                        .collect(),
                });
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the daemon's /metrics on {addr} did not show {what} within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn config_text(sandbox: &Sandbox, store: &Path) -> String {
    let files = sandbox.tls_files();
    let mut conn = format!(
        "connection:\n  endpoints: \"{}\"\n  timeout: 2s\n",
        sandbox.endpoints().join(",")
    );
    for (key, file) in [
        ("cacert", files.ca),
        ("cert", files.cert),
        ("key", files.key),
    ] {
        if let Some(f) = file {
            conn.push_str(&format!("  {key}: {}\n", f.display()));
        }
    }
    format!(
        "# Written by `cpkeep demo`: second-level schedules (6 fields, seconds first).\n{conn}\
         backup:\n  store: \"{}\"\n  schedule: \"*/3 * * * * *\"\n  prune: true\n  keep-last: 3\n\
         health:\n  schedule: \"* * * * * *\"\n\
         daemon:\n  shutdown-grace: 20s\n",
        store.display()
    )
}

/// The child process, killed if the step fails before it stopped it.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub async fn daemon_step(sandbox: &mut Sandbox) -> anyhow::Result<DemoDaemon> {
    let root = sandbox.root().to_path_buf();
    let config = root.join("daemon.yaml");
    std::fs::write(&config, config_text(sandbox, &root.join("daemon-store")))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addr = SocketAddr::new(ip, free_port(ip)?);
    let exe = std::env::current_exe().context("cannot find the cpkeep binary to run the daemon")?;
    let mut cmd = tokio::process::Command::new(&exe);
    // Nothing of the caller's CPKEEP_* settings: the file is the whole configuration.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CPKEEP_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config")
        .arg(&config)
        .args(["daemon", "--listen", &addr.to_string()])
        .env("CPKEEP_PKI_DIR", root.join("no-kubeadm-pki"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(root.join("daemon.log")).context("cannot create daemon.log")?,
        ))
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = Child(
        cmd.spawn()
            .with_context(|| format!("cannot start {} daemon", exe.display()))?,
    );

    let first = scrape_until(addr, started, "the etcd series", |t| {
        value(t, "cpkeep_etcd_healthy_voters") == Some(3.0)
    })
    .await?;
    // New writes, so the next backup is told apart by its revision, not only by a counter.
    let written = sandbox.write_sample(10).await?;
    let victim = sandbox.follower().await?;
    let killed = sandbox.members()[victim].name.clone();
    sandbox.kill(victim)?;
    let second = scrape_until(
        addr,
        started,
        "a backup of the new writes and the killed member",
        move |t| {
            value(t, "cpkeep_etcd_healthy_voters") == Some(2.0)
                && value(t, "cpkeep_backup_last_revision").unwrap_or(0.0) >= written as f64
        },
    )
    .await?;

    let pid = child.0.id().context("the daemon exited early")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).context("pid")?),
        nix::sys::signal::Signal::SIGTERM,
    )
    .context("cannot signal the daemon")?;
    let status = tokio::time::timeout(Duration::from_secs(40), child.0.wait())
        .await
        .context("the daemon did not stop within 40 s of SIGTERM")??;
    sandbox
        .restart(victim)
        .await
        .with_context(|| format!("{killed} did not start again"))?;
    Ok(DemoDaemon {
        listen: addr.to_string(),
        config,
        killed,
        first,
        second,
        exit_code: status.code(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_by_series_or_by_family() {
        let text = "# TYPE cpkeep_etcd_voters gauge\n\
                    cpkeep_etcd_voters{cluster_id=\"ab\"} 3\n\
                    cpkeep_job_runs_total{task=\"backup\",result=\"ok\"} 2\n";
        assert_eq!(value(text, "cpkeep_etcd_voters"), Some(3.0));
        assert_eq!(value(text, SHOWN[0]), Some(2.0));
        assert_eq!(value(text, "cpkeep_etcd_quorum"), None);
    }
}
