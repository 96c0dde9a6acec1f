//! Progress reporting as a trait, so the library never prints: the CLI plugs in a progress bar or log
//! lines, a daemon could plug in metrics, tests use [`NoProgress`].

/// Receives progress of a long transfer.
pub trait Progress: Send + Sync {
    /// A stage begins (`total` bytes when known).
    fn stage(&self, name: &str, total: Option<u64>);
    /// `bytes` more bytes went through the current stage.
    fn advance(&self, bytes: u64);
    /// The current stage ended.
    fn done(&self, summary: &str);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn done(&self, _summary: &str) {}
}
