//! How one probe run is shown to a person: the text and JSON outputs of `authprobe probe`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::protocol::{Outcome, State, Trace};

/// One run of one probe, as printed by `authprobe probe --output json` (one object per line).
#[derive(Debug, Serialize)]
pub struct ProbeReport<'a> {
    /// Probe name.
    pub probe: &'a str,
    /// Target name.
    pub target: &'a str,
    /// Everything else: result, state, step, reason, reason_text, http_status,
    /// duration_seconds, steps, detail.
    #[serde(flatten)]
    pub outcome: &'a Outcome,
}

impl ProbeReport<'_> {
    /// A single JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// A short human summary with one line per request.
    pub fn to_text(&self) -> String {
        let o = self.outcome;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} (target {}): {} in {:.1} ms",
            self.probe,
            self.target,
            o.result,
            o.duration.as_secs_f64() * 1000.0
        );
        let _ = writeln!(
            s,
            "  state={} step={} reason={} http_status={}",
            display_or_dash(State::label(o.state)),
            o.step,
            o.reason,
            o.http_status
        );
        if !o.reason_text.is_empty() {
            let _ = writeln!(s, "  reason_text: {}", o.reason_text);
        }
        let _ = writeln!(s, "  detail: {}", o.detail);
        if let Some(l) = &o.logout {
            let _ = writeln!(s, "  logout: {} (HTTP {})", l.detail, l.http_status);
        }
        for (i, r) in o.steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {}. {:<18} -> HTTP {:<3} {:<9} {:.1} ms",
                i + 1,
                r.step.as_str(),
                r.http_status,
                display_or_dash(State::label(r.state)),
                r.duration.as_secs_f64() * 1000.0
            );
        }
        s
    }
}

impl ProbeReport<'_> {
    /// The debug output of the run: every request and answer of `trace` (secrets and tokens
    /// redacted), then the summary of [`ProbeReport::to_text`].
    pub fn to_trace(&self, trace: Option<&Trace>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Login of probe {} (target {})\n", self.probe, self.target);
        match trace {
            Some(t) => s.push_str(&t.render()),
            None => s.push_str("No trace: the run failed inside authprobe (see the error log).\n\n"),
        }
        s.push_str("Result\n");
        s.push_str(&self.to_text());
        s
    }
}

fn display_or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Logs one line for a finished run: debug for a success, warn otherwise. Bounded fields only,
/// plus the sanitised detail; never a secret or token.
pub fn log_run(probe: &str, target: &str, outcome: &Outcome) {
    // tracing needs the level at compile time, so the one field list is expanded per level.
    macro_rules! run_event {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                probe,
                target,
                result = outcome.result.as_str(),
                step = outcome.step.as_str(),
                reason = outcome.reason.as_str(),
                http_status = outcome.http_status,
                duration_seconds = outcome.duration.as_secs_f64(),
                detail = outcome.detail.as_str(),
                $message
            )
        };
    }
    if outcome.is_success() {
        run_event!(tracing::Level::DEBUG, "probe succeeded");
    } else {
        run_event!(tracing::Level::WARN, "probe failed");
    }
    if let Some(logout) = outcome.logout.as_ref().filter(|l| !l.ok) {
        tracing::warn!(
            probe,
            target,
            http_status = logout.http_status,
            detail = logout.detail.as_str(),
            "logout failed; the probe's session may stay open"
        );
    }
}
