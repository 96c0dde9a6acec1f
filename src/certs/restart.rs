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
//! container port —, path, scheme), as the kubelet would probe it; kubeadm's defaults when the
//! manifest has none. An HTTP endpoint is healthy when it answers 2xx or 3xx, as the kubelet judges.
//! An HTTPS endpoint is healthy when it completes the server side of a TLS 1.2 hello (cpkeep carries
//! no HTTPS client): the server certificate it presents is compared with the renewed one when the
//! component serves a renewed certificate (kube-apiserver, `apiserver.crt`).
//!
//! A component that does not stop, or does not come back in time, ends the run with its manifest
//! back in place and says which components were not restarted. This module never edits a manifest
//! and never prints (progress goes to `tracing`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use saphyr::{LoadableYamlNode, Yaml};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

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
    fn address(&self) -> String {
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
    /// What the health endpoint answered (`HTTP 200`, `TLS handshake`).
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
    let file = manifest
        .file_name()
        .ok_or_else(|| "not a file path".to_string())?;
    let outer = manifest
        .parent()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            "the manifests directory needs a parent directory to park a manifest in".to_string()
        })?;
    let mut name = file.to_os_string();
    name.push(PARKED_SUFFIX);
    Ok(outer.join(name))
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
    Ok(Some(Probe {
        scheme,
        // The kubelet probes the pod IP when no host is given: the node's own address for a
        // host-network static pod, which loopback reaches too.
        host: get_str(http, "host").unwrap_or("127.0.0.1").to_string(),
        port,
        path,
    }))
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
    pub summary: String,
    /// The certificate an HTTPS endpoint presented (DER), when it sent one in the clear (TLS 1.2).
    pub certificate: Option<Vec<u8>>,
}

/// Probes once: an HTTP GET (2xx/3xx is healthy), or for HTTPS the server side of a TLS hello.
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
    match p.scheme {
        Scheme::Http => {
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cpkeep/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                p.path,
                p.address(),
                crate::VERSION
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| super::error::io_reason(&e))?;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| super::error::io_reason(&e))?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head);
            let status = line
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("HTTP/1."))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| "not an HTTP answer".to_string())?;
            if (200..400).contains(&status) {
                Ok(Answer {
                    summary: format!("HTTP {status}"),
                    certificate: None,
                })
            } else {
                Err(format!("HTTP {status}"))
            }
        }
        Scheme::Https => {
            stream
                .write_all(&tls::client_hello())
                .await
                .map_err(|e| super::error::io_reason(&e))?;
            tls::read_server_hello(&mut stream).await
        }
    }
}

/// Just enough TLS to see a server answer a hello: a TLS 1.2 ClientHello, and the server's first
/// flight read until its Certificate message (sent in the clear in TLS 1.2).
mod tls {
    use tokio::io::AsyncReadExt;

    use super::Answer;

    const HANDSHAKE: u8 = 0x16;
    const ALERT: u8 = 0x15;

    /// A TLS 1.2 ClientHello offering the ECDHE-GCM and CHACHA20 suites Go servers accept, the
    /// x25519/P-256/P-384 groups and RSA/ECDSA signatures.
    pub fn client_hello() -> Vec<u8> {
        let suites: &[u8] = &[
            0xc0, 0x2f, 0xc0, 0x2b, 0xc0, 0x30, 0xc0, 0x2c, 0xcc, 0xa8, 0xcc, 0xa9, 0x00, 0x9c,
            0x00, 0x2f,
        ];
        let mut ext = Vec::new();
        // supported_groups: x25519, secp256r1, secp384r1
        ext.extend_from_slice(&[
            0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
        ]);
        // ec_point_formats: uncompressed
        ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
        // signature_algorithms
        let sigs: &[u8] = &[
            0x04, 0x03, 0x05, 0x03, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01,
            0x06, 0x01,
        ];
        ext.extend_from_slice(&[0x00, 0x0d]);
        ext.extend_from_slice(&u16_be(sigs.len() + 2));
        ext.extend_from_slice(&u16_be(sigs.len()));
        ext.extend_from_slice(sigs);
        // extended_master_secret, renegotiation_info
        ext.extend_from_slice(&[0x00, 0x17, 0x00, 0x00, 0xff, 0x01, 0x00, 0x01, 0x00]);

        let mut body = vec![0x03, 0x03];
        let seed = chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_be_bytes();
        body.extend((0..32).map(|i| seed[i % 8] ^ (i as u8).wrapping_mul(37)));
        body.push(0); // session id
        body.extend_from_slice(&u16_be(suites.len()));
        body.extend_from_slice(suites);
        body.extend_from_slice(&[0x01, 0x00]); // compression: null
        body.extend_from_slice(&u16_be(ext.len()));
        body.extend_from_slice(&ext);

        let mut hs = vec![0x01];
        hs.extend_from_slice(&u24_be(body.len()));
        hs.extend_from_slice(&body);
        let mut record = vec![HANDSHAKE, 0x03, 0x01];
        record.extend_from_slice(&u16_be(hs.len()));
        record.extend_from_slice(&hs);
        record
    }

