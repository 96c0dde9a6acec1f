//! Preflight: what every node must be before anything changes anywhere. One script per node (one
//! round trip) prints labelled sections; the pure functions here judge them, so each rule is
//! unit-tested on recorded outputs. Never prints, never changes a node.

use std::net::IpAddr;

use serde::Serialize;

use crate::bootstrap::kubeadm::Role;
use crate::bootstrap::version::KubeVersion;

/// The sections the script prints, in order, each after a `@@name` line.
pub const SCRIPT: &str = "echo @@kubeadm; kubeadm version -o short 2>&1; \
echo @@kubelet; kubelet --version 2>&1; \
echo @@kubectl; command -v kubectl 2>&1; \
echo @@runtime; for s in /run/containerd/containerd.sock /var/run/crio/crio.sock /var/run/cri-dockerd.sock; do test -S $s && echo $s; done; \
echo @@swaps; cat /proc/swaps 2>&1; \
echo @@ipforward; cat /proc/sys/net/ipv4/ip_forward 2>&1; \
echo @@listen; ss -Htln 2>&1; \
echo @@leftovers; for f in /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/kubelet.conf /etc/kubernetes/admin.conf; do test -e $f && echo $f; done; \
echo @@lb; command -v haproxy keepalived 2>&1; \
echo @@clock; date -u +%s.%N";

/// One node's preflight verdict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodePreflight {
    pub node: String,
    /// Every failed check, one sentence each.
    pub failed: Vec<String>,
    /// Files an earlier, unfinished run of this bundle left (a half-finished join).
    pub leftovers: Vec<String>,
}

/// What the node must be.
pub struct Expect<'a> {
    pub node: &'a str,
    pub role: Role,
    pub address: &'a str,
    pub version: &'a KubeVersion,
    /// Ports that must be free on the node's address (none for a node already set up).
    pub ports: Vec<u16>,
    /// kubectl is needed on the first node (CNI, node checks).
    pub needs_kubectl: bool,
    /// Leftovers are expected (an unfinished step of this bundle's own run): not a failure.
    pub leftovers_allowed: bool,
    /// The runner's clock when the answer arrived minus the node's, seconds (signed).
    pub clock_offset: Option<f64>,
    /// Half the round trip, added to the tolerance.
    pub clock_uncertainty: f64,
}

/// Splits the script's output into its sections.
pub fn sections(output: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_insert_with(Vec::new);
        } else if let Some(c) = &current {
            if let Some(v) = out.get_mut(c) {
                v.push(line.to_string());
            }
        }
    }
    out
}

/// The node's clock from the `clock` section (seconds since the epoch).
pub fn node_clock(s: &std::collections::BTreeMap<String, Vec<String>>) -> Option<f64> {
    s.get("clock")?.first()?.trim().parse().ok()
}

