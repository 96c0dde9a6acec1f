//! `cpkeep cluster health` and `cpkeep cluster members`; the member operations and `defrag` live in
//! `cluster_member.rs` and `cluster_defrag.rs`.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::connection::ConnectionArgs;
use super::output::{Render, Renderer};
use super::table::Table;
use super::Exit;
use crate::etcd::{
    examine, hex_id, list_members, parse_metrics_urls, DoctorOptions, FragmentationOptions,
    HealthOptions, HealthReport, MembersReport, MetricThresholds, ServedCertOptions, Verdict,
};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Verify quorum, odd membership, leader, alarms, lag and db size, and (the doctor checks) raft
    /// agreement, fragmentation, version skew, members' metrics, served certificates and, with
    /// --check-consistency, that every member holds the same data; exit 0 OK, 1 WARNING, 2 CRITICAL,
    /// 3 UNKNOWN.
    Health(HealthArgs),
    /// List the members (voters and learners) with their URLs.
    Members(MembersArgs),
    /// Stop one control-plane node's etcd and kube-apiserver (static pod manifests parked), check
    /// quorum, the endpoint through the load balancer and a write, start them again, check the
    /// rejoin; exit 0 OK, 1 WARNING, 2 CRITICAL (or refused: no spare member), 3 UNKNOWN.
    FailoverDrill(super::cluster_drill::DrillArgs),
    /// Change the membership (add, promote, remove, replace), each change behind the quorum gate.
    #[command(subcommand)]
    Member(super::cluster_member::MemberCommand),
    /// Defragment every member, one at a time, followers first and the leader last.
    Defrag(super::cluster_defrag::DefragArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,

    /// The backend quota the members run with (etcd --quota-backend-bytes), e.g. 2GiB, 8GiB; db sizes
    /// from 80% of it are a warning. Members of etcd 3.6+ report their own.
    #[arg(long, env = "CPKEEP_QUOTA_BYTES", default_value = "2GiB", value_parser = crate::units::parse_bytes)]
    pub quota_bytes: u64,

    /// Applied-index lag (entries) between members that is a warning.
    #[arg(long, default_value_t = 5000)]
    pub max_applied_lag: u64,

    /// Ask only the given endpoints, not the other members found in the member list.
    #[arg(long)]
    pub no_discover: bool,

    /// Hash every voter's keyspace at one common revision (etcd HashKV) and name a member whose
    /// data differs from the majority's (CRITICAL). Reads every key on every member.
    #[arg(long)]
    pub check_consistency: bool,

    /// Bound on each member's hash (large databases take seconds).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub consistency_timeout: Duration,

    /// Databases from this size whose in-use share is below 50% are a WARNING (run `cluster defrag`).
    #[arg(long, default_value = "100MiB", value_parser = crate::units::parse_bytes)]
    pub fragmentation_min_size: u64,

    /// The members' Prometheus metrics URLs (http), comma-separated; default: kubeadm's
    /// http://127.0.0.1:2381/metrics for members whose client URL is on a loopback address.
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    pub metrics_urls: Vec<String>,

    /// Leader changes a member may have seen since it started (its first election counts) before it
    /// is a WARNING.
    #[arg(long, default_value_t = 3)]
    pub max_leader_changes: u64,

    /// A rolling upgrade is under way: members on different etcd minor versions are expected.
    #[arg(long)]
    pub upgrading: bool,

    /// Residual time at or below which a certificate a member serves is a WARNING.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub warn: Duration,

    /// Residual time at or below which a certificate a member serves is CRITICAL.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub critical: Duration,
}

