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

/// One past run, 12 bytes: at 10,000 probes × 100 runs, every byte here is a megabyte.
#[derive(Debug, Clone, Copy)]
struct Entry {
    finished_unix: u32,
    duration_micros: u32,
    /// Everything else, bit-packed (see [`Packed`]).
    packed: u32,
}

/// The bounded fields of a run in 31 bits: HTTP status (10), result (5), reason (5), step (4),
/// text index (4), state (2), trigger (1).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Packed {
    http_status: u16,
    result: ResultClass,
    reason: Reason,
    step: Step,
    /// 1-based index into the probe's texts; 0 for none.
    text: u8,
    state: Option<State>,
    trigger: Trigger,
}

// Each field's width holds every value it can take.
const _: () =
    assert!(ResultClass::ALL.len() <= 32 && Reason::ALL.len() <= 32 && super::STEP_ORDER.len() <= 16 && TEXTS < 16);

const STATES: [Option<State>; 4] = [None, Some(State::Succeeded), Some(State::Expecting), Some(State::Failed)];

fn index_of<T: PartialEq>(all: &[T], value: &T) -> u32 {
    all.iter().position(|v| v == value).expect("every value is listed") as u32
}

/// The `width` bits of `bits` from bit `shift` on.
fn field(bits: u32, shift: u32, width: u32) -> usize {
    ((bits >> shift) & ((1 << width) - 1)) as usize
}

impl Packed {
    fn pack(self) -> u32 {
        // A status beyond three digits is not HTTP; it shows as 0, as no answer would.
        let status = if self.http_status < 1000 { u32::from(self.http_status) } else { 0 };
        status
            | index_of(&ResultClass::ALL, &self.result) << 10
            | index_of(&Reason::ALL, &self.reason) << 15
            | index_of(&super::STEP_ORDER, &self.step) << 20
            | u32::from(self.text.min(15)) << 24
            | index_of(&STATES, &self.state) << 28
            | u32::from(self.trigger == Trigger::OnDemand) << 30
    }

    /// As [`Packed::unpack`], `None` where a field holds no listed value.
    fn try_unpack(bits: u32) -> Option<Packed> {
        let field = |shift, width| field(bits, shift, width);
        let fits = field(10, 5) < ResultClass::ALL.len()
            && field(15, 5) < Reason::ALL.len()
            && field(20, 4) < super::STEP_ORDER.len()
            && field(28, 2) < STATES.len()
            && bits >> 31 == 0;
        fits.then(|| Packed::unpack(bits))
    }

    fn unpack(bits: u32) -> Packed {
        let field = |shift, width| field(bits, shift, width);
        Packed {
            http_status: field(0, 10) as u16,
            result: ResultClass::ALL[field(10, 5)],
            reason: Reason::ALL[field(15, 5)],
            step: super::STEP_ORDER[field(20, 4)],
            text: field(24, 4) as u8,
            state: STATES[field(28, 2)],
            trigger: if field(30, 1) == 1 { Trigger::OnDemand } else { Trigger::Scheduled },
        }
    }
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
            packed: Packed {
                http_status: o.http_status,
                result: o.result,
                reason: o.reason,
                step: o.step,
                text,
                state: o.state,
                trigger,
            }
            .pack(),
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

    /// What the packed fields mean: a hash of every name each field can take, in order. A
    /// history saved under another layout cannot be read.
    pub fn layout() -> u64 {
        // Asked once per probe of every batch the store writes: worked out once.
        static LAYOUT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *LAYOUT.get_or_init(|| {
            let mut names = String::new();
            let lists: [Vec<&str>; 5] = [
                ResultClass::ALL.iter().map(|r| r.as_str()).collect(),
                Reason::ALL.iter().map(|r| r.as_str()).collect(),
                super::STEP_ORDER.iter().map(|s| s.as_str()).collect(),
                STATES.iter().map(|s| State::label(*s)).collect(),
                vec!["scheduled", "on_demand"],
            ];
            for list in lists {
                names.push_str(&list.join(","));
                names.push('|');
            }
            crate::hash::stable_hash(names.as_bytes())
        })
    }

