//! The quorum / odd-membership verdict: a pure function from what the endpoints answered to a
//! [`HealthReport`]. No I/O here, so every rule is unit-tested on hand-made answers.

use std::collections::{BTreeMap, BTreeSet};

use super::probe::{ClusterProbe, EndpointProbe, MemberInfo, StatusInfo};
use super::report::{
    reasons_of, verdict_of, AlarmReport, EndpointReport, Finding, HealthReport, MemberHealth,
};
use super::{hex_id, Verdict};
use crate::units::human_bytes;

/// Thresholds of the verdict.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// The backend quota members run with (etcd's --quota-backend-bytes), used when a member does not
    /// report its own.
    pub quota_bytes: u64,
    /// Share of the quota from which the db size is a warning.
    pub quota_warn_ratio: f64,
    /// Applied-index difference between healthy members (or commit vs apply within one) that is a warning.
    pub max_applied_lag: u64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            quota_bytes: 2 * 1024 * 1024 * 1024,
            quota_warn_ratio: 0.8,
            max_applied_lag: 5000,
        }
    }
}

/// Derives the verdict and every finding from the probe.
pub fn evaluate(probe: &ClusterProbe, opts: &HealthOptions) -> HealthReport {
    let mut findings: Vec<Finding> = Vec::new();
    let mut add =
        |severity: Verdict, message: String| findings.push(Finding::new(severity, message));

    let Some((cluster_id, member_list)) = choose_member_list(probe) else {
        for p in &probe.endpoints {
            if let Err(e) = &p.status {
                add(Verdict::Unknown, format!("{}: {e}", p.endpoint));
            }
        }
        if probe.endpoints.iter().all(|p| p.status.is_err()) {
            // Keep the per-endpoint causes: they are what the operator needs to fix.
        } else {
            add(
                Verdict::Unknown,
                "no endpoint returned a member list".to_string(),
            );
        }
        return finish(
            findings,
            Vec::new(),
            None,
            opts,
            probe,
            Vec::new(),
            // Nobody was asked about alarms: they are unknown, not absent.
            Some("no member answered".to_string()),
            None,
        );
    };

    // Which answer speaks for which member: the first successful status of that member ID.
    let mut status_of: BTreeMap<u64, (&EndpointProbe, &StatusInfo)> = BTreeMap::new();
    for p in &probe.endpoints {
        if let Ok(s) = &p.status {
            if s.cluster_id != cluster_id {
                add(
                    Verdict::Warning,
                    format!(
                        "endpoint {} answers for another cluster ({}, expected {}): it is not counted",
                        p.endpoint,
                        hex_id(s.cluster_id),
                        hex_id(cluster_id)
                    ),
                );
                continue;
            }
            status_of.entry(s.member_id).or_insert((p, s));
        }
    }

    let mut members: Vec<MemberHealth> = Vec::new();
    for m in &member_list {
        let answered = status_of.get(&m.id);
        let error = match answered {
            Some(_) => None,
            None => Some(unreached_cause(m, probe)),
        };
        let healthy = answered.is_some_and(|(_, s)| s.leader != 0);
        members.push(MemberHealth {
            id: hex_id(m.id),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.is_learner,
            healthy,
            endpoint: answered.map(|(p, _)| p.endpoint.to_string()),
            error: error
                .or_else(|| (!healthy).then(|| "reachable, but follows no leader".to_string())),
            version: answered.map(|(_, s)| s.version.clone()),
            db_size: answered.map(|(_, s)| s.db_size),
            db_size_in_use: answered.map(|(_, s)| s.db_size_in_use),
            leader: answered.and_then(|(_, s)| (s.leader != 0).then(|| hex_id(s.leader))),
            raft_term: answered.map(|(_, s)| s.raft_term),
            raft_index: answered.map(|(_, s)| s.raft_index),
            applied_index: answered.map(|(_, s)| s.applied_index),
            errors: answered.map(|(_, s)| s.errors.clone()).unwrap_or_default(),
        });
    }
    // Stable, readable order whatever order the member list came in.
    members.sort_by(|a, b| (a.is_learner, &a.name, &a.id).cmp(&(b.is_learner, &b.name, &b.id)));
    // Endpoints that answered as a member the member list does not know.
    let listed: BTreeSet<u64> = member_list.iter().map(|m| m.id).collect();
    for (id, (p, _)) in &status_of {
        if !listed.contains(id) {
            add(
                Verdict::Warning,
                format!(
                    "endpoint {} answers as member {} which is not in the member list (removed member still running?)",
                    p.endpoint,
                    hex_id(*id)
                ),
            );
        }
    }
    // Endpoints the user named that did not answer and belong to no listed member (a load balancer, a
    // typo): worth a warning even when the members themselves are fine.
    for p in probe.endpoints.iter().filter(|p| !p.discovered) {
        if let Err(e) = &p.status {
            let url = p.endpoint.to_string();
            let belongs = member_list
                .iter()
                .any(|m| m.client_urls.iter().any(|u| same_url(u, &url)));
            if !belongs {
                add(
                    Verdict::Warning,
                    format!("endpoint {url} did not answer: {e}"),
                );
            }
        }
    }

    let voters: Vec<&MemberHealth> = members.iter().filter(|m| !m.is_learner).collect();
    let count = QuorumCount::of_members(&members);
    let (voter_count, healthy_voters, quorum) = (count.voters, count.healthy_voters, count.quorum);

    if !count.holds() {
        add(
            Verdict::Critical,
            format!(
                "quorum lost: {healthy_voters} of {voter_count} voting members are healthy and {quorum} are needed; \
                 the cluster accepts no writes"
            ),
        );
    }
    for m in &members {
        if m.healthy {
            continue;
        }
        let role = if m.is_learner { "learner" } else { "member" };
        let why = m.error.clone().unwrap_or_default();
        add(
            Verdict::Warning,
            format!("{role} {} is down: {why}", label(m)),
        );
    }

    // Leader agreement among healthy members.
    let leaders: BTreeSet<&str> = members
        .iter()
        .filter(|m| m.healthy)
        .filter_map(|m| m.leader.as_deref())
        .collect();
    let mut leader = None;
    if leaders.len() == 1 {
        let l = leaders.iter().next().map(|s| s.to_string());
        if let Some(l) = l {
            if voters.iter().any(|v| v.id == l) {
                leader = Some(l);
            } else {
                add(
                    Verdict::Critical,
                    format!("healthy members follow leader {l}, which is not a voting member"),
                );
            }
        }
    } else if leaders.len() > 1 {
        let says: Vec<String> = members
            .iter()
            .filter(|m| m.healthy)
            .map(|m| {
                format!(
                    "{} follows {}",
                    label(m),
                    m.leader.as_deref().unwrap_or("none")
                )
            })
            .collect();
        add(
            Verdict::Critical,
            format!("no agreed leader: {}", says.join(", ")),
        );
    } else if count.holds() {
        add(Verdict::Critical, "no member knows a leader".to_string());
    }

    if voter_count > 0 && voter_count.is_multiple_of(2) {
        let odd = voter_count - 1;
        add(
            Verdict::Warning,
            format!(
                "{voter_count} voting members is an even count: it tolerates {} failure(s), no more than {odd} members would, \
                 while needing a larger quorum ({quorum} instead of {}); add or remove one member",
                voter_count - quorum,
                odd / 2 + 1
            ),
        );
    }

    // Alarms, with the member that raised them.
    let mut alarms: Vec<AlarmReport> = Vec::new();
    let mut alarms_error = None;
    let alarm_answer = probe
        .endpoints
        .iter()
        .filter(|p| p.status.as_ref().is_ok_and(|s| s.cluster_id == cluster_id))
        .find_map(|p| p.alarms.as_ref().ok());
    match alarm_answer {
        Some(list) => {
            for (id, name) in list {
                let member_name = member_list
                    .iter()
                    .find(|m| m.id == *id)
                    .map(|m| m.name.clone());
                let who = match &member_name {
                    Some(n) if !n.is_empty() => format!("{n} ({})", hex_id(*id)),
                    _ => hex_id(*id),
                };
                let consequence = match name.as_str() {
                    "NOSPACE" => "the cluster accepts only reads and deletes until the space is freed \
                                  (compact, defragment) and the alarm disarmed",
                    "CORRUPT" => "the member's data differs from the others; replace it from a healthy member",
                    _ => "see etcd's documentation for this alarm",
                };
                add(
                    Verdict::Warning,
                    format!("alarm {name} raised by member {who}: {consequence}"),
                );
                alarms.push(AlarmReport {
                    alarm: name.clone(),
                    member_id: hex_id(*id),
                    member_name,
                });
            }
        }
        None => {
            let why = probe
                .endpoints
                .iter()
                .find_map(|p| p.alarms.as_ref().err())
                .cloned()
                .unwrap_or_else(|| "no member answered".to_string());
            if count.holds() {
                add(
                    Verdict::Warning,
                    format!("alarms could not be listed: {why}"),
                );
            }
            alarms_error = Some(why);
        }
    }

    // Members' own errors, except those that merely repeat an alarm already reported.
    for m in &members {
        for e in &m.errors {
            let is_alarm_echo = e.contains("alarm:") && !alarms.is_empty();
            if !is_alarm_echo {
                add(
                    Verdict::Warning,
                    format!("member {} reports: {e}", label(m)),
                );
            }
        }
    }

    // Apply lag: between healthy members, and commit-versus-apply inside one.
    if let Some(lag) = applied_lag(&members) {
        if lag > opts.max_applied_lag {
            add(
                Verdict::Warning,
                format!(
                    "members' applied indexes differ by {lag} entries (more than {}): a member is falling behind",
                    opts.max_applied_lag
                ),
            );
        }
    }
    for m in members.iter().filter(|m| m.healthy) {
        if let (Some(raft), Some(app)) = (m.raft_index, m.applied_index) {
            let behind = raft.saturating_sub(app);
            if behind > opts.max_applied_lag {
                add(
                    Verdict::Warning,
                    format!(
                        "member {} has applied {behind} fewer entries than it committed: it is overloaded",
                        label(m)
                    ),
                );
            }
        }
    }

    // Database size against the quota.
    for m in &members {
        let Some(size) = m.db_size else { continue };
        let own_quota = status_of
            .values()
            .find(|(_, s)| hex_id(s.member_id) == m.id)
            .map(|(_, s)| s.db_size_quota)
            .filter(|q| *q > 0)
            .map(|q| q as u64);
        let quota = own_quota.unwrap_or(opts.quota_bytes);
        let size = size.max(0) as u64;
        if quota > 0 && size as f64 >= quota as f64 * opts.quota_warn_ratio {
            let in_use = m
                .db_size_in_use
                .map(|u| format!(", {} in use", human_bytes(u.max(0) as u64)))
                .unwrap_or_default();
            add(
                Verdict::Warning,
                format!(
                    "member {} db size {}{in_use} is {:.0}% of the {} quota: compact and defragment, or raise the quota",
                    label(m),
                    human_bytes(size),
                    size as f64 * 100.0 / quota as f64,
                    human_bytes(quota)
                ),
            );
        }
    }

    finish(
        findings,
        members,
        Some(cluster_id),
        opts,
        probe,
        alarms,
        alarms_error,
        leader,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    mut findings: Vec<Finding>,
    members: Vec<MemberHealth>,
    cluster_id: Option<u64>,
    opts: &HealthOptions,
    probe: &ClusterProbe,
    alarms: Vec<AlarmReport>,
    alarms_error: Option<String>,
    leader: Option<String>,
) -> HealthReport {
    // Worst first; the sort is stable, so findings of one severity keep their order.
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let verdict = verdict_of(&findings);
    let count = QuorumCount::of_members(&members);
    let learners = members.len() - count.voters;
    HealthReport {
        verdict,
        reasons: reasons_of(&findings),
        findings,
        cluster_id: cluster_id.map(hex_id),
        voters: count.voters,
        learners,
        healthy_voters: count.healthy_voters,
        quorum: count.quorum,
        fault_tolerance: count.fault_tolerance(),
        design_fault_tolerance: count.design_fault_tolerance(),
        leader,
        max_applied_lag: applied_lag(&members),
        quota_bytes: opts.quota_bytes,
        members,
        alarms,
        alarms_error,
        endpoints: endpoint_reports(probe),
        doctor: Default::default(),
    }
}

/// Voters, healthy voters and the quorum of a membership: the one count behind `cluster health`'s
/// verdict and the quorum gate (which applies it to the membership a change would leave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuorumCount {
    pub(crate) voters: usize,
    pub(crate) healthy_voters: usize,
    /// A majority of the voters (0 when there are none).
    pub(crate) quorum: usize,
}

