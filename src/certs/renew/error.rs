//! Why a renewal did not happen or did not finish, typed: what went wrong ([`Failure`], [`BadInput`],
//! [`VerifyError`]) and, once files may have changed, where they stand ([`FilesState`]). Every message
//! names the file and the cause and never contains key material.

use std::path::PathBuf;

use super::journal::Interrupted;
use crate::certs::error::{io_reason, CertsError, ErrorClass};
use crate::certs::inventory::{CaId, Problem};
use crate::certs::issue::IssueError;
use crate::certs::pem::PemError;
use crate::certs::restart::RestartError;
use crate::certs::verify::ChainError;
use crate::units::counted;

/// Why a renewal did not happen or did not finish. Each says what state the files are in.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// Files or names that cannot be used, one line each; nothing was written.
    #[error("{}", join(.0))]
    BadInput(Vec<BadInput>),
    /// The cert-dir or the kubeconfig-dir is missing or unreadable; nothing was written.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// Another renewal (or `--recover`) holds the lock on the cert-dir; nothing was written.
    #[error(
        "another `cpkeep certs renew` is running on {}: nothing was written; run again once it has finished",
        dir.display()
    )]
    Locked { dir: PathBuf },
    /// The cert-dir could not be locked; nothing was written.
    #[error("cannot lock {}: {}", dir.display(), io_reason(error))]
    Lock { dir: PathBuf, error: std::io::Error },
    /// An interrupted renewal must be recovered first; nothing was written.
    #[error("{0}")]
    Interrupted(Box<Interrupted>),
    /// `--recover` refused on purpose (nothing to recover that is safe to recover); nothing changed.
    #[error(transparent)]
    RecoverRefused(RecoverRefusal),
    /// The restarts could not be planned (nothing was written) or failed after the renewal.
    #[error("{source}{}", renewed_note(.renewed_backup))]
    Restart {
        source: RestartError,
        /// Where the old files are, when the renewal itself was done.
        renewed_backup: Option<PathBuf>,
    },
    /// The renewal failed; `state` says where the files are.
    #[error("{what}; {state}")]
    Failed {
        what: Box<Failure>,
        state: FilesState,
    },
}

fn join(lines: &[BadInput]) -> String {
    lines
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn renewed_note(backup: &Option<PathBuf>) -> String {
    backup
        .as_ref()
        .map(|b| {
            format!(
                " (every certificate was renewed and verified; the old files are in {})",
                b.display()
            )
        })
        .unwrap_or_default()
}

impl RenewError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RenewError::BadInput(_) | RenewError::Lock { .. } => ErrorClass::BadInput,
            RenewError::Certs(e) => e.class(),
            RenewError::Locked { .. }
            | RenewError::Interrupted(_)
            | RenewError::RecoverRefused(_) => ErrorClass::Refused,
            RenewError::Restart {
                source,
                renewed_backup,
            } => match (source, renewed_backup) {
                (RestartError::Manifest { .. }, None) => ErrorClass::BadInput,
                (RestartError::InTheWay(_), None) => ErrorClass::Refused,
                (RestartError::Manifest { .. } | RestartError::InTheWay(_), Some(_))
                | (RestartError::Failed { .. }, _) => ErrorClass::Failed,
            },
            RenewError::Failed { .. } => ErrorClass::Failed,
        }
    }

    /// The lines of a bad-input error (one per file), or the message.
    pub fn lines(&self) -> Vec<String> {
        match self {
            RenewError::BadInput(lines) => lines.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }

    /// A failure before anything was written.
    pub(super) fn before_writing(what: Failure) -> Self {
        RenewError::Failed {
            what: Box::new(what),
            state: FilesState::NothingWritten,
        }
    }
}

