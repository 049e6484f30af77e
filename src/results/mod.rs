//! What probe runs produced: per-probe run counts, latency histograms, skipped ticks and the last
//! outcome, plus the scheduler's own figures.
//!
//! The scheduler is the only writer. Metrics and web pages only read, through snapshots
//! ([`ProbeResults::snapshot`]) or a short look under the probe's lock ([`ProbeResults::read`]);
//! no lock is ever held across I/O or an await.

pub mod availability;
mod history;
pub mod run_id;
mod saved;
pub mod traces;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::Probe;
use crate::protocol::{Kind, Outcome, ResultClass, Scheme, Step, Summary, Trace};

pub use availability::{Availability, Counts, Figures, TargetSums};
pub use history::{
    Beat, FailureRecord, History, Layout, PastRun, StepTime, TraceNote, Trigger, HISTORY_FAILURES, HISTORY_RUNS,
    RECENT_RUNS,
};
pub use run_id::{probe_key, RunId};
pub use saved::{GuardState, Layouts, ProbeState, RestoreError, SavedRunNumbers};
pub use traces::{KeptTrace, TraceBudget};

/// A time as exposed everywhere: seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A time as published to the scheduler's readers and saved: milliseconds since the Unix epoch
/// (0 before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch: the inverse of [`unix_millis`].
pub fn from_unix_millis(ms: u64) -> SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Upper bounds of the login and step latency buckets, in seconds: tens of milliseconds up to the
/// default 10 s timeout. Ten buckets (with `+Inf`) keep one histogram at twelve series.
pub const LATENCY_BUCKETS: [f64; 9] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds of the scheduler delay buckets, in seconds: fine below 10 ms, where a healthy
/// scheduler lives, coarse above. One histogram for the whole process, so resolution is cheap.
pub const DELAY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why a scheduled tick did not start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The probe's previous run was still going.
    Overlap,
    /// The tick passed while the scheduler could not act (process suspended, clock jump, or the
    /// cron engine and its watchdog both late by more than a period).
    Missed,
    /// The lockout guard holds the probe back after repeated credential failures.
    Backoff,
}

impl SkipReason {
    /// Every reason, in the order of [`ProbeRecord::skipped`].
    pub const ALL: [SkipReason; 3] = [SkipReason::Overlap, SkipReason::Missed, SkipReason::Backoff];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::Missed => "missed",
            SkipReason::Backoff => "backoff",
        }
    }
}

/// A fixed-bucket histogram: per-bucket (not cumulative) counts, sum and count, and the
/// exemplar of each bucket a numbered run last landed in.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram<const N: usize> {
    /// Upper bounds, ascending.
    pub bounds: &'static [f64; N],
    /// Observations in each bucket (those above the last bound are only in `count`).
    pub buckets: [u64; N],
    /// Sum of observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
    /// One per bucket at most, by bucket: only the buckets runs landed in, as latencies keep
    /// to one or two of them. A boxed slice, 16 bytes and one small allocation per histogram:
    /// 12 slots would be 200 bytes, a Vec 8 bytes more and room to spare (2 MB at 10,000 probes).
    pub exemplars: Box<[Exemplar]>,
}

/// The last run that landed in a bucket: what OpenMetrics exposes after the bucket's count.
/// 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// When the run finished: Unix seconds, and the milliseconds of that second.
    pub at_secs: u32,
    /// The value it observed, in whole microseconds (rounded down, so it stays within the
    /// bucket; the precision of the run's row in the history).
    pub micros: u32,
    /// Its number among the probe's runs ([`RunId::run`]).
    pub run: u32,
    /// The milliseconds of `at_secs`.
    pub at_millis: u16,
    /// The bucket: an index of the bounds, or N for `+Inf`.
    pub bucket: u8,
}

impl Exemplar {
    /// The value, in seconds.
    pub fn value(&self) -> f64 {
        f64::from(self.micros) / 1e6
    }

