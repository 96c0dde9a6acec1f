//! Reading kubeadm's kubeconfig files (`admin.conf`, `super-admin.conf`, `controller-manager.conf`,
//! `scheduler.conf`, `kubelet.conf`): which user the current context authenticates as, and where that
//! user's client certificate and key are — embedded (`client-certificate-data`, `client-key-data`) or
//! referenced by path (`client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem`).
//!
//! This module owns parsing only. It never writes (renewal rewrites files elsewhere), never prints, and
//! keeps `client-key-data` in a [`SecretBytes`] that neither `Debug` nor any error message reveals.

use std::path::{Path, PathBuf};

use base64::Engine;
use saphyr::{LoadableYamlNode, Yaml};

use super::error::CertsError;

/// Bytes that must never be shown: `Debug` prints only their length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret itself, for parsing; never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// Where a kubeconfig user's client certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// `client-certificate-data`: the decoded PEM.
    Embedded(Vec<u8>),
    /// `client-certificate`: a file path, resolved against the kubeconfig's directory.
    File(PathBuf),
}

/// Where a kubeconfig user's client key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// `client-key-data`: the decoded PEM (secret).
    Embedded(SecretBytes),
    /// `client-key`: a file path, resolved against the kubeconfig's directory.
    File(PathBuf),
    /// No key given.
    Absent,
}

/// The credentials of the current context's user in one kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    pub path: PathBuf,
    /// The `users[].name` the current context points at (`kubernetes-admin`, `system:node:master1`).
    pub user: String,
    /// The `clusters[].name` of the current context, when there is one.
    pub cluster: Option<String>,
    /// The cluster's `server` URL.
    pub server: Option<String>,
    /// The cluster's `certificate-authority-data`, decoded (PEM), when embedded.
    pub ca_data: Option<Vec<u8>>,
    pub client_cert: ClientCert,
    pub client_key: ClientKey,
}

