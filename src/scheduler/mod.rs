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

mod cron;
mod dispatch;
mod timer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::{Probe, Schedule};
use crate::protocol::Outcome;
use crate::results::Results;

pub use timer::phase_offset;

/// How long after a cron tick the watchdog starts it if the engine has not (at most; see
/// `cron::watchdog_deadline`). The engine scans every 500 ms, so it normally acts well before.
pub const CRON_GRACE: Duration = Duration::from_secs(1);

/// Default of `--probe.concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// The future of one login.
pub type RunFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Performs one run of a probe: in production, a login with [`crate::protocol::Prober`].
pub type RunFn = Arc<dyn Fn(Arc<Probe>) -> RunFuture + Send + Sync>;

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

/// A running schedule. Dropping it does not stop it: call [`Scheduler::stop`].
pub struct Scheduler {
    stop_timer: Option<oneshot::Sender<()>>,
    timer: JoinHandle<()>,
    cron: Option<tokio_cron_scheduler::JobScheduler>,
    runs: TaskTracker,
    dispatcher: Arc<dispatch::Dispatcher>,
}

impl Scheduler {
    /// Schedules every probe. Each probe must have an entry in `results`.
    pub async fn start(
        probes: Vec<Arc<Probe>>,
        results: Arc<Results>,
        run: RunFn,
        options: Options,
    ) -> Result<Scheduler, SchedulerError> {
        if options.concurrency == 0 {
            return Err(SchedulerError::ZeroConcurrency);
        }
        let runs = TaskTracker::new();
        let dispatcher = Arc::new(dispatch::Dispatcher::new(run, options.concurrency, runs.clone(), results.clone()));
        let mut entries = Vec::with_capacity(probes.len());
        for probe in probes {
            let probe_results = results.probe(&probe.name).expect("results has every scheduled probe");
            let cron = match &probe.schedule {
                Schedule::Cron(expr) => Some(
                    cron::CronClock::new(expr)
                        .map_err(|message| SchedulerError::Cron { probe: probe.name.clone(), message })?,
                ),
                Schedule::Interval(_) => None,
            };
            entries.push(Arc::new(dispatch::Entry::new(probe, probe_results, cron)));
        }
        let cron_engine =
            if options.cron_engine { cron::start_engine(&entries, &dispatcher, &results).await? } else { None };
        let (stop_timer, stopped) = oneshot::channel();
        let timer = tokio::spawn(timer::run(entries, dispatcher.clone(), results, stopped));
        Ok(Scheduler { stop_timer: Some(stop_timer), timer, cron: cron_engine, runs, dispatcher })
    }

    /// Stops scheduling new runs (runs still waiting for a concurrency slot do not start) and
    /// waits up to `grace` for runs in flight to finish and be recorded; any still going after it
    /// are abandoned, never half-recorded.
    pub async fn stop(mut self, grace: Duration) {
        self.dispatcher.stop();
        if let Some(tx) = self.stop_timer.take() {
            let _ = tx.send(());
        }
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