    /// When the run finished, in Unix milliseconds.
    pub fn at_ms(&self) -> u64 {
        u64::from(self.at_secs) * 1000 + u64::from(self.at_millis)
    }
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram.
    pub fn new(bounds: &'static [f64; N]) -> Self {
        Histogram { bounds, buckets: [0; N], sum: 0.0, count: 0, exemplars: Box::default() }
    }

    /// Records one value.
    pub fn observe(&mut self, value: f64) {
        self.observe_bucket(value);
    }

    fn observe_bucket(&mut self, value: f64) -> usize {
        let bucket = self.bounds.iter().position(|b| value <= *b);
        if let Some(i) = bucket {
            self.buckets[i] += 1;
        }
        self.sum += value;
        self.count += 1;
        bucket.unwrap_or(N)
    }

    /// Records one value observed by run number `run`, which finished at `at`: the exemplar
    /// of its bucket becomes that run.
    pub fn observe_run(&mut self, value: f64, run: u32, at: SystemTime) {
        let bucket = self.observe_bucket(value) as u8;
        let ms = unix_millis(at);
        let exemplar = Exemplar {
            at_secs: u32::try_from(ms / 1000).unwrap_or(u32::MAX),
            at_millis: (ms % 1000) as u16,
            // 71 minutes at most, far beyond any timeout.
            micros: (value.max(0.0) * 1e6) as u32,
            run,
            bucket,
        };
        match self.exemplars.binary_search_by_key(&bucket, |e| e.bucket) {
            Ok(i) => self.exemplars[i] = exemplar,
            Err(i) => {
                // A bucket's first exemplar: rare (a latency seen for the first time), so the
                // slice is made again, to its exact size, rather than kept with room to grow.
                let mut all = Vec::with_capacity(self.exemplars.len() + 1);
                all.extend_from_slice(&self.exemplars[..i]);
                all.push(exemplar);
                all.extend_from_slice(&self.exemplars[i..]);
                self.exemplars = all.into_boxed_slice();
            }
        }
    }

    /// The exemplar of bucket `bucket` (N for `+Inf`), if a numbered run landed in it.
    pub fn exemplar(&self, bucket: usize) -> Option<&Exemplar> {
        self.exemplars.iter().find(|e| usize::from(e.bucket) == bucket)
    }

    /// Cumulative counts per bound, as exposed (`le`).
    pub fn cumulative(&self) -> [u64; N] {
        let mut acc = 0;
        self.buckets.map(|b| {
            acc += b;
            acc
        })
    }
}

/// A latency histogram of logins or steps.
pub type LatencyHistogram = Histogram<{ LATENCY_BUCKETS.len() }>;
/// The scheduler delay histogram.
pub type DelayHistogram = Histogram<{ DELAY_BUCKETS.len() }>;

/// The last finished run of a probe.
#[derive(Debug, Clone)]
pub struct LastRun {
    /// When it started.
    pub started: SystemTime,
    /// When it finished.
    pub finished: SystemTime,
    /// The whole outcome, for pages and logs (shared: snapshots stay cheap).
    pub outcome: Arc<Outcome>,
    /// Its number among the probe's runs; 0 when unknown (restored from a release without).
    pub run: u32,
}

impl LastRun {
    /// The last run that ended in `outcome`.
    pub fn of(outcome: Arc<Outcome>, started: SystemTime, finished: SystemTime) -> Self {
        LastRun { started, finished, outcome, run: 0 }
    }

    /// Its result, state, step, reason and final status.
    pub fn summary(&self) -> &Summary {
        &self.outcome.summary
    }

    /// Its result class.
    pub fn result(&self) -> ResultClass {
        self.outcome.summary.result
    }

    /// Its total duration.
    pub fn duration(&self) -> Duration {
        self.outcome.duration
    }
}

