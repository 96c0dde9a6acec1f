//! `cpkeep certs renew --restart`: restarts the static pods that read the renewed certificates, one
//! at a time, the way kubeadm's documentation says to — by taking the manifest out of the kubelet's
//! manifests directory and putting it back.
//!
//! For each component, in the order etcd, kube-apiserver, kube-controller-manager, kube-scheduler:
//! 1. the manifest is moved beside the manifests directory (`/etc/kubernetes/<file>.cpkeep-renew`,
//!    never inside it: the kubelet runs every file there), so the kubelet stops the pod;
//! 2. a wait until the old pod is gone: its health endpoint no longer accepts connections;
//! 3. the manifest is put back, byte for byte (it is renamed, never rewritten);
//! 4. a wait until the component answers its health endpoint again (`--wait-timeout`), before the
//!    next component is touched.
//!
//! The health endpoint is the container's `livenessProbe.httpGet` (host, port — a number or a named
//! container port —, path, scheme, httpHeaders), as the kubelet would probe it; kubeadm's defaults
//! when the manifest has none. Each probe is a GET of the path, over HTTP or HTTPS, healthy when it
//! answers 2xx or 3xx, as the kubelet judges. Like the kubelet's, the HTTPS probe does not verify
//! the server certificate (and presents none); the leaf certificate the endpoint presents is
//! compared with the renewed one when the component serves a renewed certificate (kube-apiserver,
//! `apiserver.crt`).
//!
//! A component that does not stop, or does not come back in time, ends the run with its manifest
//! back in place and says which components were not restarted. This module never edits a manifest
//! and never prints (progress goes to `tracing`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use saphyr::{LoadableYamlNode, Yaml};
use serde::Serialize;
use tokio::time::Instant;
use tokio_rustls::rustls;

use super::webhook::{http_exchange, HttpFailure};
use crate::fsx;

/// Where kubeadm writes the static pod manifests.
pub const DEFAULT_MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Appended to a manifest's file name while it is parked beside the manifests directory.
pub const PARKED_SUFFIX: &str = ".cpkeep-renew";

/// A control-plane static pod. The order is the restart order: etcd first (the API server needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
}

impl Component {
    /// The static pod's (and its container's) name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
        }
    }

    /// The manifest's file name in the manifests directory.
    pub fn manifest_file(self) -> String {
        format!("{}.yaml", self.name())
    }

    /// The component that reads the certificate kubeadm calls `cert` (`admin.conf` and
    /// `super-admin.conf` are read by people and tools, no static pod).
    pub fn of_cert(cert: &str) -> Option<Self> {
        match cert {
            "apiserver"
            | "apiserver-kubelet-client"
            | "apiserver-etcd-client"
            | "front-proxy-client" => Some(Component::KubeApiserver),
            "etcd-server" | "etcd-peer" | "etcd-healthcheck-client" => Some(Component::Etcd),
            "controller-manager.conf" => Some(Component::KubeControllerManager),
            "scheduler.conf" => Some(Component::KubeScheduler),
            _ => None,
        }
    }

    /// kubeadm's liveness probe for the component, used when the manifest has none.
    fn default_probe(self) -> Probe {
        let (scheme, port, path) = match self {
            Component::Etcd => (Scheme::Http, 2381, "/health"),
            Component::KubeApiserver => (Scheme::Https, 6443, "/livez"),
            Component::KubeControllerManager => (Scheme::Https, 10257, "/healthz"),
            Component::KubeScheduler => (Scheme::Https, 10259, "/healthz"),
        };
        Probe {
            scheme,
            host: "127.0.0.1".to_string(),
            port,
            path: path.to_string(),
            http_headers: Vec::new(),
        }
    }
}

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

/// Where a probe came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeOrigin {
    /// The manifest's `livenessProbe.httpGet`.
    Manifest,
    /// kubeadm's default for the component (the manifest has no HTTP liveness probe).
    Default,
}

/// One component to restart.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartStep {
    pub component: Component,
    pub manifest: PathBuf,
    /// Where the manifest waits while the pod is stopped.
    pub parked: PathBuf,
    pub probe: Probe,
    pub probe_from: ProbeOrigin,
    /// The renewed certificates it reads.
    pub certs: Vec<String>,
}

/// How restarts are carried out.
#[derive(Debug, Clone)]
pub struct RestartOptions {
    pub manifests_dir: PathBuf,
    /// How long a pod may take to stop, and then to become healthy again.
    pub wait_timeout: Duration,
    pub poll_interval: Duration,
    /// Bound on each probe.
    pub probe_timeout: Duration,
}

