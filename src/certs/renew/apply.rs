//! [`apply`]: carries a [`RenewPlan`] out, crash-safe, under the plan's lock:
//! 1. every file is read again and must be byte-identical to what was planned;
//! 2. every certificate and key is issued in memory ([`crate::certs::issue`]) and checked (it chains
//!    to its CA, the key matches, subject and SANs are the old ones); kubeconfigs are edited in memory
//!    ([`crate::certs::kubeconfig_edit`]);
//! 3. every file to change is copied to the backup directory (directories 0700, files 0600), with the
//!    journal in state `writing`; all of it is fsynced before the first file is replaced;
//! 4. each file is replaced atomically with its old owner and exact mode; a key before its certificate;
//! 5. every renewed certificate is read back from disk and checked again; then the journal becomes
//!    `done`. A write or check failure puts every replaced file back from memory (journal
//!    `rolled-back`) and fails the run;
//! 6. with `--restart`, the static pods that read renewed certificates are restarted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::{Failure, FilesState, RenewError, VerifyError};
use super::journal::{sha256_hex, write_journal, Journal, JournalFile, JournalState};
use super::plan::{CertKind, NotRenewed, PlannedCert, PlannedFile, RenewPlan};
use super::JOURNAL_FILE;
use crate::certs::error::CertsError;
use crate::certs::inventory::CaId;
use crate::certs::issue::{generate_key, pem_encode, reissue, Reissue};
use crate::certs::kubeconfig::{ClientCert, ClientKey, Kubeconfig};
use crate::certs::kubeconfig_edit::replace_client_credentials;
use crate::certs::pem::{
    parse_certificate_der, parse_certificate_pem, parse_private_key_pem, CertInfo, KeyFormat,
    PrivateKey,
};
use crate::certs::restart::{self, Component, Restarted};
use crate::certs::verify::{key_matches, verify_signed_by};
use crate::fsx::{self, create_dir_all_mode, replace_atomic, write_atomic, MODE_SECRET};

/// One renewed certificate, as read back from disk.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewedCert {
    pub name: String,
    pub ca: CaId,
    pub cert_path: PathBuf,
    pub key_path: Option<PathBuf>,
    pub subject: String,
    pub sans: Vec<String>,
    pub key_algorithm: String,
    pub key_format: KeyFormat,
    pub new_key: bool,
    /// The new serial number, lower-case hex.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub capped_by_ca: bool,
    /// Read back from disk: it chains to its CA and its key matches.
    pub verified: bool,
}

/// What a renewal did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewReport {
    /// Where the old files are (none when nothing was renewed).
    pub backup_dir: Option<PathBuf>,
    pub renewed: Vec<RenewedCert>,
    pub skipped: Vec<NotRenewed>,
    pub refused: Vec<NotRenewed>,
    pub warnings: Vec<String>,
    pub files_written: Vec<PathBuf>,
    pub restarted: Vec<Restarted>,
    pub seconds: f64,
}

/// Test hooks that simulate a run killed or held part-way through the replacements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestHook {
    /// Return an error after this many files were replaced, leaving everything as a kill would.
    StopAfterWrites(usize),
    /// Abort the process (no unwinding, no clean-up) after this many files were replaced.
    AbortAfterWrites(usize),
    /// After this many files were replaced, open the FIFO for reading and wait for one byte: the
    /// opener on the other side knows the run is there, holding its lock, until it writes.
    PauseAfterWrites(usize, PathBuf),
}

/// How a plan is carried out.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub hook: Option<TestHook>,
}

/// What the file work of a renewal did, before the restarts.
struct Replaced {
    renewed: Vec<RenewedCert>,
    files_written: Vec<PathBuf>,
    /// The renewed kube-apiserver serving certificate (DER), to recognise it once restarted.
    apiserver_der: Option<Vec<u8>>,
}

