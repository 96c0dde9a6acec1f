//! The daemon: the CLI's scheduled jobs (`backup`, `certs`, `health`, `drill`) run on UTC cron
//! schedules by tokio-cron-scheduler, never two runs of one job at once, with their outcomes as
//! Prometheus metrics on `/metrics` beside `/healthz` and `/readyz`. Never prints: what a job does
//! is given by the caller as a [`JobRunner`], so this module knows schedules, guards, metrics and
//! shutdown, not flags.

mod doctor_metrics;
mod guard;
mod http;
mod metrics;
mod scheduler;
mod x509;

use std::fmt;

use crate::failure::FailureClass;

pub use guard::{Guard, GuardPass};
pub use metrics::{HealthSample, Metrics, Step};
pub use scheduler::{
    due, parse_schedule, run, unix_now, DaemonOptions, JobFuture, JobRunner, JobSpec, Ran,
};

/// The daemon's jobs; the `task` label of every job metric (not `job`: Prometheus owns that one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    Backup,
    Certs,
    Health,
    Drill,
}

impl Task {
    pub const ALL: [Task; 4] = [Task::Backup, Task::Certs, Task::Health, Task::Drill];

    pub fn name(self) -> &'static str {
        match self {
            Task::Backup => "backup",
            Task::Certs => "certs",
            Task::Health => "health",
            Task::Drill => "drill",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a job run failed: its message and the class of the error that ended it.
#[derive(Debug, Clone)]
pub struct RunFailure {
    pub class: FailureClass,
    pub message: String,
}

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("schedule {schedule:?} of job {task}: {reason}")]
    Schedule {
        task: Task,
        schedule: String,
        reason: String,
    },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("the scheduler failed: {0}")]
    Scheduler(String),
    #[error("cannot install the signal handlers: {0}")]
    Signals(String),
}

impl DaemonError {
    pub fn class(&self) -> FailureClass {
        match self {
            DaemonError::Schedule { .. } | DaemonError::Listen { .. } | DaemonError::Signals(_) => {
                FailureClass::Unusable
            }
            DaemonError::Scheduler(_) => FailureClass::Failed,
        }
    }
}
