//! `cpkeep demo`: the main job on a laptop. Starts a local 3-member TLS etcd sandbox (kubeadm-layout
//! PKI, one loopback address per member), shows its health, kills a member, shows the degraded verdict,
//! and cleans up. Each capability of cpkeep adds its step here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::exit::ExitError;
use super::output::{Render, Renderer};
use super::Exit;
use crate::etcd::{evaluate, probe_cluster, HealthOptions, HealthReport, Verdict};
use crate::sandbox::{etcd_version, locate_etcd, Sandbox, SandboxOptions};
use crate::snapshot::{
    backup, catalog, fetch_to_file, verify_file, BackupOptions, BackupReport, CompressionKind,
    Encoding, NoProgress, VerifyReport,
};
use crate::store::FileStore;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// etcd binary to run [default: $CPKEEP_ETCD_BIN, else etcd on PATH]
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,

    /// Keep the sandbox directory (PKI, data, logs) here instead of a temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct DemoStep {
    title: String,
    elapsed_ms: u128,
    health: HealthReport,
}

#[derive(Debug, Serialize)]
struct DemoReport {
    etcd: String,
    etcd_version: String,
    sandbox: String,
    endpoints: Vec<String>,
    steps: Vec<DemoStep>,
    backup: BackupReport,
    stored_snapshots: usize,
    verify: VerifyReport,
}

impl Render for DemoReport {
    fn table(&self) -> String {
        let mut s = format!(
            "cpkeep demo: etcd {} ({}), sandbox in {}\nendpoints: {}\n",
            self.etcd_version,
            self.etcd,
            self.sandbox,
            self.endpoints.join(", ")
        );
        let mut n = 0;
        let mut heading = |title: &str| {
            n += 1;
            format!("\n== step {n}: {title} ==\n")
        };
        if let Some(step) = self.steps.first() {
            s.push_str(&heading(&format!(
                "{} (answered in {} ms)",
                step.title, step.elapsed_ms
            )));
            s.push_str(&step.health.table());
        }
        s.push_str(&heading(
            "`cpkeep backup --store <sandbox>/store`: streamed, verified, zstd",
        ));
        s.push_str(&self.backup.table());
        s.push_str(&format!(
            "`cpkeep snapshot list` shows {} complete snapshot(s)\n",
            self.stored_snapshots
        ));
        s.push_str(&heading(
            "`cpkeep snapshot verify latest`: read back natively, no Go tools",
        ));
        s.push_str(&self.verify.table());
        for step in self.steps.iter().skip(1) {
            s.push_str(&heading(&format!(
                "{} (answered in {} ms)",
                step.title, step.elapsed_ms
            )));
            s.push_str(&step.health.table());
        }
        s
    }
}

pub async fn run(args: DemoArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let etcd = locate_etcd(args.etcd_bin.as_deref())?;
    let version = etcd_version(&etcd)?;
    tracing::info!(etcd = %etcd.display(), %version, "starting a 3-member TLS sandbox");
    let mut opts = SandboxOptions::new(etcd.clone(), 3);
    opts.dir = args.dir.clone();
    let mut sandbox = Sandbox::start(opts)
        .await
        .context("cannot start the etcd sandbox")?;
    let timeout = Duration::from_secs(2);
    let conn = sandbox.connection(timeout)?;
    let health_opts = HealthOptions::default();

    let mut steps = Vec::new();
    let started = Instant::now();
    let healthy = evaluate(&probe_cluster(&conn, true).await, &health_opts);
    steps.push(DemoStep {
        title: "3 healthy members: `cpkeep cluster health`".to_string(),
        elapsed_ms: started.elapsed().as_millis(),
        health: healthy,
    });

    // A follower, so the verdict shows the steady degraded state rather than an election in progress.
    let victim = sandbox.follower().await?;
    let victim_name = sandbox.members()[victim].name.clone();
    // Back up the healthy cluster into a directory store and list what the store holds.
    sandbox.write_sample(300).await?;
    let store = FileStore::open(&sandbox.root().join("store"))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get().min(4) as u32)
        .unwrap_or(1);
    let backup_opts = BackupOptions {
        endpoint: None,
        allow_degraded: false,
        stall_timeout: Duration::from_secs(30),
        encoding: Encoding {
            compression: CompressionKind::Zstd,
            level: 3,
            threads,
            recipients: Vec::new(),
        },
        recipients: Vec::new(),
        node_name: "demo".to_string(),
    };
    let backed_up = backup(&conn, &store, &backup_opts, &NoProgress)
        .await
        .context("demo backup failed")?;
    let stored_snapshots = catalog(&store).await?.complete().count();
    let copy = sandbox.root().join("verify.db");
    fetch_to_file(&store, &backed_up.manifest, &copy, None, true).await?;
    let verify = tokio::task::spawn_blocking(move || verify_file(&copy, false)).await??;

    sandbox.kill(victim)?;
    let started = Instant::now();
    let degraded = evaluate(&probe_cluster(&conn, true).await, &health_opts);
    steps.push(DemoStep {
        title: format!(
            "follower {victim_name} killed (SIGKILL): the same check, {}s timeout per member",
            timeout.as_secs()
        ),
        elapsed_ms: started.elapsed().as_millis(),
        health: degraded,
    });

    let report = DemoReport {
        etcd: etcd.display().to_string(),
        etcd_version: version,
        sandbox: sandbox.root().display().to_string(),
        endpoints: sandbox.endpoints(),
        steps,
        backup: backed_up,
        stored_snapshots,
        verify,
    };
    out.print(&report)?;
    sandbox.stop();

    // The demo is also a smoke test: say so loudly when a step did not show what it should.
    let got: Vec<Verdict> = report.steps.iter().map(|s| s.health.verdict).collect();
    let expected = [Verdict::Ok, Verdict::Warning];
    if got != expected
        || report.steps[1].health.fault_tolerance != 0
        || report.stored_snapshots != 1
    {
        return Err(ExitError {
            code: Exit::Warning,
            message: format!("demo verdicts were {got:?}, expected {expected:?}"),
        }
        .into());
    }
    Ok(Exit::Ok)
}