#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub async fn run(cmd: ClusterCommand, out: &Renderer) -> anyhow::Result<Exit> {
    match cmd {
        ClusterCommand::Health(args) => {
            let report = health(&args).await?;
            out.print(&report)?;
            if report.verdict == Verdict::Unknown {
                eprintln!(
                    "cpkeep: cannot evaluate cluster health: {}",
                    report.reasons.join("; ")
                );
            }
            Ok(report.verdict.into())
        }
        ClusterCommand::FailoverDrill(args) => super::cluster_drill::run(args, out).await,
        ClusterCommand::Members(args) => {
            let conn = args.conn.resolve()?;
            let (endpoint, cluster_id, members) = list_members(&conn).await?;
            let report = MembersReport {
                cluster_id: hex_id(cluster_id),
                endpoint: endpoint.to_string(),
                members: members
                    .into_iter()
                    .map(|m| crate::etcd::MemberEntry {
                        id: hex_id(m.id),
                        name: m.name,
                        peer_urls: m.peer_urls,
                        client_urls: m.client_urls,
                        is_learner: m.is_learner,
                    })
                    .collect(),
            };
            out.print(&report)?;
            Ok(Exit::Ok)
        }
        ClusterCommand::Member(cmd) => super::cluster_member::run(cmd, out).await,
        ClusterCommand::Defrag(args) => super::cluster_defrag::run(args, out).await,
    }
}

/// Probes the cluster, derives the verdict and runs the doctor checks; shared with the daemon.
pub async fn health(args: &HealthArgs) -> anyhow::Result<HealthReport> {
    let conn = args.conn.resolve()?;
    let doctor = doctor_options(args)?;
    let opts = HealthOptions {
        quota_bytes: args.quota_bytes,
        max_applied_lag: args.max_applied_lag,
        ..HealthOptions::default()
    };
    Ok(examine(&conn, !args.no_discover, &opts, &doctor).await)
}

/// The doctor's settings from the flags, checked before anything connects.
fn doctor_options(args: &HealthArgs) -> anyhow::Result<DoctorOptions> {
    let to_chrono = |d: Duration, flag: &str| {
        chrono::Duration::from_std(d).map_err(|_| anyhow::anyhow!("{flag} is too large"))
    };
    let (warn, critical) = (
        to_chrono(args.warn, "--warn")?,
        to_chrono(args.critical, "--critical")?,
    );
    if critical > warn {
        anyhow::bail!(
            "--critical {} is longer than --warn {}: the critical threshold must not exceed the warning one",
            humantime::format_duration(args.critical),
            humantime::format_duration(args.warn)
        );
    }
    Ok(DoctorOptions {
        consistency: args.check_consistency,
        consistency_timeout: args.consistency_timeout,
        fragmentation: FragmentationOptions {
            min_size: args.fragmentation_min_size,
            ..FragmentationOptions::default()
        },
        metrics_urls: parse_metrics_urls(&args.metrics_urls)?,
        metric_thresholds: MetricThresholds {
            max_leader_changes: args.max_leader_changes,
            ..MetricThresholds::default()
        },
        upgrading: args.upgrading,
        served_certs: ServedCertOptions {
            warn,
            critical,
            now: chrono::Utc::now(),
            pki_dir: Some(args.conn.pki_dir.clone()),
            timeout: args.conn.timeout,
        },
    })
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".to_string())
}

fn size(v: Option<i64>) -> String {
    v.map(|b| crate::units::human_bytes(b.max(0) as u64))
        .unwrap_or_else(|| "-".to_string())
}

