//! cpkeep keeps a kubeadm high-availability control plane alive on its day-2 critical path:
//! etcd quorum checks, streamed snapshots, native restore and certificate renewal.
//!
//! The library is split by domain. Each domain module owns its types and logic, takes typed options,
//! returns typed (serialisable) results and typed errors, and never prints: only the command line
//! ([`run_cli`]) talks to the user. Its parsing and rendering, and the file and unit helpers the
//! domains share, are private to the crate.

pub mod bolt;
pub mod bootstrap;
pub mod certs;
mod cli;
pub mod daemon;
pub mod etcd;
pub mod failure;
pub(crate) mod fsx;
mod http1;
#[cfg(test)]
mod mutate;
pub mod remote;
pub mod restore;
pub mod revlog;
pub mod sandbox;
pub mod snapshot;
pub mod staticpod;
pub mod store;
pub(crate) mod testhooks;
mod tls_peek;
pub(crate) mod units;

/// Runs the `cpkeep` command line on the process arguments and returns the exit code (0 OK,
/// 1 WARNING/failed, 2 CRITICAL/refused, 3 UNKNOWN/unusable input; see README.md).
pub fn run_cli() -> std::process::ExitCode {
    std::process::ExitCode::from(cli::main().as_u8())
}

/// The version of this build, as `cpkeep version` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
