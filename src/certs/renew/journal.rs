//! The renewal journal (`cpkeep-renew.json` in each backup directory) and what it makes possible:
//! finding an interrupted renewal ([`interrupted`]), saying where each of its files stands, and
//! putting the backed-up files back ([`plan_recover`], [`recover`]).
//!
//! A journal is written, fsynced, before the first file is replaced, in state `writing`; it lists
//! every file with the sha256 of its old and new content, so after a kill each file is known to be
//! old, new, or changed by something else since.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{BadInput, Failure, FilesState, RecoverRefusal, RenewError};
use super::lock::RenewLock;
use super::plan::{absolute, backup_root};
use super::JOURNAL_FILE;
use crate::certs::error::CertsError;
use crate::certs::inventory::{require_dir, DirRole, PkiLayout};
use crate::fsx::{replace_atomic, write_atomic, MODE_SECRET};
use crate::units::counted;

/// The state of a renewal's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JournalState {
    /// Files are being replaced (or the run was killed while they were).
    Writing,
    /// Every file was replaced and verified.
    Done,
    /// A failed run put every file back.
    RolledBack,
    /// `--recover` put every file back.
    Recovered,
}

/// One file of a renewal's journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalFile {
    pub path: PathBuf,
    /// Relative to the backup directory.
    pub backup: PathBuf,
    /// The mode the renewal writes.
    pub mode: u32,
    /// The mode the old content is put back with; absent in journals of older cpkeep versions,
    /// which put it back with `mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_mode: Option<u32>,
    /// The file's owner, kept by the renewal and by `--recover`; absent in older journals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    pub old_sha256: String,
    pub new_sha256: String,
}

/// `cpkeep-renew.json`: what a renewal replaces, written before the first replacement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub format: u32,
    pub state: JournalState,
    pub started_at: DateTime<Utc>,
    pub cert_dir: PathBuf,
    pub files: Vec<JournalFile>,
}

/// Writes the journal into the backup directory `dir`, atomically, 0600.
pub(super) fn write_journal(dir: &Path, journal: &Journal) -> Result<(), Failure> {
    let path = dir.join(JOURNAL_FILE);
    // Serialising these plain types cannot fail; should it, the journal would be left as it was.
    let text = serde_json::to_vec_pretty(journal).map_err(|e| Failure::Journal {
        path: path.clone(),
        error: std::io::Error::other(e),
    })?;
    write_atomic(&path, &text, MODE_SECRET).map_err(|error| Failure::Journal { path, error })
}

pub(super) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Where each file of an interrupted renewal stands (`old`, `new`, `changed`, `missing` in JSON and
/// tables alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FileState {
    /// Its content before the renewal.
    Old,
    /// The renewal's content.
    New,
    /// Neither: changed by something else since.
    Changed,
    Missing,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Old => "old",
            FileState::New => "new",
            FileState::Changed => "changed",
            FileState::Missing => "missing",
        }
    }
}

fn file_state(f: &JournalFile) -> FileState {
    match std::fs::read(&f.path) {
        Ok(b) => {
            let h = sha256_hex(&b);
            if h == f.old_sha256 {
                FileState::Old
            } else if h == f.new_sha256 {
                FileState::New
            } else {
                FileState::Changed
            }
        }
        Err(_) => FileState::Missing,
    }
}

/// An interrupted renewal found on disk, and where each of its files stood when it was found.
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub dir: PathBuf,
    pub journal: Journal,
    pub states: Vec<FileState>,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |want: FileState| -> Vec<String> {
            self.states
                .iter()
                .zip(&self.journal.files)
                .filter(|(s, _)| **s == want)
                .map(|(_, f)| f.path.display().to_string())
                .collect()
        };
        let new = list(FileState::New);
        write!(
            f,
            "an interrupted renewal (journal {}) replaced {} of {}",
            self.dir.join(JOURNAL_FILE).display(),
            new.len(),
            counted(self.states.len(), "file", "files")
        )?;
        if !new.is_empty() {
            write!(f, "; new: {}", new.join(", "))?;
        }
        for (s, label) in [
            (FileState::Changed, "changed since"),
            (FileState::Missing, "missing"),
        ] {
            let l = list(s);
            if !l.is_empty() {
                write!(f, "; {label}: {}", l.join(", "))?;
            }
        }
        write!(
            f,
            "; run `cpkeep certs renew --recover` to put the backed-up files back, then renew again"
        )
    }
}

