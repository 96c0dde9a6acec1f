//! Client TLS material for etcd: the CA that signs the members' serving certificates, and the client
//! certificate and key etcd's `--client-cert-auth` demands (kubeadm: pki/etcd/ca.crt and
//! healthcheck-client.crt/.key).
//!
//! Files are read and checked once, up front, so a wrong path or a non-PEM file is reported by name
//! before any connection is tried. Key bytes are never logged or put into an error.

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::EtcdError;

/// Paths to the TLS files, as given on the command line or found in kubeadm's layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// kubeadm's files on a control-plane node, used when the user names none.
    pub fn kubeadm_defaults(pki_dir: &Path) -> Self {
        let etcd = pki_dir.join("etcd");
        let existing = |p: PathBuf| p.is_file().then_some(p);
        let cert = existing(etcd.join("healthcheck-client.crt"));
        let key = existing(etcd.join("healthcheck-client.key"));
        // A certificate without its key (or the reverse) is useless; take both or neither.
        let (cert, key) = match (cert, key) {
            (Some(c), Some(k)) => (Some(c), Some(k)),
            _ => (None, None),
        };
        Self {
            ca: existing(etcd.join("ca.crt")),
            cert,
            key,
        }
    }

    /// Whether any TLS file is configured.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// TLS files read and checked, ready to configure a client.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

impl TlsMaterial {
    /// Reads and checks the files. A client certificate needs its key and the reverse.
    pub fn load(files: &TlsFiles) -> Result<Self, EtcdError> {
        let ca_pem = match &files.ca {
            Some(p) => Some(read_certs(p, "CA certificate (--cacert)")?),
            None => None,
        };
        let identity = match (&files.cert, &files.key) {
            (Some(c), Some(k)) => {
                let cert = read_certs(c, "client certificate (--cert)")?;
                let key = read_key(k, "client key (--key)")?;
                check_pair(c, &cert, k, &key)?;
                Some((cert, key))
            }
            (Some(c), None) => {
                return Err(EtcdError::Config(format!(
                    "client certificate {} given without its key: add --key",
                    c.display()
                )))
            }
            (None, Some(k)) => {
                return Err(EtcdError::Config(format!(
                    "client key {} given without its certificate: add --cert",
                    k.display()
                )))
            }
            (None, None) => None,
        };
        Ok(Self { ca_pem, identity })
    }

    /// Material already in memory (a client certificate cpkeep minted itself).
    pub fn from_pem(ca_pem: Vec<u8>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            ca_pem: Some(ca_pem),
            identity,
        }
    }

    /// The tonic TLS configuration for one endpoint.
    pub(crate) fn options(&self) -> TlsOptions {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }

    /// The client certificate chain and key, for TLS connections cpkeep makes itself (the served
    /// certificates check presents it, so members do not log a refused handshake).
    pub(crate) fn client_identity(
        &self,
    ) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let (cert, key) = self.identity.as_ref()?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .filter_map(Result::ok)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(key).ok()?;
        (!chain.is_empty()).then_some((chain, key))
    }

    /// Whether a CA was given; without one no server certificate can be trusted.
    pub fn has_ca(&self) -> bool {
        self.ca_pem.is_some()
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<u8>, EtcdError> {
    let bytes = read(path, what)?;
    let bad = |reason: String| EtcdError::BadPem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        cert.map_err(|e| bad(format!("not a PEM certificate ({e})")))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad("no PEM certificate found in it".to_string()));
    }
    Ok(bytes)
}

/// A key that is not the certificate's own fails only at the TLS handshake, as rustls'
/// `KeyMismatch`; say so by name before anything connects.
fn check_pair(cert_path: &Path, cert: &[u8], key_path: &Path, key: &[u8]) -> Result<(), EtcdError> {
    use crate::certs::pem::{parse_certificate_pem, parse_private_key_pem};
    let (Ok(info), Ok(private)) = (parse_certificate_pem(cert), parse_private_key_pem(key)) else {
        // Forms rcgen cannot load are left to the handshake, which reports them itself.
        return Ok(());
    };
    if crate::certs::verify::key_matches(&info, &private) {
        Ok(())
    } else {
        Err(EtcdError::Config(format!(
            "client key {} is not the private key of client certificate {} (--key and --cert must belong together)",
            key_path.display(),
            cert_path.display()
        )))
    }
}

fn read_key(path: &Path, what: &'static str) -> Result<Vec<u8>, EtcdError> {
    let bytes = read(path, what)?;
    // The parse error of pki-types never quotes key bytes, but only its kind is useful anyway.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| EtcdError::BadPem {
        what,
        path: path.to_path_buf(),
        reason: "no PEM private key (PKCS#1, PKCS#8 or SEC1) found in it".to_string(),
    })?;
    Ok(bytes)
}
