//! Talking to a live etcd cluster: endpoints, TLS material, one client per endpoint, probing members in
//! parallel, the quorum / odd-membership verdict derived from what they answer, and the few writes
//! cpkeep makes to a cluster.
//!
//! Most calls here are reads (status, member list, alarm list). The writes are membership changes
//! (`members`: add as learner, promote, remove, replace), each preceded by a fresh probe and the
//! quorum gate (`gate`), and rolling defragmentation (`defrag`). `cluster health`'s doctor checks
//! (`doctor`: consistency, fragmentation, metrics, version skew, served certificates, raft agreement)
//! only read. This module never prints. Errors name
//! the endpoint, member or file and the cause, and never carry secrets.

mod connect;
mod consistency;
mod defrag;
mod doctor;
mod endpoint;
mod error;
mod findings;
mod gate;
mod health;
mod members;
mod metrics_scrape;
mod probe;
mod report;
mod served_certs;
#[cfg(test)]
pub(crate) mod test_probes;
mod tls;

pub use connect::{connect, connect_require_leader, ConnectionOptions, Credentials};
pub use consistency::check_consistency;
pub use defrag::{rolling_defrag, DefragError, DefragMember, DefragOptions, DefragReport};
pub use doctor::{examine, DoctorOptions};
pub use endpoint::Endpoint;
pub(crate) use error::describe_client_error;
pub use error::EtcdError;
pub use findings::{
    consistency_findings, fragmentation, hash_majority, metrics_findings, minor_of, quantile,
    raft_agreement, version_skew, ConsistencyReport, DoctorReport, FragmentationEntry,
    FragmentationOptions, MemberHash, MemberMetrics, MetricThresholds, RaftAgreement, VersionSkew,
};
pub use gate::{quorum_gate, GateOptions, GateRefusal, GateVerdict, MembershipChange};
pub use health::{evaluate, HealthOptions};
pub use members::{
    add_learner, judge, promote, remove, replace, resolve_member, wait_caught_up, AddedMember,
    CaughtUp, MemberError, MemberOptions, Promoted, Removed,
};
pub use metrics_scrape::{parse_metrics_urls, summarize, MetricsUrlError, KUBEADM_METRICS_PORT};
pub use probe::{list_members, probe_cluster, ClusterProbe, EndpointProbe, MemberInfo, StatusInfo};
pub use report::{
    AlarmReport, Check, EndpointReport, Finding, HealthReport, MemberEntry, MemberHealth,
    MembersReport, Severity, Verdict,
};
pub use served_certs::{check_served_certs, ServedCert, ServedCertOptions};
pub use tls::{TlsFiles, TlsMaterial};

/// Formats a member or cluster ID the way etcdctl does: lowercase hex, no padding.
pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}
