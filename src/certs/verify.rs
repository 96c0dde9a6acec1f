//! Cryptographic relations between loaded material: does a private key belong to a certificate (or to
//! `sa.pub`), and was a certificate issued and signed by a given CA.
//!
//! This module only compares public data and verifies signatures (x509-parser over aws-lc-rs). It
//! never reads files, never prints, and never exposes key bytes.

use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::pem::{CertInfo, PrivateKey, PublicKeyInfo};

/// Whether `key` is the private half of `cert`'s public key.
pub fn key_matches(cert: &CertInfo, key: &PrivateKey) -> bool {
    !cert.public_key.is_empty() && cert.public_key == key.public_key_raw()
}

/// Whether `key` is the private half of `public` (kubeadm's `sa.key` / `sa.pub`).
pub fn key_matches_public(public: &PublicKeyInfo, key: &PrivateKey) -> bool {
    !public.public_key.is_empty() && public.public_key == key.public_key_raw()
}

/// Why a certificate does not chain to a CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
pub enum ChainError {
    /// The certificate's issuer name is not the CA's subject.
    #[error("its issuer is not this CA's subject")]
    IssuerMismatch,
    /// The names match but the CA's key did not sign it.
    #[error("its signature does not verify with this CA's public key")]
    BadSignature,
    /// The signature algorithm is not one aws-lc-rs verifies.
    #[error("its signature algorithm is not supported for verification")]
    UnsupportedAlgorithm,
    /// One of the two certificates could not be re-parsed (cannot happen for a [`CertInfo`]).
    #[error("a certificate could not be parsed")]
    Unparseable,
}

/// Checks that `cert` was issued by `ca`: issuer name equals the CA's subject and the signature
/// verifies with the CA's public key.
pub fn verify_signed_by(cert: &CertInfo, ca: &CertInfo) -> Result<(), ChainError> {
    // Byte-equal names, or equal once decoded (a re-encoded string type is still the same name).
    if cert.issuer_der != ca.subject_der && cert.issuer != ca.subject {
        return Err(ChainError::IssuerMismatch);
    }
    let (_, leaf) = X509Certificate::from_der(&cert.der).map_err(|_| ChainError::Unparseable)?;
    let (_, issuer) = X509Certificate::from_der(&ca.der).map_err(|_| ChainError::Unparseable)?;
    leaf.verify_signature(Some(issuer.public_key()))
        .map_err(|e| match e {
            x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => {
                ChainError::UnsupportedAlgorithm
            }
            _ => ChainError::BadSignature,
        })
}

/// Whether `cert` is self-signed (issuer = subject and its own key verifies the signature).
pub fn is_self_signed(cert: &CertInfo) -> bool {
    verify_signed_by(cert, cert).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::pem::{parse_certificate_pem, parse_private_key_pem};
    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};

    fn ca(name: &str) -> (String, KeyPair) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (p.self_signed(&key).unwrap().pem(), key)
    }

    #[test]
    fn signature_and_key_checks() {
        let (ca_pem, ca_key) = ca("kubernetes");
        let (other_pem, other_key) = ca("kubernetes");
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let leaf_pem = CertificateParams::new(vec!["apiserver".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap()
            .pem();
        let ca_info = parse_certificate_pem(ca_pem.as_bytes()).unwrap();
        let other_info = parse_certificate_pem(other_pem.as_bytes()).unwrap();
        let leaf = parse_certificate_pem(leaf_pem.as_bytes()).unwrap();
        assert_eq!(verify_signed_by(&leaf, &ca_info), Ok(()));
        // Same subject, different key: the names match but the signature does not.
        assert_eq!(
            verify_signed_by(&leaf, &other_info),
            Err(ChainError::BadSignature)
        );
        assert!(is_self_signed(&ca_info));
        assert!(!is_self_signed(&leaf));
        let k = parse_private_key_pem(leaf_key.serialize_pem().as_bytes()).unwrap();
        assert!(key_matches(&leaf, &k));
        assert!(!key_matches(&ca_info, &k));
        let ok = parse_private_key_pem(other_key.serialize_pem().as_bytes()).unwrap();
        assert!(key_matches(&other_info, &ok));
        assert_eq!(leaf.key_algorithm, "RSA-2048");
        assert_eq!(k.algorithm(), "RSA-2048");
    }
}