impl Render for HealthReport {
    fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("VERDICT: {}\n", self.verdict.as_str()));
        let leader = self
            .leader
            .as_ref()
            .map(|l| {
                let name = self
                    .members
                    .iter()
                    .find(|m| &m.id == l)
                    .map(|m| m.name.as_str())
                    .unwrap_or("");
                if name.is_empty() {
                    l.clone()
                } else {
                    format!("{l} ({name})")
                }
            })
            .unwrap_or_else(|| "none".to_string());
        s.push_str(&format!(
            "cluster {}: {} voters ({} healthy, quorum {}), {} learners, fault tolerance {} now / {} by design, leader {}\n\n",
            opt(&self.cluster_id),
            self.voters,
            self.healthy_voters,
            self.quorum,
            self.learners,
            self.fault_tolerance,
            self.design_fault_tolerance,
            leader
        ));
        if !self.members.is_empty() {
            let mut t = Table::new([
                "NAME",
                "ID",
                "ROLE",
                "HEALTHY",
                "VERSION",
                "DB SIZE",
                "IN USE",
                "TERM",
                "RAFT INDEX",
                "APPLIED",
                "ENDPOINT",
            ]);
            for m in &self.members {
                t.row([
                    if m.name.is_empty() {
                        "-".to_string()
                    } else {
                        m.name.clone()
                    },
                    m.id.clone(),
                    if m.is_learner { "learner" } else { "voter" }.to_string(),
                    if m.healthy { "yes" } else { "NO" }.to_string(),
                    opt(&m.version),
                    size(m.db_size),
                    size(m.db_size_in_use),
                    opt(&m.raft_term),
                    opt(&m.raft_index),
                    opt(&m.applied_index),
                    m.endpoint
                        .clone()
                        .or_else(|| m.client_urls.first().cloned())
                        .unwrap_or_else(|| "-".to_string()),
                ]);
            }
            s.push_str(&t.render());
            s.push('\n');
        }
        if self.alarms.is_empty() {
            match &self.alarms_error {
                Some(e) => s.push_str(&format!("alarms: unknown ({e})\n")),
                None => s.push_str("alarms: none\n"),
            }
        } else {
            let list: Vec<String> = self
                .alarms
                .iter()
                .map(|a| {
                    format!(
                        "{} on {}",
                        a.alarm,
                        a.member_name.clone().unwrap_or_else(|| a.member_id.clone())
                    )
                })
                .collect();
            s.push_str(&format!("alarms: {}\n", list.join(", ")));
        }
        let doctor = super::cluster_doctor::doctor_table(&self.doctor);
        if !doctor.is_empty() {
            s.push('\n');
            s.push_str(&doctor);
        }
        if !self.findings.is_empty() {
            s.push_str("\nREASONS\n");
            for f in &self.findings {
                let severity = if f.is_info() {
                    "INFO"
                } else {
                    f.severity.as_str()
                };
                let check = f
                    .check
                    .map(|c| format!("[{}] ", c.as_str()))
                    .unwrap_or_default();
                s.push_str(&format!("  {severity:<8}  {check}{}\n", f.message));
            }
        }
        s
    }
}

impl Render for MembersReport {
    fn table(&self) -> String {
        let mut t = Table::new(["ID", "NAME", "ROLE", "PEER URLS", "CLIENT URLS"]);
        for m in &self.members {
            t.row([
                m.id.clone(),
                if m.name.is_empty() {
                    "(unstarted)".to_string()
                } else {
                    m.name.clone()
                },
                if m.is_learner { "learner" } else { "voter" }.to_string(),
                m.peer_urls.join(","),
                m.client_urls.join(","),
            ]);
        }
        t.render()
    }
}

#[cfg(test)]
mod tests {
    //! The human table of `cluster health`, pinned with insta snapshots of verdicts built from
    //! hand-made probes: OK, a member down, quorum lost, and nothing answering.
    use super::Render;
    use crate::etcd::test_probes::{down, three, up};
    use crate::etcd::{evaluate, ClusterProbe, HealthOptions};

    fn table(endpoints: Vec<crate::etcd::EndpointProbe>) -> String {
        evaluate(&ClusterProbe { endpoints }, &HealthOptions::default()).table()
    }

    #[test]
    fn health_tables() {
        let l = three();
        insta::assert_snapshot!(
            "health_ok",
            table(vec![up(&l, 1, 1), up(&l, 2, 1), up(&l, 3, 1)])
        );
        insta::assert_snapshot!(
            "health_member_down",
            table(vec![up(&l, 1, 1), up(&l, 2, 1), down(3)])
        );
        let mut lone = up(&l, 1, 0);
        lone.alarms = Err("no answer to alarm list within 5s".into());
        insta::assert_snapshot!("health_quorum_lost", table(vec![lone, down(2), down(3)]));
        insta::assert_snapshot!("health_nothing_answers", table(vec![down(1), down(2)]));
    }

