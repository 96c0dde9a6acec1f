//! `certs check`: judges every certificate, CA and key pair of an [`Inventory`] against the warning
//! and critical thresholds and returns a [`CheckReport`] shaped like kubeadm's
//! `output.kubeadm.k8s.io/v1alpha3` `CertificateExpirationInfo`, with cpkeep's per-item details and a
//! monitoring verdict (OK, WARNING, CRITICAL, UNKNOWN).
//!
//! Every item is judged on its own row, and the verdict is the worst row:
//! - a file that is present but broken (not PEM, not a kubeconfig, a key that does not match, a
//!   certificate its CA did not sign) is CRITICAL: the component that loads it fails;
//! - a file that cannot be read (permissions, a file a kubeconfig refers to that is absent) is a
//!   WARNING naming the cause: the check is partly blind, the component may well be fine;
//! - UNKNOWN only when nothing at all could be evaluated, so one unreadable file never hides an
//!   expired certificate beside it.
//!
//! Two absences are normal and no finding: `super-admin.conf` except where `kubeadm init` ran, and the
//! etcd certificates when the etcd static pod serves plain http. The kubelet's rotating client
//! certificate that `kubelet.conf` refers to is the kubelet's business: when it is not where the check
//! runs (a copy of /etc/kubernetes, a pod), its row says so and is no finding either.
//!
//! This module owns the judgement and kubeadm's presentation rules (date format, residual time). It
//! never prints, never writes, and never puts key material in the report: only public facts
//! (subject, SANs, serial, key algorithm) and yes/no answers about keys.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::error::CertsError;
use super::inventory::{
    discover, CaEntry, CaId, CertEntry, CertSource, Inventory, Material, PkiLayout, Presence,
    Problem, ProblemReason, ServiceAccountEntry,
};
use super::pem::CertInfo;
use super::verify::{key_matches, key_matches_public, verify_signed_by};
use crate::etcd::{Finding, Verdict};
use crate::units::counted;

/// kubeadm's output API group/version for `check-expiration -o json`.
pub const API_VERSION: &str = "output.kubeadm.k8s.io/v1alpha3";
/// kubeadm's output kind for `check-expiration -o json`.
pub const KIND: &str = "CertificateExpirationInfo";

/// What to check and how strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    pub layout: PkiLayout,
    /// The kubelet's static pod directory, where `etcd.yaml` says whether etcd uses TLS at all.
    pub manifests_dir: PathBuf,
    /// Residual time at or below which a certificate is a WARNING (default 30 days).
    pub warn: Duration,
    /// Residual time at or below which a certificate is CRITICAL (default 7 days).
    pub critical: Duration,
    /// The instant judged against (tests pin it).
    pub now: DateTime<Utc>,
}

impl CheckOptions {
    /// kubeadm's default layout (manifests in `<kubeconfig-dir>/manifests`), 30 days warning,
    /// 7 days critical, now.
    pub fn new(layout: PkiLayout) -> Self {
        Self {
            manifests_dir: layout.kubeconfig_dir.join("manifests"),
            layout,
            warn: Duration::days(30),
            critical: Duration::days(7),
            now: Utc::now(),
        }
    }
}

/// The state of one certificate, CA or key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CertState {
    Ok,
    /// The kubelet's rotating client certificate, referenced by `kubelet.conf`, is not where the check
    /// runs: the kubelet manages it, nothing to judge here.
    Managed,
    /// Within the warning threshold, or not yet valid.
    Warning,
    /// The file (or its key) exists but cannot be read: the check is blind to it.
    Unreadable,
    /// The file does not exist.
    Missing,
    /// Within the critical threshold, not signed by its CA, or its key does not match.
    Critical,
    /// Past NotAfter.
    Expired,
    /// The file (or its key) was read and is broken: not PEM, not a kubeconfig.
    Error,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Ok => "OK",
            CertState::Managed => "MANAGED",
            CertState::Warning => "WARNING",
            CertState::Unreadable => "UNREADABLE",
            CertState::Missing => "MISSING",
            CertState::Critical => "CRITICAL",
            CertState::Expired => "EXPIRED",
            CertState::Error => "ERROR",
        }
    }

    /// Which state names a row when two reasons of the same severity apply: the more specific.
    fn rank(self) -> u8 {
        match self {
            CertState::Ok => 0,
            CertState::Managed => 1,
            CertState::Missing => 2,
            CertState::Warning => 3,
            CertState::Unreadable => 4,
            CertState::Critical => 5,
            CertState::Expired => 6,
            CertState::Error => 7,
        }
    }
}

