//! Issuing a renewed certificate and a new key, faithful to the old ones.
//!
//! A renewal keeps everything the old certificate says about its holder. Its TBSCertificate is taken
//! apart and put back together with only the fields a renewal must change: the serial number, the
//! validity, the public key, the issuer (the CA's subject, byte for byte), the signature algorithm of
//! the CA's key, the subject key identifier (recomputed for the new key, when the old certificate had
//! one) and the authority key identifier (the CA's own). The subject, the subjectAltNames, the key
//! usages, the extended key usages and every other extension are copied byte for byte, in order, with
//! their criticality. This is stricter than rebuilding the certificate from parsed parameters, which
//! re-encodes names (string types, attribute order) and drops extensions the parser does not know.
//!
//! New keys have the old key's algorithm and size and are written in the old key's PEM form. aws-lc
//! generates PKCS#8; kubeadm writes PKCS#1 (`RSA PRIVATE KEY`) for RSA and SEC1 (`EC PRIVATE KEY`) for
//! ECDSA, so the inner `RSAPrivateKey` / `ECPrivateKey` is unwrapped with the small DER walk of
//! [`der`] (and the SEC1 key gets its named curve, which PKCS#8 carries outside it).
//!
//! This module never reads or writes files and never prints. Key bytes leave it only as PEM inside a
//! [`SecretBytes`], which `Debug` does not show.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use sha2::Digest;

use super::kubeconfig::SecretBytes;
use super::pem::{parse_private_key_pem, CertInfo, KeyFormat, PrivateKey};

/// Why a certificate or key could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The old certificate (or the CA's) is not DER this module can take apart.
    #[error("cannot take the certificate apart: {0}")]
    Structure(#[from] der::DerError),
    /// The old key's algorithm is not one a renewal generates.
    #[error("unsupported key algorithm {0}: cpkeep generates RSA 2048/3072/4096 and ECDSA P-256/P-384 keys (use --reuse-key to keep the key)")]
    UnsupportedKey(String),
    /// The CA's key cannot sign certificates here.
    #[error("unsupported CA key algorithm {0}")]
    UnsupportedCaKey(String),
    /// The key PEM form does not fit the algorithm (PKCS#1 is RSA only, SEC1 is ECDSA only).
    #[error("a {spec} key cannot be written as {label}")]
    FormatMismatch {
        spec: &'static str,
        label: &'static str,
    },
    /// aws-lc could not generate a key.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// The CA's key could not sign.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The algorithm and size of a key, as a renewal keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeySpec {
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
}

