//! `cpkeep certs renew`: renews kubeadm's leaf certificates (never a CA) with their own CA, in place,
//! after backing up every file it replaces; `--dry-run` prints the plan, `--restart` restarts the
//! static pods that read renewed certificates, `--recover` puts back the files of an interrupted run.
//!
//! Exit codes: 0 renewed (or nothing to renew), 1 failed, 2 refused (a CA, an external CA, an
//! interrupted renewal to recover first — the other certificates are still renewed), 3 bad input
//! (unknown names, unusable files: one line each, nothing written).
//!
//! `CPKEEP_TEST_CRASH_AFTER_WRITES=N` (tests only) aborts the process after N replaced files, to
//! check that a killed run leaves every file old or new and the backup complete;
//! `CPKEEP_TEST_PAUSE_AFTER_WRITES=N:FIFO` holds the run there, lock held, until FIFO gets a byte, to
//! check that a second run at that moment is refused.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::certs::{blocking, PkiArgs};
use super::exit::{certs_class_code, Exit, ExitError};
use super::output::{Render, Renderer};
use super::table::Table;
use crate::certs::pem::KeyFormat;
use crate::certs::renew::{
    self, ApplyOptions, NotRenewed, RecoverPlan, RecoverReport, RenewError, RenewOptions,
    RenewPlan, RenewReport, Selected, TestHook,
};
use crate::certs::restart::{ProbeOrigin, RestartOptions, DEFAULT_MANIFESTS_DIR};
use crate::units::counted;

/// The variable of the crash test hook.
const CRASH_HOOK_ENV: &str = "CPKEEP_TEST_CRASH_AFTER_WRITES";
/// The variable of the pause test hook.
const PAUSE_HOOK_ENV: &str = "CPKEEP_TEST_PAUSE_AFTER_WRITES";

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// `all` (the default), or kubeadm's names of the certificates to renew (admin.conf,
    /// apiserver, apiserver-etcd-client, apiserver-kubelet-client, controller-manager.conf,
    /// etcd-healthcheck-client, etcd-peer, etcd-server, front-proxy-client, scheduler.conf,
    /// super-admin.conf). Named certificates are renewed whatever their expiry.
    #[arg(value_name = "all|NAME")]
    pub names: Vec<String>,

    #[command(flatten)]
    pub pki: PkiArgs,

    /// With `all`: renew only the certificates that expire within DURATION (e.g. 30d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub within: Option<Duration>,

    /// How long renewed certificates are valid; capped at their CA's own expiry (with a warning).
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
    pub validity: Duration,

    /// Keep each certificate's private key instead of generating a new one (same algorithm and
    /// size, same PEM form).
    #[arg(long)]
    pub reuse_key: bool,

    /// Print the plan (what is renewed, skipped, refused; the files replaced and their backup);
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Then restart the static pods that read renewed certificates, one at a time: the manifest
    /// moved out of --manifests-dir and back, then a wait for the component's health endpoint.
    #[arg(long)]
    pub restart: bool,

    /// The kubelet's static pod directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_MANIFESTS_DIR)]
    pub manifests_dir: PathBuf,

    /// With --restart: how long a pod may take to stop, then to answer its health endpoint.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub wait_timeout: Duration,

    /// Put back, from its backup, every file an interrupted renewal replaced; then renew again.
    #[arg(long, conflicts_with_all = ["names", "within", "reuse_key", "restart"])]
    pub recover: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30d, 365d, 720h)"))?;
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(d)
}

pub async fn run(args: RenewArgs, out: &Renderer) -> anyhow::Result<Exit> {
    if args.recover {
        return run_recover(&args, out).await;
    }
    let chrono = |d: Duration, flag: &str| {
        chrono::Duration::from_std(d).map_err(|_| {
            anyhow::Error::from(ExitError {
                code: Exit::Unknown,
                message: format!("{flag} is too large"),
            })
        })
    };
    let mut opts = RenewOptions::new(args.pki.layout());
    opts.names = args.names.clone();
    opts.within = args.within.map(|w| chrono(w, "--within")).transpose()?;
    opts.validity = chrono(args.validity, "--validity")?;
    opts.reuse_key = args.reuse_key;
    if args.restart {
        let mut r = RestartOptions::new(args.manifests_dir.clone());
        r.wait_timeout = args.wait_timeout;
        opts.restart = Some(r);
    }
    let plan = blocking(move || renew::plan(&opts))
        .await?
        .map_err(failure)?;
    let refused = if plan.refused.is_empty() {
        Exit::Ok
    } else {
        Exit::Critical
    };
    if args.dry_run {
        out.print(&DryRun {
            dry_run: true,
            plan: &plan,
        })?;
        return Ok(refused);
    }
    let hook = test_hook();
    let report = renew::apply(plan, ApplyOptions { hook })
        .await
        .map_err(failure)?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    out.print(&report)?;
    Ok(refused)
}

