//! Tests of the planner as a whole: every refusal, the kubeadm configurations read back through the
//! strict types in every API version, load balancer mode and distribution, golden files for the HA
//! guide's example, and the bundle on disk (idempotent re-runs, modes, adopted CAs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::kubeadm::{self, Document};
use super::secrets::{CertificateKey, Secrets, Token};
use super::validate::{validate, ValidateOptions};
use super::*;

/// The HA guide's example: nodes 192.168.1.10–12 behind the VIP 192.168.1.20.
const GUIDE: &str = "apiVersion: cpkeep/v1alpha1
kind: Cluster
name: prod
kubernetesVersion: v1.31.4
controlPlaneEndpoint: 192.168.1.20:8443
loadBalancer:
  mode: haproxy-keepalived
  vip: 192.168.1.20
  interface: eth0
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, dnsDomain: cluster.local}
controlPlane:
  - {name: cp1, address: 192.168.1.10, ssh: {user: root, port: 22, identityFile: ~/.ssh/id_ed25519}}
  - {name: cp2, address: 192.168.1.11}
  - {name: cp3, address: 192.168.1.12}
workers: []
certificates: {keyAlgorithm: RSA-2048, validity: 365d, caValidity: 3650d, distribution: upload-certs}
";

fn fixture_pki() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16/pki")
}

fn spec_of(text: &str) -> Result<spec::ClusterSpec, String> {
    let inv = inventory::parse(text)?;
    validate(
        &inv,
        &ValidateOptions {
            allow_even: false,
            base_dir: PathBuf::from("."),
        },
    )
    .map_err(|r| format!("{}: {}", r.field, r.reason))
}

fn fixed_secrets() -> Secrets {
    Secrets {
        token: Token::parse("abcdef.0123456789abcdef").unwrap(),
        certificate_key: CertificateKey::parse(&"0123456789abcdef".repeat(4)).unwrap(),
    }
}

// ---------------------------------------------------------------------------------- refusals

