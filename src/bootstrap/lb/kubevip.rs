//! kube-vip as a static pod on each control-plane node: ARP mode, control-plane VIP only, leader
//! election through a Lease. From Kubernetes 1.29 `admin.conf` has no rights until `kubeadm init` has
//! bound its group, so the first node's pod reads `super-admin.conf` during init (kube-vip#684) and
//! the RUNBOOK switches it back afterwards. Never prints.

use super::pod::*;
use crate::bootstrap::spec::{ClusterSpec, NodeSpec, APISERVER_BIND_PORT};

/// The kube-vip release the manifests pin.
pub const IMAGE: &str = "ghcr.io/kube-vip/kube-vip:v0.9.2";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const SUPER_ADMIN_CONF: &str = "/etc/kubernetes/super-admin.conf";

/// Whether `node`'s manifest must use super-admin.conf while `kubeadm init` runs.
pub fn needs_super_admin(spec: &ClusterSpec, node: &NodeSpec) -> bool {
    node.name == spec.first().name && spec.kubernetes_version.at_least(29)
}

/// The manifest for `node`.
pub fn manifest(spec: &ClusterSpec, node: &NodeSpec) -> Result<String, String> {
    let vip = spec.load_balancer.vip.ok_or("kube-vip needs a vip")?;
    let subnet = if vip.is_ipv6() { "128" } else { "32" };
    let kubeconfig = if needs_super_admin(spec, node) {
        SUPER_ADMIN_CONF
    } else {
        ADMIN_CONF
    };
    let env = |name: &str, value: &str| EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    };
    let (volume, mount) = file_mount("kubeconfig", kubeconfig, ADMIN_CONF, "File");
    let container = Container {
        name: "kube-vip".to_string(),
        image: IMAGE.to_string(),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: vec!["manager".to_string()],
        env: vec![
            env("vip_arp", "true"),
            env("port", &APISERVER_BIND_PORT.to_string()),
            EnvVar {
                name: "vip_nodename".to_string(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: FieldRef {
                        field_path: "spec.nodeName".to_string(),
                    },
                }),
            },
            env(
                "vip_interface",
                spec.load_balancer.interface.as_deref().unwrap_or_default(),
            ),
            env("vip_subnet", subnet),
            env("dns_mode", "first"),
            env("cp_enable", "true"),
            env("cp_namespace", "kube-system"),
            env("svc_enable", "false"),
            env("vip_leaderelection", "true"),
            env("vip_leasename", "plndr-cp-lock"),
            env("vip_leaseduration", "5"),
            env("vip_renewdeadline", "3"),
            env("vip_retryperiod", "1"),
            env("address", &vip.to_string()),
            env("prometheus_server", ":2112"),
        ],
        liveness_probe: None,
        security_context: Some(SecurityContext {
            capabilities: Capabilities {
                add: vec!["NET_ADMIN".to_string(), "NET_RAW".to_string()],
                drop: vec!["ALL".to_string()],
            },
        }),
        volume_mounts: vec![mount],
    };
    let mut pod = Pod::static_pod("kube-vip", container, vec![volume]);
    pod.spec.host_aliases = vec![HostAlias {
        ip: "127.0.0.1".to_string(),
        hostnames: vec!["kubernetes".to_string()],
    }];
    pod.to_yaml()
}
