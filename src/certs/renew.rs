//! `cpkeep certs renew`: renews kubeadm's leaf certificates with their own CAs, plan then apply.
//!
//! [`plan`] reads everything and writes nothing: which certificates are renewed (all, those expiring
//! within a window, or the ones named), which are skipped and why, which are refused and why (a CA,
//! a CA without its key — kubeadm's external CA mode —, an expired CA, a certificate its CA did not
//! sign, `kubelet.conf`), the new validity (capped at the CA's expiry), every file that changes and
//! where its backup goes. Files that cannot be used (not PEM, a key that does not match its
//! certificate, a CA key that does not match its CA, a kubeconfig that is not YAML, an unreadable
//! file) are one error line each and nothing is written.
//!
//! [`apply`] carries a plan out, crash-safe:
//! 1. every file is read again and must be byte-identical to what was planned;
//! 2. every certificate and key is issued in memory ([`super::issue`]) and checked (it chains to its
//!    CA, the key matches, subject and SANs are the old ones); kubeconfigs are edited in memory
//!    ([`super::kubeconfig_edit`]);
//! 3. every file to change is copied to `<cert-dir>/../pki-backup/<timestamp>/` (directories 0700,
//!    files 0600, the layout relative to `<cert-dir>/..`), with a journal `cpkeep-renew.json` that
//!    lists each file with the sha256 of its old and new content, in state `writing`; all of it is
//!    fsynced before the first file is replaced;
//! 4. each file is replaced atomically (temp file in its own directory, fsync, rename, directory
//!    fsync) with the old file's owner and exactly its mode, whatever the umask — 0600 for a key and
//!    for a kubeconfig, which holds its key; a key before its certificate;
//! 5. every renewed certificate is read back from disk and checked again; then the journal becomes
//!    `done`. A write or check failure puts every replaced file back from memory (journal
//!    `rolled-back`) and fails the run.
//!
//! Key and certificate are two files, and no rename replaces two files at once: a run killed between
//! a key and its certificate leaves a new key beside the old certificate. That state is detectable —
//! the journal says `writing`, and every file is either its old or its new content (sha256 in the
//! journal) — and recoverable: the next `cpkeep certs renew` refuses to start while such a journal
//! exists and says which files are new, and `cpkeep certs renew --recover` ([`plan_recover`],
//! [`recover`]) puts the backed-up files back, after which a renewal starts from a consistent set.
//! A kubeconfig carries its certificate and key in one file and is never inconsistent.
//!
//! This module never prints, never logs or returns key material, and never renews a CA.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{io_reason, CertsError};
use super::inventory::{
    discover, managed_cert, CaId, CertEntry, CertSource, Material, PkiLayout, Presence,
    MANAGED_CERTS,
};
use super::issue::{self, generate_key, pem_encode, reissue, KeySpec, Reissue};
use super::kubeconfig::{ClientKey, Kubeconfig, SecretBytes};
use super::kubeconfig_edit::replace_client_credentials;
use super::pem::{parse_certificate_pem, parse_private_key_pem, CertInfo, KeyFormat, PrivateKey};
use super::restart::{self, Component, RestartError, RestartOptions, RestartStep, Restarted};
use super::verify::{key_matches, verify_signed_by};
use crate::fsx::{self, create_dir_all_mode, replace_atomic, write_atomic, MODE_SECRET};
use crate::units::counted;

/// The backups' directory, beside the cert-dir.
pub const BACKUP_DIR_NAME: &str = "pki-backup";
/// The journal in each backup directory.
pub const JOURNAL_FILE: &str = "cpkeep-renew.json";
/// kubeadm backdates NotBefore by five minutes to tolerate clock skew between nodes.
const BACKDATE_MINUTES: i64 = 5;

/// What to renew and how.
#[derive(Debug, Clone)]
pub struct RenewOptions {
    pub layout: PkiLayout,
    /// kubeadm certificate names; empty or `all` for every renewable certificate.
    pub names: Vec<String>,
    /// With `all`: only certificates whose NotAfter is within this window from now.
    pub within: Option<Duration>,
    /// How long renewed certificates are valid (capped at their CA's NotAfter).
    pub validity: Duration,
    /// Keep each certificate's key instead of generating a new one.
    pub reuse_key: bool,
    /// Restart the static pods that read renewed certificates.
    pub restart: Option<RestartOptions>,
    /// The instant planned against (tests pin it).
    pub now: DateTime<Utc>,
}

impl RenewOptions {
    pub fn new(layout: PkiLayout) -> Self {
        Self {
            layout,
            names: Vec::new(),
            within: None,
            validity: Duration::days(365),
            reuse_key: false,
            restart: None,
            now: Utc::now(),
        }
    }
}

/// Why a certificate is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Selected {
    /// Named on the command line (renewed whatever its expiry).
    Named,
    /// `all` without `--within`.
    All,
    /// `all`, and it expires within `--within`.
    Expiring,
}

/// Where a certificate lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CertKind {
    /// A `.crt` / `.key` pair under the cert-dir.
    Pki,
    /// Embedded in a kubeconfig.
    Kubeconfig,
}

/// One certificate the plan renews.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedCert {
    /// kubeadm's name (`apiserver`, `etcd-server`, `admin.conf`).
    pub name: String,
    pub ca: CaId,
    pub kind: CertKind,
    /// The `.crt`, or the kubeconfig.
    pub cert_path: PathBuf,
    /// The `.key`; none for a kubeconfig (the key is embedded).
    pub key_path: Option<PathBuf>,
    pub subject: String,
    pub sans: Vec<String>,
    pub key_algorithm: String,
    pub key_format: KeyFormat,
    /// A new key is generated (false with `--reuse-key`).
    pub new_key: bool,
    pub selected: Selected,
    /// The old certificate's NotAfter.
    pub expires: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// NotAfter was cut to the CA's own NotAfter.
    pub capped_by_ca: bool,
    /// The static pod that reads it.
    pub component: Option<Component>,
    #[serde(skip)]
    old: CertInfo,
    #[serde(skip)]
    key_spec: Option<KeySpec>,
    #[serde(skip)]
    reused_spki: Option<Vec<u8>>,
}

/// A certificate the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotRenewed {
    pub name: String,
    pub reason: String,
}

/// What a file is to the renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FileRole {
    Key,
    Cert,
    Kubeconfig,
}

