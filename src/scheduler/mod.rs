//! When probes run: interval probes on our own timer wheel, cron probes on tokio-cron-scheduler
//! with a watchdog, and for both the same dispatch rules: no overlapping runs of one probe, a
//! global concurrency limit, the start delay measured, and a panicking run caught and counted.
//!
//! Why two engines: tokio-cron-scheduler (0.15) wakes every 500 ms, scans every job and keeps
//! repeat intervals in whole seconds, so 10,000 interval probes on it would cost a scan of 10,000
//! jobs twice a second and up to 500 ms of start delay each. Interval probes instead sit in one
//! [`tokio_util::time::DelayQueue`]: a hashed timer wheel, millisecond precision, no per-tick scan.
//! Cron probes (few, and asked for by name) stay on the engine; because it can lose activations
//! under load, a watchdog on the same timer wheel starts any tick the engine has not delivered
//! within [`CRON_GRACE`].

mod backoff;
mod cron;
mod dispatch;
mod timer;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{Probe, Schedule};
use crate::protocol::{Outcome, Prober, Summary, Trace};
use crate::results::Results;

pub use timer::phase_offset;

/// How long after a cron tick the watchdog starts it if the engine has not (at most; see
/// `cron::watchdog_deadline`). The engine scans every 500 ms, so it normally acts well before.
pub const CRON_GRACE: Duration = Duration::from_secs(1);

/// Default of `--probe.concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    /// How the login ended.
    pub outcome: Outcome,
    /// What it sent and received, when a trace was asked for.
    pub trace: Option<Trace>,
}

/// The future of one login.
pub type RunFuture = Pin<Box<dyn Future<Output = Run> + Send>>;

/// What performs the runs: in production the [`Prober`], in tests a stand-in ([`RunFn`]).
pub trait Runner: Send + Sync + 'static {
    /// One run of `probe`, recording a trace if `traced`.
    fn run(&self, probe: Arc<Probe>, traced: bool) -> RunFuture;

    /// A run of `probe` while the lockout guard holds its credentials back, the run that made
    /// it hold having come to `held`; `None` for a probe with nothing to do meanwhile.
    fn run_held(&self, probe: Arc<Probe>, held: Summary, traced: bool) -> Option<RunFuture> {
        let _ = (probe, held, traced);
        None
    }
}

/// A stand-in runner: a function of the probe and the trace flag.
pub type RunFn = Arc<dyn Fn(Arc<Probe>, bool) -> RunFuture + Send + Sync>;

impl Runner for RunFn {
    fn run(&self, probe: Arc<Probe>, traced: bool) -> RunFuture {
        self(probe, traced)
    }
}

impl Runner for Prober {
    fn run(&self, probe: Arc<Probe>, traced: bool) -> RunFuture {
        let prober = self.clone();
        Box::pin(async move {
            #[cfg(debug_assertions)]
            inject_panic(&probe);
            if traced {
                let (outcome, trace) = prober.login_traced(&probe.login).await;
                Run { outcome, trace: Some(trace) }
            } else {
                Run { outcome: prober.login(&probe.login).await, trace: None }
            }
        })
    }

    fn run_held(&self, probe: Arc<Probe>, held: Summary, traced: bool) -> Option<RunFuture> {
        if !probe.login.login.runs_while_held() {
            return None;
        }
        let prober = self.clone();
        Some(Box::pin(async move {
            let (outcome, trace) = prober.login_held(&probe.login, held, traced).await;
            Run { outcome, trace }
        }))
    }
}

/// In debug builds only (the tests'), `AUTHPROBE_TEST_PANIC=NAME` makes every run of probe NAME
/// panic with a message quoting its secrets: the seam through which the tests prove that a
/// bug's panic is counted, logged, and leaks no secret.
#[cfg(debug_assertions)]
fn inject_panic(probe: &Probe) {
    use secrecy::ExposeSecret as _;
    if std::env::var("AUTHPROBE_TEST_PANIC").is_ok_and(|n| *n == *probe.name) {
        let secrets: Vec<&str> = probe.login.secrets().into_iter().map(|s| s.expose_secret()).collect();
        let first = secrets.first().copied().unwrap_or_default();
        panic!("injected panic: secrets {} body {{\"Token\":\"{first}\"}}", secrets.join(" "));
    }
}

