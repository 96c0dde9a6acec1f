//! Asking every member, in parallel, what it knows: status, member list and alarms.
//!
//! Each endpoint gets its own client and one deadline for all its questions, so a dead or frozen member
//! costs at most `--timeout` however many questions are asked. Members found in the member list whose
//! client URLs were not among the endpoints are then asked too (one more round, also parallel), so one
//! endpoint is enough to judge the whole cluster.

use std::collections::HashSet;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType};
use futures::future::join_all;
use serde::Serialize;

use super::connect::request;
use super::{connect, ConnectionOptions, Endpoint, EtcdError};

/// A member as the member list describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// A member's answer to Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The store revision the member reported with this answer.
    pub revision: i64,
    pub version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    /// The member's own quota (etcd 3.6+); 0 when the member does not say.
    pub db_size_quota: i64,
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub applied_index: u64,
    pub errors: Vec<String>,
    pub is_learner: bool,
}

/// Everything one endpoint answered, or why it did not.
#[derive(Debug, Clone)]
pub struct EndpointProbe {
    pub endpoint: Endpoint,
    pub status: Result<StatusInfo, String>,
    /// The member list and the cluster ID of the answer.
    pub members: Option<(u64, Vec<MemberInfo>)>,
    pub alarms: Result<Vec<(u64, String)>, String>,
    /// Found through the member list rather than given by the user.
    pub discovered: bool,
}

/// The answers of all endpoints, given and discovered.
#[derive(Debug, Clone)]
pub struct ClusterProbe {
    pub endpoints: Vec<EndpointProbe>,
}

/// Probes the given endpoints, then (when `discover`) every member client URL not probed yet.
pub async fn probe_cluster(opts: &ConnectionOptions, discover: bool) -> ClusterProbe {
    let mut probes: Vec<EndpointProbe> = join_all(
        opts.endpoints
            .iter()
            .map(|ep| probe_endpoint(ep.clone(), opts, false)),
    )
    .await;
    if discover {
        let known_members: HashSet<u64> = probes
            .iter()
            .filter_map(|p| p.status.as_ref().ok().map(|s| s.member_id))
            .collect();
        let probed: HashSet<String> = probes.iter().map(|p| p.endpoint.to_string()).collect();
        let mut extra: Vec<Endpoint> = Vec::new();
        for (_, members) in probes.iter().filter_map(|p| p.members.as_ref()) {
            for m in members.iter().filter(|m| !known_members.contains(&m.id)) {
                // One URL per member is enough to reach it; prefer one of its own scheme as listed.
                if let Some(ep) = m
                    .client_urls
                    .iter()
                    .find_map(|u| Endpoint::parse(u, false).ok())
                {
                    if !probed.contains(&ep.to_string()) && !extra.contains(&ep) {
                        extra.push(ep);
                    }
                }
            }
        }
        if !extra.is_empty() {
            tracing::debug!(
                count = extra.len(),
                "probing members found in the member list"
            );
            let more = join_all(extra.into_iter().map(|ep| probe_endpoint(ep, opts, true))).await;
            probes.extend(more);
        }
    }
    ClusterProbe { endpoints: probes }
}

