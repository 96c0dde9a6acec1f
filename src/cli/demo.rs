//! `cpkeep demo`: the main job on a laptop. Starts a local 3-member TLS etcd sandbox (kubeadm-layout
//! PKI, one loopback address per member), shows its health, backs it up, reads the backup back,
//! kills a member and shows the degraded verdict, then writes past the backup, stops the cluster,
//! restores all three members natively from the store, boots them and shows the data is back; then
//! generates a kubeadm node PKI whose etcd certificates expire in 5 days, checks it (CRITICAL), renews
//! what expires within 30 days and checks again (OK); then plans an HA control plane from the example
//! inventory and checks its haproxy configs with real haproxy — and cleans up. Each capability of
//! cpkeep adds its step here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::exit::ExitError;
use super::output::{Render, Renderer};
use super::table::Table;
use super::Exit;
use crate::certs::check::{kubeadm_date, short_human_duration};
use crate::certs::renew::{self, ApplyOptions, RenewOptions, RenewReport};
use crate::certs::testpki::{TestPki, TestPkiOptions};
use crate::certs::{check, CaId, CheckOptions, CheckReport, PkiLayout};
use crate::etcd::{connect, evaluate, probe_cluster, HealthOptions, HealthReport, Verdict};
use crate::restore::{self, RestoreReport, RestoreSource};
use crate::sandbox::{etcd_version, locate_etcd, Sandbox, SandboxOptions};
use crate::snapshot::{
    backup, catalog, fetch_to_file, verify_file, BackupOptions, BackupReport, CompressionKind,
    Encoding, NoProgress, VerifyReport,
};
use crate::store::FileStore;
use crate::units::counted;
use etcd_client::GetOptions;

/// Written after the backup: the restore must not bring it back.
const AFTER_BACKUP_KEY: &str = "/registry/demo/written-after-the-backup";

/// The certificates step makes these expire in 5 days (kubeadm's names, as in `MANAGED_CERTS`, in its
/// order): `certs check` must name exactly them, `certs renew --within 30d` must renew exactly them.
const EXPIRING_CERTS: [&str; 3] = ["etcd-healthcheck-client", "etcd-peer", "etcd-server"];
/// `certs renew --within` in the certificates step.
const RENEW_WITHIN_DAYS: i64 = 30;

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
    certs: DemoCerts,
    bootstrap: super::demo_bootstrap::DemoBootstrap,
    members: super::demo_members::DemoMembers,
    daemon: super::demo_daemon::DemoDaemon,
    doctor: super::demo_doctor::DemoDoctor,
    point_in_time: super::demo_pitr::DemoPitr,
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

/// The certificates step: a kubeadm node PKI in the sandbox whose etcd leaves expire in 5 days,
/// `certs check`, `certs renew --within 30d`, `certs check` again.
#[derive(Debug, Serialize)]
struct DemoCerts {
    /// `<sandbox>/node/etc/kubernetes` (the kubeconfigs, `pki/` under it).
    node_dir: String,
    /// The certificates re-issued to expire in 5 days.
    made_expiring: Vec<String>,
    elapsed_ms: u128,
    /// The rows (certificates, CAs, service-account key pair) that were not OK before the renewal.
    not_ok_before: Vec<String>,
    before: CheckReport,
    /// The certificates `certs renew --within 30d` renewed.
    renewed: Vec<String>,
    /// Files found in the renewal's backup directory afterwards (the journal aside).
    backed_up_files: usize,
    renew: RenewReport,
    /// The rows not OK after the renewal (none).
    not_ok_after: Vec<String>,
    after: CheckReport,
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
        let c = &self.certs;
        s.push_str(&heading(&format!(
            "a kubeadm node PKI in {}, {} re-issued to expire in 5 days: `cpkeep certs check`",
            c.node_dir,
            c.made_expiring.join(", ")
        )));
        s.push_str(&etcd_cert_rows(&c.before));
        s.push_str(&heading(&format!(
            "`cpkeep certs renew --within {RENEW_WITHIN_DAYS}d`: re-signed by their own CA, old files backed up ({} ms for the whole certificates step)",
            c.elapsed_ms
        )));
        if c.renew.renewed.is_empty() {
            s.push_str("Nothing renewed.\n");
        } else {
            let mut t = Table::new(["RENEWED", "CA", "VALID UNTIL", "KEY", "VERIFIED"]);
            for r in &c.renew.renewed {
                t.row([
                    r.name.clone(),
                    r.ca.name().to_string(),
                    kubeadm_date(r.not_after),
                    format!(
                        "{} {}",
                        if r.new_key { "new" } else { "kept" },
                        r.key_algorithm
                    ),
                    if r.verified { "yes" } else { "no" }.to_string(),
                ]);
            }
            s.push_str(&t.render());
        }
        s.push_str(&format!(
            "{} not renewed (not expiring within {RENEW_WITHIN_DAYS}d or not cpkeep's to renew)\n",
            counted(
                c.renew.skipped.len(),
                "other certificate",
                "other certificates"
            )
        ));
        match &c.renew.backup_dir {
            Some(dir) => s.push_str(&format!(
                "{} backed up in {}\n",
                counted(c.backed_up_files, "old file", "old files"),
                dir.display()
            )),
            None => s.push_str("NO BACKUP DIRECTORY\n"),
        }
        s.push_str(&heading("`cpkeep certs check` again"));
        s.push_str(&etcd_cert_rows(&c.after));
        s.push_str(&heading(&format!(
            "`cpkeep bootstrap plan` on `cpkeep bootstrap example` ({})",
            self.bootstrap.inventory
        )));
        s.push_str(&self.bootstrap.table());
        s.push_str(&heading(
            "`cpkeep cluster member add/promote/remove`, `cluster failover-drill`, `cluster defrag`",
        ));
        s.push_str(&self.members.table());
        s.push_str(&heading(
            "`cpkeep daemon`: /metrics scraped before and after a follower is killed",
        ));
        s.push_str(&self.daemon.table());
        s.push_str(&heading(
            "a member altered while stopped: `cpkeep cluster health --check-consistency`",
        ));
        s.push_str(&self.doctor.table());
        s.push_str(&heading(
            "an accidental range delete undone: `backup --follow`, then `restore --to-revision`",
        ));
        s.push_str(&self.point_in_time.table());
        s
    }
}

