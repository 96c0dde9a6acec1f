//! How a failure is reported, decided once by the error's type: every domain error has one
//! exhaustive `class()` returning a [`FailureClass`], and `cli::exit` alone turns the class into an
//! exit code (1 failed, 2 refused, 3 unusable). Never prints.

/// What kind of failure ended a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The work was attempted and failed (a stream, an upload, an integrity check, a write).
    Failed,
    /// Refused on purpose (quorum lost, something in the way).
    Refused,
    /// Could not start: bad flags, unreadable or unusable input, nothing reachable.
    Unusable,
}
