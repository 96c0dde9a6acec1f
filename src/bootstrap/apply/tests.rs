//! Tests of apply's pure parts on real bundles: the step order (gate before every join, the CAs
//! where the distribution puts them), the bundle checks, the dry run without secrets, and the
//! member and node judgements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::checks::{members_match, nodes_problem};
use super::plan_file::LoadedBundle;
use super::run::{dry_run, ApplyOptions};
use super::steps::{steps, Action, Check};
use crate::bootstrap::{plan, PlanOptions};

const INVENTORY: &str = "apiVersion: cpkeep/v1alpha1
kind: Cluster
name: prod
kubernetesVersion: v1.31.4
controlPlaneEndpoint: 192.168.1.20:8443
loadBalancer: {mode: haproxy-keepalived, vip: 192.168.1.20, interface: eth0}
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12}
controlPlane:
  - {name: cp1, address: 192.168.1.10}
  - {name: cp2, address: 192.168.1.11}
  - {name: cp3, address: 192.168.1.12}
workers: [{name: w1, address: 192.168.1.40}]
certificates: {keyAlgorithm: ECDSA-P256, distribution: DIST}
";

fn bundle(distribution: &str) -> (tempfile::TempDir, LoadedBundle) {
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("cluster.yaml");
    std::fs::write(&inv, INVENTORY.replace("DIST", distribution)).unwrap();
    let out = tmp.path().join("bundle");
    plan(&PlanOptions {
        inventory: inv,
        out: out.clone(),
        ..Default::default()
    })
    .unwrap();
    let b = LoadedBundle::load(&out).unwrap();
    (tmp, b)
}

fn puts(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Put { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn joins_are_one_at_a_time_each_behind_the_gate() {
    let (_t, b) = bundle("upload-certs");
    let s = steps(&b);
    let ids: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "load-balancer:cp1",
            "init:cp1",
            "join:cp2",
            "join:cp3",
            "worker:w1",
            "verify"
        ]
    );
    for join in s.iter().filter(|s| s.is_control_plane_join()) {
        let pos = |want: &dyn Fn(&Action) -> bool| join.actions.iter().position(want).unwrap();
        let refresh = pos(&|a| {
            matches!(
                a,
                Action::Check {
                    check: Check::RefreshUploadedCerts
                }
            )
        });
        let clean = pos(&|a| {
            matches!(
                a,
                Action::Check {
                    check: Check::CleanHalfJoin
                }
            )
        });
        let gate = pos(&|a| {
            matches!(
                a,
                Action::Check {
                    check: Check::QuorumGate
                }
            )
        });
        let kubeadm =
            pos(&|a| matches!(a, Action::Run { command } if command.starts_with("kubeadm join")));
        let members = pos(&|a| {
            matches!(
                a,
                Action::Check {
                    check: Check::Members { .. }
                }
            )
        });
        assert!(
            refresh < clean && clean < gate && gate < kubeadm && kubeadm < members,
            "{join:?}"
        );
        // upload-certs: the CAs reach joining nodes through kubeadm, never copied.
        assert!(
            !puts(&join.actions).iter().any(|p| p.contains("/pki/")),
            "{join:?}"
        );
    }
    // The members check after cp3's join names all three.
    let cp3 = s.iter().find(|s| s.id == "join:cp3").unwrap();
    assert!(cp3.actions.iter().any(|a| matches!(a,
        Action::Check { check: Check::Members { nodes } } if nodes == &["cp1", "cp2", "cp3"])));
    // The LB pods are already in the manifests directory: init is told that one exception.
    let init = s.iter().find(|s| s.id == "init:cp1").unwrap();
    assert!(init.actions.iter().any(|a| matches!(a, Action::Run { command }
        if command == "kubeadm init --config /etc/kubernetes/cpkeep/kubeadm.yaml --upload-certs --ignore-preflight-errors=DirAvailable--etc-kubernetes-manifests")));
}

#[test]
fn copy_distribution_puts_the_cas_before_every_control_plane_kubeadm_run() {
    let (_t, b) = bundle("copy");
    for s in steps(&b)
        .iter()
        .filter(|s| s.id.starts_with("init:") || s.id.starts_with("join:"))
    {
        let p = puts(&s.actions);
        for ca in [
            "/etc/kubernetes/pki/ca.key",
            "/etc/kubernetes/pki/etcd/ca.key",
            "/etc/kubernetes/pki/sa.key",
        ] {
            assert!(p.contains(&ca), "{} lacks {ca}", s.id);
        }
        for a in &s.actions {
            if let Action::Put { to, mode, .. } = a {
                if to.ends_with(".key") {
                    assert_eq!(*mode, 0o600, "{to}");
                }
            }
        }
        assert!(!s.actions.iter().any(|a| matches!(
            a,
            Action::Check {
                check: Check::RefreshUploadedCerts
            }
        )));
    }
    let w = steps(&b).into_iter().find(|s| s.id == "worker:w1").unwrap();
    assert!(!puts(&w.actions).iter().any(|p| p.contains("/pki/")));
}

#[test]
fn the_dry_run_shows_every_step_and_no_secret() {
    let (_t, b) = bundle("upload-certs");
    let token = std::fs::read_to_string(b.dir.join("secrets/bootstrap-token")).unwrap();
    let key = std::fs::read_to_string(b.dir.join("secrets/certificate-key")).unwrap();
    let r = dry_run(&ApplyOptions {
        bundle: b.dir.clone(),
        node: None,
        ssh_config: None,
        connect_timeout: std::time::Duration::from_secs(1),
        etcd_timeout: std::time::Duration::from_secs(1),
        wait: std::time::Duration::from_secs(1),
    })
    .unwrap();
    assert_eq!(r.steps.len(), 6);
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains(token.trim()) && !text.contains(key.trim()));
    assert!(text.contains("cp2$ kubeadm join --config /etc/kubernetes/cpkeep/kubeadm.yaml"));
    // Nothing was contacted, nothing written.
    assert!(!b.dir.join("state.json").exists());
}

