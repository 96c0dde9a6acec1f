//! etcd's backend file format (bbolt): page layout, a streaming scanner that learns a snapshot's
//! revision while it passes by, a random-access reader, a structural check, and etcd's schema on
//! top (decoded revisions, key-values, leases, members, and `etcdutl snapshot status`).
//! Read-only on its input; corruption is an error naming the page, never a panic.
//!
//! The byte layout is described in docs/FORMAT.md; each decoder repeats its table.

mod cache;
pub mod check;
pub mod crc32c;
pub mod element;
pub mod error;
pub mod etcd;
pub mod freelist;
#[doc(hidden)]
/// Fuzz target bodies: in tests and cargo-fuzz builds only, never in the binary.
#[cfg(any(test, fuzzing))]
pub mod fuzz_targets;
pub mod meta;
pub mod page;
pub mod proto;
pub mod reader;
pub mod schema;
pub mod source;
pub mod stream;
mod summary;
pub mod writer;

#[cfg(test)]
mod tests;

pub use check::{check, check_visiting, CheckReport, Problem, ProblemKind, Visit, Visitor};
pub use error::{BoltError, Defect, Fault, MetaDefect};
pub use etcd::{status, EtcdError, EtcdStatus};
pub use reader::{Bucket, Cursor, Db, DbInfo, Entry, Iter, OpenOptions};
pub use source::PageSource;
pub use stream::{SnapshotFacts, SnapshotScanner};
pub use writer::{AppendTo, BoltWriter, Spine, WriteError, WriteSummary, WriterOptions};
