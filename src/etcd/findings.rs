//! The doctor checks of `cluster health`: their typed results (what `-o json` shows under `doctor`
//! and what the daemon can export) and the pure rules that turn measurements into findings — hash
//! majority, fragmentation, p99 from histogram buckets and the metric thresholds, version skew, raft
//! agreement.
//!
//! No I/O here: the measurements come from the probe, `consistency`, `metrics_scrape` and
//! `served_certs`, so every rule is unit-tested on hand-made values. This module never prints and
//! never talks to a member.

use std::collections::BTreeMap;

use serde::Serialize;

use super::report::{Check, Finding, MemberHealth, Verdict};
use super::served_certs::ServedCert;
use crate::units::human_bytes;

/// Everything the doctor checks measured, beside the findings they raised.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DoctorReport {
    /// The data-consistency check; null unless `--check-consistency`.
    pub consistency: Option<ConsistencyReport>,
    /// db size against in-use size, per member that reported both.
    pub fragmentation: Vec<FragmentationEntry>,
    /// What each member's `/metrics` said (or why it could not be read).
    pub metrics: Vec<MemberMetrics>,
    pub version_skew: VersionSkew,
    /// The certificates members really serve on their client and peer URLs.
    pub served_certs: Vec<ServedCert>,
    pub raft: RaftAgreement,
}

/// Every voter's `HashKV` at one common revision.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsistencyReport {
    /// The revision hashed: the lowest current revision among the healthy voters.
    pub revision: Option<i64>,
    /// The compaction revision the members reported with their hash.
    pub compact_revision: Option<i64>,
    /// The hash a strict majority of the hashed members agree on, if one does.
    pub majority_hash: Option<u32>,
    /// 1, or 2 when a compaction moved under the first attempt.
    pub attempts: u32,
    pub members: Vec<MemberHash>,
    /// Why the check could not run at all (no healthy voter).
    pub error: Option<String>,
}

/// One member's hash, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberHash {
    /// The member's name, else its hex ID.
    pub member: String,
    pub id: String,
    pub hash: Option<u32>,
    pub compact_revision: Option<i64>,
    pub error: Option<String>,
}

/// The hash held by a strict majority of the hashed members, and how many hold it.
pub fn hash_majority(hashes: &[u32]) -> Option<(u32, usize)> {
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    for h in hashes {
        *count.entry(*h).or_default() += 1;
    }
    count
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .filter(|(_, n)| *n * 2 > hashes.len())
}

/// Fills `majority_hash` and returns the findings: a member whose hash differs from the majority's
/// is CRITICAL, named, with both hashes; no majority at all is CRITICAL naming every hash; a member
/// that could not be hashed is a WARNING (the check is blind to it).
pub fn consistency_findings(report: &mut ConsistencyReport) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(e) = &report.error {
        out.push(Finding::of(
            Check::Consistency,
            Verdict::Warning,
            None,
            format!("data consistency not checked: {e}"),
        ));
        return out;
    }
    let rev = report.revision.unwrap_or_default();
    let hashed: Vec<(&MemberHash, u32)> = report
        .members
        .iter()
        .filter_map(|m| m.hash.map(|h| (m, h)))
        .collect();
    let hashes: Vec<u32> = hashed.iter().map(|(_, h)| *h).collect();
    let majority = hash_majority(&hashes);
    report.majority_hash = majority.map(|(h, _)| h);
    match majority {
        Some((good, n)) => {
            for (m, h) in hashed.iter().filter(|(_, h)| *h != good) {
                out.push(Finding::of(
                    Check::Consistency,
                    Verdict::Critical,
                    Some(&m.member),
                    format!(
                        "member {} ({}) holds different data: its hash at revision {rev} is {h:08x}, the majority's \
                         ({n} of {}) is {good:08x}; replace it from a healthy member (cluster member replace)",
                        m.member,
                        m.id,
                        hashed.len()
                    ),
                ));
            }
        }
        None if hashed.len() > 1 => {
            let all: Vec<String> = hashed
                .iter()
                .map(|(m, h)| format!("{} {h:08x}", m.member))
                .collect();
            out.push(Finding::of(
                Check::Consistency,
                Verdict::Critical,
                None,
                format!(
                    "members hold different data and no hash has a majority at revision {rev}: {}",
                    all.join(", ")
                ),
            ));
        }
        None => {}
    }
    for m in report.members.iter().filter(|m| m.hash.is_none()) {
        out.push(Finding::of(
            Check::Consistency,
            Verdict::Warning,
            Some(&m.member),
            format!(
                "data consistency of member {} not checked: {}",
                m.member,
                m.error.as_deref().unwrap_or("no hash")
            ),
        ));
    }
    out
}