/// (what, edit of the guide's inventory, the field path refused, words the reason must hold).
fn refusals() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let g = GUIDE;
    let cp4 = g.replace(
        "  - {name: cp3, address: 192.168.1.12}\n",
        "  - {name: cp3, address: 192.168.1.12}\n  - {name: cp4, address: 192.168.1.13}\n",
    );
    let cp2 = g.replace("  - {name: cp3, address: 192.168.1.12}\n", "");
    vec![
        (
            "even count",
            cp4,
            "controlPlane",
            "4 members tolerate 1 failure(s), like 3, and need 3 for quorum",
        ),
        ("fewer than 3", cp2, "controlPlane", "not highly available"),
        (
            "a local node with ssh settings",
            g.replace(
                "{name: cp2, address: 192.168.1.11}",
                "{name: cp2, address: 192.168.1.11, ssh: {local: true, port: 2222}}",
            ),
            "controlPlane[1].ssh.local",
            "reached without ssh",
        ),
        (
            "two local nodes",
            g.replace(
                "{name: cp2, address: 192.168.1.11}",
                "{name: cp2, address: 192.168.1.11, ssh: {local: true}}",
            )
            .replace(
                "{name: cp3, address: 192.168.1.12}",
                "{name: cp3, address: 192.168.1.12, ssh: {local: true}}",
            ),
            "controlPlane[2].ssh.local",
            "only one node can be the machine cpkeep runs on",
        ),
        (
            "duplicate name",
            g.replace("name: cp2", "name: cp1"),
            "controlPlane[1].name",
            "used by another node",
        ),
        (
            "duplicate address",
            g.replace("192.168.1.11", "192.168.1.10"),
            "controlPlane[1].address",
            "also node cp1's address",
        ),
        (
            "endpoint is a node",
            g.replace(
                "controlPlaneEndpoint: 192.168.1.20:8443",
                "controlPlaneEndpoint: 192.168.1.10:8443",
            ),
            "controlPlaneEndpoint",
            "node cp1's address",
        ),
        (
            "vip in pod subnet",
            g.replace("vip: 192.168.1.20", "vip: 10.244.0.9")
                .replace("192.168.1.20:8443", "10.244.0.9:8443"),
            "loadBalancer.vip",
            "inside the pod subnet",
        ),
        (
            "vip in service subnet",
            g.replace("vip: 192.168.1.20", "vip: 10.96.0.9")
                .replace("192.168.1.20:8443", "10.96.0.9:8443"),
            "loadBalancer.vip",
            "inside the service subnet",
        ),
        (
            "vip is a node",
            g.replace("vip: 192.168.1.20", "vip: 192.168.1.11")
                .replace("192.168.1.20:8443", "lb.example.com:8443"),
            "loadBalancer.vip",
            "node cp2's address",
        ),
        (
            "endpoint is not the vip",
            g.replace("192.168.1.20:8443", "192.168.1.21:8443"),
            "controlPlaneEndpoint",
            "is not the vip",
        ),
        (
            "overlapping subnets",
            g.replace(
                "serviceSubnet: 10.96.0.0/12",
                "serviceSubnet: 10.244.128.0/20",
            ),
            "networking.serviceSubnet",
            "overlaps the pod subnet",
        ),
        (
            "node in pod subnet",
            g.replace("podSubnet: 10.244.0.0/16", "podSubnet: 192.168.0.0/16"),
            "controlPlane[0].address",
            "inside the pod subnet",
        ),
        (
            "invalid CIDR",
            g.replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0/33"),
            "networking.podSubnet",
            "not a CIDR",
        ),
        (
            "host bits",
            g.replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.1.0/16"),
            "networking.podSubnet",
            "did you mean 10.244.0.0/16",
        ),
        (
            "service subnet too large",
            g.replace("serviceSubnet: 10.96.0.0/12", "serviceSubnet: 10.0.0.0/8"),
            "networking.serviceSubnet",
            "too large",
        ),
        (
            "invalid address",
            g.replace("address: 192.168.1.11", "address: 192.168.1.311"),
            "controlPlane[1].address",
            "neither an IP address nor a DNS name",
        ),
        (
            "control plane by name",
            g.replace("address: 192.168.1.11", "address: cp2.example.com"),
            "controlPlane[1].address",
            "not an IP address",
        ),
        (
            "loopback node",
            g.replace("address: 192.168.1.11", "address: 127.0.0.2"),
            "controlPlane[1].address",
            "loopback",
        ),
        (
            "invalid port",
            g.replace("192.168.1.20:8443", "192.168.1.20:99999"),
            "controlPlaneEndpoint",
            "not a port",
        ),
        (
            "no port",
            g.replace("192.168.1.20:8443", "192.168.1.20"),
            "controlPlaneEndpoint",
            "has no port",
        ),
        (
            "invalid DNS name",
            g.replace("192.168.1.20:8443", "api_server.example.com:8443"),
            "controlPlaneEndpoint",
            "neither an IP address nor a DNS name",
        ),
        (
            "invalid ssh port",
            g.replace("port: 22", "port: 0"),
            "controlPlane[0].ssh.port",
            "not a port",
        ),
        (
            "bad node name",
            g.replace("name: cp2", "name: CP_2"),
            "controlPlane[1].name",
            "lower-case",
        ),
        (
            "bad cluster name",
            g.replace("name: prod", "name: Prod.Cluster"),
            "name",
            "lower-case",
        ),
        (
            "old version",
            g.replace("v1.31.4", "v1.21.14"),
            "kubernetesVersion",
            "older than v1.22",
        ),
        (
            "unparsable version",
            g.replace("v1.31.4", "latest"),
            "kubernetesVersion",
            "not a Kubernetes version",
        ),
        (
            "unknown keyAlgorithm",
            g.replace("RSA-2048", "RSA-1024"),
            "certificates.keyAlgorithm",
            "not a kubeadm encryptionAlgorithm",
        ),
        (
            "RSA-4096 before 1.31",
            g.replace("RSA-2048", "RSA-4096")
                .replace("v1.31.4", "v1.30.5"),
            "certificates.keyAlgorithm",
            "needs Kubernetes 1.31",
        ),
        (
            "ECDSA-P384 before 1.34",
            g.replace("RSA-2048", "ECDSA-P384"),
            "certificates.keyAlgorithm",
            "needs Kubernetes 1.34",
        ),
        (
            "validity before 1.31",
            g.replace("validity: 365d", "validity: 90d")
                .replace("v1.31.4", "v1.30.5"),
            "certificates.validity",
            "365d only",
        ),
        (
            "validity beyond the CA",
            g.replace("validity: 365d", "validity: 4000d"),
            "certificates.validity",
            "outlive the CA",
        ),
        (
            "unknown distribution",
            g.replace("distribution: upload-certs", "distribution: scp"),
            "certificates.distribution",
            "not a distribution",
        ),
        (
            "unknown mode",
            g.replace("mode: haproxy-keepalived", "mode: nginx"),
            "loadBalancer.mode",
            "not a mode",
        ),
        (
            "keepalived without interface",
            g.replace("  interface: eth0\n", ""),
            "loadBalancer.interface",
            "needs the network interface",
        ),
        (
            "kube-vip without interface",
            g.replace("  interface: eth0\n", "")
                .replace("haproxy-keepalived", "kube-vip")
                .replace(":8443", ":6443"),
            "loadBalancer.interface",
            "needs the network interface",
        ),
        (
            "kube-vip off 6443",
            g.replace("haproxy-keepalived", "kube-vip"),
            "controlPlaneEndpoint",
            "must be 6443",
        ),
        (
            "haproxy port collision",
            g.replace(":8443", ":6443"),
            "controlPlaneEndpoint",
            "collides with the apiserver's bind port",
        ),
        (
            "one LB host",
            g.replace(
                "  interface: eth0\n",
                "  interface: eth0\n  nodes: [{name: lb1, address: 192.168.1.30}]\n",
            ),
            "loadBalancer.nodes",
            "single point of failure",
        ),
        (
            "external with a vip",
            g.replace("mode: haproxy-keepalived", "mode: external")
                .replace(
                    "  vip: 192.168.1.20\n  interface: eth0\n",
                    "  vip: 192.168.1.20\n",
                ),
            "loadBalancer.vip",
            "only used by",
        ),
        (
            "plain http CNI",
            format!("{g}cni: {{manifest: http://example.com/calico.yaml}}\n"),
            "cni.manifest",
            "only https",
        ),
        (
            "missing CNI file",
            format!("{g}cni: {{manifest: no-such-calico.yaml}}\n"),
            "cni.manifest",
            "no such file",
        ),
        (
            "wrong apiVersion",
            g.replace("cpkeep/v1alpha1", "cpkeep/v1"),
            "apiVersion",
            "not supported",
        ),
        (
            "wrong kind",
            g.replace("kind: Cluster", "kind: Bundle"),
            "kind",
            "not supported",
        ),
    ]
}

