//! A kubeadm-layout etcd PKI for sandboxes and tests: `pki/etcd/ca.{crt,key}`,
//! `pki/etcd/healthcheck-client.{crt,key}`, `pki/apiserver-etcd-client.{crt,key}`, and per member
//! `pki/etcd/<name>/server.{crt,key}` and `peer.{crt,key}` with the member's name and address in the SANs,
//! as kubeadm issues them (1 year leaves backdated 5 minutes, 10 year CA).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

use super::SandboxError;
use crate::fsx::{create_dir_all_mode, write_atomic, MODE_PUBLIC, MODE_SECRET};

/// Key algorithm of generated keys. kubeadm defaults to RSA 2048; ECDSA is much faster to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    Rsa2048,
}

impl KeyAlgorithm {
    fn sig_alg(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// A certificate and key on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The etcd PKI of a sandbox.
#[derive(Debug, Clone)]
pub struct EtcdPki {
    /// The `pki` directory (kubeadm's /etc/kubernetes/pki).
    pub dir: PathBuf,
    pub ca: CertPair,
    pub healthcheck_client: CertPair,
    pub apiserver_etcd_client: CertPair,
    algorithm: KeyAlgorithm,
}

/// Where one member's serving and peer certificates are.
#[derive(Debug, Clone)]
pub struct MemberCerts {
    pub server: CertPair,
    pub peer: CertPair,
}

impl EtcdPki {
    /// Creates a fresh CA and the client certificates under `dir` (kubeadm's `pki` directory).
    pub fn generate(dir: &Path, algorithm: KeyAlgorithm) -> Result<Self, SandboxError> {
        Self::generate_named(dir, algorithm, "etcd-ca")
    }

    /// Like [`generate`](Self::generate) with a chosen CA common name (tests make a second, foreign CA).
    pub fn generate_named(
        dir: &Path,
        algorithm: KeyAlgorithm,
        ca_name: &str,
    ) -> Result<Self, SandboxError> {
        let etcd_dir = dir.join("etcd");
        create_dir_all_mode(&etcd_dir, 0o755).map_err(|e| io_err(&etcd_dir, e))?;
        let ca_key = KeyPair::generate_for(algorithm.sig_alg()).map_err(cert_err)?;
        let mut params = base_params(ca_name, None, 365 * 10);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let ca_cert = params.self_signed(&ca_key).map_err(cert_err)?;
        let ca = CertPair {
            cert: etcd_dir.join("ca.crt"),
            key: etcd_dir.join("ca.key"),
        };
        write_pair(&ca, &ca_cert.pem(), &ca_key.serialize_pem())?;
        let mut pki = Self {
            dir: dir.to_path_buf(),
            healthcheck_client: CertPair {
                cert: etcd_dir.join("healthcheck-client.crt"),
                key: etcd_dir.join("healthcheck-client.key"),
            },
            apiserver_etcd_client: CertPair {
                cert: dir.join("apiserver-etcd-client.crt"),
                key: dir.join("apiserver-etcd-client.key"),
            },
            ca,
            algorithm,
        };
        let hc = pki.healthcheck_client.clone();
        pki.issue_client("kube-etcd-healthcheck-client", None, &hc)?;
        let api = pki.apiserver_etcd_client.clone();
        pki.issue_client("kube-apiserver-etcd-client", None, &api)?;
        Ok(pki)
    }

    /// Issues a client certificate (clientAuth) signed by this CA into `at`.
    pub fn issue_client(
        &mut self,
        common_name: &str,
        organization: Option<&str>,
        at: &CertPair,
    ) -> Result<(), SandboxError> {
        let mut params = base_params(common_name, organization, 365);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, at)
    }

    /// Issues the serving and peer certificates of one member, as `kubeadm init phase certs etcd-*` does:
    /// SANs are the node name, localhost, the node's address and ::1.
    pub fn issue_member(&mut self, name: &str, ip: IpAddr) -> Result<MemberCerts, SandboxError> {
        self.issue_member_for(name, ip, 365, true)
    }

    /// Re-issues only a member's serving certificate, valid for `days` days (a renewal, or one
    /// about to expire); the peer certificate is left as it is.
    pub fn reissue_server(
        &mut self,
        name: &str,
        ip: IpAddr,
        days: i64,
    ) -> Result<(), SandboxError> {
        self.issue_member_for(name, ip, days, false).map(|_| ())
    }

    fn issue_member_for(
        &mut self,
        name: &str,
        ip: IpAddr,
        days: i64,
        with_peer: bool,
    ) -> Result<MemberCerts, SandboxError> {
        let dir = self.dir.join("etcd").join(name);
        create_dir_all_mode(&dir, 0o755).map_err(|e| io_err(&dir, e))?;
        let sans = vec![
            SanType::DnsName(name.try_into().map_err(cert_err)?),
            SanType::DnsName("localhost".try_into().map_err(cert_err)?),
            SanType::IpAddress(ip),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
            SanType::IpAddress(
                "::1"
                    .parse()
                    .map_err(|_| SandboxError::Pki("bad ::1".into()))?,
            ),
        ];
        let certs = MemberCerts {
            server: CertPair {
                cert: dir.join("server.crt"),
                key: dir.join("server.key"),
            },
            peer: CertPair {
                cert: dir.join("peer.crt"),
                key: dir.join("peer.key"),
            },
        };
        let pairs = if with_peer {
            vec![&certs.server, &certs.peer]
        } else {
            vec![&certs.server]
        };
        for pair in pairs {
            let mut params = base_params(name, None, days);
            params.subject_alt_names = sans.clone();
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            self.sign(params, pair)?;
        }
        Ok(certs)
    }

    fn sign(&mut self, params: CertificateParams, at: &CertPair) -> Result<(), SandboxError> {
        let ca_pem =
            std::fs::read_to_string(&self.ca.cert).map_err(|e| io_err(&self.ca.cert, e))?;
        let ca_key_pem =
            std::fs::read_to_string(&self.ca.key).map_err(|e| io_err(&self.ca.key, e))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(cert_err)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(cert_err)?;
        let key = KeyPair::generate_for(self.algorithm.sig_alg()).map_err(cert_err)?;
        let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;
        write_pair(at, &cert.pem(), &key.serialize_pem())
    }
}

fn base_params(common_name: &str, organization: Option<&str>, days: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    // kubeadm backdates NotBefore by five minutes to tolerate clock skew between nodes.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days);
    params.use_authority_key_identifier_extension = true;
    params
}

fn write_pair(at: &CertPair, cert_pem: &str, key_pem: &str) -> Result<(), SandboxError> {
    write_atomic(&at.key, key_pem.as_bytes(), MODE_SECRET).map_err(|e| io_err(&at.key, e))?;
    write_atomic(&at.cert, cert_pem.as_bytes(), MODE_PUBLIC).map_err(|e| io_err(&at.cert, e))
}

fn io_err(path: &Path, source: std::io::Error) -> SandboxError {
    SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(e: rcgen::Error) -> SandboxError {
    SandboxError::Pki(e.to_string())
}