/// Carries out `plan`: see the module documentation for the order and the guarantees. The plan (and
/// with it the cert-dir's lock) is held until the restarts are done.
pub async fn apply(plan: RenewPlan, opts: ApplyOptions) -> Result<RenewReport, RenewError> {
    let started = std::time::Instant::now();
    let plan = Arc::new(plan);
    // Reading, fsyncing and replacing files and generating keys (an RSA-4096 key takes a second or
    // more) block: run on one of the runtime's two workers, they would stall every other task. The
    // blocking pool runs them instead.
    let done = {
        let (plan, opts) = (Arc::clone(&plan), opts.clone());
        match tokio::task::spawn_blocking(move || replace_files(&plan, &opts)).await {
            Ok(done) => done?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels a blocking task, and only before it starts.
            Err(_) => return Err(RenewError::before_writing(Failure::NotRun)),
        }
    };
    let mut restarted = Vec::new();
    if let (false, Some(ropts)) = (plan.restarts.is_empty(), &plan.restart) {
        let mut serving = BTreeMap::new();
        if let Some(der) = &done.apiserver_der {
            serving.insert(Component::KubeApiserver, der.clone());
        }
        restarted = restart::restart(&plan.restarts, ropts, &serving)
            .await
            .map_err(|source| RenewError::Restart {
                source,
                renewed_backup: Some(plan.backup_dir.clone()),
            })?;
    }
    Ok(RenewReport {
        backup_dir: (!done.renewed.is_empty()).then(|| plan.backup_dir.clone()),
        renewed: done.renewed,
        skipped: plan.skipped.clone(),
        refused: plan.refused.clone(),
        warnings: plan.warnings.clone(),
        files_written: done.files_written,
        restarted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Steps 1 to 5: blocking file work and key generation.
fn replace_files(plan: &RenewPlan, opts: &ApplyOptions) -> Result<Replaced, RenewError> {
    if plan.renew.is_empty() {
        return Ok(Replaced {
            renewed: Vec::new(),
            files_written: Vec::new(),
            apiserver_der: None,
        });
    }
    unchanged_since_planned(plan)?;
    let (issued, contents) = issue_all(plan)?;
    let mut writes: Vec<(&PlannedFile, &[u8])> = Vec::new();
    for f in &plan.files {
        let bytes = contents.get(f.path.as_path()).ok_or_else(|| {
            RenewError::before_writing(Failure::Plan {
                name: f.cert.clone(),
                what: "has a file nothing was issued for",
            })
        })?;
        writes.push((f, bytes.as_slice()));
    }

    // 3. The backup and the journal, durable before the first replacement.
    let journal = Journal {
        format: 1,
        state: JournalState::Writing,
        started_at: Utc::now(),
        cert_dir: plan.cert_dir.clone(),
        files: writes
            .iter()
            .map(|(f, new)| JournalFile {
                path: f.path.clone(),
                backup: f
                    .backup
                    .strip_prefix(&plan.backup_dir)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| f.backup.clone()),
                mode: f.mode_bits,
                old_mode: Some(f.old_mode_bits),
                uid: Some(f.owner.0),
                gid: Some(f.owner.1),
                old_sha256: sha256_hex(f.old.expose()),
                new_sha256: sha256_hex(new),
            })
            .collect(),
    };
    write_backup(plan, &journal).map_err(RenewError::before_writing)?;
    tracing::info!(backup = %plan.backup_dir.display(), files = writes.len(), "backed up the files to replace");

    // 4. The replacements.
    let mut written: Vec<&PlannedFile> = Vec::new();
    for (f, bytes) in &writes {
        if let Err(error) = replace_atomic(&f.path, bytes, f.mode_bits, Some(f.owner)) {
            let what = Failure::Write {
                path: f.path.clone(),
                error,
            };
            return Err(roll_back(plan, &journal, &written, what));
        }
        written.push(f);
        run_hook(opts, written.len(), plan)?;
    }

    // 5. Everything read back and checked.
    let mut renewed = Vec::new();
    for p in &plan.renew {
        let issued_der = issued.get(p.name.as_str()).map(Vec::as_slice);
        match read_back(p, plan, issued_der) {
            Ok(cert) => renewed.push(RenewedCert {
                name: p.name.clone(),
                ca: p.ca,
                cert_path: p.cert_path.clone(),
                key_path: p.key_path.clone(),
                subject: cert.subject.clone(),
                sans: cert.sans(),
                key_algorithm: cert.key_algorithm.clone(),
                key_format: p.key_format,
                new_key: p.new_key,
                serial: cert.serial_hex.clone(),
                not_before: cert.not_before,
                not_after: cert.not_after,
                capped_by_ca: p.capped_by_ca,
                verified: true,
            }),
            Err(error) => {
                let what = Failure::ReadBack {
                    name: p.name.clone(),
                    error,
                };
                return Err(roll_back(plan, &journal, &written, what));
            }
        }
    }
    let done = Journal {
        state: JournalState::Done,
        ..journal.clone()
    };
    write_journal(&plan.backup_dir, &done).map_err(|what| RenewError::Failed {
        what: Box::new(what),
        state: FilesState::RenewedJournalNotDone {
            backup: plan.backup_dir.clone(),
            journal: plan.backup_dir.join(JOURNAL_FILE),
        },
    })?;
    tracing::info!(renewed = renewed.len(), "renewed and verified");
    Ok(Replaced {
        renewed,
        files_written: writes.iter().map(|(f, _)| f.path.clone()).collect(),
        apiserver_der: issued.get("apiserver").cloned(),
    })
}

/// The test hook, once `written` files were replaced.
fn run_hook(opts: &ApplyOptions, written: usize, plan: &RenewPlan) -> Result<(), RenewError> {
    match &opts.hook {
        Some(TestHook::StopAfterWrites(n)) if written == *n => Err(RenewError::Failed {
            what: Box::new(Failure::Hook { n: *n }),
            state: FilesState::Writing {
                backup: plan.backup_dir.clone(),
            },
        }),
        Some(TestHook::AbortAfterWrites(n)) if written == *n => std::process::abort(),
        Some(TestHook::PauseAfterWrites(n, fifo)) if written == *n => {
            use std::io::Read;
            // Blocks until the other side opens the FIFO for writing, then until it writes or closes.
            if let Ok(mut f) = std::fs::File::open(fifo) {
                let _ = f.read(&mut [0u8; 1]);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// 1. Every file is what was planned.
fn unchanged_since_planned(plan: &RenewPlan) -> Result<(), RenewError> {
    for f in &plan.files {
        let now = std::fs::read(&f.path).map_err(|error| {
            RenewError::before_writing(Failure::Read {
                path: f.path.clone(),
                error,
            })
        })?;
        if now != f.old.expose() {
            return Err(RenewError::before_writing(Failure::Changed {
                path: f.path.clone(),
            }));
        }
    }
    Ok(())
}

/// Issued certificates (DER) by name.
type Issued = BTreeMap<String, Vec<u8>>;
/// New file contents by path.
type Contents<'a> = BTreeMap<&'a Path, Vec<u8>>;

/// 2. Every certificate (and key) issued and checked in memory, every file's new content.
fn issue_all(plan: &RenewPlan) -> Result<(Issued, Contents<'_>), RenewError> {
    let failed = RenewError::before_writing;
    let mut issued = Issued::new();
    let mut contents = Contents::new();
    for p in &plan.renew {
        let missing = |what: &'static str| {
            failed(Failure::Plan {
                name: p.name.clone(),
                what,
            })
        };
        let ca = plan
            .cas
            .get(&p.ca)
            .ok_or_else(|| missing("has no signing CA"))?;
        let issue_failed = |error| {
            failed(Failure::Issue {
                name: p.name.clone(),
                error,
            })
        };
        let new_key = match p.key_spec {
            Some(spec) => Some(generate_key(spec, p.key_format).map_err(issue_failed)?),
            None => None,
        };
        let spki = match (&new_key, &p.reused_spki) {
            (Some(k), _) => k.key.public_key_spki_der(),
            (None, Some(s)) => s.clone(),
            (None, None) => return Err(missing("has no key to certify")),
        };
        let der = reissue(&Reissue {
            old: &p.old,
            ca: &ca.cert,
            ca_key: &ca.key,
            spki_der: &spki,
            not_before: p.not_before,
            not_after: p.not_after,
        })
        .map_err(issue_failed)?;
        let check_failed = |error| {
            failed(Failure::Check {
                name: p.name.clone(),
                error,
            })
        };
        let cert = parse_certificate_der(&der).map_err(|error| {
            check_failed(VerifyError::Unreadable(CertsError::Pem {
                path: p.cert_path.clone(),
                error,
            }))
        })?;
        check_renewed(p, &cert, &ca.cert, new_key.as_ref().map(|k| &k.key), &spki)
            .map_err(check_failed)?;
        let cert_pem = pem_encode("CERTIFICATE", &der);
        match p.kind {
            CertKind::Pki => {
                if let (Some(k), Some(path)) = (&new_key, &p.key_path) {
                    contents.insert(path.as_path(), k.pem.expose().to_vec());
                }
                contents.insert(p.cert_path.as_path(), cert_pem.into_bytes());
            }
            CertKind::Kubeconfig => {
                let file = plan
                    .files
                    .iter()
                    .find(|f| f.path == p.cert_path)
                    .ok_or_else(|| missing("has no file for it"))?;
                let old = file.old.expose();
                let key_pem = match &new_key {
                    Some(k) => k.pem.clone(),
                    None => match Kubeconfig::parse(&file.path, old)
                        .map_err(|e| failed(Failure::Kubeconfig(e)))?
                        .client_key
                    {
                        ClientKey::Embedded(k) => k,
                        ClientKey::File(_) | ClientKey::Absent => {
                            return Err(missing("has a kubeconfig without an embedded key"))
                        }
                    },
                };
                let edited = replace_client_credentials(
                    &file.path,
                    old,
                    cert_pem.as_bytes(),
                    key_pem.expose(),
                )
                .map_err(|e| failed(Failure::Kubeconfig(e)))?;
                contents.insert(file.path.as_path(), edited);
            }
        }
        issued.insert(p.name.clone(), der);
    }
    Ok((issued, contents))
}

/// Checks a renewed certificate against its plan: chains to the CA, certifies `spki` (and the new
/// key, when there is one), same subject and SANs as the old one.
fn check_renewed(
    p: &PlannedCert,
    cert: &CertInfo,
    ca: &CertInfo,
    key: Option<&PrivateKey>,
    spki: &[u8],
) -> Result<(), VerifyError> {
    verify_signed_by(cert, ca).map_err(VerifyError::Chain)?;
    if cert.spki_der != spki {
        return Err(VerifyError::WrongKey);
    }
    if key.is_some_and(|k| !key_matches(cert, k)) {
        return Err(VerifyError::KeyMismatch);
    }
    if cert.subject_der != p.old.subject_der || cert.sans() != p.old.sans() {
        return Err(VerifyError::Names);
    }
    Ok(())
}

/// Reads a renewed certificate and its key back from disk and checks them.
fn read_back(
    p: &PlannedCert,
    plan: &RenewPlan,
    issued: Option<&[u8]>,
) -> Result<CertInfo, VerifyError> {
    let ca = plan.cas.get(&p.ca).ok_or(VerifyError::NoCa)?;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| {
            VerifyError::Unreadable(CertsError::Read {
                path: path.to_path_buf(),
                error,
            })
        })
    };
    let pem_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| VerifyError::Unreadable(CertsError::Pem { path, error })
    };
    let (cert, key) = match p.kind {
        CertKind::Pki => {
            let key_path = p.key_path.as_deref().ok_or(VerifyError::NoKeyPath)?;
            let cert =
                parse_certificate_pem(&read(&p.cert_path)?).map_err(pem_error(&p.cert_path))?;
            let key = parse_private_key_pem(&read(key_path)?).map_err(pem_error(key_path))?;
            (cert, key)
        }
        CertKind::Kubeconfig => {
            let kc = Kubeconfig::read(&p.cert_path).map_err(VerifyError::Unreadable)?;
            let embedded = |field: &'static str| {
                let path = p.cert_path.clone();
                move |error| VerifyError::Embedded { path, field, error }
            };
            let not_embedded = || VerifyError::NotEmbedded {
                path: p.cert_path.clone(),
            };
            let cert = match &kc.client_cert {
                ClientCert::Embedded(pem) => {
                    parse_certificate_pem(pem).map_err(embedded("client-certificate-data"))?
                }
                ClientCert::File(_) => return Err(not_embedded()),
            };
            let key = match &kc.client_key {
                ClientKey::Embedded(k) => {
                    parse_private_key_pem(k.expose()).map_err(embedded("client-key-data"))?
                }
                ClientKey::File(_) | ClientKey::Absent => return Err(not_embedded()),
            };
            (cert, key)
        }
    };
    if issued.is_some_and(|d| d != cert.der.as_slice()) {
        return Err(VerifyError::NotIssued);
    }
    verify_signed_by(&cert, &ca.cert).map_err(VerifyError::Chain)?;
    if !key_matches(&cert, &key) {
        return Err(VerifyError::KeyMismatch);
    }
    if key.format() != p.key_format {
        return Err(VerifyError::Form);
    }
    Ok(cert)
}

/// Copies every file to replace into the backup directory and writes the journal, all fsynced.
fn write_backup(plan: &RenewPlan, journal: &Journal) -> Result<(), Failure> {
    let dir = &plan.backup_dir;
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |error| Failure::Backup { path, error }
    };
    let root = dir.parent().unwrap_or(dir);
    create_dir_all_mode(root, 0o700).map_err(io(root))?;
    if let Some(up) = root.parent() {
        fsx::sync_dir(up).map_err(io(up))?;
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    fsx::sync_dir(root).map_err(io(root))?;
    let mut dirs: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    for f in &plan.files {
        if let Some(parent) = f.backup.parent() {
            create_dir_all_mode(parent, 0o700).map_err(io(parent))?;
            let mut d = parent;
            while d.starts_with(dir) {
                dirs.insert(d.to_path_buf());
                match d.parent() {
                    Some(up) => d = up,
                    None => break,
                }
            }
        }
        write_atomic(&f.backup, f.old.expose(), MODE_SECRET).map_err(io(&f.backup))?;
    }
    write_journal(dir, journal)?;
    // Every directory entry created on the way is durable too.
    for d in dirs.iter().rev() {
        fsx::sync_dir(d).map_err(io(d))?;
    }
    Ok(())
}

/// After a failure once files were replaced: every replaced file back from memory, with its old
/// mode and owner.
fn roll_back(
    plan: &RenewPlan,
    journal: &Journal,
    written: &[&PlannedFile],
    what: Failure,
) -> RenewError {
    let mut stuck = Vec::new();
    for f in written.iter().rev() {
        if let Err(e) = replace_atomic(&f.path, f.old.expose(), f.old_mode_bits, Some(f.owner)) {
            stuck.push((f.path.clone(), e));
        }
    }
    let state = if stuck.is_empty() {
        let rolled = Journal {
            state: JournalState::RolledBack,
            ..journal.clone()
        };
        // The files are back whether or not this lands; a journal left `writing` only makes the
        // next run offer --recover, which finds every file old.
        let _ = write_journal(&plan.backup_dir, &rolled);
        FilesState::RolledBack {
            files: written.len(),
            backup: plan.backup_dir.clone(),
        }
    } else {
        FilesState::Stuck {
            stuck,
            backup: plan.backup_dir.clone(),
        }
    };
    RenewError::Failed {
        what: Box::new(what),
        state,
    }
}