/// One row of either table: a certificate or a CA.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertStatus {
    /// kubeadm's name (`apiserver`, `admin.conf`, `etcd-ca`).
    pub name: String,
    /// NotAfter in RFC 3339 (UTC); null when missing or unreadable.
    pub expiration_date: Option<DateTime<Utc>>,
    /// Seconds from the check until NotAfter (negative once expired), as kubeadm's `residualTime`.
    pub residual_time: i64,
    /// kubeadm's external-CA mode: the signing CA's key is absent.
    pub externally_managed: bool,
    /// The signing CA's name; absent for CAs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_name: Option<String>,
    pub missing: bool,
    /// The file holding the certificate (the `.crt`, the kubeconfig, or the file it references).
    pub path: String,
    /// The kubeconfig, for kubeconfig-borne certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The private key's file; null when embedded in the kubeconfig or absent.
    pub key_path: Option<String>,
    pub subject: Option<String>,
    pub sans: Vec<String>,
    pub key_algorithm: Option<String>,
    /// Serial number, lower-case hex.
    pub serial: Option<String>,
    pub issuer: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    /// Whether the signing CA's key signed it; null for CAs and when the CA could not be read.
    #[serde(rename = "chainsToCA")]
    pub chains_to_ca: Option<bool>,
    /// Whether the private key matches; null when there is no key to compare.
    pub key_matches: Option<bool>,
    /// `client-certificate-data` in a kubeconfig.
    pub embedded: bool,
    /// Whether `certs renew` renews it (false for CAs and kubelet.conf).
    pub renewable: bool,
    pub status: CertState,
    /// What this row contributes to the verdict: OK, WARNING or CRITICAL.
    pub severity: Verdict,
    /// Why the status is not OK, one sentence each (and why an absence is normal).
    pub reasons: Vec<String>,
    /// The files of this row that could not be read or used, as x509-certificate-exporter's reason
    /// codes (`permission_denied`, `bad_pem`, …).
    pub problems: Vec<ProblemReason>,
    /// Each reason's own severity, for the findings (not part of the JSON report).
    #[serde(skip)]
    pub(crate) reason_severities: Vec<Verdict>,
    /// Labels for alert outputs (Prometheus); not part of the JSON report.
    #[serde(skip)]
    pub labels: Option<MetricLabels>,
    /// Whether the row is a kubeconfig's (x509-certificate-exporter's `source_kind`).
    #[serde(skip)]
    pub from_kubeconfig: bool,
}

/// Certificate facts that alert outputs label series with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricLabels {
    pub subject_cn: Option<String>,
    pub subject_o: Option<String>,
    pub issuer_cn: Option<String>,
    pub issuer_o: Option<String>,
    /// Serial in decimal, as x509-certificate-exporter labels it.
    pub serial_decimal: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// The kubeconfig user the certificate belongs to (`embedded_key`).
    pub kubeconfig_user: Option<String>,
}

/// The service-account key pair.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyPairStatus {
    pub name: String,
    pub key_path: String,
    pub public_key_path: String,
    pub key_algorithm: Option<String>,
    pub missing: bool,
    pub key_matches: Option<bool>,
    pub status: CertState,
    pub severity: Verdict,
    pub reasons: Vec<String>,
    pub problems: Vec<ProblemReason>,
}

/// Whether the etcd static pod uses the etcd PKI at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum EtcdTls {
    /// etcd serves TLS, or its manifest could not tell (absent, unreadable): the etcd certificates
    /// are expected.
    Expected,
    /// The manifest has etcd serve and peer over plain http, with no certificate flags: kubeadm
    /// did not make (and nothing reads) the etcd certificates.
    PlainHttp { manifest: PathBuf },
}

/// The result of `certs check`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub certificates: Vec<CertStatus>,
    pub certificate_authorities: Vec<CertStatus>,
    pub service_account: KeyPairStatus,
    /// The worst row: OK, WARNING or CRITICAL; UNKNOWN when nothing could be evaluated.
    pub verdict: Verdict,
    /// One sentence per finding, worst first.
    pub reasons: Vec<String>,
    pub findings: Vec<Finding>,
    /// Absences that are normal here, one sentence each (no finding).
    pub notes: Vec<String>,
    /// Files that could not be read or used, counted by reason (what the textfile counts).
    pub problems: Vec<ProblemCount>,
    pub etcd_tls: EtcdTls,
    pub cert_dir: String,
    pub kubeconfig_dir: String,
    pub checked_at: DateTime<Utc>,
    pub warn_seconds: i64,
    pub critical_seconds: i64,
}

