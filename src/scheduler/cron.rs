//! Cron probes: activations from tokio-cron-scheduler, backed by a watchdog on our timer wheel.
//!
//! Both sources call [`activate`], which runs a tick only once: whichever source comes first
//! takes the due tick from the probe's [`CronClock`], the other finds nothing due. The engine
//! (0.15) computes its next tick from "now" when it fires, so a scan delayed past a tick drops
//! it silently, and its broadcast channels drop activations when a receiver lags (#61): the clock
//! counts such passed-over ticks, and the watchdog starts any tick the engine has not started
//! within [`super::CRON_GRACE`] (less for expressions that fire more often).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

use super::dispatch::{Dispatcher, Entry};
use super::{SchedulerError, CRON_GRACE};
use crate::config::Schedule;
use crate::results::{Results, SkipReason};

/// Upper bound on passed-over ticks counted at once (after a long suspend of a per-second cron).
const MAX_COUNTED: u64 = 100_000;

/// Which tick of a cron probe is due next.
pub(crate) struct CronClock {
    cron: croner::Cron,
    next_due: DateTime<Utc>,
}

impl CronClock {
    /// A clock whose first tick is the first occurrence after now.
    pub fn new(expr: &str) -> Result<Self, String> {
        Self::starting(expr, Utc::now())
    }

    /// The time from the next tick to the one after it: the schedule's period there.
    pub fn period(&self) -> Option<Duration> {
        let following = self.cron.find_next_occurrence(&self.next_due, false).ok()?;
        (following - self.next_due).to_std().ok()
    }

    fn starting(expr: &str, now: DateTime<Utc>) -> Result<Self, String> {
        let cron = crate::config::parse_cron(expr)?;
        let next_due = cron.find_next_occurrence(&whole_second(now), false).unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok(CronClock { cron, next_due })
    }

    /// If a tick is due at `now`, takes it: returns the latest due tick and how many earlier
    /// due ticks were passed over without a run.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, u64)> {
        if now < self.next_due {
            return None;
        }
        let latest =
            self.cron.find_previous_occurrence(&whole_second(now), true).unwrap_or(self.next_due).max(self.next_due);
        // Stepped by hand: croner 3.0's iterator skips every other tick of a per-second
        // expression (it advances one second past a match, then searches exclusively).
        let mut passed = 0u64;
        let mut t = self.next_due;
        while t < latest && passed < MAX_COUNTED {
            passed += 1;
            match self.cron.find_next_occurrence(&t, false) {
                Ok(next) => t = next,
                Err(_) => break,
            }
        }
        self.next_due = self.cron.find_next_occurrence(&latest, false).unwrap_or(DateTime::<Utc>::MAX_UTC);
        Some((latest, passed))
    }
}

/// Cron ticks are whole seconds; croner keeps sub-seconds in what it is given and returns.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// Who noticed the tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Engine,
    Watchdog,
}

/// Runs the probe's due tick, if any.
pub(super) fn activate(entry: &Arc<Entry>, dispatcher: &Arc<Dispatcher>, results: &Results, source: Source) {
    let Some(clock) = &entry.cron else { return };
    let now = Utc::now();
    let due = {
        let mut clock = clock.lock().unwrap_or_else(PoisonError::into_inner);
        let due = clock.take_due(now);
        publish_next(entry, clock.next_due);
        due
    };
    let Some((planned, passed)) = due else { return };
    if passed > 0 {
        entry.results.record_skip(SkipReason::Missed, passed);
        tracing::warn!(probe = %entry.probe.name, missed = passed, "cron ticks passed without a run");
    }
    if source == Source::Watchdog {
        results.record_cron_watchdog_run();
        tracing::warn!(
            probe = %entry.probe.name,
            "cron engine did not start this tick in time; the watchdog started it"
        );
    }
    let late = (now - planned).to_std().unwrap_or_default();
    let planned = Instant::now().checked_sub(late).unwrap_or_else(Instant::now);
    dispatcher.dispatch(entry, planned);
}

