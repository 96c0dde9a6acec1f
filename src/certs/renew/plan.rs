//! [`plan`]: what a renewal will do, decided before anything changes. It reads every file concerned
//! and writes nothing: which certificates are renewed (all, those expiring within a window, or the
//! ones named), which are skipped and why, which are refused and why (a CA, a CA without its key —
//! kubeadm's external CA mode —, an expired CA, a certificate its CA did not sign, `kubelet.conf`),
//! the new validity (capped at the CA's expiry), every file that changes, its mode and where its
//! backup goes. Files that cannot be used are one [`BadInput`] line each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::error::{BadInput, RenewError};
use super::journal;
use super::lock::RenewLock;
use super::{BACKDATE_MINUTES, BACKUP_DIR_NAME};
use crate::certs::error::CertsError;
use crate::certs::inventory::{
    discover, managed_cert, require_dir, CaEntry, CaId, CertEntry, CertSource, DirRole, Material,
    PkiLayout, Presence, MANAGED_CERTS,
};
use crate::certs::issue::{self, KeySpec};
use crate::certs::kubeconfig::SecretBytes;
use crate::certs::kubeconfig_edit::replace_client_credentials;
use crate::certs::pem::{CertInfo, KeyFormat, PrivateKey};
use crate::certs::restart::{self, Component, RestartOptions, RestartStep};
use crate::certs::verify::{key_matches, verify_signed_by};
use crate::fsx::MODE_SECRET;

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
    pub(super) old: CertInfo,
    #[serde(skip)]
    pub(super) key_spec: Option<KeySpec>,
    #[serde(skip)]
    pub(super) reused_spki: Option<Vec<u8>>,
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
    pub(super) mode_bits: u32,
    /// The mode the old content is put back with (rollback, `--recover`): the old mode, but never more
    /// open than 0600 for a secret.
    #[serde(skip)]
    pub(super) old_mode_bits: u32,
    /// The old file's owner (uid, gid), which the new file keeps.
    #[serde(skip)]
    pub(super) owner: (u32, u32),
    #[serde(skip)]
    pub(super) old: SecretBytes,
}

/// A CA that signs renewals: its certificate and key.
#[derive(Debug)]
pub(super) struct SigningCa {
    pub(super) cert: CertInfo,
    pub(super) key: PrivateKey,
}

/// What a renewal will do, decided before anything changes. It holds the cert-dir's lock until it
/// is dropped, so nothing else renews these files between the plan and its application.
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
    pub(super) cas: BTreeMap<CaId, SigningCa>,
    #[serde(skip)]
    pub(super) restart: Option<RestartOptions>,
    #[serde(skip)]
    pub(super) _lock: RenewLock,
}

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

/// `p` made absolute (the journal and the backup name files by absolute paths).
pub(super) fn absolute(p: &Path) -> Result<PathBuf, RenewError> {
    std::path::absolute(p).map_err(|error| {
        RenewError::BadInput(vec![BadInput::Path {
            path: p.to_path_buf(),
            error,
        }])
    })
}

/// What the plan found so far besides what it renews.
#[derive(Default)]
struct Findings {
    bad: Vec<BadInput>,
    refused: Vec<NotRenewed>,
    skipped: Vec<NotRenewed>,
    warnings: Vec<String>,
}

impl Findings {
    fn refuse(&mut self, name: &str, reason: String) {
        self.refused.push(NotRenewed {
            name: name.to_string(),
            reason,
        });
    }

    fn skip(&mut self, name: &str, reason: String) {
        self.skipped.push(NotRenewed {
            name: name.to_string(),
            reason,
        });
    }

    /// Adds a bad-input line unless the same line is there (a CA shared by several certificates).
    fn bad(&mut self, line: BadInput) {
        let text = line.to_string();
        if !self.bad.iter().any(|b| b.to_string() == text) {
            self.bad.push(line);
        }
    }
}

/// Which certificates the names select.
enum Selection<'a> {
    All,
    Named(BTreeSet<&'a str>),
}

/// A certificate that is selected, present, readable, and whose key matches.
struct Candidate {
    entry: CertEntry,
    cert: CertInfo,
    key: PrivateKey,
    selected: Selected,
}

