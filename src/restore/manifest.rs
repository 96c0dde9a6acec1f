//! kubeadm's etcd static pod manifest (`/etc/kubernetes/manifests/etcd.yaml`), read: the etcd
//! container's command line and the flags a restore and its health check need from it.
//!
//! This module owns parsing only. It never writes, moves or prints anything, and it never guesses
//! a value the manifest does not give: a missing required flag is an error naming the file and
//! every flag that is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, Yaml};
use serde::Serialize;

/// A manifest that cannot be used, with the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ManifestError {
    pub path: PathBuf,
    pub reason: String,
}

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
}

impl EtcdManifest {
    /// Reads and parses the manifest at `path`.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let bytes = std::fs::read(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            reason: format!("cannot read the etcd manifest: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ManifestError {
            path: path.to_path_buf(),
            reason: "not an etcd static pod manifest: not UTF-8 text".to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` only names the file in errors and in the result.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let bad = |reason: String| ManifestError {
            path: path.to_path_buf(),
            reason,
        };
        let docs = Yaml::load_from_str(text)
            .map_err(|e| bad(format!("not an etcd static pod manifest: not YAML ({e})")))?;
        let doc = docs
            .iter()
            .map(untag)
            .find(|d| !d.is_null())
            .ok_or_else(|| bad("not an etcd static pod manifest: the file is empty".into()))?;
        if let Some(kind) = doc.as_mapping_get("kind").map(untag) {
            if kind.as_str() != Some("Pod") {
                return Err(bad(format!(
                    "not an etcd static pod manifest: kind is {}, not Pod",
                    describe(kind)
                )));
            }
        }
        let containers = doc
            .as_mapping_get("spec")
            .map(untag)
            .and_then(|s| s.as_mapping_get("containers"))
            .map(untag)
            .and_then(|c| c.as_sequence())
            .ok_or_else(
                || bad("not an etcd static pod manifest: no spec.containers list".into()),
            )?;
        let mut names = Vec::new();
        let mut found = None;
        for c in containers.iter().map(untag) {
            let name = c
                .as_mapping_get("name")
                .map(untag)
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_string();
            let command = strings(c, "command").map_err(&bad)?;
            let is_etcd = name == "etcd"
                || command
                    .first()
                    .is_some_and(|p| Path::new(p).file_name().is_some_and(|f| f == "etcd"));
            if is_etcd && found.is_none() {
                found = Some((name.clone(), c));
            }
            names.push(if name.is_empty() {
                "(unnamed)".to_string()
            } else {
                name
            });
        }
        let (container, c) = found.ok_or_else(|| {
            bad(format!(
                "no etcd container in spec.containers (containers: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })?;
        let mut command = strings(c, "command").map_err(&bad)?;
        command.extend(strings(c, "args").map_err(&bad)?);
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
            path: path.to_path_buf(),
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
        })
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

fn untag<'a, 'b>(y: &'a Yaml<'b>) -> &'a Yaml<'b> {
    match y {
        Yaml::Tagged(_, inner) => untag(inner),
        other => other,
    }
}

/// A list of strings under `key` of a container (absent: empty).
fn strings(container: &Yaml<'_>, key: &str) -> Result<Vec<String>, String> {
    let Some(node) = container.as_mapping_get(key).map(untag) else {
        return Ok(Vec::new());
    };
    if node.is_null() {
        return Ok(Vec::new());
    }
    let seq = node
        .as_sequence()
        .ok_or_else(|| format!("the container's {key} is {}, not a list", describe(node)))?;
    seq.iter()
        .map(untag)
        .enumerate()
        .map(|(i, item)| {
            item.as_str().map(str::to_string).ok_or_else(|| {
                format!(
                    "item {} of the container's {key} is {}, not a string",
                    i + 1,
                    describe(item)
                )
            })
        })
        .collect()
}

fn describe(y: &Yaml<'_>) -> String {
    match y {
        Yaml::Value(s) if s.is_string() => format!("{:?}", y.as_str().unwrap_or_default()),
        Yaml::Value(s) if s.is_null() => "empty".to_string(),
        Yaml::Value(_) | Yaml::Representation(..) => "a scalar".to_string(),
        Yaml::Sequence(_) => "a list".to_string(),
        Yaml::Mapping(_) => "a mapping".to_string(),
        Yaml::Tagged(_, inner) => describe(inner),
        Yaml::Alias(_) => "an alias".to_string(),
        Yaml::BadValue => "an invalid value".to_string(),
    }
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