/// When the watchdog checks the probe's next tick: [`CRON_GRACE`] after it, or three quarters of
/// the way to the tick after it if that is sooner, so the watchdog always acts on the tick it
/// watches and never finds the following one due as well.
pub(super) fn watchdog_deadline(entry: &Entry) -> Instant {
    let (next_due, following) = match &entry.cron {
        Some(clock) => {
            let clock = clock.lock().unwrap_or_else(PoisonError::into_inner);
            publish_next(entry, clock.next_due);
            (clock.next_due, clock.cron.find_next_occurrence(&clock.next_due, false).ok())
        }
        None => return Instant::now() + Duration::from_secs(3600),
    };
    let grace = following
        .and_then(|f| (f - next_due).to_std().ok())
        .map_or(CRON_GRACE, |period| CRON_GRACE.min(period * 3 / 4));
    let until = (next_due - Utc::now()).to_std().unwrap_or_default();
    // A year-bound expression with no future tick parks the watchdog far away.
    Instant::now() + until.min(Duration::from_secs(365 * 86_400)) + grace
}

/// Tells the probe's results when its next tick is due, for people.
fn publish_next(entry: &Entry, due: DateTime<Utc>) {
    if due < DateTime::<Utc>::MAX_UTC {
        entry.results.set_next_run(due.into());
    }
}

/// A started tokio-cron-scheduler, for `jobs` cron probes at most at once.
pub(super) async fn start_engine(jobs: usize) -> Result<JobScheduler, SchedulerError> {
    // Activations travel over broadcast channels that drop the oldest message when a receiver
    // lags (#61): size them for every job firing at once, several times over.
    let engine = JobScheduler::new_with_channel_size((jobs * 4).max(1024)).await.map_err(|e| engine_error("", e))?;
    engine.start().await.map_err(|e| engine_error("", e))?;
    Ok(engine)
}

/// Hands a cron probe to the engine; the job's id, for removing it on reload.
pub(super) async fn add_job(
    engine: &JobScheduler,
    entry: &Arc<Entry>,
    dispatcher: &Arc<Dispatcher>,
    results: &Arc<Results>,
) -> Result<Uuid, SchedulerError> {
    let Schedule::Cron(expr) = &entry.probe.schedule else {
        return Err(engine_error(&entry.probe.name, tokio_cron_scheduler::JobSchedulerError::ParseSchedule));
    };
    let (entry_for_job, dispatcher, results) = (entry.clone(), dispatcher.clone(), results.clone());
    let job = Job::new_async_tz(expr.as_str(), Utc, move |_id, _engine| {
        let (entry, dispatcher, results) = (entry_for_job.clone(), dispatcher.clone(), results.clone());
        Box::pin(async move { activate(&entry, &dispatcher, &results, Source::Engine) })
    })
    .map_err(|e| engine_error(&entry.probe.name, e))?;
    engine.add(job).await.map_err(|e| engine_error(&entry.probe.name, e))
}

fn engine_error(probe: &str, e: tokio_cron_scheduler::JobSchedulerError) -> SchedulerError {
    SchedulerError::Cron { probe: probe.to_owned(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_tick_is_taken_once() {
        let mut c = CronClock::starting("*/10 * * * * *", at("2026-11-23T10:00:01Z")).unwrap();
        assert_eq!(c.take_due(at("2026-11-23T10:00:09.900Z")), None);
        assert_eq!(c.take_due(at("2026-11-23T10:00:10.300Z")), Some((at("2026-11-23T10:00:10Z"), 0)));
        assert_eq!(c.take_due(at("2026-11-23T10:00:10.800Z")), None, "the second source finds nothing due");
        assert_eq!(c.take_due(at("2026-11-23T10:00:20Z")), Some((at("2026-11-23T10:00:20Z"), 0)));
    }

    #[test]
    fn passed_over_ticks_are_counted() {
        let mut c = CronClock::starting("* * * * * *", at("2026-11-23T10:00:00.500Z")).unwrap();
        // Due from 10:00:01; nobody looked until 10:00:05.2: 1, 2, 3 and 4 were passed over.
        assert_eq!(c.take_due(at("2026-11-23T10:00:05.200Z")), Some((at("2026-11-23T10:00:05Z"), 4)));
        assert_eq!(c.take_due(at("2026-11-23T10:00:06.000Z")), Some((at("2026-11-23T10:00:06Z"), 0)));
    }
}
