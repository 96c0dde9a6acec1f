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
    join_chain(parts)
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
    fn chain_of_only_generic_words_still_says_something() {
        assert_eq!(
            join_chain(vec!["transport error".into()]),
            "transport error"
        );
    }
}
