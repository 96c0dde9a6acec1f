//! `cpkeep demo`: the main job on a laptop. Starts a local 3-member TLS etcd sandbox (kubeadm-layout
//! PKI, one loopback address per member), shows its health, backs it up, reads the backup back,
//! kills a member and shows the degraded verdict, then writes past the backup, stops the cluster,
//! restores all three members natively from the store, boots them and shows the data is back —
//! and cleans up. Each capability of cpkeep adds its step here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::exit::ExitError;
use super::output::{Render, Renderer};
use super::Exit;
use crate::etcd::{connect, evaluate, probe_cluster, HealthOptions, HealthReport, Verdict};
use crate::restore::{self, RestoreReport, RestoreSource};
use crate::sandbox::{etcd_version, locate_etcd, Sandbox, SandboxOptions};
use crate::snapshot::{
    backup, catalog, fetch_to_file, verify_file, BackupOptions, BackupReport, CompressionKind,
    Encoding, NoProgress, VerifyReport,
};
use crate::store::FileStore;
use etcd_client::GetOptions;

/// Written after the backup: the restore must not bring it back.
const AFTER_BACKUP_KEY: &str = "/registry/demo/written-after-the-backup";

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
    restore: DemoRestore,
}

/// The restore step: every member rebuilt from the stored snapshot and booted.
#[derive(Debug, Serialize)]
struct DemoRestore {
    snapshot: String,
    members: Vec<RestoreReport>,
    /// Keys of the demo's sample, present after the restore (of 300).
    sample_keys_back: i64,
    /// Whether the key written after the backup is gone (it must be).
    written_after_backup_gone: bool,
    revision: i64,
    health: DemoStep,
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
        let r = &self.restore;
        s.push_str(&heading(&format!(
            "all members stopped; `cpkeep restore {} --store <sandbox>/store` on each, natively",
            r.snapshot
        )));
        for m in &r.members {
            s.push_str(&format!(
                "{:<4} member {:x} of cluster {:x}: {} keys, revision {}, {} ({:.2}s){}\n",
                m.plan.name,
                m.plan.member_id,
                m.plan.cluster_id,
                m.db.keys,
                m.db.revision,
                m.plan.data_dir.display(),
                m.seconds,
                m.plan
                    .move_aside
                    .first()
                    .map(|a| format!(", old data moved to {}", a.to.display()))
                    .unwrap_or_default()
            ));
        }
        s.push_str(&format!(
            "booted: revision {}, {}/300 sample keys back, key written after the backup {}\n",
            r.revision,
            r.sample_keys_back,
            if r.written_after_backup_gone {
                "gone (as it must be)"
            } else {
                "STILL THERE"
            }
        ));
        s.push_str(&heading(&format!(
            "{} (answered in {} ms)",
            r.health.title, r.health.elapsed_ms
        )));
        s.push_str(&r.health.health.table());
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

    // Write past the backup, stop everything, and bring the cluster back from the store.
    {
        let mut client = connect(&conn.endpoints[0], &conn).await?;
        client
            .put(AFTER_BACKUP_KEY, "lost in the restore", None)
            .await
            .context("demo write after the backup failed")?;
    }
    sandbox.stop();
    let mut restored = Vec::new();
    for i in 0..sandbox.members().len() {
        let options = sandbox.restore_options(i)?;
        let plan = restore::plan(&options, chrono::Utc::now())?;
        let source = RestoreSource::Stored {
            store: &store,
            manifest: Box::new(backed_up.manifest.clone()),
            identities: None,
        };
        restored.push(
            restore::apply(&plan, &options, source)
                .await
                .with_context(|| format!("demo restore of {} failed", options.name))?,
        );
    }
    sandbox
        .start_stopped()
        .await
        .context("the restored members did not boot")?;
    let (sample_keys_back, written_after_backup_gone, revision) = {
        let mut client = connect(&conn.endpoints[0], &conn).await?;
        let sample = client
            .get(
                "/registry/configmaps/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?;
        let after = client.get(AFTER_BACKUP_KEY, None).await?;
        let revision = sample.header().map(|h| h.revision()).unwrap_or(0);
        (sample.count(), after.kvs().is_empty(), revision)
    };
    let started = Instant::now();
    let back = evaluate(&probe_cluster(&conn, true).await, &health_opts);
    let restore = DemoRestore {
        snapshot: backed_up.manifest.id.clone(),
        members: restored,
        sample_keys_back,
        written_after_backup_gone,
        revision,
        health: DemoStep {
            title: "the restored cluster: `cpkeep cluster health`".to_string(),
            elapsed_ms: started.elapsed().as_millis(),
            health: back,
        },
    };

    let report = DemoReport {
        etcd: etcd.display().to_string(),
        etcd_version: version,
        sandbox: sandbox.root().display().to_string(),
        endpoints: sandbox.endpoints(),
        steps,
        backup: backed_up,
        stored_snapshots,
        verify,
        restore,
    };
    out.print(&report)?;
    sandbox.stop();

    // The demo is also a smoke test: say so loudly when a step did not show what it should.
    let got: Vec<Verdict> = report.steps.iter().map(|s| s.health.verdict).collect();
    let expected = [Verdict::Ok, Verdict::Warning];
    if got != expected
        || report.steps[1].health.fault_tolerance != 0
        || report.stored_snapshots != 1
        || report.restore.health.health.verdict != Verdict::Ok
        || report.restore.sample_keys_back != 300
        || !report.restore.written_after_backup_gone
    {
        return Err(ExitError {
            code: Exit::Warning,
            message: format!(
                "demo verdicts were {got:?} (restored: {:?}, {} sample keys back, later write gone: {}), expected {expected:?}, OK, 300, true",
                report.restore.health.health.verdict,
                report.restore.sample_keys_back,
                report.restore.written_after_backup_gone
            ),
        }
        .into());
    }
    Ok(Exit::Ok)
}
