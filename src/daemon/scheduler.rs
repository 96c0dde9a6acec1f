//! Schedules each enabled job with tokio-cron-scheduler (UTC, 6 fields with seconds first), wraps
//! every tick in the job's guard (a tick during a run is counted as skipped, never overlapped),
//! optional jitter, metrics; serves HTTP; on SIGTERM or SIGINT stops scheduling, lets running jobs
//! finish within the shutdown grace, then cancels them (a backup aborts its upload) and, if they
//! still have not ended after [`CANCEL_SETTLE`], drops them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::AbortHandle;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::http::{router, Probe};
use super::{DaemonError, Metrics, RunFailure, Task};

pub type JobFuture = Pin<Box<dyn Future<Output = Result<Ran, RunFailure>> + Send>>;

/// How a run that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    Done,
    /// Nothing to do on this node (see [`Metrics::standby`]).
    Standby,
}

/// What one run of a job does; called anew at every run, so whatever it reads (credentials,
/// mounted secrets, the configuration's job section) is read afresh. The token is cancelled when
/// the shutdown grace is over: the run should then undo what it started and return.
pub type JobRunner = Arc<dyn Fn(Arc<Metrics>, CancellationToken) -> JobFuture + Send + Sync>;

/// How long cancelled runs get to clean up (abort an upload) before they are dropped.
pub const CANCEL_SETTLE: Duration = Duration::from_secs(15);

pub struct JobSpec {
    pub task: Task,
    /// 6-field cron, seconds first, UTC (see `cron_fields`).
    pub schedule: String,
    pub runner: JobRunner,
}

pub struct DaemonOptions {
    pub listen: SocketAddr,
    /// Each run starts after a random delay below this.
    pub jitter: Duration,
    /// How long running jobs may go on after SIGTERM before they are aborted.
    pub shutdown_grace: Duration,
}

/// Now, as unix seconds (0 on a clock before 1970), for the timestamp series.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn random_below(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return Duration::ZERO;
    }
    let nanos = u64::from_le_bytes(b) % u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(nanos)
}

/// A job, its guard, and the abort handle of its latest run.
type RunSlot = (Task, Guard, Option<AbortHandle>);

/// A 6-field schedule (seconds first, UTC) read as tokio-cron-scheduler reads it: seconds
/// required, day-of-month AND day-of-week.
pub fn parse_schedule(schedule: &str) -> Option<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(schedule)
        .ok()
}

/// Whether a time of `schedule` fell after `last` and at or before `now` (always, without a
/// `last`): for work that rides on a more frequent job at its own, rarer schedule.
pub fn due(
    schedule: &croner::Cron,
    last: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    match last {
        None => true,
        Some(last) => schedule
            .find_next_occurrence(&last, false)
            .is_ok_and(|next| next <= now),
    }
}

/// The longest gap between two consecutive times of `schedule` (6 fields, UTC), read as
/// tokio-cron-scheduler reads it (seconds required, day-of-month AND day-of-week), over its next
/// 2000 times or 400 days, whichever comes first: `0 0 3 * * 0` is a week.
pub fn interval(schedule: &str) -> Option<Duration> {
    let cron = parse_schedule(schedule)?;
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_225_600, 0)?; // 2026-01-01
    let horizon = start + chrono::Duration::days(400);
    let mut prev: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut longest = chrono::Duration::zero();
    for t in cron.iter_after(start).take(2000) {
        if let Some(p) = prev {
            longest = longest.max(t - p);
        }
        if t > horizon {
            break;
        }
        prev = Some(t);
    }
    longest.to_std().ok().filter(|d| !d.is_zero())
}

/// The jobs' guards and the abort handles of their running runs.
#[derive(Clone, Default)]
struct Running {
    guards: Arc<Mutex<Vec<RunSlot>>>,
}

impl Running {
    fn any_busy(&self) -> bool {
        self.guards
            .lock()
            .map(|g| g.iter().any(|(_, guard, _)| guard.busy()))
            .unwrap_or(false)
    }

    fn abort_all(&self) {
        if let Ok(g) = self.guards.lock() {
            for (_, guard, handle) in g.iter() {
                if guard.busy() {
                    if let Some(h) = handle {
                        h.abort();
                    }
                }
            }
        }
    }

    fn set_handle(&self, task: Task, h: AbortHandle) {
        if let Ok(mut g) = self.guards.lock() {
            if let Some(e) = g.iter_mut().find(|(t, _, _)| *t == task) {
                e.2 = Some(h);
            }
        }
    }
}

