//! The plan: every step of the bootstrap in order, per node, with the checks that gate the next
//! step, plus the facts an operator (or `bootstrap apply`) needs: nodes and roles, the endpoint, the
//! kubeadm API version, the CA hash, and every bundle file with its sha256. Serialised as
//! `plan.json`; holds no secret (commands name the files that carry them). Pure: never prints,
//! never touches a file.

use serde::Serialize;

use super::kubeadm::Role;
use super::lb::{haproxy, keepalived, kubevip};
use super::pki::CaSummary;
use super::spec::*;
use super::version::KubeadmApi;

/// Where the bundle's files go on a node.
pub const NODE_CONFIG_DIR: &str = "/etc/kubernetes/cpkeep";
pub const NODE_KUBEADM_CONFIG: &str = "/etc/kubernetes/cpkeep/kubeadm.yaml";
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";

/// `plan.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub cluster: String,
    pub kubernetes_version: String,
    pub kubeadm_api_version: KubeadmApi,
    pub control_plane_endpoint: String,
    pub load_balancer: PlanLoadBalancer,
    pub networking: NetworkingSpec,
    pub certificates: CertificatesSpec,
    /// `sha256:<hex>` of `pki/ca.crt`'s public key: what every join pins.
    pub ca_cert_hash: String,
    pub cas: Vec<CaSummary>,
    pub etcd: PlanEtcd,
    pub nodes: Vec<PlanNode>,
    pub cni: Option<CniSpec>,
    pub steps: Vec<Step>,
    pub files: Vec<PlanFile>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanLoadBalancer {
    pub mode: LbMode,
    pub vip: Option<std::net::IpAddr>,
    pub interface: Option<String>,
    pub port: u16,
    /// The hosts it runs on (control-plane nodes or dedicated hosts); empty for `external`.
    pub hosts: Vec<String>,
}

impl PlanLoadBalancer {
    pub fn mode_str(&self) -> &'static str {
        self.mode.as_str()
    }
}

impl Plan {
    pub fn kubeadm_api_version_str(&self) -> &'static str {
        self.kubeadm_api_version.as_str()
    }
}

/// Stacked etcd: one member per control-plane node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanEtcd {
    pub members: usize,
    pub quorum: usize,
    pub fault_tolerance: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanNode {
    pub name: String,
    pub role: Role,
    pub address: Host,
    pub ssh: SshSpec,
}

/// A file of the bundle.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFile {
    pub path: String,
    pub sha256: String,
    /// Octal, e.g. `0600`.
    pub mode: String,
    /// Holds a private key, the bootstrap token or the certificate key.
    pub secret: bool,
}

/// What a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Preflight,
    LoadBalancer,
    Certificates,
    Init,
    Kubectl,
    Cni,
    JoinControlPlane,
    JoinWorker,
    Verify,
    FailoverDrill,
}

/// One step: commands run in order on one host, then the checks that must hold before the next.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub number: usize,
    pub phase: Phase,
    /// `runner` (the machine holding the bundle, commands run from the bundle directory) or a node.
    pub on: String,
    pub title: String,
    pub commands: Vec<String>,
    pub checks: Vec<String>,
}

pub const RUNNER: &str = "runner";

/// How to reach a node with ssh / scp from the runner.
struct Remote<'a>(&'a NodeSpec);

impl Remote<'_> {
    fn opts(&self, port_flag: &str) -> String {
        let ssh = &self.0.ssh;
        let mut o = String::new();
        if ssh.port != 22 {
            o.push_str(&format!("{port_flag} {} ", ssh.port));
        }
        if let Some(id) = &ssh.identity_file {
            o.push_str(&format!("-i {id} "));
        }
        o
    }

    fn target(&self) -> String {
        let host = match &self.0.address {
            Host::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            other => other.to_string(),
        };
        format!("{}@{host}", self.0.ssh.user)
    }

    fn ssh(&self, command: &str) -> String {
        if self.0.ssh.local {
            return command.to_string();
        }
        format!("ssh {}{} '{command}'", self.opts("-p"), self.target())
    }

    /// Copies bundle files to `dest` on the node, keeping their modes (keys stay 0600).
    fn scp(&self, files: &[String], dest: &str) -> String {
        if self.0.ssh.local {
            return format!("cp -p {} {dest}", files.join(" "));
        }
        format!(
            "scp -p {}{} {}:{dest}",
            self.opts("-P"),
            files.join(" "),
            self.target()
        )
    }
}

