//! `cpkeep certs check`: kubeadm's `certs check-expiration` tables (same rows, names, columns and date
//! format) with a monitoring verdict and exit code, plus the alert outputs (`--prometheus FILE`,
//! `--webhook URL`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::output::{Render, Renderer};
use super::table::Table;
use super::Exit;
use crate::certs::check::{kubeadm_date, short_human_duration};
use crate::certs::{
    check, prometheus, webhook, CertState, CertStatus, CheckOptions, CheckReport, PkiLayout,
    DEFAULT_CERT_DIR, DEFAULT_KUBECONFIG_DIR,
};
use crate::etcd::Verdict;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Check every kubeadm certificate, CA, kubeconfig and the service-account key pair: expiry,
    /// chain to its CA, key match; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Check(CheckArgs),
    /// Renew kubeadm's leaf certificates (never a CA) with their own CA, in place, after a backup;
    /// exit 0 renewed, 1 failed, 2 refused, 3 bad input.
    Renew(super::certs_renew::RenewArgs),
}

/// Where kubeadm's files are (shared by the certs subcommands).
#[derive(Debug, Clone, Args)]
pub struct PkiArgs {
    /// kubeadm's certificatesDir.
    #[arg(long, env = "CPKEEP_CERT_DIR", default_value = DEFAULT_CERT_DIR)]
    pub cert_dir: PathBuf,

    /// Where admin.conf, controller-manager.conf, scheduler.conf, kubelet.conf and super-admin.conf are.
    #[arg(long, env = "CPKEEP_KUBECONFIG_DIR", default_value = DEFAULT_KUBECONFIG_DIR)]
    pub kubeconfig_dir: PathBuf,
}

