//! The cluster-wide CAs a bundle carries in kubeadm's layout (`ca`, `front-proxy-ca`, `etcd/ca`, and
//! the service-account pair `sa.key`/`sa.pub`): generated fresh, adopted from an existing kubeadm
//! `/etc/kubernetes/pki` (`--pki-from`), or read back from an earlier bundle. kubeadm uses CA files
//! it finds in place instead of generating them, which is how the discovery hash is known before
//! `kubeadm init` ever runs.
//!
//! CAs are generated as kubeadm does: CA:TRUE, keyUsage digitalSignature, keyEncipherment and
//! keyCertSign (critical), NotBefore backdated 5 minutes, a random serial, keys in kubeadm's PEM
//! forms (PKCS#1 for RSA, SEC1 for ECDSA). Adopted or re-read material is checked: a CA that is not
//! a CA, cannot sign certificates, lacks its key or whose key does not match is refused.
//! Returns file contents; never writes files, never prints.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose,
    SerialNumber,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::BootstrapError;
use crate::certs::issue::{generate_key, pem_encode, KeySpec};
use crate::certs::pem::{
    parse_certificate_pem, parse_private_key_pem, parse_public_key_pem, CertInfo, KeyFormat,
};
use crate::certs::verify::{is_self_signed, key_matches, key_matches_public};
use crate::fsx::{MODE_PUBLIC, MODE_SECRET};

/// The three CAs of a kubeadm cluster: file stem (under `pki/`) and the common name kubeadm gives it.
pub const CAS: [(&str, &str); 3] = [
    ("ca", "kubernetes"),
    ("front-proxy-ca", "front-proxy-ca"),
    ("etcd/ca", "etcd-ca"),
];

/// One file of `pki/`: its path relative to `pki/`, bytes and mode.
#[derive(Clone)]
pub struct PkiFile {
    pub rel: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl std::fmt::Debug for PkiFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiFile")
            .field("rel", &self.rel)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish_non_exhaustive()
    }
}

/// What the plan says about one CA.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaSummary {
    pub file: String,
    pub subject: String,
    pub key_algorithm: String,
    pub not_after: chrono::DateTime<chrono::Utc>,
}

/// The CA set of a bundle.
#[derive(Debug, Clone)]
pub struct Pki {
    pub files: Vec<PkiFile>,
    pub cas: Vec<CaSummary>,
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo: kubeadm's discovery hash.
    pub ca_cert_hash: String,
}

impl Pki {
    pub fn file(&self, rel: &str) -> Option<&PkiFile> {
        self.files.iter().find(|f| f.rel == rel)
    }
}

/// kubeadm's discovery hash of a CA certificate: `sha256:` + hex(sha256(SubjectPublicKeyInfo DER)).
pub fn discovery_hash(ca: &CertInfo) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(&ca.spki_der)))
}