    /// Reads the server's answer: a ServerHello (and its certificate, when sent), or an alert
    /// (a TLS server that is up but refuses this hello, e.g. TLS 1.3 only).
    pub async fn read_server_hello<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Answer, String> {
        let mut handshake = Vec::new();
        let mut saw_hello = false;
        let mut total = 0usize;
        loop {
            let mut header = [0u8; 5];
            if let Err(e) = r.read_exact(&mut header).await {
                return if saw_hello {
                    Ok(hello(None))
                } else {
                    Err(format!(
                        "no TLS answer ({})",
                        super::super::error::io_reason(&e)
                    ))
                };
            }
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            total += len;
            if total > 256 * 1024 || header[1] != 0x03 {
                return Err("not a TLS answer".to_string());
            }
            let mut payload = vec![0u8; len];
            r.read_exact(&mut payload)
                .await
                .map_err(|e| super::super::error::io_reason(&e))?;
            match header[0] {
                ALERT => {
                    return Ok(Answer {
                        summary: "TLS answered (with an alert to cpkeep's TLS 1.2 hello)"
                            .to_string(),
                        certificate: None,
                    })
                }
                HANDSHAKE => handshake.extend_from_slice(&payload),
                _ => return Ok(hello(None)),
            }
            // Walk the complete handshake messages gathered so far.
            let mut at = 0;
            while handshake.len() >= at + 4 {
                let kind = handshake[at];
                let mlen = usize::from(handshake[at + 1]) << 16
                    | usize::from(handshake[at + 2]) << 8
                    | usize::from(handshake[at + 3]);
                let Some(msg) = handshake.get(at + 4..at + 4 + mlen) else {
                    break;
                };
                match kind {
                    0x02 => saw_hello = true,
                    0x0b => return Ok(hello(first_certificate(msg))),
                    0x0e => return Ok(hello(None)),
                    _ => {}
                }
                at += 4 + mlen;
            }
        }
    }

    fn hello(certificate: Option<Vec<u8>>) -> Answer {
        Answer {
            summary: "TLS handshake".to_string(),
            certificate,
        }
    }

    /// The leaf of a TLS 1.2 Certificate message.
    fn first_certificate(msg: &[u8]) -> Option<Vec<u8>> {
        let len = |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let list = msg.get(3..)?;
        let first = list.get(..3).map(len)?;
        list.get(3..3 + first).map(<[u8]>::to_vec)
    }

    fn u16_be(n: usize) -> [u8; 2] {
        (n as u16).to_be_bytes()
    }

    fn u24_be(n: usize) -> [u8; 3] {
        let b = (n as u32).to_be_bytes();
        [b[1], b[2], b[3]]
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
        };
        let ok = probe(&p, Duration::from_secs(3)).await.unwrap();
        assert_eq!(ok.summary, "HTTP 200");
        assert_eq!(
            probe(&p, Duration::from_secs(3)).await.unwrap_err(),
            "HTTP 503"
        );
    }

    #[tokio::test]
    async fn tls_probe_reads_the_certificate_of_a_tls12_flight() {
        // ServerHello, then Certificate with one 3-byte "certificate", split over two records.
        let mut hs = vec![0x02, 0, 0, 2, 0x03, 0x03];
        hs.extend_from_slice(&[0x0b, 0, 0, 9, 0, 0, 6, 0, 0, 3, 0xaa, 0xbb, 0xcc]);
        let (a, b) = hs.split_at(8);
        let mut wire = Vec::new();
        for part in [a, b] {
            wire.extend_from_slice(&[0x16, 0x03, 0x03, 0, part.len() as u8]);
            wire.extend_from_slice(part);
        }
        let answer = tls::read_server_hello(&mut wire.as_slice()).await.unwrap();
        assert_eq!(answer.certificate, Some(vec![0xaa, 0xbb, 0xcc]));
        let alert = [0x15, 0x03, 0x03, 0, 2, 2, 70];
        let a = tls::read_server_hello(&mut alert.as_slice()).await.unwrap();
        assert!(a.summary.contains("alert"));
        assert!(tls::read_server_hello(&mut &b"HTTP/1.1 400"[..])
            .await
            .is_err());
        let hello = tls::client_hello();
        assert_eq!(hello[0], 0x16);
        assert_eq!(
            usize::from(u16::from_be_bytes([hello[3], hello[4]])),
            hello.len() - 5
        );
    }
}
