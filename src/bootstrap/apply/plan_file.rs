//! What `bootstrap apply` reads of a bundle: the parts of `plan.json` it acts on, and every bundle
//! file checked against the sha256 and mode the plan recorded, so a file edited (or a key exposed)
//! after planning is refused before anything runs. Reads only; never writes, never prints.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ApplyError;
use crate::bootstrap::bundle::PLAN_FILE;
use crate::bootstrap::kubeadm::Role;
use crate::bootstrap::plan::PlanFile;
use crate::bootstrap::spec::{CniSpec, Distribution, LbMode};
use crate::bootstrap::version::KubeVersion;

/// The part of `plan.json` apply needs (serde ignores the rest: steps are the runbook's).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub api_version: String,
    pub kind: String,
    pub cluster: String,
    pub kubernetes_version: String,
    pub control_plane_endpoint: String,
    pub load_balancer: LoadBalancerView,
    pub certificates: CertificatesView,
    pub ca_cert_hash: String,
    pub nodes: Vec<NodeView>,
    pub cni: Option<CniSpec>,
    pub files: Vec<PlanFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerView {
    pub mode: LbMode,
    pub port: u16,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesView {
    pub distribution: Distribution,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    pub role: Role,
    pub address: String,
    pub ssh: SshView,
}

/// How to reach a node: over ssh, or `local` (the runner itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshView {
    #[serde(default)]
    pub local: bool,
    pub user: String,
    pub port: u16,
    pub identity_file: Option<String>,
}

/// A bundle read and checked.
#[derive(Debug, Clone)]
pub struct LoadedBundle {
    pub dir: PathBuf,
    pub plan: PlanView,
    pub version: KubeVersion,
    /// `plan.json`'s sha256: the journal is tied to it.
    pub plan_sha256: String,
    files: BTreeMap<String, PlanFile>,
}

impl LoadedBundle {
    /// Reads `plan.json` and checks every file it lists.
    pub fn load(dir: &Path) -> Result<Self, ApplyError> {
        let plan_path = dir.join(PLAN_FILE);
        let bytes = std::fs::read(&plan_path).map_err(|e| ApplyError::Bundle {
            path: plan_path.clone(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "no plan.json: not a bundle (make one with `cpkeep bootstrap plan`)".to_string()
            } else {
                crate::certs::error::io_reason(&e)
            },
        })?;
        let plan: PlanView = serde_json::from_slice(&bytes).map_err(|e| ApplyError::Bundle {
            path: plan_path.clone(),
            reason: format!("not a cpkeep plan: {e}"),
        })?;
        if plan.api_version != crate::bootstrap::validate::API_VERSION
            || plan.kind != "BootstrapPlan"
        {
            return Err(ApplyError::Bundle {
                path: plan_path,
                reason: format!(
                    "apiVersion {:?} kind {:?} is not a {} BootstrapPlan",
                    plan.api_version,
                    plan.kind,
                    crate::bootstrap::validate::API_VERSION
                ),
            });
        }
        let version =
            KubeVersion::parse(&plan.kubernetes_version).map_err(|why| ApplyError::Bundle {
                path: plan_path.clone(),
                reason: format!("kubernetesVersion: {why}"),
            })?;
        if !plan.nodes.iter().any(|n| n.role == Role::Init) {
            return Err(ApplyError::Bundle {
                path: plan_path,
                reason: "no node has the init role".to_string(),
            });
        }
        let mut files = BTreeMap::new();
        for f in &plan.files {
            check_file(dir, f)?;
            files.insert(f.path.clone(), f.clone());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            plan,
            version,
            plan_sha256: hex::encode(Sha256::digest(&bytes)),
            files,
        })
    }

    /// The bytes of a bundle file the plan lists (checked at load; read again here so a secret is
    /// held in memory only while it is being sent).
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, ApplyError> {
        let f = self.files.get(rel).ok_or_else(|| ApplyError::Bundle {
            path: self.dir.join(rel),
            reason: "not listed in plan.json".to_string(),
        })?;
        read_pinned(&self.dir.join(&f.path), &f.sha256)
    }

    /// Whether the plan lists `rel`.
    pub fn has(&self, rel: &str) -> bool {
        self.files.contains_key(rel)
    }

    /// The mode the plan recorded for `rel` (0644 when unknown).
    pub fn mode(&self, rel: &str) -> u32 {
        self.files
            .get(rel)
            .and_then(|f| u32::from_str_radix(&f.mode, 8).ok())
            .unwrap_or(0o644)
    }

    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.plan.nodes.iter().find(|n| n.name == name)
    }

    /// The first control-plane node (`kubeadm init`).
    pub fn first(&self) -> &NodeView {
        // `load` refused a plan without one.
        self.plan
            .nodes
            .iter()
            .find(|n| n.role == Role::Init)
            .unwrap_or(&self.plan.nodes[0])
    }

    /// Control-plane nodes in join order (the first one first).
    pub fn control_plane(&self) -> Vec<&NodeView> {
        self.plan
            .nodes
            .iter()
            .filter(|n| matches!(n.role, Role::Init | Role::ControlPlane))
            .collect()
    }
}

/// A file's bytes, refused unless their sha256 is the one the plan pinned.
pub fn read_pinned(path: &Path, sha256: &str) -> Result<Vec<u8>, ApplyError> {
    let bytes = std::fs::read(path).map_err(|e| ApplyError::Bundle {
        path: path.to_path_buf(),
        reason: crate::certs::error::io_reason(&e),
    })?;
    if hex::encode(Sha256::digest(&bytes)) != sha256 {
        return Err(changed(path));
    }
    Ok(bytes)
}

fn changed(path: &Path) -> ApplyError {
    ApplyError::Bundle {
        path: path.to_path_buf(),
        reason:
            "changed since the plan was made (sha256 differs): run `cpkeep bootstrap plan` again"
                .to_string(),
    }
}

fn check_file(dir: &Path, f: &PlanFile) -> Result<(), ApplyError> {
    if f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
        return Err(ApplyError::Bundle {
            path: dir.join(PLAN_FILE),
            reason: format!("file path {:?} leaves the bundle", f.path),
        });
    }
    let path = dir.join(&f.path);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| ApplyError::Bundle {
        path: path.clone(),
        reason: format!(
            "listed in plan.json but {}",
            crate::certs::error::io_reason(&e)
        ),
    })?;
    if !meta.is_file() {
        return Err(ApplyError::Bundle {
            path,
            reason: "listed in plan.json but not a regular file".to_string(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if f.secret && mode & 0o077 != 0 {
        return Err(ApplyError::Bundle {
            path,
            reason: format!(
                "holds a secret but is readable by others (mode {mode:04o}): chmod 600 it, and treat the secret as exposed"
            ),
        });
    }
    read_pinned(&path, &f.sha256).map(|_| ())
}