/// Everything recorded for one probe. Cloning it is cheap (no strings but one `Arc`).
#[derive(Debug, Clone)]
pub struct ProbeRecord {
    /// Runs by result, indexed like [`ResultClass::ALL`].
    pub runs: [u64; ResultClass::ALL.len()],
    /// Skipped ticks, indexed like [`SkipReason::ALL`].
    pub skipped: [u64; SkipReason::ALL.len()],
    /// Total duration of runs in which every request got an answer: the login latency,
    /// unpolluted by timeouts and refused connections.
    pub login: LatencyHistogram,
    /// Duration of each request, by the step it answered: the steps a healthy run of the probe
    /// sends, in its family's order, then any other seen, so a password-only probe carries one.
    pub steps: Vec<(Step, Box<LatencyHistogram>)>,
    /// The last finished run.
    pub last: Option<LastRun>,
    /// Runs made on demand, by result, indexed like [`ResultClass::ALL`] (not in `runs`).
    /// Boxed and made at the first on-demand run: most probes never have one, and 16 counters
    /// are 128 bytes, a megabyte at 10,000 probes.
    pub on_demand: Option<Box<[u64; ResultClass::ALL.len()]>>,
    /// Finished runs since the last success.
    pub consecutive_failures: u64,
    /// When the last successful run finished.
    pub last_success: Option<SystemTime>,
    /// Failed logouts; `None` while the probe does not log out and never failed to.
    pub logout_failures: Option<u64>,
    /// Login attempts made again after a transport failure; `None` while the probe has no
    /// `retries` and never retried.
    pub retries: Option<u64>,
    /// The time between scheduled runs (for a cron schedule, between its next two ticks when
    /// the probe was configured).
    pub interval: Duration,
    /// The lockout guard's extra delay between runs; zero when not backing off.
    pub backoff: Duration,
    /// While backing off: when the probe runs again.
    pub resume_at: Option<SystemTime>,
    /// The lockout guard's state, as the scheduler last published it (or as restored).
    pub guard: GuardState,
    /// Successful and all scheduled runs, per five minutes, hour and day.
    pub availability: Availability,
}

impl ProbeRecord {
    fn new(probe: &Probe) -> Self {
        let mut record = ProbeRecord {
            runs: [0; ResultClass::ALL.len()],
            skipped: [0; SkipReason::ALL.len()],
            login: Histogram::new(&LATENCY_BUCKETS),
            steps: Vec::new(),
            last: None,
            on_demand: None,
            consecutive_failures: 0,
            last_success: None,
            logout_failures: None,
            retries: None,
            interval: Duration::ZERO,
            backoff: Duration::ZERO,
            resume_at: None,
            guard: GuardState::default(),
            availability: Availability::default(),
        };
        record.expect(probe);
        record
    }

    /// Makes the series `probe` produces on a healthy run exist from the start, so that rate()
    /// over them works from the first scrape; anything else appears when first seen. Called
    /// again when a reload changes the probe and keeps its record.
    fn expect(&mut self, probe: &Probe) {
        self.interval = probe.schedule.period();
        for name in probe.login.login.steps() {
            let step = Step::from_name(name).unwrap_or(Step::OTHER);
            if probe.login.login.sends(step) && !self.steps.iter().any(|(s, _)| *s == step) {
                self.steps.push((step, Box::new(Histogram::new(&LATENCY_BUCKETS))));
            }
        }
        if probe.login.login.ends_session() && self.logout_failures.is_none() {
            self.logout_failures = Some(0);
        }
        if probe.login.retries > 0 && self.retries.is_none() {
            self.retries = Some(0);
        }
    }

    /// Counts what every run adds whatever its trigger: failed logouts and retries.
    fn count_extras(&mut self, outcome: &Outcome) {
        if outcome.logout.as_ref().is_some_and(|l| !l.ok) {
            *self.logout_failures.get_or_insert(0) += 1;
        }
        if outcome.retries > 0 {
            *self.retries.get_or_insert(0) += u64::from(outcome.retries);
        }
    }

    /// Availability over every window, ending at `now`.
    pub fn availability_at(&self, now: SystemTime) -> Figures {
        Figures::of(self.availability.all_counts(now))
    }

    /// Runs by result class.
    pub fn runs_of(&self, result: ResultClass) -> u64 {
        self.runs[result.index()]
    }

    /// Skipped ticks for `reason`.
    pub fn skipped_of(&self, reason: SkipReason) -> u64 {
        self.skipped[SkipReason::ALL.iter().position(|r| *r == reason).expect("listed")]
    }

