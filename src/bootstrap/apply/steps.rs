//! The ordered steps of `bootstrap apply`, derived from the bundle alone: what goes where, which
//! command runs on which node, and which check gates the next step. Pure data, so `--dry-run`
//! shows exactly what a run would do, and the runner executes the same list. Never prints, never
//! touches a node.

use serde::Serialize;

use super::plan_file::{LoadedBundle, NodeView};
use crate::bootstrap::kubeadm::Role;
use crate::bootstrap::lb::{haproxy, keepalived, kubevip};
use crate::bootstrap::plan::{
    MANIFESTS_DIR, NODE_CONFIG_DIR, NODE_KUBEADM_CONFIG, SHARED_CA_FILES,
};
use crate::bootstrap::spec::{CniSpec, Distribution, LbMode};

/// Where the CNI manifest is put on the first node before `kubectl apply`.
pub const NODE_CNI_MANIFEST: &str = "/etc/kubernetes/cpkeep/cni.yaml";
/// The admin kubeconfig kubeadm writes on a control-plane node.
pub const NODE_ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

/// One thing a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Action {
    /// Copies a bundle file to the step's node (atomically, with this mode).
    Put { from: String, to: String, mode: u32 },
    /// Runs a command on the step's node; a non-zero exit fails the step.
    Run { command: String },
    /// A check or an operation the runner does itself.
    Check { check: Check },
}

/// What the runner checks or does between commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "name")]
pub enum Check {
    /// `kubeadm-certs` is re-uploaded from the first node when the last upload is older than 1h50m.
    RefreshUploadedCerts,
    /// A half-finished earlier join of this node is undone: its etcd member removed, `kubeadm reset
    /// -f` run on it.
    CleanHalfJoin,
    /// etcd can afford the membership change (worst case: the new member counts as unhealthy; any
    /// learner refuses).
    QuorumGate,
    /// etcd's member list is exactly these control-plane nodes, all started voters, all healthy.
    Members { nodes: Vec<String> },
    /// HTTPS `/readyz` answers `ok` at this address (verified against the bundle's CA).
    Readyz { address: String },
    /// The admin kubeconfig is fetched to the bundle (0600).
    FetchAdminKubeconfig,
    /// The nodes are registered (and Ready when a CNI was installed).
    NodesReady {
        nodes: Vec<String>,
        expect_ready: bool,
    },
}

/// One step: a unit the journal records once it has finished.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyStep {
    /// Stable identity in `state.json`: `load-balancer:lb1`, `init:cp1`, `cni`, `join:cp2`,
    /// `worker:w1`, `verify`.
    pub id: String,
    /// The node the commands run on.
    pub node: String,
    pub title: String,
    pub actions: Vec<Action>,
}

impl ApplyStep {
    /// Whether this step adds a node to etcd (the steps the quorum gate guards).
    pub fn is_control_plane_join(&self) -> bool {
        self.id.starts_with("join:")
    }
}

fn put(from: String, to: &str, mode: u32) -> Action {
    Action::Put {
        from,
        to: to.to_string(),
        mode,
    }
}

fn run(command: impl Into<String>) -> Action {
    Action::Run {
        command: command.into(),
    }
}

fn check(check: Check) -> Action {
    Action::Check { check }
}

fn copy_cas(b: &LoadedBundle) -> Vec<Action> {
    SHARED_CA_FILES
        .iter()
        .map(|f| {
            let rel = format!("pki/{f}");
            let mode = b.mode(&rel);
            put(rel, &format!("/etc/kubernetes/pki/{f}"), mode)
        })
        .collect()
}

/// The node's kubeadm config: 0600, it carries the bootstrap token (and the certificate key).
fn kubeadm_config(n: &NodeView) -> Action {
    put(
        format!("nodes/{}/kubeadm.yaml", n.name),
        NODE_KUBEADM_CONFIG,
        0o600,
    )
}

