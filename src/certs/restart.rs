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
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::staticpod::{self, PodManifest};
pub use crate::staticpod::{probe, Answer, HttpHeader, Probe, Scheme};

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
        let parked = staticpod::parked_path(&manifest, PARKED_SUFFIX).map_err(|e| bad(e.reason))?;
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
        let pod = PodManifest::parse(&manifest, &text).map_err(|e| bad(e.reason))?;
        let (probe, probe_from) = match probe_from_pod(&pod, component).map_err(bad)? {
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

/// The `livenessProbe.httpGet` of the component's container (the first container when none has
/// its name), or `None` when it has none.
pub fn probe_from_pod(pod: &PodManifest, component: Component) -> Result<Option<Probe>, String> {
    let container = pod
        .container(component.name())
        .or_else(|| pod.containers.first());
    match container {
        Some(c) => Probe::from_container(c, component.name()),
        None => Ok(None),
    }
}

/// [`probe_from_pod`] of manifest text.
pub fn probe_from_manifest(text: &str, component: Component) -> Result<Option<Probe>, String> {
    let pod = PodManifest::parse(Path::new(""), text).map_err(|e| e.reason)?;
    probe_from_pod(&pod, component)
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
    let was_running = staticpod::accepts(&step.probe.address(), opts.probe_timeout).await;
    if step.parked.exists() {
        return Err((
            format!("{} exists", step.parked.display()),
            "nothing was changed for this component".to_string(),
        ));
    }
    staticpod::park(&step.manifest, &step.parked).map_err(|e| {
        (
            format!(
                "cannot move {} out of the manifests directory: {}",
                step.manifest.display(),
                super::error::io_reason(&e)
            ),
            "nothing was changed for this component".to_string(),
        )
    })?;
    tracing::info!(component = name, parked = %step.parked.display(), "moved the manifest out; waiting for the kubelet to stop the pod");
    let stopped = staticpod::wait_stopped(
        &step.probe.address(),
        opts.probe_timeout,
        opts.wait_timeout,
        opts.poll_interval,
        || async { None },
    )
    .await;
    let stopped = match stopped {
        Ok(s) => s,
        Err(_) => {
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
    };
    let stopped_seconds = stopped.elapsed.as_secs_f64();
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
    staticpod::put_back(&step.manifest, &step.parked)
        .map(|()| format!("its manifest is back at {}", step.manifest.display()))
        .map_err(|e| e.to_string())
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
            staticpod::parked_path(
                Path::new("/etc/kubernetes/manifests/etcd.yaml"),
                PARKED_SUFFIX
            )
            .unwrap(),
            PathBuf::from("/etc/kubernetes/etcd.yaml.cpkeep-renew")
        );
    }
}
