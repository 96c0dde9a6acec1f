//! The rules an inventory must pass before anything is generated. Each refusal names the field (and
//! its line) and says why in the operator's terms, e.g. why an even member count buys nothing. The
//! rules are pure: the only file they look at is a local CNI manifest, to pin its sha256.
//! Never prints, never writes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use super::error::FieldRef;
use super::inventory::{self, Inventory, Text};
use super::spec::*;
use super::version::{KubeVersion, KubeadmApi};
use crate::certs::issue::KeySpec;

/// The inventory's API version and kind.
pub const API_VERSION: &str = "cpkeep/v1alpha1";
pub const KIND: &str = "Cluster";

/// Choices made on the command line rather than in the file.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// Accept an even control-plane count (it adds no fault tolerance).
    pub allow_even: bool,
    /// Relative CNI manifest paths are taken from here (the inventory's directory).
    pub base_dir: std::path::PathBuf,
}

/// One refused value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: FieldRef,
    pub reason: String,
}

type Result<T> = std::result::Result<T, Refusal>;

fn refuse<T>(path: impl Into<String>, at: Option<&Text>, reason: impl Into<String>) -> Result<T> {
    Err(Refusal {
        field: FieldRef {
            path: path.into(),
            line: at.map(|t| t.referenced.line()).filter(|l| *l > 0),
        },
        reason: reason.into(),
    })
}

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    Some(s.referenced.line()).filter(|l| *l > 0)
}

/// Checks every rule and returns the cluster it describes.
pub fn validate(inv: &Inventory, opts: &ValidateOptions) -> Result<ClusterSpec> {
    if inv.api_version.value != API_VERSION {
        return refuse(
            "apiVersion",
            Some(&inv.api_version),
            format!(
                "{:?} is not supported (expected {API_VERSION})",
                inv.api_version.value
            ),
        );
    }
    if inv.kind.value != KIND {
        return refuse(
            "kind",
            Some(&inv.kind),
            format!("{:?} is not supported (expected {KIND})", inv.kind.value),
        );
    }
    if let Err(why) = dns_label(&inv.name.value) {
        return refuse(
            "name",
            Some(&inv.name),
            format!("{:?} {why}", inv.name.value),
        );
    }
    let version = KubeVersion::parse(&inv.kubernetes_version.value)
        .or_else(|why| refuse("kubernetesVersion", Some(&inv.kubernetes_version), why))?;
    let certificates = certificates(inv.certificates.as_ref(), &version)?;
    let networking = networking(&inv.networking)?;

    let control_plane = nodes("controlPlane", &inv.control_plane, &networking, true)?;
    let workers = nodes("workers", &inv.workers, &networking, false)?;
    let lb_nodes = nodes(
        "loadBalancer.nodes",
        &inv.load_balancer.nodes,
        &networking,
        false,
    )?;
    let n = control_plane.len();
    if n < 3 {
        return refuse(
            "controlPlane",
            None,
            format!("{n} node(s) is not highly available: etcd needs 3 members to survive the loss of one"),
        );
    }
    if n % 2 == 0 && !opts.allow_even {
        return refuse(
            "controlPlane",
            None,
            format!(
                "{n} members tolerate {} failure(s), like {}, and need {} for quorum: use an odd count (or --allow-even)",
                (n - 1) / 2,
                n - 1,
                n / 2 + 1
            ),
        );
    }
    unique(inv, &control_plane, &workers, &lb_nodes)?;

    let endpoint = endpoint(&inv.control_plane_endpoint)?;
    let everyone: Vec<NodeSpec> = control_plane
        .iter()
        .chain(&workers)
        .chain(&lb_nodes)
        .cloned()
        .collect();
    if let Some(node) = everyone
        .iter()
        .find(|nd| same_host(&nd.address, &endpoint.host))
    {
        return refuse(
            "controlPlaneEndpoint",
            Some(&inv.control_plane_endpoint),
            format!(
                "the endpoint's host {} is node {}'s address: when that node is down the whole control plane is unreachable (use a VIP, a load balancer or a DNS name)",
                endpoint.host, node.name
            ),
        );
    }
    let load_balancer = load_balancer(inv, &endpoint, lb_nodes, &networking, &everyone)?;
    let cni = match &inv.cni {
        None => None,
        Some(c) => Some(cni(&c.manifest, &opts.base_dir)?),
    };
    Ok(ClusterSpec {
        name: inv.name.value.clone(),
        kubeadm_api: version.kubeadm_api(),
        kubernetes_version: version,
        control_plane_endpoint: endpoint,
        load_balancer,
        networking,
        control_plane,
        workers,
        cni,
        certificates,
    })
}

