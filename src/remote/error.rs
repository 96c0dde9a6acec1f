//! What can go wrong on a node, one line naming the node and the cause.

use std::time::Duration;

use crate::failure::FailureClass;

/// A failure to reach a node or to run something on it. Commands and their output are masked.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("node {node}: unreachable over ssh: {cause}")]
    Unreachable { node: String, cause: String },
    #[error(
        "node {node}: host key verification failed: add the node's key to known_hosts ({cause})"
    )]
    HostKey { node: String, cause: String },
    #[error("node {node}: ssh authentication refused for user {user:?}: {cause}")]
    AuthRefused {
        node: String,
        user: String,
        cause: String,
    },
    #[error("node {node}: no ssh connection within {}", humantime::format_duration(*after))]
    Timeout { node: String, after: Duration },
    #[error("node {node}: ssh failed: {cause}")]
    Ssh { node: String, cause: String },
    #[error("node {node}: connection lost while running {command:?}: {cause}")]
    Lost {
        node: String,
        command: String,
        cause: String,
    },
    #[error("node {node}: cannot run {command:?} on this machine: {cause}")]
    Local {
        node: String,
        command: String,
        cause: String,
    },
    #[error(
        "node {node}: {command:?} exited with status {status}{}",
        stderr_suffix(stderr)
    )]
    Command {
        node: String,
        command: String,
        status: i32,
        /// The last lines of its standard error, masked.
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl RemoteError {
    /// Connecting failed (unreachable, host key, authentication, timeout) is unusable input, like
    /// an etcd endpoint that does not answer; a command that failed or a connection lost midway
    /// is work that failed.
    pub fn class(&self) -> FailureClass {
        match self {
            RemoteError::Unreachable { .. }
            | RemoteError::HostKey { .. }
            | RemoteError::AuthRefused { .. }
            | RemoteError::Timeout { .. }
            | RemoteError::Ssh { .. } => FailureClass::Unusable,
            RemoteError::Lost { .. } | RemoteError::Local { .. } | RemoteError::Command { .. } => {
                FailureClass::Failed
            }
        }
    }

    /// The node the error is about.
    pub fn node(&self) -> &str {
        match self {
            RemoteError::Unreachable { node, .. }
            | RemoteError::HostKey { node, .. }
            | RemoteError::AuthRefused { node, .. }
            | RemoteError::Timeout { node, .. }
            | RemoteError::Ssh { node, .. }
            | RemoteError::Lost { node, .. }
            | RemoteError::Local { node, .. }
            | RemoteError::Command { node, .. } => node,
        }
    }

    /// Sorts what `ssh` said when the master connection failed.
    pub(crate) fn from_ssh(node: &str, user: &str, said: &str) -> Self {
        let node = node.to_string();
        let cause = last_lines(said, 2).replace('\n', "; ");
        let lower = said.to_ascii_lowercase();
        if lower.contains("host key verification failed")
            || lower.contains("remote host identification has changed")
            || lower.contains("host key is known")
        {
            RemoteError::HostKey { node, cause }
        } else if lower.contains("permission denied") || lower.contains("too many authentication") {
            RemoteError::AuthRefused {
                node,
                user: user.to_string(),
                cause,
            }
        } else if lower.contains("timed out")
            || lower.contains("connection refused")
            || lower.contains("no route to host")
            || lower.contains("network is unreachable")
            || lower.contains("could not resolve")
            || lower.contains("name or service not known")
            || lower.contains("connection closed")
            || lower.contains("connection reset")
        {
            RemoteError::Unreachable { node, cause }
        } else {
            RemoteError::Ssh { node, cause }
        }
    }
}

/// The last `n` non-empty lines of `text`, trimmed.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_messages_are_sorted_by_cause() {
        let e = RemoteError::from_ssh("cp1", "root", "Host key verification failed.\r\n");
        assert!(matches!(e, RemoteError::HostKey { .. }));
        assert!(
            e.to_string().contains("add the node's key to known_hosts"),
            "{e}"
        );
        let e = RemoteError::from_ssh(
            "cp1",
            "root",
            "root@10.0.0.1: Permission denied (publickey).",
        );
        assert!(matches!(e, RemoteError::AuthRefused { .. }), "{e}");
        let e = RemoteError::from_ssh(
            "cp1",
            "root",
            "ssh: connect to host 10.0.0.1 port 22: Connection refused",
        );
        assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
        assert_eq!(e.class(), FailureClass::Unusable);
        assert_eq!(e.node(), "cp1");
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 3), "");
    }
}
