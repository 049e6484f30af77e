//! Starting one run of one probe: the rules every trigger obeys.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::backoff::Backoff;
use super::cron::CronClock;
use super::{Run, Runner};
use crate::config::Probe;
use crate::protocol::{Outcome, ResultClass, Step, Summary};
use crate::results::{ProbeResults, Results, SkipReason, Trigger};

/// A scheduled probe and its run-time state.
pub(super) struct Entry {
    pub probe: Arc<Probe>,
    pub results: Arc<ProbeResults>,
    /// Set while a run is queued or in flight; shared with the entry's successors across
    /// reloads, so a changed probe does not start while its previous version still runs.
    running: Arc<AtomicBool>,
    /// For cron probes: which tick is due next. Boxed: a clock is some 330 bytes, and most probes
    /// run on an interval (3 MB at 10,000 probes).
    pub cron: Option<Box<Mutex<CronClock>>>,
    /// The lockout guard; shared with successors that log in with the same credentials.
    backoff: Arc<Mutex<Backoff>>,
}

impl Entry {
    /// A probe's first entry. Its guard starts where its results say: clear, or as restored
    /// from before a restart.
    pub fn new(probe: Arc<Probe>, results: Arc<ProbeResults>, cron: Option<CronClock>) -> Self {
        let backoff = Arc::new(Mutex::new(Backoff::restored(results.guard())));
        Entry {
            probe,
            results,
            running: Arc::new(AtomicBool::new(false)),
            cron: cron.map(|c| Box::new(Mutex::new(c))),
            backoff,
        }
    }

    /// The next version of `self`, for a changed probe. New credentials start a fresh guard.
    pub fn successor(&self, probe: Arc<Probe>, results: Arc<ProbeResults>, cron: Option<CronClock>) -> Self {
        let backoff =
            if self.probe.login.same_credentials(&probe.login) { self.backoff.clone() } else { Arc::default() };
        Entry { probe, results, running: self.running.clone(), cron: cron.map(|c| Box::new(Mutex::new(c))), backoff }
    }

    /// Whether `self` carries on the guard state of `old`.
    pub fn has_backoff_of(&self, old: Option<&Arc<Entry>>) -> bool {
        old.is_some_and(|o| Arc::ptr_eq(&o.backoff, &self.backoff))
    }

    /// The time between two ticks of the probe's schedule (for cron, around its next tick).
    fn period(&self) -> Duration {
        match &self.cron {
            None => self.probe.schedule.period(),
            Some(clock) => clock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .period()
                .unwrap_or_else(|| self.probe.schedule.period()),
        }
    }

    /// Whether the lockout guard holds a tick planned at `planned` back, and if so what the
    /// run that made it hold came to: `Some(None)` when that is not known (a guard restored
    /// after a restart), unless the probe's last run tells.
    fn held(&self, planned: Instant) -> Option<Option<Summary>> {
        let remembered = {
            let backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
            if !backoff.holds(planned) {
                return None;
            }
            backoff.held()
        };
        let last = || {
            self.results.read(|r| r.last.as_ref().map(|l| *l.summary())).filter(|s| s.result != ResultClass::Success)
        };
        Some(remembered.or_else(last))
    }

    /// Feeds a finished run to the lockout guard and publishes what it decided.
    fn guard(&self, outcome: &Outcome, started: Instant) {
        let result = outcome.result();
        let period = self.period();
        let (extra, state) = {
            let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
            let extra =
                backoff.after(outcome.lockout, Some(outcome.summary), &self.probe.lockout_guard, period, started);
            (extra, backoff.state())
        };
        if !extra.is_zero() {
            tracing::warn!(
                probe = %self.probe.name,
                result = result.as_str(),
                backoff_seconds = extra.as_secs_f64(),
                "credential failures: backing off to protect the account"
            );
        }
        let resume = (!extra.is_zero()).then(|| super::wall(started + period + extra));
        self.results.set_backoff(extra, resume, state);
    }
}

/// The claim on an entry's running flag; dropping it (the run finished, was refused, or its
/// future was dropped) frees the probe for its next run.
struct Running(Arc<AtomicBool>);