fn certificates(
    c: Option<&inventory::Certificates>,
    version: &KubeVersion,
) -> Result<CertificatesSpec> {
    let mut spec = CertificatesSpec::default();
    let Some(c) = c else { return Ok(spec) };
    let v1beta3 = version.kubeadm_api() == KubeadmApi::V1Beta3;
    if let Some(alg) = &c.key_algorithm {
        let field = "certificates.keyAlgorithm";
        spec.key_algorithm = KeySpec::from_algorithm(&alg.value).or_else(|_| {
            refuse(
                field,
                Some(alg),
                format!("{:?} is not a kubeadm encryptionAlgorithm (expected RSA-2048, RSA-3072, RSA-4096, ECDSA-P256 or ECDSA-P384)", alg.value),
            )
        })?;
        match spec.key_algorithm {
            KeySpec::Rsa3072 | KeySpec::Rsa4096 if v1beta3 => {
                return refuse(field, Some(alg), format!("{} needs Kubernetes 1.31 or later (kubeadm's encryptionAlgorithm); {version} offers RSA-2048 or ECDSA-P256", alg.value));
            }
            KeySpec::EcdsaP384 if !version.at_least(34) => {
                return refuse(field, Some(alg), format!("ECDSA-P384 needs Kubernetes 1.34 or later; {version} offers RSA-2048, RSA-3072, RSA-4096 or ECDSA-P256"));
            }
            _ => {}
        }
    }
    let duration = |t: &Text, field: &str| -> Result<Duration> {
        let d = humantime::parse_duration(&t.value).or_else(|_| {
            refuse(
                field,
                Some(t),
                format!("{:?} is not a duration (e.g. 365d, 8760h)", t.value),
            )
        })?;
        if d < Duration::from_secs(3600) {
            return refuse(
                field,
                Some(t),
                format!("{:?} is shorter than an hour", t.value),
            );
        }
        if d.subsec_nanos() != 0 {
            return refuse(
                field,
                Some(t),
                format!("{:?} is not a whole number of seconds", t.value),
            );
        }
        Ok(d)
    };
    if let Some(v) = &c.validity {
        spec.validity = duration(v, "certificates.validity")?;
        if v1beta3 && spec.validity != DEFAULT_VALIDITY {
            return refuse("certificates.validity", Some(v), format!("kubeadm before 1.31 issues certificates for 365d only; {version} cannot be asked for {}", v.value));
        }
    }
    if let Some(v) = &c.ca_validity {
        spec.ca_validity = duration(v, "certificates.caValidity")?;
    }
    if spec.validity > spec.ca_validity {
        return refuse(
            "certificates.validity",
            c.validity.as_ref().or(c.ca_validity.as_ref()),
            "is longer than caValidity: no certificate can outlive the CA that signed it",
        );
    }
    if let Some(d) = &c.distribution {
        spec.distribution = Distribution::parse(&d.value).map_or_else(
            || {
                refuse(
                    "certificates.distribution",
                    Some(d),
                    format!(
                        "{:?} is not a distribution (expected upload-certs or copy)",
                        d.value
                    ),
                )
            },
            Ok,
        )?;
    }
    Ok(spec)
}