/// A file the renewal replaces.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedFile {
    pub path: PathBuf,
    /// Where its old content is copied.
    pub backup: PathBuf,
    /// The certificate it belongs to.
    pub cert: String,
    pub role: FileRole,
    /// Its mode after the renewal: the old file's, exactly; 0600 for a key and for a kubeconfig,
    /// which holds its key in `client-key-data`.
    pub mode: String,
    #[serde(skip)]
    mode_bits: u32,
    /// The mode the old content is put back with (rollback, `--recover`): the old mode, but never more
    /// open than 0600 for a secret.
    #[serde(skip)]
    old_mode_bits: u32,
    /// The old file's owner (uid, gid), which the new file keeps.
    #[serde(skip)]
    owner: (u32, u32),
    #[serde(skip)]
    old: SecretBytes,
}

/// A CA that signs renewals: its certificate and key.
#[derive(Debug)]
struct SigningCa {
    cert: CertInfo,
    key: PrivateKey,
}

/// What a renewal will do, decided before anything changes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewPlan {
    pub cert_dir: PathBuf,
    pub kubeconfig_dir: PathBuf,
    /// Where the old files are copied before anything is replaced.
    pub backup_dir: PathBuf,
    pub planned_at: DateTime<Utc>,
    pub within_seconds: Option<i64>,
    pub validity_seconds: i64,
    pub reuse_key: bool,
    pub renew: Vec<PlannedCert>,
    pub skipped: Vec<NotRenewed>,
    pub refused: Vec<NotRenewed>,
    pub warnings: Vec<String>,
    /// Every file replaced, in the order it is replaced.
    pub files: Vec<PlannedFile>,
    /// Static pods restarted afterwards, in order (`--restart`).
    pub restarts: Vec<RestartStep>,
    #[serde(skip)]
    cas: BTreeMap<CaId, SigningCa>,
    #[serde(skip)]
    restart: Option<RestartOptions>,
}

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

/// How an error ends the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The work failed (exit 1).
    Failed,
    /// Refused on purpose (exit 2).
    Refused,
    /// Bad input: nothing could be planned, nothing was written (exit 3).
    BadInput,
}

/// Why a renewal did not happen or did not finish. Each says what state the files are in.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// Files or names that cannot be used, one line each; nothing was written.
    #[error("{}", .0.join("; "))]
    BadInput(Vec<String>),
    /// The cert-dir is missing or unreadable; nothing was written.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// An interrupted renewal must be recovered first; nothing was written.
    #[error("{0}")]
    Interrupted(String),
    /// Refused on purpose (nothing to recover that is safe to recover); nothing was written.
    #[error("{0}")]
    Refused(String),
    /// The restarts could not be planned (nothing was written) or failed after the renewal.
    #[error("{source}{after}")]
    Restart {
        source: RestartError,
        /// What had happened to the certificates, when the renewal was done.
        after: String,
    },
    /// The renewal failed; `state` says where the files are.
    #[error("{what}; {state}")]
    Failed { what: String, state: String },
}

impl RenewError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RenewError::BadInput(_) | RenewError::Certs(_) => ErrorClass::BadInput,
            RenewError::Interrupted(_) | RenewError::Refused(_) => ErrorClass::Refused,
            RenewError::Restart { source, after } => match source {
                RestartError::Manifest { .. } if after.is_empty() => ErrorClass::BadInput,
                RestartError::InTheWay(_) if after.is_empty() => ErrorClass::Refused,
                _ => ErrorClass::Failed,
            },
            RenewError::Failed { .. } => ErrorClass::Failed,
        }
    }

    /// The lines of a bad-input error (one per file), or the message.
    pub fn lines(&self) -> Vec<String> {
        match self {
            RenewError::BadInput(lines) => lines.clone(),
            other => vec![other.to_string()],
        }
    }
}

const NOTHING_WRITTEN: &str = "nothing was written";

/// `<cert-dir>/..`: the directory whose layout the backup keeps (kubeadm's /etc/kubernetes).
fn base_dir(cert_dir: &Path) -> PathBuf {
    cert_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cert_dir.to_path_buf())
}

/// Where the backups of renewals of this cert-dir go.
pub fn backup_root(cert_dir: &Path) -> PathBuf {
    base_dir(cert_dir).join(BACKUP_DIR_NAME)
}

fn absolute(p: &Path) -> Result<PathBuf, RenewError> {
    std::path::absolute(p).map_err(|e| {
        RenewError::BadInput(vec![format!(
            "cannot resolve the path {}: {}",
            p.display(),
            io_reason(&e)
        )])
    })
}

