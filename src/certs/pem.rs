//! Reading PEM files the way kubeadm writes them: X.509 certificates (`CERTIFICATE`), private keys in
//! PKCS#1 (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`) form, and public keys
//! (`PUBLIC KEY`, the service-account `sa.pub`).
//!
//! This module owns decoding only: it turns bytes into [`CertInfo`] (an owned summary of a certificate,
//! public data only) and [`PrivateKey`] (a loaded key whose bytes never leave it except through rcgen
//! for signing). It never reads files, never prints, and never puts key material in an error message
//! or a `Debug` string.

use chrono::{DateTime, Utc};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use serde::Serialize;
use x509_parser::oid_registry;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};
use x509_parser::public_key::PublicKey as ParsedPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Why bytes could not be decoded. Messages say what was expected and never quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No PEM block of the wanted kind in the input.
    #[error("no PEM {expected} found")]
    NoBlock { expected: &'static str },
    /// A PEM block is malformed (bad base64, missing end line).
    #[error("malformed PEM: {reason}")]
    Malformed { reason: String },
    /// A `CERTIFICATE` block does not hold a valid X.509 certificate.
    #[error("not a valid X.509 certificate: {reason}")]
    Certificate { reason: String },
    /// A private key block holds no key rcgen/aws-lc can load (RSA, ECDSA P-256/P-384/P-521, Ed25519).
    #[error("not a valid {label} (unsupported or corrupt key)")]
    PrivateKey { label: String },
    /// A `PUBLIC KEY` block does not hold a SubjectPublicKeyInfo.
    #[error("not a valid public key")]
    PublicKey,
}

/// The form a private key was stored in. JSON and tables name it alike: `PKCS#1`, `SEC1`, `PKCS#8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyFormat {
    /// `RSA PRIVATE KEY` (what kubeadm writes for RSA keys).
    #[serde(rename = "PKCS#1")]
    Pkcs1,
    /// `EC PRIVATE KEY` (what kubeadm writes for ECDSA keys).
    #[serde(rename = "SEC1")]
    Sec1,
    /// `PRIVATE KEY`.
    #[serde(rename = "PKCS#8")]
    Pkcs8,
}

impl KeyFormat {
    /// The name of the form, as the JSON reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFormat::Pkcs1 => "PKCS#1",
            KeyFormat::Sec1 => "SEC1",
            KeyFormat::Pkcs8 => "PKCS#8",
        }
    }
}

/// The public facts of one X.509 certificate, owned and serialisable. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate in DER, for signature checks and for rcgen (`CertificateParams::from_ca_cert_der`).
    pub der: Vec<u8>,
    /// The subject as `O=system:masters, CN=kubernetes-admin` (RFC 4514 names, certificate order).
    pub subject: String,
    /// The first subject common name.
    pub subject_cn: Option<String>,
    /// The subject organizations (Kubernetes groups), in certificate order.
    pub subject_o: Vec<String>,
    /// The issuer, formatted like `subject`.
    pub issuer: String,
    pub issuer_cn: Option<String>,
    pub issuer_o: Vec<String>,
    /// The serial number as lower-case hex, colon-free (`5b363d0d1d0e4a1e`); `0` for zero.
    pub serial_hex: String,
    /// The serial number in decimal, as x509-certificate-exporter labels it.
    pub serial_decimal: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// DNS names and IP addresses of the subjectAltName extension, DNS names first, as kubeadm
    /// prints them (`kubernetes`, `10.96.0.1`).
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// `RSA-2048`, `ECDSA-P256`, `ECDSA-P384`, `Ed25519`, or the algorithm OID.
    pub key_algorithm: String,
    /// The subjectPublicKey bits (RSAPublicKey DER for RSA, the uncompressed point for EC): what a
    /// private key's public half is compared with.
    pub public_key: Vec<u8>,
    /// The whole SubjectPublicKeyInfo in DER (the kubeadm discovery hash is sha256 of it).
    pub spki_der: Vec<u8>,
    /// The raw DER of the subject and issuer names, for exact issuer matching.
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
}

impl CertInfo {
    /// The subjectAltNames as strings, DNS names first, then IP addresses.
    pub fn sans(&self) -> Vec<String> {
        self.dns_names
            .iter()
            .cloned()
            .chain(self.ip_addresses.iter().map(|ip| ip.to_string()))
            .collect()
    }

    /// Whether the certificate is past its NotAfter at `now`.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.not_after
    }
}

