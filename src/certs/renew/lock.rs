//! One renewal at a time per cert-dir: an exclusive `flock` on the cert-dir itself, held from the
//! plan (which reads every file) to the end of `apply` or `--recover` (which replace them). Two runs at
//! once — two cron jobs, an operator beside a timer — could otherwise both plan from the same files
//! and both replace them, and a key of one run could end up beside the certificate of the other.
//!
//! The second run is refused at once rather than made to wait: a renewal takes seconds, a waiting run
//! would then plan again from files the first one just renewed, and a scheduler is better served by a
//! clear refusal (exit 2, nothing written) than by a run that hangs behind another. `flock` locks die
//! with their process, so a killed run never leaves a stale lock (its journal says what it did).

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use super::error::RenewError;

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct RenewLock {
    _dir: File,
    pub dir: PathBuf,
}

impl RenewLock {
    /// Locks `cert_dir`, or says that another run holds it.
    pub fn acquire(cert_dir: &Path) -> Result<Self, RenewError> {
        let failed = |error: std::io::Error| RenewError::Lock {
            dir: cert_dir.to_path_buf(),
            error,
        };
        // A directory opens read-only, and flock works on its descriptor like on a file's.
        let dir = File::open(cert_dir).map_err(failed)?;
        match dir.try_lock() {
            Ok(()) => Ok(RenewLock {
                _dir: dir,
                dir: cert_dir.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(RenewError::Locked {
                dir: cert_dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RenewLock::acquire(dir.path()).unwrap();
        let e = RenewLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(e, RenewError::Locked { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with("another `cpkeep certs renew` is running on "));
        drop(first);
        RenewLock::acquire(dir.path()).unwrap();
    }
}