/// One member's db size against the size in use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FragmentationEntry {
    pub member: String,
    pub db_size: u64,
    pub db_size_in_use: u64,
    /// in use / db size, 0 to 1.
    pub in_use_ratio: f64,
    /// Over the minimum size and below the in-use ratio: a WARNING.
    pub fragmented: bool,
}

/// When fragmentation is a warning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FragmentationOptions {
    /// Databases smaller than this are never judged (defragmenting them gains nothing).
    pub min_size: u64,
    /// In-use share below which a database is fragmented.
    pub min_in_use_ratio: f64,
}

impl Default for FragmentationOptions {
    fn default() -> Self {
        Self {
            min_size: 100 * 1024 * 1024,
            min_in_use_ratio: 0.5,
        }
    }
}

/// Fragmentation of every member that reported both sizes (etcd reports the in-use size from 3.4).
pub fn fragmentation(
    members: &[MemberHealth],
    opts: &FragmentationOptions,
) -> (Vec<FragmentationEntry>, Vec<Finding>) {
    let mut entries = Vec::new();
    let mut out = Vec::new();
    for m in members {
        let (Some(size), Some(in_use)) = (m.db_size, m.db_size_in_use) else {
            continue;
        };
        if size <= 0 || in_use <= 0 {
            continue;
        }
        let (size, in_use) = (size as u64, in_use as u64);
        let ratio = in_use as f64 / size as f64;
        let fragmented = size > opts.min_size && ratio < opts.min_in_use_ratio;
        let who = label(m);
        if fragmented {
            out.push(Finding::of(
                Check::Fragmentation,
                Verdict::Warning,
                Some(&who),
                format!(
                    "member {who} db is {}, only {} in use ({:.0}%, below {:.0}%): run `cpkeep cluster defrag` to give the space back",
                    human_bytes(size),
                    human_bytes(in_use),
                    ratio * 100.0,
                    opts.min_in_use_ratio * 100.0
                ),
            ));
        }
        entries.push(FragmentationEntry {
            member: who,
            db_size: size,
            db_size_in_use: in_use,
            in_use_ratio: (ratio * 1000.0).round() / 1000.0,
            fragmented,
        });
    }
    (entries, out)
}

/// What one member's `/metrics` said. Histograms are cumulative since the member started, so the
/// p99 values are over its whole life, not the last minutes: what a one-shot run can compute.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemberMetrics {
    /// The member the URL belongs to (by host), if one.
    pub member: Option<String>,
    pub url: String,
    /// The URL was guessed (kubeadm's `http://127.0.0.1:2381`), not given with `--metrics-urls`.
    pub guessed: bool,
    /// Why the metrics could not be read.
    pub error: Option<String>,
    pub wal_fsync_p99_seconds: Option<f64>,
    pub backend_commit_p99_seconds: Option<f64>,
    /// Over every peer this member talks to.
    pub peer_round_trip_p99_seconds: Option<f64>,
    pub leader_changes: Option<u64>,
    pub proposals_failed: Option<u64>,
}

/// The thresholds of the metric findings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricThresholds {
    pub wal_fsync_warning: f64,
    pub wal_fsync_critical: f64,
    pub backend_commit_warning: f64,
    /// Leader changes a member may have seen since it started (its first election counts) before
    /// it is a warning.
    pub max_leader_changes: u64,
}

