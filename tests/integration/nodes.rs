//! Test nodes: each a real OpenSSH server (tools/bin/sshd, as root) in its own mount namespace,
//! with its own /etc/kubernetes, /var/lib/etcd, /var/lib/kubelet, /run/containerd and
//! /usr/local/sbin (holding the kubeadm/kubelet/kubectl doubles, first in root's PATH), its own
//! loopback address 127.77.K.x and a kubelet double running beside sshd. The runner reaches them
//! through an ssh_config made here (strict host key checking against the nodes' own keys).
//!
//! The nodes share this machine's network namespace and process table; only their mounts are
//! their own. Everything a node started (sshd, its sessions, the kubelet double, etcd) is killed
//! on drop: every process in the node's mount namespace, after which its mounts vanish with it.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cpkeep::remote::{Session, SshTarget, Target};

use crate::harness::{tool, Etcd};

/// The double binary (tests/doubles/node_double), built by `cargo test`.
pub const DOUBLE: &str = env!("CARGO_BIN_EXE_cpkeep-node-double");

/// The directories a node has for itself: (path in the node, directory name under its root).
const PRIVATE_DIRS: &[(&str, &str)] = &[
    ("/etc/kubernetes", "etc-kubernetes"),
    ("/var/lib/etcd", "var-lib-etcd"),
    ("/var/lib/kubelet", "var-lib-kubelet"),
    ("/run/containerd", "run-containerd"),
    ("/usr/local/sbin", "usr-local-sbin"),
];

/// What to start.
#[derive(Debug, Clone)]
pub struct NodesSpec {
    pub count: usize,
    /// Indices of nodes whose /proc/sys/net/ipv4/ip_forward reads 0 (kubeadm's preflight fails).
    pub no_ip_forward: Vec<usize>,
    /// Extra double.env settings for every node.
    pub double_env: Vec<(String, String)>,
}

impl NodesSpec {
    pub fn new(count: usize) -> Self {
        NodesSpec {
            count,
            no_ip_forward: Vec::new(),
            double_env: Vec::new(),
        }
    }
}

/// One node.
pub struct TestNode {
    /// `node1`, `node2`, ...
    pub name: String,
    /// 127.77.K.x
    pub ip: String,
    /// sshd's port on `ip`.
    pub port: u16,
    /// The host directory holding this node's private directories, keys and logs.
    pub root: PathBuf,
    /// The `unshare` shell that became sshd.
    child: Child,
    /// This node's mount namespace (`mnt:[inode]`).
    mnt_ns: String,
    /// double.env settings, in order.
    env: Vec<(String, String)>,
}

/// Started nodes; everything is stopped on drop.
pub struct TestNodes {
    pub nodes: Vec<TestNode>,
    /// The runner's ssh_config (`ssh -F`).
    pub ssh_config: PathBuf,
    /// The runner's private key.
    pub identity: PathBuf,
    /// The nodes' host keys, as `[ip]:port ssh-ed25519 ...`.
    pub known_hosts: PathBuf,
    /// Stands in for the cluster's API server between the doubles: `kubeadm init` leaves the etcd
    /// endpoint and a client certificate here; `kubeadm join`/`kubectl` on other nodes read them.
    pub cluster_dir: PathBuf,
    dir: tempfile::TempDir,
}

static NEXT_SUBNET: AtomicU32 = AtomicU32::new(0);

/// 127.77.K.0/24 for the next set of nodes: K from a counter (tests of this binary run in one
/// process) offset by the process id, so that two test processes rarely meet.
fn next_subnet() -> u32 {
    let n = NEXT_SUBNET.fetch_add(1, Ordering::SeqCst);
    (std::process::id().wrapping_mul(37).wrapping_add(n)) % 250 + 1
}