    /// All finished runs.
    pub fn total_runs(&self) -> u64 {
        self.runs.iter().sum()
    }
}

/// One probe's identity and its record.
#[derive(Debug)]
pub struct ProbeResults {
    /// Probe name.
    pub name: Arc<str>,
    /// Target name.
    pub target: Arc<str>,
    /// Static labels, sorted by name.
    pub labels: crate::config::Labels,
    /// Its family.
    pub kind: Kind,
    /// Its [`probe_key`], the first part of its runs' ids.
    pub key: u64,
    /// When its record was made (at start, or by the reload that added it), in Unix
    /// milliseconds: when its counters and histograms started counting, OpenMetrics' `_created`.
    pub created_ms: u64,
    /// Whether its family goes on running (without the credentials) while the lockout guard
    /// holds them back, so that its next run is its next tick rather than the guard's end.
    pub runs_while_held: bool,
    schedule: Mutex<String>,
    /// When the scheduler next starts the probe, in Unix milliseconds; 0 when unknown.
    next_run_ms: AtomicU64,
    record: Mutex<ProbeRecord>,
    history: Mutex<History>,
    /// The budget its failures' traces are kept under, shared by every probe.
    traces: Arc<TraceBudget>,
    /// Set when anything a restart keeps has changed since the store last took it.
    dirty: AtomicBool,
}

impl ProbeResults {
    fn new(p: &Probe, traces: Arc<TraceBudget>) -> Self {
        ProbeResults {
            name: p.name.clone(),
            target: p.target.clone(),
            labels: p.labels.clone(),
            kind: p.login.login.kind(),
            key: probe_key(&p.name),
            created_ms: unix_millis(SystemTime::now()),
            runs_while_held: p.login.login.runs_while_held(),
            schedule: Mutex::new(p.schedule.to_string()),
            next_run_ms: AtomicU64::new(0),
            record: Mutex::new(ProbeRecord::new(p)),
            history: Mutex::new(History::default()),
            traces,
            dirty: AtomicBool::new(false),
        }
    }

