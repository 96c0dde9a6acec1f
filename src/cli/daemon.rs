//! `cpkeep daemon`: the jobs of the configuration file (`backup`, `certs`, `health`, `drill`, each
//! with `schedule` and `enabled`) run on their schedules, with metrics on `--listen`.
//!
//! Each run builds its command's settings the way the command line does: the equivalent command
//! (`cluster health`, ...) is parsed with the file's sections merged in (flags > env > file >
//! defaults), through the same `config::parse` and the same `ConnectionArgs::resolve`. Nothing is
//! cached between runs, so a rotated credentials file or client certificate is read at the next run.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory};
use tokio_util::sync::CancellationToken;

use super::config::{self, ParseFailure};
use super::config_file::{cron_fields, ConfigFile, Entry, Value, CONSISTENCY_SCHEDULE};
use super::exit::Exit;
use super::Cli;
use crate::daemon::{
    DaemonOptions, HealthSample, JobFuture, JobRunner, JobSpec, Metrics, Ran, RunFailure, Step,
    Task,
};
use crate::etcd::{HealthReport, Verdict};
use crate::failure::FailureClass;

/// The default listen address. 9477 lies in the 9100–9999 range Prometheus set aside for exporters
/// (its "default port allocations" wiki page), so firewall rules and NetworkPolicies written for
/// exporters cover it, and it is clear of the ports a kubeadm control-plane node already uses
/// (node-exporter 9100, kube-proxy 10249/10256, etcd 2379–2381, kubelet 10250). That range has been
/// fully allocated since 2023, so 9477 is some other exporter's registered default: it clashes only
/// when that exporter shares the node's network, and `daemon.listen` moves it. Loopback by
/// default: in the DaemonSet the pod IP is given instead.
const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Address of /metrics, /healthz and /readyz [default: the file's daemon.listen, else 127.0.0.1:9477]
    #[arg(long, env = "CPKEEP_LISTEN")]
    pub listen: Option<SocketAddr>,
}

/// The settings of the file's `daemon` section.
struct DaemonSection {
    listen: Option<SocketAddr>,
    jitter: Duration,
    shutdown_grace: Duration,
}

fn text(e: &Entry) -> String {
    match &e.value {
        Value::Text(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(_) => String::new(),
    }
}

fn daemon_section(path: &Path, file: &ConfigFile) -> anyhow::Result<DaemonSection> {
    let empty = BTreeMap::new();
    let s = file.sections.get("daemon").unwrap_or(&empty);
    let duration = |key: &str, default: Duration| -> anyhow::Result<Duration> {
        match s.get(key) {
            None => Ok(default),
            Some(e) => humantime::parse_duration(&text(e))
                .with_context(|| format!("{}: line {}: daemon.{key}", path.display(), e.line)),
        }
    };
    let listen = match s.get("listen") {
        None => None,
        Some(e) => Some(text(e).parse().with_context(|| {
            format!(
                "{}: line {}: daemon.listen is not an address:port",
                path.display(),
                e.line
            )
        })?),
    };
    Ok(DaemonSection {
        listen,
        jitter: duration("jitter", Duration::ZERO)?,
        shutdown_grace: duration("shutdown-grace", Duration::from_secs(30))?,
    })
}

/// The command a job runs, as typed after `cpkeep`.
fn command_of(task: Task) -> &'static [&'static str] {
    match task {
        Task::Backup => &["backup"],
        Task::Certs => &["certs", "check"],
        Task::Health => &["cluster", "health"],
        // The newest snapshot of the section's store, restored and booted.
        Task::Drill => &["snapshot", "verify", "latest", "--restore-test"],
    }
}

/// The job's command parsed with the file merged in, exactly as `cpkeep --config FILE <command>`.
fn parse_job(config: &Path, task: Task) -> Result<Cli, RunFailure> {
    parse_job_with(config, task, &[])
}

/// [`parse_job`] with flags of this run on top (as typed, so they win over the file).
fn parse_job_with(config: &Path, task: Task, extra: &[&str]) -> Result<Cli, RunFailure> {
    let mut argv: Vec<OsString> = vec!["cpkeep".into(), "--config".into(), config.into()];
    argv.extend(command_of(task).iter().map(OsString::from));
    argv.extend(extra.iter().map(OsString::from));
    config::parse(argv).map_err(|e| RunFailure {
        class: FailureClass::Unusable,
        message: match e {
            ParseFailure::Clap(e) => e.to_string(),
            ParseFailure::Config(e) => e.to_string(),
        },
    })
}

