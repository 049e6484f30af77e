//! The last runs of a probe, kept compact: at 10,000 probes × 100 runs every byte of an entry
//! costs a megabyte.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize};

use super::run_id::RunId;
use super::traces::KeptTrace;
use crate::protocol::names::{MAX_REASONS, MAX_STATES, MAX_STEPS};
use crate::protocol::{Outcome, Reason, ResultClass, Scheme, State, Step, Summary};

/// Runs kept per probe.
pub const HISTORY_RUNS: usize = 100;

/// Failed runs kept per probe apart from the last runs, so that a burst of successes never
/// pushes out the failure someone is looking for (as blackbox_exporter keeps its failed probes).
pub const HISTORY_FAILURES: usize = 20;

/// Distinct reason texts kept per probe; a run whose text did not fit shows none.
const TEXTS: usize = 8;

/// The last runs whose details and step times are kept besides their entries: the step
/// chart's. A failure keeps its own as long as it is kept.
pub const RECENT_RUNS: usize = 20;

/// Distinct details kept per probe for the recent runs (a probe's details rarely vary).
const DETAILS: usize = 8;

/// How long a kept detail may be, in bytes.
const DETAIL_BYTES: usize = 512;

/// A step time's duration field: microseconds in 27 bits (134 s; longer steps saturate).
const STEP_MICROS: u32 = 27;

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

/// One past run, 12 bytes: when it finished (Unix seconds) and 64 bits of [`Packed`] fields in
/// two words (an 8-byte field would align the entry to 16).
#[derive(Debug, Clone, Copy)]
struct Entry {
    finished_unix: u32,
    bits: [u32; 2],
}

/// The fields of a run in 64 bits: duration (µs, 31 bits: up to 35 minutes), status (10), result
/// (5), reason (6), step (5), text index (4), state (2), trigger (1).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Packed {
    duration_micros: u32,
    summary: Summary,
    /// 1-based index into the probe's texts; 0 for none.
    text: u8,
    trigger: Trigger,
}

/// Each field's place in the 64 bits: (shift, width).
const DURATION: (u32, u32) = (0, 31);
const STATUS: (u32, u32) = (31, 10);
const RESULT: (u32, u32) = (41, 5);
const REASON: (u32, u32) = (46, 6);
const STEP: (u32, u32) = (52, 5);
const TEXT: (u32, u32) = (57, 4);
const STATE: (u32, u32) = (61, 2);
const TRIGGER: (u32, u32) = (63, 1);

// Each field's width holds every value it can take, as many reasons and steps as the families
// may declare among them, and the fields fill 64 bits exactly.
const _: () = assert!(
    ResultClass::ALL.len() <= 1 << RESULT.1
        && MAX_REASONS <= 1 << REASON.1
        && MAX_STEPS <= 1 << STEP.1
        && MAX_STATES < 1 << STATE.1
        && TEXTS < 1 << TEXT.1
        && TRIGGER.0 + TRIGGER.1 == 64
);

/// A status of `u16::MAX` (a scheme's "no answer" other than 0), packed.
const NO_ANSWER_PACKED: u16 = 1023;
/// Any other status beyond three digits, packed.
const BEYOND_PACKED: u16 = 1022;

fn put(bits: &mut u64, (shift, width): (u32, u32), value: u64) {
    *bits |= (value & ((1 << width) - 1)) << shift;
}

fn get(bits: u64, (shift, width): (u32, u32)) -> usize {
    ((bits >> shift) & ((1 << width) - 1)) as usize
}

impl Packed {
    fn pack(self) -> [u32; 2] {
        let s = self.summary;
        let status = match s.status {
            0..=999 => s.status,
            // LDAP's "no answer" (see Scheme::no_answer).
            u16::MAX => NO_ANSWER_PACKED,
            // Another status beyond three digits (an LDAP code from a vendor's range).
            _ => BEYOND_PACKED,
        };
        let mut bits = 0u64;
        put(&mut bits, DURATION, u64::from(self.duration_micros.min((1 << DURATION.1) - 1)));
        put(&mut bits, STATUS, u64::from(status));
        put(&mut bits, RESULT, s.result.index() as u64);
        put(&mut bits, REASON, s.reason.index() as u64);
        put(&mut bits, STEP, s.step.index() as u64);
        put(&mut bits, TEXT, u64::from(self.text.min(15)));
        put(&mut bits, STATE, s.state.map_or(0, |s| s.index() + 1) as u64);
        put(&mut bits, TRIGGER, u64::from(self.trigger == Trigger::OnDemand));
        [bits as u32, (bits >> 32) as u32]
    }

    /// The fields of `bits`, `None` where a field holds no value of the tables.
    fn unpack([lo, hi]: [u32; 2]) -> Option<Packed> {
        let bits = u64::from(lo) | u64::from(hi) << 32;
        let state = match get(bits, STATE) {
            0 => None,
            i => Some(State::at(i - 1)?),
        };
        Some(Packed {
            duration_micros: get(bits, DURATION) as u32,
            summary: Summary {
                result: *ResultClass::ALL.get(get(bits, RESULT))?,
                state,
                step: Step::at(get(bits, STEP))?,
                reason: Reason::at(get(bits, REASON))?,
                status: match get(bits, STATUS) as u16 {
                    NO_ANSWER_PACKED => u16::MAX,
                    other => other,
                },
            },
            text: get(bits, TEXT) as u8,
            trigger: if get(bits, TRIGGER) == 1 { Trigger::OnDemand } else { Trigger::Scheduled },
        })
    }
}

