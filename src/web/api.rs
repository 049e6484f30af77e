//! `/api/v1/probes` and `/api/v1/probes/NAME`: the probes' state and history as JSON.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;

use super::AppState;
use crate::protocol::ResultClass;
use crate::results::{unix_seconds, Counts, Figures, LastRun, PastRun, ProbeResults};

/// One probe, as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProbeView {
    name: String,
    target: String,
    labels: BTreeMap<String, String>,
    schedule: String,
    /// The last run, `null` before the first.
    last: Option<LastView>,
    /// When the last success finished (Unix seconds), `null` if none since startup.
    last_success_unix: Option<f64>,
    consecutive_failures: u64,
    /// When the scheduler next starts the probe (Unix seconds), `null` if not known.
    next_run_unix: Option<f64>,
    /// The lockout guard's extra delay between runs; 0 when not backing off.
    backoff_seconds: f64,
    /// Runs by result since startup (or since the probe's target or labels last changed).
    runs: BTreeMap<&'static str, u64>,
    /// Successful scheduled runs ÷ scheduled runs over the last 1h, 24h, 7d and 30d; `null`
    /// for a window without runs.
    availability: Figures,
    /// The scheduled runs behind each figure of `availability`: how much a figure says.
    availability_runs: BTreeMap<&'static str, u64>,
    /// The last runs, newest first; only on `/api/v1/probes/NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<PastRun>>,
    /// The last failed runs, newest first, kept apart from `history`; only on
    /// `/api/v1/probes/NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    failures: Option<Vec<PastRun>>,
    /// Runs and successes per hour over the last 7 days, oldest first; only on
    /// `/api/v1/probes/NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    hours: Option<Vec<HourView>>,
}

#[derive(Debug, Serialize)]
struct HourView {
    start_unix: u64,
    #[serde(flatten)]
    counts: Counts,
}

/// The last run (and its probe's key): run_id, finished_unix, its summary (the status under its scheme's label),
/// duration_seconds, detail.
#[derive(Debug)]
struct LastView(LastRun, u64);

impl Serialize for LastView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let (l, o) = (&self.0, &*self.0.outcome);
        let mut m = s.serialize_map(Some(10))?;
        m.serialize_entry("run_id", &(l.run > 0).then_some(crate::results::RunId { probe: self.1, run: l.run }))?;
        m.serialize_entry("finished_unix", &unix_seconds(l.finished))?;
        o.summary.serialize_into(&mut m, o.scheme, &o.reason_text)?;
        m.serialize_entry("duration_seconds", &o.duration.as_secs_f64())?;
        m.serialize_entry("detail", &o.detail)?;
        m.end()
    }
}

/// The runs of each window, by the names `availability` uses.
fn window_runs(counts: [Counts; 4]) -> BTreeMap<&'static str, u64> {
    ["1h", "24h", "7d", "30d"].into_iter().zip(counts.map(|c| c.runs)).collect()
}

fn view(p: &ProbeResults, with_history: bool) -> ProbeView {
    let r = p.snapshot();
    let now = std::time::SystemTime::now();
    // One count of the windows for both the figures and the runs behind them.
    let counts = r.availability.all_counts(now);
    ProbeView {
        name: p.name.to_string(),
        target: p.target.to_string(),
        labels: p.labels.iter().cloned().collect(),
        schedule: p.schedule(),
        last: r.last.clone().map(|l| LastView(l, p.key)),
        last_success_unix: r.last_success.map(unix_seconds),
        consecutive_failures: r.consecutive_failures,
        next_run_unix: p.next_run().map(unix_seconds),
        backoff_seconds: r.backoff.as_secs_f64(),
        runs: ResultClass::ALL.iter().map(|c| (c.as_str(), r.runs_of(*c))).collect(),
        availability: Figures::of(counts),
        availability_runs: window_runs(counts),
        history: with_history.then(|| p.history()),
        failures: with_history.then(|| p.failures()),
        hours: with_history.then(|| {
            r.availability.hours(now).into_iter().map(|(start_unix, counts)| HourView { start_unix, counts }).collect()
        }),
    }
}

pub(super) async fn probes(State(state): State<AppState>) -> Json<serde_json::Value> {
    let set = state.results.probes();
    let views: Vec<ProbeView> = set.list.iter().map(|p| view(p, false)).collect();
    let shard = state.instance.shard.map(|s| serde_json::json!({ "index": s.index(), "count": s.count() }));
    let targets: Vec<serde_json::Value> = set
        .target_counts(std::time::SystemTime::now())
        .into_iter()
        .map(|(name, counts)| {
            serde_json::json!({
                "name": name,
                "availability": Figures::of(counts),
                "availability_runs": window_runs(counts),
            })
        })
        .collect();
    Json(serde_json::json!({
        "location": state.instance.location,
        "shard": shard,
        "targets": targets,
        "probes": views,
    }))
}

pub(super) async fn probe(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.results.probe(&name) {
        Some(p) => Json(view(&p, true)).into_response(),
        None => {
            // The name is echoed, bounded, inside JSON (escaped by the serialiser).
            let shown = crate::config::bounded_name(&name);
            (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("no probe named {shown:?}") })))
                .into_response()
        }
    }
}
