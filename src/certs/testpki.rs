//! A complete kubeadm-layout PKI generated from scratch, for tests, sandboxes and demos: the three CAs,
//! every leaf kubeadm issues (with kubeadm's subjects, organizations and SANs), the kubeconfigs with
//! embedded client certificates (`kubelet.conf` optionally as a file reference to a combined
//! `kubelet-client-current.pem`, as kubelets since 1.17 write it), and the service-account key pair.
//! Keys are RSA 2048 or ECDSA P-256, stored as PKCS#8 or in kubeadm's traditional form (PKCS#1 for
//! RSA, SEC1 for ECDSA). Leaves can be re-issued with any validity, or by a foreign CA, to make
//! near-expiry, expired and broken sets.
//!
//! This module only ever writes inside the directories it is given; it never prints. It is not used
//! on real nodes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

use super::error::CertsError;
use super::inventory::{managed_cert, CaId, CertSource, PkiLayout, MANAGED_CERTS};
use super::issue::{pkcs8_to_pkcs1, pkcs8_to_sec1};
use crate::fsx::{create_dir_all_mode, write_atomic, MODE_PUBLIC, MODE_SECRET};

/// The key algorithm of generated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKeyAlgorithm {
    Rsa2048,
    EcdsaP256,
}

/// How generated private keys are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKeyEncoding {
    /// `RSA PRIVATE KEY` / `EC PRIVATE KEY`, as kubeadm writes them.
    Traditional,
    /// `PRIVATE KEY`.
    Pkcs8,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPkiOptions {
    pub algorithm: TestKeyAlgorithm,
    pub encoding: TestKeyEncoding,
    /// Write `super-admin.conf` (only the node where `kubeadm init` ran has it).
    pub super_admin: bool,
    /// `Some(dir)`: `kubelet.conf` refers to `<dir>/kubelet-client-current.pem` (certificate and key in
    /// one file) instead of embedding them.
    pub kubelet_pki_dir: Option<PathBuf>,
    /// The node name in SANs and the kubelet's identity.
    pub node_name: String,
    pub node_ip: IpAddr,
}

impl Default for TestPkiOptions {
    fn default() -> Self {
        Self {
            algorithm: TestKeyAlgorithm::EcdsaP256,
            encoding: TestKeyEncoding::Traditional,
            super_admin: true,
            kubelet_pki_dir: None,
            node_name: "master1".to_string(),
            node_ip: IpAddr::from([10, 0, 0, 10]),
        }
    }
}

/// A generated PKI on disk.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub layout: PkiLayout,
    pub options: TestPkiOptions,
}

impl TestPki {
    /// Generates everything under `layout` (directories are created): CAs valid 10 years, leaves 1 year,
    /// both backdated 5 minutes as kubeadm does.
    pub fn generate(layout: &PkiLayout, options: TestPkiOptions) -> Result<Self, CertsError> {
        let pki = Self {
            layout: layout.clone(),
            options,
        };
        for dir in [
            pki.layout.cert_dir.clone(),
            pki.layout.cert_dir.join("etcd"),
            pki.layout.kubeconfig_dir.clone(),
        ] {
            create_dir_all_mode(&dir, 0o755).map_err(|source| CertsError::Write {
                path: dir.clone(),
                error: source,
            })?;
        }
        for ca in CaId::ALL {
            pki.write_ca(ca, "")?;
        }
        let now = OffsetDateTime::now_utc();
        for spec in MANAGED_CERTS {
            if spec.name == "super-admin.conf" && !pki.options.super_admin {
                continue;
            }
            pki.reissue(
                spec.name,
                now - Duration::minutes(5),
                now + Duration::days(365),
            )?;
        }
        let sa = pki.new_key()?;
        pki.write(&pki.layout.sa_key_path(), &pki.key_pem(&sa)?, MODE_SECRET)?;
        let sa_pub = pem_block(
            "PUBLIC KEY",
            &rcgen::PublicKeyData::subject_public_key_info(&sa),
        );
        pki.write(&pki.layout.sa_pub_path(), &sa_pub, MODE_PUBLIC)?;
        Ok(pki)
    }

    /// (Re)writes one CA with a fresh key; `cn_suffix` lets tests make a different CA with a similar name.
    pub fn write_ca(&self, ca: CaId, cn_suffix: &str) -> Result<(), CertsError> {
        let key = self.new_key()?;
        let now = OffsetDateTime::now_utc();
        let cn = match ca {
            CaId::Ca => "kubernetes",
            CaId::EtcdCa => "etcd-ca",
            CaId::FrontProxyCa => "front-proxy-ca",
        };
        let mut params = params(&format!("{cn}{cn_suffix}"), None);
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(3650);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let cert = params.self_signed(&key).map_err(gen_err)?;
        self.write(
            &self.layout.key_path(ca.base_name()),
            &self.key_pem(&key)?,
            MODE_SECRET,
        )?;
        self.write(
            &self.layout.cert_path(ca.base_name()),
            &cert.pem(),
            MODE_PUBLIC,
        )
    }

