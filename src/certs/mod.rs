//! kubeadm's PKI on one control-plane node: discovery of every certificate, CA, kubeconfig and the
//! service-account key pair kubeadm manages (`inventory`), reading PEM and kubeconfigs (`pem`,
//! `kubeconfig`), key and signature checks (`verify`), the expiry judgement behind `cpkeep certs check`
//! (`check`), and its alert outputs: a node-exporter textfile (`prometheus`) and a JSON webhook
//! (`webhook`); `testpki` generates complete kubeadm-layout sets for tests and sandboxes.
//! Renewal: `renew` (plan → backup and journal → atomic replace → re-verify; `--recover`; one run
//! at a time under a lock), `issue` (a renewed certificate from the old TBSCertificate, new keys in
//! kubeadm's PEM forms), `kubeconfig_edit` (embedded certificates and keys replaced in place) and
//! `restart` (static pods restarted one at a time through `staticpod`, with health waits).
//!
//! Like every domain module, it takes typed options, returns typed serialisable reports and typed
//! errors, and never prints. It never logs or returns key material: private keys stay inside
//! [`pem::PrivateKey`], embedded `client-key-data` inside [`kubeconfig::SecretBytes`].

pub mod check;
pub mod error;
pub mod inventory;
pub mod kubeconfig;
pub mod pem;
pub mod prometheus;
pub mod testpki;
pub mod verify;
pub mod webhook;

pub use check::{check, CertState, CertStatus, CheckOptions, CheckReport, KeyPairStatus};
pub use error::CertsError;
pub use inventory::{
    discover, CaEntry, CaId, CertEntry, CertSource, Inventory, ManagedCert, Material, PkiLayout,
    Presence, ServiceAccountEntry, DEFAULT_CERT_DIR, DEFAULT_KUBECONFIG_DIR, MANAGED_CERTS,
};
pub use pem::{CertInfo, KeyFormat, PemError, PrivateKey, PublicKeyInfo};
pub use verify::{key_matches, verify_signed_by, ChainError};
pub mod issue;
pub mod kubeconfig_edit;
pub mod renew;
pub mod restart;