/// The newest journal under `root` still in state `writing`.
pub(super) fn interrupted(root: &Path) -> Result<Option<Interrupted>, RenewError> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(None);
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(JOURNAL_FILE).is_file())
        .collect();
    dirs.sort();
    for dir in dirs.into_iter().rev() {
        let path = dir.join(JOURNAL_FILE);
        let text = std::fs::read(&path).map_err(|error| {
            RenewError::BadInput(vec![BadInput::Read(CertsError::Read {
                path: path.clone(),
                error,
            })])
        })?;
        let journal: Journal = serde_json::from_slice(&text).map_err(|error| {
            RenewError::BadInput(vec![BadInput::Journal {
                path: path.clone(),
                error,
            }])
        })?;
        if journal.state == JournalState::Writing {
            let states = journal.files.iter().map(file_state).collect();
            return Ok(Some(Interrupted {
                dir,
                journal,
                states,
            }));
        }
    }
    Ok(None)
}

/// One file `--recover` looks at.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverFile {
    pub path: PathBuf,
    pub backup: PathBuf,
    pub state: FileState,
    /// Whether it is put back from the backup (it is not already old).
    pub restore: bool,
    /// The mode it is put back with (the old file's).
    #[serde(skip)]
    mode: u32,
    #[serde(skip)]
    owner: Option<(u32, u32)>,
    #[serde(skip)]
    old_sha256: String,
}

/// What `--recover` will do. It holds the cert-dir's lock until it is dropped.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverPlan {
    pub backup_dir: PathBuf,
    pub started_at: DateTime<Utc>,
    pub files: Vec<RecoverFile>,
    #[serde(skip)]
    journal: Journal,
    #[serde(skip)]
    _lock: RenewLock,
}

/// What `--recover` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverReport {
    pub backup_dir: PathBuf,
    pub restored: Vec<PathBuf>,
    pub already_old: Vec<PathBuf>,
}

/// Plans putting back the files of the newest interrupted renewal; `None` when there is none.
/// Takes the cert-dir's lock. Refuses when a file was changed by something else since (it would be
/// overwritten).
pub fn plan_recover(layout: &PkiLayout) -> Result<Option<RecoverPlan>, RenewError> {
    let cert_dir = absolute(&layout.cert_dir)?;
    require_dir(&cert_dir, DirRole::CertDir)?;
    let lock = RenewLock::acquire(&cert_dir)?;
    let Some(i) = interrupted(&backup_root(&cert_dir))? else {
        return Ok(None);
    };
    let mut files = Vec::new();
    for (f, state) in i.journal.files.iter().zip(&i.states) {
        let backup = i.dir.join(&f.backup);
        let ok = std::fs::read(&backup)
            .map(|b| sha256_hex(&b) == f.old_sha256)
            .unwrap_or(false);
        if !ok {
            return Err(RenewError::RecoverRefused(RecoverRefusal::BadBackup {
                path: backup,
            }));
        }
        files.push(RecoverFile {
            path: f.path.clone(),
            backup,
            state: *state,
            restore: *state != FileState::Old,
            mode: f.old_mode.unwrap_or(f.mode),
            owner: f.uid.zip(f.gid),
            old_sha256: f.old_sha256.clone(),
        });
    }
    let changed: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.state == FileState::Changed)
        .map(|f| f.path.clone())
        .collect();
    if !changed.is_empty() {
        return Err(RenewError::RecoverRefused(RecoverRefusal::Changed {
            files: changed,
            journal: i.dir.join(JOURNAL_FILE),
            dir: i.dir,
        }));
    }
    Ok(Some(RecoverPlan {
        backup_dir: i.dir,
        started_at: i.journal.started_at,
        files,
        journal: i.journal,
        _lock: lock,
    }))
}

/// Puts back every file of `plan` that is not already old, with its old mode and owner, then marks
/// the journal `recovered`.
pub fn recover(plan: &RecoverPlan) -> Result<RecoverReport, RenewError> {
    let mut restored = Vec::new();
    let mut already_old = Vec::new();
    for f in &plan.files {
        if !f.restore {
            already_old.push(f.path.clone());
            continue;
        }
        let failed = |what: Failure, restored: &[PathBuf]| RenewError::Failed {
            what: Box::new(what),
            state: FilesState::RecoveredSoFar(restored.to_vec()),
        };
        let bytes = std::fs::read(&f.backup).map_err(|error| {
            failed(
                Failure::Read {
                    path: f.backup.clone(),
                    error,
                },
                &restored,
            )
        })?;
        if sha256_hex(&bytes) != f.old_sha256 {
            return Err(failed(
                Failure::BackupMismatch {
                    path: f.backup.clone(),
                },
                &restored,
            ));
        }
        replace_atomic(&f.path, &bytes, f.mode, f.owner).map_err(|error| {
            failed(
                Failure::Write {
                    path: f.path.clone(),
                    error,
                },
                &restored,
            )
        })?;
        restored.push(f.path.clone());
    }
    let journal = Journal {
        state: JournalState::Recovered,
        ..plan.journal.clone()
    };
    write_journal(&plan.backup_dir, &journal).map_err(|what| RenewError::Failed {
        what: Box::new(what),
        state: FilesState::Recovered,
    })?;
    Ok(RecoverReport {
        backup_dir: plan.backup_dir.clone(),
        restored,
        already_old,
    })
}
