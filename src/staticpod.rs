//! kubeadm's static pods, as the kubelet runs them from its manifests directory: shared by
//! `restore --kubeadm` (etcd) and `certs renew --restart` (every control-plane pod).
//!
//! - [`manifest`]: a manifest read into types (containers' commands, ports, liveness probes and
//!   volume mounts; hostPath volumes, and where a container path lives on the node);
//! - [`park`]: stopping a pod by parking its manifest beside the manifests directory, the wait
//!   until it has stopped, and putting the manifest back, byte for byte, with fsynced directories;
//! - [`probe`]: the HTTP(S) liveness probe as the kubelet runs it, and the TCP check.
//!
//! Never prints and never edits a manifest: it is only read, or renamed.

pub mod manifest;
pub mod park;
pub mod probe;

pub use manifest::{Container, HostPathVolume, ManifestError, PodManifest, VolumeMount};
pub use park::{
    accepts, park, parked_path, put_back, shell_quote, sync_parents, wait_stopped, PutBackError,
    StillRunning, Stopped,
};
pub use probe::{probe, Answer, HttpHeader, Probe, Scheme};
