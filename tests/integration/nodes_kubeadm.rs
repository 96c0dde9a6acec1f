//! The kubeadm/kubelet/kubectl doubles on SSH test nodes, driven through cpkeep::remote with a real
//! bundle from `cpkeep bootstrap plan`: init brings up real etcd with TLS in node 1's namespace,
//! a control-plane join makes it two voters, a join that fails after adding its member leaves a
//! learner behind (what `bootstrap apply` must clean), reset stops and wipes the node.

use std::path::Path;
use std::time::Duration;

use cpkeep::remote::{Script, Session};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::harness::{cpkeep_env, tool};
use crate::nodes::{NodesSpec, TestNodes};

/// An inventory for the nodes (external load balancer on an address no node has) and its bundle.
async fn bundle(nodes: &TestNodes, distribution: &str) -> std::path::PathBuf {
    let dir = nodes.scratch().join("plan");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cni.yaml"),
        "apiVersion: v1\nkind: List\nitems: []\n",
    )
    .unwrap();
    let ip = |i: usize| nodes.nodes[i].ip.clone();
    let vip = format!("{}.200", ip(0).rsplit_once('.').unwrap().0);
    let mut cps = String::new();
    for (i, n) in nodes.nodes.iter().enumerate() {
        cps.push_str(&format!("  - {{name: {}, address: {}}}\n", n.name, ip(i)));
    }
    let inv = format!(
        "apiVersion: cpkeep/v1alpha1\nkind: Cluster\nname: test\nkubernetesVersion: v1.31.4\n\
         controlPlaneEndpoint: {vip}:8443\nloadBalancer: {{mode: external}}\n\
         networking: {{podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, dnsDomain: cluster.local}}\n\
         controlPlane:\n{cps}cni: {{manifest: cni.yaml}}\n\
         certificates: {{keyAlgorithm: ECDSA-P256, validity: 365d, caValidity: 3650d, distribution: {distribution}}}\n"
    );
    std::fs::write(dir.join("cluster.yaml"), inv).unwrap();
    let out = dir.join("bundle");
    let args: Vec<String> = ["bootstrap", "plan", "--inventory"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            dir.join("cluster.yaml").display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ])
        .collect();
    let run = cpkeep_env(&args, &[("CPKEEP_TEST_ALLOW_LOOPBACK", "1".into())]).await;
    assert_eq!(run.code, 0, "plan: {}", run.stderr);
    out
}

/// Copies the shared CA files of the bundle to a node, as apply would.
async fn copy_cas(s: &Session, bundle: &Path) {
    for f in [
        "ca.crt",
        "ca.key",
        "sa.key",
        "sa.pub",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
    ] {
        let body = std::fs::read(bundle.join("pki").join(f))
            .unwrap_or_else(|e| panic!("bundle pki/{f}: {e}"));
        let mode = if f.ends_with(".key") { 0o600 } else { 0o644 };
        s.write_file(&format!("/etc/kubernetes/pki/{f}"), &body, mode)
            .await
            .unwrap();
    }
}

async fn put_config(s: &Session, bundle: &Path, node: &str) {
    let body = std::fs::read(bundle.join("nodes").join(node).join("kubeadm.yaml")).unwrap();
    s.write_file("/etc/kubernetes/cpkeep/kubeadm.yaml", &body, 0o600)
        .await
        .unwrap();
}

async fn etcd_client(nodes: &TestNodes, bundle: &Path) -> Client {
    let n = &nodes.nodes[0];
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(bundle.join("pki/etcd/ca.crt")).unwrap(),
        ))
        .identity(Identity::from_pem(
            std::fs::read(n.path("/etc/kubernetes/pki/apiserver-etcd-client.crt")).unwrap(),
            std::fs::read(n.path("/etc/kubernetes/pki/apiserver-etcd-client.key")).unwrap(),
        ));
    Client::connect(
        [format!("https://{}:2379", n.ip)],
        Some(
            ConnectOptions::new()
                .with_tls(tls)
                .with_connect_timeout(Duration::from_secs(3)),
        ),
    )
    .await
    .unwrap()
}

