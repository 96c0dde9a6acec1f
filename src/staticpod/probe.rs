//! The liveness probe of a static pod, as the kubelet runs it: a GET of `livenessProbe.httpGet`'s
//! path over HTTP or HTTPS, healthy on 2xx or 3xx. Like the kubelet's, the HTTPS probe does not
//! verify the server certificate (and presents none); it returns the leaf certificate presented, so
//! a caller can tell whether a renewed certificate is served.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Request};
use serde::Serialize;
use tokio_rustls::rustls;

use super::manifest::Container;
use crate::certs::error::io_reason;
use crate::http1::{exchange, HttpFailure};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scheme {
    Http,
    Https,
}

/// A health endpoint, as a `livenessProbe.httpGet` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// `httpHeaders`, sent as the kubelet sends them: a `Host` header replaces the `host:port` one,
    /// a `User-Agent` or `Accept` header replaces cpkeep's (an empty `Accept` removes it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// One of a probe's `httpHeaders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

impl Probe {
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.address(), self.path)
    }

    /// `host:port`, with an IPv6 host in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl Probe {
    /// The container's `livenessProbe.httpGet` as the kubelet reads it (a named port looked up in
    /// the container's ports, the pod's address as loopback for a host-network static pod), or
    /// `None` when it has no HTTP liveness probe. `who` names the container in errors.
    pub fn from_container(c: &Container, who: &str) -> Result<Option<Probe>, String> {
        let Some(http) = &c.liveness_http_get else {
            return Ok(None);
        };
        let port = http.port.as_deref().and_then(|p| match p.parse::<u16>() {
            Ok(n) => Some(n),
            // A named port: the container's ports list says which number.
            Err(_) => c
                .ports
                .iter()
                .find(|cp| cp.name.as_deref() == Some(p))
                .and_then(|cp| cp.container_port),
        });
        let Some(port) = port else {
            return Err(format!(
                "the {who} container's livenessProbe.httpGet.port is not a port number or a named container port"
            ));
        };
        let scheme = match http
            .scheme
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("HTTP") => Scheme::Http,
            Some("HTTPS") => Scheme::Https,
            Some(other) => {
                return Err(format!(
                    "the {who} container's livenessProbe scheme {other:?} is neither HTTP nor HTTPS"
                ))
            }
        };
        let path = http.path.as_deref().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let headers = http
            .http_headers
            .as_ref()
            .map_err(|e| format!("the {who} container's livenessProbe.httpGet.{e}"))?;
        let mut http_headers = Vec::new();
        for (name, value) in headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!(
                    "the {who} container's livenessProbe header name {name:?} is not an HTTP header name"
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!(
                    "the {who} container's livenessProbe header {name} has a line break in its value"
                ));
            }
            http_headers.push(HttpHeader {
                name: name.clone(),
                value: value.clone(),
            });
        }
        Ok(Some(Probe {
            scheme,
            // The kubelet probes the pod IP when no host is given: the node's own address for a
            // host-network static pod, which loopback reaches too.
            host: http.host.clone().unwrap_or_else(|| "127.0.0.1".to_string()),
            port,
            path,
            http_headers,
        }))
    }
}

/// An RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A healthy answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `HTTP 200`.
    pub summary: String,
    /// The leaf certificate an HTTPS endpoint presented (DER).
    pub certificate: Option<Vec<u8>>,
}

/// Probes once, as the kubelet does: a GET of the probe's path over HTTP or HTTPS (the server
/// certificate is not verified), healthy when the answer is 2xx or 3xx.
pub async fn probe(p: &Probe, within: Duration) -> Result<Answer, String> {
    match tokio::time::timeout(within, probe_inner(p)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(within)
        )),
    }
}

async fn probe_inner(p: &Probe) -> Result<Answer, String> {
    let request = request(p)?;
    let stream = tokio::net::TcpStream::connect(p.address())
        .await
        .map_err(|e| io_reason(&e))?;
    let (status, certificate) = match p.scheme {
        Scheme::Http => (exchange(stream, request).await, None),
        Scheme::Https => {
            let host = p.host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| format!("{host:?} is not a TLS server name"))?;
            let tls = tokio_rustls::TlsConnector::from(kubelet_tls_config()?)
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake failed: {}", io_reason(&e)))?;
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(<[_]>::first)
                .map(|c| c.as_ref().to_vec());
            (exchange(tls, request).await, certificate)
        }
    };
    let status = status.map_err(|f| match f {
        HttpFailure::NoAnswer(e) => format!("no answer: {e}"),
        HttpFailure::NotHttp => "not an HTTP answer".to_string(),
    })?;
    let code = status.as_u16();
    if status.is_success() || status.is_redirection() {
        Ok(Answer {
            summary: format!("HTTP {code}"),
            certificate,
        })
    } else {
        Err(format!("HTTP {code}"))
    }
}

