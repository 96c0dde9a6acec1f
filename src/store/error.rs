//! Errors of the object stores: which store, which operation, which key, and the store's own words.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{store}: {op} {key}: {code}: {message}")]
    Remote {
        store: String,
        op: &'static str,
        key: String,
        code: String,
        message: String,
    },

    #[error("{store}: {key}: no such object")]
    NotFound { store: String, key: String },

    /// The store cannot be used as given (a bad option, an unusable key or prefix): nothing was
    /// attempted.
    #[error("{0}")]
    Config(String),

    /// The store itself cannot be used as given: a directory that does not exist (an unmounted
    /// volume looks the same as an empty store otherwise), a regular file, an unwritable path.
    #[error("store {store}: {reason}")]
    Unusable { store: String, reason: String },

    /// The work was under way and broke (an upload aborted, a task that died, too many parts):
    /// the attempt failed, it was not refused at the start.
    #[error("{0}")]
    Failed(String),
}

pub use crate::failure::FailureClass;

impl StoreError {
    pub fn class(&self) -> FailureClass {
        match self {
            StoreError::BadUrl { .. } | StoreError::Config(_) | StoreError::Unusable { .. } => {
                FailureClass::Unusable
            }
            StoreError::Io { .. }
            | StoreError::Remote { .. }
            | StoreError::NotFound { .. }
            | StoreError::Failed(_) => FailureClass::Failed,
        }
    }

    /// Whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::NotFound { .. } => true,
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}