fn networking(n: &inventory::Networking) -> Result<NetworkingSpec> {
    let pod_subnet = cidr("networking.podSubnet", &n.pod_subnet)?;
    let service_subnet = match &n.service_subnet {
        Some(t) => cidr("networking.serviceSubnet", t)?,
        None => IpNet::V4("10.96.0.0/12".parse().map_err(|_| Refusal {
            field: FieldRef {
                path: "networking.serviceSubnet".into(),
                line: None,
            },
            reason: "default does not parse".into(),
        })?),
    };
    let svc_line = n.service_subnet.as_ref();
    let (max_bits, min_prefix) = match service_subnet {
        IpNet::V4(_) => (32, 12),
        IpNet::V6(_) => (128, 108),
    };
    if service_subnet.prefix_len() < min_prefix {
        return refuse(
            "networking.serviceSubnet",
            svc_line,
            format!("{service_subnet} is too large: kube-apiserver takes at most a /{min_prefix} ({} bits of service addresses)", max_bits - min_prefix),
        );
    }
    if pod_subnet.contains(&service_subnet.network())
        || service_subnet.contains(&pod_subnet.network())
    {
        return refuse(
            "networking.serviceSubnet",
            svc_line.or(Some(&n.pod_subnet)),
            format!("{service_subnet} overlaps the pod subnet {pod_subnet}: a Service address would be routed as a pod"),
        );
    }
    let dns_domain = match &n.dns_domain {
        Some(t) => {
            dns_name(&t.value).or_else(|why| {
                refuse(
                    "networking.dnsDomain",
                    Some(t),
                    format!("{:?} {why}", t.value),
                )
            })?;
            t.value.clone()
        }
        None => "cluster.local".to_string(),
    };
    Ok(NetworkingSpec {
        pod_subnet,
        service_subnet,
        dns_domain,
    })
}

fn cidr(field: &str, t: &Text) -> Result<IpNet> {
    let net: IpNet = t.value.parse().or_else(|_| {
        refuse(
            field,
            Some(t),
            format!(
                "{:?} is not a CIDR (e.g. 10.244.0.0/16){}",
                t.value,
                if t.value.contains(',') {
                    "; dual-stack subnets are not supported yet"
                } else {
                    ""
                }
            ),
        )
    })?;
    if net.trunc() != net {
        return refuse(
            field,
            Some(t),
            format!("{net} has host bits set (did you mean {}?)", net.trunc()),
        );
    }
    Ok(net)
}

fn nodes(
    list: &str,
    raw: &[inventory::Node],
    net: &NetworkingSpec,
    ip_only: bool,
) -> Result<Vec<NodeSpec>> {
    raw.iter()
        .enumerate()
        .map(|(i, n)| {
            let at = format!("{list}[{i}]");
            dns_subdomain(&n.name.value)
                .or_else(|why| refuse(format!("{at}.name"), Some(&n.name), format!("{:?} {why} (a Kubernetes node name)", n.name.value)))?;
            let address = host(&n.address.value)
                .or_else(|why| refuse(format!("{at}.address"), Some(&n.address), why))?;
            match &address {
                Host::Dns(_) if ip_only => {
                    return refuse(format!("{at}.address"), Some(&n.address), format!("{:?} is not an IP address: a control-plane node advertises its apiserver and etcd on an IP", n.address.value));
                }
                Host::Ip(ip) => {
                    usable_ip(*ip).or_else(|why| refuse(format!("{at}.address"), Some(&n.address), format!("{ip} {why}")))?;
                    for (subnet, what) in [(&net.pod_subnet, "pod"), (&net.service_subnet, "service")] {
                        if subnet.contains(ip) {
                            return refuse(format!("{at}.address"), Some(&n.address), format!("{ip} is inside the {what} subnet {subnet}: traffic to the node would be routed into the cluster network"));
                        }
                    }
                }
                Host::Dns(_) => {}
            }
            let ssh = match &n.ssh {
                None => SshSpec::default(),
                Some(s) => {
                    let mut spec = SshSpec::default();
                    if let Some(user) = &s.user {
                        if user.value.is_empty() || user.value.chars().any(|c| c.is_whitespace() || c == '@') {
                            return refuse(format!("{at}.ssh.user"), Some(user), format!("{:?} is not a user name", user.value));
                        }
                        spec.user = user.value.clone();
                    }
                    if let Some(port) = &s.port {
                        spec.port = u16::try_from(port.value).ok().filter(|p| *p > 0).ok_or_else(|| Refusal {
                            field: FieldRef { path: format!("{at}.ssh.port"), line: line_of(port) },
                            reason: format!("{} is not a port (1-65535)", port.value),
                        })?;
                    }
                    if let Some(id) = &s.identity_file {
                        if id.value.trim().is_empty() {
                            return refuse(format!("{at}.ssh.identityFile"), Some(id), "is empty");
                        }
                        spec.identity_file = Some(id.value.clone());
                    }
                    spec
                }
            };
            Ok(NodeSpec { name: n.name.value.clone(), address, ssh })
        })
        .collect()
}

