//! The revision log of `cpkeep backup --follow` (issue 16): the segment format
//! (framed, checksummed records of etcd revisions and lease tables), a checking writer and reader,
//! and the segment manifest with the check of a chain of them. The byte layout is in
//! docs/FORMAT.md, "The revision log segment".
//!
//! The format files own bytes and their rules only: they never talk to etcd or a store and never
//! compress or encrypt. `stored` alone puts segments into a store and fetches them back (encoded
//! with the snapshots' zstd and age); `follow` is the writer of `backup --follow` (a snapshot,
//! then etcd's watch cut into segments). Nothing here prints. Corrupt input is a [`RevlogError`]
//! naming the offset or the segment, never a panic.

pub mod error;
pub mod follow;
#[doc(hidden)]
/// Fuzz target bodies: in tests and cargo-fuzz builds only, never in the binary.
#[cfg(any(test, fuzzing))]
pub mod fuzz_targets;
pub mod manifest;
pub mod record;
pub mod segment;
pub mod stored;
pub mod window;

#[cfg(test)]
mod tests;

pub use error::{ChainBreak, RevlogError};
pub use manifest::{
    boot_revision, check_chain, ChainReport, Previous, SegmentManifest, StoredObject,
};
pub use record::{Event, EventKind, LeaseEntry, LeaseTable, RevisionRecord};
pub use segment::{read_segment, Segment, SegmentReader, SegmentSummary, SegmentWriter};
pub use stored::{fetch_segment, list_segments, put_segment, ListedSegment, StoredLogError};
pub use window::{coverage, reach, Coverage, Gap, Reach, SnapshotPoint, Window};