    /// The history as stored.
    pub(super) fn saved(&self) -> super::saved::SavedHistory {
        let raw = |entries: &VecDeque<Entry>| -> Vec<[u32; 3]> {
            entries.iter().map(|e| [e.finished_unix, e.duration_micros, e.packed]).collect()
        };
        super::saved::SavedHistory {
            layout: Self::layout(),
            runs: raw(&self.entries),
            failures: raw(&self.failures),
            texts: self.texts.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// A stored history; `None` if it was packed under another layout or does not hold together.
    pub(super) fn from_saved(saved: &super::saved::SavedHistory) -> Option<History> {
        if saved.layout != Self::layout() || saved.texts.len() > TEXTS {
            return None;
        }
        let entries = |raw: &[[u32; 3]], bound: usize| -> Option<VecDeque<Entry>> {
            let skip = raw.len().saturating_sub(bound);
            let mut out = VecDeque::new();
            if !raw.is_empty() {
                out.reserve_exact(bound);
            }
            for [finished_unix, duration_micros, packed] in raw[skip..].iter().copied() {
                // Every field must unpack to a listed value and point to a kept text.
                let p = Packed::try_unpack(packed)?;
                if usize::from(p.text) > saved.texts.len() {
                    return None;
                }
                out.push_back(Entry { finished_unix, duration_micros, packed });
            }
            Some(out)
        };
        Some(History {
            entries: entries(&saved.runs, HISTORY_RUNS)?,
            failures: entries(&saved.failures, HISTORY_FAILURES)?,
            texts: saved.texts.iter().map(|t| Arc::from(t.as_str())).collect(),
        })
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
            .map(|e| {
                let p = Packed::unpack(e.packed);
                PastRun {
                    finished_unix: u64::from(e.finished_unix),
                    result: p.result,
                    state: p.state,
                    step: p.step,
                    reason: p.reason,
                    reason_text: match p.text {
                        0 => String::new(),
                        i => self.texts[usize::from(i) - 1].to_string(),
                    },
                    http_status: p.http_status,
                    duration_seconds: Duration::from_micros(u64::from(e.duration_micros)).as_secs_f64(),
                    trigger: p.trigger,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: ResultClass, text: &str, ms: u64) -> Outcome {
        Outcome {
            state: Some(State::Failed),
            reason_text: text.to_owned(),
            ..Outcome::bare(result, Reason::Other, 401, Duration::from_millis(ms))
        }
    }

    #[test]
    fn every_value_of_every_field_survives_packing() {
        for (i, result) in ResultClass::ALL.into_iter().enumerate() {
            let p = Packed {
                http_status: [0, 200, 401, 599, 999][i % 5],
                result,
                reason: Reason::ALL[(i * 7) % Reason::ALL.len()],
                step: super::super::STEP_ORDER[i % super::super::STEP_ORDER.len()],
                text: (i % 9) as u8,
                state: STATES[i % 4],
                trigger: if i % 2 == 0 { Trigger::Scheduled } else { Trigger::OnDemand },
            };
            assert_eq!(Packed::unpack(p.pack()), p);
        }
        for reason in Reason::ALL {
            let p = Packed { reason, ..Packed::unpack(0) };
            assert_eq!(Packed::unpack(p.pack()).reason, reason);
        }
        for step in super::super::STEP_ORDER {
            let p = Packed { step, ..Packed::unpack(0) };
            assert_eq!(Packed::unpack(p.pack()).step, step);
        }
        assert!(ResultClass::ALL.len() <= 32 && Reason::ALL.len() <= 32 && super::super::STEP_ORDER.len() <= 16);
        assert_eq!(Packed::unpack(Packed { http_status: 1234, ..Packed::unpack(0) }.pack()).http_status, 0);
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
        assert_eq!(std::mem::size_of::<Entry>(), 12);
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
