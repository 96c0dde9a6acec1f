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
//! ECDSA, so the inner `RSAPrivateKey` / `ECPrivateKey` is unwrapped with RustCrypto's `pkcs8` and
//! `sec1` (and the SEC1 key gets its named curve, which PKCS#8 carries outside it). The certificate
//! is read and written with the `der` crate: whole TLVs copied as they are, new fields encoded by
//! it; `x509-cert` would re-encode what it decodes and cannot change a decoded TBSCertificate.
//! Serial numbers come from the operating system's CSPRNG.
//!
//! This module never reads or writes files and never prints. Key bytes leave it only as PEM inside a
//! [`SecretBytes`], which `Debug` does not show.

use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
use der::asn1::{AnyRef, BitStringRef, GeneralizedTime, ObjectIdentifier, UintRef, UtcTime};
use der::{Decode, Encode, Tag, TagNumber, Tagged};
use serde::Serialize;
use sha1::Digest;
use spki::AlgorithmIdentifierRef;

use super::kubeconfig::SecretBytes;
use super::pem::{parse_private_key_pem, CertInfo, KeyFormat, PrivateKey};

/// Why a certificate or key could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The old certificate (or the CA's, or a key) is not DER this module can take apart.
    #[error("cannot take the certificate apart: {0}")]
    Structure(#[from] der::Error),
    /// A PKCS#8 key that is not a PrivateKeyInfo.
    #[error("cannot take the key apart: {0}")]
    Key(#[from] pkcs8::Error),
    /// A PKCS#8 EC key without the named curve a SEC1 key must carry.
    #[error("the PKCS#8 EC key names no curve")]
    NoCurve,
    /// A SubjectPublicKeyInfo whose key is not whole bytes.
    #[error("the public key is not a whole number of bytes")]
    PublicKeyBits,
    /// A validity time a certificate cannot hold (before 1970).
    #[error("{0} cannot be written in a certificate")]
    Time(DateTime<Utc>),
    /// The operating system's random number generator failed.
    #[error("no random serial number: {0}")]
    Random(String),
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

/// The `RSAPrivateKey` (PKCS#1) inside a PKCS#8 `PrivateKeyInfo`: its `privateKey` octets.
pub fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Result<Vec<u8>, IssueError> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8)?;
    Ok(info.private_key.as_bytes().to_vec())
}

/// The `ECPrivateKey` (SEC1) inside a PKCS#8 `PrivateKeyInfo`, with its named curve (`[0]`) and its
/// public key (`[1]`) as Go's `MarshalECPrivateKey` writes them: PKCS#8 carries the curve in the
/// algorithm identifier instead, and a stand-alone `EC PRIVATE KEY` without it cannot be loaded by Go.
/// `public_point` is the uncompressed public point, used when the PKCS#8 has none.
pub fn pkcs8_to_sec1(pkcs8: &[u8], public_point: &[u8]) -> Result<Vec<u8>, IssueError> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8)?;
    let curve = info
        .algorithm
        .parameters_oid()
        .map_err(|_| IssueError::NoCurve)?;
    let inner = sec1::EcPrivateKey::from_der(info.private_key.as_bytes())?;
    let key = sec1::EcPrivateKey {
        private_key: inner.private_key,
        parameters: Some(
            inner
                .parameters
                .unwrap_or(sec1::EcParameters::NamedCurve(curve)),
        ),
        public_key: Some(inner.public_key.unwrap_or(public_point)),
    };
    Ok(key.to_der()?)
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

/// 2.5.29.14 subjectKeyIdentifier.
const OID_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
/// 2.5.29.35 authorityKeyIdentifier.
const OID_AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");

