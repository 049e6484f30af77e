//! What of a probe's results survives a restart, as plain serde data: its history and failures,
//! availability buckets, last outcome, the gauges derived from it, and the lockout guard.
//! Counters and histograms are not in it: they restart at zero, which Prometheus reads as a
//! counter reset; restored totals a few runs short of what was scraped would read as a reset too,
//! followed by a jump of the whole total.
//!
//! Where bytes go to is the store's business; this module only says what a probe's state is and
//! how it goes in and out of [`ProbeResults`]. Enum values are kept by name, so that a release
//! that adds a result or reason still reads what an older one wrote.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::availability::Availability;
use super::history::History;
use super::history::Layout;
use super::{from_unix_millis, unix_millis, LastRun, ProbeResults};
use crate::protocol::{
    DiscoveryFacts, Lockout, LogoutOutcome, Outcome, Phases, Reason, ResultClass, Scheme, State, Step, StepRecord,
    Summary, TlsFacts,
};

/// The lockout guard of a probe, in wall-clock time so that it means the same after a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardState {
    /// Consecutive credential failures.
    pub strikes: u32,
    /// How many times the gap between runs has doubled.
    pub level: u32,
    /// Ticks planned before this (Unix milliseconds) are skipped; 0 for none.
    pub until_unix_ms: u64,
}

impl GuardState {
    /// Whether the guard holds nothing: no strike, no backoff.
    pub fn is_clear(&self) -> bool {
        *self == GuardState::default()
    }
}

/// The part of one probe's results that a restart keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeState {
    /// The target the probe had: state is restored only to a probe of the same target and
    /// labels, as a reload keeps a record only for those.
    pub target: String,
    /// Static labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The last runs and failures.
    pub history: SavedHistory,
    /// Availability buckets.
    pub availability: SavedAvailability,
    /// The last scheduled run.
    pub last: Option<SavedRun>,
    /// Finished runs since the last success.
    pub consecutive_failures: u64,
    /// When the last successful run finished (Unix milliseconds).
    pub last_success_unix_ms: Option<u64>,
    /// The lockout guard.
    pub guard: GuardState,
    /// The extra delay between runs the guard had in force (milliseconds).
    pub backoff_ms: u64,
    /// While backing off: when the probe runs again (Unix milliseconds).
    pub resume_at_unix_ms: Option<u64>,
    /// The history's run numbers: stored after the rest (see [`ProbeState::encode`]).
    #[serde(skip)]
    pub run_numbers: SavedRunNumbers,
}

/// The run numbers of a [`SavedHistory`] (see [`super::run_id`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedRunNumbers {
    /// The number of the newest run.
    pub last_run: u32,
    /// The number of each kept failure, oldest first.
    pub failures: Vec<u32>,
    /// The number of the last scheduled run ([`ProbeState::last`]); 0 when unknown.
    pub last: u32,
}

impl ProbeState {
    /// The stored bytes: the state, then its run numbers. postcard is positional, so a field
    /// added inside the state would make every earlier record unreadable; one appended after it
    /// is simply absent from them, and a release that knows nothing of it reads the state and
    /// ignores the bytes after.
    pub fn encode(&self) -> postcard::Result<Vec<u8>> {
        let mut bytes = postcard::to_stdvec(self)?;
        bytes.extend(postcard::to_stdvec(&self.run_numbers)?);
        Ok(bytes)
    }

    /// Reads [`ProbeState::encode`]'s bytes, or those of a release that stored no run numbers.
    pub fn decode(bytes: &[u8]) -> postcard::Result<ProbeState> {
        let (mut state, rest): (ProbeState, _) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            state.run_numbers = postcard::from_bytes(rest)?;
        }
        Ok(state)
    }
}