/// Everything `build` needs besides the cluster.
pub struct PlanInputs<'a> {
    pub ca_cert_hash: &'a str,
    pub cas: Vec<CaSummary>,
    pub files: Vec<PlanFile>,
}

/// The roles of every node, control plane first.
pub fn nodes(spec: &ClusterSpec) -> Vec<PlanNode> {
    let mut out = Vec::new();
    for (i, n) in spec.control_plane.iter().enumerate() {
        let role = if i == 0 {
            Role::Init
        } else {
            Role::ControlPlane
        };
        out.push(PlanNode {
            name: n.name.clone(),
            role,
            address: n.address.clone(),
            ssh: n.ssh.clone(),
        });
    }
    for n in &spec.workers {
        out.push(PlanNode {
            name: n.name.clone(),
            role: Role::Worker,
            address: n.address.clone(),
            ssh: n.ssh.clone(),
        });
    }
    for n in &spec.load_balancer.nodes {
        out.push(PlanNode {
            name: n.name.clone(),
            role: Role::LoadBalancer,
            address: n.address.clone(),
            ssh: n.ssh.clone(),
        });
    }
    out
}

/// Builds the plan.
pub fn build(spec: &ClusterSpec, inputs: PlanInputs<'_>) -> Plan {
    let lb = &spec.load_balancer;
    Plan {
        api_version: super::validate::API_VERSION,
        kind: "BootstrapPlan",
        cluster: spec.name.clone(),
        kubernetes_version: spec.kubernetes_version.to_string(),
        kubeadm_api_version: spec.kubeadm_api,
        control_plane_endpoint: spec.control_plane_endpoint.to_string(),
        load_balancer: PlanLoadBalancer {
            mode: lb.mode,
            vip: lb.vip,
            interface: lb.interface.clone(),
            port: lb.port,
            hosts: match lb.mode {
                LbMode::External => Vec::new(),
                LbMode::KubeVip => spec.control_plane.iter().map(|n| n.name.clone()).collect(),
                LbMode::HaproxyKeepalived => {
                    spec.lb_hosts().iter().map(|n| n.name.clone()).collect()
                }
            },
        },
        networking: spec.networking.clone(),
        certificates: spec.certificates.clone(),
        ca_cert_hash: inputs.ca_cert_hash.to_string(),
        cas: inputs.cas,
        etcd: PlanEtcd {
            members: spec.control_plane.len(),
            quorum: spec.quorum(),
            fault_tolerance: spec.fault_tolerance(),
        },
        nodes: nodes(spec),
        cni: spec.cni.clone(),
        steps: steps(spec),
        files: inputs.files,
    }
}

/// A runner-side shell function for etcdctl inside the first node's etcd static pod, authenticated
/// as kubeadm's healthcheck client (defined in the kubectl step, used by every etcd check).
fn etcdctl_function(spec: &ClusterSpec) -> String {
    format!(
        "etcdctl() {{ kubectl -n kube-system exec etcd-{} -- etcdctl --endpoints https://127.0.0.1:2379 \
         --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt \
         --key /etc/kubernetes/pki/etcd/healthcheck-client.key \"$@\"; }}",
        spec.first().name
    )
}

fn etcdctl(_spec: &ClusterSpec, args: &str) -> String {
    format!("etcdctl {args}")
}

fn pki_files(dir: &str, names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{dir}/{n}")).collect()
}

