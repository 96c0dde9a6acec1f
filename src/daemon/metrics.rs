//! The series of docs/METRICS.md (the contract the PrometheusRules and the dashboard query), in one
//! registry. Every series whose labels are known at start is created at start (counters at 0,
//! timestamps at 0 meaning "never"), so absence and `rate()` behave on a fresh daemon; series
//! labelled with `cluster_id` appear once a run has learned the cluster's ID.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::doctor_metrics::DoctorSeries;
use super::x509::X509Series;
use super::Task;
use crate::failure::FailureClass;

/// Buckets of `cpkeep_job_duration_seconds`, seconds.
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

type F64Gauge = Gauge<f64, AtomicU64>;

/// The leader and raft term a cluster had at the previous health run.
type LeaderSeen = (Option<String>, Option<u64>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RunResult {
    ok,
    failed,
    skipped,
    standby,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Class {
    failed,
    refused,
    unusable,
}

impl From<FailureClass> for Class {
    fn from(c: FailureClass) -> Self {
        match c {
            FailureClass::Failed => Class::failed,
            FailureClass::Refused => Class::refused,
            FailureClass::Unusable => Class::unusable,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Step {
    snapshot,
    upload,
    prune,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskResult {
    task: String,
    result: RunResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskClass {
    task: String,
    class: Class,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: Step,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

fn task(t: Task) -> TaskLabel {
    TaskLabel {
        task: t.name().to_string(),
    }
}

fn cluster(id: &str) -> ClusterLabel {
    ClusterLabel {
        cluster_id: id.to_string(),
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// What the health job saw, for the `cpkeep_etcd_*` series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthSample {
    pub cluster_id: String,
    pub voters: u64,
    pub healthy_voters: u64,
    pub quorum: u64,
    pub fault_tolerance: u64,
    pub learners: u64,
    /// The leader the healthy members agree on.
    pub leader: Option<String>,
    /// The highest raft term any member reported.
    pub raft_term: Option<u64>,
    pub db_size: u64,
    pub db_size_in_use: u64,
    pub quota_bytes: u64,
}

/// The daemon's registry and its series.
pub struct Metrics {
    registry: Registry,
    interval: Family<TaskLabel, F64Gauge>,
    last_run: Family<TaskLabel, F64Gauge>,
    last_success: Family<TaskLabel, F64Gauge>,
    last_standby: Family<TaskLabel, F64Gauge>,
    duration: Family<TaskLabel, Histogram, fn() -> Histogram>,
    runs: Family<TaskResult, Counter>,
    failures: Family<TaskClass, Counter>,
    backup_db_size: Family<ClusterLabel, Gauge>,
    backup_stored_size: Family<ClusterLabel, Gauge>,
    backup_revision: Family<ClusterLabel, Gauge>,
    upload_bytes: Counter,
    step_failures: Family<StepLabel, Counter>,
    drill_result: Gauge,
    drill_duration: F64Gauge,
    voters: Family<ClusterLabel, Gauge>,
    healthy_voters: Family<ClusterLabel, Gauge>,
    quorum: Family<ClusterLabel, Gauge>,
    fault_tolerance: Family<ClusterLabel, Gauge>,
    leader_present: Family<ClusterLabel, Gauge>,
    leader_changes: Family<ClusterLabel, Counter>,
    db_size: Family<ClusterLabel, Gauge>,
    db_in_use: Family<ClusterLabel, Gauge>,
    quota: Family<ClusterLabel, Gauge>,
    learners: Family<ClusterLabel, Gauge>,
    /// The leader and term each cluster had at the previous health run.
    last_leader: Mutex<HashMap<String, LeaderSeen>>,
    x509: X509Series,
    doctor: DoctorSeries,
    /// Held for writing while a replaced-whole set (x509, doctor) is updated, so a scrape never
    /// sees it half-updated.
    replacing: RwLock<()>,
}

impl Metrics {
    /// All series of the contract, those with known labels at their initial values.
    pub fn new(version: &str, commit: &str, start_time: f64) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            interval: Family::default(),
            last_run: Family::default(),
            last_success: Family::default(),
            last_standby: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            runs: Family::default(),
            failures: Family::default(),
            backup_db_size: Family::default(),
            backup_stored_size: Family::default(),
            backup_revision: Family::default(),
            upload_bytes: Counter::default(),
            step_failures: Family::default(),
            drill_result: Gauge::default(),
            drill_duration: F64Gauge::default(),
            voters: Family::default(),
            healthy_voters: Family::default(),
            quorum: Family::default(),
            fault_tolerance: Family::default(),
            leader_present: Family::default(),
            leader_changes: Family::default(),
            db_size: Family::default(),
            db_in_use: Family::default(),
            quota: Family::default(),
            learners: Family::default(),
            last_leader: Mutex::new(HashMap::new()),
            x509: X509Series::register(&mut registry),
            doctor: DoctorSeries::register(&mut registry),
            replacing: RwLock::new(()),
        };
        for t in Task::ALL {
            let _ = m.interval.get_or_create(&task(t));
            let _ = m.last_run.get_or_create(&task(t));
            let _ = m.last_success.get_or_create(&task(t));
            let _ = m.last_standby.get_or_create(&task(t));
            let _ = m.duration.get_or_create(&task(t));
            for result in [
                RunResult::ok,
                RunResult::failed,
                RunResult::skipped,
                RunResult::standby,
            ] {
                let _ = m.runs.get_or_create(&TaskResult {
                    task: t.name().to_string(),
                    result,
                });
            }
            for class in [Class::failed, Class::refused, Class::unusable] {
                let _ = m.failures.get_or_create(&TaskClass {
                    task: t.name().to_string(),
                    class,
                });
            }
        }
        for step in [Step::snapshot, Step::upload, Step::prune] {
            let _ = m.step_failures.get_or_create(&StepLabel { step });
        }
        m.drill_result.set(-1);

        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: version.to_string(),
                commit: commit.to_string(),
            })
            .set(1);
        let started = F64Gauge::default();
        started.set(start_time);

        let r = &mut registry;
        r.register("cpkeep_job_interval_seconds", "The job's schedule interval (longest gap between two schedule times); 0 when the job is disabled", m.interval.clone());
        r.register(
            "cpkeep_job_last_run_timestamp_seconds",
            "Unix time the last run that was neither skipped nor standby ended; 0 before the first",
            m.last_run.clone(),
        );
        r.register(
            "cpkeep_job_last_standby_timestamp_seconds",
            "Unix time of the last run that had nothing to do on this node (a backup on a node whose member does not lead); 0 before the first",
            m.last_standby.clone(),
        );
        r.register(
            "cpkeep_job_last_success_timestamp_seconds",
            "Unix time the last successful run ended; 0 before the first",
            m.last_success.clone(),
        );
        r.register(
            "cpkeep_job_duration_seconds",
            "Duration of runs that were not skipped",
            m.duration.clone(),
        );
        r.register(
            "cpkeep_job_runs",
            "Runs by result (skipped: the previous run was still going)",
            m.runs.clone(),
        );
        r.register(
            "cpkeep_job_failures",
            "Failed runs by failure class",
            m.failures.clone(),
        );
        r.register(
            "cpkeep_backup_last_db_size_bytes",
            "Database size of the last successful backup, before compression",
            m.backup_db_size.clone(),
        );
        r.register(
            "cpkeep_backup_last_stored_size_bytes",
            "Stored object size of the last successful backup",
            m.backup_stored_size.clone(),
        );
        r.register(
            "cpkeep_backup_last_revision",
            "etcd revision of the last successful backup",
            m.backup_revision.clone(),
        );
        r.register(
            "cpkeep_backup_upload_bytes",
            "Bytes sent to the store, failed uploads included",
            m.upload_bytes.clone(),
        );
        r.register(
            "cpkeep_backup_step_failures",
            "Failed backup runs by the step that failed",
            m.step_failures.clone(),
        );
        r.register(
            "cpkeep_drill_last_result",
            "1 the last restore drill passed, 0 it failed, -1 none has run",
            m.drill_result.clone(),
        );
        r.register(
            "cpkeep_drill_last_duration_seconds",
            "Duration of the last restore drill; 0 before the first",
            m.drill_duration.clone(),
        );
        r.register(
            "cpkeep_etcd_voters",
            "Voting members in the member list",
            m.voters.clone(),
        );
        r.register(
            "cpkeep_etcd_healthy_voters",
            "Voters that answered status within the timeout",
            m.healthy_voters.clone(),
        );
        r.register(
            "cpkeep_etcd_quorum",
            "Voters needed for quorum",
            m.quorum.clone(),
        );
        r.register(
            "cpkeep_etcd_fault_tolerance",
            "How many more voters may fail before quorum is lost",
            m.fault_tolerance.clone(),
        );
        r.register(
            "cpkeep_etcd_leader_present",
            "1 when the healthy members agree on a leader",
            m.leader_present.clone(),
        );
        r.register(
            "cpkeep_etcd_leader_changes_seen",
            "Leader changes between consecutive health runs",
            m.leader_changes.clone(),
        );
        r.register(
            "cpkeep_etcd_db_size_bytes",
            "Largest backend size among the members",
            m.db_size.clone(),
        );
        r.register(
            "cpkeep_etcd_db_size_in_use_bytes",
            "That member's backend size in use",
            m.db_in_use.clone(),
        );
        r.register(
            "cpkeep_etcd_quota_backend_bytes",
            "The backend quota",
            m.quota.clone(),
        );
        r.register(
            "cpkeep_etcd_learners",
            "Learner (non-voting) members",
            m.learners.clone(),
        );
        r.register(
            "cpkeep_build_info",
            "cpkeep's version and commit; always 1",
            build,
        );
        r.register(
            "cpkeep_daemon_start_time_seconds",
            "Unix time the daemon started",
            started,
        );
        Metrics { registry, ..m }
    }

    /// The exposition, OpenMetrics text ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _consistent = self.replacing.read();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn set_interval(&self, t: Task, seconds: f64) {
        self.interval.get_or_create(&task(t)).set(seconds);
    }

    pub fn set_last_success(&self, t: Task, unix: f64) {
        self.last_success.get_or_create(&task(t)).set(unix);
    }

    /// A tick that did not run: the previous run was still going.
    pub fn skipped(&self, t: Task) {
        self.count(t, RunResult::skipped);
    }

    /// A run that found it had nothing to do on this node (a backup only the leader's node takes);
    /// neither a run nor a success for the timestamps.
    pub fn standby(&self, t: Task, at: f64) {
        self.last_standby.get_or_create(&task(t)).set(at);
        self.count(t, RunResult::standby);
    }

    fn count(&self, t: Task, result: RunResult) {
        self.runs
            .get_or_create(&TaskResult {
                task: t.name().to_string(),
                result,
            })
            .inc();
    }

    /// A run that ended at `end` (unix seconds) after `seconds`, failed with `class` or not.
    pub fn finished(&self, t: Task, seconds: f64, end: f64, failure: Option<FailureClass>) {
        self.last_run.get_or_create(&task(t)).set(end);
        self.duration.get_or_create(&task(t)).observe(seconds);
        let result = match failure {
            None => {
                self.last_success.get_or_create(&task(t)).set(end);
                RunResult::ok
            }
            Some(class) => {
                self.failures
                    .get_or_create(&TaskClass {
                        task: t.name().to_string(),
                        class: class.into(),
                    })
                    .inc();
                RunResult::failed
            }
        };
        self.count(t, result);
    }

    /// The etcd series from one health run; a leader change is a different leader or a higher
    /// term than the previous run saw.
    pub fn health(&self, s: &HealthSample) {
        let l = cluster(&s.cluster_id);
        let g = |f: &Family<ClusterLabel, Gauge>, v: u64| {
            f.get_or_create(&l)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        g(&self.voters, s.voters);
        g(&self.healthy_voters, s.healthy_voters);
        g(&self.quorum, s.quorum);
        g(&self.fault_tolerance, s.fault_tolerance);
        g(&self.learners, s.learners);
        g(&self.leader_present, u64::from(s.leader.is_some()));
        g(&self.db_size, s.db_size);
        g(&self.db_in_use, s.db_size_in_use);
        g(&self.quota, s.quota_bytes);
        let changes = self.leader_changes.get_or_create(&l);
        let mut last = self
            .last_leader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((leader, term)) = last.get(&s.cluster_id) {
            let new_leader = s.leader.is_some() && s.leader != *leader;
            let new_term = matches!((term, s.raft_term), (Some(a), Some(b)) if b > *a);
            if new_leader || new_term {
                changes.inc();
            }
        }
        // A run that saw no leader keeps the previous one, so losing and regaining the same
        // leader in the same term is not counted as a change.
        let entry = last.entry(s.cluster_id.clone()).or_insert((None, None));
        if s.leader.is_some() {
            entry.0 = s.leader.clone();
        }
        if s.raft_term.is_some() {
            entry.1 = s.raft_term;
        }
    }

    /// A successful backup's figures.
    pub fn backup(&self, cluster_id: &str, db_size: u64, stored_size: u64, revision: u64) {
        let l = cluster(cluster_id);
        let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        self.backup_db_size.get_or_create(&l).set(v(db_size));
        self.backup_stored_size
            .get_or_create(&l)
            .set(v(stored_size));
        self.backup_revision.get_or_create(&l).set(v(revision));
    }

    pub fn upload_bytes(&self, n: u64) {
        self.upload_bytes.inc_by(n);
    }

    pub fn backup_step_failed(&self, step: Step) {
        self.step_failures.get_or_create(&StepLabel { step }).inc();
    }

    /// A health run's doctor series (see [`DoctorSeries`]); `at` is the run's end, unix seconds.
    pub fn doctor(&self, cluster_id: &str, report: &crate::etcd::DoctorReport, at: f64) {
        // The per-member sets are replaced whole: a scrape waits rather than see half of one.
        let _exclusive = self.replacing.write();
        self.doctor.update(cluster_id, report, at);
    }

    /// A certs run's `x509_*` series (see [`X509Series`]).
    pub fn certs(
        &self,
        samples: &[crate::certs::prometheus::Sample],
        read_errors: u64,
        errors: &crate::certs::prometheus::SourceErrors,
    ) {
        let _exclusive = self.replacing.write();
        self.x509.update(samples, read_errors, errors);
    }

    pub fn drill(&self, ok: bool, seconds: f64) {
        self.drill_result.set(i64::from(ok));
        self.drill_duration.set(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new("0.1.0", "abc123", 1_700_000_000.0)
    }

    #[test]
    fn every_series_with_known_labels_is_there_from_start() {
        let text = metrics().encode();
        for t in ["backup", "certs", "health", "drill"] {
            for r in ["ok", "failed", "skipped", "standby"] {
                let line = format!("cpkeep_job_runs_total{{task=\"{t}\",result=\"{r}\"}} 0");
                assert!(text.contains(&line), "{line} missing in\n{text}");
            }
            for c in ["failed", "refused", "unusable"] {
                let line = format!("cpkeep_job_failures_total{{task=\"{t}\",class=\"{c}\"}} 0");
                assert!(text.contains(&line), "{line} missing");
            }
            for g in [
                "cpkeep_job_interval_seconds",
                "cpkeep_job_last_run_timestamp_seconds",
                "cpkeep_job_last_success_timestamp_seconds",
            ] {
                let line = format!("{g}{{task=\"{t}\"}} 0.0");
                assert!(text.contains(&line), "{line} missing");
            }
            let line = format!("cpkeep_job_duration_seconds_count{{task=\"{t}\"}} 0");
            assert!(text.contains(&line), "{line} missing");
        }
        for s in ["snapshot", "upload", "prune"] {
            let line = format!("cpkeep_backup_step_failures_total{{step=\"{s}\"}} 0");
            assert!(text.contains(&line), "{line} missing");
        }
        for line in [
            "cpkeep_backup_upload_bytes_total 0",
            "cpkeep_drill_last_result -1",
            "cpkeep_drill_last_duration_seconds 0.0",
            "cpkeep_build_info{version=\"0.1.0\",commit=\"abc123\"} 1",
            "cpkeep_daemon_start_time_seconds 1700000000.0",
            "# TYPE cpkeep_job_duration_seconds histogram",
            "cpkeep_job_duration_seconds_bucket{le=\"3600.0\",task=\"backup\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // Nothing labelled with a cluster before a run has learned one.
        assert!(!text.contains("cluster_id"));
    }

    #[test]
    fn runs_are_counted_by_result_and_class() {
        let m = metrics();
        m.finished(Task::Health, 0.5, 1_700_000_100.0, None);
        m.finished(
            Task::Backup,
            2.0,
            1_700_000_200.0,
            Some(FailureClass::Unusable),
        );
        m.skipped(Task::Backup);
        let text = m.encode();
        for line in [
            "cpkeep_job_runs_total{task=\"health\",result=\"ok\"} 1",
            "cpkeep_job_last_success_timestamp_seconds{task=\"health\"} 1700000100.0",
            "cpkeep_job_runs_total{task=\"backup\",result=\"failed\"} 1",
            "cpkeep_job_runs_total{task=\"backup\",result=\"skipped\"} 1",
            "cpkeep_job_failures_total{task=\"backup\",class=\"unusable\"} 1",
            "cpkeep_job_last_run_timestamp_seconds{task=\"backup\"} 1700000200.0",
            "cpkeep_job_last_success_timestamp_seconds{task=\"backup\"} 0.0",
            "cpkeep_job_duration_seconds_count{task=\"backup\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn leader_changes_are_counted_across_runs() {
        let m = metrics();
        let mut s = HealthSample {
            cluster_id: "cdf818194e3a8c32".to_string(),
            voters: 3,
            healthy_voters: 3,
            quorum: 2,
            fault_tolerance: 1,
            leader: Some("a".to_string()),
            raft_term: Some(2),
            ..HealthSample::default()
        };
        m.health(&s);
        m.health(&s);
        s.leader = None;
        s.healthy_voters = 2;
        s.fault_tolerance = 0;
        m.health(&s);
        s.leader = Some("b".to_string());
        s.raft_term = Some(3);
        m.health(&s);
        let text = m.encode();
        for line in [
            "cpkeep_etcd_leader_changes_seen_total{cluster_id=\"cdf818194e3a8c32\"} 1",
            "cpkeep_etcd_fault_tolerance{cluster_id=\"cdf818194e3a8c32\"} 0",
            "cpkeep_etcd_healthy_voters{cluster_id=\"cdf818194e3a8c32\"} 2",
            "cpkeep_etcd_leader_present{cluster_id=\"cdf818194e3a8c32\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