impl PkiArgs {
    pub fn layout(&self) -> PkiLayout {
        PkiLayout::new(&self.cert_dir, &self.kubeconfig_dir)
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub pki: PkiArgs,

    /// Residual time at or below which a certificate is a WARNING (e.g. 30d, 720h).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub warn: Duration,

    /// Residual time at or below which a certificate is CRITICAL.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub critical: Duration,

    /// Write a node-exporter textfile (x509-certificate-exporter metric names) to FILE, atomically.
    #[arg(long, value_name = "FILE", env = "CPKEEP_CERTS_PROMETHEUS")]
    pub prometheus: Option<PathBuf>,

    /// The kubelet's static pod directory; its etcd.yaml says whether etcd uses TLS at all
    /// [default: <kubeconfig-dir>/manifests].
    #[arg(long, value_name = "DIR", env = "CPKEEP_MANIFESTS_DIR")]
    pub manifests_dir: Option<PathBuf>,

    /// POST a JSON alert to URL for every certificate, CA or file that is not OK (WARNING or
    /// CRITICAL).
    #[arg(long, value_name = "URL", env = "CPKEEP_CERTS_WEBHOOK")]
    pub webhook: Option<String>,

    /// Bounds each webhook request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,
}

pub async fn run(cmd: CertsCommand, out: &Renderer) -> anyhow::Result<Exit> {
    match cmd {
        CertsCommand::Check(args) => run_check(&args, out).await,
        CertsCommand::Renew(args) => super::certs_renew::run(args, out).await,
    }
}

async fn run_check(args: &CheckArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let report = evaluate(args).await?;
    out.print(&report)?;
    if report.verdict == Verdict::Unknown {
        let mut line = format!(
            "cpkeep: cannot evaluate certificates: {}",
            report.unknown_reasons().join("; ")
        );
        if args.prometheus.is_some() || args.webhook.is_some() {
            line.push_str(" (no textfile written, no webhook sent)");
        }
        eprintln!("{line}");
        return Ok(Exit::Unknown);
    }
    publish(args, &report).await?;
    Ok(report.verdict.into())
}

/// The check of `certs check`, without printing; shared with the daemon.
pub async fn evaluate(args: &CheckArgs) -> anyhow::Result<CheckReport> {
    let to_chrono = |d: Duration, flag: &str| {
        chrono::Duration::from_std(d).map_err(|_| anyhow::anyhow!("{flag} is too large"))
    };
    let mut opts = CheckOptions::new(args.pki.layout());
    if let Some(dir) = &args.manifests_dir {
        opts.manifests_dir = dir.clone();
    }
    opts.warn = to_chrono(args.warn, "--warn")?;
    opts.critical = to_chrono(args.critical, "--critical")?;
    if opts.critical > opts.warn {
        anyhow::bail!(
            "--critical {} is longer than --warn {}: the critical threshold must not exceed the warning one",
            humantime::format_duration(args.critical),
            humantime::format_duration(args.warn)
        );
    }
    blocking(move || check(&opts)).await?.map_err(Into::into)
}

/// The alert outputs of an evaluated check: `--prometheus` textfile, `--webhook` alerts.
pub async fn publish(args: &CheckArgs, report: &CheckReport) -> anyhow::Result<()> {
    if let Some(path) = &args.prometheus {
        let (r, p) = (report.clone(), path.clone());
        blocking(move || prometheus::write_textfile(&r, &p)).await??;
        tracing::info!("wrote the certificate metrics to {}", path.display());
    }
    if let Some(url) = &args.webhook {
        let alerts = webhook::alerts(report, &webhook::hostname());
        let sent = webhook::post_alerts(url, &alerts, args.webhook_timeout).await?;
        if sent > 0 {
            tracing::info!(
                "posted {} to the webhook",
                crate::units::counted(sent, "certificate alert", "certificate alerts")
            );
        }
    }
    Ok(())
}

/// Runs blocking certificate work (reading, parsing and writing files, generating keys) on the
/// blocking pool rather than on one of the runtime's two workers.
pub(super) async fn blocking<T, F>(f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(t) => Ok(t),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => anyhow::bail!("the process is shutting down"),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The first cell of a row: the name, behind kubeadm's `!MISSING!` marker and cpkeep's
/// `!UNREADABLE!` and `!ERROR!` ones, so a row that is not what it seems says so even when its
/// certificate was read (an `!ERROR!` row with dates has a broken key).
fn row_name(s: &CertStatus) -> String {
    match s.status {
        CertState::Missing => format!("!MISSING! {}", s.name),
        CertState::Unreadable => format!("!UNREADABLE! {}", s.name),
        CertState::Error => format!("!ERROR! {}", s.name),
        CertState::Ok
        | CertState::Managed
        | CertState::Warning
        | CertState::Critical
        | CertState::Expired => s.name.clone(),
    }
}

/// The EXTERNALLY MANAGED cell: the kubelet's own rotating certificate is managed by the kubelet.
fn managed_cell(s: &CertStatus) -> String {
    if s.status == CertState::Managed {
        "kubelet".to_string()
    } else {
        yes_no(s.externally_managed).to_string()
    }
}

/// EXPIRES and RESIDUAL TIME, blank when the certificate could not be read (as kubeadm's
/// `!MISSING!` rows).
fn date_cells(s: &CertStatus) -> [String; 2] {
    match s.expiration_date {
        Some(exp) => [kubeadm_date(exp), short_human_duration(s.residual_time)],
        None => [String::new(), String::new()],
    }
}

impl Render for CheckReport {
    fn table(&self) -> String {
        let mut t = Table::new([
            "CERTIFICATE",
            "EXPIRES",
            "RESIDUAL TIME",
            "CERTIFICATE AUTHORITY",
            "EXTERNALLY MANAGED",
        ]);
        for c in &self.certificates {
            let [expires, residual] = date_cells(c);
            let seen = c.expiration_date.is_some() || c.status == CertState::Managed;
            t.row([
                row_name(c),
                expires,
                residual,
                if seen {
                    c.ca_name.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                if seen { managed_cell(c) } else { String::new() },
            ]);
        }
        let mut s = t.render();
        s.push('\n');
        let mut t = Table::new([
            "CERTIFICATE AUTHORITY",
            "EXPIRES",
            "RESIDUAL TIME",
            "EXTERNALLY MANAGED",
        ]);
        for c in &self.certificate_authorities {
            let [expires, residual] = date_cells(c);
            let seen = c.expiration_date.is_some();
            t.row([
                row_name(c),
                expires,
                residual,
                if seen { managed_cell(c) } else { String::new() },
            ]);
        }
        s.push_str(&t.render());
        let sa = &self.service_account;
        s.push_str(&format!(
            "\nservice-account key pair ({}, {}): {}\n",
            sa.key_path,
            sa.public_key_path,
            match (sa.status, sa.key_matches) {
                (_, Some(true)) => format!(
                    "keys match ({})",
                    sa.key_algorithm.clone().unwrap_or_default()
                ),
                (_, Some(false)) => "KEYS DO NOT MATCH".to_string(),
                (st, None) => st.as_str().to_string(),
            }
        ));
        s.push_str(&format!("VERDICT: {}\n", self.verdict.as_str()));
        if !self.findings.is_empty() {
            s.push_str("\nREASONS\n");
            for f in &self.findings {
                s.push_str(&format!("  {:<8}  {}\n", f.severity.as_str(), f.message));
            }
        }
        if !self.notes.is_empty() {
            s.push_str("\nNOTES\n");
            for n in &self.notes {
                s.push_str(&format!("  {n}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::certs::CertsError;

    /// The CLI prints an error's whole chain; a certificate error's I/O cause must appear once, in
    /// its short form (not `…: no such file or directory: No such file or directory (os error 2)`).
    #[test]
    fn an_io_cause_is_printed_once() {
        for (kind, short) in [
            (std::io::ErrorKind::NotFound, "no such file or directory"),
            (std::io::ErrorKind::PermissionDenied, "permission denied"),
        ] {
            for e in [
                CertsError::Read {
                    path: PathBuf::from("/etc/kubernetes/pki/ca.key"),
                    error: std::io::Error::from(kind),
                },
                CertsError::Write {
                    path: PathBuf::from("/etc/kubernetes/pki/ca.key"),
                    error: std::io::Error::from(kind),
                },
            ] {
                let verb = if matches!(e, CertsError::Read { .. }) {
                    "read"
                } else {
                    "write"
                };
                let e = anyhow::Error::from(crate::certs::renew::RenewError::from(e));
                assert_eq!(
                    super::super::exit::one_line(&e),
                    format!("cannot {verb} /etc/kubernetes/pki/ca.key: {short}")
                );
            }
        }
    }
}

/// Snapshots of the `certs check` table (insta): the real kubeadm v1.16 tree at a fixed instant, and
/// a copy of it with a row in every state. Paths are replaced by placeholders, so the snapshots do
/// not depend on where the repository or the temp directory is.
#[cfg(test)]
mod snapshots {
    use std::path::Path;

    use chrono::{DateTime, Utc};

    use super::Render;
    use crate::certs::testpki::kubeadm_v1_16_copy;
    use crate::certs::{check, CheckOptions, PkiLayout};

    pub(crate) fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// `text` with `dir` as `[TMP]` and the repository as `[REPO]`.
    pub(crate) fn scrub(text: &str, dir: Option<&Path>) -> String {
        let mut t = text.replace(env!("CARGO_MANIFEST_DIR"), "[REPO]");
        if let Some(d) = dir {
            t = t.replace(&d.display().to_string(), "[TMP]");
        }
        t
    }

    #[test]
    fn check_table_of_the_kubeadm_1_16_tree_five_years_on() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16");
        let mut opts = CheckOptions::new(PkiLayout::new(root.join("pki"), &root));
        opts.now = at("2025-11-25T12:00:00Z");
        let r = check(&opts).unwrap();
        insta::assert_snapshot!(scrub(&r.table(), None));
    }

    #[test]
    fn check_table_with_a_row_in_every_state() {
        let (dir, layout) = kubeadm_v1_16_copy();
        let root = &layout.kubeconfig_dir;
        // kubelet.conf refers to the kubelet's rotating certificate, which a copy does not have.
        let pem = dir
            .path()
            .join("var/lib/kubelet/pki/kubelet-client-current.pem");
        let conf = root.join("kubelet.conf");
        let text: Vec<String> = std::fs::read_to_string(&conf)
            .unwrap()
            .lines()
            .map(|l| match l.trim_start() {
                t if t.starts_with("client-certificate-data:") => {
                    format!("    client-certificate: {}", pem.display())
                }
                t if t.starts_with("client-key-data:") => {
                    format!("    client-key: {}", pem.display())
                }
                _ => l.to_string(),
            })
            .collect();
        std::fs::write(&conf, text.join("\n") + "\n").unwrap();
        // A broken key beside a readable certificate; a certificate that cannot be read; a missing
        // key; an external CA; a missing half of the service-account pair.
        std::fs::write(layout.key_path("etcd/peer"), "garbage").unwrap();
        std::fs::remove_file(layout.cert_path("front-proxy-client")).unwrap();
        std::fs::create_dir(layout.cert_path("front-proxy-client")).unwrap();
        std::fs::remove_file(layout.key_path("apiserver-kubelet-client")).unwrap();
        std::fs::remove_file(layout.key_path("front-proxy-ca")).unwrap();
        std::fs::remove_file(layout.sa_pub_path()).unwrap();
        let mut opts = CheckOptions::new(layout.clone());
        opts.now = at("2020-12-01T00:00:00Z");
        let r = check(&opts).unwrap();
        insta::assert_snapshot!(scrub(&r.table(), Some(dir.path())));
    }
}
