//! Rolling defragmentation: one member at a time, followers first and the leader last, only while
//! every member is healthy, with a health check between members; stops at the first problem.
//!
//! Defragmenting blocks the member's reads and writes while it rewrites its database, so doing them all
//! at once would stall the cluster, and doing the leader first would force an election for nothing.
//! Sizes come from each member's Status; etcd reports the in-use size from 3.4 on, and a member that
//! reports 0 is shown as unknown (null).

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::connect::request;
use super::members::judge;
use super::report::{HealthReport, MemberHealth};
use super::{connect, ConnectionOptions, Endpoint, EtcdError, HealthOptions};
use crate::failure::FailureClass;

/// How the rolling defragmentation runs.
#[derive(Debug, Clone)]
pub struct DefragOptions {
    pub health: HealthOptions,
    /// Bound on one member's defragmentation (large databases take a while).
    pub member_timeout: Duration,
    /// How long a defragmented member may take to answer as healthy again.
    pub settle: Duration,
}

impl Default for DefragOptions {
    fn default() -> Self {
        Self {
            health: HealthOptions::default(),
            member_timeout: Duration::from_secs(120),
            settle: Duration::from_secs(30),
        }
    }
}

/// One member, before and after.
#[derive(Debug, Clone, Serialize)]
pub struct DefragMember {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub was_leader: bool,
    pub db_size_before: Option<i64>,
    pub db_size_in_use_before: Option<i64>,
    pub db_size_after: Option<i64>,
    pub db_size_in_use_after: Option<i64>,
    pub seconds: f64,
}

/// The result of `cpkeep cluster defrag`: members in the order they were defragmented.
#[derive(Debug, Clone, Serialize)]
pub struct DefragReport {
    pub cluster_id: Option<String>,
    pub members: Vec<DefragMember>,
}

/// Why the rolling defragmentation did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DefragError {
    #[error("refusing to defragment: every member must be healthy: {0}")]
    NotHealthy(String),

    #[error("defragmentation of member {member} failed{done}: {source}")]
    Failed {
        member: String,
        /// `" (done: m2, m3)"`, or empty.
        done: String,
        #[source]
        source: EtcdError,
    },

    #[error("stopped after defragmenting member {member}{done}: the cluster is not healthy again within {}: {why}", humantime::format_duration(*within))]
    NotHealthyAfter {
        member: String,
        done: String,
        within: Duration,
        why: String,
    },
}

impl DefragError {
    pub fn class(&self) -> FailureClass {
        match self {
            DefragError::NotHealthy(_) => FailureClass::Refused,
            DefragError::Failed { .. } | DefragError::NotHealthyAfter { .. } => {
                FailureClass::Failed
            }
        }
    }
}

/// Defragments every member, followers first and the leader last.
pub async fn rolling_defrag(
    conn: &ConnectionOptions,
    opts: &DefragOptions,
) -> Result<DefragReport, DefragError> {
    let report = judge(conn, &opts.health).await;
    all_healthy(&report).map_err(DefragError::NotHealthy)?;
    let leader = report.leader.clone();
    // Followers by name, then the leader.
    let mut order: Vec<&MemberHealth> = report.members.iter().collect();
    order.sort_by_key(|m| (Some(&m.id) == leader.as_ref(), m.name.clone()));
    let plan: Vec<(String, String, String, bool)> = order
        .iter()
        .map(|m| {
            (
                m.id.clone(),
                label(m),
                m.endpoint.clone().unwrap_or_default(),
                Some(&m.id) == leader.as_ref(),
            )
        })
        .collect();
    let mut before_report = report;
    let mut done: Vec<DefragMember> = Vec::new();
    for (id, name, url, was_leader) in plan {
        let done_list = done_list(&done);
        let before = before_report.members.iter().find(|m| m.id == id);
        let (size_before, in_use_before) = sizes(before);
        let started = Instant::now();
        let result = async {
            let ep = Endpoint::parse(&url, false)?;
            let client = connect(&ep, conn).await?;
            let mut mc = client.maintenance_client();
            let deadline = Instant::now() + opts.member_timeout;
            request(
                &ep,
                "defragment",
                deadline,
                opts.member_timeout,
                mc.defragment(),
            )
            .await
        }
        .await;
        if let Err(source) = result {
            return Err(DefragError::Failed {
                member: name,
                done: done_list,
                source,
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        // The health check between members: every member healthy again before the next one.
        let after = settle(conn, opts)
            .await
            .map_err(|why| DefragError::NotHealthyAfter {
                member: name.clone(),
                done: done_list.clone(),
                within: opts.settle,
                why,
            })?;
        let (size_after, in_use_after) = sizes(after.members.iter().find(|m| m.id == id));
        done.push(DefragMember {
            id,
            name: before.map(|m| m.name.clone()).unwrap_or_default(),
            endpoint: url,
            was_leader,
            db_size_before: size_before,
            db_size_in_use_before: in_use_before,
            db_size_after: size_after,
            db_size_in_use_after: in_use_after,
            seconds,
        });
        before_report = after;
    }
    Ok(DefragReport {
        cluster_id: before_report.cluster_id,
        members: done,
    })
}

/// Every member (learners too) healthy and one agreed leader, or why not.
fn all_healthy(report: &HealthReport) -> Result<(), String> {
    if report.members.is_empty() {
        return Err(if report.reasons.is_empty() {
            "no member list".to_string()
        } else {
            report.reasons.join("; ")
        });
    }
    let down: Vec<String> = report
        .members
        .iter()
        .filter(|m| !m.healthy || m.endpoint.is_none())
        .map(|m| {
            format!(
                "member {} is down ({})",
                label(m),
                m.error.as_deref().unwrap_or("no endpoint answered for it")
            )
        })
        .collect();
    if !down.is_empty() {
        return Err(down.join("; "));
    }
    if report.leader.is_none() {
        return Err("the members agree on no leader".to_string());
    }
    Ok(())
}

/// Polls until every member is healthy again, or `settle` has passed.
async fn settle(conn: &ConnectionOptions, opts: &DefragOptions) -> Result<HealthReport, String> {
    let deadline = Instant::now() + opts.settle;
    loop {
        let report = judge(conn, &opts.health).await;
        let why = match all_healthy(&report) {
            Ok(()) => return Ok(report),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(why);
        }
        tokio::time::sleep(Duration::from_millis(200).min(deadline - Instant::now())).await;
    }
}

fn sizes(m: Option<&MemberHealth>) -> (Option<i64>, Option<i64>) {
    let known = |v: Option<i64>| v.filter(|b| *b > 0);
    (
        known(m.and_then(|m| m.db_size)),
        known(m.and_then(|m| m.db_size_in_use)),
    )
}

fn done_list(done: &[DefragMember]) -> String {
    if done.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = done.iter().map(|d| d.name.as_str()).collect();
        format!(" (done: {})", names.join(", "))
    }
}

fn label(m: &MemberHealth) -> String {
    if m.name.is_empty() {
        format!("(unstarted) {}", m.id)
    } else {
        format!("{} ({})", m.name, m.id)
    }
}