impl Default for MetricThresholds {
    fn default() -> Self {
        // etcd's own guidance: WAL fsync p99 under 10 ms and backend commit under 25 ms on good disks;
        // these thresholds flag disks that are slow enough to cost elections.
        Self {
            wal_fsync_warning: 0.5,
            wal_fsync_critical: 1.0,
            backend_commit_warning: 0.25,
            max_leader_changes: 3,
        }
    }
}

/// The `q` quantile (0..1) of a cumulative histogram given as `(upper bound, cumulative count)`
/// buckets, `+Inf` included, interpolated linearly inside the bucket as Prometheus'
/// `histogram_quantile` does. `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(le, _)| !le.is_nan())
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = b.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in &b {
        if count >= rank {
            if le.is_infinite() {
                // Beyond the last finite bound: that bound is the most that can be said.
                return Some(prev.0);
            }
            let in_bucket = count - prev.1;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(prev.0 + (le - prev.0) * (rank - prev.1) / in_bucket);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

/// The findings of the members' metrics: unreadable (WARNING when the URL was given, informational
/// when it was guessed), slow WAL fsync or backend commit, many leader changes, failed proposals.
pub fn metrics_findings(metrics: &[MemberMetrics], t: &MetricThresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in metrics {
        let who = m.member.clone().unwrap_or_else(|| m.url.clone());
        let mut add = |severity: Verdict, message: String| {
            out.push(Finding::of(Check::Metrics, severity, Some(&who), message))
        };
        if let Some(e) = &m.error {
            let severity = if m.guessed {
                Verdict::Ok
            } else {
                Verdict::Warning
            };
            add(
                severity,
                format!("metrics of {who} could not be read from {}: {e}", m.url),
            );
            continue;
        }
        if let Some(p) = m.wal_fsync_p99_seconds {
            let severity = if p > t.wal_fsync_critical {
                Verdict::Critical
            } else if p > t.wal_fsync_warning {
                Verdict::Warning
            } else {
                Verdict::Ok
            };
            if severity != Verdict::Ok {
                add(
                    severity,
                    format!(
                        "member {who} WAL fsync p99 is {} (warning above {}, critical above {}): its disk is too slow for etcd",
                        seconds(p),
                        seconds(t.wal_fsync_warning),
                        seconds(t.wal_fsync_critical)
                    ),
                );
            }
        }
        if let Some(p) = m.backend_commit_p99_seconds {
            if p > t.backend_commit_warning {
                add(
                    Verdict::Warning,
                    format!(
                        "member {who} backend commit p99 is {} (warning above {}): its disk is slow",
                        seconds(p),
                        seconds(t.backend_commit_warning)
                    ),
                );
            }
        }
        if let Some(n) = m.leader_changes {
            if n > t.max_leader_changes {
                add(
                    Verdict::Warning,
                    format!(
                        "member {who} has seen {n} leader changes since it started (more than {}): elections are frequent",
                        t.max_leader_changes
                    ),
                );
            }
        }
        if let Some(n) = m.proposals_failed.filter(|n| *n > 0) {
            add(
                Verdict::Warning,
                format!("member {who} has {n} failed proposal(s) since it started"),
            );
        }
    }
    out
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// The etcd versions the members run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionSkew {
    /// Member → version, for members that answered.
    pub versions: BTreeMap<String, String>,
    /// The distinct `major.minor` versions, sorted.
    pub minor_versions: Vec<String>,
    /// More than one minor version.
    pub skewed: bool,
    /// `--upgrading` was given: skew is expected.
    pub upgrading: bool,
}

/// `3.5.30` → `3.5`; a version that is not `x.y[.z]` is kept whole.
pub fn minor_of(version: &str) -> String {
    let mut parts = version.trim_start_matches('v').splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => version.to_string(),
    }
}

/// Members on different minor versions: a WARNING, or informational during an upgrade.
pub fn version_skew(members: &[MemberHealth], upgrading: bool) -> (VersionSkew, Vec<Finding>) {
    let versions: BTreeMap<String, String> = members
        .iter()
        .filter_map(|m| m.version.as_ref().map(|v| (label(m), v.clone())))
        .collect();
    let mut by_minor: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (m, v) in &versions {
        by_minor.entry(minor_of(v)).or_default().push(m.clone());
    }
    let skew = VersionSkew {
        minor_versions: by_minor.keys().cloned().collect(),
        skewed: by_minor.len() > 1,
        upgrading,
        versions,
    };
    let mut out = Vec::new();
    if skew.skewed {
        let list: Vec<String> = by_minor
            .iter()
            .map(|(minor, who)| format!("{minor} on {}", who.join(", ")))
            .collect();
        let (severity, tail) = if upgrading {
            (Verdict::Ok, "expected during the upgrade (--upgrading)")
        } else {
            (
                Verdict::Warning,
                "finish the rolling upgrade (or pass --upgrading while it runs)",
            )
        };
        out.push(Finding::of(
            Check::VersionSkew,
            severity,
            None,
            format!(
                "members run different etcd minor versions: {}; {tail}",
                list.join("; ")
            ),
        ));
    }
    (skew, out)
}

/// Whether the healthy members agree on the raft term and follow the same leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RaftAgreement {
    /// Healthy member → its raft term.
    pub terms: BTreeMap<String, u64>,
    /// The term every healthy member is on, when they agree.
    pub agreed_term: Option<u64>,
    /// The members were asked a second time because the first answers disagreed.
    pub reprobed: bool,
    /// Members that say they lead while no other healthy member follows them.
    pub unfollowed_leaders: Vec<String>,
}

