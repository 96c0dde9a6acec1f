//! `certs check`: judges every certificate, CA and key pair of an [`Inventory`] against the warning
//! and critical thresholds and returns a [`CheckReport`] shaped like kubeadm's
//! `output.kubeadm.k8s.io/v1alpha3` `CertificateExpirationInfo`, with cpkeep's per-item details and a
//! monitoring verdict (OK, WARNING, CRITICAL, UNKNOWN).
//!
//! This module owns the judgement and kubeadm's presentation rules (date format, residual time). It
//! never prints, never writes, and never puts key material in the report: only public facts
//! (subject, SANs, serial, key algorithm) and yes/no answers about keys.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::error::CertsError;
use super::inventory::{
    discover, CaEntry, CertEntry, Inventory, Material, PkiLayout, Presence, ServiceAccountEntry,
};
use super::pem::CertInfo;
use super::verify::{key_matches, key_matches_public, verify_signed_by};
use crate::etcd::{Finding, Verdict};

/// kubeadm's output API group/version for `check-expiration -o json`.
pub const API_VERSION: &str = "output.kubeadm.k8s.io/v1alpha3";
/// kubeadm's output kind for `check-expiration -o json`.
pub const KIND: &str = "CertificateExpirationInfo";

/// What to check and how strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    pub layout: PkiLayout,
    /// Residual time at or below which a certificate is a WARNING (default 30 days).
    pub warn: Duration,
    /// Residual time at or below which a certificate is CRITICAL (default 7 days).
    pub critical: Duration,
    /// The instant judged against (tests pin it).
    pub now: DateTime<Utc>,
}

impl CheckOptions {
    /// kubeadm's default layout, 30 days warning, 7 days critical, now.
    pub fn new(layout: PkiLayout) -> Self {
        Self {
            layout,
            warn: Duration::days(30),
            critical: Duration::days(7),
            now: Utc::now(),
        }
    }
}

/// The state of one certificate, CA or key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CertState {
    Ok,
    /// Within the warning threshold, not yet valid, or a key is absent.
    Warning,
    /// Within the critical threshold, not signed by its CA, or its key does not match.
    Critical,
    /// Past NotAfter.
    Expired,
    /// The file does not exist.
    Missing,
    /// The file exists but cannot be evaluated (unreadable, not PEM, not YAML).
    Error,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Ok => "OK",
            CertState::Warning => "WARNING",
            CertState::Critical => "CRITICAL",
            CertState::Expired => "EXPIRED",
            CertState::Missing => "MISSING",
            CertState::Error => "ERROR",
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
    /// Why the status is not OK, one sentence each.
    pub reasons: Vec<String>,
    /// Labels for alert outputs (Prometheus); not part of the JSON report.
    #[serde(skip)]
    pub labels: Option<MetricLabels>,
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
    pub reasons: Vec<String>,
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
    /// The worst finding: OK, WARNING, CRITICAL or UNKNOWN.
    pub verdict: Verdict,
    /// One sentence per finding, worst first.
    pub reasons: Vec<String>,
    pub findings: Vec<Finding>,
    pub cert_dir: String,
    pub kubeconfig_dir: String,
    pub checked_at: DateTime<Utc>,
    pub warn_seconds: i64,
    pub critical_seconds: i64,
}

impl CheckReport {
    /// Every row, certificates then CAs.
    pub fn all(&self) -> impl Iterator<Item = &CertStatus> {
        self.certificates
            .iter()
            .chain(&self.certificate_authorities)
    }

    /// The findings that made the verdict UNKNOWN (files that could not be evaluated).
    pub fn unknown_reasons(&self) -> Vec<&str> {
        self.findings
            .iter()
            .filter(|f| f.severity == Verdict::Unknown)
            .map(|f| f.message.as_str())
            .collect()
    }
}

/// Loads the inventory under `opts.layout` and judges it. Fails only when the cert-dir does not exist.
pub fn check(opts: &CheckOptions) -> Result<CheckReport, CertsError> {
    let inv = discover(&opts.layout)?;
    Ok(evaluate(&inv, opts))
}

/// Judges an already loaded inventory.
pub fn evaluate(inv: &Inventory, opts: &CheckOptions) -> CheckReport {
    let mut findings: Vec<Finding> = Vec::new();
    let certificate_authorities: Vec<CertStatus> =
        inv.cas.iter().map(|ca| ca_status(ca, opts)).collect();
    let certificates: Vec<CertStatus> = inv
        .certs
        .iter()
        .map(|c| cert_status(c, inv.ca(c.spec.ca), opts))
        .collect();
    for s in certificates.iter().chain(&certificate_authorities) {
        let severity = severity(s.status, s.name == "super-admin.conf");
        if severity != Verdict::Ok {
            for r in &s.reasons {
                findings.push(Finding {
                    severity,
                    message: r.clone(),
                });
            }
        }
    }
    let service_account = sa_status(&inv.service_account);
    let sa_severity = severity(service_account.status, false);
    if sa_severity != Verdict::Ok {
        for r in &service_account.reasons {
            findings.push(Finding {
                severity: sa_severity,
                message: r.clone(),
            });
        }
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
        cert_dir: inv.layout.cert_dir.display().to_string(),
        kubeconfig_dir: inv.layout.kubeconfig_dir.display().to_string(),
        checked_at: opts.now,
        warn_seconds: opts.warn.num_seconds(),
        critical_seconds: opts.critical.num_seconds(),
    }
}