/// The renewed certificate, DER.
pub fn reissue(r: &Reissue<'_>) -> Result<Vec<u8>, IssueError> {
    let old = tbs::Certificate::parse(&r.old.der)?;
    let ca = tbs::Certificate::parse(&r.ca.der)?;
    let sig_alg = signature_algorithm(r.ca_key)?.to_der()?;
    let ca_key_id = ca
        .extensions
        .iter()
        .flatten()
        .find(|e| e.oid == OID_SUBJECT_KEY_ID)
        .map(|e| {
            AnyRef::from_der(e.value).and_then(|id| {
                id.tag().assert_eq(Tag::OctetString)?;
                Ok(id.value())
            })
        })
        .transpose()?;
    let spki = spki::SubjectPublicKeyInfoRef::from_der(r.spki_der)?;
    let public_bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or(IssueError::PublicKeyBits)?;

    let mut extensions = Vec::new();
    for ext in old.extensions.iter().flatten() {
        let value = if ext.oid == OID_SUBJECT_KEY_ID {
            // RFC 5280 4.2.1.2 method 1, as Go computes it: SHA-1 of the subjectPublicKey bits.
            let id = sha1::Sha1::digest(public_bits);
            Some(tbs::tlv(Tag::OctetString, &id)?)
        } else if ext.oid == OID_AUTHORITY_KEY_ID {
            // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING, … }
            ca_key_id
                .map(|id| {
                    tbs::tlv(context(0, false), id).and_then(|kid| tbs::tlv(Tag::Sequence, &kid))
                })
                .transpose()?
        } else {
            None
        };
        extensions.push(match value {
            Some(v) => ext.with_value(&v)?,
            None => ext.raw.to_vec(),
        });
    }

    let mut content = Vec::new();
    if let Some(v) = old.version {
        content.extend_from_slice(v);
    }
    content.extend(UintRef::new(&new_serial()?)?.to_der()?);
    content.extend_from_slice(&sig_alg);
    content.extend_from_slice(ca.subject);
    content.extend(tbs::tlv(
        Tag::Sequence,
        &[time(r.not_before)?, time(r.not_after)?].concat(),
    )?);
    content.extend_from_slice(old.subject);
    content.extend_from_slice(r.spki_der);
    // The issuer/subject unique identifiers (X.509 v2) are dropped: they name the old issuer.
    if old.extensions.is_some() {
        content.extend(tbs::tlv(
            context(3, true),
            &tbs::tlv(Tag::Sequence, &extensions.concat())?,
        )?);
    }
    let tbs = tbs::tlv(Tag::Sequence, &content)?;
    let signature = rcgen::SigningKey::sign(r.ca_key.key_pair(), &tbs)
        .map_err(|e| IssueError::Sign(e.to_string()))?;
    Ok(tbs::tlv(
        Tag::Sequence,
        &[
            tbs.as_slice(),
            &sig_alg,
            &BitStringRef::from_bytes(&signature)?.to_der()?,
        ]
        .concat(),
    )?)
}

/// A context-specific tag (`[n]`).
fn context(number: u32, constructed: bool) -> Tag {
    Tag::ContextSpecific {
        constructed,
        number: TagNumber(number),
    }
}

/// The AlgorithmIdentifier of the signatures the CA's key makes through rcgen.
fn signature_algorithm(ca_key: &PrivateKey) -> Result<AlgorithmIdentifierRef<'static>, IssueError> {
    const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
    const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
    const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
    const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    // sha256WithRSAEncryption carries explicit NULL parameters (RFC 4055); ECDSA and Ed25519 none.
    let alg = ca_key.key_pair().algorithm();
    let (oid, null) = if alg == &rcgen::PKCS_RSA_SHA256 {
        (SHA256_WITH_RSA, true)
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        (ECDSA_WITH_SHA256, false)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        (ECDSA_WITH_SHA384, false)
    } else if alg == &rcgen::PKCS_ECDSA_P521_SHA512 {
        (ECDSA_WITH_SHA512, false)
    } else if alg == &rcgen::PKCS_ED25519 {
        (ED25519, false)
    } else {
        return Err(IssueError::UnsupportedCaKey(ca_key.algorithm()));
    };
    Ok(AlgorithmIdentifierRef {
        oid,
        parameters: null.then_some(AnyRef::NULL),
    })
}

/// A new positive 128-bit serial number from the operating system's CSPRNG: unique without
/// coordination between nodes and runs, unpredictable (CA/Browser Forum asks for 64 random bits at
/// least), and as random with `--reuse-key` as with a new key.
fn new_serial() -> Result<[u8; 16], IssueError> {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| IssueError::Random(e.to_string()))?;
    // Positive (top bit clear) and 16 bytes in DER (second bit set: no leading zero to strip).
    serial[0] = (serial[0] & 0x3f) | 0x40;
    Ok(serial)
}

/// A validity time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
fn time(t: DateTime<Utc>) -> Result<Vec<u8>, IssueError> {
    let since_epoch = u64::try_from(t.timestamp())
        .map(std::time::Duration::from_secs)
        .map_err(|_| IssueError::Time(t))?;
    Ok(if t.year() < 2050 {
        UtcTime::from_unix_duration(since_epoch)?.to_der()?
    } else {
        GeneralizedTime::from_unix_duration(since_epoch)?.to_der()?
    })
}