/// The 1-based index of `text` in `table`, added if there is room (at most `cap`); 0 for an
/// empty text or one that did not fit (a server inventing a new text every time: only the
/// first few are kept).
fn intern(table: &mut Vec<Arc<str>>, cap: usize, text: &str) -> u8 {
    if text.is_empty() {
        return 0;
    }
    if let Some(i) = table.iter().position(|t| &**t == text) {
        return i as u8 + 1;
    }
    if table.len() < cap {
        // Most probes hold one or two texts: room for one at a time, not Vec's first four.
        table.reserve_exact(1);
        table.push(shared(text));
        return table.len() as u8;
    }
    0
}

/// Texts every probe's tables share: thousands of probes of one family say the same "login
/// succeeded", kept once rather than once a probe (48 bytes each at 10,000 probes).
const SHARED_TEXTS: usize = 4096;

/// `text`, as one shared copy while there are fewer than [`SHARED_TEXTS`] (a server inventing
/// texts gets copies of its own once they are full). A shared text is never dropped: the set is
/// bounded, and its texts (sanitised, bounded server texts and our details) are short.
fn shared(text: &str) -> Arc<str> {
    static TEXTS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<Arc<str>>>> =
        std::sync::OnceLock::new();
    let mut texts = TEXTS.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(t) = texts.get(text) {
        return t.clone();
    }
    let t: Arc<str> = Arc::from(text);
    if texts.len() < SHARED_TEXTS {
        texts.insert(t.clone());
    }
    t
}

/// One tick of a heartbeat bar: a run, when it finished and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Beat {
    /// When it finished, in seconds since the Unix epoch.
    pub finished_unix: u32,
    /// How it ended.
    #[serde(serialize_with = "result_name")]
    pub result: ResultClass,
    /// Its number among the probe's runs.
    pub run: u32,
}

fn result_name<S: serde::Serializer>(r: &ResultClass, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

/// One past run, as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    /// When it finished, in seconds since the Unix epoch.
    pub finished_unix: u64,
    /// Result, state, step, reason and final status.
    pub summary: Summary,
    /// What its status codes are.
    pub scheme: &'static Scheme,
    /// The server's reason text (sanitised), if it was kept.
    pub reason_text: String,
    /// Duration in seconds (microsecond precision).
    pub duration_seconds: f64,
    /// What started it.
    pub trigger: Trigger,
    /// Its id; `None` for a failure restored from a release that did not number runs.
    pub run_id: Option<RunId>,
    /// What happened, in words; empty when not kept (older runs, and runs before a restart).
    pub detail: String,
    /// Each step's time; empty when not kept.
    pub steps: Vec<StepTime>,
    /// Whether the run's trace is kept.
    pub trace: TraceNote,
}

/// One step of a run and its time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepTime {
    /// The step.
    #[serde(serialize_with = "step_name")]
    pub step: Step,
    /// Its time, in seconds (microsecond precision, at most 134 s).
    pub duration_seconds: f64,
}

fn step_name<S: serde::Serializer>(s: &Step, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

impl StepTime {
    fn pack(step: Step, d: Duration) -> u32 {
        let micros = u32::try_from(d.as_micros()).unwrap_or(u32::MAX).min((1 << STEP_MICROS) - 1);
        (step.index() as u32) << STEP_MICROS | micros
    }

    fn unpack(word: u32) -> Option<StepTime> {
        Some(StepTime {
            step: Step::at((word >> STEP_MICROS) as usize)?,
            duration_seconds: Duration::from_micros(u64::from(word & ((1 << STEP_MICROS) - 1))).as_secs_f64(),
        })
    }
}

/// What a failed run's trace came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceNote {
    /// None: a success, a run not traced (tracing off, a held run) or restored after a restart.
    #[default]
    None,
    /// Kept: `/runs/ID` shows it.
    Kept,
    /// Recorded but not kept: the process-wide budget for traces was full.
    OverBudget,
}

/// What a failed run keeps beyond its entry while the process runs (a restart forgets it).
#[derive(Debug)]
pub struct FailureRecord {
    detail: Box<str>,
    steps: Box<[u32]>,
    /// `Err(())` when the trace was recorded but the budget had no room for it.
    trace: Option<Result<KeptTrace, ()>>,
}

impl FailureRecord {
    /// The record of a failed run `o`, with its trace, if recorded: kept, or not for want of
    /// room.
    pub fn of(o: &Outcome, trace: Option<Option<KeptTrace>>) -> FailureRecord {
        FailureRecord {
            detail: bounded(&o.detail).into(),
            steps: o.steps.iter().map(|s| StepTime::pack(s.step, s.duration)).collect(),
            trace: trace.map(|t| t.ok_or(())),
        }
    }

    fn note(&self) -> TraceNote {
        match self.trace {
            None => TraceNote::None,
            Some(Ok(_)) => TraceNote::Kept,
            Some(Err(())) => TraceNote::OverBudget,
        }
    }
}

