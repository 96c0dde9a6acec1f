//! cpkeep keeps a kubeadm high-availability control plane alive on its day-2 critical path:
//! etcd quorum checks, streamed snapshots, native restore and certificate renewal.
//!
//! The library is split by domain. Each domain module owns its types and logic, takes typed options,
//! returns typed (serialisable) results and typed errors, and never prints: only `cli` talks to the user.

pub mod bolt;
pub mod bootstrap;
pub mod certs;
pub mod cli;
pub mod etcd;
pub mod fsx;
mod http1;
#[cfg(test)]
mod mutate;
pub mod restore;
pub mod sandbox;
pub mod snapshot;
pub mod staticpod;
pub mod store;
pub mod testhooks;
pub mod units;

/// The version of this build, as `cpkeep version` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