/// The shared CAs and the service-account pair every control-plane node needs, relative to
/// `pki/` in the bundle and to /etc/kubernetes/pki on a node.
pub const SHARED_CA_FILES: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "sa.key",
    "sa.pub",
    "etcd/ca.crt",
    "etcd/ca.key",
];

/// Copies the shared CAs (and the service-account pair) into a node's /etc/kubernetes/pki.
fn copy_cas(r: &Remote<'_>) -> Vec<String> {
    let (etcd, top): (Vec<&str>, Vec<&str>) =
        SHARED_CA_FILES.iter().partition(|f| f.starts_with("etcd/"));
    let etcd: Vec<&str> = etcd.iter().map(|f| f.trim_start_matches("etcd/")).collect();
    vec![
        r.ssh("install -d -m 0755 /etc/kubernetes/pki/etcd"),
        r.scp(&pki_files("pki", &top), "/etc/kubernetes/pki/"),
        r.scp(&pki_files("pki/etcd", &etcd), "/etc/kubernetes/pki/etcd/"),
    ]
}

/// Puts a node's load balancer files in place (static pods last: the kubelet starts them at once).
fn lb_commands(spec: &ClusterSpec, node: &NodeSpec, as_static_pods: bool) -> Vec<String> {
    let r = Remote(node);
    let dir = format!("nodes/{}", node.name);
    match spec.load_balancer.mode {
        LbMode::External => Vec::new(),
        LbMode::KubeVip => vec![r.scp(
            &[format!("{dir}/manifests/kube-vip.yaml")],
            &format!("{MANIFESTS_DIR}/"),
        )],
        LbMode::HaproxyKeepalived => {
            let mut c = vec![
                r.ssh("install -d -m 0755 /etc/haproxy /etc/keepalived"),
                r.scp(&[format!("{dir}/haproxy.cfg")], haproxy::HOST_PATH),
                r.scp(
                    &[format!("{dir}/keepalived.conf")],
                    keepalived::CONF_HOST_PATH,
                ),
                r.scp(
                    &[format!("{dir}/check_apiserver.sh")],
                    keepalived::CHECK_HOST_PATH,
                ),
            ];
            if as_static_pods {
                c.push(r.ssh(&format!("install -d -m 0755 {MANIFESTS_DIR}")));
                c.push(r.scp(
                    &[
                        format!("{dir}/manifests/haproxy.yaml"),
                        format!("{dir}/manifests/keepalived.yaml"),
                    ],
                    &format!("{MANIFESTS_DIR}/"),
                ));
            } else {
                c.push(r.ssh("apt-get install -y haproxy keepalived curl || dnf install -y haproxy keepalived curl"));
                c.push(r.ssh("haproxy -c -f /etc/haproxy/haproxy.cfg && systemctl enable --now haproxy keepalived && systemctl restart haproxy keepalived"));
            }
            c
        }
    }
}

fn readyz_through_endpoint(spec: &ClusterSpec) -> String {
    format!(
        "curl -sfk https://{}/readyz answers ok (the endpoint reaches a ready apiserver)",
        spec.control_plane_endpoint
    )
}