async fn probe_endpoint(
    endpoint: Endpoint,
    opts: &ConnectionOptions,
    discovered: bool,
) -> EndpointProbe {
    let failed = |endpoint: Endpoint, why: String| EndpointProbe {
        endpoint,
        status: Err(why.clone()),
        members: None,
        alarms: Err(why),
        discovered,
    };
    // One deadline for the endpoint: connecting and every question share it, so a dead member costs
    // at most --timeout. Each question has its own outcome: the alarm list goes through raft and may
    // stall during an election while status and member list, served locally, still answer.
    let started = tokio::time::Instant::now();
    let client = match tokio::time::timeout(opts.timeout, connect(&endpoint, opts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(endpoint, cause_of(&e)),
        Err(_) => {
            let e = EtcdError::Timeout {
                endpoint: endpoint.to_string(),
                operation: "connect",
                after: opts.timeout,
            };
            return failed(endpoint, cause_of(&e));
        }
    };
    let (deadline, t) = (started + opts.timeout, opts.timeout);
    let (mut c1, mut c2, mut c3) = (
        client.maintenance_client(),
        client.cluster_client(),
        client.maintenance_client(),
    );
    let (status, members, alarms) = tokio::join!(
        request(&endpoint, "status", deadline, t, c1.status()),
        request(&endpoint, "member list", deadline, t, c2.member_list()),
        request(
            &endpoint,
            "alarm list",
            deadline,
            t,
            c3.alarm(AlarmAction::Get, AlarmType::None, None::<AlarmOptions>)
        ),
    );
    let status = status.map_err(|e| cause_of(&e)).map(|s| {
        let header = s.header();
        StatusInfo {
            member_id: header.map(|h| h.member_id()).unwrap_or_default(),
            cluster_id: header.map(|h| h.cluster_id()).unwrap_or_default(),
            revision: header.map(|h| h.revision()).unwrap_or_default(),
            version: s.version().to_string(),
            db_size: s.db_size(),
            db_size_in_use: s.raft_used_db_size(),
            db_size_quota: s.db_size_quota(),
            leader: s.leader(),
            raft_term: s.raft_term(),
            raft_index: s.raft_index(),
            applied_index: s.raft_applied_index(),
            errors: s.errors().to_vec(),
            is_learner: s.is_learner(),
        }
    });
    let members = members.ok().map(|r| {
        let cluster_id = r.header().map(|h| h.cluster_id()).unwrap_or_default();
        let list = r.members().iter().map(member_info).collect();
        (cluster_id, list)
    });
    let alarms = alarms.map_err(|e| cause_of(&e)).map(|r| {
        r.alarms()
            .iter()
            .map(|a| (a.member_id(), alarm_name(a.alarm())))
            .collect()
    });
    EndpointProbe {
        endpoint,
        status,
        members,
        alarms,
        discovered,
    }
}

fn member_info(m: &etcd_client::Member) -> MemberInfo {
    MemberInfo {
        id: m.id(),
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        is_learner: m.is_learner(),
    }
}

/// The cause without the endpoint prefix: reports attach the endpoint themselves.
fn cause_of(e: &EtcdError) -> String {
    match e {
        EtcdError::Request { cause, .. } => cause.clone(),
        EtcdError::Timeout {
            operation, after, ..
        } => format!(
            "no answer to {operation} within {}",
            humantime::format_duration(*after)
        ),
        other => other.to_string(),
    }
}

fn alarm_name(a: AlarmType) -> String {
    match a {
        AlarmType::Nospace => "NOSPACE".to_string(),
        AlarmType::Corrupt => "CORRUPT".to_string(),
        AlarmType::None => "NONE".to_string(),
    }
}

/// Lists members through the first endpoint that answers, trying endpoints in order.
pub async fn list_members(
    opts: &ConnectionOptions,
) -> Result<(Endpoint, u64, Vec<MemberInfo>), EtcdError> {
    let mut errors = Vec::new();
    for ep in &opts.endpoints {
        let attempt = async {
            let client = connect(ep, opts).await?;
            let mut cc = client.cluster_client();
            let deadline = tokio::time::Instant::now() + opts.timeout;
            request(ep, "member list", deadline, opts.timeout, cc.member_list()).await
        };
        let result = match tokio::time::timeout(opts.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(EtcdError::Timeout {
                endpoint: ep.to_string(),
                operation: "member list",
                after: opts.timeout,
            }),
        };
        match result {
            Ok(r) => {
                let cluster_id = r.header().map(|h| h.cluster_id()).unwrap_or_default();
                let list = r.members().iter().map(member_info).collect();
                return Ok((ep.clone(), cluster_id, list));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(EtcdError::NoneAnswered(errors.join("; ")))
}