/// The wall-clock time of `at`, for people.
fn wall(at: tokio::time::Instant) -> std::time::SystemTime {
    let now = tokio::time::Instant::now();
    let wall = std::time::SystemTime::now();
    if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    }
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Logins in flight at most; further runs wait (their wait counts as start delay).
    pub concurrency: usize,
    /// Whether cron probes are also handed to tokio-cron-scheduler. Off only in tests that
    /// prove the watchdog alone keeps every tick.
    pub cron_engine: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { concurrency: DEFAULT_CONCURRENCY, cron_engine: true }
    }
}

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// tokio-cron-scheduler refused a job or failed to start.
    #[error("cron scheduler: probe {probe:?}: {message}")]
    Cron {
        /// The probe whose job failed, or "" for the engine itself.
        probe: String,
        /// The engine's error.
        message: String,
    },
    /// `concurrency` was 0.
    #[error("probe concurrency must be at least 1")]
    ZeroConcurrency,
}

/// Why a run on demand did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RunNowError {
    /// No probe of that name is scheduled.
    #[error("no such probe")]
    Unknown,
    /// A run of it is going (or the scheduler is stopping); it ends within this timeout.
    #[error("a run of this probe is in progress")]
    Busy(Duration),
}

/// A running schedule. Dropping it does not stop it: call [`Scheduler::stop`].
pub struct Scheduler {
    commands: mpsc::UnboundedSender<timer::Command>,
    timer: JoinHandle<()>,
    cron: Option<tokio_cron_scheduler::JobScheduler>,
    cron_jobs: HashMap<Arc<str>, Uuid>,
    entries: HashMap<Arc<str>, Arc<dispatch::Entry>>,
    runs: TaskTracker,
    dispatcher: Arc<dispatch::Dispatcher>,
    results: Arc<Results>,
    options: Options,
}

impl Scheduler {
    /// Schedules every probe, its runs performed by `runner`. Each probe must have an entry in
    /// `results`.
    pub async fn start(
        probes: Vec<Arc<Probe>>,
        results: Arc<Results>,
        runner: impl Runner,
        options: Options,
    ) -> Result<Scheduler, SchedulerError> {
        if options.concurrency == 0 {
            return Err(SchedulerError::ZeroConcurrency);
        }
        let runs = TaskTracker::new();
        let runner: Arc<dyn Runner> = Arc::new(runner);
        let dispatcher =
            Arc::new(dispatch::Dispatcher::new(runner, options.concurrency, runs.clone(), results.clone()));
        let (commands, receiver) = mpsc::unbounded_channel();
        // On a login thread, where the runs it starts then begin without waking another.
        let timer = dispatch::spawn(timer::run(dispatcher.clone(), results.clone(), receiver));
        let mut scheduler = Scheduler {
            commands,
            timer,
            cron: None,
            cron_jobs: HashMap::new(),
            entries: HashMap::new(),
            runs,
            dispatcher,
            results,
            options,
        };
        scheduler.reload(probes).await?;
        Ok(scheduler)
    }