#[test]
fn every_refusal_names_its_field_and_why() {
    for (what, text, field, words) in refusals() {
        let inv = inventory::parse(&text).unwrap_or_else(|e| panic!("{what}: does not parse: {e}"));
        let r = validate(
            &inv,
            &ValidateOptions {
                allow_even: false,
                base_dir: PathBuf::from("."),
            },
        )
        .err()
        .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(r.field.path, field, "{what}: {}", r.reason);
        assert!(
            r.reason.contains(words),
            "{what}: {:?} lacks {words:?}",
            r.reason
        );
        assert!(!r.reason.contains('\n'), "{what}: one line");
        if field != "controlPlane" {
            assert!(r.field.line.is_some(), "{what}: no line for {field}");
        }
    }
}

#[test]
fn allow_even_accepts_four_members() {
    let text = GUIDE.replace(
        "  - {name: cp3, address: 192.168.1.12}\n",
        "  - {name: cp3, address: 192.168.1.12}\n  - {name: cp4, address: 192.168.1.13}\n",
    );
    let inv = inventory::parse(&text).unwrap();
    let spec = validate(
        &inv,
        &ValidateOptions {
            allow_even: true,
            base_dir: PathBuf::from("."),
        },
    )
    .unwrap();
    assert_eq!((spec.quorum(), spec.fault_tolerance()), (3, 1));
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    for (text, field, line) in [
        (
            GUIDE.replace("kind: Cluster\n", "kind: Cluster\nnodes: []\n"),
            "nodes",
            3,
        ),
        (
            GUIDE.replace("interface: eth0", "interface: eth0\n  vrid: 51"),
            "vrid",
            10,
        ),
        (
            GUIDE.replace("port: 22,", "port: 22, agent: true,"),
            "agent",
            12,
        ),
    ] {
        let e = inventory::parse(&text).unwrap_err();
        assert!(e.contains(&format!("unknown field `{field}`")), "{e}");
        assert!(e.contains(&format!("line {line}")), "{e}");
        assert!(!e.contains('\n'));
    }
    assert!(inventory::parse("").unwrap_err().contains("empty"));
    assert!(inventory::parse("apiVersion: [").is_err());
}

