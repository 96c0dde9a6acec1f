//! Talking to a live etcd cluster: endpoints, TLS material, one client per endpoint, probing members in
//! parallel, and the quorum / odd-membership verdict derived from what they answer.
//!
//! This module never prints and never writes to a cluster: every call here is a read (status, member
//! list, alarm list). Errors name the endpoint or file and the cause, and never carry secrets.

mod connect;
mod endpoint;
mod error;
mod gate;
mod health;
mod probe;
mod report;
#[cfg(test)]
pub(crate) mod test_probes;
mod tls;

pub use connect::{connect, ConnectionOptions, Credentials};
pub use endpoint::Endpoint;
pub(crate) use error::describe_client_error;
pub use error::EtcdError;
pub use gate::{quorum_gate, GateOptions, GateRefusal, GateVerdict, MembershipChange};
pub use health::{evaluate, HealthOptions};
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