/// Judges one node.
pub fn judge(output: &str, e: &Expect<'_>) -> NodePreflight {
    let s = sections(output);
    let get = |k: &str| s.get(k).cloned().unwrap_or_default();
    let mut failed = Vec::new();
    let want = e.version;

    if e.role != Role::LoadBalancer {
        // kubeadm: the same minor as kubernetesVersion (kubeadm deploys its own minor).
        let kubeadm = get("kubeadm").join(" ");
        match KubeVersion::parse(kubeadm.trim()) {
            Ok(v) if v.minor == want.minor => {}
            Ok(v) => failed.push(format!(
                "kubeadm is {v}, the plan needs v1.{}.x (kubeadm deploys its own minor version)",
                want.minor
            )),
            Err(_) => failed.push(format!(
                "kubeadm is missing or unusable: `kubeadm version -o short` printed {:?}",
                short(&kubeadm)
            )),
        }
        // kubelet: at most kubernetesVersion's minor, at least one below it (kubeadm's skew rule).
        let kubelet = get("kubelet").join(" ");
        let kv = kubelet
            .split_whitespace()
            .find(|w| w.starts_with('v'))
            .and_then(|w| KubeVersion::parse(w).ok());
        match kv {
            Some(v) if v.minor <= want.minor && v.minor + 1 >= want.minor => {}
            Some(v) => failed.push(format!(
                "kubelet is {v}: it must be v1.{} or one minor older",
                want.minor
            )),
            None => failed.push(format!(
                "kubelet is missing or unusable: `kubelet --version` printed {:?}",
                short(&kubelet)
            )),
        }
        if get("runtime").iter().all(|l| l.trim().is_empty()) {
            failed.push(
                "no container runtime socket (containerd, CRI-O or cri-dockerd) is listening"
                    .to_string(),
            );
        }
        let swaps: Vec<String> = get("swaps")
            .into_iter()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        if !swaps.is_empty() {
            failed.push(format!(
                "swap is on ({}): the kubelet refuses to start with swap (swapoff -a, and remove it from /etc/fstab)",
                swaps.join(", ")
            ));
        }
        let fwd = get("ipforward").join("");
        if fwd.trim() != "1" {
            failed.push(format!(
                "net.ipv4.ip_forward is {:?}, it must be 1 (pod traffic is routed through the node)",
                fwd.trim()
            ));
        }
        if e.needs_kubectl && get("kubectl").iter().all(|l| !l.trim().starts_with('/')) {
            failed.push(
                "kubectl is missing: the first control-plane node runs the pod network's and the node checks' kubectl"
                    .to_string(),
            );
        }
    } else {
        let lb = get("lb");
        for tool in ["haproxy", "keepalived"] {
            if !lb.iter().any(|l| l.trim().ends_with(&format!("/{tool}"))) {
                failed.push(format!(
                    "{tool} is not installed (apply configures it, it does not install it)"
                ));
            }
        }
    }

    let busy = busy_ports(&get("listen"), e.address, &e.ports);
    if !busy.is_empty() {
        failed.push(format!(
            "port(s) {} already in use on {}",
            busy.iter()
                .map(|(p, who)| format!("{p} ({who})"))
                .collect::<Vec<_>>()
                .join(", "),
            e.address
        ));
    }

    match e.clock_offset {
        Some(off) if off.abs() > 1.0 + e.clock_uncertainty => failed.push(format!(
            "the clock is {:.1} s {} the runner's (more than 1 s: certificates and etcd leases need synchronised clocks; run chrony or systemd-timesyncd)",
            off.abs(),
            if off > 0.0 { "behind" } else { "ahead of" }
        )),
        Some(_) => {}
        None => failed.push("the clock could not be read (`date -u +%s.%N`)".to_string()),
    }

    let leftovers: Vec<String> = get("leftovers")
        .into_iter()
        .filter(|l| l.starts_with('/'))
        .collect();
    if !leftovers.is_empty() && !e.leftovers_allowed {
        failed.push(format!(
            "already set up ({} exist): it belongs to a cluster or an earlier attempt apply did not make; run `kubeadm reset -f` there yourself if it is to be reused",
            leftovers.join(", ")
        ));
    }
    NodePreflight {
        node: e.node.to_string(),
        failed,
        leftovers,
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Ports of `wanted` that some listener holds on `address` (or on every address).
fn busy_ports(listen: &[String], address: &str, wanted: &[u16]) -> Vec<(u16, String)> {
    let node_ip: Option<IpAddr> = address.parse().ok();
    let mut out = Vec::new();
    for line in listen {
        // ss -Htln: State Recv-Q Send-Q Local:Port Peer:Port [Process]
        let Some(local) = line.split_whitespace().nth(3) else {
            continue;
        };
        let Some((host, port)) = local.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if !wanted.contains(&port) {
            continue;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.split('%').next().unwrap_or(host);
        let wildcard = matches!(host, "*" | "0.0.0.0" | "::");
        let same = node_ip.is_some_and(|ip| host.parse::<IpAddr>().ok() == Some(ip));
        if (wildcard || same) && !out.iter().any(|(p, _)| *p == port) {
            out.push((port, local.to_string()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(listen: &str, extra: &str) -> String {
        format!(
            "@@kubeadm\nv1.31.4\n@@kubelet\nKubernetes v1.30.2\n@@kubectl\n/usr/bin/kubectl\n@@runtime\n/run/containerd/containerd.sock\n\
             @@swaps\nFilename\tType\tSize\tUsed\tPriority\n@@ipforward\n1\n@@listen\n{listen}\n@@leftovers\n{extra}\n@@lb\n@@clock\n1765000000.5\n"
        )
    }

    fn expect(v: &KubeVersion) -> Expect<'_> {
        Expect {
            node: "cp1",
            role: Role::Init,
            address: "10.0.0.1",
            version: v,
            ports: vec![6443, 2379, 2380, 10250],
            needs_kubectl: true,
            leftovers_allowed: false,
            clock_offset: Some(0.2),
            clock_uncertainty: 0.01,
        }
    }

    #[test]
    fn a_ready_node_passes_and_other_addresses_do_not_block_its_ports() {
        let v = KubeVersion::parse("v1.31.4").unwrap();
        let out = good(
            "LISTEN 0 4096 10.0.0.2:2379 0.0.0.0:*\nLISTEN 0 4096 127.0.0.1:10250 0.0.0.0:*",
            "",
        );
        assert_eq!(judge(&out, &expect(&v)).failed, Vec::<String>::new());
    }

    #[test]
    fn every_failed_check_is_named() {
        let v = KubeVersion::parse("v1.31.4").unwrap();
        let out = "@@kubeadm\nv1.30.1\n@@kubelet\nKubernetes v1.28.0\n@@kubectl\n@@runtime\n@@swaps\nFilename Type\n/dev/vda3 partition 1 0 -2\n\
                   @@ipforward\n0\n@@listen\nLISTEN 0 4096 *:6443 *:*\nLISTEN 0 4096 [::]:2380 [::]:*\n@@leftovers\n/etc/kubernetes/admin.conf\n@@lb\n@@clock\n1\n";
        let mut e = expect(&v);
        e.clock_offset = Some(-3.0);
        let f = judge(out, &e).failed.join("\n");
        for needle in [
            "kubeadm is v1.30.1",
            "kubelet is v1.28.0",
            "no container runtime socket",
            "swap is on (/dev/vda3)",
            "net.ipv4.ip_forward is \"0\"",
            "kubectl is missing",
            "port(s) 2380 ([::]:2380), 6443 (*:6443)",
            "3.0 s ahead of",
            "already set up (/etc/kubernetes/admin.conf",
        ] {
            assert!(f.contains(needle), "{needle:?} missing in:\n{f}");
        }
    }

    #[test]
    fn a_missing_kubeadm_and_leftovers_of_its_own_run() {
        let v = KubeVersion::parse("v1.31.4").unwrap();
        let out = good("", "/etc/kubernetes/manifests/etcd.yaml")
            .replace("v1.31.4", "sh: kubeadm: not found");
        let mut e = expect(&v);
        e.leftovers_allowed = true;
        let r = judge(&out, &e);
        assert_eq!(r.leftovers, vec!["/etc/kubernetes/manifests/etcd.yaml"]);
        assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
        assert!(r.failed[0].contains("kubeadm is missing"));
    }
}
