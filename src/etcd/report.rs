//! The typed results of probing a cluster: what `cluster health` and `cluster members` render as a
//! table or serialise as JSON. The JSON field names are a documented interface (README): change them
//! only with a note in the changelog.

use serde::Serialize;

use super::findings::DoctorReport;

/// The monitoring verdict, ordered from best to worst so the worst finding wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Verdict {
    /// The exit code of the monitoring-plugin convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
            Verdict::Unknown => "UNKNOWN",
        }
    }
}

/// How bad one finding is; the verdict is the worst severity found.
pub type Severity = Verdict;

/// One finding: a severity and a sentence for the operator. A finding of severity OK is
/// informational (INFO in the table): it never changes the verdict and is not among the reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
    /// The doctor check that raised it; absent for the quorum and membership rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// The member the finding is about (its name, else its hex ID), when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

impl Finding {
    /// A finding of the quorum and membership rules (no check, no member).
    pub fn new(severity: Severity, message: String) -> Self {
        Self {
            severity,
            message,
            check: None,
            member: None,
        }
    }

    /// A finding of one doctor check, about `member` when given.
    pub fn of(check: Check, severity: Severity, member: Option<&str>, message: String) -> Self {
        Self {
            severity,
            message,
            check: Some(check),
            member: member.map(str::to_string),
        }
    }

    /// Informational findings (severity OK) say something worth knowing without judging it.
    pub fn is_info(&self) -> bool {
        self.severity == Verdict::Ok
    }
}

/// The doctor checks of `cluster health`, as named in a finding's `check` field (and in the daemon's
/// metric labels once exported): keep the names stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Consistency,
    Fragmentation,
    Metrics,
    VersionSkew,
    ServedCerts,
    Raft,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Consistency => "consistency",
            Check::Fragmentation => "fragmentation",
            Check::Metrics => "metrics",
            Check::VersionSkew => "version_skew",
            Check::ServedCerts => "served_certs",
            Check::Raft => "raft",
        }
    }
}

/// What one member is and how it answered.
#[derive(Debug, Clone, Serialize)]
pub struct MemberHealth {
    /// Member ID, hex as etcdctl prints it.
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
    /// Reachable and following a leader.
    pub healthy: bool,
    /// The endpoint that answered for this member, if any.
    pub endpoint: Option<String>,
    /// Why the member could not be asked, if it could not.
    pub error: Option<String>,
    pub version: Option<String>,
    pub db_size: Option<i64>,
    pub db_size_in_use: Option<i64>,
    /// The leader this member follows (hex), if it knows one.
    pub leader: Option<String>,
    pub raft_term: Option<u64>,
    pub raft_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Errors the member reports about itself (etcd's Status.errors).
    pub errors: Vec<String>,
}

/// An alarm raised in the cluster and the member that raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmReport {
    pub alarm: String,
    pub member_id: String,
    pub member_name: Option<String>,
}

/// What one endpoint answered, for endpoints that did not map to a known member or failed.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    pub member_id: Option<String>,
    pub cluster_id: Option<String>,
    pub error: Option<String>,
}

/// The full health report of `cpkeep cluster health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub verdict: Verdict,
    /// One sentence per finding, worst first; empty when all is well.
    pub reasons: Vec<String>,
    pub findings: Vec<Finding>,
    pub cluster_id: Option<String>,
    pub voters: usize,
    pub learners: usize,
    pub healthy_voters: usize,
    pub quorum: usize,
    /// How many more voters may fail now before quorum is lost (0 when it already is).
    pub fault_tolerance: usize,
    /// How many voters the cluster could lose if all were healthy (voters − quorum).
    pub design_fault_tolerance: usize,
    /// The leader every healthy member agrees on (hex), or null.
    pub leader: Option<String>,
    /// Largest difference in applied index between two healthy members.
    pub max_applied_lag: Option<u64>,
    pub quota_bytes: u64,
    pub members: Vec<MemberHealth>,
    pub alarms: Vec<AlarmReport>,
    /// Alarms could not be listed (no member answered the alarm request).
    pub alarms_error: Option<String>,
    pub endpoints: Vec<EndpointReport>,
    /// What the doctor checks measured (consistency, fragmentation, metrics, version skew, served
    /// certificates, raft agreement); their verdicts are among `findings`.
    pub doctor: DoctorReport,
}

impl HealthReport {
    /// Adds findings of the doctor checks: they are merged worst first and the verdict and reasons
    /// recomputed, so the verdict stays the worst finding whichever check raised it.
    pub fn add_findings(&mut self, more: Vec<Finding>) {
        self.findings.extend(more);
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        self.verdict = verdict_of(&self.findings);
        self.reasons = reasons_of(&self.findings);
    }
}

/// The worst severity among the findings (OK when there is none).
pub(crate) fn verdict_of(findings: &[Finding]) -> Verdict {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Verdict::Ok)
}

/// The sentences of the findings that judge something (informational ones left out).
pub(crate) fn reasons_of(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| !f.is_info())
        .map(|f| f.message.clone())
        .collect()
}

/// One member as `cluster members` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberEntry {
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// The result of `cpkeep cluster members`.
#[derive(Debug, Clone, Serialize)]
pub struct MembersReport {
    pub cluster_id: String,
    /// The endpoint whose answer this is.
    pub endpoint: String,
    pub members: Vec<MemberEntry>,
}
