//! What kubeadm manages and where it lives: the three CAs (`ca`, `etcd-ca`, `front-proxy-ca`), the
//! leaf certificates each one signs, the kubeconfigs with client certificates, and the service-account
//! key pair — named exactly as `kubeadm certs check-expiration` names them — and [`discover`], which
//! loads all of it from a `--cert-dir` and a `--kubeconfig-dir`.
//!
//! This module owns the layout table and loading. Loading never fails for one bad file: each file's
//! state is recorded ([`Material::Missing`], [`Material::Invalid`] with a one-line reason) so a check
//! can report every file. Only a cert-dir that does not exist is an error. It never writes, never
//! prints, and keeps private keys inside [`PrivateKey`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::CertsError;
use super::kubeconfig::{ClientCert, ClientKey, Kubeconfig};
use super::pem::{
    has_private_key_block, parse_certificate_pem, parse_private_key_pem, parse_public_key_pem,
    CertInfo, PemError, PrivateKey, PublicKeyInfo,
};

/// kubeadm's default `certificatesDir`.
pub const DEFAULT_CERT_DIR: &str = "/etc/kubernetes/pki";
/// kubeadm's kubeconfig directory.
pub const DEFAULT_KUBECONFIG_DIR: &str = "/etc/kubernetes";

/// Where one node's kubeadm files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PkiLayout {
    /// kubeadm's `certificatesDir` (`/etc/kubernetes/pki`).
    pub cert_dir: PathBuf,
    /// Where `admin.conf` and the other kubeconfigs are (`/etc/kubernetes`).
    pub kubeconfig_dir: PathBuf,
}

impl Default for PkiLayout {
    fn default() -> Self {
        Self::new(DEFAULT_CERT_DIR, DEFAULT_KUBECONFIG_DIR)
    }
}

impl PkiLayout {
    pub fn new(cert_dir: impl Into<PathBuf>, kubeconfig_dir: impl Into<PathBuf>) -> Self {
        Self {
            cert_dir: cert_dir.into(),
            kubeconfig_dir: kubeconfig_dir.into(),
        }
    }

    /// `<cert-dir>/<base>.crt` (`base` may hold a sub-directory: `etcd/server`).
    pub fn cert_path(&self, base_name: &str) -> PathBuf {
        self.cert_dir.join(format!("{base_name}.crt"))
    }

    /// `<cert-dir>/<base>.key`.
    pub fn key_path(&self, base_name: &str) -> PathBuf {
        self.cert_dir.join(format!("{base_name}.key"))
    }

    /// `<kubeconfig-dir>/<file>`.
    pub fn kubeconfig_path(&self, file_name: &str) -> PathBuf {
        self.kubeconfig_dir.join(file_name)
    }

    /// `<cert-dir>/sa.key`.
    pub fn sa_key_path(&self) -> PathBuf {
        self.cert_dir.join("sa.key")
    }

    /// `<cert-dir>/sa.pub`.
    pub fn sa_pub_path(&self) -> PathBuf {
        self.cert_dir.join("sa.pub")
    }

    /// Where a managed certificate's file is: the `.crt`, or the kubeconfig.
    pub fn path_of(&self, spec: &ManagedCert) -> PathBuf {
        match spec.source {
            CertSource::Pki { base_name } => self.cert_path(base_name),
            CertSource::Kubeconfig { file_name } => self.kubeconfig_path(file_name),
        }
    }
}

/// The certificate authorities kubeadm creates, in kubeadm's (alphabetical) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum CaId {
    /// `ca`: the Kubernetes CA (`ca.crt`), signer of the apiserver and kubeconfig certificates.
    #[serde(rename = "ca")]
    Ca,
    /// `etcd-ca`: `etcd/ca.crt`.
    #[serde(rename = "etcd-ca")]
    EtcdCa,
    /// `front-proxy-ca`: `front-proxy-ca.crt`.
    #[serde(rename = "front-proxy-ca")]
    FrontProxyCa,
}

impl CaId {
    /// All CAs, in the order kubeadm lists them.
    pub const ALL: [CaId; 3] = [CaId::Ca, CaId::EtcdCa, CaId::FrontProxyCa];