// ------------------------------------------------------------------- kubeadm configurations

fn variants() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for version in ["v1.30.5", "v1.31.4", "v1.34.1"] {
        for (mode, extra) in [
            ("haproxy-keepalived", ""),
            ("haproxy-keepalived-dedicated", "  nodes: [{name: lb1, address: 192.168.1.30}, {name: lb2, address: 192.168.1.31}]\n"),
            ("kube-vip", ""),
            ("external", ""),
        ] {
            for dist in ["upload-certs", "copy"] {
                let mut t = GUIDE.replace("v1.31.4", version).replace("upload-certs", dist);
                match mode {
                    "kube-vip" => t = t.replace("haproxy-keepalived", "kube-vip").replace(":8443", ":6443"),
                    "external" => {
                        t = t
                            .replace("haproxy-keepalived", "external")
                            .replace("  vip: 192.168.1.20\n  interface: eth0\n", "")
                            .replace("192.168.1.20:8443", "api.prod.example.com:443")
                    }
                    _ => t = t.replace("  interface: eth0\n", &format!("  interface: eth0\n{extra}")),
                }
                t.push_str("workers2: []\n");
                let t = t.replace("workers2: []\n", "").replace("workers: []", "workers: [{name: w1, address: 192.168.1.40}]");
                out.push((format!("{version} {mode} {dist}"), t));
            }
        }
    }
    out
}