/// A host's load balancer files: configs first, static pod manifests last (the kubelet starts a
/// manifest the moment it appears, and it must find its config).
fn lb_files(b: &LoadedBundle, n: &NodeView, as_static_pods: bool) -> Vec<Action> {
    let dir = format!("nodes/{}", n.name);
    let mut a = Vec::new();
    match b.plan.load_balancer.mode {
        LbMode::External => {}
        LbMode::KubeVip => a.push(put(
            format!("{dir}/manifests/kube-vip.yaml"),
            &format!("{MANIFESTS_DIR}/kube-vip.yaml"),
            0o600,
        )),
        LbMode::HaproxyKeepalived => {
            a.push(put(format!("{dir}/haproxy.cfg"), haproxy::HOST_PATH, 0o644));
            a.push(put(
                format!("{dir}/keepalived.conf"),
                keepalived::CONF_HOST_PATH,
                0o644,
            ));
            a.push(put(
                format!("{dir}/check_apiserver.sh"),
                keepalived::CHECK_HOST_PATH,
                0o755,
            ));
            if as_static_pods {
                for m in ["haproxy.yaml", "keepalived.yaml"] {
                    a.push(put(
                        format!("{dir}/manifests/{m}"),
                        &format!("{MANIFESTS_DIR}/{m}"),
                        0o600,
                    ));
                }
            } else {
                a.push(run(format!("haproxy -c -f {}", haproxy::HOST_PATH)));
                a.push(run(
                    "systemctl enable haproxy keepalived && systemctl restart haproxy keepalived",
                ));
            }
        }
    }
    a
}

fn readyz_at(n: &NodeView) -> String {
    let host = if n.address.contains(':') {
        format!("[{}]", n.address)
    } else {
        n.address.clone()
    };
    format!("{host}:{}", crate::bootstrap::spec::APISERVER_BIND_PORT)
}

/// Every step in order.
pub fn steps(b: &LoadedBundle) -> Vec<ApplyStep> {
    let plan = &b.plan;
    let mut out = Vec::new();
    let first = b.first();
    let upload = plan.certificates.distribution == Distribution::UploadCerts;
    let lb_on_cp = plan.load_balancer.mode == LbMode::KubeVip
        || (plan.load_balancer.mode == LbMode::HaproxyKeepalived
            && plan.load_balancer.hosts.iter().any(|h| h == &first.name));
    let endpoint = plan.control_plane_endpoint.clone();

    // Dedicated load balancer hosts.
    for n in plan.nodes.iter().filter(|n| n.role == Role::LoadBalancer) {
        out.push(ApplyStep {
            id: format!("load-balancer:{}", n.name),
            node: n.name.clone(),
            title: format!("haproxy and keepalived on {}", n.name),
            actions: lb_files(b, n, false),
        });
    }
    // The first node's load balancer pods: before init, which needs the endpoint to answer.
    if lb_on_cp {
        out.push(ApplyStep {
            id: format!("load-balancer:{}", first.name),
            node: first.name.clone(),
            title: format!("load balancer static pods on {}", first.name),
            actions: lb_files(b, first, true),
        });
    }

    // kubeadm init. A failed earlier init is reset first; reset empties /etc/kubernetes/pki,
    // so the CAs follow it.
    let mut init = vec![check(Check::CleanHalfJoin)];
    init.extend(copy_cas(b));
    init.push(run(format!("install -d -m 0700 {NODE_CONFIG_DIR}")));
    init.push(kubeadm_config(first));
    // kubeadm's preflight wants an empty manifests directory; the load balancer pods put there
    // on purpose (the endpoint must answer during init) are the one exception it is told about.
    init.push(run(format!(
        "kubeadm init --config {NODE_KUBEADM_CONFIG}{}{}",
        if upload { " --upload-certs" } else { "" },
        if lb_on_cp {
            " --ignore-preflight-errors=DirAvailable--etc-kubernetes-manifests"
        } else {
            ""
        }
    )));
    if plan.load_balancer.mode == LbMode::KubeVip && b.version.at_least(29) {
        init.push(run(format!(
            "sed -i \"s#{}#{}#\" {MANIFESTS_DIR}/kube-vip.yaml",
            kubevip::SUPER_ADMIN_CONF,
            kubevip::ADMIN_CONF
        )));
    }
    init.push(check(Check::Readyz {
        address: readyz_at(first),
    }));
    init.push(check(Check::Readyz {
        address: endpoint.clone(),
    }));
    init.push(check(Check::FetchAdminKubeconfig));
    init.push(check(Check::Members {
        nodes: vec![first.name.clone()],
    }));
    out.push(ApplyStep {
        id: format!("init:{}", first.name),
        node: first.name.clone(),
        title: format!("kubeadm init on {}", first.name),
        actions: init,
    });

    // The pod network.
    if let Some(cni) = &plan.cni {
        let actions = match cni {
            CniSpec::File { path, .. } => vec![
                put(path.display().to_string(), NODE_CNI_MANIFEST, 0o644),
                run(format!(
                    "kubectl --kubeconfig {NODE_ADMIN_CONF} apply -f {NODE_CNI_MANIFEST}"
                )),
            ],
            CniSpec::Url { url } => vec![run(format!(
                "kubectl --kubeconfig {NODE_ADMIN_CONF} apply -f {url}"
            ))],
        };
        out.push(ApplyStep {
            id: "cni".to_string(),
            node: first.name.clone(),
            title: "install the pod network".to_string(),
            actions,
        });
    }

    // Control-plane joins, one at a time.
    let cps = b.control_plane();
    for (i, n) in cps.iter().enumerate().skip(1) {
        let mut a = Vec::new();
        if upload {
            a.push(check(Check::RefreshUploadedCerts));
        }
        a.push(check(Check::CleanHalfJoin));
        a.push(check(Check::QuorumGate));
        if !upload {
            a.extend(copy_cas(b));
        }
        a.push(run(format!("install -d -m 0700 {NODE_CONFIG_DIR}")));
        a.push(kubeadm_config(n));
        a.push(run(format!("kubeadm join --config {NODE_KUBEADM_CONFIG}")));
        a.push(check(Check::Members {
            nodes: cps[..=i].iter().map(|n| n.name.clone()).collect(),
        }));
        a.push(check(Check::Readyz {
            address: readyz_at(n),
        }));
        a.push(check(Check::Readyz {
            address: endpoint.clone(),
        }));
        if lb_on_cp && plan.load_balancer.hosts.iter().any(|h| h == &n.name) {
            a.extend(lb_files(b, n, true));
        }
        out.push(ApplyStep {
            id: format!("join:{}", n.name),
            node: n.name.clone(),
            title: format!(
                "join {} as control-plane node {} of {}",
                n.name,
                i + 1,
                cps.len()
            ),
            actions: a,
        });
    }

    // Workers.
    for n in plan.nodes.iter().filter(|n| n.role == Role::Worker) {
        out.push(ApplyStep {
            id: format!("worker:{}", n.name),
            node: n.name.clone(),
            title: format!("join worker {}", n.name),
            actions: vec![
                check(Check::CleanHalfJoin),
                run(format!("install -d -m 0700 {NODE_CONFIG_DIR}")),
                kubeadm_config(n),
                run(format!("kubeadm join --config {NODE_KUBEADM_CONFIG}")),
            ],
        });
    }

    // The whole cluster.
    let kubeadm_nodes: Vec<String> = plan
        .nodes
        .iter()
        .filter(|n| n.role != Role::LoadBalancer)
        .map(|n| n.name.clone())
        .collect();
    out.push(ApplyStep {
        id: "verify".to_string(),
        node: first.name.clone(),
        title: "verify the control plane and the nodes".to_string(),
        actions: vec![
            check(Check::Members {
                nodes: cps.iter().map(|n| n.name.clone()).collect(),
            }),
            check(Check::Readyz { address: endpoint }),
            check(Check::NodesReady {
                nodes: kubeadm_nodes,
                expect_ready: plan.cni.is_some(),
            }),
        ],
    });
    out
}

