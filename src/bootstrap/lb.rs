//! The load balancer in front of the apiservers: haproxy + keepalived (configs, check script and
//! static pods) or kube-vip (a static pod), rendered per host. Never prints, never writes files.

pub mod haproxy;
pub mod keepalived;
pub mod kubevip;
pub mod pod;

use pod::{Capabilities, Container, Pod, Probe, SecurityContext, TcpSocket};

use super::spec::{ClusterSpec, LbMode, NodeSpec};

/// Images of the haproxy-keepalived static pods (kubeadm's HA guide uses these).
pub const HAPROXY_IMAGE: &str = "haproxy:2.8";
pub const KEEPALIVED_IMAGE: &str = "osixia/keepalived:2.0.20";

/// One rendered file of a host, relative to its `nodes/<name>/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub rel: String,
    pub text: String,
    pub executable: bool,
}

fn file(rel: &str, text: String) -> HostFile {
    HostFile {
        rel: rel.to_string(),
        text,
        executable: false,
    }
}

/// The load balancer files `node` gets (none for `external`, or for a host that runs no LB).
pub fn host_files(spec: &ClusterSpec, node: &NodeSpec) -> Result<Vec<HostFile>, String> {
    match spec.load_balancer.mode {
        LbMode::External => Ok(Vec::new()),
        LbMode::KubeVip => {
            if spec.control_plane.iter().any(|n| n.name == node.name) {
                Ok(vec![file(
                    "manifests/kube-vip.yaml",
                    kubevip::manifest(spec, node)?,
                )])
            } else {
                Ok(Vec::new())
            }
        }
        LbMode::HaproxyKeepalived => {
            let hosts = spec.lb_hosts();
            let Some(index) = hosts.iter().position(|h| h.name == node.name) else {
                return Ok(Vec::new());
            };
            Ok(vec![
                file("haproxy.cfg", haproxy::render(spec)),
                file("keepalived.conf", keepalived::render(spec, hosts, index)),
                HostFile {
                    rel: "check_apiserver.sh".to_string(),
                    text: keepalived::check_script(spec),
                    executable: true,
                },
                file("manifests/haproxy.yaml", haproxy_pod(spec)?),
                file("manifests/keepalived.yaml", keepalived_pod()?),
            ])
        }
    }
}

fn haproxy_pod(spec: &ClusterSpec) -> Result<String, String> {
    let (volume, mount) = pod::file_mount(
        "haproxyconf",
        haproxy::HOST_PATH,
        "/usr/local/etc/haproxy/haproxy.cfg",
        "File",
    );
    let container = Container {
        name: "haproxy".to_string(),
        image: HAPROXY_IMAGE.to_string(),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Vec::new(),
        env: Vec::new(),
        // haproxy itself, not the apiservers behind it: restarting haproxy cures none of theirs.
        liveness_probe: Some(Probe {
            tcp_socket: Some(TcpSocket {
                host: "127.0.0.1".to_string(),
                port: spec.load_balancer.port,
            }),
            period_seconds: Some(10),
            failure_threshold: Some(8),
        }),
        security_context: None,
        volume_mounts: vec![mount],
    };
    Pod::static_pod("haproxy", container, vec![volume]).to_yaml()
}

fn keepalived_pod() -> Result<String, String> {
    let (conf_vol, conf_mount) = pod::file_mount(
        "config",
        keepalived::CONF_HOST_PATH,
        "/usr/local/etc/keepalived/keepalived.conf",
        "File",
    );
    let (check_vol, check_mount) = pod::file_mount(
        "check",
        keepalived::CHECK_HOST_PATH,
        keepalived::CHECK_HOST_PATH,
        "File",
    );
    let container = Container {
        name: "keepalived".to_string(),
        image: KEEPALIVED_IMAGE.to_string(),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Vec::new(),
        env: Vec::new(),
        liveness_probe: None,
        security_context: Some(SecurityContext {
            capabilities: Capabilities {
                add: vec!["NET_ADMIN".into(), "NET_BROADCAST".into(), "NET_RAW".into()],
                drop: Vec::new(),
            },
        }),
        volume_mounts: vec![conf_mount, check_mount],
    };
    Pod::static_pod("keepalived", container, vec![conf_vol, check_vol]).to_yaml()
}
