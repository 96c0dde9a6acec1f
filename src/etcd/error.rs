//! Errors of the etcd module. Each names the endpoint or file it is about and the cause, in words meant
//! for an operator; none carries a password or key material.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while preparing a connection to etcd or asking it something.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("no endpoints given")]
    NoEndpoints,

    #[error("cannot read {what} {}: {source}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} {} is not usable: {reason}", path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error("{0}")]
    Config(String),

    #[error("{endpoint}: {cause}")]
    Request { endpoint: String, cause: String },

    #[error("{endpoint}: no answer to {operation} within {}", humantime::format_duration(*after))]
    Timeout {
        endpoint: String,
        operation: &'static str,
        after: Duration,
    },

    #[error("no endpoint answered: {0}")]
    NoneAnswered(String),
}

impl EtcdError {
    /// Bad connection settings and an unreachable cluster alike leave cpkeep unable to judge or
    /// act: exit 3, as `cluster health` reports UNKNOWN.
    pub fn class(&self) -> crate::failure::FailureClass {
        match self {
            EtcdError::InvalidEndpoint { .. }
            | EtcdError::NoEndpoints
            | EtcdError::ReadFile { .. }
            | EtcdError::BadPem { .. }
            | EtcdError::Config(_)
            | EtcdError::Request { .. }
            | EtcdError::Timeout { .. }
            | EtcdError::NoneAnswered(_) => crate::failure::FailureClass::Unusable,
        }
    }
}

/// Renders an etcd-client error with its whole cause chain on one line, without repeating itself.
///
/// tonic wraps transport failures several levels deep ("transport error" → "error trying to connect" →
/// "invalid peer certificate: UnknownIssuer"); the useful words are at the bottom, so all levels are kept
/// and the generic ones dropped.
pub(crate) fn describe_client_error(err: &etcd_client::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    // etcd-client's error does not expose its inner error as a source; start the chain one level down.
    let mut source: Option<&(dyn std::error::Error + 'static)> = match err {
        etcd_client::Error::GRpcStatus(status) => {
            let msg = status.message().trim();
            if msg.is_empty() {
                parts.push(format!("{:?}", status.code()).to_lowercase());
            } else {
                parts.push(msg.to_string());
            }
            std::error::Error::source(status)
        }
        etcd_client::Error::TransportError(e) => Some(e),
        etcd_client::Error::IoError(e) => Some(e),
        other => {
            parts.push(other.to_string());
            None
        }
    };
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let cause = plain_words(&join_chain(parts));
    match hint(&cause) {
        Some(h) => format!("{cause} ({h})"),
        None => cause,
    }
}

/// rustls and tower name their failures as Rust identifiers (`invalid peer certificate: BadSignature`,
/// `Timeout expired`); say them in words, keeping the original term in the hint's match.
fn plain_words(cause: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        (
            "invalid peer certificate: BadSignature",
            "the member's certificate has a bad signature (BadSignature)",
        ),
        (
            "invalid peer certificate: UnknownIssuer",
            "the member's certificate has an unknown issuer (UnknownIssuer)",
        ),
        (
            "invalid peer certificate: Expired",
            "the member's certificate has expired (Expired)",
        ),
        (
            "keys may not be consistent: KeyMismatch",
            "the client certificate and key do not belong together (KeyMismatch)",
        ),
        ("Timeout expired", "timed out"),
    ];
    let mut out = cause.to_string();
    for (from, to) in WORDS {
        out = out.replace(from, to);
    }
    out
}

/// What a low-level cause usually means for an operator pointing cpkeep at etcd.
fn hint(cause: &str) -> Option<&'static str> {
    let c = cause.to_ascii_lowercase();
    if c.contains("fatal alert")
        && (c.contains("unknownca")
            || c.contains("badcertificate")
            || c.contains("certificaterequired"))
    {
        Some("the member rejected the client certificate: --cert/--key must be signed by the etcd CA")
    } else if c.contains("badsignature") {
        Some("the member's certificate names the CA given with --cacert but was not signed by its key: the CA was regenerated, or --cacert is another cluster's")
    } else if c.contains("keymismatch") || c.contains("keys may not be consistent") {
        Some("--key is not the private key of --cert")
    } else if c.contains("timeout expired") || c.contains("timed out") {
        Some("nothing answered within --timeout: a wrong address or port, a firewall dropping packets, or an overloaded member")
    } else if c.contains("unknownissuer") {
        Some("the member's certificate is not signed by the CA given with --cacert")
    } else if c.contains("notvalidforname") {
        Some("the member's certificate does not name this address in its SANs")
    } else if c.contains("expired") && c.contains("certificate") {
        Some("a certificate has expired: see `cpkeep certs check`")
    } else if c.contains("invalidcontenttype") || c.contains("corrupt message") {
        Some("the endpoint does not speak TLS: use http:// or the TLS port")
    } else if c.contains("broken pipe")
        || c.contains("connection reset")
        || c.contains("connection closed")
    {
        Some(
            "the endpoint closed the connection: it is not an etcd client port, or it rejected the \
             client certificate (--cert/--key must be signed by the etcd CA)",
        )
    } else if c.contains("h2 protocol error") || c.contains("frame with invalid size") {
        Some("the endpoint is not an etcd client port (it does not speak gRPC)")
    } else {
        None
    }
}

/// Joins cause-chain messages with ": ", skipping empty ones, exact repeats and those another part
/// already contains (tonic often repeats the inner message inside the outer one).
pub(crate) fn join_chain(parts: Vec<String>) -> String {
    const GENERIC: &[&str] = &[
        "transport error",
        "grpc-status header missing, mapped from HTTP status code 200",
    ];
    let mut kept: Vec<String> = Vec::new();
    for p in parts {
        let p = p.trim().trim_start_matches("status: ").to_string();
        if p.is_empty() || GENERIC.contains(&p.as_str()) {
            continue;
        }
        if kept.iter().any(|k| k.contains(&p)) {
            continue;
        }
        kept.retain(|k| !p.contains(k.as_str()));
        kept.push(p);
    }
    if kept.is_empty() {
        "transport error".to_string()
    } else {
        kept.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::join_chain;

    #[test]
    fn chain_drops_repeats_and_generic_levels() {
        let got = join_chain(vec![
            "transport error".into(),
            "error trying to connect".into(),
            "tcp connect error: Connection refused (os error 111)".into(),
            "Connection refused (os error 111)".into(),
        ]);
        assert_eq!(
            got,
            "error trying to connect: tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn rustls_and_tower_identifiers_become_words_with_a_hint() {
        let said =
            super::plain_words("error trying to connect: invalid peer certificate: BadSignature");
        assert_eq!(
            said,
            "error trying to connect: the member's certificate has a bad signature (BadSignature)"
        );
        assert!(super::hint(&said).unwrap().contains("regenerated"));
        let said = super::plain_words("Timeout expired");
        assert_eq!(said, "timed out");
        assert!(super::hint(&said).unwrap().contains("--timeout"));
        assert!(super::hint("keys may not be consistent: KeyMismatch")
            .unwrap()
            .contains("--key"));
    }

    #[test]
    fn chain_of_only_generic_words_still_says_something() {
        assert_eq!(
            join_chain(vec!["transport error".into()]),
            "transport error"
        );
    }
}