/// How many files of one kind failed for one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemCount {
    /// `file` (the cert-dir) or `kubeconfig` (a kubeconfig and the files it refers to), as
    /// x509-certificate-exporter's `source_kind`.
    pub source_kind: SourceKind,
    pub reason: ProblemReason,
    pub count: usize,
}

/// x509-certificate-exporter's `source_kind` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    File,
    Kubeconfig,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Kubeconfig => "kubeconfig",
        }
    }
}

impl CheckReport {
    /// Every row, certificates then CAs.
    pub fn all(&self) -> impl Iterator<Item = &CertStatus> {
        self.certificates
            .iter()
            .chain(&self.certificate_authorities)
    }

    /// The findings that made the verdict UNKNOWN (nothing could be evaluated).
    pub fn unknown_reasons(&self) -> Vec<&str> {
        self.findings
            .iter()
            .filter(|f| f.severity == Verdict::Unknown)
            .map(|f| f.message.as_str())
            .collect()
    }

    /// How many files could not be read or used.
    pub fn problem_total(&self) -> usize {
        self.problems.iter().map(|p| p.count).sum()
    }
}

/// Loads the inventory under `opts.layout` and judges it. Fails only when the cert-dir or the
/// kubeconfig-dir does not exist.
pub fn check(opts: &CheckOptions) -> Result<CheckReport, CertsError> {
    let inv = discover(&opts.layout)?;
    let etcd = etcd_tls(&opts.manifests_dir);
    Ok(evaluate(&inv, &etcd, opts))
}

/// What `<manifests-dir>/etcd.yaml` says about etcd's TLS. Anything it cannot tell (no manifest, an
/// unreadable one: a copy, a pod) keeps the etcd certificates expected.
pub fn etcd_tls(manifests_dir: &Path) -> EtcdTls {
    let path = manifests_dir.join("etcd.yaml");
    let Ok(m) = crate::restore::manifest::EtcdManifest::read(&path) else {
        return EtcdTls::Expected;
    };
    let flags = crate::restore::manifest::parse_flags(&m.command);
    let plain = |flag: &str| {
        flags
            .get(flag)
            .is_some_and(|v| v.split(',').all(|u| u.trim().starts_with("http://")))
    };
    let no_tls_files = [
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
    ]
    .iter()
    .all(|f| flags.get(*f).is_none_or(|v| v.trim().is_empty()));
    if plain("listen-client-urls") && plain("listen-peer-urls") && no_tls_files {
        EtcdTls::PlainHttp { manifest: path }
    } else {
        EtcdTls::Expected
    }
}

/// The certificates that exist only for etcd's TLS (etcd's CA, its serving, peer and health-check
/// certificates, and the apiserver's client certificate for it).
fn etcd_only(name: &str) -> bool {
    matches!(
        name,
        "etcd-ca"
            | "etcd-server"
            | "etcd-peer"
            | "etcd-healthcheck-client"
            | "apiserver-etcd-client"
    )
}

