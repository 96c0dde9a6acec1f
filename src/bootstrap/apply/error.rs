//! Why `bootstrap apply` (or the failover drill over a bundle) stopped. Each names the file, node
//! or step and the cause in one line; none carries a secret (commands hold none, and the remote
//! layer masks outputs).

use std::path::PathBuf;
use std::time::Duration;

use super::preflight::NodePreflight;
use crate::certs::error::io_reason;
use crate::etcd::{EtcdError, GateRefusal};
use crate::failure::FailureClass;
use crate::remote::RemoteError;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The bundle is missing, not a bundle, or a file differs from what the plan recorded.
    #[error("{}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },

    /// `state.json` cannot be read or written.
    #[error("{}: {reason}", path.display())]
    Journal { path: PathBuf, reason: String },

    /// `--node` names no node of the plan, or a step it needs has not run.
    #[error("{0}")]
    Selection(String),

    /// A node cannot be reached, or a command could not run.
    #[error(transparent)]
    Remote(#[from] RemoteError),

    /// Nodes failed preflight; nothing was changed anywhere.
    #[error("preflight failed, nothing was changed: {}", describe_preflight(.0))]
    Preflight(Vec<NodePreflight>),

    /// The quorum gate refused a membership change.
    #[error("{node}: quorum gate: {refusal}")]
    Gate { node: String, refusal: GateRefusal },

    /// etcd could not be asked.
    #[error("{node}: {source}")]
    Etcd { node: String, source: EtcdError },

    /// A membership change failed.
    #[error("{node}: {source}")]
    Member {
        node: String,
        source: crate::etcd::MemberError,
    },

    /// A step's check did not hold in time.
    #[error("step {step} on {node}: {what} (waited {})", humantime::format_duration(*after))]
    NotReady {
        step: String,
        node: String,
        what: String,
        after: Duration,
    },

    /// A step failed for another reason.
    #[error("step {step} on {node}: {cause}")]
    Step {
        step: String,
        node: String,
        cause: String,
    },

    /// A file of the runner could not be written.
    #[error("cannot write {}: {}", path.display(), io_reason(source))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn describe_preflight(nodes: &[NodePreflight]) -> String {
    nodes
        .iter()
        .filter(|n| !n.failed.is_empty())
        .map(|n| format!("{}: {}", n.node, n.failed.join("; ")))
        .collect::<Vec<_>>()
        .join(" | ")
}

impl ApplyError {
    /// A command of step `s` that failed (the remote error names the node and the command).
    pub fn in_step(s: &super::steps::ApplyStep, e: RemoteError) -> Self {
        ApplyError::Step {
            step: s.id.clone(),
            node: s.node.clone(),
            cause: e.to_string(),
        }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            ApplyError::Bundle { .. } | ApplyError::Journal { .. } | ApplyError::Selection(_) => {
                FailureClass::Unusable
            }
            ApplyError::Remote(e) => e.class(),
            ApplyError::Preflight(_) | ApplyError::Gate { .. } => FailureClass::Refused,
            ApplyError::Etcd { source, .. } => source.class(),
            ApplyError::Member { source, .. } => source.class(),
            ApplyError::NotReady { .. } | ApplyError::Step { .. } | ApplyError::Write { .. } => {
                FailureClass::Failed
            }
        }
    }
}