fn generate_err(what: &str, e: impl std::fmt::Display) -> BootstrapError {
    BootstrapError::Generate {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn key_format(spec: KeySpec) -> KeyFormat {
    match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => KeyFormat::Pkcs1,
        KeySpec::EcdsaP256 | KeySpec::EcdsaP384 => KeyFormat::Sec1,
    }
}

/// Generates the three CAs and the service-account key pair.
pub fn generate(spec: KeySpec, ca_validity: std::time::Duration) -> Result<Pki, BootstrapError> {
    let mut files = Vec::new();
    for (stem, cn) in CAS {
        let (crt, key) = generate_ca(spec, cn, ca_validity)?;
        files.push(PkiFile {
            rel: format!("{stem}.crt"),
            bytes: crt,
            mode: MODE_PUBLIC,
        });
        files.push(PkiFile {
            rel: format!("{stem}.key"),
            bytes: key,
            mode: MODE_SECRET,
        });
    }
    files.extend(generate_sa(spec)?);
    summarise(files)
}

fn generate_ca(
    spec: KeySpec,
    cn: &str,
    validity: std::time::Duration,
) -> Result<(Vec<u8>, Vec<u8>), BootstrapError> {
    let what = format!("the {cn} CA");
    let key = generate_key(spec, key_format(spec)).map_err(|e| generate_err(&what, e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    let validity = time::Duration::try_from(validity).map_err(|e| generate_err(&what, e))?;
    params.not_after = now + validity;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| generate_err(&what, e))?;
    serial[0] &= 0x7f; // a positive INTEGER
    serial[0] |= 0x01; // and a full 16 bytes
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let pair = key.key.key_pair();
    let cert = params
        .self_signed(pair)
        .map_err(|e| generate_err(&what, e))?;
    Ok((cert.pem().into_bytes(), key.pem.expose().to_vec()))
}

fn generate_sa(spec: KeySpec) -> Result<Vec<PkiFile>, BootstrapError> {
    let what = "the service-account key pair";
    let key = generate_key(spec, key_format(spec)).map_err(|e| generate_err(what, e))?;
    let public = pem_encode("PUBLIC KEY", &key.key.public_key_spki_der());
    Ok(vec![
        PkiFile {
            rel: "sa.key".into(),
            bytes: key.pem.expose().to_vec(),
            mode: MODE_SECRET,
        },
        PkiFile {
            rel: "sa.pub".into(),
            bytes: public.into_bytes(),
            mode: MODE_PUBLIC,
        },
    ])
}

/// Reads and checks the CA set under `dir` (a kubeadm `pki` directory or a bundle's `pki/`). A
/// missing service-account pair is generated with `spec`; half a pair is refused.
pub fn load(dir: &Path, spec: KeySpec) -> Result<Pki, BootstrapError> {
    let bad = |path: PathBuf, reason: String| BootstrapError::Pki { path, reason };
    if !dir.is_dir() {
        return Err(bad(dir.to_path_buf(), "is not a directory".into()));
    }
    let read = |rel: &str| -> Result<Option<Vec<u8>>, BootstrapError> {
        let path = dir.join(rel);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(bad(
                path,
                format!("cannot read it: {}", crate::certs::error::io_reason(&e)),
            )),
        }
    };
    let mut files = Vec::new();
    for (stem, _) in CAS {
        let crt_rel = format!("{stem}.crt");
        let key_rel = format!("{stem}.key");
        let crt_path = dir.join(&crt_rel);
        let key_path = dir.join(&key_rel);
        let Some(crt) = read(&crt_rel)? else {
            return Err(bad(
                crt_path,
                "is missing: a kubeadm cluster needs all three CAs (ca, front-proxy-ca, etcd/ca)"
                    .into(),
            ));
        };
        let Some(key) = read(&key_rel)? else {
            return Err(bad(
                key_path,
                "is missing: without the CA key kubeadm cannot issue the nodes' certificates"
                    .into(),
            ));
        };
        let cert = parse_certificate_pem(&crt).map_err(|e| bad(crt_path.clone(), e.to_string()))?;
        check_ca(&cert).map_err(|why| bad(crt_path.clone(), why))?;
        let private =
            parse_private_key_pem(&key).map_err(|e| bad(key_path.clone(), e.to_string()))?;
        if !key_matches(&cert, &private) {
            return Err(bad(key_path, format!("is not the key of {crt_rel}")));
        }
        files.push(PkiFile {
            rel: crt_rel,
            bytes: crt,
            mode: MODE_PUBLIC,
        });
        files.push(PkiFile {
            rel: key_rel,
            bytes: key,
            mode: MODE_SECRET,
        });
    }
    match (read("sa.key")?, read("sa.pub")?) {
        (None, None) => files.extend(generate_sa(spec)?),
        (Some(key), Some(public)) => {
            let private =
                parse_private_key_pem(&key).map_err(|e| bad(dir.join("sa.key"), e.to_string()))?;
            let public_info = parse_public_key_pem(&public)
                .map_err(|e| bad(dir.join("sa.pub"), e.to_string()))?;
            if !key_matches_public(&public_info, &private) {
                return Err(bad(dir.join("sa.key"), "is not the key of sa.pub".into()));
            }
            files.push(PkiFile {
                rel: "sa.key".into(),
                bytes: key,
                mode: MODE_SECRET,
            });
            files.push(PkiFile {
                rel: "sa.pub".into(),
                bytes: public,
                mode: MODE_PUBLIC,
            });
        }
        (Some(_), None) => {
            return Err(bad(
                dir.join("sa.pub"),
                "is missing while sa.key exists".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                dir.join("sa.key"),
                "is missing while sa.pub exists".into(),
            ))
        }
    }
    summarise(files)
}

/// Refuses a certificate that cannot act as a kubeadm CA.
fn check_ca(cert: &CertInfo) -> Result<(), String> {
    if !cert.is_ca {
        return Err(format!(
            "{} is not a CA (basicConstraints CA:TRUE is missing)",
            cert.subject
        ));
    }
    let (_, x509) = X509Certificate::from_der(&cert.der).map_err(|e| e.to_string())?;
    if let Ok(Some(ku)) = x509.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(format!(
                "{} may not sign certificates (keyUsage lacks keyCertSign)",
                cert.subject
            ));
        }
    }
    if !is_self_signed(cert) {
        return Err(format!("{} is not a self-signed root: kubeadm's CA files must be roots (an intermediate CA needs its chain, which kubeadm does not take here)", cert.subject));
    }
    if cert.is_expired_at(chrono::Utc::now()) {
        return Err(format!(
            "{} expired on {}",
            cert.subject,
            cert.not_after.format("%Y-%m-%d")
        ));
    }
    Ok(())
}

fn summarise(files: Vec<PkiFile>) -> Result<Pki, BootstrapError> {
    let mut cas = Vec::new();
    let mut ca_cert_hash = String::new();
    for (stem, _) in CAS {
        let rel = format!("{stem}.crt");
        let bytes = &files
            .iter()
            .find(|f| f.rel == rel)
            .ok_or_else(|| generate_err(&rel, "missing from the set"))?
            .bytes;
        let cert = parse_certificate_pem(bytes).map_err(|e| generate_err(&rel, e))?;
        if stem == "ca" {
            ca_cert_hash = discovery_hash(&cert);
        }
        cas.push(CaSummary {
            file: format!("pki/{rel}"),
            subject: cert.subject.clone(),
            key_algorithm: cert.key_algorithm.clone(),
            not_after: cert.not_after,
        });
    }
    Ok(Pki {
        files,
        cas,
        ca_cert_hash,
    })
}
