//! The `--webhook URL` alert output: one JSON POST per certificate or CA whose row is not OK (at or
//! past the warning threshold, not signed by its CA, a key that does not match, a file that is missing,
//! unreadable or broken), over plain HTTP/1.1 on a tokio socket, or TLS (rustls with aws-lc-rs
//! and the system's trust store) for `https://`.
//!
//! The body carries public facts only (name, path, subject, dates, status, reasons) and a `text` line
//! so Slack- and Mattermost-style receivers show it as is. Webhook URLs often embed a token in their
//! path, so errors name only the scheme, host and port. This module never prints.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::check::{kubeadm_date, short_human_duration, CertState, CertStatus, CheckReport};
use super::error::CertsError;
use crate::etcd::Verdict;

/// The JSON body posted for one certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// Always `cpkeep`.
    pub source: &'static str,
    /// The node the check ran on (its hostname).
    pub node: String,
    /// kubeadm's name of the certificate (`apiserver`, `admin.conf`, `etcd-ca`).
    pub name: String,
    /// The row's status: WARNING, CRITICAL, EXPIRED, MISSING, UNREADABLE or ERROR.
    pub status: CertState,
    /// The verdict this certificate contributes: WARNING or CRITICAL.
    pub severity: Verdict,
    pub path: String,
    pub subject: Option<String>,
    pub ca_name: Option<String>,
    pub expiration_date: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds until expiry (negative once expired).
    pub residual_time: i64,
    pub reasons: Vec<String>,
    /// One human line: `cpkeep on master1: apiserver EXPIRED, expires Dec 25, 2020 04:06 UTC (<invalid>)`.
    pub text: String,
}

/// The alerts of a report: every certificate and CA whose row is not OK.
pub fn alerts(report: &CheckReport, node: &str) -> Vec<WebhookAlert> {
    report
        .all()
        .filter(|s| s.severity != Verdict::Ok)
        .map(|s| alert(s, node))
        .collect()
}

fn alert(s: &CertStatus, node: &str) -> WebhookAlert {
    let severity = s.severity;
    let when = s
        .expiration_date
        .map(|d| {
            format!(
                ", expires {} ({})",
                kubeadm_date(d),
                short_human_duration(s.residual_time)
            )
        })
        .unwrap_or_default();
    WebhookAlert {
        source: "cpkeep",
        node: node.to_string(),
        name: s.name.clone(),
        status: s.status,
        severity,
        path: s.path.clone(),
        subject: s.subject.clone(),
        ca_name: s.ca_name.clone(),
        expiration_date: s.expiration_date,
        residual_time: s.residual_time,
        reasons: s.reasons.clone(),
        text: format!(
            "cpkeep on {node}: {} {}{when}: {}",
            s.name,
            s.status.as_str(),
            s.reasons.join("; ")
        ),
    }
}

/// This machine's hostname (for [`WebhookAlert::node`]); `unknown` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Posts each alert to `url`, in order, stopping at the first failure. Returns how many were posted.
pub async fn post_alerts(
    url: &str,
    alerts: &[WebhookAlert],
    timeout: Duration,
) -> Result<usize, CertsError> {
    let target = Target::parse(url)?;
    for a in alerts {
        let body =
            serde_json::to_vec(a).map_err(|e| target.error(format!("cannot encode: {e}")))?;
        target.post(&body, timeout).await?;
    }
    Ok(alerts.len())
}

