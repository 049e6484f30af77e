//! The HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, the JSON API
//! `/api/v1/probes[/NAME]`, and the HTML pages `/` and `/probes/NAME`.
//!
//! Handlers only read: the exposition from [`Metrics`], probe states from [`Results`].
//! [`server`] guards them all: connection limit, header deadline, TLS and basic authentication.

mod api;
mod auth;
mod badges;
pub mod config;
mod pages;
pub mod query;
mod runs;
pub mod server;
mod status;

pub use server::{serve, ServeOptions};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::instance::Instance;
use crate::metrics::{Format, Metrics, CONTENT_TYPE};
use crate::report::ProbeReport;
use crate::results::Results;
use crate::service::{OnDemandError, OnDemandRun, Service};

/// Default of `--web.listen-address`: every interface, port 9871.
pub const DEFAULT_LISTEN: &str = ":9871";

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The exposition.
    pub metrics: Arc<Metrics>,
    /// Probe states for the pages.
    pub results: Arc<Results>,
    /// Set once the configuration is loaded and every probe is scheduled.
    pub ready: Arc<AtomicBool>,
    /// The running service: it reloads the configuration for `POST /-/reload` and runs a probe
    /// for `GET /probe`. `None` before it runs.
    pub service: Option<Arc<Service>>,
    /// Whether `POST /-/reload` is served (`--web.enable-lifecycle`).
    pub lifecycle: bool,
    /// Whether `GET /probe` is served (not with `--web.enable-on-demand=false`).
    pub on_demand: bool,
    /// This instance's shard and location, for people.
    pub instance: Instance,
    /// Where the status page's footer links for the documentation (`--web.docs-url`); without
    /// it, the footer says where the documentation is in the source tree.
    pub docs_url: Option<String>,
    /// Scrapes of `/metrics` rendered and sent at once (`--web.max-concurrent-scrapes`); the
    /// others wait their turn. Each one in flight holds a few chunks of the exposition, so
    /// without a bound memory would grow with the number of scrapers.
    pub scrapes: Arc<tokio::sync::Semaphore>,
}

/// Default of `--web.max-concurrent-scrapes`.
pub const DEFAULT_MAX_CONCURRENT_SCRAPES: usize = 4;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// As given.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Binds `address`: `host:port`, `[v6]:port`, or `:port` for every interface (IPv6 and IPv4
/// where the host has IPv6, else IPv4 only), as Prometheus exporters accept it.
pub async fn bind(address: &str) -> Result<TcpListener, WebError> {
    let err = |source| WebError::Bind { address: address.to_owned(), source };
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "expected HOST:PORT or :PORT")))?;
        return match TcpListener::bind(SocketAddr::from(([0u16; 8], port))).await {
            Ok(l) => Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(err(e)),
            Err(_) => TcpListener::bind(SocketAddr::from(([0u8; 4], port))).await.map_err(err),
        };
    }
    TcpListener::bind(address).await.map_err(err)
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status::status))
        .route("/probes/{name}", get(pages::probe))
        .route("/probes/{name}/runs/{run}", get(runs::run_page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/probe", get(probe).post(probe))
        .route("/api/v1/probes", get(api::probes))
        .route("/api/v1/probes/{name}", get(api::probe))
        .route("/runs/{id}", get(runs::page))
        .route("/api/v1/runs/{id}", get(runs::api))
        .route("/badges/{name}/status.svg", get(badges::status))
        .route("/badges/{name}/uptime/{file}", get(badges::uptime))
        .fallback(not_found)
        .with_state(state)
}

/// Chunks rendered ahead of the socket, per scrape.
const CHUNKS_AHEAD: usize = 2;

/// `/metrics`, in the format the scraper's `Accept` asks for (see [`Format::negotiate`]).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // Held until the body is sent or the client goes away (the stream below owns it): a slow
    // reader's chunks count against the bound too. A scraper that gave up stops waiting.
    let Ok(permit) = state.scrapes.clone().acquire_owned().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    // Rendered on a blocking thread, a little ahead of the socket: a large exposition (300 MB at
    // 50,000 probes) holds no async worker, and its rendering overlaps its sending instead of
    // waiting for the socket between chunks.
    let (chunks, rendered) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(CHUNKS_AHEAD);
    let metrics = state.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for chunk in metrics.render(format) {
                if chunks.blocking_send(Ok(chunk)).is_err() {
                    return; // the client went away
                }
            }
        }));
        if finished.is_err() {
            // An error item aborts the response, so a cut exposition is never taken as whole.
            let _ = chunks.blocking_send(Err(std::io::Error::other("rendering the exposition failed")));
        }
    });
    let body = futures_util::stream::unfold((rendered, permit), |(mut rendered, permit)| async move {
        rendered.recv().await.map(|chunk| (chunk, (rendered, permit)))
    });
    // Caches must not hand one format's body to a scraper that asked for the other.
    ([(header::CONTENT_TYPE, format.content_type()), (header::VARY, "Accept")], Body::from_stream(body)).into_response()
}

