//! Errors of the sandbox: a missing binary, a member that would not start (with the end of its log),
//! file and certificate failures.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no etcd binary found: {0}")]
    NoEtcd(String),

    #[error("cannot run {}: {source}", path.display())]
    Exec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot generate certificates: {0}")]
    Pki(String),

    #[error("no free loopback port on {0}")]
    NoPort(String),

    #[error("etcd member {name} did not become ready: {reason}; last log lines:\n{log_tail}")]
    NotReady {
        name: String,
        reason: String,
        log_tail: String,
    },

    #[error("no member with index {0}")]
    NoSuchMember(usize),

    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),

    #[error("etcd request failed: {0}")]
    Request(String),
}