impl RestartOptions {
    pub fn new(manifests_dir: PathBuf) -> Self {
        Self {
            manifests_dir,
            wait_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(3),
        }
    }
}

/// What one restart did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restarted {
    pub component: Component,
    pub endpoint: String,
    /// Whether the health endpoint answered before the manifest was moved.
    pub was_running: bool,
    /// Seconds until the old pod was gone.
    pub stopped_seconds: f64,
    /// Seconds from putting the manifest back to the first healthy answer.
    pub healthy_seconds: f64,
    /// What the health endpoint answered (`HTTP 200`).
    pub health: String,
    /// For HTTPS endpoints serving a renewed certificate: whether the certificate presented is
    /// the renewed one.
    pub serves_renewed_cert: Option<bool>,
}

/// Why restarts did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// A manifest cannot be used (nothing changed).
    #[error("{}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    /// Something is in the way (nothing changed).
    #[error("{0}")]
    InTheWay(String),
    /// A restart failed; `state` says where the manifest is and what was not restarted.
    #[error("{component}: {what}; {state}")]
    Failed {
        component: &'static str,
        what: String,
        state: String,
    },
}

/// Reads the manifest of every component and the health endpoint in it. Writes nothing.
pub fn plan(
    components: &BTreeMap<Component, Vec<String>>,
    opts: &RestartOptions,
) -> Result<Vec<RestartStep>, RestartError> {
    let mut steps = Vec::new();
    for (&component, certs) in components {
        let manifest = opts.manifests_dir.join(component.manifest_file());
        let bad = |reason: String| RestartError::Manifest {
            path: manifest.clone(),
            reason,
        };
        let parked = parked_path(&manifest).map_err(bad)?;
        if parked.exists() {
            return Err(RestartError::InTheWay(format!(
                "{} exists: an interrupted restart left it; if {} is missing move it back, otherwise remove it, then run again",
                parked.display(),
                manifest.display()
            )));
        }
        let text = std::fs::read_to_string(&manifest).map_err(|e| {
            bad(format!(
                "cannot read the {} manifest: {} (--manifests-dir names the kubelet's static pod directory)",
                component.name(),
                super::error::io_reason(&e)
            ))
        })?;
        let (probe, probe_from) = match probe_from_manifest(&text, component).map_err(bad)? {
            Some(p) => (p, ProbeOrigin::Manifest),
            None => (component.default_probe(), ProbeOrigin::Default),
        };
        steps.push(RestartStep {
            component,
            manifest,
            parked,
            probe,
            probe_from,
            certs: certs.clone(),
        });
    }
    Ok(steps)
}

/// `<manifests dir>/../<file>.cpkeep-renew`: beside the manifests directory, never inside it.
pub fn parked_path(manifest: &Path) -> Result<PathBuf, String> {
    crate::staticpod::parked_path(manifest, PARKED_SUFFIX).ok_or_else(|| {
        "not a file in a manifests directory that has a parent directory to park it in".to_string()
    })
}

