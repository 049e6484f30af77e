//! `/`: every probe with its last result, and links to the other endpoints.

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::Html;

use super::AppState;
use crate::protocol::{ResultClass, State as LoginState};

pub(super) async fn page(State(state): State<AppState>) -> Html<String> {
    let set = state.results.probes();
    let now = SystemTime::now();
    let mut rows = String::new();
    for p in &set.list {
        let r = p.snapshot();
        let (class, result, detail, duration, ago) = match &r.last {
            None => ("pending", "pending".to_owned(), String::new(), "–".to_owned(), "never".to_owned()),
            Some(last) => (
                if last.result == ResultClass::Success { "ok" } else { "fail" },
                last.result.as_str().to_owned(),
                format!(
                    "{} / {} / {} / HTTP {}",
                    display(LoginState::label(last.state)),
                    last.step,
                    last.reason,
                    last.http_status
                ),
                format!("{:.1} ms", last.duration.as_secs_f64() * 1000.0),
                ago(now, last.finished),
            ),
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.name),
            escape(&p.target),
            escape(&p.schedule()),
            result,
            detail,
            duration,
            ago,
            r.consecutive_failures,
        );
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>authprobe</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}
tr.ok td:nth-child(4){{color:#17752f;font-weight:600}}tr.fail td:nth-child(4){{color:#b3261e;font-weight:600}}
tr.pending td:nth-child(4){{color:#777}}
</style></head>
<body>
<h1>authprobe</h1>
<p>Synthetic monitor of the ETNA Trader <code>/token</code> login path. Version {version} ({revision}).</p>
<p><a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
<h2>Probes ({count})</h2>
<table>
<tr><th>Probe</th><th>Target</th><th>Schedule</th><th>Last result</th><th>State / Step / Reason / Status</th><th>Duration</th><th>Last run</th><th>Consecutive failures</th></tr>
{rows}</table>
</body></html>
"#,
        version = crate::VERSION,
        revision = escape(crate::REVISION),
        count = set.list.len(),
    ))
}

fn display(s: &str) -> &str {
    if s.is_empty() {
        "–"
    } else {
        s
    }
}

fn ago(now: SystemTime, then: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(d) => format!("{:.0} s ago", d.as_secs_f64()),
        Err(_) => "just now".to_owned(),
    }
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
