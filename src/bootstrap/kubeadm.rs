//! kubeadm configuration files, one per node: the first control-plane node gets InitConfiguration +
//! ClusterConfiguration + KubeletConfiguration, the other control-plane nodes a JoinConfiguration
//! with `controlPlane`, workers one without. The types mirror kubeadm's Go types per API version
//! (`v1beta3`, `v1beta4`) as strict serde structs, so what cpkeep writes is read back by the same
//! types and a field kubeadm does not know cannot slip in.
//!
//! Joins always pin the CA (`caCertHashes`); `unsafeSkipCAVerification` is never set. The bootstrap
//! token and the certificate key are inside these files, so they are secrets (written 0600).
//! Never prints, never writes files.

pub mod common;
pub mod v1beta3;
pub mod v1beta4;

use serde::Serialize;

use super::secrets::Secrets;
use super::spec::{ClusterSpec, Distribution, LbMode, NodeSpec, APISERVER_BIND_PORT};
use super::version::KubeadmApi;
use crate::certs::issue::KeySpec;

/// kubeadm's preflight refuses a non-empty manifests directory; the first node's load balancer
/// static pods must be there before `kubeadm init` (the endpoint has to answer during init).
pub const PREFLIGHT_MANIFESTS_DIR: &str = "DirAvailable--etc-kubernetes-manifests";

/// The group kubeadm's default bootstrap token carries.
const TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// Everything the per-version builders need, computed once.
struct Inputs<'a> {
    spec: &'a ClusterSpec,
    token: String,
    certificate_key: Option<String>,
    ca_cert_hash: String,
    endpoint: String,
    api_server_sans: Vec<String>,
    etcd_sans: Vec<String>,
}

impl<'a> Inputs<'a> {
    fn new(spec: &'a ClusterSpec, secrets: &Secrets, ca_cert_hash: &str) -> Self {
        let mut api_server_sans = Vec::new();
        let push = |list: &mut Vec<String>, s: String| {
            if !list.contains(&s) {
                list.push(s);
            }
        };
        push(
            &mut api_server_sans,
            spec.control_plane_endpoint.host.to_string(),
        );
        if let Some(vip) = spec.load_balancer.vip {
            push(&mut api_server_sans, vip.to_string());
        }
        let mut etcd_sans = Vec::new();
        for n in &spec.control_plane {
            push(&mut api_server_sans, n.address.to_string());
            push(&mut api_server_sans, n.name.clone());
            push(&mut etcd_sans, n.address.to_string());
            push(&mut etcd_sans, n.name.clone());
        }
        Self {
            spec,
            token: secrets.token.expose().to_string(),
            certificate_key: (spec.certificates.distribution == Distribution::UploadCerts)
                .then(|| secrets.certificate_key.expose().to_string()),
            ca_cert_hash: ca_cert_hash.to_string(),
            endpoint: spec.control_plane_endpoint.to_string(),
            api_server_sans,
            etcd_sans,
        }
    }

    /// Preflight errors a node's configuration tells kubeadm to ignore.
    fn ignore_preflight(&self, node: &NodeSpec) -> Vec<String> {
        let first = node.name == self.spec.first().name;
        let lb_pods_first = matches!(self.spec.load_balancer.mode, LbMode::KubeVip)
            || self.spec.load_balancer.on_control_plane();
        if first && lb_pods_first {
            vec![PREFLIGHT_MANIFESTS_DIR.to_string()]
        } else {
            Vec::new()
        }
    }
}

/// The role a node plays in the bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The first control-plane node: `kubeadm init`.
    Init,
    /// A further control-plane node: `kubeadm join --control-plane`.
    ControlPlane,
    /// `kubeadm join`.
    Worker,
    /// A dedicated load balancer host (no kubeadm).
    LoadBalancer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Init => "init",
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::LoadBalancer => "load-balancer",
        }
    }
}