/// [`History`] as stored: its entries as they are packed in memory, with the id of their
/// [`Layout`], which the store keeps, so that a later release reads them by name and one that
/// cannot drops them instead of misreading them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedHistory {
    /// [`Layout::id`] of the writer's [`History::layout`].
    pub layout: u64,
    /// Last runs, oldest first: finished (Unix seconds), then the packed fields.
    pub runs: Vec<[u32; 3]>,
    /// Last failures, oldest first, as `runs`.
    pub failures: Vec<[u32; 3]>,
    /// Reason texts the entries point to.
    pub texts: Vec<String>,
}

/// [`Availability`] as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedAvailability {
    /// The newest bucket of each ring.
    pub newest: [u32; 3],
    /// Runs and successes of every bucket, in ring order.
    pub cells: Vec<[u32; 2]>,
}

/// A finished run as stored: [`LastRun`] and its [`Outcome`], enums by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    result: String,
    state: String,
    step: String,
    reason: String,
    reason_text: String,
    status: u16,
    duration_ns: u64,
    started_unix_ns: u64,
    finished_unix_ns: u64,
    steps: Vec<(String, u16, String, u64)>,
    detail: String,
    logout: Option<(bool, u16, String)>,
    retries: u32,
    phases: Option<[Option<u64>; 5]>,
    tls: Option<(Option<String>, Option<i64>)>,
    token_expires_in_ms: Option<u64>,
    discovery: Option<(bool, u64, Option<u64>, Option<i64>)>,
}

/// The history layouts a store knows, by id: this release's, the release before families', and
/// any the store recorded as written by a release since.
#[derive(Debug, Clone)]
pub struct Layouts(std::collections::HashMap<u64, Layout>);

impl Default for Layouts {
    fn default() -> Self {
        let mut known = std::collections::HashMap::new();
        for layout in [History::layout().clone(), Layout::before_families()] {
            known.insert(layout.id(), layout);
        }
        Layouts(known)
    }
}

impl Layouts {
    /// Knows `layout` too.
    pub fn add(&mut self, layout: Layout) {
        self.0.insert(layout.id(), layout);
    }

    /// The layout of id `id`.
    pub fn get(&self, id: u64) -> Option<&Layout> {
        self.0.get(&id)
    }
}

/// Why a stored state could not be taken back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// A name this release does not know (written by a newer one).
    #[error("unknown {what} {value:?}")]
    Unknown {
        /// What kind of value.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Bucket counts of the wrong size.
    #[error("availability of {0} buckets")]
    Buckets(usize),
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, nanos)
}

fn unknown(what: &'static str, value: &str) -> RestoreError {
    RestoreError::Unknown { what, value: value.to_owned() }
}

fn result_named(v: &str) -> Result<ResultClass, RestoreError> {
    ResultClass::from_name(v).ok_or_else(|| unknown("result", v))
}

fn reason_named(v: &str) -> Result<Reason, RestoreError> {
    Reason::from_name(v).ok_or_else(|| unknown("reason", v))
}

fn step_named(v: &str) -> Result<Step, RestoreError> {
    Step::from_name(v).ok_or_else(|| unknown("step", v))
}

fn state_named(v: &str) -> Result<Option<State>, RestoreError> {
    State::from_label(v).ok_or_else(|| unknown("state", v))
}

/// TLS versions as [`TlsFacts::version`] names them.
const TLS_VERSIONS: [&str; 4] = ["TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3"];

impl SavedRun {
    fn of(last: &LastRun) -> Self {
        let o = &*last.outcome;
        let s = &o.summary;
        SavedRun {
            result: s.result.as_str().to_owned(),
            state: State::label(s.state).to_owned(),
            step: s.step.as_str().to_owned(),
            reason: s.reason.as_str().to_owned(),
            reason_text: o.reason_text.clone(),
            status: s.status,
            duration_ns: nanos(o.duration),
            started_unix_ns: unix_ns(last.started),
            finished_unix_ns: unix_ns(last.finished),
            steps: o
                .steps
                .iter()
                .map(|s| (s.step.as_str().to_owned(), s.status, State::label(s.state).to_owned(), nanos(s.duration)))
                .collect(),
            detail: o.detail.clone(),
            logout: o.logout.as_ref().map(|l| (l.ok, l.status, l.detail.clone())),
            retries: o.retries,
            phases: o.phases.map(|p| p.durations().map(|d| d.map(nanos))),
            tls: o.tls.map(|t| (t.version.map(str::to_owned), t.cert_not_after_unix)),
            token_expires_in_ms: o.token_expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            discovery: o
                .discovery
                .map(|d| (d.ok, nanos(d.duration), d.jwks_keys.map(|k| k as u64), d.jwks_changed_unix)),
        }
    }