fn sh(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(path: &Path) -> String {
    sh(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cpkeep-test", "-f"])
            .arg(path),
        "ssh-keygen",
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// A free TCP port on `ip` (bound and released; the nodes' addresses are private to one test).
fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn write(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl TestNodes {
    /// Starts `spec.count` nodes and waits until each sshd accepts connections.
    pub fn start(spec: NodesSpec) -> TestNodes {
        assert!(spec.count >= 1 && spec.count < 250);
        let sshd = tool("sshd");
        for (p, _) in PRIVATE_DIRS {
            std::fs::create_dir_all(p).unwrap();
        }
        // sshd's privilege separation directory; empty, shared by all nodes.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("cpkeep-nodes.")
            .tempdir()
            .unwrap();
        let cluster_dir = dir.path().join("cluster");
        std::fs::create_dir_all(&cluster_dir).unwrap();
        let identity = dir.path().join("id_ed25519");
        let client_pub = keygen(&identity);
        let k = next_subnet();

        // sshd refuses to start without its privilege separation user; give the nodes a passwd
        // that has one rather than touching the system's.
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        if !passwd.lines().any(|l| l.starts_with("sshd:")) {
            if !passwd.ends_with('\n') {
                passwd.push('\n');
            }
            passwd.push_str("sshd:x:64999:65534::/run/sshd:/usr/sbin/nologin\n");
        }

        let mut nodes = Vec::new();
        let mut known = String::new();
        let mut config = String::from("# cpkeep test nodes\n");
        for i in 0..spec.count {
            let name = format!("node{}", i + 1);
            let ip = format!("127.77.{k}.{}", i + 1);
            let root = dir.path().join(&name);
            for (_, sub) in PRIVATE_DIRS {
                std::fs::create_dir_all(root.join(sub)).unwrap();
            }
            write(&root.join("passwd"), &passwd, 0o644);
            let forward = if spec.no_ip_forward.contains(&i) {
                "0\n"
            } else {
                "1\n"
            };
            write(&root.join("ip_forward"), forward, 0o644);
            let host_key = root.join("ssh_host_ed25519_key");
            let host_pub = keygen(&host_key);
            write(
                &root.join("authorized_keys"),
                &format!("{client_pub}\n"),
                0o600,
            );
            let port = free_port(&ip);
            write(
                &root.join("sshd_config"),
                &format!(
                    "HostKey {hk}\nAuthorizedKeysFile {ak}\nPermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nPidFile none\nLogLevel VERBOSE\nMaxSessions 50\n\
                     MaxStartups 50:30:100\n",
                    hk = host_key.display(),
                    ak = root.join("authorized_keys").display()
                ),
                0o600,
            );
            for (t, l) in [
                ("kubeadm", "kubeadm"),
                ("kubelet", "kubelet"),
                ("kubectl", "kubectl"),
            ] {
                std::os::unix::fs::symlink(DOUBLE, root.join("usr-local-sbin").join(l))
                    .unwrap_or_else(|e| panic!("link {t}: {e}"));
            }
            let mut env = vec![
                ("KUBEADM_VERSION".to_string(), "v1.31.4".to_string()),
                ("KUBELET_VERSION".to_string(), "v1.31.4".to_string()),
                ("ETCD".to_string(), Etcd::V35.etcd().display().to_string()),
                ("NODE_IP".to_string(), ip.clone()),
                ("CLUSTER_DIR".to_string(), cluster_dir.display().to_string()),
            ];
            env.extend(spec.double_env.iter().cloned());
            write_env(&root, &env);

            let mut script = String::from("set -e\n");
            for (p, sub) in PRIVATE_DIRS {
                script.push_str(&format!(
                    "mount --bind '{}' '{p}'\n",
                    root.join(sub).display()
                ));
            }
            script.push_str(&format!(
                "mount --bind '{r}/passwd' /etc/passwd\n\
                 mount --bind '{r}/ip_forward' /proc/sys/net/ipv4/ip_forward\n\
                 /usr/local/sbin/kubelet --double-run </dev/null >>'{r}/kubelet.log' 2>&1 &\n\
                 exec '{sshd}' -D -f '{r}/sshd_config' -p {port} -o ListenAddress={ip} -E '{r}/sshd.log'\n",
                r = root.display(),
                sshd = sshd.display(),
            ));
            let child = Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(root.join("start.log")).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("unshare for {name}: {e}"));
            // Known once sshd listens (wait_ready): before that the shell may not have entered it.
            let mnt_ns = String::new();
            known.push_str(&format!("[{ip}]:{port} {host_pub}\n"));
            config.push_str(&format!(
                "Host {name} {ip}\n  HostName {ip}\n  Port {port}\n  User root\n  IdentityFile {id}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  BatchMode yes\n",
                id = identity.display(),
                kh = dir.path().join("known_hosts").display(),
            ));
            nodes.push(TestNode {
                name,
                ip,
                port,
                root,
                child,
                mnt_ns,
                env,
            });
        }
        let known_hosts = dir.path().join("known_hosts");
        write(&known_hosts, &known, 0o644);
        let ssh_config = dir.path().join("ssh_config");
        write(&ssh_config, &config, 0o644);
        let mut nodes = TestNodes {
            nodes,
            ssh_config,
            identity,
            known_hosts,
            cluster_dir,
            dir,
        };
        for n in &mut nodes.nodes {
            n.wait_ready();
        }
        nodes
    }

    /// The ssh target of node `i` (0-based), through the runner's ssh_config.
    pub fn target(&self, i: usize) -> Target {
        let n = &self.nodes[i];
        Target::Ssh(SshTarget {
            host: n.ip.clone(),
            user: "root".into(),
            port: n.port,
            identity_file: Some(self.identity.clone()),
            config_file: Some(self.ssh_config.clone()),
        })
    }

    /// A session to node `i`.
    pub async fn session(&self, i: usize) -> Session {
        let n = &self.nodes[i];
        Session::connect(&n.name, &self.target(i), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", n.log("sshd.log")))
    }

    /// Sets `key` in node `i`'s double.env (replacing an earlier value).
    pub fn set_double(&mut self, i: usize, key: &str, value: &str) {
        let n = &mut self.nodes[i];
        n.env.retain(|(k, _)| k != key);
        n.env.push((key.to_string(), value.to_string()));
        write_env(&n.root, &n.env);
    }

    /// A temporary directory for the test's own files.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

fn write_env(root: &Path, env: &[(String, String)]) {
    let mut text = String::from("# written by tests/integration/nodes.rs for the node doubles\n");
    for (k, v) in env {
        text.push_str(&format!("{k}={v}\n"));
    }
    let path = root.join("usr-local-sbin").join("double.env");
    let tmp = path.with_extension("env.tmp");
    write(&tmp, &text, 0o644);
    std::fs::rename(tmp, path).unwrap();
}

impl TestNode {
    /// The host path behind `p`, a path under one of the node's private directories.
    pub fn path(&self, p: &str) -> PathBuf {
        for (inside, sub) in PRIVATE_DIRS {
            if let Some(rest) = p.strip_prefix(inside) {
                return self.root.join(sub).join(rest.trim_start_matches('/'));
            }
        }
        panic!("{p} is not under a node's private directory");
    }

    /// Runs `cmd` with sh inside the node's mount namespace (for assertions; not over ssh).
    pub fn exec(&self, cmd: &str) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.child.id()))
            .args(["--", "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nsenter into {}: {e}", self.name))
    }

    /// One of the node's logs (sshd.log, kubelet.log, start.log), or what went wrong reading it.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(name)).unwrap_or_else(|e| format!("({name}: {e})"))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}: sshd exited ({status})\nstart.log:\n{}\nsshd.log:\n{}",
                    self.name,
                    self.log("start.log"),
                    self.log("sshd.log")
                );
            }
            if TcpStream::connect((self.ip.as_str(), self.port)).is_ok() {
                // sshd listens, so the shell has entered its namespace and exec'd: record it, and
                // make sure it is not ours (Drop kills every process in it).
                let ns = |pid: String| {
                    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                };
                let mine = ns("self".into());
                let theirs = ns(self.child.id().to_string());
                assert!(
                    !theirs.is_empty() && theirs != mine,
                    "{}: sshd is not in a mount namespace of its own ({theirs})",
                    self.name
                );
                self.mnt_ns = theirs;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: sshd not listening on {}:{} after 15 s\n{}",
                self.name,
                self.ip,
                self.port,
                self.log("sshd.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of every process in this node's mount namespace.
    fn processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let mine = std::fs::read_link("/proc/self/ns/mnt")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if self.mnt_ns.is_empty() || self.mnt_ns == mine {
            return out;
        }
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
                    if ns.display().to_string() == self.mnt_ns {
                        out.push(pid);
                    }
                }
            }
        }
        out
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.processes();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.try_wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
