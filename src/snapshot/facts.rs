//! Facts about the db learned while it streams by (revision, consistent index), through the bolt
//! module's sequential scanner, in the shape the manifest needs.

use serde::Serialize;

use crate::bolt::{BoltError, SnapshotScanner};

/// What the snapshot's db says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DbFacts {
    /// Main revision of the last key in the `key` bucket (what `etcdutl snapshot status` reports).
    pub revision: Option<i64>,
    pub consistent_index: Option<u64>,
    pub term: Option<u64>,
    pub page_size: Option<u32>,
    /// Set when one of the two meta pages was invalid and the other was used.
    pub meta_note: Option<String>,
}

/// Feeds db bytes to the bbolt scanner and keeps its first error, so a corrupt db fails the backup
/// even though its sha256 trailer (computed by etcd over the same bytes) matches.
pub struct FactsScanner {
    scanner: SnapshotScanner,
    error: Option<BoltError>,
}

impl FactsScanner {
    pub fn new() -> Self {
        Self {
            scanner: SnapshotScanner::new(),
            error: None,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.scanner.feed(bytes) {
                self.error = Some(e);
            }
        }
    }

    pub fn finish(self) -> Result<DbFacts, String> {
        if let Some(e) = self.error {
            return Err(e.to_string());
        }
        let f = self.scanner.finish().map_err(|e| e.to_string())?;
        Ok(DbFacts {
            revision: f.revision,
            consistent_index: f.consistent_index,
            term: f.term,
            page_size: Some(f.page_size),
            meta_note: f.meta_note,
        })
    }
}

impl Default for FactsScanner {
    fn default() -> Self {
        Self::new()
    }
}
