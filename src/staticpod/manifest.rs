//! A static pod manifest, read into types: each container's command (`command` followed by `args`,
//! as the kubelet joins them), its ports, its `livenessProbe.httpGet` and its volume mounts, and the
//! pod's hostPath volumes. Only what cpkeep needs; every other field is ignored.
//!
//! Structure the kubelet would refuse (not YAML, not a Pod, no container list, a command that is
//! not a list of strings) is an error naming the file. The liveness probe is kept as written and
//! judged only by the callers that use it ([`super::Probe::from_container`]): a restore of etcd
//! does not fail over an odd probe it never uses.

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

/// The parts of a static pod cpkeep reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodManifest {
    pub path: PathBuf,
    pub containers: Vec<Container>,
    /// `spec.volumes` with a `hostPath` (others are not on the node's disk).
    pub volumes: Vec<HostPathVolume>,
}

/// One container of `spec.containers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Empty when the manifest gives none.
    pub name: String,
    /// `command` followed by `args`.
    pub command: Vec<String>,
    pub ports: Vec<ContainerPort>,
    pub liveness_http_get: Option<HttpGet>,
    pub volume_mounts: Vec<VolumeMount>,
}

/// One of a container's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: Option<u16>,
}

/// `livenessProbe.httpGet` as written: scalars as text, nothing judged yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpGet {
    pub host: Option<String>,
    /// A number or the name of a container port.
    pub port: Option<String>,
    pub path: Option<String>,
    pub scheme: Option<String>,
    /// `httpHeaders` (name, value); `Err` when it is not a list of name/value pairs.
    pub http_headers: Result<Vec<(String, String)>, String>,
}

/// One of a container's `volumeMounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: PathBuf,
}

/// A `hostPath` volume: a directory or file of the node mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPathVolume {
    pub name: String,
    pub path: PathBuf,
}

