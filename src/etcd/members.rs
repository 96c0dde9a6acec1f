//! Changing the membership of a live cluster: add a member as a learner, wait until it has caught up,
//! promote it, remove a member, replace one.
//!
//! Every write is preceded by a fresh probe of every member, the verdict of `cluster health`
//! ([`evaluate`]) and the [`quorum_gate`], and is sent to the leader. etcd's own refusals that clear up
//! by themselves (its strict reconfiguration check right after a member connected, a learner not yet in
//! sync) are retried until a deadline; every other refusal ends the operation, naming the member.

use std::time::Duration;

use etcd_client::MemberAddOptions;
use serde::Serialize;
use tokio::time::Instant;

use super::connect::request;
use super::gate::{quorum_gate, GateOptions, GateRefusal, GateVerdict, MembershipChange};
use super::report::{HealthReport, MemberHealth};
use super::{
    connect, evaluate, hex_id, probe_cluster, ConnectionOptions, Endpoint, EtcdError, HealthOptions,
};
use crate::failure::FailureClass;

/// How member operations judge and retry.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// Thresholds of the health verdict the gate reads.
    pub health: HealthOptions,
    pub gate: GateOptions,
    /// How long to retry etcd's "unhealthy cluster" refusal of a reconfiguration: etcd refuses until
    /// every member has been connected for 5 seconds (its strict reconfiguration check).
    pub reconfig_retry: Duration,
}

impl Default for MemberOptions {
    fn default() -> Self {
        Self {
            health: HealthOptions::default(),
            gate: GateOptions::default(),
            reconfig_retry: Duration::from_secs(15),
        }
    }
}

/// A member added as a learner, and what the new member needs to start.
#[derive(Debug, Clone, Serialize)]
pub struct AddedMember {
    /// Member ID, hex.
    pub id: String,
    #[serde(skip)]
    pub raw_id: u64,
    pub name: String,
    pub peer_url: String,
    /// etcd's `--initial-cluster` for the new member: every member's `name=peer-url`, the new one
    /// included, as `etcdctl member add` prints it.
    pub initial_cluster: String,
    /// etcd's `--initial-cluster-state` for the new member: always `existing`.
    pub initial_cluster_state: &'static str,
    pub gate: GateVerdict,
}

/// A learner that has caught up with the leader.
#[derive(Debug, Clone, Serialize)]
pub struct CaughtUp {
    pub id: String,
    pub name: String,
    pub applied_index: u64,
    pub leader_applied_index: u64,
    pub lag: u64,
    pub seconds: f64,
}

/// A learner made a voter.
#[derive(Debug, Clone, Serialize)]
pub struct Promoted {
    pub id: String,
    pub name: String,
    /// Promotion requests sent (etcd refuses a learner not yet in sync; cpkeep retries).
    pub attempts: u32,
    pub gate: GateVerdict,
}

/// A member removed.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub id: String,
    pub name: String,
    pub was_learner: bool,
    pub gate: GateVerdict,
}

/// Everything that can end a member operation.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Refused(#[from] GateRefusal),

    #[error(transparent)]
    Etcd(#[from] EtcdError),

    #[error("no member is named {0:?} or has that ID (see `cpkeep cluster members`)")]
    NoSuchMember(String),

    #[error("{key:?} names several members ({list}): give the ID")]
    Ambiguous { key: String, list: String },

    #[error("cannot {operation}: no healthy voting member to send it to")]
    NoWriter { operation: String },

    #[error("{operation}: etcd refused it: {cause}")]
    Rejected { operation: String, cause: String },

    #[error("learner {member} has not caught up within {}: {last}", humantime::format_duration(*within))]
    NotCaughtUp {
        member: String,
        within: Duration,
        last: String,
    },

    #[error("learner {member} could not be promoted within {}: {cause}", humantime::format_duration(*within))]
    NotPromoted {
        member: String,
        within: Duration,
        cause: String,
    },
}

impl MemberError {
    pub fn class(&self) -> FailureClass {
        match self {
            MemberError::Refused(r) => r.class(),
            MemberError::Etcd(_) | MemberError::NoSuchMember(_) | MemberError::Ambiguous { .. } => {
                FailureClass::Unusable
            }
            MemberError::NoWriter { .. } => FailureClass::Refused,
            MemberError::Rejected { .. }
            | MemberError::NotCaughtUp { .. }
            | MemberError::NotPromoted { .. } => FailureClass::Failed,
        }
    }
}

/// Probes every member and derives the verdict the gate reads.
pub async fn judge(conn: &ConnectionOptions, health: &HealthOptions) -> HealthReport {
    evaluate(&probe_cluster(conn, true).await, health)
}

