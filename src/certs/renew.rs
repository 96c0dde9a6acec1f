//! `cpkeep certs renew`: renews kubeadm's leaf certificates with their own CAs, plan then apply.
//!
//! - [`plan`] (`plan.rs`) takes the cert-dir's lock (`lock.rs`: one renewal at a time), reads
//!   everything and writes nothing: what is renewed, skipped and refused, and why; every file that
//!   changes, its mode and its backup.
//! - [`apply`] (`apply.rs`) carries a plan out, crash-safe: every file re-read and compared, every
//!   certificate and key issued and checked in memory, every old file backed up with a journal
//!   before the first replacement, each file replaced atomically, everything read back; a failure puts
//!   every replaced file back.
//! - The journal (`journal.rs`) makes a killed run recoverable. Key and certificate are two files,
//!   and no rename replaces two files at once: a run killed between a key and its certificate leaves a
//!   new key beside the old certificate. That state is detectable — the journal says `writing`, and
//!   every file is either its old or its new content (sha256 in the journal) — and recoverable: the
//!   next `cpkeep certs renew` refuses to start while such a journal exists and says which files are
//!   new, and `cpkeep certs renew --recover` ([`plan_recover`], [`recover`]) puts the backed-up files
//!   back, after which a renewal starts from a consistent set. A kubeconfig carries its certificate
//!   and key in one file and is never inconsistent.
//! - Errors (`error.rs`) are typed and say what state the files are in.
//!
//! This module never prints, never logs or returns key material, and never renews a CA.

mod apply;
mod error;
mod journal;
mod lock;
mod plan;

pub use apply::{apply, ApplyOptions, RenewReport, RenewedCert, TestHook};
pub use error::{BadInput, Failure, FilesState, RecoverRefusal, RenewError, VerifyError};
pub use journal::{
    plan_recover, recover, FileState, Interrupted, Journal, JournalFile, JournalState, RecoverFile,
    RecoverPlan, RecoverReport,
};
pub use lock::RenewLock;
pub use plan::{
    backup_root, plan, CertKind, FileRole, NotRenewed, PlannedCert, PlannedFile, RenewOptions,
    RenewPlan, Selected,
};

/// The backups' directory, beside the cert-dir.
pub const BACKUP_DIR_NAME: &str = "pki-backup";
/// The journal in each backup directory.
pub const JOURNAL_FILE: &str = "cpkeep-renew.json";
/// kubeadm backdates NotBefore by five minutes to tolerate clock skew between nodes.
const BACKDATE_MINUTES: i64 = 5;

#[cfg(test)]
mod tests;
