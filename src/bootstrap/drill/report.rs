//! The failover drill's typed result: each phase with its timing and what it saw, and the verdict
//! (OK, WARNING, CRITICAL, UNKNOWN as `cluster health`).

use serde::Serialize;

use crate::etcd::Verdict;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    pub phase: &'static str,
    pub ok: bool,
    pub seconds: f64,
    pub detail: String,
}

/// etcd's numbers at one moment of the drill.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub voters: usize,
    pub healthy_voters: usize,
    pub quorum: usize,
    pub fault_tolerance: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub verdict: Verdict,
    pub node: String,
    pub member: Option<String>,
    pub endpoint: String,
    pub before: Option<Counts>,
    pub during: Option<Counts>,
    pub after: Option<Counts>,
    pub phases: Vec<PhaseReport>,
    /// Why the verdict is not OK.
    pub reasons: Vec<String>,
}