/// A loaded private key. Its bytes stay inside: `Debug` prints only the algorithm, and nothing here
/// serialises or displays the key.
pub struct PrivateKey {
    pair: rcgen::KeyPair,
    format: KeyFormat,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// The raw public key bits, comparable with [`CertInfo::public_key`].
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    /// The SubjectPublicKeyInfo DER of the public half.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.pair.subject_public_key_info()
    }

    /// `RSA-2048`-style name of the key algorithm (RSA size from the public modulus).
    pub fn algorithm(&self) -> String {
        let alg = self.pair.algorithm();
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            "ECDSA-P256".to_string()
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            "ECDSA-P384".to_string()
        } else if alg == &rcgen::PKCS_ECDSA_P521_SHA512 {
            "ECDSA-P521".to_string()
        } else if alg == &rcgen::PKCS_ED25519 {
            "Ed25519".to_string()
        } else {
            match rsa_bits(self.public_key_raw()) {
                Some(bits) => format!("RSA-{bits}"),
                None => "RSA".to_string(),
            }
        }
    }

    /// How the key was stored.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// The rcgen key pair, to sign with (a CA key) or to certify (a leaf key).
    pub fn key_pair(&self) -> &rcgen::KeyPair {
        &self.pair
    }

    /// Gives up the wrapper for the rcgen key pair (e.g. to build an `rcgen::Issuer`).
    pub fn into_key_pair(self) -> rcgen::KeyPair {
        self.pair
    }
}

/// A public key (`sa.pub`): the SubjectPublicKeyInfo and its raw key bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub spki_der: Vec<u8>,
    /// Comparable with [`PrivateKey::public_key_raw`].
    pub public_key: Vec<u8>,
    pub key_algorithm: String,
}

/// The PEM blocks of `input`, in order. A malformed block is an error; text around blocks is ignored.
pub fn blocks(input: &[u8]) -> Result<Vec<Pem>, PemError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(input) {
        out.push(block.map_err(|e| PemError::Malformed {
            reason: pem_reason(&e),
        })?);
    }
    Ok(out)
}

/// Whether `input` has at least one PEM block whose label is a private key.
pub fn has_private_key_block(input: &[u8]) -> bool {
    blocks(input)
        .map(|b| b.iter().any(|p| key_format(&p.label).is_some()))
        .unwrap_or(false)
}

/// Parses the first `CERTIFICATE` block of `input` (other blocks, such as the key in
/// `kubelet-client-current.pem`, are skipped).
pub fn parse_certificate_pem(input: &[u8]) -> Result<CertInfo, PemError> {
    let block = blocks(input)?
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .ok_or(PemError::NoBlock {
            expected: "CERTIFICATE block",
        })?;
    parse_certificate_der(&block.contents)
}

/// Every `CERTIFICATE` block of `input`, in order (bundles).
pub fn parse_certificates_pem(input: &[u8]) -> Result<Vec<CertInfo>, PemError> {
    blocks(input)?
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| parse_certificate_der(&b.contents))
        .collect()
}

/// Parses one DER certificate.
pub fn parse_certificate_der(der: &[u8]) -> Result<CertInfo, PemError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| PemError::Certificate {
        reason: e.to_string().to_lowercase(),
    })?;
    if !rest.is_empty() {
        return Err(PemError::Certificate {
            reason: "trailing bytes after the certificate".to_string(),
        });
    }
    let not_before = to_utc(cert.validity().not_before.timestamp())?;
    let not_after = to_utc(cert.validity().not_after.timestamp())?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        ip_addresses.push(std::net::IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        ip_addresses.push(std::net::IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    let spki = cert.public_key();
    Ok(CertInfo {
        der: der.to_vec(),
        subject: cert.subject().to_string(),
        subject_cn: first_cn(cert.subject()),
        subject_o: orgs(cert.subject()),
        issuer: cert.issuer().to_string(),
        issuer_cn: first_cn(cert.issuer()),
        issuer_o: orgs(cert.issuer()),
        serial_hex: serial_hex(cert.raw_serial()),
        serial_decimal: cert.serial.to_string(),
        not_before,
        not_after,
        dns_names,
        ip_addresses,
        is_ca: cert.is_ca(),
        key_algorithm: spki_algorithm(spki),
        public_key: spki.subject_public_key.data.to_vec(),
        spki_der: spki.raw.to_vec(),
        subject_der: cert.subject().as_raw().to_vec(),
        issuer_der: cert.issuer().as_raw().to_vec(),
    })
}

/// Parses the first private-key block of `input` (PKCS#1, SEC1 or PKCS#8; `EC PARAMETERS` and other
/// blocks are skipped).
pub fn parse_private_key_pem(input: &[u8]) -> Result<PrivateKey, PemError> {
    let block = blocks(input)?
        .into_iter()
        .find(|b| key_format(&b.label).is_some())
        .ok_or(PemError::NoBlock {
            expected: "private key block",
        })?;
    let format = key_format(&block.label).ok_or(PemError::NoBlock {
        expected: "private key block",
    })?;
    let label = block.label.clone();
    let contents = block.contents;
    let der: PrivateKeyDer<'_> = match format {
        KeyFormat::Pkcs1 => PrivatePkcs1KeyDer::from(contents.as_slice()).into(),
        KeyFormat::Sec1 => PrivateSec1KeyDer::from(contents.as_slice()).into(),
        KeyFormat::Pkcs8 => PrivatePkcs8KeyDer::from(contents.as_slice()).into(),
    };
    let pair = rcgen::KeyPair::try_from(&der).map_err(|_| PemError::PrivateKey { label })?;
    Ok(PrivateKey { pair, format })
}