/// Whether a CA can sign the renewals of its certificates.
enum CaState {
    Ready(Box<SigningCa>),
    /// Its certificates are refused, for this reason.
    Refuse(String),
    /// Its files cannot be used (a bad-input line was added).
    Bad,
}

/// Plans a renewal. Takes the cert-dir's lock, reads every file concerned, writes nothing.
pub fn plan(opts: &RenewOptions) -> Result<RenewPlan, RenewError> {
    let layout = PkiLayout::new(
        absolute(&opts.layout.cert_dir)?,
        absolute(&opts.layout.kubeconfig_dir)?,
    );
    // A directory that does not exist is bad input, said as `certs check` says it, not a lock error.
    require_dir(&layout.cert_dir, DirRole::CertDir)?;
    require_dir(&layout.kubeconfig_dir, DirRole::KubeconfigDir)?;
    let lock = RenewLock::acquire(&layout.cert_dir)?;
    let root = backup_root(&layout.cert_dir);
    if let Some(i) = journal::interrupted(&root)? {
        return Err(RenewError::Interrupted(Box::new(i)));
    }
    let inv = discover(&layout)?;
    let mut found = Findings::default();
    let selection = select(&opts.names, &mut found);
    let candidates = candidates(inv.certs, &selection, opts, &mut found);
    let needed: BTreeSet<CaId> = candidates.iter().map(|c| c.entry.spec.ca).collect();
    let mut ca_states: BTreeMap<CaId, CaState> = inv
        .cas
        .into_iter()
        .filter(|ca| needed.contains(&ca.id))
        .map(|ca| (ca.id, ca_state(ca, opts.now, &mut found)))
        .collect();
    let backup_dir = pick_backup_dir(&root, opts.now);
    let mut renew = Vec::new();
    let mut files = Vec::new();
    for c in candidates {
        let Some(CaState::Ready(ca)) = ca_states.get(&c.entry.spec.ca) else {
            if let Some(CaState::Refuse(reason)) = ca_states.get(&c.entry.spec.ca) {
                found.refuse(c.entry.spec.name, reason.clone());
            }
            continue;
        };
        if let Some((planned, these)) = plan_one(c, ca, opts, &layout, &backup_dir, &mut found) {
            renew.push(planned);
            files.extend(these);
        }
    }
    if !found.bad.is_empty() {
        return Err(RenewError::BadInput(found.bad));
    }
    let restarts = match &opts.restart {
        Some(ropts) => {
            let mut by_component: BTreeMap<Component, Vec<String>> = BTreeMap::new();
            for p in &renew {
                if let Some(c) = p.component {
                    by_component.entry(c).or_default().push(p.name.clone());
                }
            }
            restart::plan(&by_component, ropts).map_err(|source| RenewError::Restart {
                source,
                renewed_backup: None,
            })?
        }
        None => Vec::new(),
    };
    // Only the CAs that sign something stay in the plan (with their keys).
    ca_states.retain(|id, s| matches!(s, CaState::Ready(_)) && renew.iter().any(|p| p.ca == *id));
    let cas = ca_states
        .into_iter()
        .filter_map(|(id, s)| match s {
            CaState::Ready(ca) => Some((id, *ca)),
            CaState::Refuse(_) | CaState::Bad => None,
        })
        .collect();
    Ok(RenewPlan {
        cert_dir: layout.cert_dir.clone(),
        kubeconfig_dir: layout.kubeconfig_dir.clone(),
        backup_dir,
        planned_at: opts.now,
        within_seconds: opts.within.map(|w| w.num_seconds()),
        validity_seconds: opts.validity.num_seconds(),
        reuse_key: opts.reuse_key,
        renew,
        skipped: found.skipped,
        refused: found.refused,
        warnings: found.warnings,
        files,
        restarts,
        cas,
        restart: opts.restart.clone(),
        _lock: lock,
    })
}

