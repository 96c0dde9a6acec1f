//! Talking to a live etcd cluster: endpoints, TLS material, one client per endpoint, probing members in
//! parallel, the quorum / odd-membership verdict derived from what they answer, and the few writes
//! cpkeep makes to a cluster.
//!
//! Most calls here are reads (status, member list, alarm list). The writes are membership changes
//! (`members`: add as learner, promote, remove, replace), each preceded by a fresh probe and the
//! quorum gate (`gate`), and rolling defragmentation (`defrag`). This module never prints. Errors name
//! the endpoint, member or file and the cause, and never carry secrets.

mod connect;
mod defrag;
mod endpoint;
mod error;
mod gate;
mod health;
mod members;
mod probe;
mod report;
#[cfg(test)]
pub(crate) mod test_probes;
mod tls;

pub use connect::{connect, ConnectionOptions, Credentials};
pub use defrag::{rolling_defrag, DefragError, DefragMember, DefragOptions, DefragReport};
pub use endpoint::Endpoint;
pub(crate) use error::describe_client_error;
pub use error::EtcdError;
pub use gate::{quorum_gate, GateOptions, GateRefusal, GateVerdict, MembershipChange};
pub use health::{evaluate, HealthOptions};
pub use members::{
    add_learner, judge, promote, remove, replace, resolve_member, wait_caught_up, AddedMember,
    CaughtUp, MemberError, MemberOptions, Promoted, Removed,
};
pub use probe::{list_members, probe_cluster, ClusterProbe, EndpointProbe, MemberInfo, StatusInfo};
pub use report::{
    AlarmReport, EndpointReport, Finding, HealthReport, MemberEntry, MemberHealth, MembersReport,
    Severity, Verdict,
};
pub use tls::{TlsFiles, TlsMaterial};

/// Formats a member or cluster ID the way etcdctl does: lowercase hex, no padding.
pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}
