//! `bootstrap apply` and `cluster failover-drill` on real test nodes (tests/integration/nodes.rs:
//! real sshd per node, each node its own mount namespace and loopback address, real etcd run by the
//! kubelet double from the manifests the kubeadm double writes) behind a real haproxy made from the
//! bundle's own haproxy.cfg. What kubeadm, the kubelet and a container runtime would do is done by
//! the doubles (tests/doubles/node_double), which check their inputs against the strict kubeadm types.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{self, cpkeep_env, Run};
use crate::nodes::{NodesSpec, TestNodes};

/// The control-plane endpoint's port (haproxy on the control-plane nodes: not 6443).
const LB_PORT: u16 = 8443;

/// An inventory for the nodes: node1..3 as the control plane behind the VIP 127.77.K.20.
/// The pod network manifest the first test applies (pinned by sha256 in the plan).
const CNI: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: test-cni, namespace: kube-system}\ndata: {net: 10.244.0.0/16}\n";

fn inventory(nodes: &TestNodes, distribution: &str, ssh_ports: &[u16]) -> (String, String) {
    let subnet = nodes.nodes[0].ip.rsplit_once('.').unwrap().0.to_string();
    let vip = format!("{subnet}.20");
    let mut cps = String::new();
    // node1..3 are the control plane; any further node is a worker.
    let mut workers = String::new();
    for (i, (n, port)) in nodes.nodes.iter().zip(ssh_ports).enumerate() {
        let list = if i < 3 { &mut cps } else { &mut workers };
        list.push_str(&format!(
            "  - {{name: {}, address: {}, ssh: {{user: root, port: {port}, identityFile: {}}}}}\n",
            n.name,
            n.ip,
            nodes.identity.display()
        ));
    }
    let text = format!(
        "apiVersion: cpkeep/v1alpha1
kind: Cluster
name: drill
kubernetesVersion: v1.31.4
controlPlaneEndpoint: {vip}:{LB_PORT}
loadBalancer: {{mode: haproxy-keepalived, vip: {vip}, interface: lo}}
networking: {{podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12}}
controlPlane:
{cps}workers:{}
{workers}
CNI_LINE
certificates: {{keyAlgorithm: ECDSA-P256, distribution: {distribution}}}
",
        if workers.is_empty() { " []" } else { "" }
    );
    (text, vip)
}

/// A planned bundle for the nodes, and the real haproxy in front of their apiservers.
struct Cluster {
    nodes: TestNodes,
    bundle: PathBuf,
    vip: String,
    _haproxy: Haproxy,
}