/// The parts of a TBSCertificate a renewal keeps, as the exact bytes of the old certificate, read
/// with the `der` crate: single TLVs are taken whole (`Reader::tlv_bytes`), never re-encoded.
pub(crate) mod tbs {
    use der::asn1::{AnyRef, ObjectIdentifier};
    use der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};

    /// `content` under `tag`, with a definite DER length.
    pub fn tlv(tag: Tag, content: &[u8]) -> der::Result<Vec<u8>> {
        AnyRef::new(tag, content)?.to_der()
    }

    /// A constructed context-specific tag (`[n]`), as the version and the extensions have.
    fn context(number: u32) -> Tag {
        Tag::ContextSpecific {
            constructed: true,
            number: TagNumber(number),
        }
    }

    /// One TLV: its tag, its content, and all of its bytes.
    #[derive(Debug, Clone, Copy)]
    struct Tlv<'a> {
        tag: Tag,
        content: &'a [u8],
        raw: &'a [u8],
    }

    impl<'a> Tlv<'a> {
        /// The next TLV of `r`, taken whole.
        fn read(r: &mut SliceReader<'a>) -> der::Result<Self> {
            let raw = r.tlv_bytes()?;
            let any = AnyRef::from_der(raw)?;
            Ok(Tlv {
                tag: any.tag(),
                content: any.value(),
                raw,
            })
        }

        /// `self`, which must have `tag`.
        fn expect(self, tag: Tag) -> der::Result<Self> {
            self.tag.assert_eq(tag)?;
            Ok(self)
        }
    }

    /// Every TLV of a constructed value's content.
    fn items(content: &[u8]) -> der::Result<Vec<Tlv<'_>>> {
        let mut r = SliceReader::new(content)?;
        let mut out = Vec::new();
        while !r.is_finished() {
            out.push(Tlv::read(&mut r)?);
        }
        Ok(out)
    }

    /// The next item of a structure that must have one.
    fn required<'a>(items: &mut impl Iterator<Item = Tlv<'a>>) -> der::Result<Tlv<'a>> {
        items
            .next()
            .ok_or_else(|| der::Error::incomplete(der::Length::ZERO))
    }

    /// One certificate extension.
    #[derive(Debug, Clone, Copy)]
    pub struct Extension<'a> {
        pub oid: ObjectIdentifier,
        /// The BOOLEAN, as it was encoded, when present.
        pub critical: Option<&'a [u8]>,
        /// The content of extnValue (the extension's own DER).
        pub value: &'a [u8],
        /// The whole extension.
        pub raw: &'a [u8],
    }

    impl Extension<'_> {
        /// The same extension (OID, criticality as encoded) with another value.
        pub fn with_value(&self, value: &[u8]) -> der::Result<Vec<u8>> {
            let oid = self.oid.to_der()?;
            let v = tlv(Tag::OctetString, value)?;
            tlv(
                Tag::Sequence,
                &[&oid[..], self.critical.unwrap_or_default(), &v[..]].concat(),
            )
        }
    }

    /// The parts of a certificate a renewal reads.
    #[derive(Debug)]
    pub struct Certificate<'a> {
        /// The `[0]` version, absent for v1.
        pub version: Option<&'a [u8]>,
        pub subject: &'a [u8],
        /// The extensions (`[3]`); `Some` even when the block is empty.
        pub extensions: Option<Vec<Extension<'a>>>,
    }

    impl<'a> Certificate<'a> {
        pub fn parse(der: &'a [u8]) -> der::Result<Self> {
            let mut r = SliceReader::new(der)?;
            let cert = Tlv::read(&mut r)?.expect(Tag::Sequence)?;
            r.finish()?;
            let mut r = SliceReader::new(cert.content)?;
            let tbs = Tlv::read(&mut r)?.expect(Tag::Sequence)?;
            let mut fields = items(tbs.content)?.into_iter().peekable();
            let version = fields.next_if(|f| f.tag == context(0)).map(|f| f.raw);
            // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo.
            required(&mut fields)?.expect(Tag::Integer)?;
            for _ in 0..3 {
                required(&mut fields)?.expect(Tag::Sequence)?;
            }
            let subject = required(&mut fields)?.expect(Tag::Sequence)?.raw;
            required(&mut fields)?.expect(Tag::Sequence)?;
            // Then the optional unique identifiers ([1], [2]) and the extensions ([3]).
            let mut extensions = None;
            for block in fields.filter(|f| f.tag == context(3)) {
                let mut r = SliceReader::new(block.content)?;
                let list = Tlv::read(&mut r)?.expect(Tag::Sequence)?;
                r.finish()?;
                let mut found = Vec::new();
                for ext in items(list.content)? {
                    let ext = ext.expect(Tag::Sequence)?;
                    let mut parts = items(ext.content)?.into_iter().peekable();
                    let oid = required(&mut parts)?.expect(Tag::ObjectIdentifier)?;
                    let critical = parts.next_if(|p| p.tag == Tag::Boolean).map(|p| p.raw);
                    let value = required(&mut parts)?.expect(Tag::OctetString)?;
                    if let Some(extra) = parts.next() {
                        return Err(der::Error::new(
                            der::ErrorKind::TagUnexpected {
                                expected: None,
                                actual: extra.tag,
                            },
                            der::Length::ZERO,
                        ));
                    }
                    found.push(Extension {
                        oid: ObjectIdentifier::from_der(oid.raw)?,
                        critical,
                        value: value.content,
                        raw: ext.raw,
                    });
                }
                extensions = Some(found);
            }
            Ok(Certificate {
                version,
                subject,
                extensions,
            })
        }
    }
}