    /// kubeadm's name (`ca`, `etcd-ca`, `front-proxy-ca`).
    pub fn name(self) -> &'static str {
        match self {
            CaId::Ca => "ca",
            CaId::EtcdCa => "etcd-ca",
            CaId::FrontProxyCa => "front-proxy-ca",
        }
    }

    /// The file base name under the cert-dir (`ca`, `etcd/ca`, `front-proxy-ca`).
    pub fn base_name(self) -> &'static str {
        match self {
            CaId::Ca => "ca",
            CaId::EtcdCa => "etcd/ca",
            CaId::FrontProxyCa => "front-proxy-ca",
        }
    }
}

/// Where a managed certificate is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// A `<base>.crt` / `<base>.key` pair under the cert-dir.
    Pki { base_name: &'static str },
    /// The client certificate of a kubeconfig under the kubeconfig-dir.
    Kubeconfig { file_name: &'static str },
}

/// Whether a missing file is a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Presence {
    /// Every control-plane node has it.
    Required,
    /// Only the node where `kubeadm init` ran has it (`super-admin.conf`, kubeadm 1.29+); absence is normal.
    InitNodeOnly,
}

/// One certificate kubeadm manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedCert {
    /// kubeadm's name (`apiserver`, `etcd-server`, `admin.conf`).
    pub name: &'static str,
    /// What it is for, as kubeadm describes it.
    pub long_name: &'static str,
    /// The CA that signs it.
    pub ca: CaId,
    pub source: CertSource,
    pub presence: Presence,
    /// `false` for `kubelet.conf`: the kubelet rotates its own client certificate, kubeadm (and cpkeep)
    /// never renew it.
    pub renewable: bool,
}

const fn pki(
    name: &'static str,
    long_name: &'static str,
    ca: CaId,
    base: &'static str,
) -> ManagedCert {
    ManagedCert {
        name,
        long_name,
        ca,
        source: CertSource::Pki { base_name: base },
        presence: Presence::Required,
        renewable: true,
    }
}

const fn conf(
    name: &'static str,
    long_name: &'static str,
    presence: Presence,
    renewable: bool,
) -> ManagedCert {
    ManagedCert {
        name,
        long_name,
        ca: CaId::Ca,
        source: CertSource::Kubeconfig { file_name: name },
        presence,
        renewable,
    }
}

/// Every certificate kubeadm manages on a stacked-etcd control-plane node, sorted by name as
/// `kubeadm certs check-expiration` lists them, plus `kubelet.conf` (reported, never renewed).
pub const MANAGED_CERTS: &[ManagedCert] = &[
    conf(
        "admin.conf",
        "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself",
        Presence::Required,
        true,
    ),
    pki(
        "apiserver",
        "certificate for serving the Kubernetes API",
        CaId::Ca,
        "apiserver",
    ),
    pki(
        "apiserver-etcd-client",
        "certificate the apiserver uses to access etcd",
        CaId::EtcdCa,
        "apiserver-etcd-client",
    ),
    pki(
        "apiserver-kubelet-client",
        "certificate for the API server to connect to kubelet",
        CaId::Ca,
        "apiserver-kubelet-client",
    ),
    conf(
        "controller-manager.conf",
        "certificate embedded in the kubeconfig file for the controller manager to use",
        Presence::Required,
        true,
    ),
    pki(
        "etcd-healthcheck-client",
        "certificate for liveness probes to healthcheck etcd",
        CaId::EtcdCa,
        "etcd/healthcheck-client",
    ),
    pki(
        "etcd-peer",
        "certificate for etcd nodes to communicate with each other",
        CaId::EtcdCa,
        "etcd/peer",
    ),
    pki(
        "etcd-server",
        "certificate for serving etcd",
        CaId::EtcdCa,
        "etcd/server",
    ),
    pki(
        "front-proxy-client",
        "certificate for the front proxy client",
        CaId::FrontProxyCa,
        "front-proxy-client",
    ),
    conf(
        "kubelet.conf",
        "client certificate of the kubelet (rotated by the kubelet itself)",
        Presence::Required,
        false,
    ),
    conf(
        "scheduler.conf",
        "certificate embedded in the kubeconfig file for the scheduler manager to use",
        Presence::Required,
        true,
    ),
    conf(
        "super-admin.conf",
        "certificate embedded in the kubeconfig file for the super-admin",
        Presence::InitNodeOnly,
        true,
    ),
];