impl KeySpec {
    /// The spec of a [`CertInfo::key_algorithm`] / [`PrivateKey::algorithm`] name (`RSA-2048`).
    pub fn from_algorithm(name: &str) -> Result<Self, IssueError> {
        match name {
            "RSA-2048" => Ok(KeySpec::Rsa2048),
            "RSA-3072" => Ok(KeySpec::Rsa3072),
            "RSA-4096" => Ok(KeySpec::Rsa4096),
            "ECDSA-P256" => Ok(KeySpec::EcdsaP256),
            "ECDSA-P384" => Ok(KeySpec::EcdsaP384),
            other => Err(IssueError::UnsupportedKey(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeySpec::Rsa2048 => "RSA-2048",
            KeySpec::Rsa3072 => "RSA-3072",
            KeySpec::Rsa4096 => "RSA-4096",
            KeySpec::EcdsaP256 => "ECDSA-P256",
            KeySpec::EcdsaP384 => "ECDSA-P384",
        }
    }

    fn is_rsa(self) -> bool {
        matches!(self, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096)
    }
}

/// The PEM label of a key form.
pub fn key_label(format: KeyFormat) -> &'static str {
    match format {
        KeyFormat::Pkcs1 => "RSA PRIVATE KEY",
        KeyFormat::Sec1 => "EC PRIVATE KEY",
        KeyFormat::Pkcs8 => "PRIVATE KEY",
    }
}

/// A freshly generated key: its PEM (secret) and the loaded key.
pub struct NewKey {
    pub pem: SecretBytes,
    pub key: PrivateKey,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Generates a key of `spec` and writes it as PEM in `format`. The PEM is parsed back, so what is
/// returned is exactly what a reader of the file will load.
pub fn generate_key(spec: KeySpec, format: KeyFormat) -> Result<NewKey, IssueError> {
    let gen = |e: rcgen::Error| IssueError::Generate(e.to_string());
    let pair = match spec {
        KeySpec::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeySpec::Rsa3072 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
        KeySpec::Rsa4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
        KeySpec::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeySpec::EcdsaP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
    }
    .map_err(gen)?;
    let pkcs8 = pair.serialized_der();
    let der = match format {
        KeyFormat::Pkcs8 => pkcs8.to_vec(),
        KeyFormat::Pkcs1 if spec.is_rsa() => pkcs8_to_pkcs1(pkcs8)?,
        KeyFormat::Sec1 if !spec.is_rsa() => {
            use rcgen::PublicKeyData;
            pkcs8_to_sec1(pkcs8, pair.der_bytes())?
        }
        other => {
            return Err(IssueError::FormatMismatch {
                spec: spec.name(),
                label: key_label(other),
            })
        }
    };
    let pem = pem_encode(key_label(format), &der);
    let key = parse_private_key_pem(pem.as_bytes())
        .map_err(|e| IssueError::Generate(format!("the generated key does not load back: {e}")))?;
    Ok(NewKey {
        pem: SecretBytes::new(pem.into_bytes()),
        key,
    })
}

/// PEM text of `der` under `label`, 64 base64 characters a line, as Go and OpenSSL write it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The `RSAPrivateKey` (PKCS#1) inside a PKCS#8 `PrivateKeyInfo`.
pub fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Result<Vec<u8>, IssueError> {
    let (_, inner) = pkcs8_parts(pkcs8)?;
    Ok(inner.to_vec())
}

/// The `ECPrivateKey` (SEC1) inside a PKCS#8 `PrivateKeyInfo`, with its named curve (`[0]`) and its
/// public key (`[1]`) as Go's `MarshalECPrivateKey` writes them: PKCS#8 carries the curve in the
/// algorithm identifier instead, and a stand-alone `EC PRIVATE KEY` without it cannot be loaded by Go.
/// `public_point` is the uncompressed public point, used when the PKCS#8 has none.
pub fn pkcs8_to_sec1(pkcs8: &[u8], public_point: &[u8]) -> Result<Vec<u8>, IssueError> {
    let (curve, inner) = pkcs8_parts(pkcs8)?;
    let curve = curve.ok_or(der::DerError("PKCS#8 EC key without a named curve"))?;
    let (seq, _) = der::expect(inner, der::SEQUENCE)?;
    let items = der::items(seq.content)?;
    let (version, secret) = match items.as_slice() {
        [v, s, ..] if v.tag == der::INTEGER && s.tag == der::OCTET_STRING => (v, s),
        _ => return Err(der::DerError("ECPrivateKey without version and private key").into()),
    };
    let params = items
        .iter()
        .find(|t| t.tag == 0xa0)
        .map(|t| t.raw.to_vec())
        .unwrap_or_else(|| der::encode(0xa0, curve.raw));
    let public = items
        .iter()
        .find(|t| t.tag == 0xa1)
        .map(|t| t.raw.to_vec())
        .unwrap_or_else(|| der::encode(0xa1, &der::bit_string(public_point)));
    Ok(der::encode(
        der::SEQUENCE,
        &[version.raw, secret.raw, &params, &public].concat(),
    ))
}

/// The curve OID (for EC keys) and the inner private key of a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_parts(pkcs8: &[u8]) -> Result<(Option<der::Tlv<'_>>, &[u8]), der::DerError> {
    let (seq, _) = der::expect(pkcs8, der::SEQUENCE)?;
    let items = der::items(seq.content)?;
    match items.as_slice() {
        [v, alg, key, ..]
            if v.tag == der::INTEGER
                && alg.tag == der::SEQUENCE
                && key.tag == der::OCTET_STRING =>
        {
            let alg_items = der::items(alg.content)?;
            let curve = alg_items.get(1).filter(|t| t.tag == der::OID).copied();
            Ok((curve, key.content))
        }
        _ => Err(der::DerError("not a PKCS#8 PrivateKeyInfo")),
    }
}

/// What a renewal certifies and how long.
#[derive(Debug)]
pub struct Reissue<'a> {
    /// The certificate being renewed: subject, extensions and version are kept.
    pub old: &'a CertInfo,
    /// The CA certificate that signs (its subject becomes the issuer, its key identifier the
    /// authority key identifier).
    pub ca: &'a CertInfo,
    pub ca_key: &'a PrivateKey,
    /// The SubjectPublicKeyInfo (DER) of the renewed certificate's key.
    pub spki_der: &'a [u8],
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// The renewed certificate, DER.
pub fn reissue(r: &Reissue<'_>) -> Result<Vec<u8>, IssueError> {
    let old = der::Certificate::parse(&r.old.der)?;
    let ca = der::Certificate::parse(&r.ca.der)?;
    let sig_alg = signature_algorithm(r.ca_key)?;
    let ca_key_id = ca
        .extensions
        .iter()
        .find(|e| e.oid == der::OID_SUBJECT_KEY_ID)
        .map(|e| der::expect(e.value, der::OCTET_STRING).map(|(t, _)| t.content.to_vec()))
        .transpose()?;
    let (spki, _) = der::expect(r.spki_der, der::SEQUENCE)?;
    let public_bits = der::spki_public_key(spki.content)?;

    let mut extensions = Vec::new();
    for ext in &old.extensions {
        let value = if ext.oid == der::OID_SUBJECT_KEY_ID {
            // RFC 5280 4.2.1.2 method 1, as Go computes it: SHA-1 of the subjectPublicKey bits.
            let id = sha1::Sha1::digest(public_bits);
            Some(der::encode(der::OCTET_STRING, &id))
        } else if ext.oid == der::OID_AUTHORITY_KEY_ID {
            ca_key_id
                .as_ref()
                .map(|id| der::encode(der::SEQUENCE, &der::encode(0x80, id)))
        } else {
            None
        };
        extensions.push(match value {
            Some(v) => ext.with_value(&v),
            None => ext.raw.to_vec(),
        });
    }

    let mut tbs = Vec::new();
    if let Some(v) = old.version {
        tbs.extend_from_slice(v);
    }
    tbs.extend(der::encode(
        der::INTEGER,
        &new_serial(r.spki_der, old.serial),
    ));
    tbs.extend_from_slice(sig_alg);
    tbs.extend_from_slice(ca.subject);
    tbs.extend(der::encode(
        der::SEQUENCE,
        &[der::time(r.not_before), der::time(r.not_after)].concat(),
    ));
    tbs.extend_from_slice(old.subject);
    tbs.extend_from_slice(spki.raw);
    // The issuer/subject unique identifiers (X.509 v2) are dropped: they name the old issuer.
    if old.has_extensions {
        tbs.extend(der::encode(
            0xa3,
            &der::encode(der::SEQUENCE, &extensions.concat()),
        ));
    }
    let tbs = der::encode(der::SEQUENCE, &tbs);
    let signature = rcgen::SigningKey::sign(r.ca_key.key_pair(), &tbs)
        .map_err(|e| IssueError::Sign(e.to_string()))?;
    Ok(der::encode(
        der::SEQUENCE,
        &[
            tbs.as_slice(),
            sig_alg,
            &der::encode(der::BIT_STRING, &[&[0u8][..], &signature].concat()),
        ]
        .concat(),
    ))
}

/// The AlgorithmIdentifier (DER) of the signatures the CA's key makes through rcgen.
fn signature_algorithm(ca_key: &PrivateKey) -> Result<&'static [u8], IssueError> {
    const SHA256_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    const ECDSA_WITH_SHA256: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    const ECDSA_WITH_SHA384: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
    ];
    const ECDSA_WITH_SHA512: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
    ];
    const ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
    let alg = ca_key.key_pair().algorithm();
    if alg == &rcgen::PKCS_RSA_SHA256 {
        Ok(SHA256_WITH_RSA)
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(ECDSA_WITH_SHA256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Ok(ECDSA_WITH_SHA384)
    } else if alg == &rcgen::PKCS_ECDSA_P521_SHA512 {
        Ok(ECDSA_WITH_SHA512)
    } else if alg == &rcgen::PKCS_ED25519 {
        Ok(ED25519)
    } else {
        Err(IssueError::UnsupportedCaKey(ca_key.algorithm()))
    }
}

