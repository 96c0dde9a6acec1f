//! `state.json`: the journal of a bundle's apply. Each finished step is recorded (atomically, 0600)
//! the moment it finishes, so a re-run skips it and resumes at the first unfinished one; the time of
//! the last `kubeadm-certs` upload is kept to know when it must be refreshed. Never prints.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::ApplyError;
use crate::bootstrap::bundle::STATE_FILE;

const KIND: &str = "ApplyState";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FinishedStep {
    pub id: String,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Journal {
    pub api_version: String,
    pub kind: String,
    /// The cluster this journal belongs to: a journal of another cluster is refused.
    pub cluster: String,
    pub finished: Vec<FinishedStep>,
    /// When `kubeadm-certs` was last uploaded (the Secret expires two hours later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs_uploaded_at: Option<DateTime<Utc>>,
}

impl Journal {
    pub fn path(bundle: &Path) -> PathBuf {
        bundle.join(STATE_FILE)
    }

    /// The journal of `bundle`, or an empty one when apply never ran there.
    pub fn load(bundle: &Path, cluster: &str) -> Result<Self, ApplyError> {
        let path = Self::path(bundle);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    api_version: crate::bootstrap::validate::API_VERSION.to_string(),
                    kind: KIND.to_string(),
                    cluster: cluster.to_string(),
                    finished: Vec::new(),
                    certs_uploaded_at: None,
                })
            }
            Err(e) => {
                return Err(ApplyError::Journal {
                    path,
                    reason: crate::certs::error::io_reason(&e),
                })
            }
        };
        let j: Journal = serde_json::from_slice(&bytes).map_err(|e| ApplyError::Journal {
            path: path.clone(),
            reason: format!("not an apply journal: {e}"),
        })?;
        if j.kind != KIND || j.cluster != cluster {
            return Err(ApplyError::Journal {
                path,
                reason: format!(
                    "belongs to cluster {:?}, not {cluster:?}: this bundle's plan was replaced by another cluster's",
                    j.cluster
                ),
            });
        }
        Ok(j)
    }

    pub fn is_done(&self, id: &str) -> bool {
        self.finished.iter().any(|s| s.id == id)
    }

    /// Whether any step has run: only then may apply undo leftovers on a node, since they can only
    /// be its own.
    pub fn started(&self) -> bool {
        !self.finished.is_empty()
    }

    /// Records a finished step and writes the journal at once.
    pub fn finish(&mut self, bundle: &Path, id: &str, at: DateTime<Utc>) -> Result<(), ApplyError> {
        if !self.is_done(id) {
            self.finished.push(FinishedStep {
                id: id.to_string(),
                finished_at: at,
            });
        }
        self.save(bundle)
    }

    pub fn save(&self, bundle: &Path) -> Result<(), ApplyError> {
        let path = Self::path(bundle);
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| ApplyError::Journal {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        crate::fsx::write_atomic(&path, &bytes, 0o600).map_err(|e| ApplyError::Journal {
            path,
            reason: crate::certs::error::io_reason(&e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reload_and_refuse_another_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::load(dir.path(), "prod").unwrap();
        assert!(!j.started());
        let t = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        j.finish(dir.path(), "init:cp1", t).unwrap();
        j.finish(dir.path(), "init:cp1", t).unwrap();
        let again = Journal::load(dir.path(), "prod").unwrap();
        assert_eq!(again.finished.len(), 1);
        assert!(again.is_done("init:cp1") && !again.is_done("join:cp2"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(Journal::path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = Journal::load(dir.path(), "staging")
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to cluster \"prod\""), "{e}");
    }
}