impl PodManifest {
    /// Reads and parses the manifest at `path`, the `what` manifest (`etcd`) in errors.
    pub fn read(path: &Path, what: &str) -> Result<Self, ManifestError> {
        let bad = |reason: String| ManifestError {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| {
            bad(format!(
                "cannot read the {what} manifest: {}",
                crate::certs::error::io_reason(&e)
            ))
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| bad("not a static pod manifest: not UTF-8 text".to_string()))?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` only names the file in errors and in the result.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let bad = |reason: String| ManifestError {
            path: path.to_path_buf(),
            reason,
        };
        let docs = Yaml::load_from_str(text)
            .map_err(|e| bad(format!("not a static pod manifest: not YAML ({e})")))?;
        let doc = docs
            .iter()
            .map(untag)
            .find(|d| !d.is_null())
            .ok_or_else(|| bad("not a static pod manifest: the file is empty".into()))?;
        if let Some(kind) = doc.as_mapping_get("kind").map(untag) {
            if kind.as_str() != Some("Pod") {
                return Err(bad(format!(
                    "not a static pod manifest: kind is {}, not Pod",
                    describe(kind)
                )));
            }
        }
        let spec = doc.as_mapping_get("spec").map(untag);
        let containers = spec
            .and_then(|s| s.as_mapping_get("containers"))
            .map(untag)
            .and_then(|c| c.as_sequence())
            .ok_or_else(|| bad("not a static pod manifest: no spec.containers list".into()))?;
        let containers = containers
            .iter()
            .map(untag)
            .map(container)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let volumes = spec
            .and_then(|s| s.as_mapping_get("volumes"))
            .map(untag)
            .and_then(|v| v.as_sequence())
            .map(|list| {
                list.iter()
                    .map(untag)
                    .filter_map(|v| {
                        let name = get_str(v, "name")?.to_string();
                        let path = v
                            .as_mapping_get("hostPath")
                            .map(untag)
                            .and_then(|h| get_str(h, "path"))?;
                        Some(HostPathVolume {
                            name,
                            path: PathBuf::from(path),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(PodManifest {
            path: path.to_path_buf(),
            containers,
            volumes,
        })
    }

    /// The container named `name`.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Where `path`, as `container` sees it, is on the node: through the hostPath volume mounted
    /// deepest above it. `None` when no hostPath volume holds it (it lives and dies with the
    /// container).
    pub fn host_path(&self, container: &Container, path: &Path) -> Option<PathBuf> {
        container
            .volume_mounts
            .iter()
            .filter_map(|m| {
                let rest = path.strip_prefix(&m.mount_path).ok()?;
                let volume = self.volumes.iter().find(|v| v.name == m.name)?;
                let on_node = if rest.as_os_str().is_empty() {
                    volume.path.clone()
                } else {
                    volume.path.join(rest)
                };
                Some((m.mount_path.components().count(), on_node))
            })
            .max_by_key(|(depth, _)| *depth)
            .map(|(_, p)| p)
    }
}

fn container(c: &Yaml<'_>) -> Result<Container, String> {
    let name = get_str(c, "name").unwrap_or("").to_string();
    let mut command = strings(c, "command")?;
    command.extend(strings(c, "args")?);
    let ports = c
        .as_mapping_get("ports")
        .map(untag)
        .and_then(|l| l.as_sequence())
        .map(|ports| {
            ports
                .iter()
                .map(untag)
                .map(|p| ContainerPort {
                    name: get_str(p, "name").map(str::to_string),
                    container_port: p
                        .as_mapping_get("containerPort")
                        .map(untag)
                        .and_then(scalar)
                        .and_then(|n| n.parse().ok()),
                })
                .collect()
        })
        .unwrap_or_default();
    let liveness_http_get = c
        .as_mapping_get("livenessProbe")
        .map(untag)
        .and_then(|p| p.as_mapping_get("httpGet"))
        .map(untag)
        .map(http_get);
    let volume_mounts = c
        .as_mapping_get("volumeMounts")
        .map(untag)
        .and_then(|l| l.as_sequence())
        .map(|mounts| {
            mounts
                .iter()
                .map(untag)
                .filter_map(|m| {
                    Some(VolumeMount {
                        name: get_str(m, "name")?.to_string(),
                        mount_path: PathBuf::from(get_str(m, "mountPath")?),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Container {
        name,
        command,
        ports,
        liveness_http_get,
        volume_mounts,
    })
}

fn http_get(h: &Yaml<'_>) -> HttpGet {
    let http_headers = match h.as_mapping_get("httpHeaders").map(untag) {
        None => Ok(Vec::new()),
        Some(list) => list
            .as_sequence()
            .ok_or(())
            .and_then(|items| {
                items
                    .iter()
                    .map(untag)
                    .map(|item| {
                        let name = item.as_mapping_get("name").map(untag).and_then(scalar);
                        let value = item.as_mapping_get("value").map(untag).and_then(scalar);
                        name.map(|n| (n, value.unwrap_or_default())).ok_or(())
                    })
                    .collect()
            })
            .map_err(|()| "httpHeaders is not a list of name/value pairs".to_string()),
    };
    HttpGet {
        host: get_str(h, "host").map(str::to_string),
        port: h.as_mapping_get("port").map(untag).and_then(scalar),
        path: get_str(h, "path").map(str::to_string),
        scheme: get_str(h, "scheme").map(str::to_string),
        http_headers,
    }
}

fn untag<'a, 'b>(y: &'a Yaml<'b>) -> &'a Yaml<'b> {
    match y {
        Yaml::Tagged(_, inner) => untag(inner),
        other => other,
    }
}

/// A non-empty string under `key`.
fn get_str<'a>(node: &'a Yaml<'_>, key: &str) -> Option<&'a str> {
    node.as_mapping_get(key)
        .map(untag)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// A scalar (string or number) as text.
fn scalar(y: &Yaml<'_>) -> Option<String> {
    if let Some(s) = y.as_str() {
        return Some(s.to_string());
    }
    y.as_integer().map(|n| n.to_string())
}

/// A list of strings under `key` of a container (absent or null: empty).
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

#[cfg(test)]
mod tests {
    use super::*;

    const ETCD: &str = "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd, --data-dir=/var/lib/etcd]\n    args: [--name=a]\n    ports:\n    - name: probe-port\n      containerPort: 2381\n    livenessProbe:\n      httpGet:\n        path: /health\n        port: probe-port\n    volumeMounts:\n    - mountPath: /var/lib/etcd\n      name: etcd-data\n    - mountPath: /etc/kubernetes/pki/etcd\n      name: etcd-certs\n  volumes:\n  - hostPath:\n      path: /mnt/disk/etcd\n      type: DirectoryOrCreate\n    name: etcd-data\n  - hostPath:\n      path: /etc/kubernetes/pki/etcd\n    name: etcd-certs\n  - name: scratch\n    emptyDir: {}\n";

    #[test]
    fn reads_containers_and_host_path_volumes() {
        let m = PodManifest::parse(Path::new("/m/etcd.yaml"), ETCD).unwrap();
        let c = m.container("etcd").unwrap();
        assert_eq!(c.command, ["etcd", "--data-dir=/var/lib/etcd", "--name=a"]);
        assert_eq!(c.ports[0].container_port, Some(2381));
        assert_eq!(
            c.liveness_http_get.as_ref().unwrap().port.as_deref(),
            Some("probe-port")
        );
        assert_eq!(m.volumes.len(), 2, "{:?}", m.volumes);
        // Paths as the container sees them, on the node.
        for (inside, node) in [
            ("/var/lib/etcd", Some("/mnt/disk/etcd")),
            (
                "/var/lib/etcd/member/wal",
                Some("/mnt/disk/etcd/member/wal"),
            ),
            (
                "/etc/kubernetes/pki/etcd/ca.crt",
                Some("/etc/kubernetes/pki/etcd/ca.crt"),
            ),
            ("/var/lib/etcd-other", None),
            ("/tmp/x", None),
        ] {
            assert_eq!(
                m.host_path(c, Path::new(inside)),
                node.map(PathBuf::from),
                "{inside}"
            );
        }
    }

    #[test]
    fn structure_the_kubelet_refuses_is_an_error() {
        for (text, want) in [
            ("kind: Pod\nspec: [unclosed", "not YAML"),
            ("", "the file is empty"),
            (
                "kind: Deployment\nspec: {}\n",
                "kind is \"Deployment\", not Pod",
            ),
            ("kind: Pod\nspec: {}\n", "no spec.containers list"),
            (
                "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: etcd --name=x\n",
                "the container's command is \"etcd --name=x\", not a list",
            ),
        ] {
            let e = PodManifest::parse(Path::new("/m/x.yaml"), text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("/m/x.yaml: ") && e.contains(want), "{e}");
        }
    }
}
