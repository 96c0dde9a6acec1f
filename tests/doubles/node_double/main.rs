//! cpkeep-node-double: a TEST DOUBLE of kubeadm, kubelet and kubectl for cpkeep's integration
//! tests (tests/integration/nodes.rs). It is never part of the product: Cargo builds it only with
//! the `test-support` feature, which only the test targets turn on.
//!
//! It does what the real programs' effects on a stacked-etcd control plane are, against REAL etcd:
//! `kubeadm init/join` write certificates, kubeconfigs and static pod manifests, add (learner) etcd
//! members and promote them; the kubelet double runs real etcd from the etcd manifest and a
//! `/readyz` stand-in for the API server; `kubectl` reads and writes the cluster's etcd. What real
//! kubeadm would ask the API server, the double reads from or writes to the cluster's etcd directly,
//! with a client certificate that `kubeadm init` leaves in the shared CLUSTER_DIR (standing in for
//! the API server's reachability). It is picked by argv[0]: `kubeadm`, `kubelet`, `kubectl`, and
//! `kube-apiserver` (the stand-in the kubelet double starts). Settings: double.env (see config.rs).

mod apiserver;
mod certs;
mod cluster;
mod config;
mod kubeadm;
mod kubectl;
mod kubelet;

use std::process::ExitCode;

/// An error as the double reports it: the message, and the exit code (1 unless told).
pub struct Fail(pub String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

pub type Res<T> = Result<T, Fail>;

/// Fails with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => { return Err($crate::Fail(format!($($t)*))) };
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().cloned().unwrap_or_default();
    let prog = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .to_string();
    args.remove(0);
    let result = match prog.as_str() {
        "kubeadm" => kubeadm::main(args).await,
        "kubelet" => kubelet::main(args).await,
        "kubectl" => kubectl::main(args).await,
        "kube-apiserver" => apiserver::main(args).await,
        other => Err(Fail(format!(
            "cpkeep-node-double: called as {other:?}; link it as kubeadm, kubelet or kubectl"
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("{msg}\n({prog} is cpkeep's test double, not the real {prog})");
            ExitCode::FAILURE
        }
    }
}