/// The class of an error as the command's exit code says it (1 failed, 2 refused, 3 unusable).
fn failure_of(err: &anyhow::Error) -> RunFailure {
    let class = match err.downcast_ref::<crate::etcd::EtcdError>() {
        Some(e) => e.class(),
        None => match super::exit::code_of(err) {
            Exit::Critical => FailureClass::Refused,
            Exit::Unknown => FailureClass::Unusable,
            Exit::Ok | Exit::Warning => FailureClass::Failed,
        },
    };
    RunFailure {
        class,
        message: super::exit::one_line(err),
    }
}

/// The `cpkeep_etcd_*` figures from a health report (the member nearest its quota gives the sizes).
fn sample(report: &HealthReport, cluster_id: &str) -> HealthSample {
    let biggest = report
        .members
        .iter()
        .filter(|m| m.db_size.is_some())
        .max_by_key(|m| m.db_size.unwrap_or(0));
    let size = |v: Option<i64>| v.and_then(|x| u64::try_from(x).ok()).unwrap_or(0);
    HealthSample {
        cluster_id: cluster_id.to_string(),
        voters: report.voters as u64,
        healthy_voters: report.healthy_voters as u64,
        quorum: report.quorum as u64,
        fault_tolerance: report.fault_tolerance as u64,
        learners: report.learners as u64,
        leader: report.leader.clone(),
        raft_term: report.members.iter().filter_map(|m| m.raft_term).max(),
        db_size: size(biggest.and_then(|m| m.db_size)),
        db_size_in_use: size(biggest.and_then(|m| m.db_size_in_use)),
        quota_bytes: report.quota_bytes,
    }
}

/// When the health job also checks data consistency (`cluster health --check-consistency`): at the
/// times of the health section's `consistency-schedule` (default hourly), and at the first run.
/// Every member walks its keyspace for it, so it rides on the health job at a rarer schedule.
struct ConsistencyClock {
    schedule: Option<croner::Cron>,
    last: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl ConsistencyClock {
    /// Whether this run checks consistency; taking the turn marks it done, so a failing check is
    /// retried at the next schedule time, not at every health run.
    fn take_turn(&self) -> bool {
        let Some(schedule) = &self.schedule else {
            return false;
        };
        let now = chrono::Utc::now();
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        if crate::daemon::due(schedule, *last, now) {
            *last = Some(now);
            true
        } else {
            false
        }
    }
}

/// The default `consistency-schedule`: hourly, at minute 0.
const DEFAULT_CONSISTENCY_SCHEDULE: &str = "0 * * * *";

/// The health section's `consistency-schedule` (`off` disables the check).
fn consistency_clock(path: &Path, file: &ConfigFile) -> anyhow::Result<ConsistencyClock> {
    let entry = file
        .sections
        .get("health")
        .and_then(|s| s.get(CONSISTENCY_SCHEDULE));
    let text = entry.map_or(DEFAULT_CONSISTENCY_SCHEDULE.to_string(), text);
    let schedule = if text.trim() == "off" {
        None
    } else {
        let line = entry.map_or(0, |e| e.line);
        let six = cron_fields(&text).map_err(|why| {
            anyhow::anyhow!(
                "{}: line {line}: health.{CONSISTENCY_SCHEDULE}: {why}",
                path.display()
            )
        })?;
        Some(crate::daemon::parse_schedule(&six).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: line {line}: health.{CONSISTENCY_SCHEDULE}: {text:?} is not a schedule",
                path.display()
            )
        })?)
    };
    Ok(ConsistencyClock {
        schedule,
        last: std::sync::Mutex::new(None),
    })
}