impl QuorumCount {
    /// Counts members given as `(is_learner, healthy)`; learners do not vote and are not counted.
    pub(crate) fn of(members: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let (mut voters, mut healthy_voters) = (0, 0);
        for (is_learner, healthy) in members {
            if !is_learner {
                voters += 1;
                healthy_voters += usize::from(healthy);
            }
        }
        let quorum = if voters == 0 { 0 } else { voters / 2 + 1 };
        Self {
            voters,
            healthy_voters,
            quorum,
        }
    }

    pub(crate) fn of_members(members: &[MemberHealth]) -> Self {
        Self::of(members.iter().map(|m| (m.is_learner, m.healthy)))
    }

    /// A majority of the voters is healthy (never with no voter at all).
    pub(crate) fn holds(&self) -> bool {
        self.voters > 0 && self.healthy_voters >= self.quorum
    }

    /// How many more voters may fail before quorum is lost (0 once it is).
    pub(crate) fn fault_tolerance(&self) -> usize {
        self.healthy_voters.saturating_sub(self.quorum)
    }

    /// How many voters the membership could lose if all were healthy.
    pub(crate) fn design_fault_tolerance(&self) -> usize {
        self.voters.saturating_sub(self.quorum)
    }
}

/// Largest difference in applied index between two healthy members.
fn applied_lag(members: &[MemberHealth]) -> Option<u64> {
    let applied = members
        .iter()
        .filter(|m| m.healthy)
        .filter_map(|m| m.applied_index);
    let (min, max) = applied.fold(None, |acc: Option<(u64, u64)>, a| match acc {
        None => Some((a, a)),
        Some((lo, hi)) => Some((lo.min(a), hi.max(a))),
    })?;
    Some(max - min)
}

