//! Shields-style SVG badges for READMEs and wikis: `/badges/NAME/uptime/{1h,24h,7d,30d}.svg`
//! (availability over the window) and `/badges/NAME/status.svg` (the last result). Unknown
//! probes and windows are 404s; like every endpoint, they sit behind `--web.config.file`.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::protocol::ResultClass;

/// Colours of shields.io, by how good the figure is.
const GREEN: &str = "#4c1";
const YELLOW_GREEN: &str = "#a4a61d";
const YELLOW: &str = "#dfb317";
const ORANGE: &str = "#fe7d37";
const RED: &str = "#e05d44";
const GREY: &str = "#9f9f9f";

/// `/badges/NAME/uptime/WINDOW.svg`.
pub(super) async fn uptime(State(state): State<AppState>, Path((name, file)): Path<(String, String)>) -> Response {
    let Some(probe) = state.results.probe(&name) else { return not_found() };
    let Some(window) = file.strip_suffix(".svg") else { return not_found() };
    let figures = probe.read(|r| r.availability_at(SystemTime::now()));
    let Some(figure) = figures.get(window) else { return not_found() };
    let (value, colour) = match figure {
        None => ("no runs".to_owned(), GREY),
        Some(f) => (percent(f), colour_of(f)),
    };
    svg(&format!("uptime {window}"), &value, colour)
}

/// `/badges/NAME/status.svg`.
pub(super) async fn status(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(probe) = state.results.probe(&name) else { return not_found() };
    let (value, colour) = probe.read(|r| match &r.last {
        None => ("pending", GREY),
        Some(l) if l.result() == ResultClass::Success => ("success", GREEN),
        Some(l) => (l.result().as_str(), RED),
    });
    svg("login", value, colour)
}

/// A figure as a badge shows it: 100 %, 99.95 %, 87.3 %.
pub(super) fn percent(f: f64) -> String {
    let p = f * 100.0;
    if f >= 1.0 {
        "100%".to_owned()
    } else if p >= 99.0 {
        // Two decimals, never rounded up to a 100 % the window did not have.
        format!("{:.2}%", (p * 100.0).floor() / 100.0)
    } else {
        format!("{:.1}%", (p * 10.0).floor() / 10.0)
    }
}

fn colour_of(f: f64) -> &'static str {
    match f {
        f if f >= 0.999 => GREEN,
        f if f >= 0.99 => YELLOW_GREEN,
        f if f >= 0.95 => YELLOW,
        f if f >= 0.9 => ORANGE,
        _ => RED,
    }
}

/// Text width in Verdana 11px, roughly: shields' badges are sized the same way.
fn width(text: &str) -> u32 {
    text.chars().map(|c| if c.is_ascii_uppercase() || c == '%' || c == 'm' || c == 'w' { 9 } else { 7 }).sum::<u32>()
        + 10
}

fn svg(label: &str, value: &str, colour: &str) -> Response {
    let (lw, vw) = (width(label), width(value));
    let total = lw + vw;
    let body = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" aria-label=\"{label}: {value}\">\
<title>{label}: {value}</title>\
<linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#bbb\" stop-opacity=\".1\"/><stop offset=\"1\" stop-opacity=\".1\"/></linearGradient>\
<clipPath id=\"r\"><rect width=\"{total}\" height=\"20\" rx=\"3\" fill=\"#fff\"/></clipPath>\
<g clip-path=\"url(#r)\"><rect width=\"{lw}\" height=\"20\" fill=\"#555\"/><rect x=\"{lw}\" width=\"{vw}\" height=\"20\" fill=\"{colour}\"/>\
<rect width=\"{total}\" height=\"20\" fill=\"url(#s)\"/></g>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,Geneva,DejaVu Sans,sans-serif\" font-size=\"11\">\
<text x=\"{lx}\" y=\"15\" fill=\"#010101\" fill-opacity=\".3\">{label}</text><text x=\"{lx}\" y=\"14\">{label}</text>\
<text x=\"{vx}\" y=\"15\" fill=\"#010101\" fill-opacity=\".3\">{value}</text><text x=\"{vx}\" y=\"14\">{value}</text></g></svg>\n",
        lx = lw / 2,
        vx = lw + vw / 2,
    );
    ([(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"), (header::CACHE_CONTROL, "max-age=60")], body)
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such badge\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_never_round_up_to_a_perfect_window() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.99999), "99.99%");
        assert_eq!(percent(0.9995), "99.95%");
        assert_eq!(percent(0.8738), "87.3%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!((colour_of(0.9995), colour_of(0.995), colour_of(0.5)), (GREEN, YELLOW_GREEN, RED));
    }
}