impl Running {
    /// Marks `entry` running; `None` if a run of it is already queued or in flight.
    fn claim(entry: &Entry) -> Option<Self> {
        (!entry.running.swap(true, Ordering::AcqRel)).then(|| Running(entry.running.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Starts runs: shared by the timer wheel, the cron engine, the watchdog and on-demand runs.
pub(super) struct Dispatcher {
    runner: Arc<dyn Runner>,
    permits: Semaphore,
    runs: TaskTracker,
    results: Arc<Results>,
    /// Set at shutdown: runs still waiting for a slot do not start.
    stopping: AtomicBool,
}

impl Dispatcher {
    pub fn new(runner: Arc<dyn Runner>, concurrency: usize, runs: TaskTracker, results: Arc<Results>) -> Self {
        Dispatcher { runner, permits: Semaphore::new(concurrency), runs, results, stopping: AtomicBool::new(false) }
    }

    /// No run starts from now on; runs already started go on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Starts a run of `entry` planned for `planned`, unless its previous run is still going, in
    /// which case the tick is skipped and counted.
    pub fn dispatch(self: &Arc<Self>, entry: &Arc<Entry>, planned: Instant) {
        let held = match entry.held(planned) {
            None => None,
            // A family with something to do meanwhile that cannot lock anyone does it.
            Some(Some(held)) if entry.probe.login.login.runs_while_held() => Some(held),
            Some(_) => {
                entry.results.record_skip(SkipReason::Backoff, 1);
                tracing::debug!(probe = %entry.probe.name, "backing off; tick skipped");
                return;
            }
        };
        let Some(running) = Running::claim(entry) else {
            entry.results.record_skip(SkipReason::Overlap, 1);
            tracing::debug!(probe = %entry.probe.name, "previous run still going; tick skipped");
            return;
        };
        let (this, entry) = (self.clone(), entry.clone());
        let run = self.runs.track_future(async move {
            let _running = running;
            // Every run but a held one is traced while traces are kept, since any may fail; a
            // held run's trace would show a read without the credentials beside their failure.
            let traced = held.is_none() && this.results.traces().enabled();
            match this.perform(&entry, Some(planned), traced, held).await {
                Some((run, started, finished)) => {
                    // A run made while held says nothing of the credentials: the guard stays.
                    if held.is_none() {
                        entry.guard(&run.outcome, planned);
                    }
                    let outcome = std::sync::Arc::new(run.outcome);
                    let id = entry.results.record_traced_run(
                        outcome.clone(),
                        started,
                        finished,
                        Trigger::Scheduled,
                        run.trace.as_ref(),
                    );
                    crate::report::log_run(&entry.probe.name, &entry.probe.target, Some(id), &outcome);
                }
                None if held.is_some() => entry.results.record_skip(SkipReason::Backoff, 1),
                None => {}
            }
        });
        // The whole run on a login thread (this one, for the timer wheel's runs): the login it
        // starts runs there too, and its outcome is recorded there (see crate::lanes).
        spawn(run);
    }

    /// Runs `entry` now, outside its schedule, and returns the outcome; `None` if a run of it
    /// is already going (a tick that comes meanwhile is skipped as an overlap) or the scheduler
    /// is stopping. The run waits for a concurrency slot like any other, and is recorded only in
    /// the probe's history and on-demand counts. With `traced`, the run records a trace.
    pub async fn run_now(&self, entry: &Arc<Entry>, traced: bool) -> Option<Run> {
        if self.stopping.load(Ordering::Acquire) {
            return None;
        }
        let _running = Running::claim(entry)?;
        // On demand too, a guard that holds the credentials back keeps them back where the
        // family has something else to do (a directory locks after a few clicks).
        let held = entry.held(Instant::now()).flatten().filter(|_| entry.probe.login.login.runs_while_held());
        let traced = traced || (held.is_none() && self.results.traces().enabled());
        let (run, _, finished) = self.perform(entry, None, traced, held).await?;
        if held.is_none() {
            entry.guard(&run.outcome, Instant::now());
        }
        let id = entry.results.record_on_demand(run.outcome.clone(), finished, run.trace.as_ref());
        crate::report::log_run(&entry.probe.name, &entry.probe.target, Some(id), &run.outcome);
        Some(run)
    }

    /// Waits for a concurrency slot and performs one login of `entry`, catching a panic as
    /// `internal_error`: the run, when it started and when it finished; `None` if the scheduler
    /// began stopping while the run waited. A scheduled run (one with a `planned` start) has its
    /// start delay recorded; any other is on demand.
    async fn perform(
        &self,
        entry: &Entry,
        planned: Option<Instant>,
        traced: bool,
        held: Option<Summary>,
    ) -> Option<(Run, SystemTime, SystemTime)> {
        let trigger = if planned.is_some() { Trigger::Scheduled } else { Trigger::OnDemand };
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await.ok()?;
        if self.stopping.load(Ordering::Acquire) {
            return None;
        }
        let (started, started_wall) = (Instant::now(), SystemTime::now());
        if let Some(planned) = planned {
            self.results.record_delay(started.saturating_duration_since(planned));
        }
        let (runner, probe) = (self.runner.clone(), entry.probe.clone());
        // Calling `run` inside the future puts a panic in the runner itself under catch_unwind too.
        let work = async move {
            match held {
                None => Some(runner.run(probe, traced).await),
                Some(held) => Some(runner.run_held(probe, held, traced)?.await),
            }
        };
        let run = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(Some(run)) => run,
            Ok(None) => return None,
            Err(_) => {
                // The payload is not logged: it is free text from whatever panicked.
                tracing::error!(
                    probe = %entry.probe.name,
                    trigger = trigger.as_str(),
                    "probe run panicked; counted as internal_error"
                );
                Run { outcome: internal_error(&entry.probe, started.elapsed()), trace: None }
            }
        };
        Some((run, started_wall, SystemTime::now()))
    }
}

/// Starts `work` on a lane (see [`crate::lanes`]), or here if the lanes could not be started.
pub(super) fn spawn<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    match crate::lanes::Lanes::shared() {
        Ok(lanes) => lanes.spawn(work),
        Err(_) => tokio::spawn(work),
    }
}

/// The outcome of a run of `probe` that panicked: at its family's first step, with no answer.
fn internal_error(probe: &Probe, duration: Duration) -> Outcome {
    let login = &probe.login.login;
    let step = login.steps().first().and_then(|s| Step::from_name(s)).unwrap_or(Step::OTHER);
    Outcome {
        detail: "the run panicked inside authprobe (a bug; see the error log)".to_owned(),
        ..Outcome::bare(
            Summary { status: login.scheme().no_answer, ..Summary::of(ResultClass::InternalError, step) },
            login.scheme(),
            duration,
        )
    }
}
