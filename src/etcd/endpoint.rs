//! One etcd client endpoint, validated: `http://host:port` or `https://host:port`.
//!
//! A malformed URL is rejected here, before anything connects, so the user hears about the typo and not
//! about a confusing transport error.

use std::fmt;

use super::EtcdError;

/// A validated client URL of an etcd member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parses `scheme://host:port`. Without a scheme, `https` is assumed when `tls_by_default` (client TLS
    /// material is configured, as on every kubeadm node) and `http` otherwise, like etcdctl.
    pub fn parse(raw: &str, tls_by_default: bool) -> Result<Self, EtcdError> {
        let shown = redact_userinfo(raw);
        let bad = |reason: &str| EtcdError::InvalidEndpoint {
            endpoint: shown.clone(),
            reason: reason.to_string(),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(bad("empty endpoint"));
        }
        let (tls, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("http://") {
            (false, rest)
        } else if trimmed.contains("://") {
            return Err(bad("scheme must be http or https"));
        } else {
            (tls_by_default, trimmed)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(bad("an endpoint has no path: expected scheme://host:port"));
        }
        if rest.contains('@') {
            return Err(bad(
                "credentials do not belong in the URL: use --user/--password",
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("missing port: expected scheme://host:port"))?;
            (format!("[{h}]"), port)
        } else {
            rest.rsplit_once(':')
                .map(|(h, p)| (h.to_string(), p))
                .ok_or_else(|| bad("missing port: expected scheme://host:port"))?
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("missing host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        {
            return Err(bad(
                "host contains characters not allowed in a host name or address",
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port must be a number from 1 to 65535"));
        }
        Ok(Self { tls, host, port })
    }

    /// Parses a comma-separated list, dropping duplicates while keeping order.
    pub fn parse_list(raw: &[String], tls_by_default: bool) -> Result<Vec<Self>, EtcdError> {
        let mut out: Vec<Self> = Vec::new();
        for item in raw.iter().flat_map(|s| s.split(',')) {
            if item.trim().is_empty() {
                continue;
            }
            let ep = Self::parse(item, tls_by_default)?;
            if !out.contains(&ep) {
                out.push(ep);
            }
        }
        if out.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        Ok(out)
    }

    /// Whether this endpoint speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host part, as written (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Hides anything between the scheme and an `@`, so a password pasted into a URL never reaches a message.
fn redact_userinfo(raw: &str) -> String {
    match raw.rsplit_once('@') {
        Some((before, after)) => {
            let scheme = before.split_once("://").map(|(s, _)| s).unwrap_or("");
            if scheme.is_empty() {
                format!("***@{after}")
            } else {
                format!("{scheme}://***@{after}")
            }
        }
        None => raw.to_string(),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn parses_full_urls() {
        let e = Endpoint::parse("https://127.0.0.2:2379", false).unwrap();
        assert!(e.is_tls());
        assert_eq!(e.to_string(), "https://127.0.0.2:2379");
        let e = Endpoint::parse("http://[::1]:2379/", true).unwrap();
        assert!(!e.is_tls());
        assert_eq!(e.to_string(), "http://[::1]:2379");
    }

    #[test]
    fn bare_host_port_follows_tls_default() {
        assert!(Endpoint::parse("10.0.0.1:2379", true).unwrap().is_tls());
        assert!(!Endpoint::parse("10.0.0.1:2379", false).unwrap().is_tls());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "https://",
            "https://host",
            "https://host:notaport",
            "https://host:70000",
            "https://host:0",
            "ftp://host:1",
            "https://host:2379/v3",
            "https://user:pw@host:2379",
            "https://ho st:2379",
            "https://[::1:2379",
        ] {
            let err = Endpoint::parse(bad, true).unwrap_err().to_string();
            assert!(err.starts_with("invalid endpoint"), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn userinfo_never_reaches_the_message() {
        let err = Endpoint::parse("https://root:s3cret@host:2379", true)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("https://***@host:2379"), "{err}");
    }

    #[test]
    fn list_splits_commas_and_dedups() {
        let l = Endpoint::parse_list(
            &["https://a:1,https://b:2".into(), "https://a:1".into()],
            false,
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert!(Endpoint::parse_list(&[",".into()], false).is_err());
    }
}