fn unique(inv: &Inventory, cp: &[NodeSpec], workers: &[NodeSpec], lbs: &[NodeSpec]) -> Result<()> {
    let raw = inv
        .control_plane
        .iter()
        .chain(&inv.workers)
        .chain(&inv.load_balancer.nodes);
    let lists = std::iter::repeat_n("controlPlane", cp.len())
        .chain(std::iter::repeat_n("workers", workers.len()))
        .chain(std::iter::repeat_n("loadBalancer.nodes", lbs.len()));
    let mut names: HashSet<&str> = HashSet::new();
    let mut addresses: HashMap<String, &str> = HashMap::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for ((node, r), list) in cp.iter().chain(workers).chain(lbs).zip(raw).zip(lists) {
        let i = index.entry(list).or_insert(0);
        let at = format!("{list}[{i}]");
        *i += 1;
        if !names.insert(&node.name) {
            return refuse(
                format!("{at}.name"),
                Some(&r.name),
                format!(
                    "{:?} is used by another node: node names must be unique",
                    node.name
                ),
            );
        }
        let key = match &node.address {
            Host::Ip(ip) => ip.to_string(),
            Host::Dns(d) => d.to_ascii_lowercase(),
        };
        if let Some(other) = addresses.insert(key, &node.name) {
            return refuse(
                format!("{at}.address"),
                Some(&r.address),
                format!(
                    "{} is also node {other}'s address: every node needs its own",
                    node.address
                ),
            );
        }
    }
    Ok(())
}

fn endpoint(t: &Text) -> Result<Endpoint> {
    let field = "controlPlaneEndpoint";
    let s = t.value.as_str();
    let (host_part, port_part) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once("]:") {
            Some((h, p)) => (h, Some(p)),
            None => {
                return refuse(
                    field,
                    Some(t),
                    format!("{s:?} is not host:port (an IPv6 host is written [addr]:port)"),
                )
            }
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return refuse(
                    field,
                    Some(t),
                    format!("{s:?}: write an IPv6 host in brackets, [addr]:port"),
                )
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let Some(port_part) = port_part else {
        return refuse(
            field,
            Some(t),
            format!("{s:?} has no port (expected host:port, e.g. 192.168.1.20:8443)"),
        );
    };
    let port = port_part
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0 && !port_part.starts_with('+'))
        .map_or_else(
            || {
                refuse(
                    field,
                    Some(t),
                    format!("{port_part:?} is not a port (1-65535)"),
                )
            },
            Ok,
        )?;
    let host = host(host_part).or_else(|why| refuse(field, Some(t), why))?;
    if let Some(ip) = host.ip() {
        usable_ip(ip).or_else(|why| refuse(field, Some(t), format!("{ip} {why}")))?;
    }
    Ok(Endpoint { host, port })
}