    /// The run back, its statuses in `scheme` (its probe's family's).
    fn last_run(&self, scheme: &'static Scheme) -> Result<LastRun, RestoreError> {
        let ns = Duration::from_nanos;
        let steps = self
            .steps
            .iter()
            .map(|(step, status, state, d)| {
                Ok(StepRecord {
                    step: step_named(step)?,
                    status: *status,
                    state: state_named(state)?,
                    duration: ns(*d),
                })
            })
            .collect::<Result<Vec<_>, RestoreError>>()?;
        let result = result_named(&self.result)?;
        let outcome = Outcome {
            summary: Summary {
                result,
                state: state_named(&self.state)?,
                step: step_named(&self.step)?,
                reason: reason_named(&self.reason)?,
                status: self.status,
            },
            scheme,
            reason_text: self.reason_text.clone(),
            duration: Duration::from_nanos(self.duration_ns),
            steps,
            detail: self.detail.clone(),
            logout: self.logout.as_ref().map(|(ok, status, detail)| LogoutOutcome {
                ok: *ok,
                status: *status,
                detail: detail.clone(),
            }),
            retries: self.retries,
            phases: self.phases.map(|[resolve, connect, tls, processing, transfer]| Phases {
                resolve: ns(resolve.unwrap_or(0)),
                connect: ns(connect.unwrap_or(0)),
                tls: ns(tls.unwrap_or(0)),
                processing: processing.map(ns),
                transfer: transfer.map(ns),
            }),
            tls: self.tls.as_ref().map(|(version, not_after)| TlsFacts {
                version: version.as_deref().and_then(|v| TLS_VERSIONS.into_iter().find(|k| *k == v)),
                cert_not_after_unix: *not_after,
            }),
            token_expires_in: self.token_expires_in_ms.map(Duration::from_millis),
            discovery: self.discovery.map(|(ok, d, keys, changed)| DiscoveryFacts {
                ok,
                duration: ns(d),
                jwks_keys: keys.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
                jwks_changed_unix: changed,
            }),
            lockout: Lockout::of(result),
            // Not stored: the next run tells again (see AccountFacts).
            account: None,
        };
        let at = |ns| UNIX_EPOCH + Duration::from_nanos(ns);
        Ok(LastRun::of(outcome.into(), at(self.started_unix_ns), at(self.finished_unix_ns)))
    }
}