/// Raft agreement among healthy members: different terms are a WARNING (one election may be in
/// progress: the caller re-probes once before believing it); a member that says it leads while none
/// of the others follow it is CRITICAL.
pub fn raft_agreement(members: &[MemberHealth]) -> (RaftAgreement, Vec<Finding>) {
    let healthy: Vec<&MemberHealth> = members.iter().filter(|m| m.healthy).collect();
    let terms: BTreeMap<String, u64> = healthy
        .iter()
        .filter_map(|m| m.raft_term.map(|t| (label(m), t)))
        .collect();
    let mut by_term: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (m, t) in &terms {
        by_term.entry(*t).or_default().push(m);
    }
    let mut out = Vec::new();
    if by_term.len() > 1 {
        let list: Vec<String> = by_term
            .iter()
            .map(|(t, who)| format!("term {t}: {}", who.join(", ")))
            .collect();
        out.push(Finding::of(
            Check::Raft,
            Verdict::Warning,
            None,
            format!(
                "healthy members are on different raft terms ({}): a member is partitioned or elections repeat",
                list.join("; ")
            ),
        ));
    }
    let mut unfollowed = Vec::new();
    if healthy.len() > 1 {
        for m in &healthy {
            if m.leader.as_deref() != Some(m.id.as_str()) {
                continue;
            }
            let followers = healthy
                .iter()
                .filter(|o| o.id != m.id && o.leader.as_deref() == Some(m.id.as_str()))
                .count();
            if followers == 0 {
                let who = label(m);
                let others: Vec<String> = healthy
                    .iter()
                    .filter(|o| o.id != m.id)
                    .map(|o| {
                        format!(
                            "{} follows {}",
                            label(o),
                            o.leader.as_deref().unwrap_or("none")
                        )
                    })
                    .collect();
                out.push(Finding::of(
                    Check::Raft,
                    Verdict::Critical,
                    Some(&who),
                    format!(
                        "member {who} says it leads (term {}) but none of the others follow it ({})",
                        m.raft_term.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                        others.join(", ")
                    ),
                ));
                unfollowed.push(who);
            }
        }
    }
    let agreement = RaftAgreement {
        agreed_term: (by_term.len() == 1)
            .then(|| by_term.keys().next().copied())
            .flatten(),
        terms,
        reprobed: false,
        unfollowed_leaders: unfollowed,
    };
    (agreement, out)
}

/// A member as findings name it: its name, else its hex ID.
pub(crate) fn label(m: &MemberHealth) -> String {
    if m.name.is_empty() {
        m.id.clone()
    } else {
        m.name.clone()
    }
}

#[cfg(test)]
#[path = "findings_tests.rs"]
mod tests;
