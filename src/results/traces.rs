//! The traces failed runs keep, under one budget for the whole process: a trace is a few
//! kilobytes, and 10,000 failing probes × 20 failures of them would be gigabytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The budget's default: 32 MiB, some 16,000 traces of a typical failed login.
pub const DEFAULT_TRACE_BUDGET: usize = 32 << 20;

/// How much of one rendered trace is kept: enough for every request and answer of a multi-step
/// login, each body already cut at [`crate::protocol::trace::BODY_SHOWN_BYTES`].
pub const TRACE_KEPT_BYTES: usize = 16 << 10;

/// The bytes all kept traces may hold together, and what they hold now.
#[derive(Debug)]
pub struct TraceBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl TraceBudget {
    /// A budget of `limit` bytes; 0 keeps no trace (and runs are not traced for it).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(TraceBudget { limit: AtomicUsize::new(limit), used: AtomicUsize::new(0) })
    }

    /// Sets the limit: traces kept beyond it stay until their failures are pushed out.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Whether traces are kept at all.
    pub fn enabled(&self) -> bool {
        self.limit.load(Ordering::Relaxed) > 0
    }

    /// The bytes kept traces hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Keeps `text` (capped at [`TRACE_KEPT_BYTES`]) if the budget has room for it.
    pub fn keep(self: &Arc<Self>, mut text: String) -> Option<KeptTrace> {
        if text.len() > TRACE_KEPT_BYTES {
            let more = text.len() - TRACE_KEPT_BYTES;
            let mut cut = TRACE_KEPT_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(&format!("\n… ({more} more bytes of this trace not kept)\n"));
        }
        let size = text.len();
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used + size <= limit).then_some(used + size))
            .ok()?;
        Some(KeptTrace { text: text.into_boxed_str(), budget: self.clone() })
    }
}

/// A rendered, redacted trace held against the budget until it is dropped.
pub struct KeptTrace {
    text: Box<str>,
    budget: Arc<TraceBudget>,
}

impl KeptTrace {
    /// The trace as [`crate::protocol::Trace::render`] wrote it (secrets already redacted).
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for KeptTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Redacted, but still server input: a debug print shows its size only.
        f.debug_struct("KeptTrace").field("bytes", &self.text.len()).finish()
    }
}

impl Drop for KeptTrace {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.text.len(), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_capped_and_held_against_the_budget_until_dropped() {
        let budget = TraceBudget::new(40_000);
        let long = "é".repeat(TRACE_KEPT_BYTES); // 2 bytes a character: cut inside one
        let a = budget.keep(long).expect("room");
        assert!(a.text().len() < TRACE_KEPT_BYTES + 64, "{}", a.text().len());
        assert!(a.text().ends_with(&format!("({} more bytes of this trace not kept)\n", TRACE_KEPT_BYTES)));
        let b = budget.keep("x".repeat(16_000)).expect("room");
        assert!(budget.keep("y".repeat(8_000)).is_none(), "no room left");
        assert_eq!(budget.used(), a.text().len() + b.text().len());
        drop(a);
        let c = budget.keep("y".repeat(8_000)).expect("room again");
        drop((b, c));
        assert_eq!(budget.used(), 0);
        let off = TraceBudget::new(0);
        assert!(!off.enabled() && off.keep("z".to_owned()).is_none());
        assert_eq!(format!("{:?}", budget.keep("secret-ish".to_owned()).unwrap()), "KeptTrace { bytes: 10 }");
    }
}