/// A one-line description of an action, for `--dry-run` and the progress lines. Commands hold no
/// secret (the token and the certificate key travel inside the 0600 kubeadm config files).
pub fn describe(node: &str, a: &Action) -> String {
    match a {
        Action::Put { from, to, mode } => format!("copy {from} -> {node}:{to} (mode {mode:04o})"),
        Action::Run { command } => format!("{node}$ {command}"),
        Action::Check { check } => match check {
            Check::RefreshUploadedCerts => {
                "re-upload kubeadm-certs from the first node if the last upload is older than 1h50m"
                    .to_string()
            }
            Check::CleanHalfJoin => format!(
                "if an earlier attempt on {node} stopped half-way: remove its etcd member, run `kubeadm reset -f` on it"
            ),
            Check::QuorumGate => format!(
                "quorum gate before {node}'s member is added: no learner present, and voters - unhealthy >= quorum with the new member counted as unhealthy"
            ),
            Check::Members { nodes } => format!(
                "etcd members are exactly {}: started voters, no learner, all healthy",
                nodes.join(", ")
            ),
            Check::Readyz { address } => format!("https://{address}/readyz answers ok"),
            Check::FetchAdminKubeconfig => {
                format!("fetch {node}:{NODE_ADMIN_CONF} to the bundle's admin.conf (0600)")
            }
            Check::NodesReady {
                nodes,
                expect_ready,
            } => format!(
                "kubectl get nodes lists {}{}",
                nodes.join(", "),
                if *expect_ready {
                    ", all Ready"
                } else {
                    " (NotReady until a pod network is installed)"
                }
            ),
        },
    }
}
