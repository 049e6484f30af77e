//! `/runs/ID` and `/api/v1/runs/ID`: where a run id leads (an exemplar's link from a latency
//! panel, an id from a log line). The id names its probe by a key (see
//! [`crate::results::run_id`]), so one link works whatever the probe is called. And
//! `/probes/NAME/runs/N`, a run's own page: what it did, step by step, and for a failure what
//! the server said at the time (its trace).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use std::fmt::Write as _;
use std::time::Duration;

use super::pages::{escape, millis, or_dash, page as html_page, step_colour, utc};
use super::AppState;
use crate::protocol::State as LoginState;
use crate::results::{PastRun, ProbeResults, RunId, TraceNote};

/// Why an id leads nowhere: a message for the person who followed it.
fn lookup(state: &AppState, id: &str) -> Result<(RunId, Arc<ProbeResults>), (StatusCode, String)> {
    let id: RunId =
        id.parse().map_err(|e| (StatusCode::BAD_REQUEST, format!("{:?}: {e}", crate::config::bounded_name(id))))?;
    let set = state.results.probes();
    let probe = set.list.iter().find(|p| p.key == id.probe).cloned().ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!(
                "no probe of this authprobe made run {id}: the probe may have been renamed or removed, or belong to another instance (shard)"
            ),
        )
    })?;
    if id.run > probe.last_run_number() {
        return Err((StatusCode::NOT_FOUND, format!("probe {:?} has not made run {id} yet", &*probe.name)));
    }
    Ok((id, probe))
}

/// The run numbered `n` among the probe's kept runs and failures.
fn kept(probe: &ProbeResults, n: u32) -> Option<PastRun> {
    let wanted = |r: &PastRun| r.run_id.is_some_and(|id| id.run == n);
    probe.history().into_iter().find(wanted).or_else(|| probe.failures().into_iter().find(wanted))
}

/// `/runs/ID`: to the run's page.
pub(super) async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match lookup(&state, &id) {
        Ok((id, probe)) => {
            // The run's own page; a run no longer kept, to its probe's page, which says so.
            // Names are letters, digits, '_', '-' and '.' (see config): a path segment as they are.
            let to = if is_kept(&probe, id.run) {
                format!("/probes/{}/runs/{}", probe.name, id.run)
            } else {
                format!("/probes/{}?run={}", probe.name, id.run)
            };
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
        Err((status, message)) => {
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message + "\n").into_response()
        }
    }
}

/// `/api/v1/runs/ID`: the run as the probe's history shows it, with the probe's name.
pub(super) async fn api(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let error =
        |status: StatusCode, message: String| (status, Json(serde_json::json!({ "error": message }))).into_response();
    match lookup(&state, &id) {
        Ok((id, probe)) => match kept(&probe, id.run) {
            Some(run) => {
                // The trace, redacted when it was kept, as `authprobe probe --output trace` prints one.
                let trace = probe.trace(id.run);
                Json(serde_json::json!({ "probe": &*probe.name, "run": run, "trace": trace })).into_response()
            }
            None => error(
                StatusCode::NOT_FOUND,
                format!(
                    "run {id} of probe {:?} is no longer kept (the last runs and the last failures are)",
                    &*probe.name
                ),
            ),
        },
        Err((status, message)) => error(status, message),
    }
}

