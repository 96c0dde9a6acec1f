//! Hand-made probes of a cluster (members on 127.0.0.N), shared by the verdict's tests and the
//! renderer's snapshot tests, and a hand-made healthy member for the doctor's rules. Test-only.

use super::*;
use crate::etcd::Endpoint;

pub(crate) const CID: u64 = 0xc1;

pub(crate) fn member(id: u64, learner: bool) -> MemberInfo {
    MemberInfo {
        id,
        name: format!("m{id}"),
        peer_urls: vec![format!("https://127.0.0.{id}:2380")],
        client_urls: vec![format!("https://127.0.0.{id}:2379")],
        is_learner: learner,
    }
}

pub(crate) fn status(id: u64, leader: u64, applied: u64) -> StatusInfo {
    StatusInfo {
        member_id: id,
        cluster_id: CID,
        revision: 7,
        version: "3.5.30".into(),
        db_size: 20_000,
        db_size_in_use: 16_000,
        db_size_quota: 0,
        leader,
        raft_term: 2,
        raft_index: applied,
        applied_index: applied,
        errors: vec![],
        is_learner: false,
    }
}

pub(crate) fn up(list: &[MemberInfo], id: u64, leader: u64) -> EndpointProbe {
    EndpointProbe {
        endpoint: Endpoint::parse(&format!("https://127.0.0.{id}:2379"), true).unwrap(),
        status: Ok(status(id, leader, 100)),
        members: Some((CID, list.to_vec())),
        alarms: Ok(vec![]),
        discovered: false,
    }
}

pub(crate) fn down(id: u64) -> EndpointProbe {
    EndpointProbe {
        endpoint: Endpoint::parse(&format!("https://127.0.0.{id}:2379"), true).unwrap(),
        status: Err("connection refused".into()),
        members: None,
        alarms: Err("connection refused".into()),
        discovered: false,
    }
}

pub(crate) fn three() -> Vec<MemberInfo> {
    (1..=3).map(|i| member(i, false)).collect()
}

/// A healthy voter as the verdict reports it: 3.5.30, term 2, following member 1, small db.
pub(crate) fn healthy_member(name: &str, id: &str) -> MemberHealth {
    MemberHealth {
        id: id.to_string(),
        name: name.to_string(),
        peer_urls: vec![],
        client_urls: vec![],
        is_learner: false,
        healthy: true,
        endpoint: None,
        error: None,
        version: Some("3.5.30".into()),
        db_size: Some(20_000),
        db_size_in_use: Some(16_000),
        leader: Some("1".into()),
        raft_term: Some(2),
        raft_index: Some(100),
        applied_index: Some(100),
        errors: vec![],
    }
}