/// `text` cut to [`DETAIL_BYTES`] at a character boundary.
fn bounded(text: &str) -> &str {
    let mut cut = text.len().min(DETAIL_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

impl PastRun {
    /// The result class.
    pub fn result(&self) -> ResultClass {
        self.summary.result
    }
}

/// As the JSON API shows it: run_id, finished_unix, result, state, step, reason, reason_text, the
/// status under its scheme's label, duration_seconds, trigger, detail, steps, trace.
impl Serialize for PastRun {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(13))?;
        m.serialize_entry("run_id", &self.run_id)?;
        m.serialize_entry("finished_unix", &self.finished_unix)?;
        self.summary.serialize_into(&mut m, self.scheme, &self.reason_text)?;
        m.serialize_entry("duration_seconds", &self.duration_seconds)?;
        m.serialize_entry("trigger", &self.trigger)?;
        m.serialize_entry("detail", &self.detail)?;
        m.serialize_entry("steps", &self.steps)?;
        m.serialize_entry("trace", &self.trace)?;
        m.end()
    }
}

/// The last [`HISTORY_RUNS`] runs of one probe, and its last [`HISTORY_FAILURES`] failed ones.
///
/// Runs are numbered from 1 as they are pushed. Every run goes into `entries`, so their numbers
/// are consecutive there and only the newest is kept; failures are not, so each keeps its own
/// (20 numbers rather than 4 bytes in each of the 100 entries).
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    /// Allocated at the first failure: a probe that never failed pays nothing for it.
    /// With each its run's number (0 for one restored without) and what it keeps while the
    /// process runs.
    failures: VecDeque<(Entry, u32, Option<Box<FailureRecord>>)>,
    /// The number of the newest run (of the last entry); 0 before the first.
    last_run: u32,
    texts: Vec<Arc<str>>,
    /// The last [`RECENT_RUNS`] runs' details and step times, oldest first, in words: for each
    /// run a head (its step count in bits 0–7, its detail's 1-based index in bits 8–11) and a
    /// word per step (step index above [`STEP_MICROS`] bits of microseconds).
    recent: VecDeque<u32>,
    /// How many runs `recent` holds.
    recent_runs: u8,
    details: Vec<Arc<str>>,
}

impl History {
    /// Adds a finished run, dropping the oldest beyond [`HISTORY_RUNS`]; returns its number.
    pub fn push(&mut self, o: &Outcome, finished: SystemTime, trigger: Trigger) -> u32 {
        self.push_with(o, finished, trigger, || None)
    }