/// A new positive 128-bit serial number. It hashes the new public key (random unless the key is
/// reused), the clock, the process and a counter, so two renewals never share one.
fn new_serial(spki: &[u8], old_serial: &[u8]) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let digest = sha2::Sha256::new()
        .chain_update(spki)
        .chain_update(old_serial)
        .chain_update(nanos.to_be_bytes())
        .chain_update(std::process::id().to_be_bytes())
        .chain_update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes())
        .finalize();
    let mut serial = digest[..16].to_vec();
    // Positive, and 16 bytes in DER (no leading zero needed, none to strip).
    serial[0] = (serial[0] & 0x3f) | 0x40;
    serial
}

/// A minimal DER reader and writer: single-byte tags, definite lengths up to 4 bytes — all that
/// certificates and private keys use.
pub(crate) mod der {
    use chrono::{DateTime, Datelike, Utc};

    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;

    /// 2.5.29.14 subjectKeyIdentifier (OID content bytes).
    pub const OID_SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    /// 2.5.29.35 authorityKeyIdentifier.
    pub const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];

    /// What is wrong with the DER.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{0}")]
    pub struct DerError(pub &'static str);

    /// One tag-length-value: its tag, its content, and all of its bytes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Tlv<'a> {
        pub tag: u8,
        pub content: &'a [u8],
        pub raw: &'a [u8],
    }

    /// The first TLV of `input` and what follows it.
    pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
        const SHORT: DerError = DerError("truncated DER");
        let (&tag, rest) = input.split_first().ok_or(SHORT)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte DER tags are not supported"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(SHORT)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError("unsupported DER length"));
            }
            let bytes = rest.get(..n).ok_or(SHORT)?;
            rest = &rest[n..];
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return Err(SHORT);
        }
        let header = input.len() - rest.len();
        let (content, after) = rest.split_at(len);
        Ok((
            Tlv {
                tag,
                content,
                raw: &input[..header + len],
            },
            after,
        ))
    }

    /// The first TLV of `input`, which must have `tag`.
    pub fn expect(input: &[u8], tag: u8) -> Result<(Tlv<'_>, &[u8]), DerError> {
        let (t, rest) = read(input)?;
        if t.tag != tag {
            return Err(DerError("unexpected DER tag"));
        }
        Ok((t, rest))
    }

    /// Every TLV of a constructed value's content.
    pub fn items(mut content: &[u8]) -> Result<Vec<Tlv<'_>>, DerError> {
        let mut out = Vec::new();
        while !content.is_empty() {
            let (t, rest) = read(content)?;
            out.push(t);
            content = rest;
        }
        Ok(out)
    }

    /// A TLV with a definite length.
    pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(content.len() + 6);
        out.push(tag);
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    /// The content of a BIT STRING holding whole bytes.
    pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
        [&[0u8][..], bytes].concat()
    }

    /// A validity time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
    pub fn time(t: DateTime<Utc>) -> Vec<u8> {
        if (1950..2050).contains(&t.year()) {
            encode(UTC_TIME, t.format("%y%m%d%H%M%SZ").to_string().as_bytes())
        } else {
            encode(
                GENERALIZED_TIME,
                t.format("%Y%m%d%H%M%SZ").to_string().as_bytes(),
            )
        }
    }

    /// The subjectPublicKey bits of a SubjectPublicKeyInfo's content.
    pub fn spki_public_key(spki_content: &[u8]) -> Result<&[u8], DerError> {
        match items(spki_content)?.as_slice() {
            [alg, key] if alg.tag == SEQUENCE && key.tag == BIT_STRING => key
                .content
                .split_first()
                .filter(|(unused, _)| **unused == 0)
                .map(|(_, bits)| bits)
                .ok_or(DerError("public key BIT STRING with unused bits")),
            _ => Err(DerError("not a SubjectPublicKeyInfo")),
        }
    }

    /// One certificate extension.
    #[derive(Debug, Clone, Copy)]
    pub struct Extension<'a> {
        /// The OID's content bytes.
        pub oid: &'a [u8],
        /// The BOOLEAN, when present.
        pub critical: Option<&'a [u8]>,
        /// The content of extnValue (the extension's own DER).
        pub value: &'a [u8],
        pub raw: &'a [u8],
    }

    impl Extension<'_> {
        /// The same extension (OID, criticality) with another value.
        pub fn with_value(&self, value: &[u8]) -> Vec<u8> {
            let oid = encode(OID, self.oid);
            let v = encode(OCTET_STRING, value);
            encode(
                SEQUENCE,
                &[&oid[..], self.critical.unwrap_or_default(), &v[..]].concat(),
            )
        }
    }

    /// The parts of a certificate a renewal reads (raw TLVs).
    #[derive(Debug)]
    pub struct Certificate<'a> {
        /// The `[0]` version, absent for v1.
        pub version: Option<&'a [u8]>,
        /// The serial number's content bytes.
        pub serial: &'a [u8],
        pub subject: &'a [u8],
        /// Whether there is an extensions block (`[3]`), even an empty one.
        pub has_extensions: bool,
        pub extensions: Vec<Extension<'a>>,
    }

    impl<'a> Certificate<'a> {
        pub fn parse(der: &'a [u8]) -> Result<Self, DerError> {
            let bad = DerError("not an X.509 certificate");
            let (cert, _) = expect(der, SEQUENCE)?;
            let (tbs, _) = expect(cert.content, SEQUENCE)?;
            let mut fields = items(tbs.content)?.into_iter().peekable();
            let version = fields.next_if(|t| t.tag == 0xa0).map(|t| t.raw);
            let mut next = |tag: u8| fields.next().filter(|t| t.tag == tag).ok_or(bad.clone());
            let serial = next(INTEGER)?.content;
            let _signature = next(SEQUENCE)?;
            let _issuer = next(SEQUENCE)?;
            let _validity = next(SEQUENCE)?;
            let subject = next(SEQUENCE)?.raw;
            let _spki = next(SEQUENCE)?;
            let mut has_extensions = false;
            let mut extensions = Vec::new();
            for t in fields {
                if t.tag != 0xa3 {
                    continue;
                }
                has_extensions = true;
                let (list, _) = expect(t.content, SEQUENCE)?;
                for e in items(list.content)? {
                    if e.tag != SEQUENCE {
                        return Err(bad);
                    }
                    let parts = items(e.content)?;
                    let (oid, critical, value) = match parts.as_slice() {
                        [o, v] if o.tag == OID && v.tag == OCTET_STRING => (o, None, v),
                        [o, c, v] if o.tag == OID && c.tag == BOOLEAN && v.tag == OCTET_STRING => {
                            (o, Some(c.raw), v)
                        }
                        _ => return Err(DerError("malformed certificate extension")),
                    };
                    extensions.push(Extension {
                        oid: oid.content,
                        critical,
                        value: value.content,
                        raw: e.raw,
                    });
                }
            }
            Ok(Certificate {
                version,
                serial,
                subject,
                has_extensions,
                extensions,
            })
        }
    }
}