/// The check's rows for the certificates etcd's CA signed, a line for everything else, the verdict.
fn etcd_cert_rows(r: &CheckReport) -> String {
    let mut t = Table::new([
        "CERTIFICATE",
        "EXPIRES",
        "RESIDUAL TIME",
        "CERTIFICATE AUTHORITY",
        "STATUS",
    ]);
    let etcd_ca = CaId::EtcdCa.name();
    let mut others = 0;
    for c in &r.certificates {
        if c.ca_name.as_deref() != Some(etcd_ca) {
            others += 1;
            continue;
        }
        t.row([
            c.name.clone(),
            c.expiration_date.map(kubeadm_date).unwrap_or_default(),
            short_human_duration(c.residual_time),
            etcd_ca.to_string(),
            c.status.as_str().to_string(),
        ]);
    }
    let mut s = t.render();
    let not_ok = not_ok(r);
    let elsewhere: Vec<&String> = not_ok
        .iter()
        .filter(|n| {
            !r.certificates
                .iter()
                .any(|c| &c.name == *n && c.ca_name.as_deref() == Some(etcd_ca))
        })
        .collect();
    s.push_str(&format!(
        "{}, {}, the service-account key pair: {}\n",
        counted(others, "other certificate", "other certificates"),
        counted(r.certificate_authorities.len(), "CA", "CAs"),
        if elsewhere.is_empty() {
            "OK".to_string()
        } else {
            format!(
                "NOT OK: {}",
                elsewhere
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    s.push_str(&format!("VERDICT: {}", r.verdict.as_str()));
    if !not_ok.is_empty() {
        s.push_str(&format!(" ({})", not_ok.join(", ")));
    }
    s.push('\n');
    s
}

/// The names of the rows of a check that are not OK: certificates, CAs, the service-account key pair.
fn not_ok(r: &CheckReport) -> Vec<String> {
    let mut names: Vec<String> = r
        .all()
        .filter(|c| c.severity != Verdict::Ok)
        .map(|c| c.name.clone())
        .collect();
    if r.service_account.severity != Verdict::Ok {
        names.push(r.service_account.name.clone());
    }
    names
}

/// Generates a complete kubeadm-layout node PKI under `<root>/node/etc/kubernetes` (ECDSA P-256:
/// no RSA key generation), re-issues etcd's leaves to expire in 5 days, then checks, renews what
/// expires within 30 days (as `cpkeep certs renew --within 30d` does) and checks again.
async fn certs_step(root: &Path) -> anyhow::Result<DemoCerts> {
    let started = Instant::now();
    let node_dir = root.join("node").join("etc").join("kubernetes");
    let layout = PkiLayout::new(node_dir.join("pki"), &node_dir);
    let pki = TestPki::generate(&layout, TestPkiOptions::default())
        .context("cannot generate the demo's node PKI")?;
    let now = time::OffsetDateTime::now_utc();
    for name in EXPIRING_CERTS {
        // A minute past 5 days, so that the check's residual time reads 5d rather than 4d.
        pki.reissue(
            name,
            now - time::Duration::minutes(5),
            now + time::Duration::days(5) + time::Duration::minutes(1),
        )
        .with_context(|| format!("cannot re-issue the demo's {name}"))?;
    }
    let before = check(&CheckOptions::new(layout.clone())).context("demo certs check failed")?;

    let mut opts = RenewOptions::new(layout.clone());
    opts.names = vec!["all".to_string()];
    opts.within = Some(chrono::Duration::days(RENEW_WITHIN_DAYS));
    let plan = renew::plan(&opts).context("demo certs renew could not plan")?;
    let renewed = renew::apply(plan, ApplyOptions::default())
        .await
        .context("demo certs renew failed")?;
    let backed_up_files = renewed
        .backup_dir
        .as_deref()
        .map(count_backed_up)
        .unwrap_or(0);

    let after = check(&CheckOptions::new(layout)).context("demo certs check (after) failed")?;
    Ok(DemoCerts {
        node_dir: node_dir.display().to_string(),
        made_expiring: EXPIRING_CERTS.iter().map(|n| n.to_string()).collect(),
        elapsed_ms: started.elapsed().as_millis(),
        not_ok_before: not_ok(&before),
        before,
        renewed: renewed.renewed.iter().map(|c| c.name.clone()).collect(),
        backed_up_files,
        renew: renewed,
        not_ok_after: not_ok(&after),
        after,
    })
}

/// The regular files under a renewal's backup directory, its journal aside.
fn count_backed_up(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => count_backed_up(&path),
                Ok(t) if t.is_file() && e.file_name() != renew::JOURNAL_FILE => 1,
                _ => 0,
            }
        })
        .sum()
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
        control: Default::default(),
    };
    let backed_up = backup(&conn, &store, &backup_opts, &NoProgress)
        .await
        .context("demo backup failed")?;
    let stored_snapshots = catalog(&store).await?.complete().count();
    let copy = sandbox.root().join("verify.db");
    fetch_to_file(&store, &backed_up.manifest, &copy, None, true).await?;
    let verify = tokio::task::spawn_blocking(move || verify_file(&copy, false, None)).await??;

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
    let members = super::demo_members::members_step(&mut sandbox, &conn).await?;
    let daemon = super::demo_daemon::daemon_step(&mut sandbox).await?;
    let certs = certs_step(sandbox.root()).await?;
    let bootstrap = super::demo_bootstrap::bootstrap_step(sandbox.root()).await?;
    let doctor = super::demo_doctor::doctor_step(&mut sandbox, &conn).await?;
    let point_in_time = super::demo_pitr::pitr_step(sandbox.root(), &etcd).await?;

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
        certs,
        bootstrap,
        members,
        daemon,
        doctor,
        point_in_time,
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
    let c = &report.certs;
    if c.before.verdict != Verdict::Critical
        || c.not_ok_before != EXPIRING_CERTS
        || c.renewed != EXPIRING_CERTS
        || c.renew.backup_dir.is_none()
        || c.backed_up_files == 0
        || c.backed_up_files != c.renew.files_written.len()
        || c.after.verdict != Verdict::Ok
        || !c.not_ok_after.is_empty()
    {
        return Err(ExitError {
            code: Exit::Warning,
            message: format!(
                "demo certificates: check {:?} naming {:?}, renewed {:?} with {} file(s) backed up in {:?}, then check {:?} naming {:?}; expected CRITICAL naming {EXPIRING_CERTS:?}, those renewed and backed up, then OK",
                c.before.verdict,
                c.not_ok_before,
                c.renewed,
                c.backed_up_files,
                c.renew.backup_dir,
                c.after.verdict,
                c.not_ok_after
            ),
        }
        .into());
    }
    if !report.members.ok() {
        let m = &report.members;
        return Err(ExitError {
            code: Exit::Warning,
            message: format!(
                "demo members: {} voters after the promotion, {} after the removal, drill {} ({}), {} member(s) defragmented; expected 4, 3, OK, 3",
                m.voters_after_promotion,
                m.voters_after_removal,
                m.drill.verdict.as_str(),
                m.drill.reasons.join("; "),
                m.defrag.members.len()
            ),
        }
        .into());
    }
    if !report.daemon.ok() {
        return Err(ExitError {
            code: Exit::Warning,
            message: format!(
                "demo daemon: scrapes {:?} then {:?}, exit {:?}; expected a backup to appear, healthy voters 3 then 2, fault tolerance 1 then 0, exit 0",
                report.daemon.first.values,
                report.daemon.second.values,
                report.daemon.exit_code
            ),
        }
        .into());
    }
    if !report.bootstrap.ok() {
        return Err(ExitError {
            code: Exit::Warning,
            message: format!(
                "demo bootstrap: haproxy checks {:?}, changed on the second run {:?}; expected every config valid and nothing changed",
                report.bootstrap.haproxy_checks, report.bootstrap.changed_on_rerun
            ),
        }
        .into());
    }
    report.doctor.check()?;
    report.point_in_time.check()?;
    Ok(Exit::Ok)
}