/// Plans a renewal. Reads every file concerned, writes nothing.
pub fn plan(opts: &RenewOptions) -> Result<RenewPlan, RenewError> {
    let layout = PkiLayout::new(
        absolute(&opts.layout.cert_dir)?,
        absolute(&opts.layout.kubeconfig_dir)?,
    );
    let now = opts.now;
    let base = base_dir(&layout.cert_dir);
    let root = backup_root(&layout.cert_dir);
    if let Some(j) = interrupted(&root)? {
        return Err(RenewError::Interrupted(describe_interrupted(&j)));
    }
    let inv = discover(&layout)?;

    let mut bad: Vec<String> = Vec::new();
    let mut refused: Vec<NotRenewed> = Vec::new();
    let mut skipped: Vec<NotRenewed> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let refuse = |refused: &mut Vec<NotRenewed>, name: &str, reason: String| {
        refused.push(NotRenewed {
            name: name.to_string(),
            reason,
        })
    };

    // Names.
    let all = opts.names.is_empty() || opts.names.iter().any(|n| n == "all");
    if all && opts.names.len() > 1 {
        bad.push("give `all` or certificate names, not both".to_string());
    }
    let mut named: BTreeSet<&str> = BTreeSet::new();
    if !all {
        for n in &opts.names {
            if managed_cert(n).is_some() {
                named.insert(n.as_str());
            } else if CaId::ALL.iter().any(|c| c.name() == n) {
                refuse(
                    &mut refused,
                    n,
                    "a certificate authority: cpkeep never renews a CA".to_string(),
                );
            } else {
                let known: Vec<&str> = MANAGED_CERTS
                    .iter()
                    .filter(|c| c.renewable)
                    .map(|c| c.name)
                    .collect();
                bad.push(format!(
                    "unknown certificate {n:?}: kubeadm's names are all, {}",
                    known.join(", ")
                ));
            }
        }
    }
    let horizon = opts.within.map(|w| now + w);

    // Candidates: selected, present, readable, key matching.
    struct Candidate {
        entry: CertEntry,
        cert: CertInfo,
        key: PrivateKey,
        selected: Selected,
    }
    let mut candidates = Vec::new();
    for mut entry in inv.certs {
        let spec = entry.spec;
        let name = spec.name;
        let mut selected = if all {
            Selected::All
        } else if named.contains(name) {
            Selected::Named
        } else {
            continue;
        };
        let where_ = entry.path.display().to_string();
        if !spec.renewable {
            let reason = if entry.referenced() {
                format!(
                    "{where_} refers to {}: the kubelet rotates its own client certificate; cpkeep never renews it",
                    entry.cert_path.display()
                )
            } else {
                "the kubelet's client certificate: the kubelet rotates it (kubeadm does not renew it either)"
                    .to_string()
            };
            if selected == Selected::Named {
                refuse(&mut refused, name, reason);
            } else {
                skipped.push(NotRenewed {
                    name: name.to_string(),
                    reason,
                });
            }
            continue;
        }
        if entry.referenced() {
            refuse(
                &mut refused,
                name,
                format!(
                    "{where_} refers to the file {} instead of embedding the certificate: not renewed in place",
                    entry.cert_path.display()
                ),
            );
            continue;
        }
        let cert = match std::mem::replace(&mut entry.cert, Material::Missing) {
            Material::Found(c) => c,
            Material::Missing if selected == Selected::Named => {
                bad.push(format!("{name}: {where_} does not exist"));
                continue;
            }
            Material::Missing => {
                let reason = match spec.presence {
                    Presence::InitNodeOnly => format!(
                        "not present ({where_}: only the node where kubeadm init ran has it)"
                    ),
                    Presence::Required => format!("not present ({where_} does not exist)"),
                };
                skipped.push(NotRenewed {
                    name: name.to_string(),
                    reason,
                });
                continue;
            }
            Material::Unreadable(problem) | Material::Invalid(problem) => {
                bad.push(problem.message);
                continue;
            }
        };
        if cert.is_ca {
            refuse(
                &mut refused,
                name,
                format!(
                    "{} holds a CA certificate: cpkeep never renews a CA",
                    entry.cert_path.display()
                ),
            );
            continue;
        }
        let key_where = match &entry.key_path {
            Some(p) => p.display().to_string(),
            None => format!("client-key-data in {where_}"),
        };
        let key = match std::mem::replace(&mut entry.key, Material::Missing) {
            Material::Found(k) => k,
            Material::Missing => {
                bad.push(format!("{name}: its private key ({key_where}) is missing"));
                continue;
            }
            Material::Unreadable(problem) | Material::Invalid(problem) => {
                bad.push(problem.message);
                continue;
            }
        };
        if !key_matches(&cert, &key) {
            bad.push(format!(
                "{name}: the private key ({key_where}) does not belong to the certificate {}",
                entry.cert_path.display()
            ));
            continue;
        }
        if selected == Selected::All {
            if let Some(h) = horizon {
                if cert.not_after > h {
                    skipped.push(NotRenewed {
                        name: name.to_string(),
                        reason: format!(
                            "expires {}, after the --within window ({})",
                            cert.not_after.format("%Y-%m-%d %H:%M UTC"),
                            h.format("%Y-%m-%d %H:%M UTC")
                        ),
                    });
                    continue;
                }
                selected = Selected::Expiring;
            }
        }
        candidates.push(Candidate {
            entry,
            cert,
            key,
            selected,
        });
    }

    // The CAs the candidates need.
    enum CaState {
        Ready(Box<SigningCa>),
        Refuse(String),
        Bad(String),
    }
    let needed: BTreeSet<CaId> = candidates.iter().map(|c| c.entry.spec.ca).collect();
    let mut ca_states: BTreeMap<CaId, CaState> = BTreeMap::new();
    for ca in inv.cas {
        if !needed.contains(&ca.id) {
            continue;
        }
        let id = ca.id;
        let state = match (ca.cert, ca.key) {
            (Material::Invalid(p) | Material::Unreadable(p), _)
            | (_, Material::Invalid(p) | Material::Unreadable(p)) => CaState::Bad(p.message),
            (Material::Missing, _) => CaState::Refuse(format!(
                "its CA {} ({}) is missing",
                id.name(),
                ca.cert_path.display()
            )),
            (Material::Found(_), Material::Missing) => CaState::Refuse(format!(
                "its CA {} has no key at {} (external CA): renew it where the CA key is",
                id.name(),
                ca.key_path.display()
            )),
            (Material::Found(cert), Material::Found(key)) => {
                if !key_matches(&cert, &key) {
                    CaState::Bad(format!(
                        "CA {}: the key {} does not belong to the CA certificate {}",
                        id.name(),
                        ca.key_path.display(),
                        ca.cert_path.display()
                    ))
                } else if cert.not_after <= now {
                    CaState::Refuse(format!(
                        "its CA {} expired on {}: renew the CA first (cpkeep never renews a CA)",
                        id.name(),
                        cert.not_after.format("%Y-%m-%d %H:%M UTC")
                    ))
                } else {
                    CaState::Ready(Box::new(SigningCa { cert, key }))
                }
            }
        };
        ca_states.insert(id, state);
    }
    for state in ca_states.values() {
        if let CaState::Bad(line) = state {
            if !bad.contains(line) {
                bad.push(line.clone());
            }
        }
    }

    let mut renew = Vec::new();
    let mut files = Vec::new();
    let backup_dir = pick_backup_dir(&root, now);
    for c in candidates {
        let name = c.entry.spec.name;
        let ca_id = c.entry.spec.ca;
        let ca = match ca_states.get(&ca_id) {
            Some(CaState::Ready(ca)) => ca,
            Some(CaState::Refuse(reason)) => {
                refuse(&mut refused, name, reason.clone());
                continue;
            }
            Some(CaState::Bad(_)) | None => continue,
        };
        if let Err(e) = verify_signed_by(&c.cert, &ca.cert) {
            refuse(
                &mut refused,
                name,
                format!("it was not issued by its CA {}: {e}", ca_id.name()),
            );
            continue;
        }
        let (key_spec, reused_spki) = if opts.reuse_key {
            (None, Some(c.key.public_key_spki_der()))
        } else {
            match KeySpec::from_algorithm(&c.cert.key_algorithm) {
                Ok(s) => (Some(s), None),
                Err(e) => {
                    refuse(&mut refused, name, e.to_string());
                    continue;
                }
            }
        };
        let not_before = now - Duration::minutes(BACKDATE_MINUTES);
        let mut not_after = now + opts.validity;
        let capped_by_ca = not_after > ca.cert.not_after;
        if capped_by_ca {
            not_after = ca.cert.not_after;
            warnings.push(format!(
                "{name}: valid until {} only, the expiry of its CA {} (asked for {})",
                not_after.format("%Y-%m-%d %H:%M UTC"),
                ca_id.name(),
                (now + opts.validity).format("%Y-%m-%d %H:%M UTC")
            ));
        }
        if !issue::representable(not_after) {
            bad.push(format!(
                "{name}: --validity goes beyond what a certificate can hold"
            ));
            continue;
        }
        let kind = match c.entry.spec.source {
            CertSource::Pki { .. } => CertKind::Pki,
            CertSource::Kubeconfig { .. } => CertKind::Kubeconfig,
        };
        let mut these = Vec::new();
        let mut read_failed = false;
        let mut add =
            |path: &Path, role: FileRole, files: &mut Vec<PlannedFile>| match read_for_backup(path)
            {
                Ok(Backed {
                    bytes: old,
                    mode,
                    owner,
                }) => {
                    // Every kubeconfig renewed here embeds its key (`client-key-data`): a secret.
                    let secret = matches!(role, FileRole::Key | FileRole::Kubeconfig);
                    let mode_bits = if secret { MODE_SECRET } else { mode };
                    let old_mode_bits = if secret { mode & MODE_SECRET } else { mode };
                    let rel = path
                        .strip_prefix(&base)
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|_| {
                            Path::new("kubeconfig-dir").join(path.file_name().unwrap_or_default())
                        });
                    files.push(PlannedFile {
                        path: path.to_path_buf(),
                        backup: backup_dir.join(rel),
                        cert: name.to_string(),
                        role,
                        mode: format!("{mode_bits:04o}"),
                        mode_bits,
                        old_mode_bits,
                        owner,
                        old: SecretBytes::new(old),
                    });
                }
                Err(line) => {
                    bad.push(line);
                    read_failed = true;
                }
            };
        match kind {
            CertKind::Pki => {
                if key_spec.is_some() {
                    if let Some(k) = &c.entry.key_path {
                        add(k, FileRole::Key, &mut these);
                    }
                }
                add(&c.entry.cert_path, FileRole::Cert, &mut these);
            }
            CertKind::Kubeconfig => {
                add(&c.entry.path, FileRole::Kubeconfig, &mut these);
                // The two values must be replaceable in place; a dry edit says so now.
                if let Some(f) = these.first() {
                    if let Err(e) = replace_client_credentials(&f.path, f.old.expose(), b"-", b"-")
                    {
                        refuse(&mut refused, name, e.to_string());
                        continue;
                    }
                }
            }
        }
        if read_failed {
            continue;
        }
        files.extend(these);
        renew.push(PlannedCert {
            name: name.to_string(),
            ca: ca_id,
            kind,
            cert_path: c.entry.path.clone(),
            key_path: match kind {
                CertKind::Pki => c.entry.key_path.clone(),
                CertKind::Kubeconfig => None,
            },
            subject: c.cert.subject.clone(),
            sans: c.cert.sans(),
            key_algorithm: c.cert.key_algorithm.clone(),
            key_format: c.key.format(),
            new_key: key_spec.is_some(),
            selected: c.selected,
            expires: c.cert.not_after,
            not_before,
            not_after,
            capped_by_ca,
            component: Component::of_cert(name),
            old: c.cert,
            key_spec,
            reused_spki,
        });
    }
    if !bad.is_empty() {
        return Err(RenewError::BadInput(bad));
    }

    let mut restarts = Vec::new();
    if let Some(ropts) = &opts.restart {
        let mut by_component: BTreeMap<Component, Vec<String>> = BTreeMap::new();
        for p in &renew {
            if let Some(c) = p.component {
                by_component.entry(c).or_default().push(p.name.clone());
            }
        }
        restarts = restart::plan(&by_component, ropts).map_err(|source| RenewError::Restart {
            source,
            after: String::new(),
        })?;
    }
    let cas = ca_states
        .into_iter()
        .filter_map(|(id, s)| match s {
            CaState::Ready(ca) if renew.iter().any(|p| p.ca == id) => Some((id, *ca)),
            _ => None,
        })
        .collect();
    Ok(RenewPlan {
        cert_dir: layout.cert_dir.clone(),
        kubeconfig_dir: layout.kubeconfig_dir.clone(),
        backup_dir,
        planned_at: now,
        within_seconds: opts.within.map(|w| w.num_seconds()),
        validity_seconds: opts.validity.num_seconds(),
        reuse_key: opts.reuse_key,
        renew,
        skipped,
        refused,
        warnings,
        files,
        restarts,
        cas,
        restart: opts.restart.clone(),
    })
}

