//! The certificates members really serve: one TLS handshake to each healthy member's client URL
//! (and peer URL, where reachable) reads the certificate presented, which is judged with the same
//! expiry rules as `certs check` (`certs::check::judge_certificate`), and compared with the
//! certificate on disk when this host's kubeadm PKI holds the member's own (`etcd/server.crt` and
//! `etcd/peer.crt` whose subject CN is the member's name, as kubeadm issues them).
//!
//! A served certificate that differs from the one on disk means the member does not serve the file
//! that was renewed (its `--cert-file` names another, or it has not picked the renewal up: etcd
//! re-reads its certificate files at every new connection, so this is rare, and a restart settles
//! it). The handshake presents the connection's client certificate (members demand one and log a
//! refused handshake otherwise) and sends nothing: it only looks. This module never prints.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::Serialize;

use super::findings::label;
use super::report::{Check, Finding, MemberHealth, Verdict};
use super::TlsMaterial;
use crate::certs::check::{judge_certificate, CertState};
use crate::certs::pem::{parse_certificate_der, parse_certificate_pem, CertInfo};
use crate::tls_peek;

/// One certificate a member serves, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct ServedCert {
    pub member: String,
    /// `client` (the client URL's serving certificate) or `peer`.
    pub kind: &'static str,
    pub url: String,
    pub subject: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<DateTime<Utc>>,
    /// Seconds until NotAfter (negative once expired).
    pub residual_seconds: Option<i64>,
    /// The state `certs check` would give it (OK, WARNING, CRITICAL, EXPIRED).
    pub status: Option<CertState>,
    /// The file on this host holding the member's certificate, when there is one.
    pub disk_path: Option<String>,
    /// Whether the served certificate is that file's (null without a file).
    pub matches_disk: Option<bool>,
    pub error: Option<String>,
}

/// One URL to look at: the member, `client` or `peer`, the URL, and the member's own certificate on
/// this host's disk, if there is one.
type Target<'a> = (
    &'a MemberHealth,
    &'static str,
    String,
    Option<&'a (PathBuf, CertInfo)>,
);

/// How served certificates are judged.
#[derive(Debug, Clone)]
pub struct ServedCertOptions {
    pub warn: chrono::Duration,
    pub critical: chrono::Duration,
    pub now: DateTime<Utc>,
    /// kubeadm's certificatesDir on this host (`etcd/server.crt`, `etcd/peer.crt` under it).
    pub pki_dir: Option<PathBuf>,
    /// Bound on each handshake.
    pub timeout: Duration,
}