/// The GET the kubelet sends: its Host, User-Agent and Accept headers unless `httpHeaders` replace
/// them (an empty `Accept` removes it), then the other `httpHeaders`; one request per connection.
/// The path is percent-encoded as a URL path (spaces, controls, non-ASCII).
fn request(p: &Probe) -> Result<Request<Full<Bytes>>, String> {
    let scheme = match p.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    // The path set as a path (never joined: `//x` must not become a host).
    let mut url = url::Url::parse(&format!("{scheme}://{}/", p.address()))
        .map_err(|e| format!("{} is not a host and port: {e}", p.address()))?;
    let (path, query) = match p.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (p.path.as_str(), None),
    };
    url.set_path(path);
    url.set_query(query);
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let given = |name: &str| {
        p.http_headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    };
    let host = given("host").map_or_else(|| p.address(), |h| h.value.clone());
    let mut request = Request::get(target).header(header::HOST, host);
    if given("user-agent").is_none() {
        request = request.header(header::USER_AGENT, format!("cpkeep/{}", crate::VERSION));
    }
    if given("accept").is_none() {
        request = request.header(header::ACCEPT, "*/*");
    }
    for h in &p.http_headers {
        let skip = ["host", "connection", "content-length", "transfer-encoding"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
            || (h.name.eq_ignore_ascii_case("accept") && h.value.is_empty());
        if !skip {
            request = request.header(h.name.as_str(), h.value.as_str());
        }
    }
    request
        .header(header::CONNECTION, "close")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("cannot build the request: {e}"))
}

/// TLS as the kubelet's HTTPS probe uses it: no client certificate, no verification of the server
/// certificate.
fn kubelet_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    crate::tls_peek::config(None, None)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::staticpod::PodManifest;

    #[tokio::test]
    async fn http_probe_judges_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let p = Probe {
            scheme: Scheme::Http,
            host: "127.0.0.1".into(),
            port,
            path: "/health".into(),
            http_headers: Vec::new(),
        };
        let ok = probe(&p, Duration::from_secs(3)).await.unwrap();
        assert_eq!(ok.summary, "HTTP 200");
        assert_eq!(
            probe(&p, Duration::from_secs(3)).await.unwrap_err(),
            "HTTP 503"
        );
    }

    /// An HTTPS server with a self-signed certificate that answers 200 to `GET /livez` carrying
    /// `X-Probe: yes`, 500 to anything else; it hands each request head to `heads`.
    async fn https_server(heads: tokio::sync::mpsc::UnboundedSender<String>) -> (u16, Vec<u8>) {
        use rustls_pki_types::pem::PemObject;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["not-this-host.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
                .unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let ok = head.starts_with("GET /livez HTTP/1.1\r\n")
                    && head.contains("\r\nX-Probe: yes\r\n");
                let _ = heads.send(head);
                let status = if ok {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").as_bytes())
                    .await
                    .unwrap();
                let _ = s.shutdown().await;
            }
        });
        (port, der)
    }

    #[tokio::test]
    async fn https_probe_gets_the_path_without_verifying_the_certificate() {
        let (tx, mut heads) = tokio::sync::mpsc::unbounded_channel();
        let (port, der) = https_server(tx).await;
        let mut p = Probe {
            scheme: Scheme::Https,
            host: "127.0.0.1".into(),
            port,
            path: "/livez".into(),
            http_headers: vec![
                HttpHeader {
                    name: "X-Probe".into(),
                    value: "yes".into(),
                },
                HttpHeader {
                    name: "Host".into(),
                    value: "kubernetes".into(),
                },
            ],
        };
        let ok = probe(&p, Duration::from_secs(5)).await.unwrap();
        assert_eq!(ok.summary, "HTTP 200");
        assert_eq!(ok.certificate, Some(der));
        let head = heads.recv().await.unwrap();
        assert!(head.contains("\r\nHost: kubernetes\r\n"), "{head}");
        assert!(head.contains("\r\nAccept: */*\r\n"), "{head}");
        // The TLS handshake alone is not health: another path answers 500.
        p.path = "/healthz".into();
        assert_eq!(
            probe(&p, Duration::from_secs(5)).await.unwrap_err(),
            "HTTP 500"
        );
        assert!(heads.recv().await.unwrap().starts_with("GET /healthz "));
        p.path = "/livez".into();
        p.http_headers.clear();
        assert_eq!(
            probe(&p, Duration::from_secs(5)).await.unwrap_err(),
            "HTTP 500"
        );
        let head = heads.recv().await.unwrap();
        assert!(
            head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        // Plain HTTP to a TLS port is not an HTTP answer.
        p.scheme = Scheme::Http;
        assert!(probe(&p, Duration::from_secs(5)).await.is_err());
    }

    #[test]
    fn http_headers_from_manifests() {
        let m = "spec:\n  containers:\n  - name: kube-apiserver\n    livenessProbe:\n      httpGet:\n        path: /livez?verbose\n        port: 6443\n        scheme: HTTPS\n        httpHeaders:\n        - name: Accept\n          value: \"\"\n        - name: X-N\n          value: 1\n";
        let pod = PodManifest::parse(Path::new("/m/kube-apiserver.yaml"), m).unwrap();
        let p = Probe::from_container(&pod.containers[0], "kube-apiserver")
            .unwrap()
            .unwrap();
        assert_eq!(p.http_headers.len(), 2);
        let r = request(&p).unwrap();
        assert_eq!(r.uri(), "/livez?verbose");
        assert_eq!(r.headers()["host"], "127.0.0.1:6443");
        assert!(!r.headers().contains_key("accept"), "{r:?}");
        assert_eq!(r.headers()["x-n"], "1");
        assert_eq!(r.headers()["connection"], "close");
        let bad = m.replace("name: X-N", "name: \"X N\"");
        let pod = PodManifest::parse(Path::new("/m/kube-apiserver.yaml"), &bad).unwrap();
        assert!(Probe::from_container(&pod.containers[0], "kube-apiserver")
            .unwrap_err()
            .contains("header name"));
        let mut p = p;
        p.path = "/a b\u{e9}".into();
        assert_eq!(request(&p).unwrap().uri(), "/a%20b%C3%A9");
    }
}