/// `cluster health`: the etcd series and the doctor's; the run fails only when health could not be
/// evaluated (the command's UNKNOWN); a degraded cluster is a successful run whose gauges say so.
fn health_runner(config: PathBuf, consistency: Arc<ConsistencyClock>) -> JobRunner {
    Arc::new(
        move |metrics: Arc<Metrics>, _cancel: CancellationToken| -> JobFuture {
            let config = config.clone();
            let consistency = Arc::clone(&consistency);
            Box::pin(async move {
                let extra: &[&str] = if consistency.take_turn() {
                    &["--check-consistency"]
                } else {
                    &[]
                };
                let cli = parse_job_with(&config, Task::Health, extra)?;
                let super::Command::Cluster(super::cluster::ClusterCommand::Health(args)) =
                    cli.command
                else {
                    return Err(RunFailure {
                        class: FailureClass::Unusable,
                        message: "the health job did not parse as cluster health".to_string(),
                    });
                };
                let report = super::cluster::health(&args)
                    .await
                    .map_err(|e| failure_of(&e))?;
                if let Some(id) = &report.cluster_id {
                    metrics.health(&sample(&report, id));
                    metrics.doctor(id, &report.doctor, crate::daemon::unix_now());
                }
                if report.verdict == Verdict::Unknown {
                    return Err(RunFailure {
                        class: FailureClass::Unusable,
                        message: report.reasons.join("; "),
                    });
                }
                Ok(Ran::Done)
            })
        },
    )
}

/// `backup` (with `--prune` when the section says so): the backup series and the failing step.
fn backup_runner(config: PathBuf) -> JobRunner {
    Arc::new(
        move |metrics: Arc<Metrics>, cancel: CancellationToken| -> JobFuture {
            let config = config.clone();
            Box::pin(async move {
                let cli = parse_job(&config, Task::Backup)?;
                let super::Command::Backup(args) = cli.command else {
                    return Err(RunFailure {
                        class: FailureClass::Unusable,
                        message: "the backup job did not parse as backup".to_string(),
                    });
                };
                let control = crate::snapshot::StreamControl {
                    cancel,
                    ..Default::default()
                };
                let result = super::backup::backup_once(
                    &args,
                    &crate::snapshot::NoProgress,
                    control.clone(),
                )
                .await;
                metrics.upload_bytes(control.sent.load(std::sync::atomic::Ordering::Relaxed));
                let outcome = match result {
                    Ok(super::backup::BackupRun::Standby(_)) => return Ok(Ran::Standby),
                    Ok(super::backup::BackupRun::Stored(o)) => o,
                    Err(f) => {
                        metrics.backup_step_failed(match f.step {
                            super::backup::BackupStep::Snapshot => Step::snapshot,
                            super::backup::BackupStep::Upload => Step::upload,
                        });
                        return Err(failure_of(&f.error));
                    }
                };
                let m = &outcome.report.manifest;
                metrics.backup(
                    &m.cluster_id,
                    m.db_size,
                    m.stored_size,
                    u64::try_from(m.revision).unwrap_or(0),
                );
                if let Some(Err(why)) = outcome.pruned {
                    metrics.backup_step_failed(Step::prune);
                    return Err(RunFailure {
                        class: FailureClass::Failed,
                        message: format!("backup stored, but pruning failed: {why}"),
                    });
                }
                Ok(Ran::Done)
            })
        },
    )
}

/// `certs check`: the textfile (`prometheus`) and webhook of the section, as the command writes
/// them; the run fails only when the certificates could not be evaluated.
fn certs_runner(config: PathBuf) -> JobRunner {
    Arc::new(
        move |metrics: Arc<Metrics>, _cancel: CancellationToken| -> JobFuture {
            let config = config.clone();
            Box::pin(async move {
                let cli = parse_job(&config, Task::Certs)?;
                let super::Command::Certs(super::certs::CertsCommand::Check(args)) = cli.command
                else {
                    return Err(RunFailure {
                        class: FailureClass::Unusable,
                        message: "the certs job did not parse as certs check".to_string(),
                    });
                };
                let report = super::certs::evaluate(&args)
                    .await
                    .map_err(|e| failure_of(&e))?;
                if report.verdict == Verdict::Unknown {
                    return Err(RunFailure {
                        class: FailureClass::Unusable,
                        message: report.unknown_reasons().join("; "),
                    });
                }
                metrics.certs(
                    &crate::certs::prometheus::samples(&report),
                    report.problem_total() as u64,
                    &crate::certs::prometheus::source_errors(&report),
                );
                super::certs::publish(&args, &report)
                    .await
                    .map_err(|e| failure_of(&e))?;
                Ok(Ran::Done)
            })
        },
    )
}