/// Judges an already loaded inventory.
pub fn evaluate(inv: &Inventory, etcd: &EtcdTls, opts: &CheckOptions) -> CheckReport {
    let optional_etcd = matches!(etcd, EtcdTls::PlainHttp { .. });
    let certificate_authorities: Vec<CertStatus> = inv
        .cas
        .iter()
        .map(|ca| ca_status(ca, optional_etcd && ca.id == CaId::EtcdCa, etcd, opts))
        .collect();
    let certificates: Vec<CertStatus> = inv
        .certs
        .iter()
        .map(|c| {
            let optional = optional_etcd && etcd_only(c.spec.name);
            cert_status(c, inv.ca(c.spec.ca), optional, etcd, opts)
        })
        .collect();
    let service_account = sa_status(&inv.service_account);

    let mut findings: Vec<Finding> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for s in certificates.iter().chain(&certificate_authorities) {
        for (severity, r) in s.reason_severities.iter().zip(&s.reasons) {
            if *severity == Verdict::Ok {
                notes.push(r.clone());
            } else {
                findings.push(Finding::new(*severity, r.clone()));
            }
        }
    }
    if service_account.severity != Verdict::Ok {
        for r in &service_account.reasons {
            findings.push(Finding::new(service_account.severity, r.clone()));
        }
    }
    let mut problems: Vec<ProblemCount> = Vec::new();
    let mut count = |source_kind: SourceKind, reason: ProblemReason| match problems
        .iter_mut()
        .find(|p| p.source_kind == source_kind && p.reason == reason)
    {
        Some(p) => p.count += 1,
        None => problems.push(ProblemCount {
            source_kind,
            reason,
            count: 1,
        }),
    };
    for s in certificates.iter().chain(&certificate_authorities) {
        let kind = if s.from_kubeconfig {
            SourceKind::Kubeconfig
        } else {
            SourceKind::File
        };
        for r in &s.problems {
            count(kind, *r);
        }
    }
    for r in &service_account.problems {
        count(SourceKind::File, *r);
    }
    problems.sort_by_key(|p| (p.source_kind, p.reason));

    if !evaluated(inv) {
        findings.push(Finding::new(
            Verdict::Unknown,
            format!(
                "nothing could be evaluated: none of kubeadm's files under {} and {} could be read ({})",
                inv.layout.cert_dir.display(),
                inv.layout.kubeconfig_dir.display(),
                match problems.iter().map(|p| p.count).sum::<usize>() {
                    0 => "every one is missing".to_string(),
                    n => format!("{} unreadable, the others missing", counted(n, "is", "are")),
                }
            ),
        ));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let verdict = findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Verdict::Ok);
    CheckReport {
        kind: KIND,
        api_version: API_VERSION,
        certificates,
        certificate_authorities,
        service_account,
        verdict,
        reasons: findings.iter().map(|f| f.message.clone()).collect(),
        findings,
        notes,
        problems,
        etcd_tls: etcd.clone(),
        cert_dir: inv.layout.cert_dir.display().to_string(),
        kubeconfig_dir: inv.layout.kubeconfig_dir.display().to_string(),
        checked_at: opts.now,
        warn_seconds: opts.warn.num_seconds(),
        critical_seconds: opts.critical.num_seconds(),
    }
}

/// Whether any file was read: a certificate, a key, a kubeconfig, the service-account pair.
fn evaluated(inv: &Inventory) -> bool {
    inv.cas
        .iter()
        .any(|c| c.cert.was_read() || c.key.was_read())
        || inv
            .certs
            .iter()
            .any(|c| c.cert.was_read() || c.key.was_read() || c.kubeconfig.is_some())
        || inv.service_account.key.was_read()
        || inv.service_account.public.was_read()
}

fn blank(name: &str, path: &Path, ca_name: Option<&str>, renewable: bool) -> CertStatus {
    CertStatus {
        name: name.to_string(),
        expiration_date: None,
        residual_time: 0,
        externally_managed: false,
        ca_name: ca_name.map(str::to_string),
        missing: false,
        path: path.display().to_string(),
        kubeconfig: None,
        key_path: None,
        subject: None,
        sans: Vec::new(),
        key_algorithm: None,
        serial: None,
        issuer: None,
        not_before: None,
        chains_to_ca: None,
        key_matches: None,
        embedded: false,
        renewable,
        status: CertState::Ok,
        severity: Verdict::Ok,
        reasons: Vec::new(),
        problems: Vec::new(),
        reason_severities: Vec::new(),
        labels: None,
        from_kubeconfig: false,
    }
}

/// Judges a certificate that is not one of kubeadm's files (an etcd member's served certificate):
/// the same thresholds, states and sentences as `certs check`, for a row called `name` found at
/// `location` (a URL, a path). `severity`, `status` and `reasons` of the row say the outcome.
pub fn judge_certificate(
    name: &str,
    location: &str,
    cert: &CertInfo,
    warn: Duration,
    critical: Duration,
    now: DateTime<Utc>,
) -> CertStatus {
    let mut s = blank(name, Path::new(location), None, false);
    let mut opts = CheckOptions::new(PkiLayout::new(Path::new(""), Path::new("")));
    (opts.warn, opts.critical, opts.now) = (warn, critical, now);
    judge_expiry(&mut s, cert, &opts);
    s
}

