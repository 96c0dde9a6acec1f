//! The bootstrap secrets: kubeadm's bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) and the certificate
//! key (32 random bytes as 64 hex digits) that encrypts the `kubeadm-certs` Secret. Both come from
//! the operating system's CSPRNG; the token's characters are drawn without modulo bias. `Debug`
//! never shows a value. Never prints, never writes files.

use super::error::BootstrapError;

/// A bootstrap token, `id.secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

/// A certificate key, 64 lower-case hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateKey(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<redacted>)", self.id())
    }
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateKey(<redacted>)")
    }
}

const TOKEN_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random(buf: &mut [u8], what: &str) -> Result<(), BootstrapError> {
    getrandom::fill(buf).map_err(|e| BootstrapError::Generate {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

impl Token {
    /// A fresh token.
    pub fn generate() -> Result<Self, BootstrapError> {
        let mut out = String::with_capacity(23);
        // 252 = 7 × 36: bytes at or above it are thrown away so every character is equally likely.
        let mut pool = [0u8; 64];
        while out.len() < 23 {
            random(&mut pool, "a bootstrap token")?;
            for b in pool {
                if out.len() == 6 {
                    out.push('.');
                }
                if out.len() == 23 {
                    break;
                }
                if b < 252 {
                    out.push(TOKEN_ALPHABET[usize::from(b % 36)] as char);
                }
            }
        }
        Ok(Token(out))
    }

    /// Checks a token read back from a file.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim_end_matches('\n');
        let ok = t.len() == 23
            && t.as_bytes()[6] == b'.'
            && t.bytes()
                .enumerate()
                .all(|(i, b)| i == 6 || b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Token(t.to_string()))
        } else {
            Err("is not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16}); remove the file or use --rotate-token to make a new one".into())
        }
    }

    /// The public half, as `kubeadm token list` shows it.
    pub fn id(&self) -> &str {
        &self.0[..6]
    }

    /// The whole token; only for kubeadm configurations and `--show-secrets`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl CertificateKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, BootstrapError> {
        let mut bytes = [0u8; 32];
        random(&mut bytes, "a certificate key")?;
        Ok(CertificateKey(hex::encode(bytes)))
    }

    /// Checks a key read back from a file.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim_end_matches('\n');
        if t.len() == 64
            && t.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(CertificateKey(t.to_string()))
        } else {
            Err("is not a certificate key (64 lower-case hex digits)".into())
        }
    }

    /// The key; only for kubeadm configurations and `--show-secrets`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The secrets of one bundle.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub token: Token,
    pub certificate_key: CertificateKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_kubeadms_format_and_differ() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(Token::parse(t.expose()).unwrap(), *t);
        }
        assert!(!format!("{a:?}").contains(&a.expose()[7..]));
    }

    #[test]
    fn token_characters_cover_the_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let t = Token::generate().unwrap();
            seen.extend(t.expose().bytes().filter(|b| *b != b'.'));
        }
        assert_eq!(seen.len(), 36, "every one of the 36 characters appears");
    }

    #[test]
    fn certificate_keys_are_64_hex() {
        let k = CertificateKey::generate().unwrap();
        assert_eq!(k.expose().len(), 64);
        assert_eq!(
            CertificateKey::parse(&format!("{}\n", k.expose())).unwrap(),
            k
        );
        assert!(!format!("{k:?}").contains(k.expose()));
        for bad in ["", "abc", &"G".repeat(64), &"A".repeat(64)] {
            assert!(CertificateKey::parse(bad).is_err());
        }
        for bad in [
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef-0123456789abcdef",
            "abcdef.0123456789abcdeF",
        ] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
    }
}