/// The restore drill: `snapshot verify latest --restore-test` with the `drill` section; its result
/// and duration in `cpkeep_drill_last_*`. A snapshot that fails is a refused run (the command's
/// exit 2).
fn drill_runner(config: PathBuf) -> JobRunner {
    Arc::new(
        move |metrics: Arc<Metrics>, _cancel: CancellationToken| -> JobFuture {
            let config = config.clone();
            Box::pin(async move {
                let started = std::time::Instant::now();
                let cli = parse_job(&config, Task::Drill)?;
                let super::Command::Snapshot(super::snapshot::SnapshotCommand::Verify(args)) =
                    cli.command
                else {
                    return Err(RunFailure {
                        class: FailureClass::Unusable,
                        message: "the drill job did not parse as snapshot verify".to_string(),
                    });
                };
                let result = super::snapshot::verify(&args).await;
                let secs = started.elapsed().as_secs_f64();
                match result {
                    Ok(v) if v.verify.ok && v.restore_test.as_ref().is_some_and(|d| d.ok) => {
                        metrics.drill(true, secs);
                        Ok(Ran::Done)
                    }
                    Ok(v) => {
                        metrics.drill(false, secs);
                        Err(RunFailure {
                            class: FailureClass::Refused,
                            message: format!(
                                "restore drill failed: {}",
                                v.verify.problems.join("; ")
                            ),
                        })
                    }
                    Err(e) => {
                        metrics.drill(false, secs);
                        Err(failure_of(&e))
                    }
                }
            })
        },
    )
}

/// The time of the newest complete snapshot in the backup job's store; None when there is none
/// or the store cannot be listed (the gauge then stays 0).
async fn newest_backup(config: &Path) -> Option<f64> {
    let cli = parse_job(config, Task::Backup).ok()?;
    let super::Command::Backup(args) = cli.command else {
        return None;
    };
    let store = args.store.open().await.ok()?;
    let cat = crate::snapshot::catalog(store.as_ref()).await.ok()?;
    cat.entries
        .iter()
        .filter(|e| e.complete)
        .filter_map(|e| e.created)
        .max()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// A job section's `enabled` (default true; the drill defaults to false) and 6-field schedule.
fn job_schedule(path: &Path, file: &ConfigFile, task: Task) -> anyhow::Result<Option<String>> {
    let Some(section) = file.sections.get(task.name()) else {
        return Ok(None);
    };
    let enabled = match section.get("enabled").map(|e| &e.value) {
        Some(Value::Bool(b)) => *b,
        _ => task != Task::Drill,
    };
    let Some(schedule) = section.get("schedule") else {
        return Ok(None);
    };
    if !enabled {
        return Ok(None);
    }
    let six = cron_fields(&text(schedule)).map_err(|why| {
        anyhow::anyhow!(
            "{}: line {}: {}.schedule: {why}",
            path.display(),
            schedule.line,
            task
        )
    })?;
    Ok(Some(six))
}

pub async fn run(args: DaemonArgs, config: Option<PathBuf>) -> anyhow::Result<Exit> {
    let Some(path) = config else {
        anyhow::bail!("the daemon needs a configuration file: --config FILE or CPKEEP_CONFIG");
    };
    let file = ConfigFile::load(&path, &Cli::command())?;
    let section = daemon_section(&path, &file)?;
    let listen = match args.listen.or(section.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN
            .parse()
            .context("the default listen address")?,
    };
    let start = crate::daemon::unix_now();
    let metrics = Arc::new(Metrics::new(
        crate::VERSION,
        option_env!("CPKEEP_COMMIT").unwrap_or("unknown"),
        start,
    ));
    let consistency = Arc::new(consistency_clock(&path, &file)?);
    let mut jobs = Vec::new();
    for task in Task::ALL {
        let Some(schedule) = job_schedule(&path, &file, task)? else {
            continue;
        };
        let runner = match task {
            Task::Health => health_runner(path.clone(), Arc::clone(&consistency)),
            Task::Backup => backup_runner(path.clone()),
            Task::Certs => certs_runner(path.clone()),
            Task::Drill => drill_runner(path.clone()),
        };
        // A job whose settings cannot be parsed is refused at start, not at its first run.
        parse_job(&path, task).map_err(|f| anyhow::anyhow!("job {task}: {}", f.message))?;
        jobs.push(JobSpec {
            task,
            schedule,
            runner,
        });
    }
    if jobs.iter().any(|j| j.task == Task::Backup) {
        // The backup's age survives a restart: its last success starts as the newest snapshot's time.
        if let Some(t) = newest_backup(&path).await {
            metrics.set_last_success(Task::Backup, t);
        }
    }
    let opts = DaemonOptions {
        listen,
        jitter: section.jitter,
        shutdown_grace: section.shutdown_grace,
    };
    crate::daemon::run(opts, jobs, metrics).await?;
    Ok(Exit::Ok)
}