/// The selection the names make: `all` (or none), or kubeadm's names. A CA's name is refused, an
/// unknown name is bad input.
fn select<'a>(names: &'a [String], found: &mut Findings) -> Selection<'a> {
    let all = names.is_empty() || names.iter().any(|n| n == "all");
    if all {
        if names.len() > 1 {
            found.bad(BadInput::AllAndNames);
        }
        return Selection::All;
    }
    let mut named = BTreeSet::new();
    for n in names {
        if managed_cert(n).is_some() {
            named.insert(n.as_str());
        } else if CaId::ALL.iter().any(|c| c.name() == n) {
            found.refuse(
                n,
                "a certificate authority: cpkeep never renews a CA".to_string(),
            );
        } else {
            found.bad(BadInput::UnknownName {
                name: n.clone(),
                known: MANAGED_CERTS
                    .iter()
                    .filter(|c| c.renewable)
                    .map(|c| c.name)
                    .collect(),
            });
        }
    }
    Selection::Named(named)
}

/// The certificates to renew: selected, renewable, present, readable, their key matching, and (with
/// `--within`) expiring. Everything else is skipped, refused or bad input, with its reason.
fn candidates(
    certs: Vec<CertEntry>,
    selection: &Selection<'_>,
    opts: &RenewOptions,
    found: &mut Findings,
) -> Vec<Candidate> {
    let horizon = opts.within.map(|w| opts.now + w);
    let mut out = Vec::new();
    for mut entry in certs {
        let spec = entry.spec;
        let name = spec.name;
        let mut selected = match selection {
            Selection::All => Selected::All,
            Selection::Named(named) if named.contains(name) => Selected::Named,
            Selection::Named(_) => continue,
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
                found.refuse(name, reason);
            } else {
                found.skip(name, reason);
            }
            continue;
        }
        if entry.referenced() {
            found.refuse(
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
                found.bad(BadInput::NamedMissing {
                    name: name.to_string(),
                    path: entry.path.clone(),
                });
                continue;
            }
            Material::Missing => {
                let reason = match spec.presence {
                    Presence::InitNodeOnly => format!(
                        "not present ({where_}: only the node where kubeadm init ran has it)"
                    ),
                    Presence::Required => format!("not present ({where_} does not exist)"),
                };
                found.skip(name, reason);
                continue;
            }
            Material::Unreadable(problem) | Material::Invalid(problem) => {
                found.bad(BadInput::File(problem));
                continue;
            }
        };
        if cert.is_ca {
            found.refuse(
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
                found.bad(BadInput::KeyMissing {
                    name: name.to_string(),
                    key: key_where,
                });
                continue;
            }
            Material::Unreadable(problem) | Material::Invalid(problem) => {
                found.bad(BadInput::File(problem));
                continue;
            }
        };
        if !key_matches(&cert, &key) {
            found.bad(BadInput::KeyMismatch {
                name: name.to_string(),
                key: key_where,
                cert: entry.cert_path.clone(),
            });
            continue;
        }
        if let (Selected::All, Some(h)) = (selected, horizon) {
            if cert.not_after > h {
                found.skip(
                    name,
                    format!(
                        "expires {}, after the --within window ({})",
                        cert.not_after.format("%Y-%m-%d %H:%M UTC"),
                        h.format("%Y-%m-%d %H:%M UTC")
                    ),
                );
                continue;
            }
            selected = Selected::Expiring;
        }
        out.push(Candidate {
            entry,
            cert,
            key,
            selected,
        });
    }
    out
}

/// Whether `ca` can sign renewals now: its certificate and key present, matching, not expired.
fn ca_state(ca: CaEntry, now: DateTime<Utc>, found: &mut Findings) -> CaState {
    let id = ca.id;
    match (ca.cert, ca.key) {
        (Material::Invalid(p) | Material::Unreadable(p), _)
        | (_, Material::Invalid(p) | Material::Unreadable(p)) => {
            found.bad(BadInput::File(p));
            CaState::Bad
        }
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
                found.bad(BadInput::CaKeyMismatch {
                    ca: id,
                    key: ca.key_path,
                    cert: ca.cert_path,
                });
                CaState::Bad
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
    }
}