/// Fills the public facts of `cert` and applies the expiry thresholds.
fn judge_expiry(s: &mut CertStatus, cert: &CertInfo, opts: &CheckOptions) {
    s.expiration_date = Some(cert.not_after);
    s.not_before = Some(cert.not_before);
    s.residual_time = (cert.not_after - opts.now).num_seconds();
    s.subject = Some(cert.subject.clone());
    s.sans = cert.sans();
    s.key_algorithm = Some(cert.key_algorithm.clone());
    s.serial = Some(cert.serial_hex.clone());
    s.issuer = Some(cert.issuer.clone());
    s.labels = Some(MetricLabels {
        subject_cn: cert.subject_cn.clone(),
        subject_o: cert.subject_o.first().cloned(),
        issuer_cn: cert.issuer_cn.clone(),
        issuer_o: cert.issuer_o.first().cloned(),
        serial_decimal: cert.serial_decimal.clone(),
        not_before: cert.not_before,
        not_after: cert.not_after,
        kubeconfig_user: None,
    });
    let residual = cert.not_after - opts.now;
    if cert.is_expired_at(opts.now) {
        let reason = format!(
            "{} expired on {} ({})",
            s.name,
            kubeadm_date(cert.not_after),
            s.path
        );
        raise(s, CertState::Expired, Verdict::Critical, reason);
    } else if let Some((state, severity, level, at)) = [
        (
            CertState::Critical,
            Verdict::Critical,
            "critical",
            opts.critical,
        ),
        (CertState::Warning, Verdict::Warning, "warning", opts.warn),
    ]
    .into_iter()
    .find(|(_, _, _, at)| residual <= *at)
    {
        let reason = format!(
            "{} expires in {}, on {} ({level} at {}; {})",
            s.name,
            short_human_duration(residual.num_seconds()),
            kubeadm_date(cert.not_after),
            short_human_duration(at.num_seconds()),
            s.path
        );
        raise(s, state, severity, reason);
    }
    if cert.not_before > opts.now {
        let reason = format!(
            "{} is not valid before {} (check the clock; {})",
            s.name,
            kubeadm_date(cert.not_before),
            s.path
        );
        raise(s, CertState::Warning, Verdict::Warning, reason);
    }
}

/// Adds a reason of `severity`. The row's severity is its worst reason's, and its status that
/// reason's state (the more specific one among equally severe reasons).
fn raise(s: &mut CertStatus, state: CertState, severity: Verdict, reason: String) {
    s.reasons.push(reason);
    s.reason_severities.push(severity);
    if severity > s.severity || (severity == s.severity && state.rank() > s.status.rank()) {
        s.status = state;
        s.severity = severity;
    }
}

/// A file that could not be used: unreadable is a WARNING (the check is blind, the component may be
/// fine), invalid is CRITICAL (whatever loads it fails).
fn raise_problem(s: &mut CertStatus, unreadable: bool, problem: &Problem) {
    s.problems.push(problem.reason);
    if unreadable {
        raise(
            s,
            CertState::Unreadable,
            Verdict::Warning,
            format!("{} (not checked)", problem.message),
        );
    } else {
        raise(
            s,
            CertState::Error,
            Verdict::Critical,
            problem.message.clone(),
        );
    }
}

/// Records a missing file: a WARNING, or a note when its absence is normal here.
fn raise_missing(s: &mut CertStatus, reason: String, normal: bool) {
    s.missing = true;
    let severity = if normal {
        Verdict::Ok
    } else {
        Verdict::Warning
    };
    raise(s, CertState::Missing, severity, reason);
}

/// Why the etcd certificates may be absent, for the note on their rows.
fn etcd_note(etcd: &EtcdTls) -> String {
    match etcd {
        EtcdTls::PlainHttp { manifest } => format!(
            "etcd serves plain http ({}), so nothing uses the etcd certificates",
            manifest.display()
        ),
        EtcdTls::Expected => String::new(),
    }
}