fn load_balancer(
    inv: &Inventory,
    endpoint: &Endpoint,
    nodes: Vec<NodeSpec>,
    net: &NetworkingSpec,
    everyone: &[NodeSpec],
) -> Result<LoadBalancerSpec> {
    let lb = &inv.load_balancer;
    let mode = LbMode::parse(&lb.mode.value).map_or_else(
        || {
            refuse(
                "loadBalancer.mode",
                Some(&lb.mode),
                format!(
                    "{:?} is not a mode (expected {})",
                    lb.mode.value,
                    LbMode::NAMES
                ),
            )
        },
        Ok,
    )?;
    let ep = Some(&inv.control_plane_endpoint);
    let mut vip = None;
    let mut interface = None;
    match mode {
        LbMode::External => {
            for (field, set) in [
                ("vip", lb.vip.as_ref()),
                ("interface", lb.interface.as_ref()),
            ] {
                if let Some(t) = set {
                    return refuse(format!("loadBalancer.{field}"), Some(t), "is only used by haproxy-keepalived and kube-vip: an external load balancer is configured outside cpkeep");
                }
            }
            if let Some(n) = lb.nodes.first() {
                return refuse(
                    "loadBalancer.nodes",
                    Some(&n.name),
                    "dedicated hosts are only used by haproxy-keepalived",
                );
            }
        }
        LbMode::HaproxyKeepalived | LbMode::KubeVip => {
            let daemon = if mode == LbMode::KubeVip {
                "kube-vip"
            } else {
                "keepalived"
            };
            let Some(v) = &lb.vip else {
                return refuse(
                    "loadBalancer.vip",
                    Some(&lb.mode),
                    format!(
                        "{} needs a vip: the address {daemon} moves between hosts",
                        mode.as_str()
                    ),
                );
            };
            let ip: IpAddr = v.value.parse().or_else(|_| {
                refuse(
                    "loadBalancer.vip",
                    Some(v),
                    format!("{:?} is not an IP address", v.value),
                )
            })?;
            usable_ip(ip)
                .or_else(|why| refuse("loadBalancer.vip", Some(v), format!("{ip} {why}")))?;
            for (subnet, what) in [(&net.pod_subnet, "pod"), (&net.service_subnet, "service")] {
                if subnet.contains(&ip) {
                    return refuse(
                        "loadBalancer.vip",
                        Some(v),
                        format!("{ip} is inside the {what} subnet {subnet}"),
                    );
                }
            }
            if let Some(n) = everyone.iter().find(|n| n.address == Host::Ip(ip)) {
                return refuse("loadBalancer.vip", Some(v), format!("{ip} is node {}'s address: the VIP must be a free address that moves between hosts", n.name));
            }
            if let Some(ep_ip) = endpoint.host.ip() {
                if ep_ip != ip {
                    return refuse("controlPlaneEndpoint", ep, format!("the endpoint's host {ep_ip} is not the vip {ip}: clients would bypass the load balancer"));
                }
            }
            let Some(i) = &lb.interface else {
                return refuse(
                    "loadBalancer.interface",
                    Some(&lb.mode),
                    format!(
                        "{} needs the network interface the VIP is announced on (e.g. eth0)",
                        mode.as_str()
                    ),
                );
            };
            let valid = !i.value.is_empty()
                && i.value.len() <= 15
                && !i.value.contains(['/', ':'])
                && !i.value.chars().any(|c| c.is_whitespace() || c.is_control())
                && i.value != "."
                && i.value != "..";
            if !valid {
                return refuse("loadBalancer.interface", Some(i), format!("{:?} is not a network interface name (1-15 characters, no '/', ':' or spaces)", i.value));
            }
            vip = Some(ip);
            interface = Some(i.value.clone());
        }
    }
    match mode {
        LbMode::KubeVip => {
            if let Some(n) = lb.nodes.first() {
                return refuse("loadBalancer.nodes", Some(&n.name), "kube-vip runs on the control-plane nodes; dedicated hosts are only used by haproxy-keepalived");
            }
            if endpoint.port != APISERVER_BIND_PORT {
                return refuse("controlPlaneEndpoint", ep, format!(
                    "kube-vip in ARP mode only moves the VIP: clients reach the apiserver's own port, so the endpoint's port must be {APISERVER_BIND_PORT}, not {}", endpoint.port));
            }
        }
        LbMode::HaproxyKeepalived if nodes.is_empty() => {
            if endpoint.port == APISERVER_BIND_PORT {
                return refuse("controlPlaneEndpoint", ep, format!(
                    "port {APISERVER_BIND_PORT} collides with the apiserver's bind port on the control-plane nodes where haproxy runs: use another port, e.g. 8443"));
            }
        }
        LbMode::HaproxyKeepalived if nodes.len() == 1 => {
            return refuse("loadBalancer.nodes", Some(&lb.nodes[0].name), "one load balancer host is a single point of failure: give keepalived at least 2 hosts, or none to run it on the control-plane nodes");
        }
        LbMode::HaproxyKeepalived | LbMode::External => {}
    }
    Ok(LoadBalancerSpec {
        mode,
        vip,
        interface,
        nodes,
        port: endpoint.port,
    })
}