/// Whether `t` can be written in a certificate here (years 1970 to 9999: the `der` crate's times
/// count from the Unix epoch, and a renewal never starts before now).
pub fn representable(t: DateTime<Utc>) -> bool {
    (1970..=9999).contains(&t.year())
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
            // Byte for byte: the subject, the issuer (the CA's subject), and every extension but the
            // two key identifiers, in order, with their criticality as encoded.
            let (o, n) = (
                tbs::Certificate::parse(&old.der).unwrap(),
                tbs::Certificate::parse(&der).unwrap(),
            );
            assert_eq!(n.subject, o.subject);
            assert_eq!(new.issuer_der, ca.subject_der);
            let (oe, ne) = (o.extensions.unwrap(), n.extensions.unwrap());
            assert_eq!(oe.len(), ne.len());
            assert!(oe.len() >= 4, "{oe:?}");
            for (a, b) in oe.iter().zip(&ne) {
                assert_eq!(a.oid, b.oid);
                assert_eq!(a.critical, b.critical);
                if a.oid != OID_SUBJECT_KEY_ID && a.oid != OID_AUTHORITY_KEY_ID {
                    assert_eq!(a.raw, b.raw, "{}", a.oid);
                }
            }
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
    fn validity_times_switch_to_generalized_time_in_2050() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            time(at("2049-12-31T23:59:59Z")).unwrap(),
            [&[0x17, 13][..], b"491231235959Z"].concat()
        );
        assert_eq!(
            time(at("2050-01-01T00:00:00Z")).unwrap(),
            [&[0x18, 15][..], b"20500101000000Z"].concat()
        );
        assert!(matches!(
            time(at("1969-12-31T23:59:59Z")),
            Err(IssueError::Time(_))
        ));
        assert!(representable(at("9999-12-31T23:59:59Z")));
        assert!(!representable(at("1969-12-31T23:59:59Z")));
    }

    #[test]
    fn serials_are_random_positive_and_sixteen_bytes() {
        let serials: std::collections::BTreeSet<[u8; 16]> =
            (0..1000).map(|_| new_serial().unwrap()).collect();
        assert_eq!(serials.len(), 1000);
        for s in &serials {
            // Positive, no leading zero: 16 bytes in DER, as written.
            assert!((0x40..=0x7f).contains(&s[0]), "{s:02x?}");
            assert_eq!(UintRef::new(s).unwrap().as_bytes(), s);
        }
        // Every one of the 126 free bits takes both values somewhere (a counter or a clock would
        // leave high bits fixed).
        let ones = serials.iter().fold([0u8; 16], |mut acc, s| {
            acc.iter_mut().zip(s).for_each(|(a, b)| *a |= b);
            acc
        });
        let zeros = serials.iter().fold([0xffu8; 16], |mut acc, s| {
            acc.iter_mut().zip(s).for_each(|(a, b)| *a &= b);
            acc
        });
        assert_eq!(ones, [[0x7f][..].to_vec(), vec![0xff; 15]].concat()[..]);
        assert_eq!(zeros, [[0x40][..].to_vec(), vec![0; 15]].concat()[..]);
    }

    #[test]
    fn reissuing_the_same_key_at_the_same_instant_still_gives_a_new_serial() {
        let (ca_pem, ca_key_pem, leaf_pem) = ca_and_leaf(&rcgen::PKCS_RSA_SHA256);
        let ca = crate::certs::pem::parse_certificate_pem(ca_pem.as_bytes()).unwrap();
        let ca_key = parse_private_key_pem(ca_key_pem.as_bytes()).unwrap();
        let old = crate::certs::pem::parse_certificate_pem(leaf_pem.as_bytes()).unwrap();
        let now = Utc::now();
        // --reuse-key: the old certificate's own public key.
        let r = Reissue {
            old: &old,
            ca: &ca,
            ca_key: &ca_key,
            spki_der: &old.spki_der,
            not_before: now,
            not_after: now + chrono::Duration::days(1),
        };
        let a = parse_certificate_der(&reissue(&r).unwrap()).unwrap();
        let b = parse_certificate_der(&reissue(&r).unwrap()).unwrap();
        assert_ne!(a.serial_hex, b.serial_hex);
        assert_ne!(a.serial_hex, old.serial_hex);
        assert_eq!(a.spki_der, old.spki_der);
    }
}
