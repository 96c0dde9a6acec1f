//! Running commands and moving files on the cluster's nodes: over the system's OpenSSH client
//! (one multiplexed master connection per node, so the user's ssh_config, agent, jump hosts and
//! known_hosts apply, host keys always checked strictly) or on this machine for `ssh: local`.
//!
//! Secrets travel in a [`Script`], which knows which of its parts are secret: they are masked as
//! `<redacted>` wherever a script or its output is shown (`Display`, `Debug`, [`Output`], errors).
//! A script reaches the node's shell on its standard input, never on a command line, so it does not
//! show in `ps` on either side (a secret still shows in the argv of a program the script passes it
//! to). File contents go the same way. This module never prints and never logs secrets.
//!
//! - [`script`]: [`Script`], the masking.
//! - [`session`]: [`Target`], [`Session`] and what it runs.
//! - [`error`]: [`RemoteError`], one line naming the node and the cause.

pub mod error;
pub mod script;
pub mod session;

pub use error::RemoteError;
pub use script::Script;
pub use session::{Output, Session, SshTarget, Target};