    /// Re-issues the managed certificate `name` (kubeadm's name) with a fresh key and the given
    /// validity, signed by its CA on disk.
    pub fn reissue(
        &self,
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(), CertsError> {
        let spec = managed_cert(name).ok_or_else(|| CertsError::UnknownCertificate {
            name: name.to_string(),
        })?;
        let ca_key_path = self.layout.key_path(spec.ca.base_name());
        let ca_key_pem = read_string(&ca_key_path)?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(gen_err)?;
        let ca_pem = read_string(&self.layout.cert_path(spec.ca.base_name()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(gen_err)?;
        self.issue_with(name, &issuer, not_before, not_after)
    }

    /// Re-issues `name` (1 year) signed by a freshly made CA whose subject equals the real CA's: the
    /// names match, the signature does not.
    pub fn reissue_by_foreign_ca(&self, name: &str) -> Result<(), CertsError> {
        let spec = managed_cert(name).ok_or_else(|| CertsError::UnknownCertificate {
            name: name.to_string(),
        })?;
        let ca_pem = read_string(&self.layout.cert_path(spec.ca.base_name()))?;
        let foreign = self.new_key()?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, foreign).map_err(gen_err)?;
        let now = OffsetDateTime::now_utc();
        self.issue_with(
            name,
            &issuer,
            now - Duration::minutes(5),
            now + Duration::days(365),
        )
    }

    /// Where `kubelet.conf`'s referenced certificate is, when it is a reference.
    pub fn kubelet_client_pem(&self) -> Option<PathBuf> {
        self.options
            .kubelet_pki_dir
            .as_ref()
            .map(|d| d.join("kubelet-client-current.pem"))
    }

    /// A new key of the configured algorithm, PEM-encoded in the configured form.
    pub fn new_key_pem(&self) -> Result<String, CertsError> {
        self.key_pem(&self.new_key()?)
    }

    fn issue_with(
        &self,
        name: &str,
        issuer: &Issuer<'_, KeyPair>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(), CertsError> {
        let spec = managed_cert(name).ok_or_else(|| CertsError::UnknownCertificate {
            name: name.to_string(),
        })?;
        let node = self.options.node_name.clone();
        let (cn, org, server, client, sans): (String, Option<&str>, bool, bool, Vec<SanType>) =
            match name {
                "apiserver" => {
                    let mut sans = Vec::new();
                    for d in [
                        node.as_str(),
                        "kubernetes",
                        "kubernetes.default",
                        "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local",
                    ] {
                        sans.push(SanType::DnsName(d.try_into().map_err(gen_err)?));
                    }
                    sans.push(SanType::IpAddress(IpAddr::from([10, 96, 0, 1])));
                    sans.push(SanType::IpAddress(self.options.node_ip));
                    ("kube-apiserver".into(), None, true, false, sans)
                }
                "etcd-server" | "etcd-peer" => {
                    let sans = vec![
                        SanType::DnsName(node.as_str().try_into().map_err(gen_err)?),
                        SanType::DnsName("localhost".try_into().map_err(gen_err)?),
                        SanType::IpAddress(self.options.node_ip),
                        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
                        SanType::IpAddress(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
                    ];
                    (node.clone(), None, true, true, sans)
                }
                "apiserver-kubelet-client" => (
                    "kube-apiserver-kubelet-client".into(),
                    Some("kubeadm:cluster-admins"),
                    false,
                    true,
                    vec![],
                ),
                "apiserver-etcd-client" => (
                    "kube-apiserver-etcd-client".into(),
                    None,
                    false,
                    true,
                    vec![],
                ),
                "etcd-healthcheck-client" => (
                    "kube-etcd-healthcheck-client".into(),
                    None,
                    false,
                    true,
                    vec![],
                ),
                "front-proxy-client" => ("front-proxy-client".into(), None, false, true, vec![]),
                "admin.conf" => (
                    "kubernetes-admin".into(),
                    Some("kubeadm:cluster-admins"),
                    false,
                    true,
                    vec![],
                ),
                "super-admin.conf" => (
                    "kubernetes-super-admin".into(),
                    Some("system:masters"),
                    false,
                    true,
                    vec![],
                ),
                "controller-manager.conf" => (
                    "system:kube-controller-manager".into(),
                    None,
                    false,
                    true,
                    vec![],
                ),
                "scheduler.conf" => ("system:kube-scheduler".into(), None, false, true, vec![]),
                _ => (
                    format!("system:node:{node}"),
                    Some("system:nodes"),
                    false,
                    true,
                    vec![],
                ),
            };
        let mut p = params(&cn, org);
        p.not_before = not_before;
        p.not_after = not_after;
        p.subject_alt_names = sans;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if server {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let key = self.new_key()?;
        let cert = p.signed_by(&key, issuer).map_err(gen_err)?;
        let key_pem = self.key_pem(&key)?;
        match spec.source {
            CertSource::Pki { base_name } => {
                self.write(&self.layout.key_path(base_name), &key_pem, MODE_SECRET)?;
                self.write(&self.layout.cert_path(base_name), &cert.pem(), MODE_PUBLIC)
            }
            CertSource::Kubeconfig { file_name } => {
                let ca_pem = read_string(&self.layout.cert_path(CaId::Ca.base_name()))?;
                let user = cn.clone();
                let reference = if file_name == "kubelet.conf" {
                    self.kubelet_client_pem()
                } else {
                    None
                };
                let user_block = match &reference {
                    Some(pem_path) => {
                        if let Some(dir) = pem_path.parent() {
                            create_dir_all_mode(dir, 0o755).map_err(|source| {
                                CertsError::Write {
                                    path: dir.to_path_buf(),
                                    error: source,
                                }
                            })?;
                        }
                        let combined = format!("{}{}", cert.pem(), key_pem);
                        self.write(pem_path, &combined, MODE_SECRET)?;
                        format!(
                            "    client-certificate: {p}\n    client-key: {p}\n",
                            p = pem_path.display()
                        )
                    }
                    None => format!(
                        "    client-certificate-data: {}\n    client-key-data: {}\n",
                        b64(cert.pem().as_bytes()),
                        b64(key_pem.as_bytes())
                    ),
                };
                let text = kubeconfig_text(&b64(ca_pem.as_bytes()), &user, &user_block);
                self.write(&self.layout.kubeconfig_path(file_name), &text, MODE_SECRET)
            }
        }
    }

    fn new_key(&self) -> Result<KeyPair, CertsError> {
        let alg: &'static SignatureAlgorithm = match self.options.algorithm {
            TestKeyAlgorithm::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            TestKeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        KeyPair::generate_for(alg).map_err(gen_err)
    }

    fn key_pem(&self, key: &KeyPair) -> Result<String, CertsError> {
        match self.options.encoding {
            TestKeyEncoding::Pkcs8 => Ok(key.serialize_pem()),
            TestKeyEncoding::Traditional => traditional_pem(key),
        }
    }

    fn write(&self, path: &Path, text: &str, mode: u32) -> Result<(), CertsError> {
        write_atomic(path, text.as_bytes(), mode).map_err(|source| CertsError::Write {
            path: path.to_path_buf(),
            error: source,
        })
    }
}

fn params(cn: &str, org: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.use_authority_key_identifier_extension = true;
    p
}

fn kubeconfig_text(ca_b64: &str, user: &str, user_block: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_b64}\n    server: https://10.0.0.10:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n{user_block}"
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 with the curve named (`EC PRIVATE KEY`), as Go's x509 package
/// writes them, from rcgen's PKCS#8 (the same conversion a renewal writes new keys with).
fn traditional_pem(key: &KeyPair) -> Result<String, CertsError> {
    let bad = |e: super::issue::IssueError| CertsError::Generate {
        what: "a traditional PEM key".to_string(),
        reason: e.to_string(),
    };
    let pkcs8 = key.serialize_der();
    if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        return Ok(pem_block(
            "RSA PRIVATE KEY",
            &pkcs8_to_pkcs1(&pkcs8).map_err(bad)?,
        ));
    }
    let sec1 = pkcs8_to_sec1(&pkcs8, key.public_key_raw()).map_err(bad)?;
    Ok(pem_block("EC PRIVATE KEY", &sec1))
}

fn read_string(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|source| CertsError::Read {
        path: path.to_path_buf(),
        error: source,
    })
}

fn gen_err(e: rcgen::Error) -> CertsError {
    CertsError::Generate {
        what: "a test PKI".to_string(),
        reason: e.to_string(),
    }
}

/// A writable copy of the real kubeadm v1.16 `/etc/kubernetes` (fixtures/kubeadm-v1.16: RSA 2048,
/// PKCS#1; every leaf expires 2020-12-25 04:06 UTC, the CAs 2029-12-23) at `<tmp>/etc/kubernetes`,
/// keys 0600 and the rest 0644 as kubeadm leaves them.
#[cfg(test)]
pub(crate) fn kubeadm_v1_16_copy() -> (tempfile::TempDir, PkiLayout) {
    use std::os::unix::fs::PermissionsExt;
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
    let root = dir.path().join("etc/kubernetes");
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeadm-v1.16"),
        &root,
    );
    let layout = PkiLayout::new(root.join("pki"), &root);
    (dir, layout)
}