    /// Like [`History::push`]; a failure keeps what `record` makes of it, called once the
    /// oldest failure beyond [`HISTORY_FAILURES`] is gone (so that its trace has left the
    /// budget).
    pub fn push_with(
        &mut self,
        o: &Outcome,
        finished: SystemTime,
        trigger: Trigger,
        record: impl FnOnce() -> Option<FailureRecord>,
    ) -> u32 {
        self.push_recent(o);
        // 4 billion runs are 136 years at one a second; past them, numbering starts again.
        self.last_run = self.last_run.checked_add(1).unwrap_or(1);
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
            bits: Packed {
                duration_micros: u32::try_from(o.duration.as_micros()).unwrap_or(u32::MAX),
                summary: o.summary,
                text,
                trigger,
            }
            .pack(),
        };
        self.entries.push_back(entry);
        if o.summary.result != ResultClass::Success {
            if self.failures.len() == HISTORY_FAILURES {
                self.failures.pop_front();
            } else if self.failures.capacity() == 0 {
                self.failures.reserve_exact(HISTORY_FAILURES);
            }
            let kept = record().map(Box::new);
            self.failures.push_back((entry, self.last_run, kept));
        }
        self.last_run
    }

    fn push_recent(&mut self, o: &Outcome) {
        if usize::from(self.recent_runs) == RECENT_RUNS {
            let head = self.recent.pop_front().unwrap_or(0);
            self.recent.drain(..(head as usize & 0xff).min(self.recent.len()));
            self.recent_runs -= 1;
        }
        let steps = o.steps.len().min(0xff);
        if self.recent.capacity() == 0 {
            // Room for the bound at this run's step count: a probe's runs mostly take the
            // same steps, so the ring seldom grows again.
            self.recent.reserve_exact(RECENT_RUNS * (1 + steps));
        }
        let detail = intern(&mut self.details, DETAILS, bounded(&o.detail));
        self.recent.push_back(steps as u32 | u32::from(detail) << 8);
        self.recent.extend(o.steps.iter().take(steps).map(|s| StepTime::pack(s.step, s.duration)));
        self.recent_runs += 1;
    }

    /// The recent runs' details and step times, newest first.
    fn recent(&self) -> Vec<(String, Vec<StepTime>)> {
        let mut out = Vec::with_capacity(usize::from(self.recent_runs));
        let mut i = 0;
        while i < self.recent.len() {
            let head = self.recent[i];
            let n = head as usize & 0xff;
            let detail = match (head >> 8) & 0xf {
                0 => String::new(),
                d => self.details.get(d as usize - 1).map(|t| t.to_string()).unwrap_or_default(),
            };
            let steps = self.recent.range(i + 1..(i + 1 + n).min(self.recent.len()));
            out.push((detail, steps.filter_map(|w| StepTime::unpack(*w)).collect()));
            i += 1 + n;
        }
        out.reverse();
        out
    }

    /// The number of the newest run; 0 before the first.
    pub fn last_run(&self) -> u32 {
        self.last_run
    }

    fn text_index(&mut self, text: &str) -> u8 {
        intern(&mut self.texts, TEXTS, text)
    }

    /// The trace of failed run number `run`, if kept.
    pub fn trace(&self, run: u32) -> Option<&KeptTrace> {
        let (_, _, record) = self.failures.iter().rev().find(|(_, r, _)| *r == run && run > 0)?;
        record.as_ref()?.trace.as_ref()?.as_ref().ok()
    }

    /// What the packed entries mean: the packing and every name each field can take.
    pub fn layout() -> &'static Layout {
        static LAYOUT: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
        LAYOUT.get_or_init(|| Layout {
            packing: 2,
            results: ResultClass::ALL.iter().map(|r| r.as_str().to_owned()).collect(),
            reasons: Reason::all().map(|r| r.as_str().to_owned()).collect(),
            steps: Step::all().map(|s| s.as_str().to_owned()).collect(),
            states: State::all().map(|s| s.as_str().to_owned()).collect(),
        })
    }

    /// The history as stored, and its run numbers.
    pub(super) fn saved(&self) -> (super::saved::SavedHistory, super::saved::SavedRunNumbers) {
        let raw = |entries: &mut dyn Iterator<Item = &Entry>| -> Vec<[u32; 3]> {
            entries.map(|e| [e.finished_unix, e.bits[0], e.bits[1]]).collect()
        };
        let history = super::saved::SavedHistory {
            layout: Self::layout().id(),
            runs: raw(&mut self.entries.iter()),
            failures: raw(&mut self.failures.iter().map(|(e, _, _)| e)),
            texts: self.texts.iter().map(|t| t.to_string()).collect(),
        };
        let numbers = super::saved::SavedRunNumbers {
            last_run: self.last_run,
            failures: self.failures.iter().map(|(_, run, _)| *run).collect(),
            last: 0,
        };
        (history, numbers)
    }

    /// A stored history, packed under `layout` (this release's or an earlier one's), with its
    /// run numbers (none from a release that did not number runs); `None` if it does not hold
    /// together.
    pub(super) fn from_saved(
        saved: &super::saved::SavedHistory,
        layout: &Layout,
        numbers: &super::saved::SavedRunNumbers,
    ) -> Option<History> {
        if saved.texts.len() > TEXTS {
            return None;
        }
        let current = layout == Self::layout();
        let entries = |raw: &[[u32; 3]], bound: usize| -> Option<VecDeque<Entry>> {
            let skip = raw.len().saturating_sub(bound);
            let mut out = VecDeque::new();
            if !raw.is_empty() {
                out.reserve_exact(bound);
            }
            for [finished_unix, a, b] in raw[skip..].iter().copied() {
                // Every field must unpack to a listed value and point to a kept text.
                let packed = if current { Packed::unpack([a, b])? } else { layout.read([a, b])? };
                if usize::from(packed.text) > saved.texts.len() {
                    return None;
                }
                out.push_back(Entry { finished_unix, bits: packed.pack() });
            }
            Some(out)
        };
        let runs = entries(&saved.runs, HISTORY_RUNS)?;
        let failures = entries(&saved.failures, HISTORY_FAILURES)?;
        // Numbers of the kept failures, aligned on the newest (0: unknown); the entries' own
        // follow from the newest's, which cannot be below their count.
        let known = numbers.failures.len().min(failures.len());
        let unknown = failures.len() - known;
        let failure_runs =
            std::iter::repeat_n(0, unknown).chain(numbers.failures[numbers.failures.len() - known..].iter().copied());
        let mut failures: VecDeque<(Entry, u32, Option<Box<FailureRecord>>)> =
            failures.into_iter().zip(failure_runs).map(|(e, run)| (e, run, None)).collect();
        if !failures.is_empty() {
            failures.reserve_exact(HISTORY_FAILURES - failures.len());
        }
        Some(History {
            last_run: numbers.last_run.max(runs.len() as u32),
            entries: runs,
            failures,
            texts: saved.texts.iter().map(|t| shared(t)).collect(),
            ..History::default()
        })
    }

    /// The last `n` runs, oldest first, as a heartbeat shows them: when each finished (Unix
    /// seconds), its result and its number. No text is copied: the status page draws 50 of
    /// these for each of thousands of probes.
    pub fn beats(&self, n: usize) -> Vec<Beat> {
        let skip = self.entries.len().saturating_sub(n);
        let first = (self.last_run + 1).saturating_sub(self.entries.len() as u32);
        self.entries
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(|(i, e)| {
                let p = Packed::unpack(e.bits)?;
                Some(Beat { finished_unix: e.finished_unix, result: p.summary.result, run: first + i as u32 })
            })
            .collect()
    }

    /// When the current run of failures began: the oldest failed run after the newest success
    /// (Unix seconds), and whether it is only the oldest kept (the streak may be longer); `None`
    /// when the newest run succeeded or there is none.
    pub fn failing_since(&self) -> Option<(u64, bool)> {
        let mut since = None;
        for e in self.entries.iter().rev() {
            match Packed::unpack(e.bits) {
                Some(p) if p.summary.result == ResultClass::Success => return since.map(|t| (t, false)),
                _ => since = Some(u64::from(e.finished_unix)),
            }
        }
        since.map(|t| (t, self.entries.len() == HISTORY_RUNS))
    }

    /// Runs, newest first, their statuses in `scheme`, their ids under the probe's `key`.
    pub fn runs(&self, scheme: &'static Scheme, key: u64) -> Vec<PastRun> {
        let numbers = (0..self.entries.len() as u32).map(|back| self.last_run.saturating_sub(back));
        let mut recent = self.recent().into_iter();
        let mut runs = self.shown(self.entries.iter().rev().zip(numbers), scheme, key);
        for run in &mut runs {
            match recent.next() {
                Some((detail, steps)) => (run.detail, run.steps) = (detail, steps),
                None => break,
            }
        }
        // Older failures among them keep theirs.
        for run in runs.iter_mut().filter(|r| r.result() != ResultClass::Success) {
            let number = run.run_id.map_or(0, |id| id.run);
            if let Some((_, _, Some(record))) = self.failures.iter().rev().find(|(_, r, _)| *r == number && number > 0)
            {
                fill(run, record);
            }
        }
        runs
    }

    /// Failed runs, newest first, however many successes came after them.
    pub fn failures(&self, scheme: &'static Scheme, key: u64) -> Vec<PastRun> {
        let mut runs = self.shown(self.failures.iter().rev().map(|(e, run, _)| (e, *run)), scheme, key);
        for (run, (_, _, record)) in runs.iter_mut().zip(self.failures.iter().rev()) {
            if let Some(record) = record {
                fill(run, record);
            }
        }
        runs
    }

    fn shown<'a>(
        &self,
        entries: impl Iterator<Item = (&'a Entry, u32)>,
        scheme: &'static Scheme,
        key: u64,
    ) -> Vec<PastRun> {
        // Every kept entry unpacks (pushed by this release, or checked when restored), so the
        // rows stay aligned with the recent runs and failures their callers zip them with.
        entries
            .filter_map(|(e, run)| {
                let p = Packed::unpack(e.bits)?;
                Some(PastRun {
                    run_id: (run > 0).then_some(RunId { probe: key, run }),
                    finished_unix: u64::from(e.finished_unix),
                    summary: p.summary,
                    scheme,
                    reason_text: match p.text {
                        0 => String::new(),
                        i => self.texts.get(usize::from(i) - 1).map(|t| t.to_string()).unwrap_or_default(),
                    },
                    duration_seconds: Duration::from_micros(u64::from(p.duration_micros)).as_secs_f64(),
                    trigger: p.trigger,
                    detail: String::new(),
                    steps: Vec::new(),
                    trace: TraceNote::None,
                })
            })
            .collect()
    }
}

