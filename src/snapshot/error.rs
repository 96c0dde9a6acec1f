//! Errors of the snapshot pipeline and catalog. Each says which member, store object or file, and
//! what went wrong; the CLI maps them to exit codes with [`SnapshotError::class`].

use std::path::PathBuf;

use crate::etcd::EtcdError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("quorum lost: {0}; refusing to back up a member that may be behind (pass --allow-degraded to take it anyway)")]
    QuorumLost(String),

    #[error("no healthy member to take a snapshot from: {0}")]
    NoMember(String),

    #[error("{endpoint}: snapshot stream {reason}")]
    Stream { endpoint: String, reason: String },

    #[error("{endpoint}: snapshot stalled: no bytes for {}", humantime::format_duration(*after))]
    Stalled {
        endpoint: String,
        after: std::time::Duration,
    },

    #[error("{endpoint}: snapshot integrity check failed: {reason}")]
    Integrity { endpoint: String, reason: String },

    #[error("bad age recipient {recipient:?}: {reason}")]
    BadRecipient { recipient: String, reason: String },

    /// Encryption was asked for but no recipient came with it: storing the snapshot in clear would
    /// ship every Secret of the cluster unencrypted.
    #[error("encryption was asked for ({asked}) but it names no age recipient: refusing to store the snapshot unencrypted")]
    NoRecipient { asked: String },

    #[error("cannot read {what} {}: {reason}", path.display())]
    BadFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// A file recognised as a snapshot (raw, zstd or age) whose content is damaged: cut short, a
    /// broken zstd frame or age stream, a db that does not open.
    #[error("snapshot {} is damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("{0}")]
    Encode(String),

    #[error("snapshot {id}: {reason}")]
    Verify { id: String, reason: String },

    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    Usage(String),

    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),

    /// Stopped on request (SIGTERM, the daemon's shutdown) before the snapshot was stored; the
    /// partial object was aborted.
    #[error("{what} was cancelled before it finished; nothing was stored")]
    Cancelled { what: &'static str },
}

pub use crate::store::FailureClass;

impl SnapshotError {
    pub fn class(&self) -> FailureClass {
        match self {
            SnapshotError::QuorumLost(_) => FailureClass::Refused,
            SnapshotError::Etcd(_)
            | SnapshotError::NoMember(_)
            | SnapshotError::BadRecipient { .. }
            | SnapshotError::NoRecipient { .. }
            | SnapshotError::BadFile { .. }
            | SnapshotError::Usage(_)
            | SnapshotError::Exists(_)
            | SnapshotError::NotFound(_) => FailureClass::Unusable,
            SnapshotError::Store(e) => e.class(),
            SnapshotError::Stream { .. }
            | SnapshotError::Stalled { .. }
            | SnapshotError::Integrity { .. }
            | SnapshotError::Corrupt { .. }
            | SnapshotError::Encode(_)
            | SnapshotError::Verify { .. }
            | SnapshotError::Cancelled { .. } => FailureClass::Failed,
        }
    }
}