#[test]
fn kubeadm_configs_round_trip_through_the_strict_types() {
    let secrets = fixed_secrets();
    let hash = "sha256:".to_string() + &"ab".repeat(32);
    for (what, text) in variants() {
        let spec = spec_of(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
        let v1beta4 = spec.kubernetes_version.minor >= 31;
        for node in plan::nodes(&spec)
            .iter()
            .filter(|n| n.role != kubeadm::Role::LoadBalancer)
        {
            let n = spec
                .control_plane
                .iter()
                .chain(&spec.workers)
                .find(|x| x.name == node.name)
                .unwrap();
            let yaml = kubeadm::render(&spec, n, node.role, &secrets, &hash).unwrap();
            let docs =
                kubeadm::parse(&yaml).unwrap_or_else(|e| panic!("{what} {}: {e}\n{yaml}", n.name));
            assert!(!yaml.contains("unsafeSkipCAVerification"), "{what}");
            let upload = text.contains("upload-certs");
            match node.role {
                kubeadm::Role::Init => {
                    assert_eq!(docs.len(), 3, "{what}");
                    match (&docs[0], &docs[1], v1beta4) {
                        (Document::V1Beta4Init(i), Document::V1Beta4Cluster(c), true) => {
                            assert_eq!(i.certificate_key.is_some(), upload, "{what}");
                            assert_eq!(i.bootstrap_tokens[0].token, "abcdef.0123456789abcdef");
                            assert_eq!(c.encryption_algorithm.as_deref(), Some("RSA-2048"));
                            assert_eq!(c.certificate_validity_period.as_deref(), Some("8760h0m0s"));
                            assert_eq!(
                                c.control_plane_endpoint.as_deref(),
                                Some(spec.control_plane_endpoint.to_string().as_str())
                            );
                            let sans = &c.api_server.as_ref().unwrap().cert_sans;
                            for want in ["cp1", "192.168.1.10", "cp3", "192.168.1.12"] {
                                assert!(
                                    sans.iter().any(|s| s == want),
                                    "{what}: {want} not in {sans:?}"
                                );
                            }
                        }
                        (Document::V1Beta3Init(i), Document::V1Beta3Cluster(c), false) => {
                            assert_eq!(i.certificate_key.is_some(), upload, "{what}");
                            assert_eq!(
                                c.api_server
                                    .as_ref()
                                    .unwrap()
                                    .timeout_for_control_plane
                                    .as_deref(),
                                Some("4m0s")
                            );
                            assert!(c.feature_gates.is_empty());
                        }
                        other => panic!("{what}: unexpected documents {other:?}"),
                    }
                    assert!(matches!(docs[2], Document::Kubelet(_)));
                }
                kubeadm::Role::ControlPlane | kubeadm::Role::Worker => {
                    assert_eq!(docs.len(), 1);
                    let (discovery, cp) = match &docs[0] {
                        Document::V1Beta4Join(j) if v1beta4 => (
                            j.discovery.bootstrap_token.clone().unwrap(),
                            j.control_plane
                                .clone()
                                .map(|c| (c.certificate_key, c.local_api_endpoint)),
                        ),
                        Document::V1Beta3Join(j) if !v1beta4 => (
                            j.discovery.bootstrap_token.clone().unwrap(),
                            j.control_plane
                                .clone()
                                .map(|c| (c.certificate_key, c.local_api_endpoint)),
                        ),
                        other => panic!("{what}: unexpected document {other:?}"),
                    };
                    assert_eq!(
                        discovery.ca_cert_hashes,
                        vec![hash.clone()],
                        "{what}: the CA is pinned"
                    );
                    assert_eq!(
                        discovery.api_server_endpoint.as_deref(),
                        Some(spec.control_plane_endpoint.to_string().as_str())
                    );
                    match node.role {
                        kubeadm::Role::ControlPlane => {
                            let (key, endpoint) =
                                cp.unwrap_or_else(|| panic!("{what}: no controlPlane"));
                            assert_eq!(key.is_some(), upload, "{what}");
                            assert_eq!(
                                endpoint.unwrap().advertise_address,
                                Some(n.address.to_string())
                            );
                        }
                        _ => assert!(cp.is_none(), "{what}: a worker joins without controlPlane"),
                    }
                }
                kubeadm::Role::LoadBalancer => unreachable!(),
            }
        }
    }
}

#[test]
fn ecdsa_on_v1beta3_uses_the_feature_gate() {
    let spec = spec_of(
        &GUIDE
            .replace("RSA-2048", "ECDSA-P256")
            .replace("v1.31.4", "v1.29.9"),
    )
    .unwrap();
    let yaml = kubeadm::render(
        &spec,
        spec.first(),
        kubeadm::Role::Init,
        &fixed_secrets(),
        "sha256:00",
    )
    .unwrap();
    let docs = kubeadm::parse(&yaml).unwrap();
    let Document::V1Beta3Cluster(c) = &docs[1] else {
        panic!("{docs:?}")
    };
    assert_eq!(c.feature_gates.get("PublicKeysECDSA"), Some(&true));
}

#[test]
fn the_strict_types_refuse_unknown_fields() {
    let spec = spec_of(GUIDE).unwrap();
    let yaml = kubeadm::render(
        &spec,
        &spec.control_plane[1],
        kubeadm::Role::ControlPlane,
        &fixed_secrets(),
        "sha256:00",
    )
    .unwrap();
    let bad = yaml.replace("discovery:\n", "discovery:\n  timeout: 5m0s\n");
    let e = kubeadm::parse(&bad).unwrap_err();
    assert!(
        e.contains("unknown field `timeout`"),
        "v1beta4 moved discovery.timeout to timeouts: {e}"
    );
    let bad = yaml.replace(
        "apiVersion: kubeadm.k8s.io/v1beta4",
        "apiVersion: kubeadm.k8s.io/v1beta2",
    );
    assert!(kubeadm::parse(&bad).unwrap_err().contains("unknown"));
}

#[test]
fn static_pods_read_back_and_kube_vip_uses_super_admin_only_on_the_first_node_from_1_29() {
    let spec = spec_of(
        &GUIDE
            .replace("haproxy-keepalived", "kube-vip")
            .replace(":8443", ":6443"),
    )
    .unwrap();
    for (i, n) in spec.control_plane.iter().enumerate() {
        let files = lb::host_files(&spec, n).unwrap();
        assert_eq!(files.len(), 1);
        let pod = lb::pod::Pod::parse(&files[0].text).unwrap();
        let path = &pod.spec.volumes[0].host_path.path;
        let want = if i == 0 {
            lb::kubevip::SUPER_ADMIN_CONF
        } else {
            lb::kubevip::ADMIN_CONF
        };
        assert_eq!(path, want, "{}", n.name);
        let env: Vec<_> = pod.spec.containers[0]
            .env
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone()))
            .collect();
        assert!(env.contains(&("address", Some("192.168.1.20".to_string()))));
        assert!(env.contains(&("vip_interface", Some("eth0".to_string()))));
    }
    let old = spec_of(
        &GUIDE
            .replace("haproxy-keepalived", "kube-vip")
            .replace(":8443", ":6443")
            .replace("v1.31.4", "v1.28.2"),
    )
    .unwrap();
    let files = lb::host_files(&old, old.first()).unwrap();
    assert!(!files[0].text.contains("super-admin"));
    let guide = spec_of(GUIDE).unwrap();
    for f in lb::host_files(&guide, guide.first())
        .unwrap()
        .iter()
        .filter(|f| f.rel.starts_with("manifests/"))
    {
        lb::pod::Pod::parse(&f.text).unwrap_or_else(|e| panic!("{}: {e}", f.rel));
    }
}