/// Puts what a failure kept into its row.
fn fill(run: &mut PastRun, record: &FailureRecord) {
    run.detail = record.detail.to_string();
    run.steps = record.steps.iter().filter_map(|w| StepTime::unpack(*w)).collect();
    run.trace = record.note();
}

/// How a history's entries were packed: the packing, and the names of every value of each
/// field in the order their indices count. Kept by the store beside the entries, so that a
/// release whose families declare more (or other) names still reads what an earlier one wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// 1: the release before families (32 bits of fields beside a 32-bit duration); 2: this one.
    pub packing: u8,
    /// Result names.
    pub results: Vec<String>,
    /// Reason names.
    pub reasons: Vec<String>,
    /// Step names.
    pub steps: Vec<String>,
    /// State names (index 0 of the packed field is none).
    pub states: Vec<String>,
}

impl Layout {
    /// What the store files it under: a stable hash of all it says.
    pub fn id(&self) -> u64 {
        // As the release before families wrote it (which had no packing but its own), the
        // states with none first, and the triggers.
        let mut text = if self.packing == 1 { String::new() } else { format!("packing {}|", self.packing) };
        let states: Vec<&str> = std::iter::once("").chain(self.states.iter().map(String::as_str)).collect();
        for list in [self.results.join(","), self.reasons.join(","), self.steps.join(","), states.join(",")] {
            text.push_str(&list);
            text.push('|');
        }
        text.push_str("scheduled,on_demand|");
        crate::hash::stable_hash(text.as_bytes())
    }

    /// The layout of the release before families: how its stores' histories are read.
    pub fn before_families() -> Layout {
        // Its tables, each as the release listed it.
        let names = |list: &str| list.split(',').map(str::to_owned).collect();
        Layout {
            packing: 1,
            results: names(
                "success,auth_failed,rate_limited,password_expired,pin_not_initialized,app_key_rejected,client_rejected,\
                 unexpected_step,step_limit,validation_failed,http_error,invalid_response,timeout,connect_error,tls_error,\
                 internal_error",
            ),
            reasons: names(
                "invalid_credentials,invalid_pin,invalid_verification_code,expecting_confirmation_code,corrupted_ticket,\
                 password_expired,pin_not_initialized,too_many_requests,app_key_not_defined,authorization_denied,\
                 invalid_request,invalid_client,invalid_grant,unauthorized_client,unsupported_grant_type,invalid_scope,\
                 temporarily_unavailable,bad_signature,unknown_key,expired,not_yet_valid,wrong_issuer,wrong_audience,\
                 inactive,userinfo_denied,discovery_failed,none,other",
            ),
            steps: names(
                "BaseAuthentication,SecutityPin,VerificationCode,Discovery,Token,Refresh,TokenValidation,Revocation,other",
            ),
            states: names("Succeeded,Expecting,Failed"),
        }
    }