async fn healthy() -> &'static str {
    "authprobe is healthy.\n"
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "authprobe is ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "authprobe is not ready: probes are not scheduled yet.\n")
    }
}

async fn reload(State(state): State<AppState>) -> (StatusCode, String) {
    if !state.lifecycle {
        return (
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled: start authprobe with --web.enable-lifecycle\n".to_owned(),
        );
    }
    let Some(service) = &state.service else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "not started yet\n".to_owned());
    };
    match service.reload().await {
        Ok(probes) => (StatusCode::OK, format!("configuration reloaded: {probes} probe(s)\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// Why a request comes from another site: a page elsewhere that makes the browser of someone
/// who can reach authprobe run a real login (a login that may lock a real account). Scripts and
/// Prometheus send neither header; a browser sends `Sec-Fetch-Site` on every request and
/// `Origin` on every POST and cross-site request.
fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        return Some("Sec-Fetch-Site: cross-site");
    }
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    // "null" is what a sandboxed frame or a redirect across origins sends: not ours either.
    // Behind a reverse proxy that rewrites Host, the host the browser used is X-Forwarded-Host.
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let ours = [header::HOST.as_str(), "x-forwarded-host"].into_iter().any(|name| {
        headers.get(name).and_then(|h| h.to_str().ok()).is_some_and(|h| h.trim().eq_ignore_ascii_case(origin_host))
    });
    (origin == "null" || !ours).then_some("an Origin of another site")
}

async fn probe(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let text = |status: StatusCode, body: String| (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body);
    if !state.on_demand {
        return text(
            StatusCode::FORBIDDEN,
            "on-demand probing is disabled (--web.enable-on-demand=false)\n".to_owned(),
        )
        .into_response();
    }
    if let Some(why) = cross_site(&headers) {
        return text(
            StatusCode::FORBIDDEN,
            format!("refused: a cross-site request ({why}) may not start a login; open authprobe's own page, or call it from a script\n"),
        )
        .into_response();
    }
    let (name, debug) = match query::parse_probe_query(query.as_deref()) {
        Ok(r) => (r.probe, r.debug),
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let ran = match &state.service {
        Some(service) => service.run_now(&name, debug).await,
        None => Err(OnDemandError::Unknown(name)),
    };
    match ran {
        Ok(OnDemandRun { outcome, trace, probe }) if debug => {
            let report = ProbeReport { probe: &probe.name, target: &probe.target, outcome: &outcome };
            text(StatusCode::OK, report.to_trace(trace.as_ref())).into_response()
        }
        Ok(OnDemandRun { outcome, probe, .. }) => {
            ([(header::CONTENT_TYPE, CONTENT_TYPE)], crate::metrics::render_run(&probe, &outcome)).into_response()
        }
        Err(e @ OnDemandError::Unknown(_)) => text(StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(e @ OnDemandError::TooSoon { retry_after, .. }) => {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let mut r = text(StatusCode::TOO_MANY_REQUESTS, format!("{e}\n")).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, seconds.max(1).into());
            r
        }
    }
}

async fn not_found() -> (StatusCode, Html<&'static str>) {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Not found</title><p>Not found. Endpoints are listed on <a href=\"/\">the start page</a>.</p>\n"),
    )
}
