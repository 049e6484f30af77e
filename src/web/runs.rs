//! `/runs/ID` and `/api/v1/runs/ID`: where a run id leads (an exemplar's link from a latency
//! panel, an id from a log line). The id names its probe by a key (see
//! [`crate::results::run_id`]), so one link works whatever the probe is called.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json, Response};

use super::AppState;
use crate::results::{PastRun, ProbeResults, RunId};

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

/// `/runs/ID`: to the run's row on its probe's page.
pub(super) async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match lookup(&state, &id) {
        Ok((id, probe)) => {
            // Names are letters, digits, '_', '-' and '.' (see config): a path segment as they are.
            let to = format!("/probes/{}?run={}#run-{}", probe.name, id.run, id.run);
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
            Some(run) => Json(serde_json::json!({ "probe": &*probe.name, "run": run })).into_response(),
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

/// Whether the probe keeps run number `n`: the probe page's notice when a link's run is gone.
pub(super) fn is_kept(probe: &ProbeResults, n: u32) -> bool {
    kept(probe, n).is_some()
}
