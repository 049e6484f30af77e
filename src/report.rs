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
    /// Everything else: result, state, step, reason, reason_text, the final status
    /// (`http_status` for HTTP families), duration_seconds, steps, detail.
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
        let (summary, scheme) = (&o.summary, o.scheme);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} (target {}): {} in {:.1} ms",
            self.probe,
            self.target,
            summary.result,
            o.duration.as_secs_f64() * 1000.0
        );
        let _ = writeln!(
            s,
            "  state={} step={} reason={} {}={}",
            display_or_dash(State::label(summary.state)),
            summary.step,
            summary.reason,
            scheme.label,
            scheme.label_value(summary.status, &mut itoa::Buffer::new())
        );
        if !o.reason_text.is_empty() {
            let _ = writeln!(s, "  reason_text: {}", o.reason_text);
        }
        let _ = writeln!(s, "  detail: {}", o.detail);
        if let Some(l) = &o.logout {
            let _ = writeln!(s, "  logout: {} ({})", l.detail, scheme.show(l.status));
        }
        for (i, r) in o.steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {}. {:<18} -> {:<8} {:<9} {:.1} ms",
                i + 1,
                r.step.as_str(),
                scheme.show(r.status),
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
/// plus the sanitised detail; never a secret or token. The status is `http_status` for HTTP
/// families, `status` (`LDAP 49`, say) for others.
pub fn log_run(probe: &str, target: &str, run_id: Option<crate::results::RunId>, outcome: &Outcome) {
    // The id that the probe's page, the API and the latency exemplars show for this run; a
    // run outside the service (`authprobe probe`) has none, and the field is left out.
    let run_id = run_id.map(|id| id.to_string());
    let run_id = run_id.as_deref();
    let s = &outcome.summary;
    let http = *outcome.scheme == crate::protocol::http::STATUS;
    // tracing needs the level and the field names at compile time, so the one field list is
    // expanded per level and status field.
    macro_rules! run_event {
        ($level:expr, $message:literal, $status:ident = $value:expr) => {
            tracing::event!(
                $level,
                probe,
                target,
                run_id,
                result = s.result.as_str(),
                step = s.step.as_str(),
                reason = s.reason.as_str(),
                $status = $value,
                duration_seconds = outcome.duration.as_secs_f64(),
                detail = outcome.detail.as_str(),
                $message
            )
        };
        ($level:expr, $message:literal) => {
            if http {
                run_event!($level, $message, http_status = s.status)
            } else {
                run_event!($level, $message, status = outcome.scheme.show(s.status).as_str())
            }
        };
    }
    if outcome.is_success() {
        run_event!(tracing::Level::DEBUG, "probe succeeded");
    } else {
        run_event!(tracing::Level::WARN, "probe failed");
    }
    if let Some(logout) = outcome.logout.as_ref().filter(|l| !l.ok) {
        let (detail, message) = (logout.detail.as_str(), "logout failed; the probe's session may stay open");
        if http {
            tracing::warn!(probe, target, http_status = logout.status, detail, "{message}");
        } else {
            tracing::warn!(probe, target, status = outcome.scheme.show(logout.status).as_str(), detail, "{message}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::{LogoutOutcome, ResultClass, Scheme, Step, StepRecord, Summary};

    /// The status codes of a family without HTTP.
    pub(crate) const LDAP: Scheme = Scheme {
        name: "LDAP",
        label: "ldap_result_code",
        metric: "authprobe_probe_ldap_result_code",
        help: "Final LDAP result code of the probe's last run.",
        no_answer: u16::MAX,
    };

    /// A run of a family whose status codes are not HTTP's: invalid credentials (49).
    pub(crate) fn ldap_outcome() -> Outcome {
        let summary = Summary { status: 49, ..Summary::of(ResultClass::AuthFailed, Step::OTHER) };
        Outcome {
            steps: vec![StepRecord { step: Step::OTHER, status: 49, state: None, duration: Duration::from_millis(3) }],
            logout: Some(LogoutOutcome { ok: false, status: 1, detail: "unbind refused".to_owned() }),
            ..Outcome::bare(summary, &LDAP, Duration::from_millis(3))
        }
    }

    #[test]
    fn a_family_without_http_is_shown_in_its_own_codes() {
        let o = ldap_outcome();
        let report = ProbeReport { probe: "p", target: "t", outcome: &o };
        let text = report.to_text();
        assert!(text.contains("reason=none ldap_result_code=49"), "{text}");
        assert!(text.contains("-> LDAP 49") && text.contains("logout: unbind refused (LDAP 1)"), "{text}");
        let json = report.to_json();
        assert!(json.contains(r#""reason_text":"","ldap_result_code":49,"duration_seconds""#), "{json}");
        assert!(json.contains(r#"{"step":"other","ldap_result_code":49,"#), "{json}");
        assert!(json.contains(r#""logout":{"ok":false,"ldap_result_code":1,"#), "{json}");
        for shown in [text, json] {
            assert!(!shown.contains("HTTP") && !shown.contains("http"), "{shown}");
        }
    }
}