/// Parses the first `PUBLIC KEY` block (a SubjectPublicKeyInfo), as in kubeadm's `sa.pub`.
pub fn parse_public_key_pem(input: &[u8]) -> Result<PublicKeyInfo, PemError> {
    let block = blocks(input)?
        .into_iter()
        .find(|b| b.label == "PUBLIC KEY")
        .ok_or(PemError::NoBlock {
            expected: "PUBLIC KEY block",
        })?;
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(&block.contents).map_err(|_| PemError::PublicKey)?;
    Ok(PublicKeyInfo {
        spki_der: spki.raw.to_vec(),
        public_key: spki.subject_public_key.data.to_vec(),
        key_algorithm: spki_algorithm(&spki),
    })
}

fn key_format(label: &str) -> Option<KeyFormat> {
    match label {
        "RSA PRIVATE KEY" => Some(KeyFormat::Pkcs1),
        "EC PRIVATE KEY" => Some(KeyFormat::Sec1),
        "PRIVATE KEY" => Some(KeyFormat::Pkcs8),
        _ => None,
    }
}

fn pem_reason(e: &x509_parser::error::PEMError) -> String {
    use x509_parser::error::PEMError;
    match e {
        PEMError::Base64DecodeError => "bad base64 in a PEM block".to_string(),
        PEMError::IncompletePEM => "a PEM block has no END line".to_string(),
        PEMError::MissingHeader => "no BEGIN line".to_string(),
        PEMError::InvalidHeader => "invalid BEGIN line".to_string(),
        other => other.to_string().to_lowercase(),
    }
}

fn to_utc(ts: i64) -> Result<DateTime<Utc>, PemError> {
    DateTime::from_timestamp(ts, 0).ok_or_else(|| PemError::Certificate {
        reason: format!("validity timestamp {ts} is out of range"),
    })
}

fn first_cn(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
}

fn orgs(name: &X509Name<'_>) -> Vec<String> {
    name.iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect()
}

fn serial_hex(raw: &[u8]) -> String {
    let trimmed: &[u8] = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &[],
    };
    if trimmed.is_empty() {
        "0".to_string()
    } else {
        hex::encode(trimmed)
    }
}

fn spki_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let oid = &spki.algorithm.algorithm;
    if *oid == oid_registry::OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(ParsedPublicKey::RSA(rsa)) => match significant_bits(rsa.modulus) {
                0 => "RSA".to_string(),
                bits => format!("RSA-{bits}"),
            },
            _ => "RSA".to_string(),
        }
    } else if *oid == oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == oid_registry::OID_EC_P256 => "ECDSA-P256".to_string(),
            Some(c) if c == oid_registry::OID_NIST_EC_P384 => "ECDSA-P384".to_string(),
            Some(c) if c == oid_registry::OID_NIST_EC_P521 => "ECDSA-P521".to_string(),
            Some(c) => format!("ECDSA-{c}"),
            None => "ECDSA".to_string(),
        }
    } else if *oid == oid_registry::OID_SIG_ED25519 {
        "Ed25519".to_string()
    } else {
        oid.to_id_string()
    }
}

/// Bits of a big-endian unsigned integer, leading zeros ignored.
fn significant_bits(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

/// RSA modulus size from an RSAPublicKey DER (what rcgen returns as the raw public key).
fn rsa_bits(rsa_public_key_der: &[u8]) -> Option<usize> {
    use x509_parser::der_parser::der::parse_der_sequence;
    let (_, seq) = parse_der_sequence(rsa_public_key_der).ok()?;
    let items = seq.as_sequence().ok()?;
    let modulus = items.first()?.as_slice().ok()?;
    Some(significant_bits(modulus)).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_bits_ignores_leading_zeros() {
        assert_eq!(significant_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(significant_bits(&[0x01]), 1);
        assert_eq!(significant_bits(&[0, 0]), 0);
    }

    #[test]
    fn serial_hex_trims_and_handles_zero() {
        assert_eq!(serial_hex(&[0]), "0");
        assert_eq!(serial_hex(&[0x00, 0x5b, 0x36]), "5b36");
    }

    #[test]
    fn garbage_is_a_clear_error_without_the_input() {
        let e = parse_certificate_pem(b"hello secret world").unwrap_err();
        assert_eq!(e.to_string(), "no PEM CERTIFICATE block found");
        let bad =
            b"-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END RSA PRIVATE KEY-----\n";
        let e = parse_private_key_pem(bad).unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        assert!(e.to_string().contains("RSA PRIVATE KEY"), "{e}");
    }
}
