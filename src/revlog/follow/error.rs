//! The errors that end `backup --follow`. A member failing, a store down, a compaction past the log
//! are not among them: the follower rides those out (reconnect, retry, new snapshot). What is left
//! is what no retry can mend: bad settings, an etcd too old to trust its watch, a refusal by etcd.

use crate::etcd::EtcdError;
use crate::failure::FailureClass;
use crate::snapshot::SnapshotError;

/// Why `backup --follow` stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The full snapshot the log starts from (or one taken to heal a gap) failed.
    #[error("full snapshot: {0}")]
    Snapshot(#[from] SnapshotError),

    #[error(transparent)]
    Etcd(#[from] EtcdError),

    /// A member runs an etcd whose watch is known to lose events.
    #[error(
        "{endpoint} runs etcd {version}: its watch can lose events after a compaction (fixed in 3.5.13 and 3.4.31); upgrade etcd, or pass --allow-old-etcd to follow anyway"
    )]
    OldEtcd { endpoint: String, version: String },

    /// etcd refused the watch itself (permissions, a bad range): retrying would not help.
    #[error("{endpoint}: etcd refused the watch: {reason}")]
    WatchRefused { endpoint: String, reason: String },

    /// Settings that cannot work (a zero interval or size).
    #[error("{0}")]
    Usage(String),
}

impl FollowError {
    pub fn class(&self) -> FailureClass {
        match self {
            FollowError::Snapshot(e) => e.class(),
            FollowError::Etcd(e) => e.class(),
            FollowError::OldEtcd { .. } | FollowError::WatchRefused { .. } => FailureClass::Refused,
            FollowError::Usage(_) => FailureClass::Unusable,
        }
    }
}