    /// Notes that the state a restart keeps has changed: after every change here, and by a
    /// store that could not write it.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Whether the state a restart keeps changed since the last call, clearing the mark: the
    /// store's question before it takes [`ProbeResults::saved_state`].
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// What its family's status codes are.
    pub fn scheme(&self) -> &'static Scheme {
        self.kind.scheme()
    }

    /// The last runs, newest first (at most [`HISTORY_RUNS`]).
    pub fn history(&self) -> Vec<PastRun> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).runs(self.scheme(), self.key)
    }

    /// The last failed runs, newest first, kept apart from [`ProbeResults::history`].
    pub fn failures(&self) -> Vec<PastRun> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).failures(self.scheme(), self.key)
    }

    /// Its last `n` runs, oldest first, for a heartbeat bar.
    pub fn beats(&self, n: usize) -> Vec<Beat> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).beats(n)
    }

    /// When its current run of failures began (see [`History::failing_since`]).
    pub fn failing_since(&self) -> Option<(u64, bool)> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).failing_since()
    }

    /// The number of its newest run; 0 before the first.
    pub fn last_run_number(&self) -> u32 {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).last_run()
    }

    /// The id of its run number `run`.
    pub fn run_id(&self, run: u32) -> Option<RunId> {
        (run > 0).then_some(RunId { probe: self.key, run })
    }

    /// Human description of the schedule.
    pub fn schedule(&self) -> String {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// When the scheduler next starts the probe, if it said: its next tick, or while the
    /// lockout guard holds it back, the end of the backoff (unless its family runs meanwhile).
    pub fn next_run(&self) -> Option<SystemTime> {
        let tick = match self.next_run_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(from_unix_millis(ms)),
        };
        if self.runs_while_held {
            return tick;
        }
        let resume = self.read(|r| r.resume_at);
        tick.max(resume)
    }

    /// Set by the scheduler's lockout guard: the extra delay between runs now in force, when
    /// the probe runs again, and the guard's state.
    pub fn set_backoff(&self, extra: Duration, resume_at: Option<SystemTime>, guard: GuardState) {
        let changed = self.update(|r| {
            let changed = r.guard != guard || r.backoff != extra;
            r.backoff = extra;
            r.resume_at = resume_at;
            r.guard = guard;
            changed
        });
        if changed {
            self.mark_dirty();
        }
    }

    /// The lockout guard's state, as last published or restored.
    pub fn guard(&self) -> GuardState {
        self.read(|r| r.guard)
    }

    /// Set by the scheduler whenever it plans the probe's next start.
    pub fn set_next_run(&self, at: SystemTime) {
        self.next_run_ms.store(unix_millis(at), Ordering::Relaxed);
    }

    /// A copy of the record, taken under a short lock.
    pub fn snapshot(&self) -> ProbeRecord {
        self.read(ProbeRecord::clone)
    }

    /// Runs `f` on the record under its lock: for readers that only format, so that a scrape of
    /// 10,000 probes needs no copy of them. `f` must not block.
    pub fn read<R>(&self, f: impl FnOnce(&ProbeRecord) -> R) -> R {
        f(&self.record.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn update<R>(&self, f: impl FnOnce(&mut ProbeRecord) -> R) -> R {
        f(&mut self.record.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a finished run; returns its id.
    pub fn record_run(
        &self,
        outcome: impl Into<Arc<Outcome>>,
        started: SystemTime,
        finished: SystemTime,
        trigger: Trigger,
    ) -> RunId {
        self.record_traced_run(outcome, started, finished, trigger, None)
    }

    /// Records a finished run and, if it failed, its trace (within the budget); returns its id.
    pub fn record_traced_run(
        &self,
        outcome: impl Into<Arc<Outcome>>,
        started: SystemTime,
        finished: SystemTime,
        trigger: Trigger,
        trace: Option<&Trace>,
    ) -> RunId {
        let outcome = outcome.into();
        let run = self.push_history(&outcome, finished, trigger, trace);
        self.update(|r| {
            r.runs[outcome.result().index()] += 1;
            if outcome.answered() {
                r.login.observe_run(outcome.duration.as_secs_f64(), run, finished);
            }
            for s in &outcome.steps {
                let slot = match r.steps.iter().position(|(step, _)| *step == s.step) {
                    Some(i) => i,
                    None => {
                        r.steps.push((s.step, Box::new(Histogram::new(&LATENCY_BUCKETS))));
                        r.steps.len() - 1
                    }
                };
                r.steps[slot].1.observe_run(s.duration.as_secs_f64(), run, finished);
            }
            r.count_extras(&outcome);
            r.availability.record(finished, outcome.is_success());
            if outcome.is_success() {
                r.consecutive_failures = 0;
                r.last_success = Some(finished);
            } else {
                r.consecutive_failures += 1;
            }
            r.last = Some(LastRun { run, ..LastRun::of(outcome.clone(), started, finished) });
        });
        self.mark_dirty();
        RunId { probe: self.key, run }
    }

    /// Records a run made on demand: in the history, and in the on-demand counts only, so that
    /// scheduled series stay the schedule's.
    pub fn record_on_demand(&self, outcome: Outcome, finished: SystemTime, trace: Option<&Trace>) -> RunId {
        let run = self.push_history(&outcome, finished, Trigger::OnDemand, trace);
        self.update(|r| {
            r.on_demand.get_or_insert_with(|| Box::new([0; ResultClass::ALL.len()]))[outcome.result().index()] += 1;
            r.count_extras(&outcome);
        });
        self.mark_dirty();
        RunId { probe: self.key, run }
    }

    /// Adds a run to the history; a failure keeps its detail, step times and trace.
    fn push_history(&self, outcome: &Outcome, finished: SystemTime, trigger: Trigger, trace: Option<&Trace>) -> u32 {
        // Rendered (and redacted) only for a failure, once the failure it replaces has given its
        // trace's bytes back.
        let record = || Some(FailureRecord::of(outcome, trace.map(|t| self.traces.keep(t.render()))));
        self.history.lock().unwrap_or_else(PoisonError::into_inner).push_with(outcome, finished, trigger, record)
    }

    /// The kept trace of its run number `run`, if it failed and its trace was kept.
    pub fn trace(&self, run: u32) -> Option<String> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).trace(run).map(|t| t.text().to_owned())
    }

    /// Whether its run number `run` failed and its trace is kept.
    pub fn has_trace(&self, run: u32) -> bool {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).trace(run).is_some()
    }

    /// Records `n` skipped ticks.
    pub fn record_skip(&self, reason: SkipReason, n: u64) {
        let slot = SkipReason::ALL.iter().position(|r| *r == reason).expect("listed");
        self.update(|r| r.skipped[slot] += n);
    }
}

