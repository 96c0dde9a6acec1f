//! etcd's backend file format (bbolt): page layout, a streaming scanner that learns a snapshot's
//! revision while it passes by, and (later) a random-access reader, a fresh-file writer and a check.
//! Read-only on its input; corruption is an error naming the page, never a panic.
//!
//! The byte layout is described in docs/FORMAT.md; each decoder repeats its table.

pub mod element;
pub mod error;
pub mod meta;
pub mod page;
pub mod schema;
pub mod stream;
mod summary;

#[cfg(test)]
mod tests;

pub use error::{BoltError, Defect, Fault, MetaDefect};
pub use stream::{SnapshotFacts, SnapshotScanner};
