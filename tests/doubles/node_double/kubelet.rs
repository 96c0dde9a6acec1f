//! The kubelet double. `kubelet --version` prints the version; `kubelet --double-run` (started by
//! the test harness in the node's mount namespace, beside sshd) is the node's kubelet and
//! container runtime: it listens on /run/containerd/containerd.sock (nothing is served; kubeadm's
//! CRI preflight only needs it there), and runs the static pods of /etc/kubernetes/manifests:
//! `etcd.yaml` as REAL etcd with the manifest's command, `kube-apiserver.yaml` as the API server
//! stand-in (apiserver.rs). A pod is restarted 1 s after it exits, restarted when its manifest
//! changes and stopped when its manifest goes away. Other manifests (haproxy, keepalived, kube-vip,
//! controller-manager, scheduler) are ignored: the tests run the bundle's haproxy themselves.
//! Each running pod has `/var/lib/kubelet/double-pods/<name>.pid`; its output goes to `<name>.log`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cpkeep::staticpod::manifest::PodManifest;

use crate::config::Config;
use crate::{fail, Res};

const MANIFESTS: &str = "/etc/kubernetes/manifests";
const PODS: &str = "/var/lib/kubelet/double-pods";
const SOCKET: &str = "/run/containerd/containerd.sock";

pub async fn main(args: Vec<String>) -> Res<()> {
    let config = Config::load()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--version"] => {
            println!("Kubernetes {}", config.get("KUBELET_VERSION")?);
            Ok(())
        }
        ["--double-run"] => run(&config),
        _ => fail!("kubelet double: takes --version, or --double-run (the harness starts it)"),
    }
}

/// How many pods the kubelet double runs now (pid files of live processes).
pub fn running_pods() -> usize {
    let Ok(rd) = std::fs::read_dir(PODS) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter(|e| {
            std::fs::read_to_string(e.path())
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
        })
        .count()
}

struct Pod {
    child: Option<Child>,
    text: String,
    exited_at: Option<Instant>,
}

fn run(config: &Config) -> Res<()> {
    let etcd = PathBuf::from(config.get("ETCD")?);
    std::fs::create_dir_all(PODS).map_err(|e| format!("{PODS}: {e}"))?;
    std::fs::create_dir_all(MANIFESTS).map_err(|e| format!("{MANIFESTS}: {e}"))?;
    let _ = std::fs::remove_file(SOCKET);
    let listener = std::os::unix::net::UnixListener::bind(SOCKET)
        .map_err(|e| format!("kubelet double: cannot listen on {SOCKET}: {e}"))?;
    std::thread::spawn(move || for _ in listener.incoming() {});
    let me = std::env::current_exe().map_err(|e| format!("kubelet double: {e}"))?;
    eprintln!("kubelet double: watching {MANIFESTS}");
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    loop {
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(MANIFESTS) {
            for e in rd.flatten() {
                let p = e.path();
                let Some(stem) = p.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                    continue;
                };
                if p.extension().is_some_and(|x| x == "yaml")
                    && (stem == "etcd" || stem == "kube-apiserver")
                {
                    if let Ok(t) = std::fs::read_to_string(&p) {
                        wanted.insert(stem, t);
                    }
                }
            }
        }
        // Stop pods whose manifest went away or changed.
        for (name, pod) in pods.iter_mut() {
            let keep = wanted.get(name).is_some_and(|t| *t == pod.text);
            if !keep {
                stop(name, pod);
            }
        }
        pods.retain(|name, pod| {
            wanted.get(name).is_some_and(|t| *t == pod.text) || pod.child.is_some()
        });
        for (name, text) in wanted {
            let pod = pods.entry(name.clone()).or_insert(Pod {
                child: None,
                text: text.clone(),
                exited_at: None,
            });
            if let Some(c) = pod.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    eprintln!("kubelet double: {name} exited ({status}); restarting after 1 s");
                    pod.child = None;
                    pod.exited_at = Some(Instant::now());
                    let _ = std::fs::remove_file(format!("{PODS}/{name}.pid"));
                }
            }
            if pod.child.is_none()
                && pod
                    .exited_at
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                match start(&name, &text, &etcd, &me) {
                    Ok(c) => {
                        let _ = std::fs::write(format!("{PODS}/{name}.pid"), c.id().to_string());
                        pod.child = Some(c);
                    }
                    Err(e) => {
                        eprintln!("kubelet double: {name}: {}", e.0);
                        pod.exited_at = Some(Instant::now());
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn stop(name: &str, pod: &mut Pod) {
    if let Some(mut c) = pod.child.take() {
        let _ = c.kill();
        let _ = c.wait();
        eprintln!("kubelet double: stopped {name}");
    }
    let _ = std::fs::remove_file(format!("{PODS}/{name}.pid"));
}

fn start(name: &str, text: &str, etcd: &Path, me: &Path) -> Res<Child> {
    let path = PathBuf::from(format!("{MANIFESTS}/{name}.yaml"));
    let m = PodManifest::parse(&path, text).map_err(|e| e.to_string())?;
    let Some(c) = m.containers.first() else {
        fail!("{}: no container", path.display());
    };
    let Some((prog, args)) = c.command.split_first() else {
        fail!("{}: no command", path.display());
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{PODS}/{name}.log"))
        .map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = match (name, prog.as_str()) {
        ("etcd", "etcd") => Command::new(etcd),
        ("kube-apiserver", "kube-apiserver") => {
            let mut c = Command::new(me);
            c.arg0("kube-apiserver");
            c
        }
        _ => fail!("{}: unexpected command {prog:?}", path.display()),
    };
    let child = match cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => fail!("cannot start {prog}: {e}"),
    };
    eprintln!("kubelet double: started {name} (pid {})", child.id());
    Ok(child)
}