/// The `kubeadm.yaml` of `node`, as YAML documents separated by `---`.
pub fn render(
    spec: &ClusterSpec,
    node: &NodeSpec,
    role: Role,
    secrets: &Secrets,
    ca_cert_hash: &str,
) -> Result<String, String> {
    let inputs = Inputs::new(spec, secrets, ca_cert_hash);
    let docs = match spec.kubeadm_api {
        KubeadmApi::V1Beta3 => v1beta3_docs(&inputs, node, role)?,
        KubeadmApi::V1Beta4 => v1beta4_docs(&inputs, node, role)?,
    };
    Ok(docs.join("---\n"))
}

fn yaml<T: Serialize>(value: &T) -> Result<String, String> {
    let mut text = serde_saphyr::to_string(value).map_err(|e| e.to_string())?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn kubelet() -> common::KubeletConfiguration {
    common::KubeletConfiguration {
        api_version: common::KUBELET_API_VERSION.to_string(),
        kind: "KubeletConfiguration".to_string(),
        // kubeadm's default since 1.22, stated so a node whose runtime uses cgroupfs fails loudly.
        cgroup_driver: Some("systemd".to_string()),
        rotate_certificates: Some(true),
        server_tls_bootstrap: None,
    }
}

fn bootstrap_token(i: &Inputs<'_>) -> common::BootstrapToken {
    common::BootstrapToken {
        token: i.token.clone(),
        description: Some(format!("cpkeep bootstrap of {}", i.spec.name)),
        ttl: Some("24h0m0s".to_string()),
        expires: None,
        usages: vec!["signing".to_string(), "authentication".to_string()],
        groups: vec![TOKEN_GROUP.to_string()],
    }
}

fn local_endpoint(node: &NodeSpec) -> common::ApiEndpoint {
    common::ApiEndpoint {
        advertise_address: Some(node.address.to_string()),
        bind_port: Some(i32::from(APISERVER_BIND_PORT)),
    }
}

fn networking(i: &Inputs<'_>) -> common::Networking {
    let n = &i.spec.networking;
    common::Networking {
        service_subnet: Some(n.service_subnet.to_string()),
        pod_subnet: Some(n.pod_subnet.to_string()),
        dns_domain: Some(n.dns_domain.clone()),
    }
}

fn discovery_token(i: &Inputs<'_>) -> common::BootstrapTokenDiscovery {
    common::BootstrapTokenDiscovery {
        token: i.token.clone(),
        api_server_endpoint: Some(i.endpoint.clone()),
        ca_cert_hashes: vec![i.ca_cert_hash.clone()],
        unsafe_skip_ca_verification: None,
    }
}

fn v1beta3_docs(i: &Inputs<'_>, node: &NodeSpec, role: Role) -> Result<Vec<String>, String> {
    use v1beta3::*;
    let registration = NodeRegistrationOptions {
        name: Some(node.name.clone()),
        cri_socket: None,
        taints: None,
        kubelet_extra_args: Default::default(),
        ignore_preflight_errors: i.ignore_preflight(node),
        image_pull_policy: None,
    };
    match role {
        Role::Init => {
            let init = InitConfiguration {
                api_version: API_VERSION.to_string(),
                kind: "InitConfiguration".to_string(),
                bootstrap_tokens: vec![bootstrap_token(i)],
                node_registration: Some(registration),
                local_api_endpoint: Some(local_endpoint(node)),
                certificate_key: i.certificate_key.clone(),
                skip_phases: Vec::new(),
                patches: None,
            };
            let mut feature_gates = std::collections::BTreeMap::new();
            if i.spec.certificates.key_algorithm == KeySpec::EcdsaP256 {
                feature_gates.insert("PublicKeysECDSA".to_string(), true);
            }
            let cluster = ClusterConfiguration {
                api_version: API_VERSION.to_string(),
                kind: "ClusterConfiguration".to_string(),
                etcd: Some(Etcd {
                    local: Some(LocalEtcd {
                        image_repository: None,
                        image_tag: None,
                        data_dir: Some("/var/lib/etcd".to_string()),
                        extra_args: Default::default(),
                        server_cert_sans: i.etcd_sans.clone(),
                        peer_cert_sans: i.etcd_sans.clone(),
                    }),
                    external: None,
                }),
                networking: Some(networking(i)),
                kubernetes_version: Some(i.spec.kubernetes_version.to_string()),
                control_plane_endpoint: Some(i.endpoint.clone()),
                api_server: Some(ApiServer {
                    extra_args: Default::default(),
                    extra_volumes: Vec::new(),
                    cert_sans: i.api_server_sans.clone(),
                    timeout_for_control_plane: Some("4m0s".to_string()),
                }),
                controller_manager: None,
                scheduler: None,
                dns: None,
                certificates_dir: Some("/etc/kubernetes/pki".to_string()),
                image_repository: None,
                feature_gates,
                cluster_name: Some(i.spec.name.clone()),
            };
            Ok(vec![yaml(&init)?, yaml(&cluster)?, yaml(&kubelet())?])
        }
        Role::ControlPlane | Role::Worker => {
            let join = JoinConfiguration {
                api_version: API_VERSION.to_string(),
                kind: "JoinConfiguration".to_string(),
                node_registration: Some(registration),
                ca_cert_path: None,
                discovery: Discovery {
                    bootstrap_token: Some(discovery_token(i)),
                    file: None,
                    tls_bootstrap_token: None,
                    timeout: Some("5m0s".to_string()),
                },
                control_plane: (role == Role::ControlPlane).then(|| JoinControlPlane {
                    local_api_endpoint: Some(local_endpoint(node)),
                    certificate_key: i.certificate_key.clone(),
                }),
                skip_phases: Vec::new(),
                patches: None,
            };
            Ok(vec![yaml(&join)?])
        }
        Role::LoadBalancer => Err(format!("{} runs no kubeadm", node.name)),
    }
}

fn v1beta4_docs(i: &Inputs<'_>, node: &NodeSpec, role: Role) -> Result<Vec<String>, String> {
    use super::spec::go_duration;
    use v1beta4::*;
    let registration = NodeRegistrationOptions {
        name: Some(node.name.clone()),
        cri_socket: None,
        taints: None,
        kubelet_extra_args: Vec::new(),
        ignore_preflight_errors: i.ignore_preflight(node),
        image_pull_policy: None,
        image_pull_serial: None,
    };
    match role {
        Role::Init => {
            let init = InitConfiguration {
                api_version: API_VERSION.to_string(),
                kind: "InitConfiguration".to_string(),
                dry_run: None,
                bootstrap_tokens: vec![bootstrap_token(i)],
                node_registration: Some(registration),
                local_api_endpoint: Some(local_endpoint(node)),
                certificate_key: i.certificate_key.clone(),
                skip_phases: Vec::new(),
                patches: None,
                timeouts: Some(Timeouts {
                    control_plane_component_health_check: Some("4m0s".to_string()),
                    ..Default::default()
                }),
            };
            let certs = &i.spec.certificates;
            let cluster = ClusterConfiguration {
                api_version: API_VERSION.to_string(),
                kind: "ClusterConfiguration".to_string(),
                etcd: Some(Etcd {
                    local: Some(LocalEtcd {
                        image_repository: None,
                        image_tag: None,
                        data_dir: Some("/var/lib/etcd".to_string()),
                        extra_args: Vec::new(),
                        extra_envs: Vec::new(),
                        server_cert_sans: i.etcd_sans.clone(),
                        peer_cert_sans: i.etcd_sans.clone(),
                    }),
                    external: None,
                }),
                networking: Some(networking(i)),
                kubernetes_version: Some(i.spec.kubernetes_version.to_string()),
                control_plane_endpoint: Some(i.endpoint.clone()),
                api_server: Some(ApiServer {
                    extra_args: Vec::new(),
                    extra_envs: Vec::new(),
                    extra_volumes: Vec::new(),
                    cert_sans: i.api_server_sans.clone(),
                }),
                controller_manager: None,
                scheduler: None,
                dns: None,
                certificates_dir: Some("/etc/kubernetes/pki".to_string()),
                image_repository: None,
                feature_gates: Default::default(),
                cluster_name: Some(i.spec.name.clone()),
                proxy: None,
                encryption_algorithm: Some(certs.key_algorithm.name().to_string()),
                certificate_validity_period: Some(go_duration(certs.validity)),
                ca_certificate_validity_period: Some(go_duration(certs.ca_validity)),
            };
            Ok(vec![yaml(&init)?, yaml(&cluster)?, yaml(&kubelet())?])
        }
        Role::ControlPlane | Role::Worker => {
            let join = JoinConfiguration {
                api_version: API_VERSION.to_string(),
                kind: "JoinConfiguration".to_string(),
                dry_run: None,
                node_registration: Some(registration),
                ca_cert_path: None,
                discovery: Discovery {
                    bootstrap_token: Some(discovery_token(i)),
                    file: None,
                    tls_bootstrap_token: None,
                },
                control_plane: (role == Role::ControlPlane).then(|| JoinControlPlane {
                    local_api_endpoint: Some(local_endpoint(node)),
                    certificate_key: i.certificate_key.clone(),
                }),
                skip_phases: Vec::new(),
                patches: None,
                timeouts: Some(Timeouts {
                    discovery: Some("5m0s".to_string()),
                    ..Default::default()
                }),
            };
            Ok(vec![yaml(&join)?])
        }
        Role::LoadBalancer => Err(format!("{} runs no kubeadm", node.name)),
    }
}

/// A kubeadm configuration file read back through the strict types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    V1Beta3Init(Box<v1beta3::InitConfiguration>),
    V1Beta3Cluster(Box<v1beta3::ClusterConfiguration>),
    V1Beta3Join(Box<v1beta3::JoinConfiguration>),
    V1Beta4Init(Box<v1beta4::InitConfiguration>),
    V1Beta4Cluster(Box<v1beta4::ClusterConfiguration>),
    V1Beta4Join(Box<v1beta4::JoinConfiguration>),
    Kubelet(common::KubeletConfiguration),
}