/// Whether `t` can be written in a certificate (years 1950 to 9999).
pub fn representable(t: DateTime<Utc>) -> bool {
    (1950..=9999).contains(&t.year())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::pem::parse_certificate_der;
    use crate::certs::verify::{key_matches, verify_signed_by};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyUsagePurpose, SanType,
    };

    fn openssl() -> std::path::PathBuf {
        let dir = std::env::var_os("CPKEEP_TOOLS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools"));
        let p = dir.join("bin").join("openssl");
        assert!(
            p.exists(),
            "openssl not found at {}: run scripts/install-tools.sh",
            p.display()
        );
        p
    }

    fn run_openssl(args: &[&str], input: Option<&std::path::Path>) -> Vec<u8> {
        let mut cmd = std::process::Command::new(openssl());
        cmd.args(args);
        if let Some(i) = input {
            cmd.arg("-in").arg(i);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A CA (of `alg`) and a leaf it signed, kubeadm style, as PEM: (ca cert, ca key, leaf cert).
    fn ca_and_leaf(alg: &'static rcgen::SignatureAlgorithm) -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "kubernetes");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let ca_pem = p.self_signed(&ca_key).unwrap().pem();
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut l = CertificateParams::default();
        l.distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        l.distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        l.subject_alt_names = vec![
            SanType::DnsName("kubernetes".try_into().unwrap()),
            SanType::DnsName("kubernetes.default".try_into().unwrap()),
            SanType::IpAddress("10.96.0.1".parse().unwrap()),
        ];
        l.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        l.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        l.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
        let leaf_pem = l.signed_by(&leaf_key, &issuer).unwrap().pem();
        (ca_pem, ca_key.serialize_pem(), leaf_pem)
    }

    fn text_without_volatile(cert_pem: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.pem");
        std::fs::write(&f, cert_pem).unwrap();
        let out = run_openssl(&["x509", "-noout", "-text"], Some(&f));
        let text = String::from_utf8(out).unwrap();
        // Subject, issuer, extensions: everything but what a renewal changes.
        let mut keep = Vec::new();
        let mut skip = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("Serial Number")
                || t.starts_with("Not Before")
                || t.starts_with("Not After")
                || t.starts_with("Subject Public Key Info")
                || t.starts_with("Signature Algorithm: ")
                    && !line.starts_with("        Signature Algorithm")
            {
                skip = t.starts_with("Serial Number") || t.starts_with("Subject Public Key Info");
                continue;
            }
            if skip {
                if t.starts_with("X509v3 extensions") || t.starts_with("Issuer") {
                    skip = false;
                } else {
                    continue;
                }
            }
            if line.starts_with("    Signature Algorithm")
                || line.starts_with("    Signature Value")
            {
                break;
            }
            keep.push(t.to_string());
        }
        keep.join("\n")
    }

    #[test]
    fn reissued_certificate_keeps_everything_but_key_serial_and_dates() {
        for ca_alg in [&rcgen::PKCS_RSA_SHA256, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let (ca_pem, ca_key_pem, leaf_pem) = ca_and_leaf(ca_alg);
            let ca = crate::certs::pem::parse_certificate_pem(ca_pem.as_bytes()).unwrap();
            let ca_key = parse_private_key_pem(ca_key_pem.as_bytes()).unwrap();
            let old = crate::certs::pem::parse_certificate_pem(leaf_pem.as_bytes()).unwrap();
            let new_key = generate_key(KeySpec::EcdsaP256, KeyFormat::Sec1).unwrap();
            let nb = Utc::now() - chrono::Duration::minutes(5);
            let na = nb + chrono::Duration::days(365);
            let der = reissue(&Reissue {
                old: &old,
                ca: &ca,
                ca_key: &ca_key,
                spki_der: &new_key.key.public_key_spki_der(),
                not_before: nb,
                not_after: na,
            })
            .unwrap();
            let new = parse_certificate_der(&der).unwrap();
            assert_eq!(verify_signed_by(&new, &ca), Ok(()));
            assert!(key_matches(&new, &new_key.key));
            assert_eq!(new.subject_der, old.subject_der);
            assert_eq!(new.sans(), old.sans());
            assert_eq!(new.not_after.timestamp(), na.timestamp());
            assert_ne!(new.serial_hex, old.serial_hex);
            let new_pem = pem_encode("CERTIFICATE", &der);
            assert_eq!(
                text_without_volatile(&new_pem),
                text_without_volatile(&leaf_pem)
            );
            // openssl agrees that it chains.
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.crt"), &ca_pem).unwrap();
            std::fs::write(dir.path().join("new.crt"), &new_pem).unwrap();
            let out = run_openssl(
                &[
                    "verify",
                    "-CAfile",
                    dir.path().join("ca.crt").to_str().unwrap(),
                    dir.path().join("new.crt").to_str().unwrap(),
                ],
                None,
            );
            assert!(String::from_utf8_lossy(&out).contains(": OK"));
        }
    }

    #[test]
    fn generated_keys_keep_spec_and_form_and_openssl_reads_them() {
        for (spec, format) in [
            (KeySpec::Rsa2048, KeyFormat::Pkcs1),
            (KeySpec::Rsa3072, KeyFormat::Pkcs8),
            (KeySpec::EcdsaP256, KeyFormat::Sec1),
            (KeySpec::EcdsaP384, KeyFormat::Sec1),
            (KeySpec::EcdsaP384, KeyFormat::Pkcs8),
        ] {
            let k = generate_key(spec, format).unwrap();
            let pem = std::str::from_utf8(k.pem.expose()).unwrap().to_string();
            assert!(
                pem.starts_with(&format!("-----BEGIN {}-----\n", key_label(format))),
                "{spec:?} {format:?}"
            );
            assert_eq!(k.key.algorithm(), spec.name());
            assert_eq!(k.key.format(), format);
            assert!(!format!("{k:?}").contains("BEGIN"));
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("k.pem");
            std::fs::write(&f, &pem).unwrap();
            // The public half openssl derives is the one the key claims.
            let public = run_openssl(&["pkey", "-pubout", "-outform", "DER"], Some(&f));
            assert_eq!(public, k.key.public_key_spki_der(), "{spec:?} {format:?}");
            // OpenSSL's own traditional (PKCS#1 / SEC1) encoding of the key is byte for byte ours.
            if format != KeyFormat::Pkcs8 {
                let args: &[&str] = if spec.is_rsa() {
                    &["rsa", "-traditional"]
                } else {
                    &["ec"]
                };
                let again = run_openssl(args, Some(&f));
                assert_eq!(String::from_utf8(again).unwrap(), pem, "{spec:?}");
            }
        }
        assert!(matches!(
            generate_key(KeySpec::EcdsaP256, KeyFormat::Pkcs1),
            Err(IssueError::FormatMismatch { .. })
        ));
    }

    #[test]
    fn der_lengths_and_times() {
        let long = vec![7u8; 300];
        let enc = der::encode(der::OCTET_STRING, &long);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (t, rest) = der::read(&enc).unwrap();
        assert_eq!((t.content.len(), rest.len(), t.raw.len()), (300, 0, 304));
        assert!(der::read(&enc[..10]).is_err());
        assert!(der::read(&[0x1f, 0x01, 0x00]).is_err());
        let t = DateTime::parse_from_rfc3339("2049-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(der::time(t), der::encode(0x17, b"491231235959Z"));
        let t = DateTime::parse_from_rfc3339("2050-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(der::time(t), der::encode(0x18, b"20500101000000Z"));
    }

    #[test]
    fn serials_are_positive_and_distinct() {
        let a = new_serial(b"k", b"\x01");
        let b = new_serial(b"k", b"\x01");
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
    }
}
