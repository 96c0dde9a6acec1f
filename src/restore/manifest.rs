//! kubeadm's etcd static pod manifest (`/etc/kubernetes/manifests/etcd.yaml`), read through
//! [`crate::staticpod::PodManifest`]: the etcd container's command line and the flags a restore
//! and its health check need from it.
//!
//! This module owns parsing only. It never writes, moves or prints anything, and it never guesses
//! a value the manifest does not give: a missing required flag is an error naming the file and
//! every flag that is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::staticpod::ManifestError;
use crate::staticpod::PodManifest;

/// Flags whose value may follow as the next command item (`--name master1`), as Go's flag package
/// allows for non-boolean flags.
const VALUE_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-token",
    "initial-cluster-state",
    "advertise-client-urls",
    "listen-client-urls",
    "listen-peer-urls",
    "listen-metrics-urls",
    "trusted-ca-file",
    "cert-file",
    "key-file",
    "peer-trusted-ca-file",
    "peer-cert-file",
    "peer-key-file",
];

/// What the etcd container of a kubeadm manifest runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdManifest {
    pub path: PathBuf,
    /// The container's name (`etcd` in kubeadm's manifests).
    pub container: String,
    /// `command` followed by `args`, as the kubelet joins them.
    pub command: Vec<String>,
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` as written; etcd's default (this member alone) when absent.
    pub initial_cluster: Option<String>,
    pub initial_cluster_token: Option<String>,
    /// `new`, or `existing` on members kubeadm joined to a running cluster.
    pub initial_cluster_state: Option<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_client_urls: Vec<String>,
    pub trusted_ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    /// The etcd container's hostPath mounts: (path in the container, path on the node).
    pub host_mounts: Vec<(PathBuf, PathBuf)>,
}

impl EtcdManifest {
    /// Reads and parses the manifest at `path`.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        Self::from_pod(PodManifest::read(path, "etcd")?)
    }

    /// Parses manifest text; `path` only names the file in errors and in the result.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        Self::from_pod(PodManifest::parse(path, text)?)
    }

    /// The etcd container of a static pod (named `etcd`, or running a program named `etcd`) and
    /// the flags a restore needs from its command.
    pub fn from_pod(pod: PodManifest) -> Result<Self, ManifestError> {
        let bad = |reason: String| ManifestError {
            path: pod.path.clone(),
            reason,
        };
        let is_etcd = |c: &&crate::staticpod::Container| {
            c.name == "etcd"
                || c.command
                    .first()
                    .is_some_and(|p| Path::new(p).file_name().is_some_and(|f| f == "etcd"))
        };
        let Some(c) = pod.containers.iter().find(is_etcd) else {
            let names: Vec<&str> = pod
                .containers
                .iter()
                .map(|c| {
                    if c.name.is_empty() {
                        "(unnamed)"
                    } else {
                        c.name.as_str()
                    }
                })
                .collect();
            return Err(bad(format!(
                "no etcd container in spec.containers (containers: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        let container = c.name.clone();
        let command = c.command.clone();
        let host_mounts = c
            .volume_mounts
            .iter()
            .filter_map(|m| Some((m.mount_path.clone(), pod.host_path(c, &m.mount_path)?)))
            .collect();
        if command.is_empty() {
            return Err(bad(format!(
                "the {container} container has no command: kubeadm writes etcd's flags there"
            )));
        }
        let flags = parse_flags(&command);
        let value = |f: &str| flags.get(f).filter(|v| !v.trim().is_empty()).cloned();
        let missing: Vec<&str> = ["--name", "--data-dir", "--initial-advertise-peer-urls"]
            .into_iter()
            .filter(|f| value(&f[2..]).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!(
                "the {container} container's command lacks {}: a restore needs this member's name, \
                 data directory and peer URLs from it",
                join_and(&missing)
            )));
        }
        let urls = |f: &str| value(f).map(|v| split_list(&v)).unwrap_or_default();
        Ok(EtcdManifest {
            path: pod.path.clone(),
            container,
            name: value("name").unwrap_or_default(),
            data_dir: value("data-dir").map(PathBuf::from).unwrap_or_default(),
            wal_dir: value("wal-dir").map(PathBuf::from),
            initial_advertise_peer_urls: urls("initial-advertise-peer-urls"),
            initial_cluster: value("initial-cluster"),
            initial_cluster_token: value("initial-cluster-token"),
            initial_cluster_state: value("initial-cluster-state"),
            advertise_client_urls: urls("advertise-client-urls"),
            listen_client_urls: urls("listen-client-urls"),
            trusted_ca_file: value("trusted-ca-file").map(PathBuf::from),
            cert_file: value("cert-file").map(PathBuf::from),
            client_cert_auth: value("client-cert-auth").is_some_and(|v| v == "true"),
            command,
            host_mounts,
        })
    }
}

impl EtcdManifest {
    /// Where `path`, as the etcd container sees it, is on this node: through the hostPath volume
    /// mounted deepest above it (kubeadm mounts the data dir and the certificates at the same
    /// paths). `None` when no hostPath volume holds it.
    pub fn on_node(&self, path: &Path) -> Option<PathBuf> {
        self.host_mounts
            .iter()
            .filter_map(|(inside, node)| {
                let rest = path.strip_prefix(inside).ok()?;
                let p = if rest.as_os_str().is_empty() {
                    node.clone()
                } else {
                    node.join(rest)
                };
                Some((inside.components().count(), p))
            })
            .max_by_key(|(depth, _)| *depth)
            .map(|(_, p)| p)
    }
}

/// etcd's flags in a command line: `--flag=value`, `-flag=value`, `--flag value` (for flags that
/// take a value), or a bare boolean `--flag` (`"true"`). The program name, when the first item is
/// not a flag, is skipped; a repeated flag keeps its last value, as Go's flag package does.
pub fn parse_flags(command: &[String]) -> BTreeMap<String, String> {
    let mut flags = BTreeMap::new();
    let mut items = command.iter().peekable();
    if items.peek().is_some_and(|first| !first.starts_with('-')) {
        items.next();
    }
    while let Some(item) = items.next() {
        let Some(flag) = item
            .strip_prefix("--")
            .or_else(|| item.strip_prefix('-'))
            .filter(|f| !f.is_empty())
        else {
            continue;
        };
        match flag.split_once('=') {
            Some((k, v)) => {
                flags.insert(k.to_string(), v.to_string());
            }
            None if VALUE_FLAGS.contains(&flag) => {
                if let Some(v) = items.next_if(|n| !n.starts_with('-')) {
                    flags.insert(flag.to_string(), v.clone());
                }
            }
            None => {
                flags.insert(flag.to_string(), "true".to_string());
            }
        }
    }
    flags
}

/// A comma-separated list, trimmed, without empty items.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubeadm v1.16's etcd manifest, as `kubeadm init` wrote it (fixtures/kubeadm-v1.16).
    const KUBEADM: &str = r#"apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://192.168.28.10:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://192.168.28.10:2380
    - --initial-cluster=master1=https://192.168.28.10:2380
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://192.168.28.10:2379
    - --listen-metrics-urls=http://127.0.0.1:2381
    - --listen-peer-urls=https://192.168.28.10:2380
    - --name=master1
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.aliyuncs.com/google_containers/etcd:3.3.15-0
    name: etcd
  hostNetwork: true
status: {}
"#;

    fn parse(text: &str) -> Result<EtcdManifest, String> {
        EtcdManifest::parse(Path::new("/m/etcd.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_kubeadm_manifest() {
        let m = parse(KUBEADM).unwrap();
        assert_eq!(m.container, "etcd");
        assert_eq!(m.name, "master1");
        assert_eq!(m.data_dir, PathBuf::from("/var/lib/etcd"));
        assert_eq!(m.wal_dir, None);
        assert_eq!(
            m.initial_advertise_peer_urls,
            vec!["https://192.168.28.10:2380"]
        );
        assert_eq!(
            m.initial_cluster.as_deref(),
            Some("master1=https://192.168.28.10:2380")
        );
        assert_eq!(m.initial_cluster_token, None);
        assert_eq!(
            m.listen_client_urls,
            vec!["https://127.0.0.1:2379", "https://192.168.28.10:2379"]
        );
        assert_eq!(
            m.trusted_ca_file,
            Some(PathBuf::from("/etc/kubernetes/pki/etcd/ca.crt"))
        );
        assert!(m.client_cert_auth);
        assert_eq!(m.command.len(), 18);
    }

    #[test]
    fn paths_on_the_node_through_host_path_volumes() {
        let m = parse(
            "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd, --name=a, --data-dir=/var/lib/etcd, --initial-advertise-peer-urls=http://a:2380]\n    volumeMounts:\n    - {name: data, mountPath: /var/lib/etcd}\n    - {name: certs, mountPath: /etc/kubernetes/pki/etcd}\n  volumes:\n  - {name: data, hostPath: {path: /mnt/ssd/etcd}}\n  - {name: certs, hostPath: {path: /etc/kubernetes/pki/etcd}}\n",
        )
        .unwrap();
        assert_eq!(m.on_node(&m.data_dir), Some(PathBuf::from("/mnt/ssd/etcd")));
        assert_eq!(
            m.on_node(Path::new("/var/lib/etcd/member")),
            Some(PathBuf::from("/mnt/ssd/etcd/member"))
        );
        assert_eq!(
            m.on_node(Path::new("/etc/kubernetes/pki/etcd/ca.crt")),
            Some(PathBuf::from("/etc/kubernetes/pki/etcd/ca.crt"))
        );
        assert_eq!(m.on_node(Path::new("/var/lib/etcd2")), None);
    }

    #[test]
    fn flags_in_every_form() {
        let cmd: Vec<String> = [
            "/usr/local/bin/etcd",
            "-name",
            "a",
            "--data-dir",
            "/d",
            "--client-cert-auth",
            "--initial-cluster-token=t1",
            "--initial-cluster-token=t2",
            "-wal-dir=/w",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = parse_flags(&cmd);
        assert_eq!(f["name"], "a");
        assert_eq!(f["data-dir"], "/d");
        assert_eq!(f["client-cert-auth"], "true");
        assert_eq!(f["initial-cluster-token"], "t2");
        assert_eq!(f["wal-dir"], "/w");
    }

    #[test]
    fn command_and_args_are_joined() {
        let m = parse(
            "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd]\n    args: ['--name=x', '--data-dir=/d', '--initial-advertise-peer-urls=http://a:2380', '--wal-dir=/w', '--initial-cluster-state=existing']\n",
        )
        .unwrap();
        assert_eq!(m.name, "x");
        assert_eq!(m.wal_dir, Some(PathBuf::from("/w")));
        assert_eq!(m.initial_cluster_state.as_deref(), Some("existing"));
        assert_eq!(m.initial_cluster, None);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        for (text, want) in [
            ("kind: Pod\nspec: [unclosed", "not YAML"),
            ("", "the file is empty"),
            ("kind: Deployment\nspec: {}\n", "kind is \"Deployment\", not Pod"),
            ("kind: Pod\nspec: {}\n", "no spec.containers list"),
            (
                "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver]\n",
                "no etcd container in spec.containers (containers: kube-apiserver)",
            ),
            (
                "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    image: etcd\n",
                "the etcd container has no command",
            ),
            (
                "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: etcd --name=x\n",
                "the container's command is \"etcd --name=x\", not a list",
            ),
            (
                "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd, 3]\n",
                "item 2 of the container's command is a scalar, not a string",
            ),
            (
                "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd, --name=x]\n",
                "lacks --data-dir and --initial-advertise-peer-urls",
            ),
            (
                "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd, --name=, --data-dir=/d]\n",
                "lacks --name and --initial-advertise-peer-urls",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("/m/etcd.yaml: "), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