fn cni(t: &Text, base: &Path) -> Result<CniSpec> {
    let field = "cni.manifest";
    let s = t.value.trim();
    if let Some(rest) = s.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.contains(char::is_whitespace) {
            return refuse(field, Some(t), format!("{s:?} is not an https URL"));
        }
        return Ok(CniSpec::Url { url: s.to_string() });
    }
    if s.contains("://") {
        return refuse(field, Some(t), format!("{s:?}: only https URLs are accepted (a manifest fetched over plain http can be altered in transit)"));
    }
    if s.is_empty() {
        return refuse(field, Some(t), "is empty");
    }
    let path = base.join(s);
    let bytes = std::fs::read(&path).or_else(|e| {
        refuse(
            field,
            Some(t),
            format!(
                "cannot read {}: {}",
                path.display(),
                crate::certs::error::io_reason(&e)
            ),
        )
    })?;
    Ok(CniSpec::File {
        path,
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// A host: an IP address or a DNS name.
fn host(s: &str) -> std::result::Result<Host, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    dns_name(s)
        .map_err(|why| format!("{s:?} is neither an IP address nor a DNS name: it {why}"))?;
    Ok(Host::Dns(s.to_ascii_lowercase()))
}

/// An address a node or VIP can really have.
fn usable_ip(ip: IpAddr) -> std::result::Result<(), String> {
    if ip.is_loopback() && !crate::testhooks::allow_loopback() {
        return Err("is a loopback address: every node would reach itself".into());
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Err("is not a host address".into());
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() || v4.is_link_local() {
            return Err("is not a routable host address".into());
        }
    }
    Ok(())
}

fn same_host(a: &Host, b: &Host) -> bool {
    match (a, b) {
        (Host::Ip(x), Host::Ip(y)) => x == y,
        (Host::Dns(x), Host::Dns(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// An RFC 1123 label: 1-63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn dns_label(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may only hold lower-case letters, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// An RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn dns_subdomain(s: &str) -> std::result::Result<(), String> {
    if s.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    s.split('.').try_for_each(dns_label)
}

/// A DNS name as written in configuration (case-insensitive), not all-numeric.
fn dns_name(s: &str) -> std::result::Result<(), String> {
    let lower = s.to_ascii_lowercase();
    dns_subdomain(&lower)?;
    if lower
        .split('.')
        .next_back()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("looks like a malformed IP address".into());
    }
    Ok(())
}