/// One certificate's plan and its files, or `None` when it is refused or bad input (recorded).
fn plan_one(
    c: Candidate,
    ca: &SigningCa,
    opts: &RenewOptions,
    layout: &PkiLayout,
    backup_dir: &Path,
    found: &mut Findings,
) -> Option<(PlannedCert, Vec<PlannedFile>)> {
    let name = c.entry.spec.name;
    let ca_id = c.entry.spec.ca;
    let now = opts.now;
    if let Err(e) = verify_signed_by(&c.cert, &ca.cert) {
        found.refuse(
            name,
            format!("it was not issued by its CA {}: {e}", ca_id.name()),
        );
        return None;
    }
    let (key_spec, reused_spki) = if opts.reuse_key {
        (None, Some(c.key.public_key_spki_der()))
    } else {
        match KeySpec::from_algorithm(&c.cert.key_algorithm) {
            Ok(s) => (Some(s), None),
            Err(e) => {
                found.refuse(name, e.to_string());
                return None;
            }
        }
    };
    let not_before = now - Duration::minutes(BACKDATE_MINUTES);
    let mut not_after = now + opts.validity;
    let capped_by_ca = not_after > ca.cert.not_after;
    if capped_by_ca {
        not_after = ca.cert.not_after;
        found.warnings.push(format!(
            "{name}: valid until {} only, the expiry of its CA {} (asked for {})",
            not_after.format("%Y-%m-%d %H:%M UTC"),
            ca_id.name(),
            (now + opts.validity).format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if !issue::representable(not_after) {
        found.bad(BadInput::Validity {
            name: name.to_string(),
        });
        return None;
    }
    let kind = match c.entry.spec.source {
        CertSource::Pki { .. } => CertKind::Pki,
        CertSource::Kubeconfig { .. } => CertKind::Kubeconfig,
    };
    let base = base_dir(&layout.cert_dir);
    let file = |path: &Path, role: FileRole| -> Result<PlannedFile, BadInput> {
        let old = read_for_backup(path).map_err(BadInput::Read)?;
        // Every kubeconfig renewed here embeds its key (`client-key-data`): a secret.
        let secret = matches!(role, FileRole::Key | FileRole::Kubeconfig);
        let mode_bits = if secret { MODE_SECRET } else { old.mode };
        let old_mode_bits = if secret {
            old.mode & MODE_SECRET
        } else {
            old.mode
        };
        let rel = path
            .strip_prefix(&base)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| {
                Path::new("kubeconfig-dir").join(path.file_name().unwrap_or_default())
            });
        Ok(PlannedFile {
            path: path.to_path_buf(),
            backup: backup_dir.join(rel),
            cert: name.to_string(),
            role,
            mode: format!("{mode_bits:04o}"),
            mode_bits,
            old_mode_bits,
            owner: old.owner,
            old: SecretBytes::new(old.bytes),
        })
    };
    let wanted: Vec<(&Path, FileRole)> = match kind {
        CertKind::Pki => key_spec
            .is_some()
            .then_some(c.entry.key_path.as_deref())
            .flatten()
            .map(|k| (k, FileRole::Key))
            .into_iter()
            .chain([(c.entry.cert_path.as_path(), FileRole::Cert)])
            .collect(),
        CertKind::Kubeconfig => vec![(c.entry.path.as_path(), FileRole::Kubeconfig)],
    };
    let mut files = Vec::new();
    for (path, role) in wanted {
        match file(path, role) {
            Ok(f) => files.push(f),
            Err(line) => {
                found.bad(line);
                return None;
            }
        }
    }
    if kind == CertKind::Kubeconfig {
        // The two values must be replaceable in place; a dry edit says so now.
        if let Some(f) = files.first() {
            if let Err(e) = replace_client_credentials(&f.path, f.old.expose(), b"-", b"-") {
                found.refuse(name, e.to_string());
                return None;
            }
        }
    }
    let planned = PlannedCert {
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
    };
    Some((planned, files))
}

/// A file as it is before the renewal.
struct Backed {
    bytes: Vec<u8>,
    /// Permission bits, set-id bits included.
    mode: u32,
    /// (uid, gid)
    owner: (u32, u32),
}

/// A file's bytes, permission bits and owner.
fn read_for_backup(path: &Path) -> Result<Backed, CertsError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let unreadable = |error: std::io::Error| CertsError::Read {
        path: path.to_path_buf(),
        error,
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
