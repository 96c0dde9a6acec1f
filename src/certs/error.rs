//! The errors of the certificate domain. Each message names the file and says what is wrong with it in
//! words meant for the operator; none ever contains key material (key bytes, an embedded
//! `client-key-data`), because errors end up in logs and on terminals.

use std::path::PathBuf;

use super::inventory::DirRole;
use super::pem::PemError;

use crate::failure::FailureClass;

/// Why a certificate operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// The `--cert-dir` or `--kubeconfig-dir` does not exist: nothing can be checked or renewed.
    #[error("{} {} does not exist ({})", role.noun(), path.display(), role.hint())]
    DirMissing { path: PathBuf, role: DirRole },

    /// The `--cert-dir` or `--kubeconfig-dir` exists but is not a directory.
    #[error("{} {} is not a directory ({})", role.noun(), path.display(), role.hint())]
    NotADirectory { path: PathBuf, role: DirRole },

    /// A file could not be read (permissions, I/O). The I/O error is not a `source`: its short
    /// form is already in the message, and the CLI would print it a second time.
    #[error("cannot read {}: {}", path.display(), io_reason(error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A file holds no usable PEM certificate or key.
    #[error("{}: {error}", path.display())]
    Pem { path: PathBuf, error: PemError },

    /// A kubeconfig is not YAML or lacks the user credentials kubeadm writes.
    #[error("{}: {reason}", path.display())]
    Kubeconfig { path: PathBuf, reason: String },

    /// A file could not be written (a Prometheus textfile, a renewed certificate).
    #[error("cannot write {}: {}", path.display(), io_reason(error))]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A certificate or key could not be generated or signed.
    #[error("cannot generate {what}: {reason}")]
    Generate { what: String, reason: String },

    /// A name that is not one of kubeadm's certificates.
    #[error("{name:?} is not a certificate kubeadm manages")]
    UnknownCertificate { name: String },

    /// A webhook could not be delivered.
    #[error("webhook {url}: {reason}")]
    Webhook { url: String, reason: String },
}

impl CertsError {
    pub fn class(&self) -> FailureClass {
        match self {
            CertsError::DirMissing { .. }
            | CertsError::NotADirectory { .. }
            | CertsError::Read { .. }
            | CertsError::Pem { .. }
            | CertsError::Kubeconfig { .. }
            | CertsError::UnknownCertificate { .. } => FailureClass::Unusable,
            CertsError::Write { .. } | CertsError::Generate { .. } | CertsError::Webhook { .. } => {
                FailureClass::Failed
            }
        }
    }
}

impl DirRole {
    fn noun(self) -> &'static str {
        match self {
            DirRole::CertDir => "certificate directory",
            DirRole::KubeconfigDir => "kubeconfig directory",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            DirRole::CertDir => "set --cert-dir to kubeadm's certificatesDir",
            DirRole::KubeconfigDir => "set --kubeconfig-dir to where admin.conf is",
        }
    }
}

/// An I/O error as a short lower-case phrase ("permission denied"), without the `(os error 13)` tail.
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file or directory".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}