fn steps(spec: &ClusterSpec) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut add =
        |phase: Phase, on: &str, title: String, commands: Vec<String>, checks: Vec<String>| {
            let number = steps.len() + 1;
            steps.push(Step {
                number,
                phase,
                on: on.to_string(),
                title,
                commands,
                checks,
            });
        };
    let first = spec.first();
    let upload = spec.certificates.distribution == Distribution::UploadCerts;
    let version = spec.kubernetes_version.to_string();
    let minor = format!("v1.{}", spec.kubernetes_version.minor);

    // Preflight, every kubeadm node.
    for n in spec.control_plane.iter().chain(&spec.workers) {
        let r = Remote(n);
        let mut ports = vec!["6443", "2379", "2380", "10250"];
        let lb_port = spec.load_balancer.port.to_string();
        if spec.load_balancer.on_control_plane() && spec.control_plane.contains(n) {
            ports.push(&lb_port);
        }
        let port_filter = ports
            .iter()
            .map(|p| format!("sport = :{p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        add(
            Phase::Preflight,
            RUNNER,
            format!("check {} before anything changes", n.name),
            vec![
                r.ssh("kubeadm version -o short; kubelet --version"),
                r.ssh("ls /run/containerd/containerd.sock /var/run/crio/crio.sock 2>/dev/null"),
                r.ssh("swapon --show; sysctl net.ipv4.ip_forward; date -u +%s"),
                r.ssh(&format!("ss -Htln \"( {port_filter} )\"")),
            ],
            vec![
                format!("kubeadm prints {version}; kubelet is {minor} or one minor older"),
                "a container runtime socket exists".to_string(),
                "swapon prints nothing; net.ipv4.ip_forward = 1; the clock is within 1 s of the runner's (date -u +%s)".to_string(),
                format!("ss lists no listener on ports {}", ports.join(", ")),
            ],
        );
    }

    // Load balancer.
    match spec.load_balancer.mode {
        LbMode::External => add(
            Phase::LoadBalancer,
            RUNNER,
            "configure the external load balancer".to_string(),
            Vec::new(),
            vec![
                format!(
                    "{} forwards TCP to port {APISERVER_BIND_PORT} of {}",
                    spec.control_plane_endpoint,
                    spec.control_plane.iter().map(|n| n.address.to_string()).collect::<Vec<_>>().join(", ")
                ),
                "its health check is HTTPS GET /readyz expecting 200 (not a bare TCP connect: an apiserver that cannot serve still accepts connections)".to_string(),
            ],
        ),
        LbMode::HaproxyKeepalived if !spec.load_balancer.on_control_plane() => {
            for n in &spec.load_balancer.nodes {
                add(
                    Phase::LoadBalancer,
                    RUNNER,
                    format!("set up haproxy and keepalived on load balancer {}", n.name),
                    lb_commands(spec, n, false),
                    vec![
                        format!("{} prints \"Configuration file is valid\"", Remote(n).ssh("haproxy -c -f /etc/haproxy/haproxy.cfg")),
                        format!(
                            "exactly one load balancer host holds {} ({} on each)",
                            spec.load_balancer.vip.map(|v| v.to_string()).unwrap_or_default(),
                            Remote(n).ssh("ip -brief addr")
                        ),
                    ],
                );
            }
        }
        LbMode::HaproxyKeepalived | LbMode::KubeVip => add(
            Phase::LoadBalancer,
            RUNNER,
            format!("put the load balancer static pods on {} before kubeadm init (the endpoint must answer during init)", first.name),
            lb_commands(spec, first, true),
            vec!["the kubelet starts them once kubeadm init starts it; the VIP appears on this node during init".to_string()],
        ),
    }

    // The shared CAs on the first node.
    let rf = Remote(first);
    add(
        Phase::Certificates,
        RUNNER,
        format!("copy the cluster CAs to {} (kubeadm uses CA files it finds instead of making new ones)", first.name),
        copy_cas(&rf),
        vec![format!("{} prints the caCertHashes value of plan.json", rf.ssh("openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der | sha256sum"))],
    );

    // kubeadm init.
    let mut init = vec![
        rf.ssh(&format!("install -d -m 0700 {NODE_CONFIG_DIR}")),
        rf.scp(
            &[format!("nodes/{}/kubeadm.yaml", first.name)],
            NODE_KUBEADM_CONFIG,
        ),
        rf.ssh(&format!(
            "kubeadm init --config {NODE_KUBEADM_CONFIG}{}",
            if upload { " --upload-certs" } else { "" }
        )),
    ];
    if spec.load_balancer.mode == LbMode::KubeVip && kubevip::needs_super_admin(spec, first) {
        init.push(rf.ssh(&format!(
            "sed -i \"s#{}#{}#\" {MANIFESTS_DIR}/kube-vip.yaml",
            kubevip::SUPER_ADMIN_CONF,
            kubevip::ADMIN_CONF
        )));
    }
    let mut init_checks = vec![
        readyz_through_endpoint(spec),
        format!(
            "{} answers ok",
            rf.ssh(&format!(
                "curl -sfk https://{}:{APISERVER_BIND_PORT}/readyz",
                first.address.for_url()
            ))
        ),
    ];
    if upload {
        init_checks.push(
            "note the time: the kubeadm-certs Secret expires 2 hours after this upload".to_string(),
        );
    }
    add(
        Phase::Init,
        RUNNER,
        format!("kubeadm init on {}", first.name),
        init,
        init_checks,
    );

    add(
        Phase::Kubectl,
        RUNNER,
        "fetch the admin kubeconfig to the runner".to_string(),
        vec![
            if first.ssh.local {
                "cp /etc/kubernetes/admin.conf ./admin.conf".to_string()
            } else {
                format!(
                    "scp {}{}:/etc/kubernetes/admin.conf ./admin.conf",
                    rf.opts("-P"),
                    rf.target()
                )
            },
            "chmod 600 ./admin.conf".to_string(),
            "export KUBECONFIG=$PWD/admin.conf".to_string(),
            format!(
                "# the etcd checks below use this function:\n{}",
                etcdctl_function(spec)
            ),
        ],
        vec![format!(
            "kubectl get --raw /readyz prints ok (through {})",
            spec.control_plane_endpoint
        )],
    );

    let cni_commands = match &spec.cni {
        Some(CniSpec::File { path, sha256 }) => vec![
            format!("echo '{sha256}  {}' | sha256sum -c -", path.display()),
            format!("kubectl apply -f {}", path.display()),
        ],
        Some(CniSpec::Url { url }) => vec![format!("kubectl apply -f {url}")],
        None => vec!["# no cni.manifest in the inventory: install the pod network now, the nodes stay NotReady without one".to_string()],
    };
    add(
        Phase::Cni,
        RUNNER,
        "install the pod network".to_string(),
        cni_commands,
        vec![format!(
            "kubectl wait --for=condition=Ready node/{} --timeout=5m",
            first.name
        )],
    );

    // Joins, one at a time, gated on etcd.
    for (i, n) in spec.control_plane.iter().enumerate().skip(1) {
        let r = Remote(n);
        let mut gate = vec![
            etcdctl(spec, "member list -w table"),
            etcdctl(spec, "endpoint health --cluster -w table"),
        ];
        if upload {
            gate.push(format!(
                "# if kubeadm-certs was uploaded more than 1h50m ago: {}",
                rf.ssh(&format!(
                    "kubeadm init phase upload-certs --upload-certs --config {NODE_KUBEADM_CONFIG}"
                ))
            ));
        }
        add(
            Phase::JoinControlPlane,
            RUNNER,
            format!("quorum gate before joining {}", n.name),
            gate,
            vec![
                format!("exactly {i} member(s), every one started (a name, no \"unstarted\") and none a learner: remove a leftover with `etcdctl member remove <id>` first"),
                format!(
                    "every member healthy: with {} members quorum becomes {}, so no member may be down before the join",
                    i + 1,
                    (i + 2).div_ceil(2)
                ),
            ],
        );
        let mut join = Vec::new();
        if !upload {
            join.extend(copy_cas(&r));
        }
        join.push(r.ssh(&format!("install -d -m 0700 {NODE_CONFIG_DIR}")));
        join.push(r.scp(
            &[format!("nodes/{}/kubeadm.yaml", n.name)],
            NODE_KUBEADM_CONFIG,
        ));
        join.push(r.ssh(&format!("kubeadm join --config {NODE_KUBEADM_CONFIG}")));
        join.extend(lb_commands_after_join(spec, n));
        add(
            Phase::JoinControlPlane,
            RUNNER,
            format!(
                "join {} as control-plane node {} of {}",
                n.name,
                i + 1,
                spec.control_plane.len()
            ),
            join,
            vec![
                format!(
                    "{} lists exactly {} started voters, no learner",
                    etcdctl(spec, "member list -w table"),
                    i + 1
                ),
                format!(
                    "{} reports every member healthy",
                    etcdctl(spec, "endpoint health --cluster -w table")
                ),
                format!(
                    "{} answers ok",
                    r.ssh(&format!(
                        "curl -sfk https://{}:{APISERVER_BIND_PORT}/readyz",
                        n.address.for_url()
                    ))
                ),
                readyz_through_endpoint(spec),
                format!(
                    "kubectl wait --for=condition=Ready node/{} --timeout=5m",
                    n.name
                ),
            ],
        );
    }

    for n in &spec.workers {
        let r = Remote(n);
        add(
            Phase::JoinWorker,
            RUNNER,
            format!("join worker {}", n.name),
            vec![
                r.ssh(&format!("install -d -m 0700 {NODE_CONFIG_DIR}")),
                r.scp(
                    &[format!("nodes/{}/kubeadm.yaml", n.name)],
                    NODE_KUBEADM_CONFIG,
                ),
                r.ssh(&format!("kubeadm join --config {NODE_KUBEADM_CONFIG}")),
            ],
            vec![format!(
                "kubectl wait --for=condition=Ready node/{} --timeout=5m",
                n.name
            )],
        );
    }

    let names: Vec<&str> = spec.control_plane.iter().map(|n| n.name.as_str()).collect();
    add(
        Phase::Verify,
        RUNNER,
        "verify the whole control plane".to_string(),
        vec![
            "kubectl get nodes -o wide".to_string(),
            etcdctl(spec, "member list -w table"),
            etcdctl(spec, "endpoint status --cluster -w table"),
            format!(
                "{} (cpkeep on a control-plane node)",
                rf.ssh("cpkeep cluster health && cpkeep certs check")
            ),
        ],
        vec![
            format!("every node Ready; control plane: {}", names.join(", ")),
            format!(
                "{} voters, one leader, no learner: quorum {}, fault tolerance {}",
                names.len(),
                spec.quorum(),
                spec.fault_tolerance()
            ),
            "cpkeep cluster health says OK; certs check OK".to_string(),
        ],
    );

    for (title, commands, checks) in drill(spec) {
        add(Phase::FailoverDrill, RUNNER, title, commands, checks);
    }
    steps
}

