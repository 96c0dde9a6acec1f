//! Hooks that let tests drive the library deterministically: failpoints (make an operation fail, or
//! pause the process, at a named point) and the clock that snapshot IDs and move-aside stamps are
//! made from. They exist only in test builds and builds with the `test-support` feature (which the
//! crate's own dev-dependency on itself turns on for every test target): in any other build
//! [`failpoint`] is `Ok(())` and [`now`] is the system clock, and no environment variable is read.
//!
//! A failpoint is armed for a scope (a path: the data dir a test restores into), so tests running
//! in parallel in one process never trip each other's; the binary's integration tests arm them with
//! `CPKEEP_TEST_FAILPOINTS=point=action[,point=action]` (every scope), and fix the clock with
//! `CPKEEP_TEST_NOW=<RFC 3339 time>`.

use std::path::Path;

use chrono::{DateTime, Utc};

/// What an armed failpoint does when reached.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The operation fails with an I/O error naming the failpoint.
    Fail,
    /// The process says so on stderr (`cpkeep: failpoint <point> reached`) and stops there for
    /// good, so that a test can kill it at a known point.
    Pause,
}

/// Reached at `point` while working on `scope`: `Err` when a test armed it to fail.
pub(crate) fn failpoint(point: &'static str, scope: &Path) -> std::io::Result<()> {
    #[cfg(any(test, feature = "test-support"))]
    {
        imp::reached(point, scope)
    }
    #[cfg(not(any(test, feature = "test-support")))]
    {
        let _ = (point, scope);
        Ok(())
    }
}

/// The time: `CPKEEP_TEST_NOW` in test builds when set, else the system clock.
pub fn now() -> DateTime<Utc> {
    #[cfg(any(test, feature = "test-support"))]
    {
        if let Some(t) = std::env::var("CPKEEP_TEST_NOW")
            .ok()
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
        {
            return t.with_timezone(&Utc);
        }
    }
    Utc::now()
}

/// Whether the inventory may use loopback addresses: `CPKEEP_TEST_ALLOW_LOOPBACK=1` in test builds
/// (the SSH test nodes live on 127.77.K.x), never in a release build.
pub(crate) fn allow_loopback() -> bool {
    #[cfg(any(test, feature = "test-support"))]
    {
        std::env::var_os("CPKEEP_TEST_ALLOW_LOOPBACK").is_some_and(|v| v == "1")
    }
    #[cfg(not(any(test, feature = "test-support")))]
    {
        false
    }
}

// Arming in-process is for the library's own tests; the binary's tests arm through the environment.
#[cfg(test)]
pub use imp::arm;

#[cfg(any(test, feature = "test-support"))]
mod imp {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::Action;

    static ARMED: Mutex<Vec<(&'static str, PathBuf, Action)>> = Mutex::new(Vec::new());

    /// An armed failpoint; disarmed when dropped.
    #[cfg(test)]
    #[must_use = "the failpoint is disarmed when this is dropped"]
    pub struct Armed {
        point: &'static str,
        scope: PathBuf,
    }

    #[cfg(test)]
    impl Drop for Armed {
        fn drop(&mut self) {
            if let Ok(mut armed) = ARMED.lock() {
                armed.retain(|(p, s, _)| !(*p == self.point && *s == self.scope));
            }
        }
    }

    /// Arms `point` for work on `scope` (in this process).
    #[cfg(test)]
    pub fn arm(point: &'static str, scope: &Path, action: Action) -> Armed {
        if let Ok(mut armed) = ARMED.lock() {
            armed.push((point, scope.to_path_buf(), action));
        }
        Armed {
            point,
            scope: scope.to_path_buf(),
        }
    }

    fn from_env(point: &str) -> Option<Action> {
        let spec = std::env::var("CPKEEP_TEST_FAILPOINTS").ok()?;
        spec.split(',').find_map(|item| {
            let (p, a) = item.split_once('=')?;
            (p.trim() == point).then_some(())?;
            match a.trim() {
                "fail" => Some(Action::Fail),
                "pause" => Some(Action::Pause),
                _ => None,
            }
        })
    }

    pub(super) fn reached(point: &'static str, scope: &Path) -> std::io::Result<()> {
        let action = ARMED
            .lock()
            .ok()
            .and_then(|armed| {
                armed
                    .iter()
                    .find(|(p, s, _)| *p == point && s == scope)
                    .map(|(_, _, a)| *a)
            })
            .or_else(|| from_env(point));
        match action {
            None => Ok(()),
            Some(Action::Fail) => Err(std::io::Error::other(format!(
                "injected failure at failpoint {point}"
            ))),
            Some(Action::Pause) => {
                eprintln!("cpkeep: failpoint {point} reached");
                loop {
                    std::thread::park();
                }
            }
        }
    }
}