/// The `livenessProbe.httpGet` of the component's container, or `None` when it has none.
pub fn probe_from_manifest(text: &str, component: Component) -> Result<Option<Probe>, String> {
    let docs = Yaml::load_from_str(text).map_err(|e| format!("not YAML ({e})"))?;
    let doc = docs
        .iter()
        .map(untag)
        .find(|d| !d.is_null())
        .ok_or_else(|| "the manifest is empty".to_string())?;
    let containers = doc
        .as_mapping_get("spec")
        .map(untag)
        .and_then(|s| s.as_mapping_get("containers"))
        .map(untag)
        .and_then(|c| c.as_sequence())
        .ok_or_else(|| "not a static pod manifest: no spec.containers list".to_string())?;
    let container = containers
        .iter()
        .map(untag)
        .find(|c| get_str(c, "name") == Some(component.name()))
        .or_else(|| containers.first().map(untag));
    let Some(container) = container else {
        return Ok(None);
    };
    let Some(http) = container
        .as_mapping_get("livenessProbe")
        .map(untag)
        .and_then(|p| p.as_mapping_get("httpGet"))
        .map(untag)
    else {
        return Ok(None);
    };
    let port = match http.as_mapping_get("port").map(untag) {
        Some(p) => match scalar(p) {
            Some(s) => match s.parse::<u16>() {
                Ok(n) => Some(n),
                // A named port: the container's ports list says which number.
                Err(_) => container
                    .as_mapping_get("ports")
                    .map(untag)
                    .and_then(|l| l.as_sequence())
                    .and_then(|ports| {
                        ports
                            .iter()
                            .map(untag)
                            .find(|p| get_str(p, "name") == Some(s.as_str()))
                            .and_then(|p| p.as_mapping_get("containerPort").map(untag))
                            .and_then(scalar)
                            .and_then(|n| n.parse::<u16>().ok())
                    }),
            },
            None => None,
        },
        None => None,
    };
    let Some(port) = port else {
        return Err(format!(
            "the {} container's livenessProbe.httpGet.port is not a port number or a named container port",
            component.name()
        ));
    };
    let scheme = match get_str(http, "scheme")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("HTTP") => Scheme::Http,
        Some("HTTPS") => Scheme::Https,
        Some(other) => {
            return Err(format!(
                "the {} container's livenessProbe scheme {other:?} is neither HTTP nor HTTPS",
                component.name()
            ))
        }
    };
    let path = get_str(http, "path").unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut http_headers = Vec::new();
    if let Some(list) = http.as_mapping_get("httpHeaders").map(untag) {
        let bad = || {
            format!(
                "the {} container's livenessProbe.httpGet.httpHeaders is not a list of name/value pairs",
                component.name()
            )
        };
        for h in list.as_sequence().ok_or_else(bad)?.iter().map(untag) {
            let name = h
                .as_mapping_get("name")
                .map(untag)
                .and_then(scalar)
                .ok_or_else(bad)?;
            let value = h
                .as_mapping_get("value")
                .map(untag)
                .and_then(scalar)
                .unwrap_or_default();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!(
                    "the {} container's livenessProbe header name {name:?} is not an HTTP header name",
                    component.name()
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!(
                    "the {} container's livenessProbe header {name} has a line break in its value",
                    component.name()
                ));
            }
            http_headers.push(HttpHeader { name, value });
        }
    }
    Ok(Some(Probe {
        scheme,
        // The kubelet probes the pod IP when no host is given: the node's own address for a
        // host-network static pod, which loopback reaches too.
        host: get_str(http, "host").unwrap_or("127.0.0.1").to_string(),
        port,
        path,
        http_headers,
    }))
}

/// An RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Restarts the components of `steps` one at a time. `serving` holds, per component, the renewed
/// certificate (DER) its HTTPS health endpoint should present.
pub async fn restart(
    steps: &[RestartStep],
    opts: &RestartOptions,
    serving: &BTreeMap<Component, Vec<u8>>,
) -> Result<Vec<Restarted>, RestartError> {
    let mut done = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let remaining: Vec<&str> = steps[i + 1..].iter().map(|s| s.component.name()).collect();
        let not_restarted = if remaining.is_empty() {
            String::new()
        } else {
            format!("; not restarted: {}", remaining.join(", "))
        };
        match restart_one(step, opts, serving.get(&step.component)).await {
            Ok(r) => done.push(r),
            Err((what, state)) => {
                return Err(RestartError::Failed {
                    component: step.component.name(),
                    what,
                    state: format!("{state}{not_restarted}"),
                })
            }
        }
    }
    Ok(done)
}