#[test]
fn keepalived_priorities_are_distinct_and_the_router_id_follows_the_name() {
    let spec = spec_of(GUIDE).unwrap();
    let hosts = spec.lb_hosts();
    let prio = |i: usize| {
        let conf = lb::keepalived::render(&spec, hosts, i);
        conf.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("priority ")
                    .map(|p| p.parse::<u32>().unwrap())
            })
            .unwrap()
    };
    assert!(prio(0) > prio(1) && prio(1) > prio(2));
    let first = lb::keepalived::render(&spec, hosts, 0);
    assert!(first.contains("state MASTER") && first.contains("unicast_peer"));
    assert!(lb::keepalived::render(&spec, hosts, 1).contains("state BACKUP"));
    assert_ne!(
        lb::keepalived::virtual_router_id("prod"),
        lb::keepalived::virtual_router_id("staging")
    );
}

// ---------------------------------------------------------------------------- golden files

#[test]
fn golden_files_for_the_guides_example() {
    let spec = spec_of(GUIDE).unwrap();
    let pki = pki::load(&fixture_pki(), crate::certs::issue::KeySpec::Rsa2048).unwrap();
    let (_, files) = render_bundle(&spec, &pki, &fixed_secrets(), false).unwrap();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/bootstrap/golden");
    let update = std::env::var_os("CPKEEP_UPDATE_GOLDEN").is_some();
    let mut compared = 0;
    for f in files
        .iter()
        .filter(|f| !f.rel.starts_with("pki/") && !f.rel.starts_with("secrets/"))
    {
        let path = golden.join(&f.rel);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.bytes).unwrap();
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (CPKEEP_UPDATE_GOLDEN=1 writes it)", path.display())
        });
        assert!(want == f.bytes, "{} differs from its golden file (CPKEEP_UPDATE_GOLDEN=1 rewrites them; review the diff)", f.rel);
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} golden files compared");
}

// ------------------------------------------------------------------------ bundle on disk