/// A joined control-plane node's own load balancer pods: after the join, because kube-vip reads
/// admin.conf, which the join writes, and because kubeadm's preflight wants an empty manifests dir.
fn lb_commands_after_join(spec: &ClusterSpec, node: &NodeSpec) -> Vec<String> {
    match spec.load_balancer.mode {
        LbMode::KubeVip => lb_commands(spec, node, true),
        LbMode::HaproxyKeepalived if spec.load_balancer.on_control_plane() => {
            lb_commands(spec, node, true)
        }
        LbMode::HaproxyKeepalived | LbMode::External => Vec::new(),
    }
}

type DrillStep = (String, Vec<String>, Vec<String>);

/// The failover drill: take one piece away at a time, show the endpoint keeps answering, put it back.
fn drill(spec: &ClusterSpec) -> Vec<DrillStep> {
    let mut out = Vec::new();
    let endpoint_ok = readyz_through_endpoint(spec);
    let park =
        |pod: &str| format!("mv {MANIFESTS_DIR}/{pod}.yaml /etc/kubernetes/{pod}.yaml.drill");
    let unpark =
        |pod: &str| format!("mv /etc/kubernetes/{pod}.yaml.drill {MANIFESTS_DIR}/{pod}.yaml");
    let vip = spec
        .load_balancer
        .vip
        .map(|v| v.to_string())
        .unwrap_or_default();
    match spec.load_balancer.mode {
        LbMode::HaproxyKeepalived => {
            let hosts = spec.lb_hosts();
            let holder = &hosts[0];
            let r = Remote(holder);
            let (stop, start) = if spec.load_balancer.on_control_plane() {
                (park("keepalived"), unpark("keepalived"))
            } else {
                (
                    "systemctl stop keepalived".to_string(),
                    "systemctl start keepalived".to_string(),
                )
            };
            out.push((
                format!(
                    "drill: the VIP moves when keepalived on {} stops",
                    holder.name
                ),
                vec![
                    r.ssh(&format!("ip -brief addr | grep -F {vip}")),
                    r.ssh(&stop),
                ],
                vec![
                    format!(
                        "within a few seconds another host holds {vip} (ip -brief addr on {})",
                        hosts[1].name
                    ),
                    endpoint_ok.clone(),
                ],
            ));
            out.push((
                format!("drill: put keepalived back on {}", holder.name),
                vec![r.ssh(&start)],
                vec![
                    format!("{} takes the VIP back (highest priority)", holder.name),
                    endpoint_ok.clone(),
                ],
            ));
        }
        LbMode::KubeVip => {
            out.push((
                "drill: the VIP moves when the kube-vip leader stops".to_string(),
                vec!["kubectl -n kube-system get lease plndr-cp-lock -o jsonpath='{.spec.holderIdentity}'".to_string(), format!("# on the holder: {}", park("kube-vip"))],
                vec![format!("within seconds another node holds the lease and {vip}"), endpoint_ok.clone()],
            ));
            out.push((
                "drill: put kube-vip back".to_string(),
                vec![format!("# on the same node: {}", unpark("kube-vip"))],
                vec![endpoint_ok.clone()],
            ));
        }
        LbMode::External => {}
    }
    if let Some(victim) = spec.control_plane.get(1) {
        let r = Remote(victim);
        out.push((
            format!("drill: stop the apiserver on {}", victim.name),
            vec![r.ssh(&park("kube-apiserver"))],
            vec![
                format!(
                    "the load balancer stops sending it traffic within {} s (haproxy: {} failed checks {} s apart)",
                    haproxy::CHECK_FALL * haproxy::CHECK_INTER_SECS,
                    haproxy::CHECK_FALL,
                    haproxy::CHECK_INTER_SECS
                ),
                format!("{endpoint_ok}, every time, while it is down"),
            ],
        ));
        out.push((
            format!("drill: put the apiserver on {} back", victim.name),
            vec![r.ssh(&unpark("kube-apiserver"))],
            vec![format!(
                "{} answers ok again",
                r.ssh(&format!(
                    "curl -sfk https://{}:{APISERVER_BIND_PORT}/readyz",
                    victim.address.for_url()
                ))
            )],
        ));
    }
    if let Some(victim) = spec.control_plane.last() {
        let r = Remote(victim);
        out.push((
            format!(
                "drill: stop etcd on {} (the cluster keeps quorum)",
                victim.name
            ),
            vec![
                r.ssh(&park("etcd")),
                "kubectl create configmap cpkeep-drill -n default --from-literal=at=$(date -u +%s)"
                    .to_string(),
            ],
            vec![
                format!(
                    "the write succeeds: {} of {} members keep quorum {}",
                    spec.control_plane.len() - 1,
                    spec.control_plane.len(),
                    spec.quorum()
                ),
                format!(
                    "{} shows one member unhealthy",
                    etcdctl(spec, "endpoint health --cluster -w table")
                ),
            ],
        ));
        out.push((
            format!("drill: put etcd on {} back", victim.name),
            vec![
                r.ssh(&unpark("etcd")),
                "kubectl delete configmap cpkeep-drill -n default".to_string(),
            ],
            vec![format!(
                "{} reports every member healthy again",
                etcdctl(spec, "endpoint health --cluster -w table")
            )],
        ));
    }
    out
}
