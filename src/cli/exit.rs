//! Exit codes, shared by every command and documented in README.md:
//! 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (could not evaluate: bad flags, unreadable files, nothing
//! reachable). Commands that change things use 0 for success and the same codes for failures.

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

/// The error and its causes on one line, each cause once, as ripgrep prints them.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The exit code of a failure class: 1 failed, 2 refused (quorum lost, something in the way),
/// 3 could not start.
pub fn class_code(class: crate::snapshot::FailureClass) -> Exit {
    use crate::snapshot::FailureClass;
    match class {
        FailureClass::Failed => Exit::Warning,
        FailureClass::Refused => Exit::Critical,
        FailureClass::Unusable => Exit::Unknown,
    }
}

/// The exit code of a certificate command's failure class: 1 failed, 2 refused (an external CA, an
/// interrupted or concurrent renewal), 3 bad input.
pub fn certs_class_code(class: crate::certs::error::ErrorClass) -> Exit {
    use crate::certs::error::ErrorClass;
    match class {
        ErrorClass::Failed => Exit::Warning,
        ErrorClass::Refused => Exit::Critical,
        ErrorClass::BadInput => Exit::Unknown,
    }
}

/// Maps a snapshot failure to its exit code ([`class_code`]).
pub fn snapshot_failure(e: crate::snapshot::SnapshotError) -> anyhow::Error {
    ExitError {
        code: class_code(e.class()),
        message: e.to_string(),
    }
    .into()
}