async fn run_recover(args: &RenewArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let layout = args.pki.layout();
    let Some(plan) = blocking(move || renew::plan_recover(&layout))
        .await?
        .map_err(failure)?
    else {
        out.print(&NothingToRecover {
            recovered: false,
            reason: format!(
                "no interrupted renewal under {}",
                renew::backup_root(&args.pki.cert_dir).display()
            ),
        })?;
        return Ok(Exit::Ok);
    };
    if args.dry_run {
        out.print(&RecoverDryRun {
            dry_run: true,
            plan: &plan,
        })?;
        return Ok(Exit::Ok);
    }
    let report = blocking(move || renew::recover(&plan))
        .await?
        .map_err(failure)?;
    out.print(&report)?;
    Ok(Exit::Ok)
}

/// The test hook the environment asks for, if any.
fn test_hook() -> Option<TestHook> {
    if let Some(n) = std::env::var(CRASH_HOOK_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return Some(TestHook::AbortAfterWrites(n));
    }
    let v = std::env::var(PAUSE_HOOK_ENV).ok()?;
    let (n, fifo) = v.split_once(':')?;
    Some(TestHook::PauseAfterWrites(
        n.parse().ok()?,
        PathBuf::from(fifo),
    ))
}

/// The error's exit code, and one `cpkeep:` line per unusable file (the last one printed by main).
fn failure(e: RenewError) -> anyhow::Error {
    let code = certs_class_code(e.class());
    let mut lines = e.lines();
    let last = lines.pop().unwrap_or_default();
    for l in lines {
        eprintln!("cpkeep: {l}");
    }
    ExitError {
        code,
        message: last,
    }
    .into()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DryRun<'a> {
    dry_run: bool,
    #[serde(flatten)]
    plan: &'a RenewPlan,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecoverDryRun<'a> {
    dry_run: bool,
    #[serde(flatten)]
    plan: &'a RecoverPlan,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NothingToRecover {
    recovered: bool,
    reason: String,
}

fn date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn key_cell(algorithm: &str, format: KeyFormat, new_key: bool) -> String {
    format!(
        "{} {algorithm} {}",
        if new_key { "new" } else { "kept" },
        format.as_str()
    )
}

fn listed(out: &mut String, title: &str, items: &[NotRenewed]) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!("\n{title}:\n"));
    for i in items {
        out.push_str(&format!("  {}: {}\n", i.name, i.reason));
    }
}

fn lines(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!("\n{title}:\n"));
    for i in items {
        out.push_str(&format!("  {i}\n"));
    }
}

impl Render for DryRun<'_> {
    fn table(&self) -> String {
        let p = self.plan;
        let mut out = String::from("Dry run: nothing was changed.\n\n");
        if p.renew.is_empty() {
            out.push_str("Nothing to renew.\n");
        } else {
            let mut t = Table::new([
                "CERTIFICATE",
                "CA",
                "EXPIRES",
                "RENEWED UNTIL",
                "KEY",
                "WHY",
            ]);
            for c in &p.renew {
                let why = match c.selected {
                    Selected::Named => "named",
                    Selected::All => "all",
                    Selected::Expiring => "expiring",
                };
                let until = if c.capped_by_ca {
                    format!("{} (CA expiry)", date(c.not_after))
                } else {
                    date(c.not_after)
                };
                t.row([
                    c.name.clone(),
                    c.ca.name().to_string(),
                    date(c.expires),
                    until,
                    key_cell(&c.key_algorithm, c.key_format, c.new_key),
                    why.to_string(),
                ]);
            }
            out.push_str(&t.render());
        }
        listed(&mut out, "Skipped", &p.skipped);
        listed(&mut out, "Refused", &p.refused);
        lines(&mut out, "Warnings", &p.warnings);
        if !p.files.is_empty() {
            out.push_str(&format!(
                "\nFiles replaced (each copied to {} first):\n",
                p.backup_dir.display()
            ));
            for f in &p.files {
                out.push_str(&format!("  {} (mode {})\n", f.path.display(), f.mode));
            }
        }
        if !p.restarts.is_empty() {
            out.push_str("\nRestarts, one at a time:\n");
            for r in &p.restarts {
                let from = match r.probe_from {
                    ProbeOrigin::Manifest => "its liveness probe",
                    ProbeOrigin::Default => "kubeadm's default probe",
                };
                out.push_str(&format!(
                    "  {} ({}): {} moved out and back, then {} ({from})\n",
                    r.component.name(),
                    r.certs.join(", "),
                    r.manifest.display(),
                    r.probe.url()
                ));
            }
        }
        out
    }
}