/// The managed certificate called `name` (kubeadm's name).
pub fn managed_cert(name: &str) -> Option<&'static ManagedCert> {
    MANAGED_CERTS.iter().find(|c| c.name == name)
}

/// Why a file could not be used, in x509-certificate-exporter's reason codes (the `reason` label of
/// `x509_source_errors_total`), so the textfile counts them the way that exporter's rules expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemReason {
    /// The file exists but this process may not read it.
    PermissionDenied,
    /// A file a kubeconfig refers to does not exist.
    NotFound,
    /// Any other I/O error (a directory in the file's place, an I/O error).
    ReadFailed,
    /// A PEM block that is malformed, or that does not hold a valid certificate or key.
    BadPem,
    /// Text without a `CERTIFICATE` PEM block.
    NoCertificateFound,
    /// A kubeconfig that is not YAML or lacks the credentials kubeadm writes.
    BadKubeconfig,
}

impl ProblemReason {
    /// The exporter's reason code (`permission_denied`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemReason::PermissionDenied => "permission_denied",
            ProblemReason::NotFound => "not_found",
            ProblemReason::ReadFailed => "read_failed",
            ProblemReason::BadPem => "bad_pem",
            ProblemReason::NoCertificateFound => "no_certificate_found",
            ProblemReason::BadKubeconfig => "bad_kubeconfig",
        }
    }

    /// The reason of an I/O error on reading a file.
    pub fn of_io(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => ProblemReason::PermissionDenied,
            std::io::ErrorKind::NotFound => ProblemReason::NotFound,
            _ => ProblemReason::ReadFailed,
        }
    }

    /// The reason of a decoding error.
    pub fn of_pem(e: &PemError) -> Self {
        match e {
            PemError::NoBlock { expected } if expected.starts_with("CERTIFICATE") => {
                ProblemReason::NoCertificateFound
            }
            PemError::NoBlock { .. }
            | PemError::Malformed { .. }
            | PemError::Certificate { .. }
            | PemError::PrivateKey { .. }
            | PemError::PublicKey => ProblemReason::BadPem,
        }
    }
}

/// A file that could not be used: why (for metrics) and one line naming the file and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: ProblemReason,
    pub message: String,
}

/// The state of one loaded file.
#[derive(Debug)]
pub enum Material<T> {
    Found(T),
    /// The file does not exist.
    Missing,
    /// The file exists (or a kubeconfig names it) but cannot be read: the check is blind to it, which
    /// is not the same as the file being broken for the component that reads it as root.
    Unreadable(Problem),
    /// The file was read but cannot be used (not PEM, not a kubeconfig): whatever loads it fails.
    Invalid(Problem),
}

impl<T> Material<T> {
    pub fn found(&self) -> Option<&T> {
        match self {
            Material::Found(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, Material::Missing)
    }

    /// The problem when the file cannot be read.
    pub fn unreadable(&self) -> Option<&Problem> {
        match self {
            Material::Unreadable(p) => Some(p),
            Material::Found(_) | Material::Missing | Material::Invalid(_) => None,
        }
    }

    /// The problem when the file was read and cannot be used.
    pub fn invalid(&self) -> Option<&Problem> {
        match self {
            Material::Invalid(p) => Some(p),
            Material::Found(_) | Material::Missing | Material::Unreadable(_) => None,
        }
    }

    /// The problem when the file is unreadable or invalid.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Material::Unreadable(p) | Material::Invalid(p) => Some(p),
            Material::Found(_) | Material::Missing => None,
        }
    }

    /// Whether the file's content was read (found or invalid), i.e. something was evaluated.
    pub fn was_read(&self) -> bool {
        matches!(self, Material::Found(_) | Material::Invalid(_))
    }
}

/// A CA as found on disk.
#[derive(Debug)]
pub struct CaEntry {
    pub id: CaId,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert: Material<CertInfo>,
    pub key: Material<PrivateKey>,
}

impl CaEntry {
    /// kubeadm's "external CA" mode for this CA: the certificate is there, its key is not. Nothing it
    /// signs can be renewed locally.
    pub fn externally_managed(&self) -> bool {
        !self.cert.is_missing() && self.key.is_missing()
    }
}

