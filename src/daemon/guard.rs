//! One flag per job: a run starts only when it can take the flag, and gives it back when it ends
//! (dropped, panicked or aborted alike). tokio-cron-scheduler starts a job at every tick even while
//! its previous run is still going; the guard turns such a tick into a skipped run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Guard {
    busy: Arc<AtomicBool>,
}

/// Held for the length of one run.
#[derive(Debug)]
pub struct GuardPass {
    busy: Arc<AtomicBool>,
}

impl Guard {
    /// The pass for a new run, or `None` while a run is in progress.
    pub fn try_enter(&self) -> Option<GuardPass> {
        self.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| GuardPass {
                busy: Arc::clone(&self.busy),
            })
    }

    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

impl Drop for GuardPass {
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_until_the_first_ends() {
        let g = Guard::default();
        let first = g.try_enter();
        assert!(first.is_some());
        assert!(g.busy());
        assert!(g.try_enter().is_none());
        drop(first);
        assert!(!g.busy());
        assert!(g.try_enter().is_some());
    }

    #[tokio::test]
    async fn an_aborted_run_releases_the_guard() {
        let g = Guard::default();
        let pass = g.try_enter();
        let handle = tokio::spawn(async move {
            let _pass = pass;
            std::future::pending::<()>().await;
        });
        handle.abort();
        let _ = handle.await;
        assert!(g.try_enter().is_some());
    }
}