    /// Every doctor block and a finding of each check, as `cluster health` prints them.
    #[test]
    fn health_doctor_table() {
        use crate::etcd::{
            consistency_findings, fragmentation, metrics_findings, raft_agreement, version_skew,
            Check, ConsistencyReport, DoctorReport, Finding, FragmentationOptions, MemberHash,
            MemberMetrics, MetricThresholds, ServedCert, Verdict,
        };
        let l = three();
        let mut r = evaluate(
            &ClusterProbe {
                endpoints: vec![up(&l, 1, 1), up(&l, 2, 1), up(&l, 3, 1)],
            },
            &HealthOptions::default(),
        );
        r.members[0].db_size = Some(300 << 20);
        r.members[0].db_size_in_use = Some(100 << 20);
        r.members[2].version = Some("3.4.37".into());
        let hash = |m: &str, h: u32| MemberHash {
            member: m.into(),
            id: m.trim_start_matches('m').into(),
            hash: Some(h),
            compact_revision: Some(3),
            error: None,
        };
        let mut consistency = ConsistencyReport {
            revision: Some(7),
            compact_revision: Some(3),
            attempts: 1,
            members: vec![hash("m1", 0xaa), hash("m2", 0xbb), hash("m3", 0xaa)],
            ..ConsistencyReport::default()
        };
        let metrics = vec![
            MemberMetrics {
                member: Some("m1".into()),
                url: "http://127.0.0.1:2381/metrics".into(),
                wal_fsync_p99_seconds: Some(0.7),
                backend_commit_p99_seconds: Some(0.01),
                peer_round_trip_p99_seconds: Some(0.002),
                leader_changes: Some(5),
                proposals_failed: Some(0),
                ..MemberMetrics::default()
            },
            MemberMetrics {
                member: Some("m2".into()),
                url: "http://127.0.0.2:2381/metrics".into(),
                guessed: true,
                error: Some("connection refused".into()),
                ..MemberMetrics::default()
            },
        ];
        let mut found: Vec<Finding> = consistency_findings(&mut consistency);
        let (frag, f) = fragmentation(&r.members, &FragmentationOptions::default());
        found.extend(f);
        found.extend(metrics_findings(&metrics, &MetricThresholds::default()));
        let (skew, f) = version_skew(&r.members, false);
        found.extend(f);
        let (raft, f) = raft_agreement(&r.members);
        found.extend(f);
        let served = ServedCert {
            member: "m1".into(),
            kind: "client",
            url: "https://127.0.0.1:2379".into(),
            subject: Some("CN=m1".into()),
            serial: Some("1f".into()),
            not_after: chrono::DateTime::from_timestamp(1_800_000_000, 0),
            residual_seconds: Some(3 * 86400),
            status: Some(crate::certs::CertState::Critical),
            disk_path: Some("/etc/kubernetes/pki/etcd/server.crt".into()),
            matches_disk: Some(false),
            error: None,
        };
        found.push(Finding::of(
            Check::ServedCerts,
            Verdict::Critical,
            Some("m1"),
            "the client certificate served by member m1 expires in 3d".into(),
        ));
        r.doctor = DoctorReport {
            consistency: Some(consistency),
            fragmentation: frag,
            metrics,
            version_skew: skew,
            served_certs: vec![served],
            raft,
        };
        r.add_findings(found);
        assert_eq!(r.verdict, Verdict::Critical);
        // The informational finding (a guessed metrics URL) is in the table, not among the reasons.
        assert!(!r.reasons.iter().any(|m| m.contains("127.0.0.2:2381")));
        insta::assert_snapshot!("health_doctor", r.table());
    }
}
