//! Choosing the member to take a snapshot from: by default the healthy follower with the highest
//! applied index (it has everything the leader committed and taking the snapshot does not load the
//! leader), the leader only when it is alone; `--endpoint` forces one. Without quorum the cluster may
//! be split and a member behind, so the backup is refused unless the operator insists.
//!
//! Also which node takes the backup when every control-plane node runs one (`--only-on-leader`):
//! the node whose local member leads, as etcd-backup-restore's sidecars do. etcd has already elected
//! exactly one leader, so no lease of our own is needed (the pods have no API token).

use crate::etcd::{
    evaluate, hex_id, probe_cluster, ConnectionOptions, Endpoint, HealthOptions, HealthReport,
    StatusInfo,
};

use serde::Serialize;

use super::SnapshotError;

/// Why a backup that runs only on the leader's node was not taken here.
#[derive(Debug, Clone, Serialize)]
pub struct Standby {
    /// The endpoint asked: the first one given, the node's own member.
    pub endpoint: String,
    pub member_id: String,
    /// The leader it follows; None during an election.
    pub leader_id: Option<String>,
}

/// `None` when the member behind the first endpoint is the leader; else why this node stands by.
/// A member that does not answer is an error: this node cannot tell who should back up.
pub async fn standby(conn: &ConnectionOptions) -> Result<Option<Standby>, SnapshotError> {
    let first = conn
        .endpoints
        .first()
        .ok_or_else(|| SnapshotError::Usage("no endpoint given".to_string()))?;
    let mut one = conn.clone();
    one.endpoints = vec![first.clone()];
    let probe = probe_cluster(&one, false).await;
    let status = match probe.endpoints.first().map(|p| &p.status) {
        Some(Ok(s)) => s.clone(),
        Some(Err(e)) => {
            return Err(SnapshotError::Etcd(crate::etcd::EtcdError::NoneAnswered(
                format!("{first}: {e}"),
            )))
        }
        None => {
            return Err(SnapshotError::Etcd(crate::etcd::EtcdError::NoneAnswered(
                format!("{first}: not asked"),
            )))
        }
    };
    if status.leader == status.member_id && !status.is_learner {
        return Ok(None);
    }
    Ok(Some(Standby {
        endpoint: first.to_string(),
        member_id: hex_id(status.member_id),
        leader_id: (status.leader != 0).then(|| hex_id(status.leader)),
    }))
}

/// The member a snapshot is taken from, as it described itself.
#[derive(Debug, Clone)]
pub struct Source {
    pub endpoint: Endpoint,
    pub status: StatusInfo,
    pub member_name: String,
    pub is_leader: bool,
}

/// Probes the cluster and picks the source member.
pub async fn choose_source(
    conn: &ConnectionOptions,
    forced: Option<&Endpoint>,
    allow_degraded: bool,
) -> Result<(Source, HealthReport), SnapshotError> {
    let mut conn = conn.clone();
    if let Some(f) = forced {
        if !conn.endpoints.contains(f) {
            conn.endpoints.push(f.clone());
        }
    }
    let probe = probe_cluster(&conn, true).await;
    let report = evaluate(&probe, &HealthOptions::default());
    if report.cluster_id.is_none() {
        return Err(SnapshotError::Etcd(crate::etcd::EtcdError::NoneAnswered(
            report.reasons.join("; "),
        )));
    }
    if report.healthy_voters < report.quorum && !allow_degraded {
        return Err(SnapshotError::QuorumLost(format!(
            "{} of {} voting members are healthy",
            report.healthy_voters, report.voters
        )));
    }
    let name_of = |id: u64| {
        report
            .members
            .iter()
            .find(|m| m.id == hex_id(id))
            .map(|m| m.name.clone())
            .unwrap_or_default()
    };
    let healthy = |id: u64| {
        report
            .members
            .iter()
            .any(|m| m.id == hex_id(id) && m.healthy && !m.is_learner)
    };
    let answered = probe.endpoints.iter().filter_map(|p| {
        p.status
            .as_ref()
            .ok()
            .filter(|s| Some(hex_id(s.cluster_id)) == report.cluster_id)
            .map(|s| (p.endpoint.clone(), s.clone()))
    });
    let chosen = if let Some(f) = forced {
        let (ep, s) = probe
            .endpoints
            .iter()
            .find(|p| &p.endpoint == f)
            .map(|p| (p.endpoint.clone(), p.status.clone()))
            .ok_or_else(|| SnapshotError::NoMember(format!("{f} was not asked")))?;
        let s = s.map_err(|e| SnapshotError::NoMember(format!("{ep}: {e}")))?;
        (ep, s)
    } else {
        let answered: Vec<(Endpoint, StatusInfo)> = answered.collect();
        let mut candidates: Vec<(Endpoint, StatusInfo)> = answered
            .iter()
            .filter(|(_, s)| healthy(s.member_id))
            .cloned()
            .collect();
        if candidates.is_empty() && allow_degraded {
            // Without a leader no member is "healthy"; the operator asked for the best one reachable.
            candidates = answered
                .into_iter()
                .filter(|(_, s)| !s.is_learner)
                .collect();
        }
        // One answer per member, even if several endpoints reach it.
        candidates.sort_by_key(|(_, s)| s.member_id);
        candidates.dedup_by_key(|(_, s)| s.member_id);
        let followers = candidates.iter().filter(|(_, s)| s.leader != s.member_id);
        let best = followers
            .max_by_key(|(_, s)| (s.applied_index, std::cmp::Reverse(s.member_id)))
            .or_else(|| candidates.first())
            .cloned();
        best.ok_or_else(|| SnapshotError::NoMember(report.reasons.join("; ")))?
    };
    let (endpoint, status) = chosen;
    let source = Source {
        member_name: name_of(status.member_id),
        is_leader: status.leader == status.member_id,
        endpoint,
        status,
    };
    Ok((source, report))
}