impl ProbeResults {
    /// The state a restart keeps, taken under the probe's locks.
    pub fn saved_state(&self) -> ProbeState {
        let (history, mut run_numbers) = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner).saved();
        self.read(|r| ProbeState {
            run_numbers: {
                run_numbers.last = r.last.as_ref().map_or(0, |l| l.run);
                run_numbers
            },
            target: self.target.to_string(),
            labels: self.labels.to_vec(),
            history,
            availability: r.availability.saved(),
            last: r.last.as_ref().map(SavedRun::of),
            consecutive_failures: r.consecutive_failures,
            last_success_unix_ms: r.last_success.map(unix_millis),
            guard: r.guard,
            backoff_ms: u64::try_from(r.backoff.as_millis()).unwrap_or(u64::MAX),
            resume_at_unix_ms: r.resume_at.map(unix_millis),
        })
    }

    /// Takes back a saved state: the probe's series come back with their last values, its
    /// history, failures and availability as they were, and its lockout guard where it was.
    /// Nothing is changed when any part cannot be read. Returns whether the history was kept:
    /// it is read by the layout `layouts` gives its id (this release's, or the one of the
    /// earlier release that wrote it), and dropped when none does.
    pub fn restore(&self, state: &ProbeState, layouts: &Layouts) -> Result<bool, RestoreError> {
        let availability = Availability::from_saved(&state.availability)?;
        let last = state.last.as_ref().map(|l| l.last_run(self.scheme())).transpose()?;
        let last = last.map(|l| LastRun { run: state.run_numbers.last, ..l });
        let history = layouts
            .get(state.history.layout)
            .and_then(|layout| History::from_saved(&state.history, layout, &state.run_numbers));
        let kept = history.is_some();
        if let Some(history) = history {
            *self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = history;
        }
        let now = SystemTime::now();
        let resume_at = state.resume_at_unix_ms.map(from_unix_millis);
        self.update(|r| {
            r.availability = availability;
            r.last = last;
            r.consecutive_failures = state.consecutive_failures;
            r.last_success = state.last_success_unix_ms.map(from_unix_millis);
            r.guard = state.guard;
            // A backoff whose end has passed is over: what remains is the strikes.
            if resume_at.is_some_and(|at| at > now) {
                r.backoff = Duration::from_millis(state.backoff_ms);
                r.resume_at = resume_at;
            }
        });
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::results::{PastRun, Results, Trigger};

    fn outcome(result: ResultClass) -> Outcome {
        use crate::protocol::etna;
        Outcome {
            summary: Summary {
                result,
                state: Some(etna::State::Failed.into()),
                step: etna::SECUTITY_PIN,
                reason: etna::INVALID_CREDENTIALS,
                status: 401,
            },
            scheme: &crate::protocol::http::STATUS,
            reason_text: "Invalid pin".to_owned(),
            duration: Duration::from_micros(123_456),
            steps: vec![StepRecord {
                step: etna::BASE_AUTHENTICATION,
                status: 202,
                state: Some(etna::State::Expecting.into()),
                duration: Duration::from_micros(50_000),
            }],
            detail: "refused".to_owned(),
            logout: Some(LogoutOutcome { ok: false, status: 500, detail: "logout failed".to_owned() }),
            retries: 2,
            phases: Some(Phases {
                resolve: Duration::ZERO,
                connect: Duration::from_micros(100),
                tls: Duration::from_micros(2_000),
                processing: Some(Duration::from_micros(40_000)),
                transfer: None,
            }),
            tls: Some(TlsFacts { version: Some("TLS 1.3"), cert_not_after_unix: Some(1_900_000_000) }),
            token_expires_in: Some(Duration::from_secs(300)),
            discovery: Some(DiscoveryFacts {
                ok: true,
                duration: Duration::from_micros(7_000),
                jwks_keys: Some(2),
                jwks_changed_unix: Some(1_800_000_000),
            }),
            lockout: Lockout::of(result),
            account: None,
        }
    }

    fn results() -> Results {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probes.yaml");
        let text = "targets:\n  - {name: t, base_url: 'http://127.0.0.1:9/api', app_key: k}\n\
                    probes:\n  - {name: p, target: t, username: u, password: pw}\n";
        std::fs::write(&path, text).unwrap();
        Results::new(&Config::load(&path).unwrap().probes)
    }

    #[test]
    fn a_probe_comes_back_as_it_was() {
        let before = results();
        let p = before.probe("p").unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..130u64 {
            let result = if i % 10 == 3 { ResultClass::AuthFailed } else { ResultClass::Success };
            p.record_run(
                outcome(result),
                t0 + Duration::from_secs(i),
                t0 + Duration::from_secs(i) + Duration::from_millis(123),
                Trigger::Scheduled,
            );
        }
        p.record_run(
            outcome(ResultClass::AuthFailed),
            t0 + Duration::from_secs(200),
            t0 + Duration::from_secs(201),
            Trigger::Scheduled,
        );
        let until = SystemTime::now() + Duration::from_secs(600);
        p.set_backoff(
            Duration::from_secs(60),
            Some(until),
            GuardState { strikes: 4, level: 2, until_unix_ms: unix_millis(until) },
        );
        let state = p.saved_state();
        let encoded = state.encode().unwrap();
        let decoded = ProbeState::decode(&encoded).unwrap();
        assert_eq!(decoded, state);

        let after = results();
        let q = after.probe("p").unwrap();
        assert_eq!(q.restore(&decoded, &Layouts::default()), Ok(true));
        // What only the running process keeps (details, step times, traces) is not stored.
        let stored = |runs: Vec<PastRun>| -> Vec<PastRun> {
            runs.into_iter()
                .map(|r| PastRun { detail: String::new(), steps: Vec::new(), trace: Default::default(), ..r })
                .collect()
        };
        assert!(p.history().iter().any(|r| !r.detail.is_empty()), "the run before had a detail");
        assert_eq!(q.history(), stored(p.history()));
        assert_eq!(q.failures(), stored(p.failures()));
        assert_eq!(q.failures().len(), 14);
        let (a, b) = (p.snapshot(), q.snapshot());
        let now = t0 + Duration::from_secs(300);
        assert_eq!(a.availability.all_counts(now), b.availability.all_counts(now));
        assert_eq!(a.availability.hours(now), b.availability.hours(now));
        assert_eq!(b.last.as_ref().unwrap().outcome, a.last.as_ref().unwrap().outcome);
        assert_eq!(b.last.as_ref().unwrap().started, a.last.as_ref().unwrap().started);
        assert_eq!((b.consecutive_failures, b.last_success), (1, a.last_success));
        assert_eq!((b.guard, b.backoff, b.resume_at.map(unix_millis)), (a.guard, a.backoff, Some(unix_millis(until))));
        assert_eq!(b.resume_at.map(unix_millis), a.resume_at.map(unix_millis));
        // Counters restart at zero.
        assert_eq!((b.total_runs(), b.login.count), (0, 0));
        assert_eq!(q.saved_state(), state);
        // Run ids: the same after the restart, the last run's included.
        assert_eq!(b.last.as_ref().unwrap().run, 131);
        assert_eq!(q.history()[0].run_id, p.run_id(131));

        // A record of a release that stored no run numbers (the state alone) still reads; its
        // runs are numbered from the history it kept.
        let old = postcard::to_stdvec(&state).unwrap();
        let decoded = ProbeState::decode(&old).unwrap();
        assert_eq!(decoded.run_numbers, SavedRunNumbers::default());
        let r = results();
        let o = r.probe("p").unwrap();
        assert_eq!(o.restore(&decoded, &Layouts::default()), Ok(true));
        assert_eq!(o.history()[0].run_id, o.run_id(100));
        assert_eq!(o.snapshot().last.unwrap().run, 0, "unknown");
        // And that release reads this one's records, ignoring the numbers after the state.
        let (read, rest): (ProbeState, _) = postcard::take_from_bytes(&encoded).unwrap();
        assert!(!rest.is_empty());
        assert_eq!(read.history, state.history);
    }

    #[test]
    fn unknown_names_and_foreign_layouts_are_refused_without_a_change() {
        let r = results();
        let p = r.probe("p").unwrap();
        p.record_run(outcome(ResultClass::Success), UNIX_EPOCH, UNIX_EPOCH, Trigger::Scheduled);
        let mut state = p.saved_state();
        state.last.as_mut().unwrap().reason = "from_the_future".to_owned();
        let fresh = results();
        let q = fresh.probe("p").unwrap();
        assert_eq!(
            q.restore(&state, &Layouts::default()),
            Err(RestoreError::Unknown { what: "reason", value: "from_the_future".to_owned() })
        );
        assert!(q.snapshot().last.is_none());
        let mut state = p.saved_state();
        state.availability.cells.pop();
        assert_eq!(q.restore(&state, &Layouts::default()), Err(RestoreError::Buckets(209)));
        let mut state = p.saved_state();
        state.history.layout ^= 1;
        assert_eq!(q.restore(&state, &Layouts::default()), Ok(false), "the rest comes back, the history does not");
        assert!(q.history().is_empty());
        assert!(q.snapshot().last.is_some());
    }
}