/// One restart; on failure, what went wrong and where the manifest is.
async fn restart_one(
    step: &RestartStep,
    opts: &RestartOptions,
    serving: Option<&Vec<u8>>,
) -> Result<Restarted, (String, String)> {
    let name = step.component.name();
    let endpoint = step.probe.url();
    let was_running = accepts(&step.probe, opts.probe_timeout).await;
    if step.parked.exists() {
        return Err((
            format!("{} exists", step.parked.display()),
            "nothing was changed for this component".to_string(),
        ));
    }
    std::fs::rename(&step.manifest, &step.parked).map_err(|e| {
        (
            format!(
                "cannot move {} out of the manifests directory: {}",
                step.manifest.display(),
                super::error::io_reason(&e)
            ),
            "nothing was changed for this component".to_string(),
        )
    })?;
    sync_parents(&step.manifest, &step.parked);
    tracing::info!(component = name, parked = %step.parked.display(), "moved the manifest out; waiting for the kubelet to stop the pod");
    let started = Instant::now();
    loop {
        if !accepts(&step.probe, opts.probe_timeout).await {
            break;
        }
        if started.elapsed() >= opts.wait_timeout {
            let back = put_back(step).unwrap_or_else(|e| e);
            return Err((
                format!(
                    "the old pod did not stop within {} of moving its manifest: {} still accepts connections",
                    humantime::format_duration(opts.wait_timeout),
                    step.probe.address()
                ),
                back,
            ));
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
    let stopped_seconds = started.elapsed().as_secs_f64();
    put_back(step).map_err(|state| ("cannot put the manifest back".to_string(), state))?;
    tracing::info!(component = name, endpoint = %endpoint, "the old pod is gone and the manifest is back; waiting for the component to become healthy");
    let started = Instant::now();
    loop {
        let last = match probe(&step.probe, opts.probe_timeout).await {
            Ok(answer) => {
                let serves_renewed_cert = match (serving, &answer.certificate) {
                    (Some(want), Some(got)) => Some(want == got),
                    _ => None,
                };
                tracing::info!(component = name, health = %answer.summary, "healthy");
                return Ok(Restarted {
                    component: step.component,
                    endpoint,
                    was_running,
                    stopped_seconds,
                    healthy_seconds: started.elapsed().as_secs_f64(),
                    health: answer.summary,
                    serves_renewed_cert,
                });
            }
            Err(e) => e,
        };
        if started.elapsed() >= opts.wait_timeout {
            return Err((
                format!(
                    "not healthy within {} of putting its manifest back: {endpoint}: {last}",
                    humantime::format_duration(opts.wait_timeout)
                ),
                format!(
                    "its manifest is back at {}; look at its logs (crictl logs) before restarting the others",
                    step.manifest.display()
                ),
            ));
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
}

/// Puts a parked manifest back (refusing to replace one that appeared meanwhile); says where it is.
fn put_back(step: &RestartStep) -> Result<String, String> {
    if step.manifest.exists() {
        return Err(format!(
            "{} appeared meanwhile; the manifest cpkeep moved is still at {}",
            step.manifest.display(),
            step.parked.display()
        ));
    }
    match std::fs::rename(&step.parked, &step.manifest) {
        Ok(()) => {
            sync_parents(&step.manifest, &step.parked);
            Ok(format!(
                "its manifest is back at {}",
                step.manifest.display()
            ))
        }
        Err(e) => Err(format!(
            "the manifest could not be put back ({}): move it back with mv {} {}",
            super::error::io_reason(&e),
            step.parked.display(),
            step.manifest.display()
        )),
    }
}

fn sync_parents(a: &Path, b: &Path) {
    for p in [a, b] {
        if let Some(d) = p.parent() {
            // Best effort: the rename has happened either way.
            let _ = fsx::sync_dir(d);
        }
    }
}

/// Whether something accepts TCP connections at the probe's address.
async fn accepts(p: &Probe, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, tokio::net::TcpStream::connect(p.address())).await,
        Ok(Ok(_))
    )
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
    let mut stream = tokio::net::TcpStream::connect(p.address())
        .await
        .map_err(|e| super::error::io_reason(&e))?;
    let head = request_head(p);
    let (status, certificate) = match p.scheme {
        Scheme::Http => (http_exchange(&mut stream, &head, b"").await, None),
        Scheme::Https => {
            let host = p.host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| format!("{host:?} is not a TLS server name"))?;
            let mut tls = tokio_rustls::TlsConnector::from(kubelet_tls_config()?)
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake failed: {}", super::error::io_reason(&e)))?;
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(<[_]>::first)
                .map(|c| c.as_ref().to_vec());
            (http_exchange(&mut tls, &head, b"").await, certificate)
        }
    };
    let status = status.map_err(|f| match f {
        HttpFailure::Send(e) => format!("cannot send the request: {}", super::error::io_reason(&e)),
        HttpFailure::Receive(e) => format!("no answer: {}", super::error::io_reason(&e)),
        HttpFailure::NotHttp => "not an HTTP answer".to_string(),
    })?;
    if (200..400).contains(&status) {
        Ok(Answer {
            summary: format!("HTTP {status}"),
            certificate,
        })
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The GET the kubelet sends: its Host, User-Agent and Accept headers unless `httpHeaders` replace
/// them, then the other `httpHeaders`; one request per connection.
fn request_head(p: &Probe) -> String {
    let given = |name: &str| {
        p.http_headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    };
    let host = given("host").map_or_else(|| p.address(), |h| h.value.clone());
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\n",
        request_target(&p.path)
    );
    if given("user-agent").is_none() {
        head.push_str(&format!("User-Agent: cpkeep/{}\r\n", crate::VERSION));
    }
    if given("accept").is_none() {
        head.push_str("Accept: */*\r\n");
    }
    for h in &p.http_headers {
        let skip = ["host", "connection", "content-length", "transfer-encoding"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
            || (h.name.eq_ignore_ascii_case("accept") && h.value.is_empty());
        if !skip {
            head.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

/// The path (and query) as a request target: spaces, control and non-ASCII bytes percent-encoded.
fn request_target(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b <= b' ' || b >= 0x7f {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// TLS as the kubelet's HTTPS probe uses it: TLS 1.2 or 1.3, no client certificate, and no
/// verification of the server certificate (the handshake signatures are still checked against
/// the certificate presented). No session resumption: every probe sees the certificate served now.
fn kubelet_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (the kubelet's probes set `InsecureSkipVerify`).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn untag<'a, 'b>(y: &'a Yaml<'b>) -> &'a Yaml<'b> {
    match y {
        Yaml::Tagged(_, inner) => untag(inner),
        other => other,
    }
}

fn get_str<'a>(node: &'a Yaml<'_>, key: &str) -> Option<&'a str> {
    node.as_mapping_get(key)
        .map(untag)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// A scalar (string or number) as text.
fn scalar(y: &Yaml<'_>) -> Option<String> {
    if let Some(s) = y.as_str() {
        return Some(s.to_string());
    }
    y.as_integer().map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const APISERVER: &str = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    livenessProbe:\n      failureThreshold: 8\n      httpGet:\n        host: 192.168.28.10\n        path: /healthz\n        port: 6443\n        scheme: HTTPS\n    name: kube-apiserver\n";

    #[test]
    fn probes_from_manifests() {
        let p = probe_from_manifest(APISERVER, Component::KubeApiserver)
            .unwrap()
            .unwrap();
        assert_eq!(p.url(), "https://192.168.28.10:6443/healthz");
        let named = "spec:\n  containers:\n  - name: etcd\n    ports:\n    - name: probe-port\n      containerPort: 2381\n    livenessProbe:\n      httpGet:\n        path: health\n        port: probe-port\n";
        let p = probe_from_manifest(named, Component::Etcd)
            .unwrap()
            .unwrap();
        assert_eq!(p.url(), "http://127.0.0.1:2381/health");
        let exec = "spec:\n  containers:\n  - name: etcd\n    livenessProbe:\n      exec:\n        command: [etcdctl]\n";
        assert_eq!(probe_from_manifest(exec, Component::Etcd).unwrap(), None);
        let bad = "spec:\n  containers:\n  - name: etcd\n    livenessProbe:\n      httpGet:\n        port: nope\n";
        assert!(probe_from_manifest(bad, Component::Etcd)
            .unwrap_err()
            .contains("port"));
        assert!(probe_from_manifest("spec: [", Component::Etcd)
            .unwrap_err()
            .contains("not YAML"));
        let v6 = Probe {
            scheme: Scheme::Http,
            host: "::1".into(),
            port: 1,
            path: "/".into(),
            http_headers: Vec::new(),
        };
        assert_eq!(v6.url(), "http://[::1]:1/");
    }

    #[test]
    fn which_component_reads_which_cert() {
        for (cert, want) in [
            ("apiserver", Some(Component::KubeApiserver)),
            ("front-proxy-client", Some(Component::KubeApiserver)),
            ("apiserver-etcd-client", Some(Component::KubeApiserver)),
            ("etcd-peer", Some(Component::Etcd)),
            ("etcd-healthcheck-client", Some(Component::Etcd)),
            (
                "controller-manager.conf",
                Some(Component::KubeControllerManager),
            ),
            ("scheduler.conf", Some(Component::KubeScheduler)),
            ("admin.conf", None),
            ("super-admin.conf", None),
        ] {
            assert_eq!(Component::of_cert(cert), want, "{cert}");
        }
        assert!(Component::Etcd < Component::KubeApiserver);
    }

    #[test]
    fn parked_beside_the_manifests_dir() {
        assert_eq!(
            parked_path(Path::new("/etc/kubernetes/manifests/etcd.yaml")).unwrap(),
            PathBuf::from("/etc/kubernetes/etcd.yaml.cpkeep-renew")
        );
    }

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
        let p = probe_from_manifest(m, Component::KubeApiserver)
            .unwrap()
            .unwrap();
        assert_eq!(p.http_headers.len(), 2);
        let head = request_head(&p);
        assert!(
            head.starts_with("GET /livez?verbose HTTP/1.1\r\nHost: 127.0.0.1:6443\r\n"),
            "{head}"
        );
        assert!(!head.contains("Accept"), "{head}");
        assert!(head.contains("\r\nX-N: 1\r\n") && head.ends_with("Connection: close\r\n\r\n"));
        let bad = m.replace("name: X-N", "name: \"X N\"");
        assert!(probe_from_manifest(&bad, Component::KubeApiserver)
            .unwrap_err()
            .contains("header name"));
        assert_eq!(request_target("/a b\u{e9}"), "/a%20b%C3%A9");
    }
}
