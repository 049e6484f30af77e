//! Starting one run of one probe: the rules every trigger obeys.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::cron::CronClock;
use super::RunFn;
use crate::config::Probe;
use crate::protocol::{Outcome, Reason, ResultClass, Step};
use crate::results::{ProbeResults, Results, SkipReason, Trigger};

/// A scheduled probe and its run-time state.
pub(super) struct Entry {
    pub probe: Arc<Probe>,
    pub results: Arc<ProbeResults>,
    /// Set while a run is queued or in flight; shared with the entry's successors across
    /// reloads, so a changed probe does not start while its previous version still runs.
    running: Arc<AtomicBool>,
    /// For cron probes: which tick is due next.
    pub cron: Option<Mutex<CronClock>>,
}

impl Entry {
    pub fn new(probe: Arc<Probe>, results: Arc<ProbeResults>, cron: Option<CronClock>) -> Self {
        Entry { probe, results, running: Arc::new(AtomicBool::new(false)), cron: cron.map(Mutex::new) }
    }

    /// The next version of `self`, for a changed probe.
    pub fn successor(&self, probe: Arc<Probe>, results: Arc<ProbeResults>, cron: Option<CronClock>) -> Self {
        Entry { probe, results, running: self.running.clone(), cron: cron.map(Mutex::new) }
    }
}

/// Starts runs: shared by the timer wheel, the cron engine and the watchdog.
pub(super) struct Dispatcher {
    run: RunFn,
    permits: Arc<Semaphore>,
    runs: TaskTracker,
    results: Arc<Results>,
    /// Set at shutdown: runs still waiting for a slot do not start.
    stopping: Arc<AtomicBool>,
}

impl Dispatcher {
    pub fn new(run: RunFn, concurrency: usize, runs: TaskTracker, results: Arc<Results>) -> Self {
        let permits = Arc::new(Semaphore::new(concurrency));
        Dispatcher { run, permits, runs, results, stopping: Arc::new(AtomicBool::new(false)) }
    }

    /// No run starts from now on; runs already started go on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Starts a run of `entry` planned for `planned`, unless its previous run is still going, in
    /// which case the tick is skipped and counted.
    pub fn dispatch(&self, entry: &Arc<Entry>, planned: Instant) {
        if entry.running.swap(true, Ordering::AcqRel) {
            entry.results.record_skip(SkipReason::Overlap, 1);
            tracing::debug!(probe = %entry.probe.name, "previous run still going; tick skipped");
            return;
        }
        let entry = entry.clone();
        let run = self.run.clone();
        let permits = self.permits.clone();
        let results = self.results.clone();
        let stopping = self.stopping.clone();
        self.runs.spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await;
            if stopping.load(Ordering::Acquire) {
                entry.running.store(false, Ordering::Release);
                return;
            }
            let started = Instant::now();
            let started_wall = SystemTime::now();
            results.record_delay(started.saturating_duration_since(planned));
            let probe = entry.probe.clone();
            // Calling `run` inside the future puts a panic in the closure itself under catch_unwind too.
            let login = async move { run(probe).await };
            let outcome = match AssertUnwindSafe(login).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The payload is not logged: it is free text from whatever panicked.
                    tracing::error!(probe = %entry.probe.name, "probe run panicked; counted as internal_error");
                    internal_error(started.elapsed())
                }
            };
            crate::report::log_run(&entry.probe.name, &entry.probe.target, &outcome);
            entry.results.record_run(outcome, started_wall, SystemTime::now(), Trigger::Scheduled);
            entry.running.store(false, Ordering::Release);
        });
    }
}

impl Dispatcher {
    /// Runs `entry` now, outside its schedule, and returns the outcome; `None` if a run of it
    /// is already going (a tick that comes meanwhile is skipped as an overlap). The run waits for
    /// a concurrency slot like any other, and is recorded only in the probe's history and
    /// on-demand counts.
    pub async fn run_now(&self, entry: &Arc<Entry>) -> Option<Outcome> {
        if self.stopping.load(Ordering::Acquire) || entry.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        // Released however this future ends, even if the client goes away and drops it.
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _release = Release(&entry.running);
        let _permit = self.permits.acquire().await.ok()?;
        let (started, started_wall) = (Instant::now(), SystemTime::now());
        let run = self.run.clone();
        let probe = entry.probe.clone();
        let outcome = match AssertUnwindSafe(async move { run(probe).await }).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!(probe = %entry.probe.name, "on-demand run panicked; counted as internal_error");
                internal_error(started.elapsed())
            }
        };
        crate::report::log_run(&entry.probe.name, &entry.probe.target, &outcome);
        entry.results.record_on_demand(outcome.clone(), started_wall, SystemTime::now());
        Some(outcome)
    }
}

fn internal_error(duration: Duration) -> Outcome {
    Outcome {
        result: ResultClass::InternalError,
        state: None,
        step: Step::BaseAuthentication,
        reason: Reason::None,
        reason_text: String::new(),
        http_status: 0,
        duration,
        steps: Vec::new(),
        detail: "the run panicked inside authprobe (a bug; see the error log)".to_owned(),
    }
}