/// The results of every configured probe, and the scheduler's figures.
#[derive(Debug)]
pub struct Results {
    /// When the process's counters started: the `_created` of its own.
    pub started: SystemTime,
    probes: RwLock<Arc<ProbeSet>>,
    delay: Mutex<DelayHistogram>,
    cron_watchdog_runs: AtomicU64,
    reload: Mutex<ReloadStatus>,
    storage: Mutex<Option<StorageStatus>>,
    traces: Arc<TraceBudget>,
}

/// How the state store stands, as it last said: what the storage metrics show.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StorageStatus {
    /// Whether state is being saved: false when the store could not be opened.
    pub up: bool,
    /// Probes whose state was restored at start.
    pub restored_probes: u64,
    /// Batches written.
    pub writes: u64,
    /// Batches that could not be written (disk full, I/O errors); their probes are written
    /// again with the next batch.
    pub write_failures: u64,
    /// When a batch was last written.
    pub last_write_success: Option<SystemTime>,
    /// How long the last batch took to write.
    pub last_write_duration: Duration,
    /// Probes in the last batch.
    pub last_write_probes: u64,
}

/// How the last configuration reload went.
#[derive(Debug, Clone, Copy)]
pub struct ReloadStatus {
    /// Whether the last (re)load succeeded.
    pub successful: bool,
    /// When the configuration was last loaded successfully (startup counts).
    pub last_success: SystemTime,
}

/// The probes' results in configuration order, with a name index.
#[derive(Debug, Default)]
pub struct ProbeSet {
    /// In configuration order.
    pub list: Vec<Arc<ProbeResults>>,
    by_name: HashMap<Arc<str>, usize>,
}

impl ProbeSet {
    /// The probe called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ProbeResults>> {
        self.by_name.get(name).map(|i| &self.list[*i])
    }

    /// Each target's runs and successes per window, its probes' summed, ending at `now`;
    /// targets by name.
    pub fn target_counts(&self, now: SystemTime) -> Vec<(String, [Counts; 4])> {
        let mut sums = TargetSums::default();
        for p in &self.list {
            sums.add(&p.target, p.read(|r| r.availability.all_counts(now)));
        }
        sums.counts()
    }
}