/// The verdict a state contributes. A missing `super-admin.conf` is normal (it exists only where
/// `kubeadm init` ran).
fn severity(state: CertState, init_node_only: bool) -> Verdict {
    match state {
        CertState::Ok => Verdict::Ok,
        CertState::Missing if init_node_only => Verdict::Ok,
        CertState::Warning | CertState::Missing => Verdict::Warning,
        CertState::Critical | CertState::Expired => Verdict::Critical,
        CertState::Error => Verdict::Unknown,
    }
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
        reasons: Vec::new(),
        labels: None,
    }
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
        raise(
            s,
            CertState::Expired,
            format!(
                "{} expired on {} ({})",
                s.name,
                kubeadm_date(cert.not_after),
                s.path
            ),
        );
    } else if let Some((state, level, at)) = [
        (CertState::Critical, "critical", opts.critical),
        (CertState::Warning, "warning", opts.warn),
    ]
    .into_iter()
    .find(|(_, _, at)| residual <= *at)
    {
        raise(
            s,
            state,
            format!(
                "{} expires in {}, on {} ({level} at {}; {})",
                s.name,
                short_human_duration(residual.num_seconds()),
                kubeadm_date(cert.not_after),
                short_human_duration(at.num_seconds()),
                s.path
            ),
        );
    }
    if cert.not_before > opts.now {
        raise(
            s,
            CertState::Warning,
            format!(
                "{} is not valid before {} (check the clock; {})",
                s.name,
                kubeadm_date(cert.not_before),
                s.path
            ),
        );
    }
}

/// Adds a reason and raises the status to `state` when that is worse. ERROR and MISSING are final.
fn raise(s: &mut CertStatus, state: CertState, reason: String) {
    s.reasons.push(reason);
    if matches!(s.status, CertState::Error | CertState::Missing) {
        return;
    }
    if rank(state) > rank(s.status) {
        s.status = state;
    }
}

fn rank(s: CertState) -> u8 {
    match s {
        CertState::Ok => 0,
        CertState::Warning => 1,
        CertState::Missing => 2,
        CertState::Critical => 3,
        CertState::Expired => 4,
        CertState::Error => 5,
    }
}

fn ca_status(ca: &CaEntry, opts: &CheckOptions) -> CertStatus {
    let mut s = blank(ca.id.name(), &ca.cert_path, None, false);
    let name = s.name.clone();
    s.key_path = Some(ca.key_path.display().to_string());
    s.externally_managed = ca.externally_managed();
    let cert = match &ca.cert {
        Material::Found(c) => c,
        Material::Missing => {
            s.missing = true;
            s.status = CertState::Missing;
            s.reasons
                .push(format!("{} is missing ({})", s.name, s.path));
            return s;
        }
        Material::Invalid(reason) => {
            s.status = CertState::Error;
            s.reasons.push(reason.clone());
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
                    format!(
                        "{}: the CA key {} does not match the CA certificate {}",
                        name,
                        ca.key_path.display(),
                        ca.cert_path.display()
                    ),
                );
            }
        }
        Material::Missing => {}
        Material::Invalid(reason) => {
            s.status = CertState::Error;
            s.reasons.push(reason.clone());
        }
    }
    s
}

fn cert_status(c: &CertEntry, ca: Option<&CaEntry>, opts: &CheckOptions) -> CertStatus {
    let mut s = blank(
        c.spec.name,
        &c.cert_path,
        Some(c.spec.ca.name()),
        c.spec.renewable,
    );
    let (name, path) = (s.name.clone(), s.path.clone());
    if c.kubeconfig.is_some() || c.path != c.cert_path {
        s.kubeconfig = Some(c.path.display().to_string());
    }
    s.embedded = c.embedded();
    s.key_path = c.key_path.as_ref().map(|p| p.display().to_string());
    s.externally_managed = ca.is_some_and(CaEntry::externally_managed);
    let cert = match &c.cert {
        Material::Found(cert) => cert,
        Material::Missing => {
            s.missing = true;
            s.status = CertState::Missing;
            s.reasons.push(match c.spec.presence {
                Presence::InitNodeOnly => format!(
                    "{} is missing ({}): normal except on the node where kubeadm init ran",
                    s.name, s.path
                ),
                Presence::Required => format!("{} is missing ({})", s.name, s.path),
            });
            return s;
        }
        Material::Invalid(reason) => {
            s.status = CertState::Error;
            s.reasons.push(reason.clone());
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
            match &c.key_path {
                Some(p) => format!("{}: its key {} is missing", name, p.display()),
                None => format!(
                    "{}: {} has no client key for its certificate",
                    name,
                    c.path.display()
                ),
            },
        ),
        Material::Invalid(reason) => {
            s.status = CertState::Error;
            s.reasons.push(reason.clone());
        }
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
        reasons: Vec::new(),
    };
    for reason in [sa.key.invalid(), sa.public.invalid()]
        .into_iter()
        .flatten()
    {
        st.status = CertState::Error;
        st.reasons.push(reason.to_string());
    }
    if st.status == CertState::Error {
        return st;
    }
    match (&sa.key, &sa.public) {
        (Material::Found(key), Material::Found(public)) => {
            st.key_algorithm = Some(key.algorithm());
            let ok = key_matches_public(public, key);
            st.key_matches = Some(ok);
            if !ok {
                st.status = CertState::Critical;
                st.reasons.push(format!(
                    "the service-account key {} does not match {}",
                    st.key_path, st.public_key_path
                ));
            }
        }
        (Material::Missing, Material::Missing) => {
            st.missing = true;
            st.status = CertState::Missing;
            st.reasons.push(format!(
                "the service-account key pair is missing ({}, {})",
                st.key_path, st.public_key_path
            ));
        }
        (Material::Missing, _) => {
            st.status = CertState::Warning;
            st.reasons.push(format!(
                "the service-account key {} is missing",
                st.key_path
            ));
        }
        _ => {
            st.status = CertState::Warning;
            st.reasons.push(format!(
                "the service-account public key {} is missing",
                st.public_key_path
            ));
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
