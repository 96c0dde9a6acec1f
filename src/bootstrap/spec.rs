//! The validated cluster: what an inventory means once every value has been checked. Everything the
//! renderers need is typed here (addresses as `IpAddr`, subnets as `IpNet`, durations, enums), so no
//! renderer re-parses or re-judges a string. Never prints; serialisable for `plan.json`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::version::{KubeVersion, KubeadmApi};
use crate::certs::issue::KeySpec;

/// The port every kube-apiserver binds on its node (kubeadm's default `bindPort`).
pub const APISERVER_BIND_PORT: u16 = 6443;

/// A host as an address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl Host {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Dns(_) => None,
        }
    }

    /// As in a URL or `host:port` (IPv6 in brackets).
    pub fn for_url(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `host:port` of the control-plane endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host.for_url(), self.port)
    }
}

/// How the endpoint is load-balanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LbMode {
    /// The operator's own load balancer; cpkeep only checks it is not a node.
    External,
    /// haproxy (HTTPS health checks of each apiserver) and keepalived (the VIP), as static pods on
    /// the control-plane nodes or as services on dedicated hosts.
    HaproxyKeepalived,
    /// kube-vip in ARP mode with leader election, a static pod on each control-plane node.
    KubeVip,
}

impl LbMode {
    pub const NAMES: &'static str = "external, haproxy-keepalived, kube-vip";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "external" => Some(LbMode::External),
            "haproxy-keepalived" => Some(LbMode::HaproxyKeepalived),
            "kube-vip" => Some(LbMode::KubeVip),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LbMode::External => "external",
            LbMode::HaproxyKeepalived => "haproxy-keepalived",
            LbMode::KubeVip => "kube-vip",
        }
    }
}

/// The load balancer in front of the apiservers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    pub mode: LbMode,
    pub vip: Option<IpAddr>,
    pub interface: Option<String>,
    /// Dedicated hosts; empty when the control-plane nodes run it (or the mode has no hosts).
    pub nodes: Vec<NodeSpec>,
    /// The port clients use (the endpoint's).
    pub port: u16,
}

impl LoadBalancerSpec {
    /// Whether haproxy and keepalived run on the control-plane nodes.
    pub fn on_control_plane(&self) -> bool {
        self.mode == LbMode::HaproxyKeepalived && self.nodes.is_empty()
    }
}

/// The cluster's networks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkingSpec {
    pub pod_subnet: IpNet,
    pub service_subnet: IpNet,
    pub dns_domain: String,
}

/// How cpkeep (or an operator following the RUNBOOK) reaches a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshSpec {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<String>,
    /// The runner itself: commands run here without ssh (`ssh: {local: true}`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

impl Default for SshSpec {
    fn default() -> Self {
        Self {
            user: "root".to_string(),
            port: 22,
            identity_file: None,
            local: false,
        }
    }
}

/// One host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    pub name: String,
    pub address: Host,
    pub ssh: SshSpec,
}

/// How the shared CAs reach the other control-plane nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// kubeadm's encrypted `kubeadm-certs` Secret and the certificate key (`--upload-certs`).
    UploadCerts,
    /// Copied over SSH before each join; no key material in the cluster.
    Copy,
}

impl Distribution {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upload-certs" => Some(Distribution::UploadCerts),
            "copy" => Some(Distribution::Copy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::UploadCerts => "upload-certs",
            Distribution::Copy => "copy",
        }
    }
}

/// Key algorithm, lifetimes and distribution of the cluster's certificates.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesSpec {
    pub key_algorithm: KeySpec,
    #[serde(serialize_with = "as_go_duration")]
    pub validity: Duration,
    #[serde(serialize_with = "as_go_duration")]
    pub ca_validity: Duration,
    pub distribution: Distribution,
}

/// kubeadm's default leaf lifetime (1 year) and CA lifetime (10 years).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);

impl Default for CertificatesSpec {
    fn default() -> Self {
        Self {
            key_algorithm: KeySpec::Rsa2048,
            validity: DEFAULT_VALIDITY,
            ca_validity: DEFAULT_CA_VALIDITY,
            distribution: Distribution::UploadCerts,
        }
    }
}

/// A duration as Go's `time.Duration` prints whole hours (`8760h0m0s`), as kubeadm writes them.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn as_go_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&go_duration(*d))
}

/// Where the CNI manifest comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum CniSpec {
    /// A local file, pinned by its sha256 when the plan was made.
    File { path: PathBuf, sha256: String },
    /// An https URL, fetched when it is applied.
    Url { url: String },
}

/// The validated cluster.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    pub name: String,
    pub kubernetes_version: KubeVersion,
    pub kubeadm_api: KubeadmApi,
    pub control_plane_endpoint: Endpoint,
    pub load_balancer: LoadBalancerSpec,
    pub networking: NetworkingSpec,
    pub control_plane: Vec<NodeSpec>,
    pub workers: Vec<NodeSpec>,
    pub cni: Option<CniSpec>,
    pub certificates: CertificatesSpec,
}

impl ClusterSpec {
    /// The node `kubeadm init` runs on.
    pub fn first(&self) -> &NodeSpec {
        &self.control_plane[0]
    }

    /// Voters needed for etcd quorum with every control-plane node a member.
    pub fn quorum(&self) -> usize {
        self.control_plane.len() / 2 + 1
    }

    /// How many control-plane nodes may fail with the cluster still writable.
    pub fn fault_tolerance(&self) -> usize {
        self.control_plane.len() - self.quorum()
    }

    /// The hosts haproxy and keepalived run on (haproxy-keepalived mode), in priority order.
    pub fn lb_hosts(&self) -> &[NodeSpec] {
        match self.load_balancer.mode {
            LbMode::HaproxyKeepalived if self.load_balancer.nodes.is_empty() => &self.control_plane,
            LbMode::HaproxyKeepalived => &self.load_balancer.nodes,
            LbMode::External | LbMode::KubeVip => &[],
        }
    }
}