impl Results {
    /// Empty results for `probes`.
    pub fn new<'a>(probes: impl IntoIterator<Item = &'a Probe>) -> Self {
        let results = Results {
            started: SystemTime::now(),
            probes: RwLock::new(Arc::new(ProbeSet::default())),
            delay: Mutex::new(Histogram::new(&DELAY_BUCKETS)),
            cron_watchdog_runs: AtomicU64::new(0),
            reload: Mutex::new(ReloadStatus { successful: true, last_success: SystemTime::now() }),
            storage: Mutex::new(None),
            traces: TraceBudget::new(traces::DEFAULT_TRACE_BUDGET),
        };
        results.apply(probes);
        results
    }

    /// The budget the failures' traces share.
    pub fn traces(&self) -> &Arc<TraceBudget> {
        &self.traces
    }

    /// Makes `probes` the probe set (a reload). A probe whose name, target, labels and family are
    /// unchanged keeps its record: its series continue. Any other probe starts empty, and the
    /// records of probes no longer listed are dropped, so all their series disappear.
    pub fn apply<'a>(&self, probes: impl IntoIterator<Item = &'a Probe>) {
        let old = self.probes();
        let mut set = ProbeSet::default();
        for p in probes {
            let kept = old
                .get(&p.name)
                .filter(|r| r.target == p.target && r.labels == p.labels && r.kind == p.login.login.kind())
                .cloned();
            let results = match kept {
                Some(r) => {
                    *r.schedule.lock().unwrap_or_else(PoisonError::into_inner) = p.schedule.to_string();
                    r.update(|record| record.expect(p));
                    r
                }
                None => Arc::new(ProbeResults::new(p, self.traces.clone())),
            };
            set.by_name.insert(p.name.clone(), set.list.len());
            set.list.push(results);
        }
        *self.probes.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    /// The current probe set (a cheap handle; the set itself is immutable).
    pub fn probes(&self) -> Arc<ProbeSet> {
        self.probes.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The results of the probe called `name`.
    pub fn probe(&self, name: &str) -> Option<Arc<ProbeResults>> {
        self.probes().get(name).cloned()
    }

    /// Records how late a run started against its plan.
    pub fn record_delay(&self, delay: Duration) {
        self.delay.lock().unwrap_or_else(PoisonError::into_inner).observe(delay.as_secs_f64());
    }

    /// A copy of the scheduler delay histogram.
    pub fn delay(&self) -> DelayHistogram {
        self.delay.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Counts a cron tick that the watchdog had to start because the engine did not.
    pub fn record_cron_watchdog_run(&self) {
        self.cron_watchdog_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the outcome of a configuration reload.
    pub fn record_reload(&self, successful: bool) {
        let mut r = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        r.successful = successful;
        if successful {
            r.last_success = SystemTime::now();
        }
    }

    /// How the last configuration reload went.
    pub fn reload_status(&self) -> ReloadStatus {
        *self.reload.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Updates the state store's status (and with it, makes the storage series exist).
    pub fn update_storage(&self, f: impl FnOnce(&mut StorageStatus)) {
        f(self.storage.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(StorageStatus::default));
    }

    /// The state store's status; `None` when state is kept in memory only.
    pub fn storage(&self) -> Option<StorageStatus> {
        *self.storage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cron ticks started by the watchdog.
    pub fn cron_watchdog_runs(&self) -> u64 {
        self.cron_watchdog_runs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let mut h = Histogram::new(&LATENCY_BUCKETS);
        for v in [0.01, 0.025, 0.03, 0.7, 99.0] {
            h.observe(v);
        }
        let c = h.cumulative();
        assert_eq!(c[0], 2, "0.01 and 0.025 are <= 0.025");
        assert_eq!(c[1], 3);
        assert_eq!(c[5], 4, "0.7 <= 1");
        assert_eq!(c[8], 4, "99 is only in +Inf");
        assert_eq!(h.count, 5);
        assert!((h.sum - 99.765).abs() < 1e-9);
    }

    #[test]
    fn each_bucket_keeps_the_last_run_that_landed_in_it() {
        assert_eq!(std::mem::size_of::<Exemplar>(), 16);
        let mut h = Histogram::new(&LATENCY_BUCKETS);
        let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms);
        h.observe_run(0.0999999, 1, at(5));
        h.observe_run(0.02, 2, at(1_250));
        h.observe_run(0.07, 3, at(2_000));
        h.observe_run(42.0, 4, at(3_000));
        assert_eq!(h.exemplars.iter().map(|e| (e.bucket, e.run)).collect::<Vec<_>>(), [(0, 2), (2, 3), (9, 4)]);
        let e = h.exemplar(2).unwrap();
        assert_eq!((e.value(), e.at_ms()), (0.07, 1_800_000_002_000));
        assert_eq!(h.exemplar(0).unwrap().at_ms(), 1_800_000_001_250);
        assert_eq!(h.exemplar(9).unwrap().value(), 42.0, "+Inf has its own");
        assert!(h.exemplar(1).is_none());
        // Rounded down to the microsecond: never beyond the bucket's bound.
        h.observe_run(0.1, 5, at(0));
        assert!(h.exemplar(2).unwrap().value() <= 0.1);
        assert_eq!(h.count, 5);
    }
}