/// A managed certificate as found on disk.
#[derive(Debug)]
pub struct CertEntry {
    pub spec: &'static ManagedCert,
    /// The file that names the certificate: the `.crt`, or the kubeconfig.
    pub path: PathBuf,
    /// Where the certificate bytes are: the `.crt`, the kubeconfig (embedded) or the file it references.
    pub cert_path: PathBuf,
    /// Where the key is; `None` when embedded in the kubeconfig or not given.
    pub key_path: Option<PathBuf>,
    /// The parsed kubeconfig, for kubeconfig-borne certificates that parsed.
    pub kubeconfig: Option<Kubeconfig>,
    pub cert: Material<CertInfo>,
    pub key: Material<PrivateKey>,
}

impl CertEntry {
    /// Whether the certificate is embedded in a kubeconfig (`client-certificate-data`).
    pub fn embedded(&self) -> bool {
        matches!(
            self.kubeconfig.as_ref().map(|k| &k.client_cert),
            Some(ClientCert::Embedded(_))
        )
    }

    /// Whether it is a file reference (kubelet.conf → kubelet-client-current.pem).
    pub fn referenced(&self) -> bool {
        matches!(
            self.kubeconfig.as_ref().map(|k| &k.client_cert),
            Some(ClientCert::File(_))
        )
    }
}

/// The service-account signing key pair (`sa.key`, `sa.pub`): no certificate, no expiry.
#[derive(Debug)]
pub struct ServiceAccountEntry {
    pub key_path: PathBuf,
    pub pub_path: PathBuf,
    pub key: Material<PrivateKey>,
    pub public: Material<PublicKeyInfo>,
}

/// Everything kubeadm manages on one node, loaded.
#[derive(Debug)]
pub struct Inventory {
    pub layout: PkiLayout,
    /// In [`CaId::ALL`] order.
    pub cas: Vec<CaEntry>,
    /// In [`MANAGED_CERTS`] order.
    pub certs: Vec<CertEntry>,
    pub service_account: ServiceAccountEntry,
}

impl Inventory {
    pub fn ca(&self, id: CaId) -> Option<&CaEntry> {
        self.cas.iter().find(|c| c.id == id)
    }

    pub fn cert(&self, name: &str) -> Option<&CertEntry> {
        self.certs.iter().find(|c| c.spec.name == name)
    }
}

/// Loads every CA, certificate, kubeconfig and the service-account pair under `layout`. Fails only
/// when the cert-dir or the kubeconfig-dir does not exist or is not a directory: then nothing can be
/// evaluated, while any single file that cannot be used is recorded in its entry.
pub fn discover(layout: &PkiLayout) -> Result<Inventory, CertsError> {
    require_dir(&layout.cert_dir, DirRole::CertDir)?;
    require_dir(&layout.kubeconfig_dir, DirRole::KubeconfigDir)?;
    let cas = CaId::ALL
        .iter()
        .map(|&id| {
            let cert_path = layout.cert_path(id.base_name());
            let key_path = layout.key_path(id.base_name());
            CaEntry {
                id,
                cert: load(&cert_path, parse_certificate_pem),
                key: load(&key_path, parse_private_key_pem),
                cert_path,
                key_path,
            }
        })
        .collect();
    let certs = MANAGED_CERTS
        .iter()
        .map(|spec| load_entry(layout, spec))
        .collect();
    let service_account = ServiceAccountEntry {
        key: load(&layout.sa_key_path(), parse_private_key_pem),
        public: load(&layout.sa_pub_path(), parse_public_key_pem),
        key_path: layout.sa_key_path(),
        pub_path: layout.sa_pub_path(),
    };
    Ok(Inventory {
        layout: layout.clone(),
        cas,
        certs,
        service_account,
    })
}

/// Which of the two directories a [`require_dir`] failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirRole {
    /// `--cert-dir`.
    CertDir,
    /// `--kubeconfig-dir`.
    KubeconfigDir,
}

/// Ok when `dir` is a directory; the error names the flag otherwise (nothing can be evaluated).
pub fn require_dir(dir: &Path, role: DirRole) -> Result<(), CertsError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(CertsError::NotADirectory {
            path: dir.to_path_buf(),
            role,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CertsError::DirMissing {
            path: dir.to_path_buf(),
            role,
        }),
        Err(source) => Err(CertsError::Read {
            path: dir.to_path_buf(),
            error: source,
        }),
    }
}

