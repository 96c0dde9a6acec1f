//! The errors of the bootstrap planner. A refusal of the inventory names the field (and its line in
//! the file when known) and says why; none ever carries a secret (a token, a certificate key or a
//! private key), because errors end up in logs and on terminals.

use std::path::PathBuf;

use crate::certs::error::io_reason;
use crate::failure::FailureClass;

/// Where a bad value sits in the inventory: its field path and, when the YAML parser knew it, the
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRef {
    pub path: String,
    pub line: Option<u64>,
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// Why a plan could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The inventory file cannot be read.
    #[error("cannot read the inventory {}: {}", path.display(), io_reason(source))]
    ReadInventory {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The inventory is not YAML of the expected shape (an unknown field, a wrong type).
    #[error("{}: {reason}", path.display())]
    Syntax { path: PathBuf, reason: String },

    /// A value of the inventory is refused.
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: FieldRef,
        reason: String,
    },

    /// `--pki-from` (or the bundle's own `pki/`) holds CA material that cannot be used.
    #[error("{}: {reason}", path.display())]
    Pki { path: PathBuf, reason: String },

    /// The output directory is not one a bundle can be written to.
    #[error("{}: {reason}", path.display())]
    OutDir { path: PathBuf, reason: String },

    /// A secret file of an existing bundle is malformed (it is kept, never silently replaced).
    #[error("{}: {reason}", path.display())]
    Secret { path: PathBuf, reason: String },

    /// A key, a certificate or a random value could not be generated.
    #[error("cannot generate {what}: {reason}")]
    Generate { what: String, reason: String },

    /// A bundle file could not be written.
    #[error("cannot write {}: {}", path.display(), io_reason(source))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BootstrapError {
    /// Bad input is unusable (nothing was written); a failed generation or write failed.
    pub fn class(&self) -> FailureClass {
        match self {
            BootstrapError::ReadInventory { .. }
            | BootstrapError::Syntax { .. }
            | BootstrapError::Invalid { .. }
            | BootstrapError::Pki { .. }
            | BootstrapError::OutDir { .. }
            | BootstrapError::Secret { .. } => FailureClass::Unusable,
            BootstrapError::Generate { .. } | BootstrapError::Write { .. } => FailureClass::Failed,
        }
    }
}
