//! Certificates as kubeadm makes them, signed by the CAs found in /etc/kubernetes/pki.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use sha2::Digest;

use crate::{fail, Res};

pub const PKI: &str = "/etc/kubernetes/pki";

/// A CA read from `<PKI>/<base>.crt` and `.key`.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn read(path: &str) -> Res<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) => fail!("failure loading {path}: {e}"),
    }
}

pub fn write(path: &str, contents: &[u8], mode: u32) -> Res<()> {
    let p = Path::new(path);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let tmp = format!("{path}.double-tmp");
    std::fs::write(&tmp, contents).map_err(|e| format!("cannot write {tmp}: {e}"))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {tmp}: {e}"))?;
    Ok(())
}

impl Ca {
    pub fn load(base: &str) -> Res<Ca> {
        let cert_pem = read(&format!("{PKI}/{base}.crt"))?;
        let key_pem = read(&format!("{PKI}/{base}.key"))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{PKI}/{base}.key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| format!("{PKI}/{base}.crt: {e}"))?;
        Ok(Ca { cert_pem, issuer })
    }

    /// Issues a leaf: returns (certificate PEM, key PEM).
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[San],
        server: bool,
        client: bool,
    ) -> Res<(String, String)> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::days(365);
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
        for s in sans {
            p.subject_alt_names.push(match s {
                San::Ip(ip) => SanType::IpAddress(*ip),
                San::Dns(d) => SanType::DnsName(
                    d.clone()
                        .try_into()
                        .map_err(|e| format!("bad DNS name {d:?}: {e}"))?,
                ),
            });
        }
        let key = KeyPair::generate().map_err(|e| format!("key generation: {e}"))?;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("signing {cn}: {e}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues and writes `<PKI>/<base>.crt` and `.key`.
    pub fn write_leaf(
        &self,
        base: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[San],
        server: bool,
        client: bool,
    ) -> Res<()> {
        let (c, k) = self.issue(cn, orgs, sans, server, client)?;
        write(&format!("{PKI}/{base}.crt"), c.as_bytes(), 0o644)?;
        write(&format!("{PKI}/{base}.key"), k.as_bytes(), 0o600)
    }
}

#[derive(Debug, Clone)]
pub enum San {
    Ip(IpAddr),
    Dns(String),
}

impl San {
    /// An IP address or a DNS name.
    pub fn of(s: &str) -> San {
        match s.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.to_string()),
        }
    }
}

/// `sha256:<hex>` of the certificate's DER SubjectPublicKeyInfo (kubeadm's CA pin).
pub fn ca_cert_hash(cert_pem: &str) -> Res<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("CA certificate is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("CA certificate does not parse: {e}"))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(spki))
    ))
}

/// The files kubeadm shares between control-plane nodes (copied, or uploaded with --upload-certs).
pub const SHARED: &[&str] = &[
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
];

/// A kubeconfig with an embedded client certificate.
pub fn kubeconfig(ca_pem: &str, server: &str, user: &str, cert: &str, key: &str) -> String {
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: kubernetes\n\
         contexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\n\
         preferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(ca_pem),
        b(cert),
        b(key)
    )
}