    /// Schedules exactly `probes` from now on, by name: a probe whose settings are unchanged keeps
    /// its schedule untouched; a changed probe runs with its new settings from its next tick (at
    /// its new phase if its schedule changed; never while its previous version still runs); a
    /// new probe starts; a removed probe stops (a run in flight finishes). Each probe must have an
    /// entry in the scheduler's results.
    pub async fn reload(&mut self, probes: Vec<Arc<Probe>>) -> Result<(), SchedulerError> {
        let mut next: HashMap<Arc<str>, Arc<dispatch::Entry>> = HashMap::with_capacity(probes.len());
        let mut order = Vec::with_capacity(probes.len());
        // Names whose entry carries over untouched (and with it, any cron job).
        let mut kept: HashSet<Arc<str>> = HashSet::new();
        for probe in probes {
            let old = self.entries.get(&*probe.name);
            if let Some(old) = old.filter(|o| o.probe.same_as(&probe)) {
                kept.insert(probe.name.clone());
                next.insert(probe.name.clone(), old.clone());
                order.push(old.clone());
                continue;
            }
            let results = self.results.probe(&probe.name).expect("results has every scheduled probe");
            let cron = match &probe.schedule {
                Schedule::Cron(expr) => Some(
                    cron::CronClock::new(expr)
                        .map_err(|message| SchedulerError::Cron { probe: probe.name.to_string(), message })?,
                ),
                Schedule::Interval(_) => None,
            };
            let entry = Arc::new(match old {
                Some(old) => old.successor(probe.clone(), results, cron),
                None => dispatch::Entry::new(probe.clone(), results, cron),
            });
            if old.is_some() && !entry.has_backoff_of(old) {
                // New credentials: whatever failed before may work now. (A new entry took its
                // guard from its results: clear, or as restored after a restart.)
                entry.results.set_backoff(Duration::ZERO, None, Default::default());
            }
            next.insert(probe.name.clone(), entry.clone());
            order.push(entry);
        }

        // Cron jobs: every entry that is new or changed gets a new job; the old job goes.
        let mut new_jobs = Vec::new();
        if self.options.cron_engine {
            let crons = order.iter().filter(|e| e.cron.is_some()).count();
            for entry in order.iter().filter(|e| e.cron.is_some() && !kept.contains(&*e.probe.name)) {
                if self.cron.is_none() {
                    self.cron = Some(cron::start_engine(crons).await?);
                }
                let engine = self.cron.as_ref().expect("started above");
                new_jobs.push((
                    entry.probe.name.clone(),
                    cron::add_job(engine, entry, &self.dispatcher, &self.results).await?,
                ));
            }
        }
        let stale: Vec<Uuid> =
            self.cron_jobs.iter().filter(|(name, _)| !kept.contains(*name)).map(|(_, id)| *id).collect();
        if let Some(engine) = &self.cron {
            for id in &stale {
                if let Err(e) = engine.remove(id).await {
                    tracing::warn!(error = %e, "cron scheduler could not remove a job");
                }
            }
        }
        self.cron_jobs.retain(|_, id| !stale.contains(id));
        self.cron_jobs.extend(new_jobs);

        let (done, applied) = oneshot::channel();
        if self.commands.send(timer::Command::Replace(order, done)).is_ok() {
            let _ = applied.await;
        }
        self.entries = next;
        Ok(())
    }

    /// A run of the probe called `name`, now, outside its schedule: it waits for a concurrency
    /// slot like any other run and is recorded only in the probe's history and on-demand counts.
    /// With `traced`, the run records a [`Trace`]. The future does not borrow the scheduler, so
    /// reloads and shutdown are not held up by it.
    pub fn run_now(
        &self,
        name: &str,
        traced: bool,
    ) -> Result<impl Future<Output = Result<Run, RunNowError>> + Send + 'static, RunNowError> {
        let entry = self.entries.get(name).ok_or(RunNowError::Unknown)?.clone();
        let dispatcher = self.dispatcher.clone();
        Ok(async move { dispatcher.run_now(&entry, traced).await.ok_or(RunNowError::Busy(entry.probe.login.timeout)) })
    }

    /// The longest login timeout among the scheduled probes: how long a run in flight may take.
    pub fn longest_timeout(&self) -> Duration {
        self.entries.values().map(|e| e.probe.login.timeout).max().unwrap_or_default()
    }

    /// Stops scheduling new runs (runs still waiting for a concurrency slot do not start) and
    /// waits up to `grace` for runs in flight to finish and be recorded; any still going after it
    /// are abandoned, never half-recorded.
    pub async fn stop(&mut self, grace: Duration) {
        if self.runs.is_closed() {
            return;
        }
        self.dispatcher.stop();
        let _ = self.commands.send(timer::Command::Stop);
        let _ = (&mut self.timer).await;
        if let Some(mut engine) = self.cron.take() {
            if let Err(e) = engine.shutdown().await {
                tracing::warn!(error = %e, "cron scheduler did not shut down cleanly");
            }
        }
        self.runs.close();
        if tokio::time::timeout(grace, self.runs.wait()).await.is_err() {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "probe runs still in flight at shutdown were abandoned"
            );
        }
    }
}