struct Haproxy(std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn plan(nodes: TestNodes, distribution: &str, ssh_ports: Option<Vec<u16>>) -> Cluster {
    plan_with(nodes, distribution, ssh_ports, false).await
}

async fn plan_with(
    nodes: TestNodes,
    distribution: &str,
    ssh_ports: Option<Vec<u16>>,
    cni: bool,
) -> Cluster {
    let ports = ssh_ports.unwrap_or_else(|| nodes.nodes.iter().map(|n| n.port).collect());
    let (text, vip) = inventory(&nodes, distribution, &ports);
    let text = if cni {
        std::fs::write(nodes.scratch().join("cni.yaml"), CNI).unwrap();
        text.replace("CNI_LINE", "cni: {manifest: cni.yaml}")
    } else {
        text.replace("CNI_LINE\n", "")
    };
    let inv = nodes.scratch().join("cluster.yaml");
    std::fs::write(&inv, text).unwrap();
    let bundle = nodes.scratch().join("bundle");
    let r = cpkeep_env(
        &[
            "bootstrap".into(),
            "plan".into(),
            "--inventory".into(),
            inv.display().to_string(),
            "--out".into(),
            bundle.display().to_string(),
        ],
        &[("CPKEEP_TEST_ALLOW_LOOPBACK", "1".to_string())],
    )
    .await;
    assert_eq!(r.code, 0, "plan: {}", r.stderr);
    let haproxy = start_haproxy(&bundle, &vip, nodes.scratch()).await;
    Cluster {
        nodes,
        bundle,
        vip,
        _haproxy: haproxy,
    }
}

/// The bundle's own haproxy.cfg, bound to the VIP only (the nodes share one network namespace
/// here, so the VIP holder's haproxy stands for all; keepalived cannot move addresses here).
async fn start_haproxy(bundle: &Path, vip: &str, dir: &Path) -> Haproxy {
    let cfg = std::fs::read_to_string(bundle.join("nodes/node1/haproxy.cfg")).unwrap();
    let wildcard = format!("    bind *:{LB_PORT}\n");
    assert!(cfg.contains(&wildcard), "{cfg}");
    let cfg = crate::bootstrap_lb::fit_maxconn(
        cfg.replace(&wildcard, &format!("    bind {vip}:{LB_PORT}\n")),
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, cfg).unwrap();
    let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let child = std::process::Command::new(harness::tool("haproxy"))
        .args(["-db", "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start haproxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect((vip, LB_PORT))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "haproxy does not listen on {vip}:{LB_PORT}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Haproxy(child)
}

impl Cluster {
    async fn apply(&self, extra: &[&str]) -> Run {
        self.apply_env(extra, &[]).await
    }

    async fn apply_env(&self, extra: &[&str], env: &[(&str, String)]) -> Run {
        let mut args: Vec<String> = [
            "-o",
            "json",
            "bootstrap",
            "apply",
            "--bundle",
            &self.bundle.display().to_string(),
            "--ssh-config",
            &self.nodes.ssh_config.display().to_string(),
            "--wait",
            "90s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        cpkeep_env(&args, env).await
    }

    async fn drill(&self, extra: &[&str]) -> Run {
        let mut args: Vec<String> = [
            "-o",
            "json",
            "cluster",
            "failover-drill",
            "--bundle",
            &self.bundle.display().to_string(),
            "--ssh-config",
            &self.nodes.ssh_config.display().to_string(),
            "--wait",
            "60s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        cpkeep_env(&args, &[]).await
    }

    fn state(&self) -> Option<serde_json::Value> {
        std::fs::read(self.bundle.join("state.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn finished(&self) -> Vec<String> {
        self.state()
            .map(|s| {
                s["finished"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The etcd member list as node1's etcd reports it, through etcdctl with the client
    /// certificate the kubeadm double made (independent of cpkeep).
    fn etcdctl(&self, args: &str) -> std::process::Output {
        let n = &self.nodes.nodes[0];
        let etcdctl = harness::Etcd::V35.etcd().with_file_name("etcdctl");
        n.exec(&format!(
            "{} --cacert=/etc/kubernetes/pki/etcd/ca.crt \
             --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
             --dial-timeout=2s --command-timeout=3s {args}",
            etcdctl.display()
        ))
    }

    /// Whether node `i`'s etcd answers a health check.
    fn endpoint_healthy(&self, i: usize) -> bool {
        let ip = &self.nodes.nodes[i].ip;
        self.etcdctl(&format!("--endpoints=https://{ip}:2379 endpoint health"))
            .status
            .success()
    }

    fn members(&self) -> Vec<serde_json::Value> {
        let n = &self.nodes.nodes[0];
        let etcdctl = harness::Etcd::V35.etcd().with_file_name("etcdctl");
        let out = n.exec(&format!(
            "{} --endpoints=https://{}:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
             --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
             member list -w json",
            etcdctl.display(),
            n.ip
        ));
        assert!(
            out.status.success(),
            "etcdctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["members"].as_array().cloned().unwrap_or_default()
    }
}

fn logs(c: &Cluster) -> String {
    c.nodes
        .nodes
        .iter()
        .map(|n| format!("--- {} kubelet.log:\n{}", n.name, n.log("kubelet.log")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_builds_three_control_plane_nodes_then_a_rerun_does_nothing_and_the_drill_passes() {
    let c = plan_with(TestNodes::start(NodesSpec::new(4)), "copy", None, true).await;

    // --dry-run: every node's commands in order, nothing contacted or written.
    let dry = c.apply(&["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let steps = dry.json()["steps"].as_array().unwrap().clone();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "load-balancer:node1",
            "init:node1",
            "cni",
            "join:node2",
            "join:node3",
            "worker:node4",
            "verify"
        ]
    );
    let token = std::fs::read_to_string(c.bundle.join("secrets/bootstrap-token")).unwrap();
    assert!(!dry.stdout.contains(token.trim()));
    assert!(c.state().is_none());
    assert!(!c.nodes.nodes[0]
        .path("/etc/kubernetes/manifests")
        .join("etcd.yaml")
        .exists());

    let run = c.apply(&[]).await;
    assert_eq!(run.code, 0, "apply: {}\n{}", run.stderr, logs(&c));
    let r = run.json();
    assert!(
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "ran"),
        "{r}"
    );
    assert_eq!(r["etcd"]["voters"], 3, "{r}");
    assert_eq!(r["etcd"]["healthyVoters"], 3, "{r}");
    assert_eq!(r["etcd"]["learners"], 0, "{r}");
    // Joined one at a time: the stderr progress shows each join finished before the next began.
    let started3 = run.stderr.find("join:node3: join node3").unwrap();
    let done2 = run.stderr.find("join:node2: done in").unwrap();
    assert!(done2 < started3, "{}", run.stderr);
    // etcd itself, asked with etcdctl: three started voters named after the nodes.
    let mut names: Vec<String> = c
        .members()
        .iter()
        .map(|m| {
            assert_ne!(m["isLearner"], true, "{m}");
            m["name"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["node1", "node2", "node3"]);
    assert_eq!(c.finished().len(), 7);
    // The worker joined as a worker: registered, no etcd member, no control-plane pods.
    let w = &c.nodes.nodes[3];
    assert!(w.path("/etc/kubernetes").join("kubelet.conf").exists());
    assert!(!w
        .path("/etc/kubernetes/manifests")
        .join("etcd.yaml")
        .exists());
    // The pod network went through kubectl on the first node, byte for byte.
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(CNI.as_bytes()));
    let got = c.etcdctl(&format!(
        "--endpoints=https://{}:2379 get --print-value-only /registry/cpkeep-double/applied/{sha}",
        c.nodes.nodes[0].ip
    ));
    assert!(
        String::from_utf8_lossy(&got.stdout).contains("name: test-cni"),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let admin = c.bundle.join("admin.conf");
    assert_eq!(
        std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The CAs reached every control-plane node with their modes; the kubeadm config stayed private.
    for n in &c.nodes.nodes[..3] {
        for (f, mode) in [
            ("/etc/kubernetes/pki/ca.key", 0o600),
            ("/etc/kubernetes/pki/ca.crt", 0o644),
            ("/etc/kubernetes/cpkeep/kubeadm.yaml", 0o600),
        ] {
            let m = std::fs::metadata(n.path(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{} {f}", n.name);
        }
    }

    // A re-run does nothing.
    let again = c.apply(&[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let a = again.json();
    assert!(
        a["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "already-done"),
        "{a}"
    );
    assert_eq!(c.members().len(), 3);

    // The failover drill: a follower stopped, quorum holds, the endpoint answers through haproxy,
    // a write goes through, the member comes back.
    let d = c.drill(&[]).await;
    assert_eq!(d.code, 0, "drill: {}\n{}", d.stdout, d.stderr);
    let dj = d.json();
    let phases: Vec<(&str, bool)> = dj["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        phases,
        [
            ("before", true),
            ("stop", true),
            ("down", true),
            ("quorum", true),
            ("endpoint", true),
            ("write", true),
            ("start", true),
            ("rejoin", true)
        ],
        "{dj}"
    );
    assert_eq!(dj["during"]["faultTolerance"], 0, "{dj}");
    assert_eq!(dj["after"]["faultTolerance"], 1, "{dj}");
    let drilled = dj["node"].as_str().unwrap().to_string();
    let n = c.nodes.nodes.iter().find(|n| n.name == drilled).unwrap();
    assert!(n
        .path("/etc/kubernetes/manifests")
        .join("etcd.yaml")
        .exists());

    // One member down already: the drill would take the last spare one and refuses.
    let n3 = &c.nodes.nodes[2];
    let parked =
        n3.exec("mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.test-down");
    assert!(parked.status.success());
    // Wait until node3's member stops answering (its kubelet double stops etcd), so the drill
    // sees the cluster degraded.
    let down_deadline = Instant::now() + Duration::from_secs(30);
    while c.endpoint_healthy(2) {
        assert!(Instant::now() < down_deadline, "node3's etcd still answers");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let h = c.drill(&["--node", "node2"]).await;
    assert_eq!(h.code, 2, "{}{}", h.stdout, h.stderr);
    let hj = h.json();
    assert_eq!(hj["verdict"], "CRITICAL", "{hj}");
    assert!(
        hj["reasons"].to_string().contains("last spare member"),
        "{hj}"
    );
    assert_eq!(hj["phases"].as_array().unwrap().len(), 1, "{hj}");
    // Back to three; then the drill on a node itself (`--local`), as an operator runs it there.
    let back =
        n3.exec("mv /etc/kubernetes/etcd.yaml.test-down /etc/kubernetes/manifests/etcd.yaml");
    assert!(back.status.success());
    let up_deadline = Instant::now() + Duration::from_secs(60);
    while !c.endpoint_healthy(2) {
        assert!(
            Instant::now() < up_deadline,
            "node3's etcd did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let local = n3.exec(&format!(
        "{} -o json cluster failover-drill --local --control-plane-endpoint {}:{LB_PORT} \
         --endpoints https://{}:2379 --wait 60s",
        env!("CARGO_BIN_EXE_cpkeep"),
        c.vip,
        n3.ip
    ));
    let lj: serde_json::Value = serde_json::from_slice(&local.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&local.stderr)));
    assert_eq!(local.status.code(), Some(0), "{lj}");
    assert_eq!(lj["node"], "node3", "{lj}");
    assert!(
        lj["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ok"] == true),
        "{lj}"
    );
    assert!(n3
        .path("/etc/kubernetes/manifests")
        .join("kube-apiserver.yaml")
        .exists());

    // Nothing of node2 was parked.
    assert!(c.nodes.nodes[1]
        .path("/etc/kubernetes/manifests")
        .join("etcd.yaml")
        .exists());
    assert!(c.nodes.nodes[1]
        .path("/etc/kubernetes/manifests")
        .join("kube-apiserver.yaml")
        .exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_that_failed_after_its_member_was_added_is_cleaned_and_retried() {
    let mut nodes = TestNodes::start(NodesSpec::new(3));
    nodes.set_double(1, "FAIL_JOIN_AFTER_MEMBER_ADD", "1");
    let mut c = plan(nodes, "upload-certs", None).await;

    let run = c.apply(&[]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, logs(&c));
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("join:node2") && line.contains("node2"),
        "{line}"
    );
    assert_eq!(c.finished(), ["load-balancer:node1", "init:node1"]);
    // etcd holds node2's member that never came up.
    let members = c.members();
    assert_eq!(members.len(), 2, "{members:?}");

    // node3 alone: the quorum gate refuses while node2's member is there, naming it.
    let gated = c.apply(&["--node", "node3"]).await;
    assert_eq!(gated.code, 2, "{}", gated.stderr);
    let line = gated.assert_one_clear_line();
    assert!(line.contains("quorum gate"), "{line}");
    let stale_id = members
        .iter()
        .find(|m| m["name"] != "node1")
        .map(|m| format!("{:x}", m["ID"].as_u64().unwrap()))
        .unwrap();
    assert!(line.contains(&stale_id), "{line} lacks {stale_id}");
    assert!(!c.nodes.nodes[2]
        .path("/etc/kubernetes/manifests")
        .join("etcd.yaml")
        .exists());

    // The cause fixed, the re-run removes the stale member, resets node2 and completes. Its
    // clock says two hours passed since init uploaded kubeadm-certs: it uploads them again first.
    c.nodes.set_double(1, "FAIL_JOIN_AFTER_MEMBER_ADD", "0");
    let uploaded = c.state().unwrap()["certsUploadedAt"]
        .as_str()
        .unwrap()
        .to_string();
    let uploaded_at = chrono::DateTime::parse_from_rfc3339(&uploaded).unwrap();
    let later = (uploaded_at + chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let uploaded = uploaded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let again = c
        .apply_env(&[], &[("CPKEEP_TEST_NOW", later.clone())])
        .await;
    assert_eq!(again.code, 0, "{}\n{}", again.stderr, logs(&c));
    assert!(
        again.stderr.contains(&format!(
            "re-uploaded kubeadm-certs: the last upload, at {uploaded}"
        )),
        "{}",
        again.stderr
    );
    assert_eq!(c.state().unwrap()["certsUploadedAt"], later.as_str());
    // The first re-upload was enough for node3: the journal's clock did not move on.
    assert!(
        again
            .stderr
            .contains(&format!("kubeadm-certs uploaded at {later} is still valid")),
        "{}",
        again.stderr
    );
    let r = again.json();
    let cleaned = r["cleaned"].to_string();
    assert!(
        cleaned.contains(&format!("removed etcd member {stale_id}")),
        "{cleaned}"
    );
    assert!(cleaned.contains("kubeadm reset -f"), "{cleaned}");
    assert_eq!(r["etcd"]["voters"], 3, "{r}");
    assert_eq!(r["etcd"]["healthyVoters"], 3, "{r}");
    assert_eq!(c.members().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_failures_change_nothing_anywhere() {
    let mut spec = NodesSpec::new(3);
    spec.no_ip_forward = vec![2];
    let c = plan(TestNodes::start(spec), "copy", None).await;
    let run = c.apply(&[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(
        line.contains("preflight failed, nothing was changed"),
        "{line}"
    );
    assert!(
        line.contains("node3: net.ipv4.ip_forward is \"0\""),
        "{line}"
    );
    assert!(
        !line.contains("node1:") && !line.contains("node2:"),
        "{line}"
    );
    assert!(c.state().is_none());
    // Not a file anywhere (the kubelet double made only its empty manifests directory).
    for n in &c.nodes.nodes {
        let files = harness::files_ending(&n.path("/etc/kubernetes"), "");
        assert!(files.is_empty(), "{} has {files:?}", n.name);
    }

    // An unreachable node: the same, naming it.
    let nodes = TestNodes::start(NodesSpec::new(3));
    let mut ports: Vec<u16> = nodes.nodes.iter().map(|n| n.port).collect();
    ports[1] = closed_port(&nodes.nodes[1].ip);
    let c = plan(nodes, "copy", Some(ports)).await;
    let run = c.apply(&[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.assert_one_clear_line();
    assert!(line.contains("node2: unreachable"), "{line}");
    assert!(c.state().is_none());
    assert!(harness::files_ending(&c.nodes.nodes[0].path("/etc/kubernetes"), "").is_empty());
}

/// A port on `ip` nothing listens on.
fn closed_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// Bad input to apply and the drill: one line naming the file, flag or node and the cause, exit
/// 3, before any node is contacted.
#[tokio::test]
async fn bad_input_is_refused_before_any_node_is_contacted() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        cpkeep::bootstrap::example::EXAMPLE.replace("cni:\n  manifest: calico.yaml", ""),
    )
    .unwrap();
    let bundle = tmp.path().join("bundle");
    let made = crate::harness::cpkeep(&[
        "bootstrap".into(),
        "plan".into(),
        "--inventory".into(),
        inv.display().to_string(),
        "--out".into(),
        bundle.display().to_string(),
    ])
    .await;
    assert_eq!(made.code, 0, "{}", made.stderr);
    let b = bundle.display().to_string();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["bootstrap", "apply", "--bundle", "/nonexistent/bundle"],
            vec!["/nonexistent/bundle/plan.json", "not a bundle"],
        ),
        (
            vec!["bootstrap", "apply", "--bundle", &b, "--node", "cp9"],
            vec!["--node cp9", "no such node", "cp1, cp2, cp3"],
        ),
        (
            vec!["bootstrap", "apply", "--bundle", &b, "--node", "cp2"],
            vec!["--node cp2", "init:cp1 has not run yet"],
        ),
        (
            vec![
                "bootstrap",
                "apply",
                "--bundle",
                &b,
                "--ssh-config",
                "/nonexistent/ssh_config",
            ],
            vec!["--ssh-config /nonexistent/ssh_config"],
        ),
        (
            vec!["bootstrap", "apply", "--bundle", &b, "--wait", "0s"],
            vec!["--wait", "more than zero"],
        ),
        (
            vec!["cluster", "failover-drill", "--bundle", &b, "--node", "lb1"],
            vec!["--node lb1", "not a control-plane node"],
        ),
        (
            vec!["cluster", "failover-drill", "--local"],
            vec!["--control-plane-endpoint"],
        ),
    ];
    for (args, needles) in cases {
        let run =
            crate::harness::cpkeep(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).await;
        assert_eq!(run.code, 3, "{args:?}: {}{}", run.stdout, run.stderr);
        let line = run.assert_one_clear_line();
        for n in needles {
            assert!(line.contains(n), "{args:?}: {line:?} lacks {n:?}");
        }
    }
    // A journal that is not one.
    std::fs::write(bundle.join("state.json"), "{\"kind\": 1}").unwrap();
    let run = crate::harness::cpkeep(&[
        "bootstrap".into(),
        "apply".into(),
        "--bundle".into(),
        b.clone(),
    ])
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run
        .assert_one_clear_line()
        .contains("state.json: not an apply journal"));
    // Nothing was written to the bundle by any of it.
    assert!(!bundle.join("admin.conf").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_right_after_a_join_resumes_with_its_checks() {
    let c = plan(TestNodes::start(NodesSpec::new(3)), "upload-certs", None).await;
    let stopped = c
        .apply_env(
            &[],
            &[(
                "CPKEEP_TEST_FAILPOINTS",
                "apply-after-kubeadm-join=fail".to_string(),
            )],
        )
        .await;
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(stopped
        .assert_one_clear_line()
        .contains("step join:node2 on node2"));
    assert_eq!(c.finished(), ["load-balancer:node1", "init:node1"]);
    assert_eq!(c.members().len(), 2);

    // node2 is a member already: the re-run neither resets it nor joins it again, it checks it.
    let again = c.apply(&[]).await;
    assert_eq!(again.code, 0, "{}\n{}", again.stderr, logs(&c));
    let node2_join = again
        .stderr
        .lines()
        .skip_while(|l| !l.contains("join:node2: join node2"))
        .take_while(|l| !l.contains("join:node2: done in"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        node2_join.contains("etcd members are exactly node1, node2"),
        "{node2_join}"
    );
    assert!(!node2_join.contains("node2$ kubeadm join"), "{node2_join}");
    assert!(!again.stderr.contains("kubeadm reset"), "{}", again.stderr);
    // What follows the join in its step still ran: node2's own load balancer pods.
    assert!(c.nodes.nodes[1]
        .path("/etc/kubernetes/manifests")
        .join("haproxy.yaml")
        .exists());
    let r = again.json();
    assert_eq!(r["cleaned"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["etcd"]["voters"], 3, "{r}");
    assert_eq!(c.members().len(), 3);
}
