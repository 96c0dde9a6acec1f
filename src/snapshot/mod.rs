//! The snapshot pipeline and catalog: stream a member's snapshot (verified against etcd's sha256
//! trailer, scanned for its revision) through zstd and age into a store, with its manifest written
//! last; list, fetch, save and prune stored snapshots.
//!
//! Never prints (progress goes through [`Progress`]), never stages a snapshot on local disk, and never
//! leaves anything that looks like a complete snapshot unless it is one.

mod backup;
mod catalog;
mod decode;
mod encode;
mod error;
mod facts;
mod fetch;
mod inspect;
mod manifest;
mod progress;
mod retention;
mod save;
mod source;
mod stream;
mod trailer;

pub use backup::{backup, BackupOptions, BackupReport};
pub use catalog::{catalog, Catalog, SnapshotEntry};
pub use decode::{decode_file, detect_encoding, encoding_of, trailer_of_file, FileEncoding};
pub use encode::Encoding;
pub use error::{FailureClass, SnapshotError};
pub use facts::DbFacts;
pub use fetch::{fetch_into, fetch_to_file, load_identities, Fetched};
pub use inspect::{
    status_of_file, verify_file, DeepReport, StatusReport, TrailerState, Usage, VerifyReport,
};
pub use manifest::{id_time, make_id, CompressionInfo, CompressionKind, EncryptionInfo, Manifest};
pub use progress::{NoProgress, Progress};
pub use retention::{
    apply as apply_prune, plan as plan_prune, Kept, PrunePlan, PruneReport, Removal,
    RetentionPolicy,
};
pub use save::{save, SaveReport};
pub use source::{choose_source, standby, Source, Standby};
pub use stream::{stream_snapshot, StreamControl, Streamed};
pub use trailer::{TrailerCheck, TrailerOutcome, TRAILER_LEN};