/// Loads one managed certificate (and its key) from `layout`.
pub fn load_entry(layout: &PkiLayout, spec: &'static ManagedCert) -> CertEntry {
    match spec.source {
        CertSource::Pki { base_name } => {
            let cert_path = layout.cert_path(base_name);
            let key_path = layout.key_path(base_name);
            CertEntry {
                spec,
                path: cert_path.clone(),
                cert: load(&cert_path, parse_certificate_pem),
                key: load(&key_path, parse_private_key_pem),
                cert_path,
                key_path: Some(key_path),
                kubeconfig: None,
            }
        }
        CertSource::Kubeconfig { file_name } => {
            let path = layout.kubeconfig_path(file_name);
            let mut entry = CertEntry {
                spec,
                path: path.clone(),
                cert_path: path.clone(),
                key_path: None,
                kubeconfig: None,
                cert: Material::Missing,
                key: Material::Missing,
            };
            let bytes = match read(&path) {
                Ok(Some(b)) => b,
                Ok(None) => return entry,
                Err(problem) => {
                    entry.cert = Material::Unreadable(problem);
                    return entry;
                }
            };
            let kc = match Kubeconfig::parse(&path, &bytes) {
                Ok(kc) => kc,
                Err(e) => {
                    entry.cert = Material::Invalid(Problem {
                        reason: ProblemReason::BadKubeconfig,
                        message: e.to_string(),
                    });
                    return entry;
                }
            };
            entry.cert = match &kc.client_cert {
                ClientCert::Embedded(pem) => match parse_certificate_pem(pem) {
                    Ok(c) => Material::Found(c),
                    Err(e) => Material::Invalid(Problem {
                        reason: ProblemReason::of_pem(&e),
                        message: format!("{}: client-certificate-data: {e}", path.display()),
                    }),
                },
                ClientCert::File(file) => {
                    entry.cert_path = file.clone();
                    match read(file) {
                        Ok(Some(b)) => match parse_certificate_pem(&b) {
                            Ok(c) => Material::Found(c),
                            Err(e) => Material::Invalid(Problem {
                                reason: ProblemReason::of_pem(&e),
                                message: format!("{}: {e}", file.display()),
                            }),
                        },
                        // The caller decides what an absent referenced file means: the kubelet's
                        // own rotating certificate is not there when checking a copy or from a pod.
                        Ok(None) => Material::Missing,
                        Err(problem) => Material::Unreadable(problem),
                    }
                }
            };
            entry.key = match &kc.client_key {
                ClientKey::Embedded(secret) => match parse_private_key_pem(secret.expose()) {
                    Ok(k) => Material::Found(k),
                    Err(e) => Material::Invalid(Problem {
                        reason: ProblemReason::of_pem(&e),
                        message: format!("{}: client-key-data: {e}", path.display()),
                    }),
                },
                ClientKey::File(file) => {
                    entry.key_path = Some(file.clone());
                    load(file, parse_private_key_pem)
                }
                ClientKey::Absent => match &kc.client_cert {
                    // A combined cert+key file given only as client-certificate.
                    ClientCert::File(file) => match read(file) {
                        Ok(Some(b)) if has_private_key_block(&b) => {
                            entry.key_path = Some(file.clone());
                            load(file, parse_private_key_pem)
                        }
                        _ => Material::Missing,
                    },
                    ClientCert::Embedded(_) => Material::Missing,
                },
            };
            entry.kubeconfig = Some(kc);
            entry
        }
    }
}

/// Reads a file: `Ok(None)` when it does not exist, the problem when it cannot be read.
fn read(path: &Path) -> Result<Option<Vec<u8>>, Problem> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Problem {
            reason: ProblemReason::of_io(&error),
            message: CertsError::Read {
                path: path.to_path_buf(),
                error,
            }
            .to_string(),
        }),
    }
}

fn load<T>(path: &Path, parse: impl FnOnce(&[u8]) -> Result<T, PemError>) -> Material<T> {
    match read(path) {
        Ok(None) => Material::Missing,
        Err(problem) => Material::Unreadable(problem),
        Ok(Some(bytes)) => match parse(&bytes) {
            Ok(t) => Material::Found(t),
            Err(source) => Material::Invalid(Problem {
                reason: ProblemReason::of_pem(&source),
                message: CertsError::Pem {
                    path: path.to_path_buf(),
                    error: source,
                }
                .to_string(),
            }),
        },
    }
}
