//! A real etcd cluster on loopback, for `cpkeep demo` and the integration tests (and, in test
//! builds only, a real S3 server): a kubeadm-layout PKI,
//! one to five members each on its own loopback address (127.0.0.1, 127.0.0.2, …) so SANs and peer URLs
//! look like a real control plane, and the faults the checks must survive (kill, SIGSTOP, a member
//! added, a learner, a small quota).
//!
//! The sandbox only ever binds 127.0.0.0/8 addresses, owns every process it starts and kills them when
//! dropped. It never prints; callers decide what to show.

mod binaries;
mod cluster;
mod error;
mod pki;
mod ports;
/// SeaweedFS S3 on loopback: the tests' object store, not part of the demo or the binary.
#[cfg(any(test, feature = "test-support"))]
mod s3;

pub use binaries::{etcd_version, locate_etcd};
pub use cluster::{Sandbox, SandboxMember, SandboxOptions};
pub use error::SandboxError;
pub use pki::{CertPair, EtcdPki, KeyAlgorithm, MemberCerts};
pub use ports::free_port;
#[cfg(any(test, feature = "test-support"))]
pub use s3::{S3Sandbox, S3SandboxOptions};