fn endpoint_reports(probe: &ClusterProbe) -> Vec<EndpointReport> {
    probe
        .endpoints
        .iter()
        .map(|p| EndpointReport {
            endpoint: p.endpoint.to_string(),
            member_id: p.status.as_ref().ok().map(|s| hex_id(s.member_id)),
            cluster_id: p.status.as_ref().ok().map(|s| hex_id(s.cluster_id)),
            error: p.status.as_ref().err().cloned(),
        })
        .collect()
}

/// The member list to judge by: among the clusters that answered, the one most endpoints belong to;
/// within it, the leader's list (the freshest during a reconfiguration), else the first.
fn choose_member_list(probe: &ClusterProbe) -> Option<(u64, Vec<MemberInfo>)> {
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &probe.endpoints {
        if let Some((cid, _)) = &p.members {
            *votes.entry(*cid).or_default() += 1;
        }
    }
    // Ties go to the cluster of the earliest endpoint, i.e. the one the user named first.
    let best = votes.values().copied().max()?;
    let cluster_id = probe
        .endpoints
        .iter()
        .filter_map(|p| p.members.as_ref().map(|(c, _)| *c))
        .find(|c| votes.get(c) == Some(&best))?;
    let answers = probe
        .endpoints
        .iter()
        .filter(|p| p.members.as_ref().is_some_and(|(c, _)| *c == cluster_id));
    let mut chosen = None;
    for p in answers {
        let is_leader = p
            .status
            .as_ref()
            .is_ok_and(|s| s.leader != 0 && s.leader == s.member_id);
        if chosen.is_none() || is_leader {
            chosen = p.members.clone();
        }
        if is_leader {
            break;
        }
    }
    chosen
}

/// Why a listed member has no answer: the error of an endpoint among its client URLs, or that none
/// of its URLs was tried.
fn unreached_cause(m: &MemberInfo, probe: &ClusterProbe) -> String {
    if m.client_urls.is_empty() {
        return if m.name.is_empty() {
            "added to the member list but never started (no name, no client URLs)".to_string()
        } else {
            "it advertises no client URL".to_string()
        };
    }
    for p in &probe.endpoints {
        let url = p.endpoint.to_string();
        if m.client_urls.iter().any(|u| same_url(u, &url)) {
            if let Err(e) = &p.status {
                return format!("{url}: {e}");
            }
        }
    }
    format!(
        "no endpoint reaches it (client URLs: {})",
        m.client_urls.join(", ")
    )
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn label(m: &MemberHealth) -> String {
    if m.name.is_empty() {
        m.id.clone()
    } else {
        format!("{} ({})", m.name, m.id)
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