/// Reads and judges the certificates every healthy member serves on its https client and peer URLs.
pub async fn check_served_certs(
    members: &[MemberHealth],
    opts: &ServedCertOptions,
    client: Option<&TlsMaterial>,
) -> (Vec<ServedCert>, Vec<Finding>) {
    // The connection's client certificate, when there is one: members demand one (kubeadm's
    // --client-cert-auth) and log every handshake that comes without.
    let identity = client.and_then(TlsMaterial::client_identity);
    let disk = |file: &str| -> Option<(PathBuf, CertInfo)> {
        let path = opts.pki_dir.as_ref()?.join("etcd").join(file);
        let pem = std::fs::read(&path).ok()?;
        Some((path, parse_certificate_pem(&pem).ok()?))
    };
    let (disk_server, disk_peer) = (disk("server.crt"), disk("peer.crt"));
    let mut targets: Vec<Target> = Vec::new();
    for m in members.iter().filter(|m| m.healthy) {
        let https = |urls: &[String]| urls.iter().find(|u| u.starts_with("https://")).cloned();
        if let Some(u) = m
            .endpoint
            .clone()
            .filter(|u| u.starts_with("https://"))
            .or_else(|| https(&m.client_urls))
        {
            targets.push((
                m,
                "client",
                u,
                disk_server.as_ref().filter(|(_, c)| is_members(c, m)),
            ));
        }
        if let Some(u) = https(&m.peer_urls) {
            targets.push((
                m,
                "peer",
                u,
                disk_peer.as_ref().filter(|(_, c)| is_members(c, m)),
            ));
        }
    }
    let seen = join_all(targets.iter().map(|(_, _, url, _)| {
        served_certificate(
            url,
            opts.timeout,
            identity.as_ref().map(|(c, k)| (c.clone(), k.clone_key())),
        )
    }))
    .await;
    let mut certs = Vec::new();
    let mut findings = Vec::new();
    for ((m, kind, url, on_disk), served) in targets.into_iter().zip(seen) {
        let who = label(m);
        let mut row = ServedCert {
            member: who.clone(),
            kind,
            url: url.clone(),
            subject: None,
            serial: None,
            not_after: None,
            residual_seconds: None,
            status: None,
            disk_path: on_disk.map(|(p, _)| p.display().to_string()),
            matches_disk: None,
            error: None,
        };
        let cert = match served.and_then(|der| {
            parse_certificate_der(&der)
                .map_err(|e| format!("the certificate served is unreadable: {e}"))
        }) {
            Ok(c) => c,
            Err(e) => {
                // A peer URL often listens only on the node's own network: not being able to reach
                // it from here says nothing about the member.
                let severity = if kind == "peer" {
                    Verdict::Ok
                } else {
                    Verdict::Warning
                };
                findings.push(Finding::of(
                    Check::ServedCerts,
                    severity,
                    Some(&who),
                    format!("the {kind} certificate member {who} serves on {url} could not be read: {e}"),
                ));
                row.error = Some(e);
                certs.push(row);
                continue;
            }
        };
        let judged = judge_certificate(
            &format!("the {kind} certificate served by member {who}"),
            &url,
            &cert,
            opts.warn,
            opts.critical,
            opts.now,
        );
        for (severity, reason) in judged.reason_severities.iter().zip(&judged.reasons) {
            findings.push(Finding::of(
                Check::ServedCerts,
                *severity,
                Some(&who),
                reason.clone(),
            ));
        }
        if let Some((path, file)) = on_disk {
            let same = file.der == cert.der;
            row.matches_disk = Some(same);
            if !same {
                findings.push(Finding::of(
                    Check::ServedCerts,
                    Verdict::Warning,
                    Some(&who),
                    format!(
                        "member {who} serves a {kind} certificate (serial {}, expires {}) that is not the one in {} (serial {}, expires {}): \
                         it reads another file (its --cert-file / --peer-cert-file), or has not picked up a renewal; \
                         etcd re-reads its certificate files at every new connection, so a restart of its static pod settles it",
                        cert.serial_hex,
                        cert.not_after.format("%Y-%m-%d"),
                        path.display(),
                        file.serial_hex,
                        file.not_after.format("%Y-%m-%d")
                    ),
                ));
            }
        }
        row.subject = Some(cert.subject.clone());
        row.serial = Some(cert.serial_hex.clone());
        row.not_after = Some(cert.not_after);
        row.residual_seconds = Some(judged.residual_time);
        row.status = Some(judged.status);
        certs.push(row);
    }
    (certs, findings)
}

/// Whether a certificate on disk is this member's: kubeadm names etcd's serving and peer
/// certificates after the node, and the member after the node too.
fn is_members(cert: &CertInfo, m: &MemberHealth) -> bool {
    !m.name.is_empty() && cert.subject_cn.as_deref() == Some(m.name.as_str())
}

/// The end-entity certificate (DER) the server at `url` presents.
async fn served_certificate(
    url: &str,
    timeout: Duration,
    identity: Option<tls_peek::Identity>,
) -> Result<Vec<u8>, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let seen: tls_peek::Seen = Default::default();
    let config = tls_peek::config(Some(seen.clone()), identity)?;
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|_| format!("{host:?} is not a TLS server name"))?;
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| crate::certs::error::io_reason(&e))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "TLS handshake failed: {}",
                    crate::certs::error::io_reason(&e)
                )
            })
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no TLS handshake within {}",
            humantime::format_duration(timeout)
        )),
    };
    // The certificate counts even when the server then ended the handshake (it asks for a client
    // certificate this check does not present).
    let recorded = seen.lock().ok().and_then(|s| s.clone());
    match (recorded, outcome) {
        (Some(der), _) => Ok(der),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err("the server presented no certificate".to_string()),
    }
}