/// `/probes/NAME/runs/N`: one run, its steps and its trace.
pub(super) async fn run_page(State(state): State<AppState>, Path((name, n)): Path<(String, String)>) -> Response {
    let not_found = |message: String| {
        let body = format!("<p>{}. <a href=\"/\">All probes</a>.</p>\n", escape(&message));
        (StatusCode::NOT_FOUND, Html(html_page("Not found", &body))).into_response()
    };
    let Some(probe) = state.results.probe(&name) else {
        return not_found(format!("No probe named {:?}", crate::config::bounded_name(&name)));
    };
    let Some(run) = n.parse::<u32>().ok().and_then(|n| kept(&probe, n)) else {
        return not_found(format!(
            "Probe {} keeps no run {:?}: it keeps its last {} runs and its last {} failures",
            probe.name,
            crate::config::bounded_name(&n),
            crate::results::HISTORY_RUNS,
            crate::results::HISTORY_FAILURES
        ));
    };
    let id = run.run_id.map_or_else(String::new, |id| id.to_string());
    let number = run.run_id.map_or(0, |id| id.run);
    let mut body = format!(
        "<p><a href=\"/probes/{name}#run-{number}\">{name}</a> · <a href=\"/\">All probes</a></p>\n<h1>Run {id} of {name}</h1>\n<dl class=\"run\">",
        name = escape(&probe.name),
    );
    let fields: [(&str, String); 10] = [
        ("Finished", utc(run.finished_unix)),
        ("Result", run.result().to_string()),
        ("State", or_dash(LoginState::label(run.summary.state)).to_owned()),
        ("Step", run.summary.step.to_string()),
        ("Reason", run.summary.reason.to_string()),
        ("Status", run.scheme.show(run.summary.status)),
        ("What the server said", or_dash(&run.reason_text).to_owned()),
        ("Detail", or_dash(&run.detail).to_owned()),
        ("Duration", millis(Duration::from_secs_f64(run.duration_seconds))),
        ("Trigger", run.trigger.as_str().to_owned()),
    ];
    for (term, value) in fields {
        let _ = write!(body, "<dt>{term}</dt><dd>{}</dd>", escape(&value));
    }
    body.push_str("</dl>\n<h2>Steps</h2>\n");
    if run.steps.is_empty() {
        body.push_str("<p class=\"muted\">Not kept: a probe keeps the steps of its last runs and of its failures while it runs.</p>\n");
    } else {
        let total = run.steps.iter().map(|s| s.duration_seconds).sum::<f64>().max(1e-9);
        body.push_str("<table>\n<tr><th>#</th><th>Step</th><th>Duration</th><th>Share</th></tr>\n");
        let mut seen: Vec<crate::protocol::Step> = Vec::new();
        for (i, s) in run.steps.iter().enumerate() {
            if !seen.contains(&s.step) {
                seen.push(s.step);
            }
            let share = s.duration_seconds / total;
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{:.0} %</td></tr>",
                i + 1,
                step_colour(seen.iter().position(|x| *x == s.step).unwrap_or(0)),
                s.step,
                millis(Duration::from_secs_f64(s.duration_seconds)),
                share * 100.0
            );
        }
        body.push_str("</table>\n");
    }
    body.push_str("<h2 id=\"trace\">Trace</h2>\n");
    match (run.trace, probe.trace(number)) {
        (TraceNote::Kept, Some(trace)) => {
            let _ = write!(
                body,
                "<p class=\"muted\">What authprobe sent and the server answered, as recorded during the run; credentials and tokens are replaced by &lt;redacted&gt;.</p>\n<pre class=\"trace\">{}</pre>\n",
                escape(&trace)
            );
        }
        (TraceNote::OverBudget, _) => body.push_str(
            "<p class=\"muted\">Recorded but not kept: the memory set aside for traces (<code>--probe.failure-traces-size</code>) was full.</p>\n",
        ),
        _ if run.result() == crate::protocol::ResultClass::Success => {
            body.push_str("<p class=\"muted\">None: traces are kept for failed runs.</p>\n")
        }
        _ => body.push_str(
            "<p class=\"muted\">None: this run was not traced (traces are off, the run was made while the lockout guard held the credentials back, or it was restored after a restart, which keeps no trace).</p>\n",
        ),
    }
    if !id.is_empty() {
        let _ = writeln!(body, "<p class=\"muted\">As JSON: <a href=\"/api/v1/runs/{id}\">/api/v1/runs/{id}</a>.</p>");
    }
    Html(html_page(&format!("Run {id} of {} · authprobe", probe.name), &body)).into_response()
}

/// Whether the probe keeps run number `n`: the probe page's notice when a link's run is gone.
pub(super) fn is_kept(probe: &ProbeResults, n: u32) -> bool {
    kept(probe, n).is_some()
}
