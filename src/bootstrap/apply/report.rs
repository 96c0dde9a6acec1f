//! What `bootstrap apply` tells: progress while it runs, and the typed result (`-o json`).

use std::path::PathBuf;

use serde::Serialize;

/// Progress, reported as it happens (the CLI prints it on stderr).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    StepStarted {
        number: usize,
        total: usize,
        id: String,
        title: String,
    },
    AlreadyDone {
        id: String,
    },
    /// Something done on a node or by the runner.
    Did {
        text: String,
    },
    /// A leftover of an earlier, interrupted run undone.
    Cleaned {
        node: String,
        what: String,
    },
    StepFinished {
        id: String,
        seconds: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ran,
    AlreadyDone,
    /// Not selected by `--node`.
    NotSelected,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    pub id: String,
    pub node: String,
    pub title: String,
    pub outcome: Outcome,
    pub seconds: Option<f64>,
}

/// etcd as apply left it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSummary {
    pub voters: usize,
    pub healthy_voters: usize,
    pub learners: usize,
    pub quorum: usize,
    pub fault_tolerance: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    pub cluster: String,
    pub control_plane_endpoint: String,
    pub steps: Vec<StepOutcome>,
    /// Leftovers of earlier runs that were undone, one sentence each.
    pub cleaned: Vec<String>,
    pub admin_kubeconfig: Option<PathBuf>,
    pub etcd: Option<EtcdSummary>,
}

/// `--dry-run`: every step with its commands, nothing run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunReport {
    pub cluster: String,
    pub steps: Vec<DryRunStep>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunStep {
    pub id: String,
    pub node: String,
    pub title: String,
    /// Already recorded in state.json: a run skips it.
    pub done: bool,
    pub selected: bool,
    pub actions: Vec<String>,
}
