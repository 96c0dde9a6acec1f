//! Integration tests: one binary, grouped by capability and failure class, against real etcd 3.5 and
//! 3.4 started on loopback by the sandbox. Tools come from scripts/install-tools.sh (tools/); a
//! missing tool fails the test with a message saying how to install it, it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "integration/harness.rs"]
#[macro_use]
mod harness;

#[path = "integration/kubelet.rs"]
mod kubelet;

#[path = "integration/health.rs"]
mod health;

#[path = "integration/doctor.rs"]
mod doctor;

#[path = "integration/daemon.rs"]
mod daemon;

#[path = "integration/bad_input.rs"]
mod bad_input;

#[path = "integration/cli.rs"]
mod cli;

#[path = "integration/store_s3.rs"]
mod store_s3;

#[path = "integration/proxy.rs"]
mod proxy;

#[path = "integration/backup.rs"]
mod backup;

#[path = "integration/backup_s3.rs"]
mod backup_s3;

#[path = "integration/inspect.rs"]
mod inspect;

#[path = "integration/restore.rs"]
mod restore;

#[path = "integration/restore_kubeadm.rs"]
mod restore_kubeadm;

#[path = "integration/drill.rs"]
mod drill;

#[path = "integration/pitr.rs"]
mod pitr;

#[path = "integration/certs_check.rs"]
mod certs_check;

#[path = "integration/certs_renew.rs"]
mod certs_renew;

#[path = "integration/bootstrap.rs"]
mod bootstrap;

#[path = "integration/bootstrap_lb.rs"]
mod bootstrap_lb;

#[path = "integration/members.rs"]
mod members;

#[path = "integration/defrag.rs"]
mod defrag;
#[path = "integration/nodes.rs"]
mod nodes;

#[path = "integration/apply.rs"]
mod apply;

#[path = "integration/remote.rs"]
mod remote;

#[path = "integration/nodes_kubeadm.rs"]
mod nodes_kubeadm;

#[path = "integration/config.rs"]
mod config;
#[path = "integration/deploy.rs"]
mod deploy;
#[path = "integration/image.rs"]
mod image;

#[path = "integration/follow.rs"]
mod follow;