impl Kubeconfig {
    /// Reads and parses the kubeconfig at `path`.
    pub fn read(path: &Path) -> Result<Self, CertsError> {
        let bytes = std::fs::read(path).map_err(|source| CertsError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        Self::parse(path, &bytes)
    }

    /// Parses kubeconfig text; `path` names the file in errors and resolves relative references.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, CertsError> {
        let bad = |reason: String| CertsError::Kubeconfig {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|_| bad("not a kubeconfig: not UTF-8 text".to_string()))?;
        let docs = Yaml::load_from_str(text).map_err(|e| {
            bad(format!(
                "not a kubeconfig: not YAML ({} at line {} column {})",
                e.info(),
                e.marker().line(),
                e.marker().col() + 1
            ))
        })?;
        let doc = docs
            .iter()
            .map(untag)
            .find(|d| !d.is_null())
            .ok_or_else(|| bad("not a kubeconfig: the file is empty".to_string()))?;
        if !doc.is_mapping() {
            return Err(bad("not a kubeconfig: the document is not a mapping".into()));
        }
        if let Some(kind) = get_str(doc, "kind") {
            if kind != "Config" {
                return Err(bad(format!(
                    "not a kubeconfig: kind is {kind:?}, not Config"
                )));
            }
        }
        let users = named_list(doc, "users");
        if users.is_empty() {
            return Err(bad("not a kubeconfig: no users".to_string()));
        }
        let context = get_str(doc, "current-context").and_then(|cc| {
            named_list(doc, "contexts")
                .into_iter()
                .find(|(n, _)| n == cc)
                .and_then(|(_, c)| c.as_mapping_get("context").map(untag))
        });
        let wanted_user = context.and_then(|c| get_str(c, "user"));
        let (user_name, user) =
            match wanted_user {
                Some(u) => users.iter().find(|(n, _)| n == u).cloned().ok_or_else(|| {
                    bad(format!("the current context's user {u:?} is not in users"))
                })?,
                None => users[0].clone(),
            };
        let user = user
            .as_mapping_get("user")
            .map(untag)
            .ok_or_else(|| bad(format!("user {user_name:?} has no user mapping")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let client_cert = if let Some(data) = get_str(user, "client-certificate-data") {
            ClientCert::Embedded(decode(data).map_err(|()| {
                bad(format!(
                    "user {user_name:?}: client-certificate-data is not base64"
                ))
            })?)
        } else if let Some(file) = get_str(user, "client-certificate") {
            ClientCert::File(resolve(file))
        } else {
            return Err(bad(format!(
                "user {user_name:?} has no client certificate (client-certificate-data or client-certificate)"
            )));
        };
        let client_key = if let Some(data) = get_str(user, "client-key-data") {
            // The message names the field, never its content.
            ClientKey::Embedded(SecretBytes(decode(data).map_err(|()| {
                bad(format!("user {user_name:?}: client-key-data is not base64"))
            })?))
        } else if let Some(file) = get_str(user, "client-key") {
            ClientKey::File(resolve(file))
        } else {
            ClientKey::Absent
        };
        let cluster_name = context
            .and_then(|c| get_str(c, "cluster"))
            .map(str::to_string);
        let cluster = named_list(doc, "clusters")
            .into_iter()
            .find(|(n, _)| Some(n.as_str()) == cluster_name.as_deref())
            .or_else(|| named_list(doc, "clusters").into_iter().next())
            .and_then(|(_, c)| c.as_mapping_get("cluster").map(untag));
        let ca_data = cluster
            .and_then(|c| get_str(c, "certificate-authority-data"))
            .and_then(|d| decode(d).ok());
        let server = cluster
            .and_then(|c| get_str(c, "server"))
            .map(str::to_string);
        Ok(Kubeconfig {
            path: path.to_path_buf(),
            user: user_name,
            cluster: cluster_name,
            server,
            ca_data,
            client_cert,
            client_key,
        })
    }
}

/// Reads a file named by a kubeconfig, mapping failures to [`CertsError::Read`].
pub fn read_referenced(path: &Path) -> Result<Vec<u8>, CertsError> {
    std::fs::read(path).map_err(|source| CertsError::Read {
        path: path.to_path_buf(),
        error: source,
    })
}

/// `kind: Config` lists (`users`, `contexts`, `clusters`) as (name, entry) pairs.
fn named_list<'a, 'b>(doc: &'a Yaml<'b>, key: &str) -> Vec<(String, &'a Yaml<'b>)> {
    doc.as_mapping_get(key)
        .map(untag)
        .and_then(|l| l.as_sequence())
        .map(|seq| {
            seq.iter()
                .map(untag)
                .filter_map(|e| get_str(e, "name").map(|n| (n.to_string(), e)))
                .collect()
        })
        .unwrap_or_default()
}

fn get_str<'a>(node: &'a Yaml<'_>, key: &str) -> Option<&'a str> {
    node.as_mapping_get(key)
        .map(untag)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

fn untag<'a, 'b>(y: &'a Yaml<'b>) -> &'a Yaml<'b> {
    match y {
        Yaml::Tagged(_, inner) => untag(inner),
        other => other,
    }
}

/// Standard base64 with or without padding, whitespace ignored (as client-go accepts it).
fn decode(data: &str) -> Result<Vec<u8>, ()> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Y2E=
    server: https://192.168.28.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:master1
  name: system:node:master1@kubernetes
current-context: system:node:master1@kubernetes
kind: Config
preferences: {}
users:
- name: other
  user:
    client-certificate-data: b3RoZXI=
- name: system:node:master1
  user:
    client-certificate: pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
";

    #[test]
    fn follows_the_current_context_and_resolves_paths() {
        let k =
            Kubeconfig::parse(Path::new("/etc/kubernetes/kubelet.conf"), CONF.as_bytes()).unwrap();
        assert_eq!(k.user, "system:node:master1");
        assert_eq!(
            k.client_cert,
            ClientCert::File(PathBuf::from(
                "/etc/kubernetes/pki/kubelet-client-current.pem"
            ))
        );
        assert_eq!(
            k.client_key,
            ClientKey::File(PathBuf::from(
                "/var/lib/kubelet/pki/kubelet-client-current.pem"
            ))
        );
        assert_eq!(k.ca_data.as_deref(), Some(&b"ca"[..]));
        assert_eq!(k.server.as_deref(), Some("https://192.168.28.10:6443"));
    }

    #[test]
    fn embedded_key_is_never_shown() {
        let text = "kind: Config\nusers:\n- name: admin\n  user:\n    client-certificate-data: Y2VydA==\n    client-key-data: c2VjcmV0LWtleQ==\n";
        let k = Kubeconfig::parse(Path::new("admin.conf"), text.as_bytes()).unwrap();
        let dbg = format!("{k:?}");
        assert!(
            !dbg.contains("secret-key") && !dbg.contains("c2VjcmV0"),
            "{dbg}"
        );
        match k.client_key {
            ClientKey::Embedded(s) => assert_eq!(s.expose(), b"secret-key"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_yaml_is_one_clear_error() {
        let text = "users: [\n  client-key-data: c2VjcmV0\n";
        let e = Kubeconfig::parse(Path::new("/k/admin.conf"), text.as_bytes()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/k/admin.conf: not a kubeconfig: not YAML"),
            "{msg}"
        );
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
        let e = Kubeconfig::parse(Path::new("a"), b"- 1\n- 2\n").unwrap_err();
        assert!(e.to_string().contains("not a mapping"), "{e}");
    }
}
