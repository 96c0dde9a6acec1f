//! The `--webhook URL` alert output: one JSON POST per certificate or CA whose row is not OK (at or
//! past the warning threshold, not signed by its CA, a key that does not match, a file that is missing,
//! unreadable or broken), over HTTP/1.1 (hyper), plain or with TLS (rustls with aws-lc-rs and the
//! system's trust store) for `https://`; the URL parsed by the url crate.
//!
//! The body carries public facts only (name, path, subject, dates, status, reasons) and a `text` line
//! so Slack- and Mattermost-style receivers show it as is. Webhook URLs often embed a token in their
//! path, so errors name only the scheme, host and port. This module never prints.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde::Serialize;
use tokio::net::TcpStream;

use super::check::{kubeadm_date, short_human_duration, CertState, CertStatus, CheckReport};
use super::error::CertsError;
use crate::etcd::Verdict;
use crate::http1::HttpFailure;

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
    /// Parses `http[s]://host[:port][/path][?query]` (the url crate's WHATWG rules). User info in
    /// the URL is refused.
    pub fn parse(url: &str) -> Result<Self, CertsError> {
        let bad = |reason: &str| CertsError::Webhook {
            url: redact(url),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&format!("invalid URL: {e}")))?;
        let https = match parsed.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the URL must start with http:// or https://")),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("user information in the URL is not supported"));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => return Err(bad("no host")),
        };
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| bad("invalid port"))?;
        let path = parsed[url::Position::BeforePath..url::Position::AfterQuery].to_string();
        Ok(Self {
            https,
            host,
            port,
            path,
        })
    }

    fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.origin_host(), self.port)
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
        let request = self.request(body)?;
        let status = if self.https {
            let connector = tls_connector().map_err(|r| self.error(r))?;
            let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                .map_err(|_| self.error("invalid TLS server name".to_string()))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| self.error(format!("TLS handshake failed: {e}")))?;
            crate::http1::exchange(tls, request).await
        } else {
            crate::http1::exchange(tcp, request).await
        };
        let status = status.map_err(|f| match f {
            HttpFailure::NoAnswer(e) => self.error(format!("no answer: {e}")),
            HttpFailure::NotHttp => self.error("the answer is not HTTP".to_string()),
        })?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.error(format!("answered HTTP {}", status.as_u16())))
        }
    }

    /// The POST: JSON body, `Host` as the URL gives it (the port only when not the default).
    fn request(&self, body: &[u8]) -> Result<Request<Full<Bytes>>, CertsError> {
        let default_port = if self.https { 443 } else { 80 };
        let host = if self.port == default_port {
            self.origin_host()
        } else {
            format!("{}:{}", self.origin_host(), self.port)
        };
        Request::post(self.path.as_str())
            .header(hyper::header::HOST, host)
            .header(
                hyper::header::USER_AGENT,
                format!("cpkeep/{}", crate::VERSION),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::CONNECTION, "close")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| self.error(format!("cannot build the request: {e}")))
    }

    fn origin_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
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

/// `scheme://host[:port]` of a URL, without user info, path or query (where tokens live).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
