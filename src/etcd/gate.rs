//! PLACEHOLDER until the `members` branch lands (replaced by it).
use super::HealthReport;
use crate::failure::FailureClass;

pub enum MembershipChange<'a> {
    Add { name: &'a str, peer_url: &'a str },
    Remove { id: u64 },
    Replace { id: u64, peer_url: &'a str },
}

pub struct GateOptions {
    pub allow_even: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GateVerdict {}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GateRefusal(String);

impl GateRefusal {
    pub fn class(&self) -> FailureClass {
        FailureClass::Refused
    }
}

pub fn quorum_gate(
    report: &HealthReport,
    change: &MembershipChange,
    opts: &GateOptions,
) -> Result<GateVerdict, GateRefusal> {
    let _ = (report, change, opts);
    Ok(GateVerdict {})
}
