//! Errors of the native restore. Each names the item, member or file at fault and says what is wrong
//! in words a user running `cpkeep restore` can act on.

use std::io;
use std::path::PathBuf;

use crate::store::FailureClass;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the initial cluster is empty: give it as name=peerURL[,name=peerURL...]")]
    EmptyInitialCluster,

    #[error("initial cluster item {item:?}: {reason}")]
    InitialClusterItem { item: String, reason: String },

    #[error("member {name:?}: bad peer URL {url:?}: {reason}")]
    PeerUrl {
        name: String,
        url: String,
        reason: String,
    },

    #[error("peer URL {url:?} is given twice (members {first:?} and {second:?}); each URL may belong to one member only")]
    DuplicatePeerUrl {
        url: String,
        first: String,
        second: String,
    },

    #[error("member {name:?} gets the member ID 0, which etcd reserves; change its peer URLs or the cluster token")]
    ZeroMemberId { name: String },

    #[error("members {first:?} and {second:?} get the same member ID {id:x}; change their peer URLs or the cluster token")]
    DuplicateMemberId {
        id: u64,
        first: String,
        second: String,
    },

    #[error("member ID {id:x} is not in the restored cluster (members: {known})")]
    UnknownMember { id: u64, known: String },

    #[error("{} already exists; a restore only writes into a fresh data directory", .0.display())]
    AlreadyExists(PathBuf),

    #[error("{0}")]
    Usage(String),

    /// `--data-dir`/`--wal-dir` names a file, or a path below one.
    #[error("{flag} {}: {} is not a directory", dir.display(), file.display())]
    NotADirectory {
        flag: &'static str,
        dir: PathBuf,
        /// The file in the way: `dir` itself or one of its parents.
        file: PathBuf,
    },

    #[error("{} is not empty: a restore never writes into an existing data directory (pass --move-aside to rename it to <dir>.bak-<timestamp> first)", .0.display())]
    NotEmpty(PathBuf),

    /// The snapshot cannot be used: unreadable, corrupt, undecodable.
    #[error("{0}")]
    Snapshot(String),

    /// A point-in-time restore the revision log cannot carry (target beyond it, a missing,
    /// damaged or unchained segment, a target older than every snapshot).
    #[error("{0}")]
    PointInTime(String),

    #[error(transparent)]
    Fetch(#[from] crate::snapshot::SnapshotError),

    #[error("cannot write the restored db: {0}")]
    Write(#[from] crate::bolt::writer::WriteError),

    /// A failure after the old directories were moved aside, whose rollback failed too.
    #[error("{cause}; rolling back failed: {state}")]
    RolledBackPartly {
        cause: Box<RestoreError>,
        /// What is not where it was.
        state: String,
    },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RestoreError {
    /// 1 failed while restoring (corrupt or unreadable snapshot, write error), 2 refused
    /// (something is in the way), 3 could not start (bad flags or input).
    pub fn class(&self) -> FailureClass {
        match self {
            RestoreError::Fetch(s) => s.class(),
            RestoreError::NotEmpty(_)
            | RestoreError::AlreadyExists(_)
            | RestoreError::PointInTime(_) => FailureClass::Refused,
            RestoreError::Snapshot(_)
            | RestoreError::Write(_)
            | RestoreError::Io { .. }
            | RestoreError::RolledBackPartly { .. } => FailureClass::Failed,
            RestoreError::EmptyInitialCluster
            | RestoreError::InitialClusterItem { .. }
            | RestoreError::PeerUrl { .. }
            | RestoreError::DuplicatePeerUrl { .. }
            | RestoreError::ZeroMemberId { .. }
            | RestoreError::DuplicateMemberId { .. }
            | RestoreError::UnknownMember { .. }
            | RestoreError::Usage(_)
            | RestoreError::NotADirectory { .. } => FailureClass::Unusable,
        }
    }

    /// An I/O failure while doing `action` ("create", "write", "fsync" ...) on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        RestoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