/// One name or file a renewal cannot use.
#[derive(Debug, thiserror::Error)]
pub enum BadInput {
    #[error("give `all` or certificate names, not both")]
    AllAndNames,
    #[error("unknown certificate {name:?}: kubeadm's names are all, {}", known.join(", "))]
    UnknownName {
        name: String,
        known: Vec<&'static str>,
    },
    #[error("{name}: {} does not exist", path.display())]
    NamedMissing { name: String, path: PathBuf },
    /// A file that cannot be read or used (the inventory's line).
    #[error("{}", .0.message)]
    File(Problem),
    #[error("{name}: its private key ({key}) is missing")]
    KeyMissing { name: String, key: String },
    #[error("{name}: the private key ({key}) does not belong to the certificate {}", cert.display())]
    KeyMismatch {
        name: String,
        key: String,
        cert: PathBuf,
    },
    #[error(
        "CA {}: the key {} does not belong to the CA certificate {}",
        ca.name(),
        key.display(),
        cert.display()
    )]
    CaKeyMismatch {
        ca: CaId,
        key: PathBuf,
        cert: PathBuf,
    },
    #[error("{name}: --validity goes beyond what a certificate can hold")]
    Validity { name: String },
    #[error("cannot resolve the path {}: {}", path.display(), io_reason(error))]
    Path {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file to back up that cannot be read.
    #[error(transparent)]
    Read(CertsError),
    /// A renewal journal that cannot be read or is not one.
    #[error("{}: not a cpkeep renewal journal ({error})", path.display())]
    Journal {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// What failed in a renewal or a recovery.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot read {}: {}", path.display(), io_reason(error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} changed since the renewal was planned", path.display())]
    Changed { path: PathBuf },
    #[error("{name}: {error}")]
    Issue { name: String, error: IssueError },
    #[error("{name}: the renewed certificate {error}")]
    Check { name: String, error: VerifyError },
    #[error("{name}: read back after writing, the certificate {error}")]
    ReadBack { name: String, error: VerifyError },
    /// A kubeconfig that cannot be edited in place or read back.
    #[error(transparent)]
    Kubeconfig(CertsError),
    #[error("cannot write the backup {}: {}", path.display(), io_reason(error))]
    Backup {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {}: {}", path.display(), io_reason(error))]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write the journal {}: {}", path.display(), io_reason(error))]
    Journal {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not what the journal recorded", path.display())]
    BackupMismatch { path: PathBuf },
    #[error("stopped by the test hook after {}", counted(*n, "replaced file", "replaced files"))]
    Hook { n: usize },
    #[error("the renewal did not start: the process is shutting down")]
    NotRun,
    /// A plan that does not hold what `apply` needs (a plan is only made by `plan`: cannot happen).
    #[error("{name}: the plan {what}")]
    Plan { name: String, what: &'static str },
}

/// Where the files stand after a failure.
#[derive(Debug, thiserror::Error)]
pub enum FilesState {
    #[error("nothing was written")]
    NothingWritten,
    #[error(
        "every replaced file was put back ({}); the backup is in {}",
        counted(*files, "file", "files"),
        backup.display()
    )]
    RolledBack { files: usize, backup: PathBuf },
    #[error(
        "these files could not be put back: {}; run `cpkeep certs renew --recover` to restore them from {}",
        stuck.iter().map(|(p, e)| format!("{} ({})", p.display(), io_reason(e))).collect::<Vec<_>>().join(", "),
        backup.display()
    )]
    Stuck {
        stuck: Vec<(PathBuf, std::io::Error)>,
        backup: PathBuf,
    },
    #[error("the journal in {} says writing", backup.display())]
    Writing { backup: PathBuf },
    #[error(
        "every file was renewed and verified; the old files are in {}; remove the journal {} before the next renewal",
        backup.display(),
        journal.display()
    )]
    RenewedJournalNotDone { backup: PathBuf, journal: PathBuf },
    #[error("every file is back to its content before the interrupted renewal")]
    Recovered,
    #[error(
        "restored so far: {}; run --recover again",
        if .0.is_empty() { "nothing".to_string() } else { .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ") }
    )]
    RecoveredSoFar(Vec<PathBuf>),
}

/// Why a renewed certificate, in memory or read back from disk, is not what was planned.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("does not chain to its CA: {0}")]
    Chain(ChainError),
    #[error("does not certify the intended key")]
    WrongKey,
    #[error("does not match its new key")]
    KeyMismatch,
    #[error("does not have the old subject and subjectAltNames")]
    Names,
    #[error("is not the one issued")]
    NotIssued,
    #[error("has a key that is not in the old key's PEM form")]
    Form,
    /// A file that cannot be read back or parsed.
    #[error("cannot be read back: {0}")]
    Unreadable(CertsError),
    #[error("cannot be read back: {}: {field}: {error}", path.display())]
    Embedded {
        path: PathBuf,
        field: &'static str,
        error: PemError,
    },
    #[error("is no longer embedded in {} with its key", path.display())]
    NotEmbedded { path: PathBuf },
    #[error("has no CA in the plan")]
    NoCa,
    #[error("has no key file in the plan")]
    NoKeyPath,
}

/// Why `--recover` puts nothing back.
#[derive(Debug, thiserror::Error)]
pub enum RecoverRefusal {
    #[error(
        "the backup {} is missing or not what the journal recorded: nothing was changed",
        path.display()
    )]
    BadBackup { path: PathBuf },
    #[error(
        "{} changed since the interrupted renewal (neither its old nor its new content): nothing was changed; \
         compare with the backup in {} and put back what is right by hand, then remove the journal {}",
        files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        dir.display(),
        journal.display()
    )]
    Changed {
        files: Vec<PathBuf>,
        dir: PathBuf,
        journal: PathBuf,
    },
}
