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

    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::NotFound { .. } => true,
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}
