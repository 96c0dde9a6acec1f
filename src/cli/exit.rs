//! Exit codes, shared by every command and documented in README.md:
//! 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (could not evaluate: bad flags, unreadable files, nothing
//! reachable). Commands that change things use 0 for success and the same codes for failures.

use crate::failure::FailureClass;

/// The process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Exit {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl From<crate::etcd::Verdict> for Exit {
    fn from(v: crate::etcd::Verdict) -> Self {
        match v.exit_code() {
            0 => Exit::Ok,
            1 => Exit::Warning,
            2 => Exit::Critical,
            _ => Exit::Unknown,
        }
    }
}

/// An error that carries its own exit code (for failures that are not "cannot evaluate").
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: Exit,
    pub message: String,
}

/// The exit code for an error that ended a command.
pub fn code_of(err: &anyhow::Error) -> Exit {
    err.downcast_ref::<ExitError>()
        .map(|e| e.code)
        .unwrap_or(Exit::Unknown)
}

/// The error and its causes on one line, each cause once, as ripgrep prints them. A cause already
/// said in other words of the OS (`No such file or directory` vs `... (os error 2)`) is said once.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        let bare = without_os_error(&text);
        let said =
            |p: &String| p.contains(&text) || p.to_lowercase().contains(&bare.to_lowercase());
        if !bare.is_empty() && !parts.iter().any(said) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
fn without_os_error(text: &str) -> &str {
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => &text[..i],
        _ => text,
    }
}

/// The exit code of a failure class: 1 failed, 2 refused (quorum lost, something in the way),
/// 3 could not start.
pub fn class_code(class: FailureClass) -> Exit {
    match class {
        FailureClass::Failed => Exit::Warning,
        FailureClass::Refused => Exit::Critical,
        FailureClass::Unusable => Exit::Unknown,
    }
}

/// An error with the exit code of its class: the one place where a failure becomes an exit code.
pub fn classified(class: FailureClass, e: &dyn std::fmt::Display) -> anyhow::Error {
    ExitError {
        code: class_code(class),
        message: e.to_string(),
    }
    .into()
}

/// A snapshot failure with the exit code of its class.
pub fn snapshot_failure(e: crate::snapshot::SnapshotError) -> anyhow::Error {
    classified(e.class(), &e)
}

#[cfg(test)]
mod tests {
    use super::{code_of, snapshot_failure, Exit};
    use crate::snapshot::SnapshotError;
    use crate::store::StoreError;

    /// A store failure while the work ran (an aborted upload) exits 1, one refused at the start 3:
    /// a backup that failed mid-way must not look like one that could not start.
    #[test]
    fn store_failures_exit_by_class() {
        let cases = [
            (StoreError::Failed("upload aborted".into()), Exit::Warning),
            (
                StoreError::Config("empty S3 bucket name".into()),
                Exit::Unknown,
            ),
            (
                StoreError::BadUrl {
                    url: "x".into(),
                    reason: "y".into(),
                },
                Exit::Unknown,
            ),
            (
                StoreError::Remote {
                    store: "s3://b".into(),
                    op: "upload part",
                    key: "k".into(),
                    code: "InternalError".into(),
                    message: "m".into(),
                },
                Exit::Warning,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            assert_eq!(
                code_of(&snapshot_failure(SnapshotError::Store(e))),
                want,
                "{text}"
            );
        }
        let refused = SnapshotError::QuorumLost("1 of 3 healthy".into());
        assert_eq!(code_of(&snapshot_failure(refused)), Exit::Critical);
    }

    #[test]
    fn a_cause_is_said_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = anyhow::Error::new(io).context("/x/ca.crt: No such file or directory");
        assert_eq!(
            super::one_line(&err),
            "/x/ca.crt: No such file or directory"
        );
        let err = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(super::one_line(&err), "outer: inner cause");
    }
}