/// A file as it is before the renewal.
struct Backed {
    bytes: Vec<u8>,
    /// Permission bits, set-id bits included.
    mode: u32,
    /// (uid, gid)
    owner: (u32, u32),
}

/// A file's bytes, permission bits and owner, or one error line.
fn read_for_backup(path: &Path) -> Result<Backed, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let unreadable = |e: std::io::Error| {
        CertsError::Read {
            path: path.to_path_buf(),
            error: e,
        }
        .to_string()
    };
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    Ok(Backed {
        bytes,
        mode: meta.permissions().mode() & 0o7777,
        owner: (meta.uid(), meta.gid()),
    })
}

/// `<root>/<UTC yyyymmddThhmmssZ>`, with `-2`, `-3`… when a run in the same second left one.
fn pick_backup_dir(root: &Path, now: DateTime<Utc>) -> PathBuf {
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let first = root.join(&stamp);
    if !first.exists() {
        return first;
    }
    (2..1000)
        .map(|i| root.join(format!("{stamp}-{i}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Test hooks that simulate a run killed part-way through the replacements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestHook {
    /// Return an error after this many files were replaced, leaving everything as a kill would.
    StopAfterWrites(usize),
    /// Abort the process (no unwinding, no clean-up) after this many files were replaced.
    AbortAfterWrites(usize),
}

/// How a plan is carried out.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    pub hook: Option<TestHook>,
}

/// A renewed certificate issued in memory.
struct Issued {
    der: Vec<u8>,
}

/// Carries out `plan`: see the module documentation for the order and the guarantees.
pub async fn apply(plan: &RenewPlan, opts: &ApplyOptions) -> Result<RenewReport, RenewError> {
    let started = std::time::Instant::now();
    if plan.renew.is_empty() {
        return Ok(RenewReport {
            backup_dir: None,
            renewed: Vec::new(),
            skipped: plan.skipped.clone(),
            refused: plan.refused.clone(),
            warnings: plan.warnings.clone(),
            files_written: Vec::new(),
            restarted: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let failed = |what: String| RenewError::Failed {
        what,
        state: NOTHING_WRITTEN.to_string(),
    };

    // 1. Nothing changed since the plan.
    for f in &plan.files {
        let now = std::fs::read(&f.path).map_err(|e| {
            failed(format!(
                "cannot read {}: {}",
                f.path.display(),
                io_reason(&e)
            ))
        })?;
        if now != f.old.expose() {
            return Err(failed(format!(
                "{} changed since the renewal was planned",
                f.path.display()
            )));
        }
    }

    // 2. Everything issued and checked in memory.
    let mut issued: BTreeMap<&str, Issued> = BTreeMap::new();
    let mut contents: BTreeMap<&Path, Vec<u8>> = BTreeMap::new();
    for p in &plan.renew {
        let ca = plan.cas.get(&p.ca).ok_or_else(|| {
            failed(format!(
                "{}: the plan has no signing CA {}",
                p.name,
                p.ca.name()
            ))
        })?;
        let new_key = match p.key_spec {
            Some(spec) => Some(
                generate_key(spec, p.key_format).map_err(|e| failed(format!("{}: {e}", p.name)))?,
            ),
            None => None,
        };
        let spki = match (&new_key, &p.reused_spki) {
            (Some(k), _) => k.key.public_key_spki_der(),
            (None, Some(s)) => s.clone(),
            (None, None) => return Err(failed(format!("{}: no key to certify", p.name))),
        };
        let der = reissue(&Reissue {
            old: &p.old,
            ca: &ca.cert,
            ca_key: &ca.key,
            spki_der: &spki,
            not_before: p.not_before,
            not_after: p.not_after,
        })
        .map_err(|e| failed(format!("{}: {e}", p.name)))?;
        let cert = super::pem::parse_certificate_der(&der)
            .map_err(|e| failed(format!("{}: the renewed certificate: {e}", p.name)))?;
        check_renewed(p, &cert, &ca.cert, new_key.as_ref().map(|k| &k.key), &spki)
            .map_err(|why| failed(format!("{}: the renewed certificate {why}", p.name)))?;
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
                    .ok_or_else(|| failed(format!("{}: the plan has no file", p.name)))?;
                let old = file.old.expose();
                let key_pem = match &new_key {
                    Some(k) => k.pem.clone(),
                    None => match Kubeconfig::parse(&file.path, old)?.client_key {
                        ClientKey::Embedded(k) => k,
                        _ => {
                            return Err(failed(format!(
                                "{}: {} has no embedded key",
                                p.name,
                                file.path.display()
                            )))
                        }
                    },
                };
                let edited = replace_client_credentials(
                    &file.path,
                    old,
                    cert_pem.as_bytes(),
                    key_pem.expose(),
                )
                .map_err(|e| failed(e.to_string()))?;
                contents.insert(file.path.as_path(), edited);
            }
        }
        issued.insert(p.name.as_str(), Issued { der });
    }
    let mut writes: Vec<(&PlannedFile, &[u8])> = Vec::new();
    for f in &plan.files {
        let bytes = contents
            .get(f.path.as_path())
            .ok_or_else(|| failed(format!("{}: nothing was issued for it", f.path.display())))?;
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
    write_backup(plan, &journal)?;
    tracing::info!(backup = %plan.backup_dir.display(), files = writes.len(), "backed up the files to replace");

    // 4. The replacements.
    let mut written: Vec<&PlannedFile> = Vec::new();
    for (f, bytes) in &writes {
        if let Err(e) = replace_atomic(&f.path, bytes, f.mode_bits, Some(f.owner)) {
            let what = format!("cannot write {}: {}", f.path.display(), io_reason(&e));
            return Err(roll_back(plan, &journal, &written, what));
        }
        written.push(f);
        match opts.hook {
            Some(TestHook::StopAfterWrites(n)) if written.len() == n => {
                return Err(RenewError::Failed {
                    what: format!("stopped by the test hook after {n} replaced files"),
                    state: format!("the journal in {} says writing", plan.backup_dir.display()),
                });
            }
            Some(TestHook::AbortAfterWrites(n)) if written.len() == n => std::process::abort(),
            _ => {}
        }
    }

    // 5. Everything read back and checked.
    let mut renewed = Vec::new();
    for p in &plan.renew {
        let issued_der = issued.get(p.name.as_str()).map(|i| i.der.as_slice());
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
            Err(why) => {
                let what = format!("{}: read back after writing, {why}", p.name);
                return Err(roll_back(plan, &journal, &written, what));
            }
        }
    }
    let done = Journal {
        state: JournalState::Done,
        ..journal.clone()
    };
    write_journal(&plan.backup_dir, &done).map_err(|e| RenewError::Failed {
        what: format!("cannot mark the journal done: {e}"),
        state: format!(
            "every file was renewed and verified; the old files are in {}; remove the journal {} before the next renewal",
            plan.backup_dir.display(),
            plan.backup_dir.join(JOURNAL_FILE).display()
        ),
    })?;
    tracing::info!(renewed = renewed.len(), "renewed and verified");

    // 6. Restarts.
    let mut restarted = Vec::new();
    if let (false, Some(ropts)) = (plan.restarts.is_empty(), &plan.restart) {
        let mut serving = BTreeMap::new();
        if let Some(i) = issued.get("apiserver") {
            serving.insert(Component::KubeApiserver, i.der.clone());
        }
        restarted = restart::restart(&plan.restarts, ropts, &serving)
            .await
            .map_err(|source| RenewError::Restart {
                source,
                after: format!(
                    " (every certificate was renewed and verified; the old files are in {})",
                    plan.backup_dir.display()
                ),
            })?;
    }
    Ok(RenewReport {
        backup_dir: Some(plan.backup_dir.clone()),
        renewed,
        skipped: plan.skipped.clone(),
        refused: plan.refused.clone(),
        warnings: plan.warnings.clone(),
        files_written: writes.iter().map(|(f, _)| f.path.clone()).collect(),
        restarted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Checks a renewed certificate against its plan: chains to the CA, certifies `spki` (and the new
/// key, when there is one), same subject and SANs as the old one.
fn check_renewed(
    p: &PlannedCert,
    cert: &CertInfo,
    ca: &CertInfo,
    key: Option<&PrivateKey>,
    spki: &[u8],
) -> Result<(), String> {
    verify_signed_by(cert, ca).map_err(|e| format!("does not chain to its CA: {e}"))?;
    if cert.spki_der != spki {
        return Err("does not certify the intended key".to_string());
    }
    if let Some(k) = key {
        if !key_matches(cert, k) {
            return Err("does not match its new key".to_string());
        }
    }
    if cert.subject_der != p.old.subject_der || cert.sans() != p.old.sans() {
        return Err("does not have the old subject and subjectAltNames".to_string());
    }
    Ok(())
}

/// Reads a renewed certificate and its key back from disk and checks them.
fn read_back(p: &PlannedCert, plan: &RenewPlan, issued: Option<&[u8]>) -> Result<CertInfo, String> {
    let ca = plan
        .cas
        .get(&p.ca)
        .ok_or_else(|| "its CA is not in the plan".to_string())?;
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))
    };
    let (cert, key) = match p.kind {
        CertKind::Pki => {
            let key_path = p
                .key_path
                .as_ref()
                .ok_or_else(|| "no key path".to_string())?;
            let cert = parse_certificate_pem(&read(&p.cert_path)?)
                .map_err(|e| format!("{}: {e}", p.cert_path.display()))?;
            let key = parse_private_key_pem(&read(key_path)?)
                .map_err(|e| format!("{}: {e}", key_path.display()))?;
            (cert, key)
        }
        CertKind::Kubeconfig => {
            let kc = Kubeconfig::read(&p.cert_path).map_err(|e| e.to_string())?;
            let cert = match &kc.client_cert {
                super::kubeconfig::ClientCert::Embedded(pem) => parse_certificate_pem(pem)
                    .map_err(|e| {
                        format!("{}: client-certificate-data: {e}", p.cert_path.display())
                    })?,
                super::kubeconfig::ClientCert::File(_) => {
                    return Err("the kubeconfig no longer embeds its certificate".to_string())
                }
            };
            let key = match &kc.client_key {
                ClientKey::Embedded(k) => parse_private_key_pem(k.expose())
                    .map_err(|e| format!("{}: client-key-data: {e}", p.cert_path.display()))?,
                _ => return Err("the kubeconfig no longer embeds its key".to_string()),
            };
            (cert, key)
        }
    };
    if issued.is_some_and(|d| d != cert.der.as_slice()) {
        return Err("the certificate on disk is not the one issued".to_string());
    }
    verify_signed_by(&cert, &ca.cert).map_err(|e| format!("it does not chain to its CA: {e}"))?;
    if !key_matches(&cert, &key) {
        return Err("its key does not match it".to_string());
    }
    if key.format() != p.key_format {
        return Err("its key is not in the old key's PEM form".to_string());
    }
    Ok(cert)
}

/// Copies every file to replace into the backup directory and writes the journal, all fsynced.
fn write_backup(plan: &RenewPlan, journal: &Journal) -> Result<(), RenewError> {
    let dir = &plan.backup_dir;
    let failed = |what: String| RenewError::Failed {
        what,
        state: NOTHING_WRITTEN.to_string(),
    };
    let io = |p: &Path, e: std::io::Error| {
        failed(format!(
            "cannot write the backup {}: {}",
            p.display(),
            io_reason(&e)
        ))
    };
    let root = dir.parent().unwrap_or(dir);
    create_dir_all_mode(root, 0o700).map_err(|e| io(root, e))?;
    if let Some(up) = root.parent() {
        fsx::sync_dir(up).map_err(|e| io(up, e))?;
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, e))?;
    }
    fsx::sync_dir(root).map_err(|e| io(root, e))?;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for f in &plan.files {
        if let Some(parent) = f.backup.parent() {
            create_dir_all_mode(parent, 0o700).map_err(|e| io(parent, e))?;
            let mut d = parent;
            while d.starts_with(dir) {
                dirs.insert(d.to_path_buf());
                match d.parent() {
                    Some(up) => d = up,
                    None => break,
                }
            }
        }
        write_atomic(&f.backup, f.old.expose(), MODE_SECRET).map_err(|e| io(&f.backup, e))?;
    }
    write_journal(dir, journal).map_err(|e| failed(format!("cannot write the journal: {e}")))?;
    // Every directory entry created on the way is durable too.
    for d in dirs.iter().rev() {
        fsx::sync_dir(d).map_err(|e| io(d, e))?;
    }
    Ok(())
}

/// After a failure once files were replaced: every replaced file back from memory.
fn roll_back(
    plan: &RenewPlan,
    journal: &Journal,
    written: &[&PlannedFile],
    what: String,
) -> RenewError {
    let mut stuck = Vec::new();
    for f in written.iter().rev() {
        if let Err(e) = replace_atomic(&f.path, f.old.expose(), f.old_mode_bits, Some(f.owner)) {
            stuck.push(format!("{} ({})", f.path.display(), io_reason(&e)));
        }
    }
    let state = if stuck.is_empty() {
        let rolled = Journal {
            state: JournalState::RolledBack,
            ..journal.clone()
        };
        let _ = write_journal(&plan.backup_dir, &rolled);
        format!(
            "every replaced file was put back ({}); the backup is in {}",
            counted(written.len(), "file", "files"),
            plan.backup_dir.display()
        )
    } else {
        format!(
            "these files could not be put back: {}; run `cpkeep certs renew --recover` to restore them from {}",
            stuck.join(", "),
            plan.backup_dir.display()
        )
    };
    RenewError::Failed { what, state }
}

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

fn write_journal(dir: &Path, journal: &Journal) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(journal).map_err(|e| e.to_string())?;
    let path = dir.join(JOURNAL_FILE);
    write_atomic(&path, &text, MODE_SECRET)
        .map_err(|e| format!("{}: {}", path.display(), io_reason(&e)))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An interrupted renewal found on disk.
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub dir: PathBuf,
    pub journal: Journal,
}

/// The newest journal under `root` still in state `writing`.
fn interrupted(root: &Path) -> Result<Option<Interrupted>, RenewError> {
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
        let text = std::fs::read(&path).map_err(|e| {
            RenewError::BadInput(vec![CertsError::Read {
                path: path.clone(),
                error: e,
            }
            .to_string()])
        })?;
        let journal: Journal = serde_json::from_slice(&text).map_err(|e| {
            RenewError::BadInput(vec![format!(
                "{}: not a cpkeep renewal journal ({e})",
                path.display()
            )])
        })?;
        if journal.state == JournalState::Writing {
            return Ok(Some(Interrupted { dir, journal }));
        }
    }
    Ok(None)
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

fn describe_interrupted(i: &Interrupted) -> String {
    let states: Vec<(FileState, &JournalFile)> =
        i.journal.files.iter().map(|f| (file_state(f), f)).collect();
    let list = |want: FileState| -> Vec<String> {
        states
            .iter()
            .filter(|(s, _)| *s == want)
            .map(|(_, f)| f.path.display().to_string())
            .collect()
    };
    let new = list(FileState::New);
    let mut parts = vec![format!(
        "an interrupted renewal (journal {}) replaced {} of {}",
        i.dir.join(JOURNAL_FILE).display(),
        new.len(),
        counted(states.len(), "file", "files")
    )];
    if !new.is_empty() {
        parts.push(format!("new: {}", new.join(", ")));
    }
    for (s, label) in [
        (FileState::Changed, "changed since"),
        (FileState::Missing, "missing"),
    ] {
        let l = list(s);
        if !l.is_empty() {
            parts.push(format!("{label}: {}", l.join(", ")));
        }
    }
    parts.push(
        "run `cpkeep certs renew --recover` to put the backed-up files back, then renew again"
            .to_string(),
    );
    parts.join("; ")
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

/// What `--recover` will do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverPlan {
    pub backup_dir: PathBuf,
    pub started_at: DateTime<Utc>,
    pub files: Vec<RecoverFile>,
    #[serde(skip)]
    journal: Journal,
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
/// Refuses when a file was changed by something else since (it would be overwritten).
pub fn plan_recover(layout: &PkiLayout) -> Result<Option<RecoverPlan>, RenewError> {
    let cert_dir = absolute(&layout.cert_dir)?;
    let Some(i) = interrupted(&backup_root(&cert_dir))? else {
        return Ok(None);
    };
    let mut files = Vec::new();
    for f in &i.journal.files {
        let state = file_state(f);
        let backup = i.dir.join(&f.backup);
        let ok = std::fs::read(&backup)
            .map(|b| sha256_hex(&b) == f.old_sha256)
            .unwrap_or(false);
        if !ok {
            return Err(RenewError::Refused(format!(
                "the backup {} is missing or not what the journal recorded: nothing was changed",
                backup.display()
            )));
        }
        files.push(RecoverFile {
            path: f.path.clone(),
            backup,
            state,
            restore: state != FileState::Old,
            mode: f.old_mode.unwrap_or(f.mode),
            owner: f.uid.zip(f.gid),
            old_sha256: f.old_sha256.clone(),
        });
    }
    let changed: Vec<String> = files
        .iter()
        .filter(|f| f.state == FileState::Changed)
        .map(|f| f.path.display().to_string())
        .collect();
    if !changed.is_empty() {
        return Err(RenewError::Refused(format!(
            "{} changed since the interrupted renewal (neither its old nor its new content): nothing was changed; \
             compare with the backup in {} and put back what is right by hand, then remove the journal {}",
            changed.join(", "),
            i.dir.display(),
            i.dir.join(JOURNAL_FILE).display()
        )));
    }
    Ok(Some(RecoverPlan {
        backup_dir: i.dir,
        started_at: i.journal.started_at,
        files,
        journal: i.journal,
    }))
}

/// Puts back every file of `plan` that is not already old, then marks the journal `recovered`.
pub fn recover(plan: &RecoverPlan) -> Result<RecoverReport, RenewError> {
    let mut restored = Vec::new();
    let mut already_old = Vec::new();
    for f in &plan.files {
        if !f.restore {
            already_old.push(f.path.clone());
            continue;
        }
        let fail = |what: String| RenewError::Failed {
            what,
            state: format!(
                "restored so far: {}; run --recover again",
                if restored.is_empty() {
                    "nothing".to_string()
                } else {
                    restored
                        .iter()
                        .map(|p: &PathBuf| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        };
        let bytes = std::fs::read(&f.backup).map_err(|e| {
            fail(format!(
                "cannot read {}: {}",
                f.backup.display(),
                io_reason(&e)
            ))
        })?;
        if sha256_hex(&bytes) != f.old_sha256 {
            return Err(fail(format!(
                "{} is not what the journal recorded",
                f.backup.display()
            )));
        }
        replace_atomic(&f.path, &bytes, f.mode, f.owner).map_err(|e| {
            fail(format!(
                "cannot write {}: {}",
                f.path.display(),
                io_reason(&e)
            ))
        })?;
        restored.push(f.path.clone());
    }
    let journal = Journal {
        state: JournalState::Recovered,
        ..plan.journal.clone()
    };
    write_journal(&plan.backup_dir, &journal).map_err(|e| RenewError::Failed {
        what: format!("cannot mark the journal recovered: {e}"),
        state: "every file is back to its content before the interrupted renewal".to_string(),
    })?;
    Ok(RecoverReport {
        backup_dir: plan.backup_dir.clone(),
        restored,
        already_old,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A writable copy of the real kubeadm v1.16 `/etc/kubernetes` (RSA 2048, PKCS#1; every leaf
    /// expires 2020-12-25, the CAs 2029-12-23).
    fn fixture() -> (tempfile::TempDir, PkiLayout) {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap().flatten() {
                let (p, dest) = (e.path(), to.join(e.file_name()));
                if p.is_dir() {
                    copy(&p, &dest);
                } else {
                    std::fs::copy(&p, &dest).unwrap();
                    let mode = if dest.extension().is_some_and(|x| x == "key") {
                        0o600
                    } else {
                        0o644
                    };
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubernetes");
        copy(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16"),
            &root,
        );
        let layout = PkiLayout::new(root.join("pki"), &root);
        (dir, layout)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn names(v: &[PlannedCert]) -> Vec<&str> {
        v.iter().map(|p| p.name.as_str()).collect()
    }

    fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n == BACKUP_DIR_NAME) {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }

    const LEAVES: [&str; 10] = [
        "admin.conf",
        "apiserver",
        "apiserver-etcd-client",
        "apiserver-kubelet-client",
        "controller-manager.conf",
        "etcd-healthcheck-client",
        "etcd-peer",
        "etcd-server",
        "front-proxy-client",
        "scheduler.conf",
    ];

    #[test]
    fn within_selects_by_expiry_and_names_regardless() {
        let (_d, layout) = fixture();
        let mut o = RenewOptions::new(layout);
        o.now = at("2020-12-01T00:00:00Z");
        o.within = Some(Duration::days(30));
        let p = plan(&o).unwrap();
        assert_eq!(names(&p.renew), LEAVES);
        assert!(p.renew.iter().all(|c| c.selected == Selected::Expiring));
        o.within = Some(Duration::days(7));
        let p = plan(&o).unwrap();
        assert!(p.renew.is_empty());
        assert!(p
            .skipped
            .iter()
            .any(|s| s.name == "apiserver" && s.reason.contains("--within")));
        o.names = vec!["apiserver".into(), "etcd-peer".into()];
        let p = plan(&o).unwrap();
        assert_eq!(names(&p.renew), ["apiserver", "etcd-peer"]);
        assert!(p.renew.iter().all(|c| c.selected == Selected::Named));
        // Files: each key before its certificate, keys 0600, backups under pki-backup.
        let roles: Vec<FileRole> = p.files.iter().map(|f| f.role).collect();
        assert_eq!(
            roles,
            [FileRole::Key, FileRole::Cert, FileRole::Key, FileRole::Cert]
        );
        assert_eq!(p.files[0].mode, "0600");
        assert!(p.files[3]
            .backup
            .ends_with("pki-backup/20201201T000000Z/pki/etcd/peer.crt"));
        // Validity: 365 days, or the CA's expiry when that comes first (with a warning).
        assert_eq!(p.renew[0].not_after, at("2021-12-01T00:00:00Z"));
        o.validity = Duration::days(3650);
        let p = plan(&o).unwrap();
        assert!(p.renew.iter().all(|c| c.capped_by_ca));
        assert_eq!(p.warnings.len(), 2);
        assert!(p.warnings[1].contains("etcd-ca"), "{:?}", p.warnings);
    }

    #[test]
    fn cas_kubelet_conf_and_external_cas_are_refused() {
        let (_d, layout) = fixture();
        let mut o = RenewOptions::new(layout.clone());
        o.names = vec![
            "ca".into(),
            "kubelet.conf".into(),
            "front-proxy-client".into(),
        ];
        let p = plan(&o).unwrap();
        assert_eq!(names(&p.renew), ["front-proxy-client"]);
        let refused: Vec<&str> = p.refused.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(refused, ["ca", "kubelet.conf"]);
        std::fs::remove_file(layout.cert_dir.join("front-proxy-ca.key")).unwrap();
        let p = plan(&o).unwrap();
        assert!(p.renew.is_empty());
        let r = p
            .refused
            .iter()
            .find(|r| r.name == "front-proxy-client")
            .unwrap();
        assert!(
            r.reason.contains("front-proxy-ca") && r.reason.contains("external CA"),
            "{}",
            r.reason
        );
        // The default (all) renews everything else.
        o.names.clear();
        let p = plan(&o).unwrap();
        assert_eq!(p.renew.len(), 9);
        assert_eq!(p.refused.len(), 1);
    }

    #[test]
    fn unusable_files_are_one_line_each() {
        let (_d, layout) = fixture();
        std::fs::write(layout.cert_dir.join("apiserver.crt"), "garbage").unwrap();
        std::fs::copy(
            layout.cert_dir.join("etcd/peer.key"),
            layout.cert_dir.join("etcd/server.key"),
        )
        .unwrap();
        std::fs::copy(
            layout.cert_dir.join("ca.key"),
            layout.cert_dir.join("front-proxy-ca.key"),
        )
        .unwrap();
        let e = plan(&RenewOptions::new(layout.clone())).unwrap_err();
        assert_eq!(e.class(), ErrorClass::BadInput);
        let lines = e.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("apiserver.crt"), "{lines:?}");
        assert!(
            lines[1].starts_with("etcd-server: the private key"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("CA front-proxy-ca: the key"),
            "{lines:?}"
        );
        let missing = PkiLayout::new(layout.cert_dir.join("nope"), &layout.kubeconfig_dir);
        let e = plan(&RenewOptions::new(missing)).unwrap_err();
        assert_eq!(e.class(), ErrorClass::BadInput);
    }

    #[tokio::test]
    async fn apply_renews_verifies_and_backs_up() {
        let (_d, layout) = fixture();
        let root = layout.kubeconfig_dir.clone();
        let before = tree(&root);
        let p = plan(&RenewOptions::new(layout.clone())).unwrap();
        assert_eq!(names(&p.renew), LEAVES);
        let r = apply(&p, &ApplyOptions::default()).await.unwrap();
        assert_eq!(r.renewed.len(), 10);
        assert!(r.renewed.iter().all(|c| c.verified && c.new_key));
        assert!(r
            .renewed
            .iter()
            .all(|c| c.key_format == KeyFormat::Pkcs1 && c.key_algorithm == "RSA-2048"));
        let after = tree(&root);
        for (path, old) in &before {
            let changed = after[path] != *old;
            assert_eq!(
                changed,
                r.files_written.contains(path),
                "{}",
                path.display()
            );
        }
        let journal: Journal =
            serde_json::from_slice(&std::fs::read(p.backup_dir.join(JOURNAL_FILE)).unwrap())
                .unwrap();
        assert_eq!(journal.state, JournalState::Done);
        for f in &journal.files {
            assert_eq!(
                std::fs::read(p.backup_dir.join(&f.backup)).unwrap(),
                before[&f.path]
            );
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p.backup_dir), 0o700);
        assert_eq!(mode(&layout.cert_dir.join("apiserver.key")), 0o600);
        // A plan made before the files changed is not applied over them.
        let stale = plan(&RenewOptions::new(layout.clone())).unwrap();
        std::fs::write(
            layout.cert_dir.join("apiserver.crt"),
            &before[&layout.cert_dir.join("apiserver.crt")],
        )
        .unwrap();
        let e = apply(&stale, &ApplyOptions::default()).await.unwrap_err();
        assert!(e.to_string().contains("changed since"), "{e}");
    }

    #[tokio::test]
    async fn a_stopped_run_is_refused_until_recovered() {
        let (_d, layout) = fixture();
        let root = layout.kubeconfig_dir.clone();
        let before = tree(&root);
        let p = plan(&RenewOptions::new(layout.clone())).unwrap();
        let opts = ApplyOptions {
            hook: Some(TestHook::StopAfterWrites(3)),
        };
        apply(&p, &opts).await.unwrap_err();
        // admin.conf, apiserver.key, apiserver.crt are new; the rest old.
        let now = tree(&root);
        let changed: Vec<&PathBuf> = before.keys().filter(|k| now[*k] != before[*k]).collect();
        assert_eq!(changed.len(), 3, "{changed:?}");
        let e = plan(&RenewOptions::new(layout.clone())).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Refused);
        assert!(e.to_string().contains("replaced 3 of 17 files"), "{e}");
        let rp = plan_recover(&layout).unwrap().unwrap();
        assert_eq!(rp.files.iter().filter(|f| f.restore).count(), 3);
        let rr = recover(&rp).unwrap();
        assert_eq!(rr.restored.len(), 3);
        assert_eq!(tree(&root), before);
        assert!(plan_recover(&layout).unwrap().is_none());
        assert_eq!(plan(&RenewOptions::new(layout)).unwrap().renew.len(), 10);
    }
}