fn ca_status(ca: &CaEntry, optional: bool, etcd: &EtcdTls, opts: &CheckOptions) -> CertStatus {
    let mut s = blank(ca.id.name(), &ca.cert_path, None, false);
    let name = s.name.clone();
    s.key_path = Some(ca.key_path.display().to_string());
    s.externally_managed = ca.externally_managed();
    let cert = match &ca.cert {
        Material::Found(c) => c,
        Material::Missing => {
            let reason = if optional {
                format!("{} is missing ({}): {}", s.name, s.path, etcd_note(etcd))
            } else {
                format!("{} is missing ({})", s.name, s.path)
            };
            raise_missing(&mut s, reason, optional);
            return s;
        }
        Material::Unreadable(p) => {
            raise_problem(&mut s, true, p);
            return s;
        }
        Material::Invalid(p) => {
            raise_problem(&mut s, false, p);
            return s;
        }
    };
    judge_expiry(&mut s, cert, opts);
    match &ca.key {
        Material::Found(key) => {
            let ok = key_matches(cert, key);
            s.key_matches = Some(ok);
            if !ok {
                raise(
                    &mut s,
                    CertState::Critical,
                    Verdict::Critical,
                    format!(
                        "{}: the CA key {} does not match the CA certificate {}",
                        name,
                        ca.key_path.display(),
                        ca.cert_path.display()
                    ),
                );
            }
        }
        // kubeadm's external-CA mode.
        Material::Missing => {}
        Material::Unreadable(p) => raise_problem(&mut s, true, p),
        Material::Invalid(p) => raise_problem(&mut s, false, p),
    }
    s
}

fn cert_status(
    c: &CertEntry,
    ca: Option<&CaEntry>,
    optional: bool,
    etcd: &EtcdTls,
    opts: &CheckOptions,
) -> CertStatus {
    let mut s = blank(
        c.spec.name,
        &c.cert_path,
        Some(c.spec.ca.name()),
        c.spec.renewable,
    );
    let (name, path) = (s.name.clone(), s.path.clone());
    s.from_kubeconfig = matches!(c.spec.source, CertSource::Kubeconfig { .. });
    if c.kubeconfig.is_some() || c.path != c.cert_path {
        s.kubeconfig = Some(c.path.display().to_string());
    }
    s.embedded = c.embedded();
    s.key_path = c.key_path.as_ref().map(|p| p.display().to_string());
    s.externally_managed = ca.is_some_and(CaEntry::externally_managed);
    let cert = match &c.cert {
        Material::Found(cert) => cert,
        // The kubelet's own rotating certificate, referenced by kubelet.conf, not where the check
        // runs: the kubelet manages it, and its absence here says nothing about the node.
        Material::Missing if c.referenced() && !c.spec.renewable => {
            s.missing = true;
            raise(
                &mut s,
                CertState::Managed,
                Verdict::Ok,
                format!(
                    "{} refers to {}, which is not here: the kubelet rotates its own client certificate (check it on the node itself)",
                    c.path.display(),
                    c.cert_path.display()
                ),
            );
            return s;
        }
        Material::Missing if c.referenced() => {
            let problem = Problem {
                reason: ProblemReason::NotFound,
                message: format!(
                    "{} refers to {}, which does not exist",
                    c.path.display(),
                    c.cert_path.display()
                ),
            };
            raise_problem(&mut s, true, &problem);
            return s;
        }
        Material::Missing => {
            let reason = match c.spec.presence {
                Presence::InitNodeOnly => format!(
                    "{} is missing ({}): normal except on the node where kubeadm init ran",
                    s.name, s.path
                ),
                Presence::Required if optional => {
                    format!("{} is missing ({}): {}", s.name, s.path, etcd_note(etcd))
                }
                Presence::Required => format!("{} is missing ({})", s.name, s.path),
            };
            let normal = optional || c.spec.presence == Presence::InitNodeOnly;
            raise_missing(&mut s, reason, normal);
            return s;
        }
        Material::Unreadable(p) => {
            raise_problem(&mut s, true, p);
            return s;
        }
        Material::Invalid(p) => {
            raise_problem(&mut s, false, p);
            return s;
        }
    };
    judge_expiry(&mut s, cert, opts);
    if let Some(labels) = s.labels.as_mut() {
        labels.kubeconfig_user = c.kubeconfig.as_ref().map(|k| k.user.clone());
    }
    if let Some(ca_cert) = ca.and_then(|ca| ca.cert.found()) {
        match verify_signed_by(cert, ca_cert) {
            Ok(()) => s.chains_to_ca = Some(true),
            Err(e) => {
                s.chains_to_ca = Some(false);
                raise(
                    &mut s,
                    CertState::Critical,
                    Verdict::Critical,
                    format!(
                        "{} is not signed by {}: {e} ({})",
                        name,
                        c.spec.ca.name(),
                        path
                    ),
                );
            }
        }
    }
    match &c.key {
        Material::Found(key) => {
            let ok = key_matches(cert, key);
            s.key_matches = Some(ok);
            if !ok {
                let key_where = c
                    .key_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| format!("client-key-data in {}", c.path.display()));
                raise(
                    &mut s,
                    CertState::Critical,
                    Verdict::Critical,
                    format!(
                        "{}: the key {key_where} does not match the certificate",
                        name
                    ),
                );
            }
        }
        Material::Missing => raise(
            &mut s,
            CertState::Warning,
            Verdict::Warning,
            match &c.key_path {
                Some(p) => format!("{}: its key {} is missing", name, p.display()),
                None => format!(
                    "{}: {} has no client key for its certificate",
                    name,
                    c.path.display()
                ),
            },
        ),
        Material::Unreadable(p) => raise_problem(&mut s, true, p),
        Material::Invalid(p) => raise_problem(&mut s, false, p),
    }
    s
}