/// Parses every document of a kubeadm configuration file strictly (unknown fields, unknown kinds
/// and unknown API versions are errors).
pub fn parse(text: &str) -> Result<Vec<Document>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        api_version: String,
        kind: String,
    }
    let mut out = Vec::new();
    for (n, doc) in text.split("\n---\n").enumerate() {
        let doc = doc.strip_prefix("---\n").unwrap_or(doc);
        let err = |e: serde_saphyr::Error| {
            format!(
                "document {}: {}",
                n + 1,
                super::inventory::one_line_yaml_error(&e)
            )
        };
        let head: Head = serde_saphyr::from_str(doc).map_err(err)?;
        let parsed = match (head.api_version.as_str(), head.kind.as_str()) {
            (v1beta3::API_VERSION, "InitConfiguration") => {
                Document::V1Beta3Init(serde_saphyr::from_str(doc).map_err(err)?)
            }
            (v1beta3::API_VERSION, "ClusterConfiguration") => {
                Document::V1Beta3Cluster(serde_saphyr::from_str(doc).map_err(err)?)
            }
            (v1beta3::API_VERSION, "JoinConfiguration") => {
                Document::V1Beta3Join(serde_saphyr::from_str(doc).map_err(err)?)
            }
            (v1beta4::API_VERSION, "InitConfiguration") => {
                Document::V1Beta4Init(serde_saphyr::from_str(doc).map_err(err)?)
            }
            (v1beta4::API_VERSION, "ClusterConfiguration") => {
                Document::V1Beta4Cluster(serde_saphyr::from_str(doc).map_err(err)?)
            }
            (v1beta4::API_VERSION, "JoinConfiguration") => {
                Document::V1Beta4Join(serde_saphyr::from_str(doc).map_err(err)?)
            }
            (common::KUBELET_API_VERSION, "KubeletConfiguration") => {
                Document::Kubelet(serde_saphyr::from_str(doc).map_err(err)?)
            }
            (v, k) => return Err(format!("document {}: unknown {v} {k}", n + 1)),
        };
        out.push(parsed);
    }
    Ok(out)
}