/// Where to post: a parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses `http[s]://host[:port][/path][?query]`. User info in the URL is refused.
    pub fn parse(url: &str) -> Result<Self, CertsError> {
        let bad = |reason: &str| CertsError::Webhook {
            url: redact(url),
            reason: reason.to_string(),
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("the URL must start with http:// or https://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| bad("unterminated [IPv6] host"))?;
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad("invalid port"))?,
            };
            (v6[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("invalid port"))?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            https,
            host,
            port,
            path,
        })
    }

    fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    fn error(&self, reason: String) -> CertsError {
        CertsError::Webhook {
            url: self.origin(),
            reason,
        }
    }

    /// One POST; any 2xx answer is success.
    pub async fn post(&self, body: &[u8], timeout: Duration) -> Result<(), CertsError> {
        match tokio::time::timeout(timeout, self.post_inner(body)).await {
            Ok(r) => r,
            Err(_) => Err(self.error(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }

    async fn post_inner(&self, body: &[u8]) -> Result<(), CertsError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.error(format!("cannot connect: {}", super::error::io_reason(&e))))?;
        let status = if self.https {
            let connector = tls_connector().map_err(|r| self.error(r))?;
            let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                .map_err(|_| self.error("invalid TLS server name".to_string()))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| self.error(format!("TLS handshake failed: {e}")))?;
            self.exchange(tls, body).await?
        } else {
            self.exchange(tcp, body).await?
        };
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(self.error(format!("answered HTTP {status}")))
        }
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        body: &[u8],
    ) -> Result<u16, CertsError> {
        let host = if (self.https && self.port == 443) || (!self.https && self.port == 80) {
            self.origin_host()
        } else {
            format!("{}:{}", self.origin_host(), self.port)
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cpkeep/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            crate::VERSION,
            body.len()
        );
        match http_exchange(&mut stream, &head, body).await {
            Ok(code) => Ok(code),
            Err(HttpFailure::Send(e)) => {
                Err(self.error(format!("send failed: {}", super::error::io_reason(&e))))
            }
            Err(HttpFailure::Receive(e)) => {
                Err(self.error(format!("no answer: {}", super::error::io_reason(&e))))
            }
            Err(HttpFailure::NotHttp) => Err(self.error("the answer is not HTTP".to_string())),
        }
    }

    fn origin_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

/// How an [`http_exchange`] failed.
#[derive(Debug)]
pub(super) enum HttpFailure {
    /// Writing the request failed.
    Send(std::io::Error),
    /// Reading the answer failed.
    Receive(std::io::Error),
    /// The answer does not start with an HTTP status line.
    NotHttp,
}

/// One HTTP/1.1 exchange on a connected (plain or TLS) stream: writes `head` (request line and
/// headers, each ending in CRLF, then the blank line) and `body`, and reads the answer only up to
/// its status line (bounded at 8 KiB). Returns the status code. Shared by the webhook and the
/// `--restart` health probes.
pub(super) async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &str,
    body: &[u8],
) -> Result<u16, HttpFailure> {
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(HttpFailure::Send)?;
    stream.write_all(body).await.map_err(HttpFailure::Send)?;
    stream.flush().await.map_err(HttpFailure::Send)?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 8192 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(HttpFailure::Receive)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(HttpFailure::NotHttp),
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(
            "no trusted CA certificates found on this system (install ca-certificates)".into(),
        );
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `scheme://host[:port]` of a URL, without path or query (where tokens live).
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    if scheme.is_empty() {
        "(invalid URL)".to_string()
    } else {
        format!("{scheme}://{authority}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://127.0.0.1:8080/hooks/T0K3N?x=1").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path.as_str()),
            (false, "127.0.0.1", 8080, "/hooks/T0K3N?x=1")
        );
        let t = Target::parse("https://hooks.example.com").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        let t = Target::parse("http://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
    }

    #[test]
    fn errors_never_show_the_path_token() {
        let e = Target::parse("ftp://h/T0K3N").unwrap_err().to_string();
        assert!(!e.contains("T0K3N"), "{e}");
        let e = Target::parse("http://u:p@h/T0K3N").unwrap_err().to_string();
        assert!(!e.contains("T0K3N") && !e.contains("u:p"), "{e}");
    }

    #[tokio::test]
    async fn posts_json_and_reports_http_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            for code in [204, 500] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut req = Vec::new();
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            got.push(text);
                            break;
                        }
                    }
                }
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            got
        });
        let t = Target::parse(&format!("http://127.0.0.1:{port}/hook/SECRET")).unwrap();
        t.post(b"{\"a\":1}", Duration::from_secs(5)).await.unwrap();
        let e = t
            .post(b"{\"a\":2}", Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("answered HTTP 500") && !e.contains("SECRET"),
            "{e}"
        );
        let got = server.await.unwrap();
        assert!(
            got[0].starts_with("POST /hook/SECRET HTTP/1.1\r\n"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("Content-Type: application/json"));
        assert!(got[0].ends_with("{\"a\":1}"));
    }
}