fn secret(bundle: &Path, name: &str) -> String {
    std::fs::read_to_string(bundle.join("secrets").join(name))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn init_join_and_a_failed_join_on_ssh_nodes() {
    let mut nodes = TestNodes::start(NodesSpec::new(3));
    let bundle = bundle(&nodes, "upload-certs").await;
    let key = secret(&bundle, "certificate-key");
    let s1 = nodes.session(0).await;
    assert_eq!(
        s1.run_ok(&Script::new("kubeadm version -o short"))
            .await
            .unwrap(),
        "v1.31.4\n"
    );
    assert_eq!(
        s1.run_ok(&Script::new("kubelet --version")).await.unwrap(),
        "Kubernetes v1.31.4\n"
    );
    // Strict: an unknown flag is refused, naming the double.
    let out = s1.run(&Script::new("kubeadm init --bogus")).await.unwrap();
    assert_ne!(out.status, 0);
    assert!(
        out.stderr.contains("unknown flag: --bogus") && out.stderr.contains("test double"),
        "{}",
        out.stderr
    );

    copy_cas(&s1, &bundle).await;
    put_config(&s1, &bundle, "node1").await;
    let init = Script::new(format!(
        "kubeadm init --config /etc/kubernetes/cpkeep/kubeadm.yaml --upload-certs --certificate-key {key}"
    ))
    .secret(key.clone());
    let out = s1.run(&init).await.unwrap();
    assert_eq!(
        out.status,
        0,
        "init: {}\n{}\nkubelet:\n{}",
        out.stdout,
        out.stderr,
        nodes.nodes[0].log("kubelet.log")
    );
    assert!(!out.stdout.contains(&key));

    // Real etcd answers with TLS on node 1's address, one member.
    let mut c = etcd_client(&nodes, &bundle).await;
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "node1");
    // The apiserver certificate verifies for the node's address and the endpoint's host.
    let n1 = &nodes.nodes[0];
    let vip = format!("{}.200", n1.ip.rsplit_once('.').unwrap().0);
    for ip in [n1.ip.as_str(), vip.as_str()] {
        let out = std::process::Command::new(tool("openssl"))
            .args(["verify", "-CAfile"])
            .arg(bundle.join("pki/ca.crt"))
            .args(["-verify_ip", ip])
            .arg(n1.path("/etc/kubernetes/pki/apiserver.crt"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "apiserver cert for {ip}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let admin = std::fs::metadata(n1.path("/etc/kubernetes/admin.conf")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&admin.permissions()) & 0o777,
        0o600
    );

    // Join node 2 as a control-plane node (certificates from the uploaded Secret).
    let s2 = nodes.session(1).await;
    put_config(&s2, &bundle, "node2").await;
    let out = s2
        .run(&Script::new(
            "kubeadm join --config /etc/kubernetes/cpkeep/kubeadm.yaml",
        ))
        .await
        .unwrap();
    assert_eq!(
        out.status,
        0,
        "join: {}\n{}\nkubelet:\n{}",
        out.stdout,
        out.stderr,
        nodes.nodes[1].log("kubelet.log")
    );
    let members = c.member_list().await.unwrap();
    let mut names: Vec<_> = members
        .members()
        .iter()
        .map(|m| (m.name().to_string(), m.is_learner()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![("node1".to_string(), false), ("node2".to_string(), false)]
    );

    // kubectl sees both Nodes.
    let list = s1
        .run_ok(&Script::new(
            "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json",
        ))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");

    // Node 3's join fails after its member was added: a learner is left behind.
    nodes.set_double(2, "FAIL_JOIN_AFTER_MEMBER_ADD", "1");
    let s3 = nodes.session(2).await;
    put_config(&s3, &bundle, "node3").await;
    let out = s3
        .run(&Script::new(
            "kubeadm join --config /etc/kubernetes/cpkeep/kubeadm.yaml",
        ))
        .await
        .unwrap();
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("error execution phase control-plane-join/etcd"),
        "{}",
        out.stderr
    );
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 3, "{}", out.stderr);
    let learners: Vec<_> = members
        .members()
        .iter()
        .filter(|m| m.is_learner())
        .collect();
    assert_eq!(learners.len(), 1, "{:?}", members.members());
    assert!(learners[0]
        .peer_urls()
        .iter()
        .any(|u| u.contains(&nodes.nodes[2].ip)));

    // Retrying without reset is refused by preflight (kubespray#13279); reset stops and wipes.
    nodes.set_double(2, "FAIL_JOIN_AFTER_MEMBER_ADD", "0");
    let out = s3
        .run(&Script::new(
            "kubeadm join --config /etc/kubernetes/cpkeep/kubeadm.yaml",
        ))
        .await
        .unwrap();
    assert!(
        out.stderr
            .contains("[ERROR FileAvailable--etc-kubernetes-manifests-etcd.yaml]"),
        "{}",
        out.stderr
    );
    s3.run_ok(&Script::new("kubeadm reset -f")).await.unwrap();
    let n3 = &nodes.nodes[2];
    assert!(!n3.path("/etc/kubernetes/manifests/etcd.yaml").exists());
    assert!(!n3.path("/etc/kubernetes/pki").exists());
    assert_eq!(
        std::fs::read_dir(n3.path("/var/lib/etcd")).unwrap().count(),
        0
    );
    // The member is still there: reset does not remove it, the caller must.
    assert_eq!(c.member_list().await.unwrap().members().len(), 3);
    for s in [s1, s2, s3] {
        s.close().await;
    }
}

#[tokio::test]
async fn preflight_refuses_a_node_without_ip_forwarding() {
    let mut spec = NodesSpec::new(3);
    spec.no_ip_forward = vec![0];
    let nodes = TestNodes::start(spec);
    let bundle = bundle(&nodes, "copy").await;
    let s = nodes.session(0).await;
    copy_cas(&s, &bundle).await;
    put_config(&s, &bundle, "node1").await;
    let out = s
        .run(&Script::new(
            "kubeadm init --config /etc/kubernetes/cpkeep/kubeadm.yaml",
        ))
        .await
        .unwrap();
    assert_eq!(out.status, 1);
    assert!(
        out.stderr
            .contains("[ERROR FileContent--proc-sys-net-ipv4-ip_forward]"),
        "{}",
        out.stderr
    );
    assert!(!nodes.nodes[0]
        .path("/etc/kubernetes/manifests/etcd.yaml")
        .exists());
    s.close().await;
}