#[test]
fn a_changed_or_exposed_bundle_file_is_refused() {
    let (_t, b) = bundle("upload-certs");
    let cfg = b.dir.join("nodes/cp2/kubeadm.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("# edited\n");
    std::fs::write(&cfg, text).unwrap();
    let e = LoadedBundle::load(&b.dir).unwrap_err().to_string();
    assert!(
        e.contains("nodes/cp2/kubeadm.yaml") && e.contains("changed since the plan"),
        "{e}"
    );

    let (_t2, b2) = bundle("copy");
    let key = b2.dir.join("pki/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = LoadedBundle::load(&b2.dir).unwrap_err().to_string();
    assert!(
        e.contains("pki/ca.key") && e.contains("readable by others"),
        "{e}"
    );

    let e = LoadedBundle::load(&b2.dir.join("nodes"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a bundle"), "{e}");
}

fn member(
    name: &str,
    id: &str,
    peer: &str,
    learner: bool,
    healthy: bool,
) -> crate::etcd::MemberHealth {
    crate::etcd::MemberHealth {
        id: id.to_string(),
        name: name.to_string(),
        peer_urls: vec![peer.to_string()],
        client_urls: Vec::new(),
        is_learner: learner,
        healthy,
        endpoint: None,
        error: (!healthy).then(|| "connection refused".to_string()),
        version: None,
        db_size: None,
        db_size_in_use: None,
        leader: None,
        raft_term: None,
        raft_index: None,
        applied_index: None,
        errors: Vec::new(),
    }
}

#[test]
fn members_must_be_exactly_the_joined_nodes() {
    let want: BTreeMap<String, String> = [
        ("https://10.0.0.1:2380".to_string(), "cp1".to_string()),
        ("https://10.0.0.2:2380".to_string(), "cp2".to_string()),
    ]
    .into();
    let mut r = crate::etcd::evaluate(
        &crate::etcd::ClusterProbe {
            endpoints: Vec::new(),
        },
        &Default::default(),
    );
    r.cluster_id = Some("1".to_string());
    r.members = vec![
        member("cp1", "a1", "https://10.0.0.1:2380", false, true),
        member("cp2", "b2", "https://10.0.0.2:2380", false, true),
    ];
    assert_eq!(members_match(&r, &want), None);
    r.members[1] = member("cp2", "b2", "https://10.0.0.2:2380", true, true);
    assert!(members_match(&r, &want)
        .unwrap()
        .contains("cp2's member b2 is still a learner"));
    r.members[1] = member("", "b2", "https://10.0.0.2:2380", false, false);
    assert!(members_match(&r, &want)
        .unwrap()
        .contains("has not started"));
    r.members
        .push(member("", "c3", "https://10.0.0.3:2380", false, false));
    let p = members_match(&r, &want).unwrap();
    assert!(
        p.contains("member unstarted (c3) is not one of the joined nodes"),
        "{p}"
    );
    r.members.truncate(1);
    assert!(members_match(&r, &want)
        .unwrap()
        .contains("cp2 (https://10.0.0.2:2380) is not a member"));
}

#[test]
fn nodes_must_be_registered_and_ready_when_a_cni_is_in() {
    let list = r#"{"items":[{"metadata":{"name":"cp1"},"status":{"conditions":[{"type":"Ready","status":"True"}]}},
                            {"metadata":{"name":"cp2"},"status":{"conditions":[{"type":"Ready","status":"False"}]}}]}"#;
    let nodes = vec!["cp1".to_string(), "cp2".to_string(), "cp3".to_string()];
    let p = nodes_problem(list, &nodes, true).unwrap();
    assert!(
        p.contains("cp2 is not Ready") && p.contains("cp3 is not registered"),
        "{p}"
    );
    assert_eq!(nodes_problem(list, &nodes[..2], false), None);
    assert!(nodes_problem("error: no", &nodes, false)
        .unwrap()
        .contains("no node list"));
}

#[test]
fn a_local_node_is_reached_without_ssh_and_its_runbook_commands_run_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        INVENTORY.replace("DIST", "copy").replace(
            "{name: cp1, address: 192.168.1.10}",
            "{name: cp1, address: 192.168.1.10, ssh: {local: true}}",
        ),
    )
    .unwrap();
    let out = tmp.path().join("bundle");
    plan(&PlanOptions {
        inventory: inv,
        out: out.clone(),
        ..Default::default()
    })
    .unwrap();
    let b = LoadedBundle::load(&out).unwrap();
    assert!(b.node("cp1").unwrap().ssh.local && !b.node("cp2").unwrap().ssh.local);
    assert!(matches!(
        super::run::target_of(b.node("cp1").unwrap(), None),
        crate::remote::Target::Local
    ));
    assert!(matches!(
        super::run::target_of(b.node("cp2").unwrap(), None),
        crate::remote::Target::Ssh(_)
    ));
    let runbook = std::fs::read_to_string(out.join("RUNBOOK.md")).unwrap();
    assert!(runbook.contains("kubeadm init --config /etc/kubernetes/cpkeep/kubeadm.yaml"));
    assert!(
        !runbook.contains("root@192.168.1.10"),
        "cp1 is local: no ssh to it"
    );
    assert!(runbook.contains("root@192.168.1.11"));
}