impl Render for RenewReport {
    fn table(&self) -> String {
        let mut out = String::new();
        if self.renewed.is_empty() {
            out.push_str("Nothing renewed.\n");
        } else {
            let mut t = Table::new([
                "CERTIFICATE",
                "CA",
                "VALID UNTIL",
                "KEY",
                "SERIAL",
                "VERIFIED",
            ]);
            for c in &self.renewed {
                t.row([
                    c.name.clone(),
                    c.ca.name().to_string(),
                    date(c.not_after),
                    key_cell(&c.key_algorithm, c.key_format, c.new_key),
                    c.serial.clone(),
                    if c.verified { "yes" } else { "no" }.to_string(),
                ]);
            }
            out.push_str(&t.render());
        }
        listed(&mut out, "Skipped", &self.skipped);
        listed(&mut out, "Refused", &self.refused);
        lines(&mut out, "Warnings", &self.warnings);
        if let Some(b) = &self.backup_dir {
            out.push_str(&format!("\nThe old files are in {}\n", b.display()));
        }
        if !self.restarted.is_empty() {
            out.push_str("\nRestarted:\n");
            for r in &self.restarted {
                out.push_str(&format!(
                    "  {}: stopped in {:.1}s, healthy {:.1}s later ({}: {})\n",
                    r.component.name(),
                    r.stopped_seconds,
                    r.healthy_seconds,
                    r.endpoint,
                    r.health
                ));
            }
        } else if !self.renewed.is_empty() {
            out.push_str(
                "\nThe components read certificates at start: restart them (--restart) to use the renewed ones.\n",
            );
        }
        out
    }
}

impl Render for RecoverDryRun<'_> {
    fn table(&self) -> String {
        let mut out = format!(
            "Dry run: nothing was changed. The interrupted renewal of {} ({}):\n",
            date(self.plan.started_at),
            self.plan.backup_dir.display()
        );
        let mut t = Table::new(["FILE", "NOW", "ACTION"]);
        for f in &self.plan.files {
            t.row([
                f.path.display().to_string(),
                f.state.as_str().to_string(),
                if f.restore { "put back" } else { "keep" }.to_string(),
            ]);
        }
        out.push_str(&t.render());
        out
    }
}

impl Render for RecoverReport {
    fn table(&self) -> String {
        let mut out = format!(
            "Put back {} from {}; {} still old.\n",
            counted(self.restored.len(), "file", "files"),
            self.backup_dir.display(),
            match self.already_old.len() {
                1 => "1 was".to_string(),
                n => format!("{n} were"),
            }
        );
        for p in &self.restored {
            out.push_str(&format!("  {}\n", p.display()));
        }
        out
    }
}

impl Render for NothingToRecover {
    fn table(&self) -> String {
        format!("Nothing to recover: {}.\n", self.reason)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn recover_report_counts_agree_with_their_nouns() {
        let report = |restored: usize, old: usize| RecoverReport {
            backup_dir: PathBuf::from("/b"),
            restored: vec![PathBuf::from("/k/a.crt"); restored],
            already_old: vec![PathBuf::from("/k/b.crt"); old],
        };
        let first = |r: RecoverReport| r.table().lines().next().unwrap_or_default().to_string();
        assert_eq!(
            first(report(1, 1)),
            "Put back 1 file from /b; 1 was still old."
        );
        assert_eq!(
            first(report(2, 0)),
            "Put back 2 files from /b; 0 were still old."
        );
    }
}

/// A snapshot of the `certs renew --dry-run` table (insta), on a copy of the kubeadm v1.16 tree at a
/// fixed instant, with `--within 30d` and `--restart` planned from the tree's own manifests.
#[cfg(test)]
mod snapshots {
    use super::*;
    use crate::certs::testpki::kubeadm_v1_16_copy;

    #[test]
    fn dry_run_table_within_30_days_with_restarts() {
        let (dir, layout) = kubeadm_v1_16_copy();
        // External front-proxy CA: its client is refused, naming the key.
        std::fs::remove_file(layout.key_path("front-proxy-ca")).unwrap();
        let mut opts = RenewOptions::new(layout.clone());
        opts.now = chrono::DateTime::parse_from_rfc3339("2020-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        opts.within = Some(chrono::Duration::days(30));
        opts.validity = chrono::Duration::days(3650);
        opts.restart = Some(RestartOptions::new(layout.kubeconfig_dir.join("manifests")));
        let plan = renew::plan(&opts).unwrap();
        let text = DryRun {
            dry_run: true,
            plan: &plan,
        }
        .table();
        insta::assert_snapshot!(text.replace(&dir.path().display().to_string(), "[TMP]"));
    }
}