fn write_inventory(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cluster.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn read_tree(dir: &Path, sub: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join(sub)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_rerun_keeps_pki_and_secrets_and_reports_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(tmp.path(), GUIDE);
    let out = tmp.path().join("bundle");
    let opts = PlanOptions {
        inventory: inv.clone(),
        out: out.clone(),
        ..Default::default()
    };
    let first = plan(&opts).unwrap();
    assert!(first
        .changes
        .iter()
        .all(|c| c.change == bundle::ChangeKind::Created));
    let pki_before = read_tree(&out, "pki");
    let secrets_before = read_tree(&out, "secrets");
    assert_eq!(pki_before.len(), 8);

    let again = plan(&opts).unwrap();
    assert!(
        again
            .changes
            .iter()
            .all(|c| c.change == bundle::ChangeKind::Unchanged),
        "{:?}",
        again.changes
    );
    assert_eq!(read_tree(&out, "pki"), pki_before);
    assert_eq!(read_tree(&out, "secrets"), secrets_before);

    // A worker added: its config appears, the plan and RUNBOOK change, the CAs and secrets do not.
    write_inventory(
        tmp.path(),
        &GUIDE.replace(
            "workers: []",
            "workers: [{name: w1, address: 192.168.1.40}]",
        ),
    );
    let grown = plan(&opts).unwrap();
    let changed = |r: &PlanReport, k: bundle::ChangeKind| -> Vec<String> {
        r.changes
            .iter()
            .filter(|c| c.change == k)
            .map(|c| c.path.clone())
            .collect()
    };
    assert_eq!(
        changed(&grown, bundle::ChangeKind::Created),
        vec!["nodes/w1/kubeadm.yaml"]
    );
    assert_eq!(
        changed(&grown, bundle::ChangeKind::Updated),
        vec!["RUNBOOK.md", "plan.json"]
    );
    assert_eq!(read_tree(&out, "pki"), pki_before);
    // And removed again.
    write_inventory(tmp.path(), GUIDE);
    let shrunk = plan(&opts).unwrap();
    assert_eq!(
        changed(&shrunk, bundle::ChangeKind::Removed),
        vec!["nodes/w1/kubeadm.yaml"]
    );
    assert!(!out.join("nodes/w1").exists());

    // --rotate-token: a new token in the secrets and every kubeadm config, the same CAs and key.
    let rotated = plan(&PlanOptions {
        rotate_token: true,
        ..opts.clone()
    })
    .unwrap();
    assert_ne!(read_tree(&out, "secrets")[0], secrets_before[0]);
    assert_eq!(
        read_tree(&out, "secrets")[1],
        secrets_before[1],
        "the certificate key is kept"
    );
    assert!(changed(&rotated, bundle::ChangeKind::Updated)
        .contains(&"nodes/cp2/kubeadm.yaml".to_string()));
    assert_eq!(read_tree(&out, "pki"), pki_before);
}

#[test]
fn bundle_modes_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(tmp.path(), GUIDE);
    let out = tmp.path().join("bundle");
    let report = plan(&PlanOptions {
        inventory: inv,
        out: out.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(mode(&out), 0o700);
    for f in &report.plan.files {
        let m = mode(&out.join(&f.path));
        let secret = f.path.ends_with(".key")
            || f.path.starts_with("secrets/")
            || f.path.ends_with("kubeadm.yaml");
        assert_eq!(m == 0o600, secret, "{} is {m:o}", f.path);
        assert_eq!(f.secret, secret, "{}", f.path);
        assert_eq!(f.mode, format!("{m:04o}"));
    }
    assert_eq!(mode(&out.join("nodes/cp1/check_apiserver.sh")), 0o755);
    // A loosened key is put back to 0600 without rewriting it.
    std::fs::set_permissions(
        out.join("pki/ca.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let inv = tmp.path().join("cluster.yaml");
    let again = plan(&PlanOptions {
        inventory: inv.clone(),
        out: out.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(again
        .changes
        .iter()
        .any(|c| c.path == "pki/ca.key" && c.change == bundle::ChangeKind::Mode));
    assert_eq!(mode(&out.join("pki/ca.key")), 0o600);
    // RUNBOOK.md holds the secrets only with show_secrets, and is then 0600.
    let token = std::fs::read_to_string(out.join("secrets/bootstrap-token")).unwrap();
    let runbook = std::fs::read_to_string(out.join("RUNBOOK.md")).unwrap();
    assert!(!runbook.contains(token.trim()));
    plan(&PlanOptions {
        inventory: inv,
        out: out.clone(),
        show_secrets: true,
        ..Default::default()
    })
    .unwrap();
    assert!(std::fs::read_to_string(out.join("RUNBOOK.md"))
        .unwrap()
        .contains(token.trim()));
    assert_eq!(mode(&out.join("RUNBOOK.md")), 0o600);
    let plan_json = std::fs::read_to_string(out.join("plan.json")).unwrap();
    assert!(
        !plan_json.contains(token.trim()),
        "plan.json holds no secret"
    );
}

#[test]
fn a_directory_that_is_not_a_bundle_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(tmp.path(), GUIDE);
    std::fs::write(tmp.path().join("notes.txt"), "x").unwrap();
    let e = plan(&PlanOptions {
        inventory: inv.clone(),
        out: tmp.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("not part of a cpkeep bundle"), "{e}");
    assert_eq!(e.class(), crate::failure::FailureClass::Unusable);
    let e = plan(&PlanOptions {
        inventory: inv,
        out: tmp.path().join("notes.txt"),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[test]
fn pki_from_adopts_existing_cas() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(tmp.path(), GUIDE);
    let out = tmp.path().join("bundle");
    let opts = PlanOptions {
        inventory: inv,
        out: out.clone(),
        pki_from: Some(fixture_pki()),
        ..Default::default()
    };
    let report = plan(&opts).unwrap();
    for rel in [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "sa.key",
        "sa.pub",
    ] {
        assert_eq!(
            std::fs::read(out.join("pki").join(rel)).unwrap(),
            std::fs::read(fixture_pki().join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(
        !out.join("pki/apiserver.crt").exists(),
        "only the CAs and the sa pair are adopted"
    );
    let ca = crate::certs::pem::parse_certificate_pem(
        &std::fs::read(fixture_pki().join("ca.crt")).unwrap(),
    )
    .unwrap();
    assert_eq!(report.plan.ca_cert_hash, pki::discovery_hash(&ca));
    // Re-run with the same --pki-from: fine. A bundle with its own CAs refuses other ones.
    plan(&opts).unwrap();
    let other = tempfile::tempdir().unwrap();
    let inv2 = write_inventory(other.path(), GUIDE);
    plan(&PlanOptions {
        inventory: inv2.clone(),
        out: other.path().join("b"),
        ..Default::default()
    })
    .unwrap();
    let e = plan(&PlanOptions {
        inventory: inv2,
        out: other.path().join("b"),
        pki_from: Some(fixture_pki()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("holds other CAs than --pki-from"),
        "{e}"
    );
}

#[test]
fn pki_from_refuses_a_missing_key_and_a_ca_that_is_not_one() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(tmp.path(), GUIDE);
    let copy = |skip: &str, swap: Option<(&str, &str)>| {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etcd")).unwrap();
        for rel in [
            "ca.crt",
            "ca.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            "etcd/ca.crt",
            "etcd/ca.key",
            "sa.key",
            "sa.pub",
        ] {
            if rel != skip {
                std::fs::copy(fixture_pki().join(rel), d.path().join(rel)).unwrap();
            }
        }
        if let Some((to, from)) = swap {
            std::fs::copy(fixture_pki().join(from), d.path().join(to)).unwrap();
        }
        d
    };
    let cases = [
        (copy("ca.key", None), "ca.key", "without the CA key"),
        (copy("etcd/ca.crt", None), "etcd/ca.crt", "is missing"),
        (
            copy("", Some(("ca.crt", "apiserver.crt"))),
            "ca.crt",
            "not a CA",
        ),
        (
            copy("", Some(("front-proxy-ca.key", "ca.key"))),
            "front-proxy-ca.key",
            "is not the key of",
        ),
        (
            copy("sa.pub", None),
            "sa.pub",
            "missing while sa.key exists",
        ),
    ];
    for (dir, file, words) in cases {
        let e = plan(&PlanOptions {
            inventory: inv.clone(),
            out: tmp.path().join("b"),
            pki_from: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(file) && text.contains(words),
            "{file}: {text}"
        );
        assert!(!tmp.path().join("b").exists(), "{file}: nothing written");
    }
}
