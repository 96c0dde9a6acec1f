//! `bootstrap apply`: runs a bundle made by `bootstrap plan` on its nodes over SSH, in the plan's
//! order, one control-plane join at a time behind etcd's quorum gate, resumable from the journal
//! in the bundle, undoing what a half-finished join left before retrying it. Never prints:
//! progress and results go to the caller as typed values.

pub mod checks;
pub mod error;
pub mod etcd_access;
pub mod journal;
pub mod plan_file;
pub mod preflight;
pub mod readyz;
pub mod report;
pub mod run;
pub mod steps;

pub use error::ApplyError;
pub use report::{ApplyReport, DryRunReport, Progress};
pub use run::{apply, dry_run, ApplyOptions};

#[cfg(test)]
mod tests;