    /// An entry packed under this (earlier) layout, its names found in this release's tables:
    /// a name no family declares any more reads as `other` (none for a state).
    fn read(&self, [a, b]: [u32; 2]) -> Option<Packed> {
        let (duration_micros, bits) = match self.packing {
            // The duration was a word of its own, the fields the next in 31 bits: status (10),
            // result (5), reason (5), step (4), text (4), state (2), trigger (1).
            1 => (a, u64::from(b)),
            _ => {
                let bits = u64::from(a) | u64::from(b) << 32;
                (get(bits, DURATION) as u32, bits >> STATUS.0)
            }
        };
        let widths: [u32; 7] = if self.packing == 1 {
            [10, 5, 5, 4, 4, 2, 1]
        } else {
            [STATUS.1, RESULT.1, REASON.1, STEP.1, TEXT.1, STATE.1, TRIGGER.1]
        };
        let mut shift = 0;
        let mut field = |i: usize| {
            let v = ((bits >> shift) & ((1 << widths[i]) - 1)) as usize;
            shift += widths[i];
            v
        };
        let (status, result, reason, step, text, state, trigger) =
            (field(0), field(1), field(2), field(3), field(4), field(5), field(6));
        fn name(list: &[String], i: usize) -> Option<&str> {
            list.get(i).map(String::as_str)
        }
        let state = match state {
            0 => None,
            i => State::from_name(name(&self.states, i - 1)?),
        };
        Some(Packed {
            duration_micros: duration_micros.min((1 << DURATION.1) - 1),
            summary: Summary {
                result: ResultClass::from_name(name(&self.results, result)?)?,
                state,
                step: Step::from_name(name(&self.steps, step)?).unwrap_or(Step::OTHER),
                reason: Reason::from_name(name(&self.reasons, reason)?).unwrap_or(Reason::OTHER),
                status: status as u16,
            },
            text: text as u8,
            trigger: if trigger == 1 { Trigger::OnDemand } else { Trigger::Scheduled },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: ResultClass, text: &str, ms: u64) -> Outcome {
        let failed = State::from_name("Failed");
        let summary = Summary { state: failed, reason: Reason::OTHER, status: 401, ..Summary::of(result, Step::OTHER) };
        Outcome {
            reason_text: text.to_owned(),
            ..Outcome::bare(summary, &crate::protocol::http::STATUS, Duration::from_millis(ms))
        }
    }

    const HTTP: &Scheme = &crate::protocol::http::STATUS;

    #[test]
    fn every_value_of_every_field_survives_packing() {
        let steps: Vec<Step> = Step::all().collect();
        let reasons: Vec<Reason> = Reason::all().collect();
        let states: Vec<Option<State>> = std::iter::once(None).chain(State::all().map(Some)).collect();
        for (i, result) in ResultClass::ALL.into_iter().enumerate() {
            let p = Packed {
                duration_micros: [0, 1, 123_456, (1 << 31) - 1][i % 4],
                summary: Summary {
                    result,
                    state: states[i % states.len()],
                    step: steps[i % steps.len()],
                    reason: reasons[(i * 7) % reasons.len()],
                    status: [0, 200, 401, 599, 999][i % 5],
                },
                text: (i % 9) as u8,
                trigger: if i % 2 == 0 { Trigger::Scheduled } else { Trigger::OnDemand },
            };
            assert_eq!(Packed::unpack(p.pack()), Some(p));
        }
        let base = Packed::unpack([0, 0]).unwrap();
        for reason in reasons {
            let p = Packed { summary: Summary { reason, ..base.summary }, ..base };
            assert_eq!(Packed::unpack(p.pack()).unwrap().summary.reason, reason);
        }
        for step in steps {
            let p = Packed { summary: Summary { step, ..base.summary }, ..base };
            assert_eq!(Packed::unpack(p.pack()).unwrap().summary.step, step);
        }
        let big = Packed { summary: Summary { status: 1234, ..base.summary }, ..base };
        assert_eq!(Packed::unpack(big.pack()).unwrap().summary.status, BEYOND_PACKED);
        let none = Packed { summary: Summary { status: u16::MAX, ..base.summary }, ..base };
        assert_eq!(Packed::unpack(none.pack()).unwrap().summary.status, u16::MAX);
        let long = Packed { duration_micros: u32::MAX, ..base };
        assert_eq!(Packed::unpack(long.pack()).unwrap().duration_micros, (1 << 31) - 1, "saturates at 35 minutes");
    }

    #[test]
    fn entries_of_the_release_before_families_read_as_they_were() {
        // That release's packing: status, result, reason, step, text, state, trigger from bit 0.
        let old = Layout::before_families();
        assert_eq!(old.id(), 0xca6d_fc9d_a399_bc6c, "the id that release's stores carry");
        let v1 = |status: u32, result: u32, reason: u32, step: u32, text: u32, state: u32, trigger: u32| {
            status | result << 10 | reason << 15 | step << 20 | text << 24 | state << 28 | trigger << 30
        };
        // 401 auth_failed invalid_pin at SecutityPin, text 1, Failed, on demand; 7.5 ms.
        let p = old.read([7_500, v1(401, 1, 1, 1, 1, 3, 1)]).unwrap();
        assert_eq!(p.duration_micros, 7_500);
        assert_eq!(p.summary.result, ResultClass::AuthFailed);
        assert_eq!((p.summary.reason.as_str(), p.summary.step.as_str()), ("invalid_pin", "SecutityPin"));
        assert_eq!((State::label(p.summary.state), p.summary.status), ("Failed", 401));
        assert_eq!((p.text, p.trigger), (1, Trigger::OnDemand));
        // Revocation and discovery_failed, which this release counts elsewhere in its tables.
        let p = old.read([1, v1(0, 10, 25, 7, 0, 0, 0)]).unwrap();
        assert_eq!((p.summary.step.as_str(), p.summary.reason.as_str()), ("Revocation", "discovery_failed"));
        assert_eq!(p.summary.state, None);
        assert!(old.read([1, v1(0, 31, 0, 0, 0, 0, 0)]).is_none(), "no 32nd result");
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
        assert!(h.runs(HTTP, 7).iter().all(|r| r.result() == ResultClass::Success));
        let failures = h.failures(HTTP, 7);
        assert_eq!(failures.len(), HISTORY_FAILURES);
        assert_eq!(failures[0].duration_seconds, 0.029, "newest first");
        assert_eq!(failures[0].reason_text, "Invalid credentials");
    }

    #[test]
    fn runs_are_numbered_and_failures_keep_their_numbers() {
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 1..=250u32 {
            let result = if i % 50 == 7 { ResultClass::AuthFailed } else { ResultClass::Success };
            assert_eq!(h.push(&outcome(result, "", 1), t0, Trigger::Scheduled), i);
        }
        let runs = h.runs(HTTP, 7);
        let ids: Vec<u32> = runs.iter().map(|r| r.run_id.unwrap().run).collect();
        assert_eq!(ids, (151..=250).rev().collect::<Vec<_>>(), "newest first, consecutive");
        assert!(runs.iter().all(|r| r.run_id.unwrap().probe == 7));
        let failed: Vec<u32> = h.failures(HTTP, 7).iter().map(|r| r.run_id.unwrap().run).collect();
        assert_eq!(failed, [207, 157, 107, 57, 7], "failures long gone from the last runs keep theirs");
        // Stored and read back: the same ids, and numbering goes on from there.
        let (saved, numbers) = h.saved();
        let mut back = History::from_saved(&saved, History::layout(), &numbers).unwrap();
        assert_eq!(back.runs(HTTP, 7), runs);
        assert_eq!(back.failures(HTTP, 7), h.failures(HTTP, 7));
        assert_eq!(back.push(&outcome(ResultClass::Success, "", 1), t0, Trigger::OnDemand), 251);
        // A history stored by a release that did not number runs: its runs are numbered from 1
        // up to the newest, its failures have no id.
        let mut old = History::from_saved(&saved, History::layout(), &Default::default()).unwrap();
        assert_eq!(old.runs(HTTP, 7)[0].run_id.unwrap().run, 100);
        assert_eq!(old.runs(HTTP, 7)[99].run_id.unwrap().run, 1);
        assert!(old.failures(HTTP, 7).iter().all(|r| r.run_id.is_none()));
        assert_eq!(old.push(&outcome(ResultClass::AuthFailed, "", 1), t0, Trigger::Scheduled), 101);
        assert_eq!(old.failures(HTTP, 7)[0].run_id.unwrap().run, 101);
    }

    #[test]
    fn heartbeats_and_the_start_of_a_failing_streak() {
        let mut h = History::default();
        assert!(h.beats(50).is_empty() && h.failing_since().is_none());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..60u64 {
            let result = if (40..45).contains(&i) || i >= 57 { ResultClass::AuthFailed } else { ResultClass::Success };
            h.push(&outcome(result, "", 1), t0 + Duration::from_secs(i), Trigger::Scheduled);
        }
        let beats = h.beats(50);
        assert_eq!(beats.len(), 50);
        assert_eq!((beats[0].run, beats[0].finished_unix), (11, 1_800_000_010), "oldest first");
        assert_eq!((beats[49].run, beats[49].result), (60, ResultClass::AuthFailed));
        assert_eq!(
            h.failing_since(),
            Some((1_800_000_057, false)),
            "the streak began at the run after the last success"
        );
        h.push(&outcome(ResultClass::Success, "", 1), t0, Trigger::Scheduled);
        assert_eq!(h.failing_since(), None);
        let mut always = History::default();
        for i in 0..150u64 {
            always.push(&outcome(ResultClass::Timeout, "", 1), t0 + Duration::from_secs(i), Trigger::Scheduled);
        }
        assert_eq!(always.failing_since(), Some((1_800_000_050, true)), "at least since the oldest kept");
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
        let runs = h.runs(HTTP, 7);
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
        assert_eq!(h.runs(HTTP, 7)[1].reason_text, "Invalid credentials");
    }

    /// A run of `steps` (name, ms) with `detail`.
    fn stepped(result: ResultClass, detail: &str, steps: &[(&str, u64)]) -> Outcome {
        let steps = steps
            .iter()
            .map(|(name, ms)| crate::protocol::StepRecord {
                step: Step::from_name(name).unwrap(),
                status: 200,
                state: None,
                duration: Duration::from_millis(*ms),
            })
            .collect();
        Outcome { detail: detail.to_owned(), steps, ..outcome(result, "", 1) }
    }

    #[test]
    fn recent_runs_keep_details_and_step_times_failures_keep_theirs_and_traces() {
        let budget = super::super::TraceBudget::new(1 << 20);
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ok = stepped(ResultClass::Success, "login succeeded", &[("BaseAuthentication", 40), ("SecutityPin", 60)]);
        let bad = stepped(
            ResultClass::AuthFailed,
            "login failed at SecutityPin",
            &[("BaseAuthentication", 40), ("SecutityPin", 7)],
        );
        for i in 1..=60u32 {
            let o = if i == 5 || i == 50 { &bad } else { &ok };
            h.push_with(o, t0, Trigger::Scheduled, || {
                Some(FailureRecord::of(o, Some(budget.keep(format!("trace of run {i}")))))
            });
        }
        assert_eq!(usize::from(h.recent_runs), RECENT_RUNS);
        assert_eq!(h.recent.len(), RECENT_RUNS * 3, "a head and two steps a run, the oldest dropped");
        assert_eq!(h.recent.capacity(), RECENT_RUNS * 3, "reserved once at the bound");
        assert_eq!(h.details.len(), 2);
        let runs = h.runs(HTTP, 7);
        assert_eq!(runs[0].detail, "login succeeded");
        let steps: Vec<(&str, f64)> = runs[0].steps.iter().map(|s| (s.step.as_str(), s.duration_seconds)).collect();
        assert_eq!(steps, [("BaseAuthentication", 0.04), ("SecutityPin", 0.06)]);
        assert_eq!(runs[0].trace, TraceNote::None);
        // Run 50 is recent; run 5 is not among the last 60 - 20 but still among the last 100.
        let fifty = &runs[10];
        assert_eq!((fifty.run_id.unwrap().run, fifty.detail.as_str()), (50, "login failed at SecutityPin"));
        assert_eq!((fifty.steps.len(), fifty.trace), (2, TraceNote::Kept));
        let five = &runs[55];
        assert_eq!(
            (five.run_id.unwrap().run, five.detail.as_str(), five.trace),
            (5, "login failed at SecutityPin", TraceNote::Kept)
        );
        assert_eq!(runs[54].detail, "", "a success older than the recent runs keeps no detail");
        assert!(runs[54].steps.is_empty());
        assert_eq!(h.trace(5).map(KeptTrace::text), Some("trace of run 5"));
        assert!(h.trace(6).is_none() && h.trace(0).is_none());
        let failures = h.failures(HTTP, 7);
        assert_eq!((failures[1].detail.as_str(), failures[1].trace), ("login failed at SecutityPin", TraceNote::Kept));
        // A failure pushed out gives its trace's bytes back.
        for _ in 0..HISTORY_FAILURES {
            h.push_with(&bad, t0, Trigger::Scheduled, || {
                Some(FailureRecord::of(&bad, Some(budget.keep("x".repeat(10)))))
            });
        }
        assert!(h.trace(5).is_none());
        assert_eq!(budget.used(), 10 * HISTORY_FAILURES);
        // A trace the budget had no room for says so; an untraced failure says nothing.
        h.push_with(&bad, t0, Trigger::Scheduled, || Some(FailureRecord::of(&bad, Some(None))));
        h.push_with(&bad, t0, Trigger::Scheduled, || Some(FailureRecord::of(&bad, None)));
        let runs = h.runs(HTTP, 7);
        assert_eq!((runs[1].trace, runs[0].trace), (TraceNote::OverBudget, TraceNote::None));
        // Stored and read back: the entries, without what only the running process keeps.
        let (saved, numbers) = h.saved();
        let back = History::from_saved(&saved, History::layout(), &numbers).unwrap();
        assert!(back
            .runs(HTTP, 7)
            .iter()
            .all(|r| r.detail.is_empty() && r.steps.is_empty() && r.trace == TraceNote::None));
        drop(h);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn step_times_saturate_and_details_are_bounded() {
        let w = StepTime::pack(Step::OTHER, Duration::from_secs(1_000));
        assert_eq!(StepTime::unpack(w).unwrap().duration_seconds, ((1u32 << STEP_MICROS) - 1) as f64 / 1e6);
        let mut h = History::default();
        let long = "é".repeat(DETAIL_BYTES);
        h.push(&stepped(ResultClass::Success, &long, &[]), UNIX_EPOCH, Trigger::Scheduled);
        let detail = &h.runs(HTTP, 1)[0].detail;
        assert!(detail.len() <= DETAIL_BYTES && detail.len() >= DETAIL_BYTES - 1, "{}", detail.len());
    }
}