fn sa_status(sa: &ServiceAccountEntry) -> KeyPairStatus {
    let mut st = KeyPairStatus {
        name: "sa".to_string(),
        key_path: sa.key_path.display().to_string(),
        public_key_path: sa.pub_path.display().to_string(),
        key_algorithm: None,
        missing: false,
        key_matches: None,
        status: CertState::Ok,
        severity: Verdict::Ok,
        reasons: Vec::new(),
        problems: Vec::new(),
    };
    let set = |st: &mut KeyPairStatus, state: CertState, severity: Verdict, reason: String| {
        st.reasons.push(reason);
        if severity > st.severity || (severity == st.severity && state.rank() > st.status.rank()) {
            st.status = state;
            st.severity = severity;
        }
    };
    let failures = [
        sa.key.unreadable().map(|p| (true, p)),
        sa.key.invalid().map(|p| (false, p)),
        sa.public.unreadable().map(|p| (true, p)),
        sa.public.invalid().map(|p| (false, p)),
    ];
    for (unreadable, p) in failures.into_iter().flatten() {
        st.problems.push(p.reason);
        if unreadable {
            set(
                &mut st,
                CertState::Unreadable,
                Verdict::Warning,
                format!("{} (not checked)", p.message),
            );
        } else {
            set(
                &mut st,
                CertState::Error,
                Verdict::Critical,
                p.message.clone(),
            );
        }
    }
    if !st.problems.is_empty() {
        return st;
    }
    match (&sa.key, &sa.public) {
        (Material::Found(key), Material::Found(public)) => {
            st.key_algorithm = Some(key.algorithm());
            let ok = key_matches_public(public, key);
            st.key_matches = Some(ok);
            if !ok {
                let reason = format!(
                    "the service-account key {} does not match {}",
                    st.key_path, st.public_key_path
                );
                set(&mut st, CertState::Critical, Verdict::Critical, reason);
            }
        }
        (Material::Missing, Material::Missing) => {
            st.missing = true;
            let reason = format!(
                "the service-account key pair is missing ({}, {})",
                st.key_path, st.public_key_path
            );
            set(&mut st, CertState::Missing, Verdict::Warning, reason);
        }
        (Material::Missing, _) => {
            let reason = format!("the service-account key {} is missing", st.key_path);
            set(&mut st, CertState::Missing, Verdict::Warning, reason);
        }
        _ => {
            let reason = format!(
                "the service-account public key {} is missing",
                st.public_key_path
            );
            set(&mut st, CertState::Missing, Verdict::Warning, reason);
        }
    }
    st
}

/// A date as kubeadm prints it: `Dec 25, 2020 04:06 UTC` (Go layout `Jan 02, 2006 15:04 MST`, in UTC).
pub fn kubeadm_date(t: DateTime<Utc>) -> String {
    t.format("%b %d, %Y %H:%M UTC").to_string()
}

/// A residual time as kubeadm prints it (apimachinery's `ShortHumanDuration`): `<invalid>` below -1s,
/// `0s`, seconds below a minute, minutes below an hour, hours below a day, days below a year
/// (365 days), else whole years.
pub fn short_human_duration(seconds: i64) -> String {
    if seconds < -1 {
        "<invalid>".to_string()
    } else if seconds < 0 {
        "0s".to_string()
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m", seconds / 60)
    } else if seconds < 86_400 {
        format!("{}h", seconds / 3600)
    } else if seconds / 3600 < 24 * 365 {
        format!("{}d", seconds / 86_400)
    } else {
        format!("{}y", seconds / (86_400 * 365))
    }
}

#[cfg(test)]
mod tests;