/// One tick of `spec`'s schedule.
fn tick(
    task: Task,
    guard: Guard,
    runner: JobRunner,
    metrics: Arc<Metrics>,
    jitter: Duration,
    running: Running,
    cancel: CancellationToken,
) {
    let Some(pass) = guard.try_enter() else {
        tracing::warn!(task = task.name(), "previous run still going: run skipped");
        metrics.skipped(task);
        return;
    };
    let handle = tokio::spawn(async move {
        let _pass = pass;
        tokio::select! {
            () = tokio::time::sleep(random_below(jitter)) => {}
            // Shut down while waiting out the jitter: the run never started.
            () = cancel.cancelled() => return,
        }
        let started = Instant::now();
        tracing::info!(task = task.name(), "run started");
        let result = runner(Arc::clone(&metrics), cancel).await;
        let secs = started.elapsed().as_secs_f64();
        match &result {
            Ok(Ran::Done) => tracing::info!(task = task.name(), seconds = secs, "run succeeded"),
            Ok(Ran::Standby) => {
                tracing::info!(task = task.name(), "nothing to do on this node");
                metrics.standby(task, unix_now());
                return;
            }
            Err(f) => {
                tracing::warn!(task = task.name(), seconds = secs, error = %f.message, "run failed")
            }
        }
        metrics.finished(task, secs, unix_now(), result.err().map(|f| f.class));
    });
    running.set_handle(task, handle.abort_handle());
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(
    opts: DaemonOptions,
    jobs: Vec<JobSpec>,
    metrics: Arc<Metrics>,
) -> Result<(), DaemonError> {
    let sched_err =
        |e: tokio_cron_scheduler::JobSchedulerError| DaemonError::Scheduler(e.to_string());
    let mut sched = JobScheduler::new().await.map_err(sched_err)?;
    let running = Running::default();
    let cancel = CancellationToken::new();
    for spec in jobs {
        let seconds = interval(&spec.schedule).map_or(0.0, |d| d.as_secs_f64());
        metrics.set_interval(spec.task, seconds);
        let guard = Guard::default();
        if let Ok(mut g) = running.guards.lock() {
            g.push((spec.task, guard.clone(), None));
        }
        let (task, runner, m, jitter, r, c) = (
            spec.task,
            spec.runner,
            Arc::clone(&metrics),
            opts.jitter,
            running.clone(),
            cancel.clone(),
        );
        let job = Job::new_async(spec.schedule.as_str(), move |_, _| {
            tick(
                task,
                guard.clone(),
                Arc::clone(&runner),
                Arc::clone(&m),
                jitter,
                r.clone(),
                c.clone(),
            );
            Box::pin(async {})
        })
        .map_err(|e| DaemonError::Schedule {
            task: spec.task,
            schedule: spec.schedule.clone(),
            reason: e.to_string(),
        })?;
        sched.add(job).await.map_err(sched_err)?;
    }

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| DaemonError::Listen {
            addr: opts.listen.to_string(),
            reason: crate::certs::error::io_reason(&e),
        })?;
    let probe = Arc::new(Probe {
        metrics: Arc::clone(&metrics),
        scheduling: false.into(),
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DaemonError::Signals(e.to_string()))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| DaemonError::Signals(e.to_string()))?;

    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(Arc::clone(&probe))).with_graceful_shutdown(async {
        let _ = http_stopped.await;
    });
    let server = tokio::spawn(async move { server.await });

    sched.start().await.map_err(sched_err)?;
    probe.scheduling.store(true, Ordering::Release);
    tracing::info!(listen = %opts.listen, "daemon started");

    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    probe.scheduling.store(false, Ordering::Release);
    let shutdown = sched.shutdown().await.map_err(sched_err);

    let deadline = Instant::now() + opts.shutdown_grace;
    while running.any_busy() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if running.any_busy() {
        tracing::warn!(grace = ?opts.shutdown_grace, "runs still going after the shutdown grace: cancelled");
        cancel.cancel();
        let settle = Instant::now() + CANCEL_SETTLE;
        while running.any_busy() && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if running.any_busy() {
        tracing::warn!(settle = ?CANCEL_SETTLE, "cancelled runs did not end: dropped");
        running.abort_all();
        // Let the aborted runs unwind (their guards and in-flight work are dropped).
        let settle = Instant::now() + Duration::from_secs(2);
        while running.any_busy() && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = stop_http.send(());
    let _ = server.await;
    shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rarer_schedule_is_due_once_its_time_has_passed() {
        let hourly = parse_schedule("0 0 * * * *").unwrap();
        let at = |h: u32, m: u32| {
            chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_225_600, 0).unwrap()
                + chrono::Duration::hours(i64::from(h))
                + chrono::Duration::minutes(i64::from(m))
        };
        assert!(due(&hourly, None, at(0, 5)));
        assert!(!due(&hourly, Some(at(0, 5)), at(0, 59)));
        assert!(due(&hourly, Some(at(0, 5)), at(1, 0)));
        assert!(due(&hourly, Some(at(0, 5)), at(3, 7)));
    }

    #[test]
    fn jitter_stays_below_its_bound_and_varies() {
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_millis(30);
        let draws: Vec<Duration> = (0..64).map(|_| random_below(max)).collect();
        assert!(draws.iter().all(|d| *d < max), "{draws:?}");
        assert!(draws.iter().any(|d| *d != draws[0]), "{draws:?}");
    }

    #[test]
    fn the_interval_is_the_longest_gap_between_two_schedule_times() {
        let secs = |s: &str| interval(s).map(|d| d.as_secs());
        assert_eq!(secs("0 0 3 * * 0"), Some(604_800));
        assert_eq!(secs("0 17 */6 * * *"), Some(21_600));
        assert_eq!(secs("*/2 * * * * *"), Some(2));
        assert_eq!(secs("0 0 0,20 * * *"), Some(72_000));
        assert_eq!(secs("not cron"), None);
    }
}
