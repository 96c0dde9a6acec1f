//! Native etcd restore: what `etcdutl snapshot restore` writes besides the db, without Go tools.
//!
//! - [`membership`]: `--initial-cluster` parsing, member and cluster IDs, member JSON, and the
//!   updates a restore applies to the bbolt db (`members`, `members_removed`, `meta`);
//! - [`ids`]: etcd's member and cluster ID derivations;
//! - [`wal`]: the first WAL segment (`member/wal/0000000000000000-0000000000000000.wal`);
//! - [`raftsnap`]: the raft snapshot file (`member/snap/<term>-<index>.snap`) with the v2 store;
//! - [`raftpb`]: the protobuf messages both are made of;
//! - [`rewrite`]: the fresh bbolt db with the new membership (and a revision bump);
//! - [`pitr`]: which snapshot and log segments reach a target revision or time;
//! - [`replay`]: a revision log's events written into the rewrite's `key` bucket at their own
//!   revisions (point-in-time restore), and the leases live keys still reference;
//! - [`inplace`]: the same changes committed in place to a db downloaded from a store;
//! - [`manifest`]: kubeadm's etcd static pod manifest, read for the flags a restore needs;
//! - [`run`]: plan and apply a whole restore, safely (build in `.part`, rename last, roll back
//!   every step on failure);
//! - [`kubeadm`]: a whole control-plane node (`--kubeadm`): the etcd static pod parked, the data
//!   restored, the pod put back and waited for;
//! - [`drill`]: the restore drill (`snapshot verify --restore-test`): restore into a temp dir and
//!   boot real etcd on it;
//! - [`error`]: the restore's errors and their failure classes.
//!
//! Everything is checked byte for byte against what etcdutl 3.5.30 wrote (fixtures in
//! `fixtures/etcdutl-3.5.30-restore`). This module never prints.

pub mod drill;
pub mod error;
/// Fuzz target bodies: in tests and cargo-fuzz builds only, never in the binary.
#[cfg(any(test, fuzzing))]
pub mod fuzz_targets;
pub mod ids;
pub mod inplace;
pub mod kubeadm;
pub mod manifest;
pub mod membership;
pub mod pitr;
pub mod raftpb;
pub mod raftsnap;
pub mod replay;
pub mod rewrite;
pub mod run;
pub mod wal;

pub use error::RestoreError;
pub use membership::{DbPut, DbUpdates, InitialCluster, Member, Membership};
pub use raftsnap::{encode_snap, write_snap};
pub use rewrite::{Bump, RewriteReport};
pub use run::{apply, plan, RestoreOptions, RestorePlan, RestoreReport, RestoreSource};
pub use wal::{encode_wal, write_wal, WalSummary};
#[cfg(test)]
mod tests;
