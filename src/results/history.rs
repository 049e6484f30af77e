//! The last runs of a probe, kept compact: at 10,000 probes × 100 runs every byte of an entry
//! costs a megabyte.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::protocol::{Outcome, Reason, ResultClass, State, Step};

/// Runs kept per probe.
pub const HISTORY_RUNS: usize = 100;

/// Failed runs kept per probe apart from the last runs, so that a burst of successes never
/// pushes out the failure someone is looking for (as blackbox_exporter keeps its failed probes).
pub const HISTORY_FAILURES: usize = 20;

/// Distinct reason texts kept per probe; a run whose text did not fit shows none.
const TEXTS: usize = 8;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its schedule.
    Scheduled,
    /// `GET /probe`.
    OnDemand,
}

impl Trigger {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::OnDemand => "on_demand",
        }
    }
}

/// One past run, 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    finished_unix: u32,
    duration_micros: u32,
    http_status: u16,
    result: ResultClass,
    state: Option<State>,
    step: Step,
    reason: Reason,
    trigger: Trigger,
    /// 1-based index into the probe's texts; 0 for none.
    text: u8,
}

/// One past run, as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PastRun {
    /// When it finished, in seconds since the Unix epoch.
    pub finished_unix: u64,
    /// Result class.
    pub result: ResultClass,
    /// Last `State` (`""` if none).
    #[serde(serialize_with = "crate::protocol::ser_state")]
    pub state: Option<State>,
    /// Step reached or failed.
    pub step: Step,
    /// Normalised reason.
    pub reason: Reason,
    /// The server's reason text (sanitised), if it was kept.
    pub reason_text: String,
    /// Final HTTP status, 0 if none.
    pub http_status: u16,
    /// Duration in seconds (microsecond precision).
    pub duration_seconds: f64,
    /// What started it.
    pub trigger: Trigger,
}

/// The last [`HISTORY_RUNS`] runs of one probe, and its last [`HISTORY_FAILURES`] failed ones.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    /// Allocated at the first failure: a probe that never failed pays nothing for it.
    failures: VecDeque<Entry>,
    texts: Vec<Arc<str>>,
}

impl History {
    /// Adds a finished run, dropping the oldest beyond [`HISTORY_RUNS`].
    pub fn push(&mut self, o: &Outcome, finished: SystemTime, trigger: Trigger) {
        if self.entries.len() == HISTORY_RUNS {
            self.entries.pop_front();
        } else if self.entries.capacity() == 0 {
            // Exactly the bound, once: doubling growth would end at 128 entries.
            self.entries.reserve_exact(HISTORY_RUNS);
        }
        let text = self.text_index(&o.reason_text);
        let entry = Entry {
            finished_unix: finished
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            duration_micros: u32::try_from(o.duration.as_micros()).unwrap_or(u32::MAX),
            http_status: o.http_status,
            result: o.result,
            state: o.state,
            step: o.step,
            reason: o.reason,
            trigger,
            text,
        };
        self.entries.push_back(entry);
        if o.result != ResultClass::Success {
            if self.failures.len() == HISTORY_FAILURES {
                self.failures.pop_front();
            } else if self.failures.capacity() == 0 {
                self.failures.reserve_exact(HISTORY_FAILURES);
            }
            self.failures.push_back(entry);
        }
    }

    fn text_index(&mut self, text: &str) -> u8 {
        if text.is_empty() {
            return 0;
        }
        if let Some(i) = self.texts.iter().position(|t| &**t == text) {
            return i as u8 + 1;
        }
        if self.texts.len() < TEXTS {
            self.texts.push(Arc::from(text));
            return self.texts.len() as u8;
        }
        // A server inventing a new text every time: only the first few are kept.
        0
    }

    /// Runs, newest first.
    pub fn runs(&self) -> Vec<PastRun> {
        self.shown(&self.entries)
    }

    /// Failed runs, newest first, however many successes came after them.
    pub fn failures(&self) -> Vec<PastRun> {
        self.shown(&self.failures)
    }

    fn shown(&self, entries: &VecDeque<Entry>) -> Vec<PastRun> {
        entries
            .iter()
            .rev()
            .map(|e| PastRun {
                finished_unix: u64::from(e.finished_unix),
                result: e.result,
                state: e.state,
                step: e.step,
                reason: e.reason,
                reason_text: match e.text {
                    0 => String::new(),
                    i => self.texts[usize::from(i) - 1].to_string(),
                },
                http_status: e.http_status,
                duration_seconds: Duration::from_micros(u64::from(e.duration_micros)).as_secs_f64(),
                trigger: e.trigger,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: ResultClass, text: &str, ms: u64) -> Outcome {
        Outcome {
            result,
            state: Some(State::Failed),
            step: Step::BaseAuthentication,
            reason: Reason::Other,
            reason_text: text.to_owned(),
            http_status: 401,
            duration: Duration::from_millis(ms),
            steps: Vec::new(),
            detail: String::new(),
            logout: None,
            retries: 0,
            phases: None,
            tls: None,
            token_expires_in: None,
            discovery: None,
        }
    }

    #[test]
    fn failures_outlive_a_burst_of_successes() {
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(h.failures.capacity(), 0);
        for i in 0..30u64 {
            h.push(&outcome(ResultClass::AuthFailed, "Invalid credentials", i), t0, Trigger::Scheduled);
        }
        for i in 0..500u64 {
            h.push(&outcome(ResultClass::Success, "", i), t0 + Duration::from_secs(i), Trigger::Scheduled);
        }
        assert!(h.runs().iter().all(|r| r.result == ResultClass::Success));
        let failures = h.failures();
        assert_eq!(failures.len(), HISTORY_FAILURES);
        assert_eq!(failures[0].duration_seconds, 0.029, "newest first");
        assert_eq!(failures[0].reason_text, "Invalid credentials");
    }

    #[test]
    fn bounded_newest_first_and_texts_capped() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..150u64 {
            h.push(
                &outcome(ResultClass::AuthFailed, &format!("text {i}"), i),
                t0 + Duration::from_secs(i),
                Trigger::Scheduled,
            );
        }
        let runs = h.runs();
        assert_eq!(runs.len(), HISTORY_RUNS);
        assert_eq!(runs[0].finished_unix, 1_800_000_149);
        assert_eq!(runs[99].finished_unix, 1_800_000_050);
        assert!((runs[0].duration_seconds - 0.149).abs() < 1e-9);
        // Only the first 8 distinct texts were kept; later ones show none.
        assert_eq!(runs[0].reason_text, "");
        assert!(h.texts.len() <= TEXTS);
        let mut h = History::default();
        h.push(&outcome(ResultClass::AuthFailed, "Invalid credentials", 5), t0, Trigger::Scheduled);
        h.push(&outcome(ResultClass::AuthFailed, "Invalid credentials", 5), t0, Trigger::Scheduled);
        assert_eq!(h.texts.len(), 1);
        assert_eq!(h.runs()[1].reason_text, "Invalid credentials");
    }
}
