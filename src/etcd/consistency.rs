//! The data-consistency check: every healthy voter's `HashKV` at one common revision.
//!
//! The revision is the lowest current revision among the voters, asked just before hashing: every
//! voter has applied it, so a cluster under write load hashes the same history on every member and
//! moving heads do not matter. A compaction landing between the status and the hash (etcd answers
//! ErrCompacted, or the members report different compaction revisions) is retried once at a fresh
//! revision. This module only reads; it never prints and never judges (see `findings`).

use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::connect::request;
use super::findings::{label, ConsistencyReport, MemberHash};
use super::report::MemberHealth;
use super::{connect, ConnectionOptions, Endpoint, EtcdError};

/// Hashes every healthy voter of `members` at a common revision, each request bounded by `timeout`
/// (hashing a large database takes a while: it reads every key).
pub async fn check_consistency(
    conn: &ConnectionOptions,
    members: &[MemberHealth],
    timeout: Duration,
) -> ConsistencyReport {
    let voters: Vec<&MemberHealth> = members
        .iter()
        .filter(|m| m.healthy && !m.is_learner && m.endpoint.is_some())
        .collect();
    if voters.is_empty() {
        return ConsistencyReport {
            error: Some("no healthy voting member to hash".to_string()),
            ..ConsistencyReport::default()
        };
    }
    let clients = join_all(voters.iter().map(|m| async move {
        let ep = Endpoint::parse(m.endpoint.as_deref().unwrap_or_default(), false)?;
        let client = connect(&ep, conn).await?;
        Ok::<_, EtcdError>((ep, client))
    }))
    .await;

    let mut report = ConsistencyReport::default();
    for attempt in 1..=2 {
        report.attempts = attempt;
        // Fresh revisions each attempt: the retry must move past the compaction that broke the first.
        let revisions = join_all(clients.iter().map(|c| async move {
            let (ep, client) = c.as_ref().ok()?;
            let mut mc = client.maintenance_client();
            let deadline = Instant::now() + conn.timeout;
            let s = request(ep, "status", deadline, conn.timeout, mc.status())
                .await
                .ok()?;
            s.header().map(|h| h.revision())
        }))
        .await;
        let Some(revision) = revisions.iter().flatten().copied().min() else {
            report.error = Some("no healthy voter answered a status request".to_string());
            return report;
        };
        report.revision = Some(revision);
        let answers = join_all(clients.iter().map(|c| async move {
            let (ep, client) = c.as_ref().map_err(|e| e.to_string())?;
            let mut mc = client.maintenance_client();
            let deadline = Instant::now() + timeout;
            request(ep, "hash kv", deadline, timeout, mc.hash_kv(revision))
                .await
                .map(|r| (r.hash(), r.compact_version()))
                .map_err(|e| e.to_string())
        }))
        .await;
        report.members = voters
            .iter()
            .zip(&answers)
            .map(|(m, a)| MemberHash {
                member: label(m),
                id: m.id.clone(),
                hash: a.as_ref().ok().map(|(h, _)| *h),
                compact_revision: a.as_ref().ok().map(|(_, c)| *c),
                error: a.as_ref().err().cloned(),
            })
            .collect();
        let compacted = answers
            .iter()
            .any(|a| a.as_ref().is_err_and(|e| e.contains("compacted")));
        let mut compactions: Vec<i64> = answers
            .iter()
            .filter_map(|a| a.as_ref().ok().map(|(_, c)| *c))
            .collect();
        compactions.sort_unstable();
        compactions.dedup();
        report.compact_revision = compactions.iter().copied().max();
        // Different compaction revisions mean a compaction was applied between two members' hashes:
        // their hashes cover different ranges and cannot be compared.
        if !(compacted || compactions.len() > 1) {
            break;
        }
    }
    report
}
