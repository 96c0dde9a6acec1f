//! `cluster health` as a doctor: the probe and the quorum verdict (`health`), then, in one run,
//! raft agreement (re-probed once when the first answers disagree), fragmentation, version skew,
//! each member's metrics, the certificates members serve and, when asked, data consistency. Every
//! check adds typed results to the report's `doctor` and findings to its verdict.
//!
//! Checks that talk to members run in parallel and only against members that answered the probe:
//! a member that is down or frozen is already a finding, and must not cost a second timeout. This
//! module orchestrates; the rules live in `findings`, the I/O in `consistency`, `metrics_scrape`
//! and `served_certs`. It never prints.

use std::time::Duration;

use super::consistency::check_consistency;
use super::findings::{
    consistency_findings, fragmentation, metrics_findings, raft_agreement, version_skew,
    DoctorReport, FragmentationOptions, MetricThresholds,
};
use super::metrics_scrape::{scrape_all, targets};
use super::served_certs::{check_served_certs, ServedCertOptions};
use super::{evaluate, probe_cluster, ConnectionOptions, HealthOptions, HealthReport};

/// What the doctor checks and how strictly.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// Hash every voter at a common revision (reads the whole keyspace on every member).
    pub consistency: bool,
    /// Bound on each member's hash.
    pub consistency_timeout: Duration,
    pub fragmentation: FragmentationOptions,
    /// `--metrics-urls`; empty: kubeadm's port on loopback members.
    pub metrics_urls: Vec<url::Url>,
    pub metric_thresholds: MetricThresholds,
    /// A rolling upgrade is under way: version skew is expected.
    pub upgrading: bool,
    pub served_certs: ServedCertOptions,
}

/// Probes the cluster, derives the quorum verdict and runs every doctor check on it.
pub async fn examine(
    conn: &ConnectionOptions,
    discover: bool,
    health: &HealthOptions,
    opts: &DoctorOptions,
) -> HealthReport {
    let mut report = evaluate(&probe_cluster(conn, discover).await, health);
    let (mut raft, mut raft_found) = raft_agreement(&report.members);
    if !raft_found.is_empty() {
        // An election may be in progress: believe a disagreement only when a second look shows it.
        report = evaluate(&probe_cluster(conn, discover).await, health);
        (raft, raft_found) = raft_agreement(&report.members);
        raft.reprobed = true;
    }
    let mut found = raft_found;
    let (frag, frag_found) = fragmentation(&report.members, &opts.fragmentation);
    found.extend(frag_found);
    let (skew, skew_found) = version_skew(&report.members, opts.upgrading);
    found.extend(skew_found);

    let metric_targets = targets(&opts.metrics_urls, &report.members);
    let (metrics, (served, served_found), consistency) = tokio::join!(
        scrape_all(&metric_targets, conn.timeout),
        check_served_certs(&report.members, &opts.served_certs, conn.tls.as_ref()),
        async {
            if opts.consistency {
                Some(check_consistency(conn, &report.members, opts.consistency_timeout).await)
            } else {
                None
            }
        }
    );
    found.extend(metrics_findings(&metrics, &opts.metric_thresholds));
    found.extend(served_found);
    let consistency = consistency.map(|mut c| {
        found.extend(consistency_findings(&mut c));
        c
    });
    report.doctor = DoctorReport {
        consistency,
        fragmentation: frag,
        metrics,
        version_skew: skew,
        served_certs: served,
        raft,
    };
    report.add_findings(found);
    report
}