/// The member a user named: a name first, else a hex ID.
pub fn resolve_member(report: &HealthReport, key: &str) -> Result<u64, MemberError> {
    let named: Vec<&MemberHealth> = report.members.iter().filter(|m| m.name == key).collect();
    match named.as_slice() {
        [one] => return parse_id(&one.id).ok_or_else(|| MemberError::NoSuchMember(key.into())),
        [] => {}
        many => {
            return Err(MemberError::Ambiguous {
                key: key.to_string(),
                list: many
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
    let wanted = key.trim_start_matches("0x").to_ascii_lowercase();
    report
        .members
        .iter()
        .find(|m| m.id == wanted)
        .and_then(|m| parse_id(&m.id))
        .ok_or_else(|| MemberError::NoSuchMember(key.to_string()))
}

fn parse_id(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex, 16).ok()
}

/// Adds `name` at `peer_url` as a learner, after the gate; returns its ID and its `--initial-cluster`.
pub async fn add_learner(
    conn: &ConnectionOptions,
    name: &str,
    peer_url: &str,
    opts: &MemberOptions,
) -> Result<AddedMember, MemberError> {
    let report = judge(conn, &opts.health).await;
    let gate = quorum_gate(
        &report,
        &MembershipChange::Add { name, peer_url },
        &opts.gate,
    )?;
    let operation = format!("add member {name} ({peer_url})");
    let writer = writer(&report, &operation)?;
    let options = MemberAddOptions::new().with_is_learner();
    let resp = retry_reconfig(conn, &writer, &operation, opts.reconfig_retry, |mut c| {
        let (urls, options) = (vec![peer_url.to_string()], options.clone());
        async move { c.member_add(urls, Some(options)).await }
    })
    .await?;
    let id = resp.member().map(|m| m.id()).unwrap_or_default();
    if id == 0 {
        return Err(MemberError::Rejected {
            operation,
            cause: "the answer names no new member".to_string(),
        });
    }
    // As etcdctl prints it: every peer URL of every member, the new one under its name.
    let mut seats: Vec<String> = Vec::new();
    for m in resp.member_list() {
        let n = if m.id() == id { name } else { m.name() };
        seats.extend(m.peer_urls().iter().map(|u| format!("{n}={u}")));
    }
    Ok(AddedMember {
        id: hex_id(id),
        raw_id: id,
        name: name.to_string(),
        peer_url: peer_url.to_string(),
        initial_cluster: seats.join(","),
        initial_cluster_state: "existing",
        gate,
    })
}

/// Polls the learner's status at its client URLs until its applied index is within `max_lag` of the
/// leader's, or `within` has passed.
pub async fn wait_caught_up(
    conn: &ConnectionOptions,
    id: u64,
    max_lag: u64,
    within: Duration,
    health: &HealthOptions,
) -> Result<CaughtUp, MemberError> {
    let started = Instant::now();
    let deadline = started + within;
    let hex = hex_id(id);
    loop {
        let report = judge(conn, health).await;
        let (label, last) = match report.members.iter().find(|m| m.id == hex) {
            None => return Err(MemberError::NoSuchMember(hex)),
            Some(m) => {
                let label = member_label(m);
                let leader_applied = report
                    .leader
                    .as_ref()
                    .and_then(|l| report.members.iter().find(|x| &x.id == l))
                    .and_then(|l| l.applied_index);
                match (m.applied_index, leader_applied) {
                    (Some(mine), Some(theirs)) => {
                        let lag = theirs.saturating_sub(mine);
                        if lag <= max_lag {
                            return Ok(CaughtUp {
                                id: hex,
                                name: m.name.clone(),
                                applied_index: mine,
                                leader_applied_index: theirs,
                                lag,
                                seconds: started.elapsed().as_secs_f64(),
                            });
                        }
                        let last =
                            format!("{lag} entries behind the leader (at most {max_lag} wanted)");
                        (label, last)
                    }
                    (None, _) => match &m.error {
                        Some(e) => (label, format!("it does not answer: {e}")),
                        None => (label, "it does not answer".to_string()),
                    },
                    (_, None) => (label, "no leader answers".to_string()),
                }
            }
        };
        if Instant::now() >= deadline {
            return Err(MemberError::NotCaughtUp {
                member: label,
                within,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500).min(deadline - Instant::now())).await;
    }
}

/// Promotes learner `id` after the gate, retrying etcd's refusal of a learner not yet in sync until
/// `within` has passed.
pub async fn promote(
    conn: &ConnectionOptions,
    id: u64,
    within: Duration,
    opts: &MemberOptions,
) -> Result<Promoted, MemberError> {
    let report = judge(conn, &opts.health).await;
    let gate = quorum_gate(&report, &MembershipChange::Promote { id }, &opts.gate)?;
    let hex = hex_id(id);
    let m = report.members.iter().find(|m| m.id == hex);
    let label = m.map(member_label).unwrap_or_else(|| hex.clone());
    let name = m.map(|m| m.name.clone()).unwrap_or_default();
    let operation = format!("promote learner {label}");
    let writer = writer(&report, &operation)?;
    let deadline = Instant::now() + within;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = async {
            let client = connect(&writer, conn).await?;
            let mut c = client.cluster_client();
            let d = Instant::now() + conn.timeout;
            request(
                &writer,
                "member promote",
                d,
                conn.timeout,
                c.member_promote(id),
            )
            .await
        }
        .await;
        let cause = match result {
            Ok(_) => {
                return Ok(Promoted {
                    id: hex,
                    name,
                    attempts,
                    gate,
                })
            }
            Err(e) => cause_of(e),
        };
        let transient = cause.contains("in sync") || is_unhealthy_cluster(&cause);
        if !transient {
            return Err(MemberError::Rejected { operation, cause });
        }
        if Instant::now() >= deadline {
            return Err(MemberError::NotPromoted {
                member: label,
                within,
                cause,
            });
        }
        tokio::time::sleep(Duration::from_millis(500).min(deadline - Instant::now())).await;
    }
}

/// Removes member `id` after the gate.
pub async fn remove(
    conn: &ConnectionOptions,
    id: u64,
    opts: &MemberOptions,
) -> Result<Removed, MemberError> {
    let report = judge(conn, &opts.health).await;
    remove_judged(conn, &report, id, MembershipChange::Remove { id }, opts).await
}

async fn remove_judged(
    conn: &ConnectionOptions,
    report: &HealthReport,
    id: u64,
    change: MembershipChange<'_>,
    opts: &MemberOptions,
) -> Result<Removed, MemberError> {
    let gate = quorum_gate(report, &change, &opts.gate)?;
    let hex = hex_id(id);
    let m = report.members.iter().find(|m| m.id == hex);
    let label = m.map(member_label).unwrap_or_else(|| hex.clone());
    let operation = format!("remove member {label}");
    // Not the member being removed: it may stop answering half-way through.
    let writer = writer_except(report, &operation, Some(&hex))?;
    retry_reconfig(
        conn,
        &writer,
        &operation,
        opts.reconfig_retry,
        |mut c| async move { c.member_remove(id).await },
    )
    .await?;
    Ok(Removed {
        id: hex,
        name: m.map(|m| m.name.clone()).unwrap_or_default(),
        was_learner: m.is_some_and(|m| m.is_learner),
        gate,
    })
}

/// Replaces member `old` by a learner `name` at `peer_url`: the whole change is gated, then the removal
/// is done, then the addition is gated again on a fresh probe and done. Promotion follows once the new
/// member has started ([`wait_caught_up`], [`promote`]).
pub async fn replace(
    conn: &ConnectionOptions,
    old: u64,
    name: &str,
    peer_url: &str,
    opts: &MemberOptions,
) -> Result<(Removed, AddedMember), MemberError> {
    let report = judge(conn, &opts.health).await;
    let change = MembershipChange::Replace { id: old, peer_url };
    let removed = remove_judged(conn, &report, old, change, opts).await?;
    let added = add_learner(conn, name, peer_url, opts).await?;
    Ok((removed, added))
}

/// The leader's endpoint, else any healthy voter's.
fn writer(report: &HealthReport, operation: &str) -> Result<Endpoint, MemberError> {
    writer_except(report, operation, None)
}

fn writer_except(
    report: &HealthReport,
    operation: &str,
    except: Option<&str>,
) -> Result<Endpoint, MemberError> {
    let usable = |m: &&MemberHealth| m.healthy && !m.is_learner && Some(m.id.as_str()) != except;
    let leader = report
        .leader
        .as_ref()
        .and_then(|l| report.members.iter().find(|m| &m.id == l))
        .filter(usable);
    let chosen = leader.or_else(|| report.members.iter().find(usable));
    chosen
        .and_then(|m| m.endpoint.as_deref())
        .and_then(|url| Endpoint::parse(url, false).ok())
        .ok_or_else(|| MemberError::NoWriter {
            operation: operation.to_string(),
        })
}

/// Sends one reconfiguration to `writer`, retrying etcd's transient "unhealthy cluster" refusal for
/// up to `retry`.
async fn retry_reconfig<T, F, Fut>(
    conn: &ConnectionOptions,
    writer: &Endpoint,
    operation: &str,
    retry: Duration,
    call: F,
) -> Result<T, MemberError>
where
    F: Fn(etcd_client::ClusterClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + retry;
    loop {
        let result = async {
            let client = connect(writer, conn).await?;
            let d = Instant::now() + conn.timeout;
            request(
                writer,
                "member change",
                d,
                conn.timeout,
                call(client.cluster_client()),
            )
            .await
        }
        .await;
        match result {
            Ok(v) => return Ok(v),
            Err(e) => {
                let cause = cause_of(e);
                if !is_unhealthy_cluster(&cause) || Instant::now() >= deadline {
                    return Err(MemberError::Rejected {
                        operation: operation.to_string(),
                        cause,
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500).min(deadline - Instant::now())).await;
    }
}

fn is_unhealthy_cluster(cause: &str) -> bool {
    cause.contains("unhealthy cluster")
}

fn cause_of(e: EtcdError) -> String {
    e.to_string()
}

fn member_label(m: &MemberHealth) -> String {
    if m.name.is_empty() {
        format!("(unstarted) {}", m.id)
    } else {
        format!("{} ({})", m.name, m.id)
    }
}
