//! The HTML pages: `/` (every probe at a glance) and `/probes/NAME` (one probe's last runs with a
//! latency sparkline). Server-rendered, no scripts, no external assets.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use crate::protocol::{ResultClass, State as LoginState, Step};
use crate::results::availability::Counts;
use crate::results::{Figures, PastRun, TraceNote};

const STYLE: &str = ":root{color-scheme:light dark;--fg:#222;--bg:#fff;--muted:#666;--line:#ddd;--ok:#17752f;--bad:#b3261e;--failrow:#fdf0ef;--warn:#a15c00;--mark:#fff7d6;--link:#1a56db;--group:#eef0f3}\
@media (prefers-color-scheme:dark){:root{--fg:#e4e4e4;--bg:#16181c;--muted:#9a9a9a;--line:#3a3d44;--ok:#4cc26a;--bad:#ff7b72;--failrow:#3a1d1d;--warn:#e3a43b;--mark:#3d3514;--link:#8ab4ff;--group:#262a31}}\
body{font-family:system-ui,sans-serif;font-size:14px;margin:1.5em 2em;color:var(--fg);background:var(--bg)}a{color:var(--link)}\
table{border-collapse:collapse}td,th{padding:.3em .55em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}\
td{white-space:nowrap}th{vertical-align:bottom}.backoff{color:var(--warn);font-weight:600}.summary span{margin-right:1.2em}\
tr.ok td.result{color:var(--ok);font-weight:600}tr.fail td.result{color:var(--bad);font-weight:600}\
tr.fail{background:var(--failrow)}tr.pending td.result{color:var(--muted)}.muted{color:var(--muted)}.bad{color:var(--bad)}\
td.avail{text-align:right;font-variant-numeric:tabular-nums}td.avail.low{color:var(--bad);font-weight:600}td.avail.thin{color:var(--muted)}\
td.why{white-space:normal;max-width:22em;overflow-wrap:anywhere}tr.group th{background:var(--group);font-weight:600}\
section.broken{border-left:4px solid var(--bad);padding:.2em 1em;margin:1em 0}section.broken.none{border-color:var(--ok)}section.broken li{margin:.3em 0;overflow-wrap:anywhere}.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}\
svg.heartbeat rect.ok{fill:var(--ok)}svg.heartbeat rect.fail{fill:var(--bad)}form.filters{margin:.8em 0}form.filters label{margin-right:1em}\
td.run{font-family:ui-monospace,monospace;font-size:12px}form.run-now{margin:0}tr:target{outline:2px solid var(--link);background:var(--mark)}\
ul.legend{list-style:none;padding:0;margin:.3em 0}ul.legend li{display:inline-block;margin-right:1em}\
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle;border-radius:2px}\
pre.trace{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--group);padding:.8em;font-size:12px}\
dl.run{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.run dt{color:var(--muted)}dl.run dd{margin:0;overflow-wrap:anywhere}";

/// One availability figure as a table cell: a percentage, red below 99 %, or a dash without runs.
fn availability_cell(figure: Option<f64>) -> String {
    match figure {
        None => "<td class=\"avail muted\">–</td>".to_owned(),
        Some(f) => {
            let low = if f < 0.99 { " low" } else { "" };
            format!("<td class=\"avail{low}\">{}</td>", super::badges::percent(f))
        }
    }
}

/// The four availability cells of `figures`.
pub(super) fn availability_cells(figures: &Figures) -> String {
    [figures.hour, figures.day, figures.week, figures.month].into_iter().map(availability_cell).collect()
}

pub(super) const AVAILABILITY_HEADERS: &str = "<th>1h</th><th>24h</th><th>7d</th><th>30d</th>";

pub(super) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// The status page's footer: a link to the documentation where it is published
/// (`--web.docs-url`), else where it is in the source tree, since no site is hosted for it.
pub(super) fn footer(docs_url: Option<&str>) -> String {
    match docs_url {
        Some(url) => format!("<footer><p class=\"muted\"><a href=\"{}\">Documentation</a></p></footer>\n", escape(url)),
        None => "<footer><p class=\"muted\">Documentation: <code>README.md</code> and <code>docs/</code> in authprobe's source tree \
                 (<code>mdbook build docs</code> renders them as a site; <code>--web.docs-url</code> links here to where it is published).</p></footer>\n"
            .to_owned(),
    }
}

/// A button that runs the probe now and shows its debug trace: a POST (a link could be
/// followed by a crawler or a prefetch), refused when it comes from another site.
pub(super) fn run_now_button(name: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/probe?probe={}&amp;debug=true\" class=\"run-now\"><button type=\"submit\" \
         title=\"runs a real login now and shows every request and answer (rate limited)\">{label}</button></form>",
        escape(name)
    )
}

/// `/probes/NAME`.
pub(super) async fn probe(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(p) = state.results.probe(&name) else {
        let shown = crate::config::bounded_name(&name);
        let body = format!("<p>No probe named <code>{}</code>. <a href=\"/\">All probes</a>.</p>\n", escape(&shown));
        return (StatusCode::NOT_FOUND, Html(page("Not found", &body))).into_response();
    };
    let runs = p.history();
    let failures = p.failures();
    let now = SystemTime::now();
    // `?run=N`, from `/runs/ID`: say so when that run is no longer kept, rather than leave the
    // reader looking for a row that is not there.
    let asked = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "run")
        .and_then(|(_, v)| v.parse::<u32>().ok());
    let gone = match asked {
        Some(n) if !super::runs::is_kept(&p, n) => format!(
            "<p class=\"backoff\">Run {} is no longer kept: a probe keeps its last {} runs and its last {} failures.</p>\n",
            p.run_id(n).map_or_else(|| n.to_string(), |id| id.to_string()),
            crate::results::HISTORY_RUNS,
            crate::results::HISTORY_FAILURES,
        ),
        _ => String::new(),
    };
    let (counts, interval, hours) =
        p.read(|r| (r.availability.all_counts(now), r.interval.as_secs_f64(), r.availability.hours(now)));
    // Each row carries its run's id, and is the anchor `/runs/ID` leads to (the exemplars'
    // link): a run's row among the last runs, or among the failures once it is no longer there.
    let mut rows = String::new();
    for run in &runs {
        let class = if run.result() == ResultClass::Success { "ok" } else { "fail" };
        run_row(&mut rows, &p.name, run, class, row_anchor(run.run_id), true);
    }
    let mut failure_rows = String::new();
    for run in &failures {
        let listed = runs.iter().any(|r| r.run_id.is_some() && r.run_id == run.run_id);
        let anchor = if listed { String::new() } else { row_anchor(run.run_id) };
        run_row(&mut failure_rows, &p.name, run, "fail kept", anchor, false);
    }
    let failures_table = if failures.is_empty() {
        "<p class=\"muted\">No failed run since startup.</p>".to_owned()
    } else {
        format!(
            "<table>\n<tr><th>Run</th><th>Finished</th><th>Result</th><th>Step</th><th>Reason</th><th>Status</th><th>What the server said</th><th>Detail</th><th>Duration</th><th>Trigger</th></tr>\n{failure_rows}</table>"
        )
    };
    let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect();
    let (account, tls) = p.read(|r| r.last.as_ref().map_or((None, None), |l| (l.outcome.account, l.outcome.tls)));
    let account = account.map_or(String::new(), account_line);
    let tls = tls.map_or(String::new(), |t| tls_line(t, now));
    let body = format!(
        "<p><a href=\"/\">All probes</a></p>\n<h1>{name}</h1>\n{gone}<p>Target {target} · {schedule}{labels} · next run {next}.</p>\n{run_now}{account}{tls}\
         <h2>Availability</h2>\n<table class=\"availability\">\n<tr>{AVAILABILITY_HEADERS}</tr>\n<tr>{figures}</tr></table>\n{hourly}\n\
         <h2>Last runs</h2>\n<p>{count} run(s) shown, newest first.</p>\n{svg}\n{steps}\n\
         <table>\n<tr><th>Run</th><th>Finished</th><th>Result</th><th>State</th><th>Step</th><th>Reason</th><th>Status</th><th>What the server said</th><th>Detail</th><th>Duration</th><th>Trigger</th></tr>\n{rows}</table>\n\
         <h2>Last failures</h2>\n{failures_table}\n\
         <p class=\"muted\">Page rendered {}.</p>\n",
        utc(now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        name = escape(&p.name),
        target = escape(&p.target),
        schedule = escape(&p.schedule()),
        run_now = if state.on_demand { run_now_button(&p.name, "Run now") } else { String::new() },
        next = {
            let mut next = p.next_run().map_or_else(|| "not scheduled yet".to_owned(), |t| until(now, t));
            let (backoff, resume) = p.read(|r| (r.backoff, r.resume_at));
            if !backoff.is_zero() && p.runs_while_held {
                // Its runs go on without the credentials (an anonymous read): say when the
                // credentials are tried again, not that nothing runs.
                let _ = write!(
                    next,
                    " <span class=\"backoff\" title=\"repeated credential failures: the lockout guard holds the credentials back; runs meanwhile check the server without them\">(credentials held back{}: runs meanwhile go without them)</span>",
                    resume
                        .and_then(|t| t.duration_since(now).ok())
                        .map_or_else(String::new, |d| format!(" for {}", human(d)))
                );
            } else if !backoff.is_zero() {
                let _ = write!(
                    next,
                    " <span class=\"backoff\" title=\"repeated credential failures: the lockout guard spaces runs out\">(backing off +{})</span>",
                    crate::duration::format(backoff)
                );
            }
            next
        },
        labels = if labels.is_empty() { String::new() } else { format!(" · {}", labels.join(", ")) },
        count = runs.len(),
        svg = sparkline(&runs),
        steps = step_chart(&runs),
        // Each window with the runs behind it, greyed while it holds few: 30 days of 100 % a minute
        // after the start says nothing yet.
        figures = counts
            .iter()
            .zip([3_600.0, 86_400.0, 7.0 * 86_400.0, 30.0 * 86_400.0])
            .map(|(c, window)| super::status::coverage_cell(*c, window, interval))
            .collect::<String>(),
        hourly = hourly_chart(&hours, &failures),
    );
    Html(page(&format!("{} · authprobe", p.name), &body)).into_response()
}

/// A run's row of `probe`'s page, with `class` and `anchor` on it; its state only `with_state`
/// (the failures' table leaves it out).
fn run_row(out: &mut String, probe: &str, run: &PastRun, class: &str, anchor: String, with_state: bool) {
    let state =
        if with_state { format!("<td>{}</td>", or_dash(LoginState::label(run.summary.state))) } else { String::new() };
    let _ = writeln!(
        out,
        "<tr class=\"{class}\"{anchor}><td class=\"run\">{}</td><td>{}</td><td class=\"result\">{}</td>{state}<td>{}</td><td>{}</td><td>{}</td><td class=\"why\">{}</td><td class=\"why\">{}</td><td>{}</td><td>{}</td></tr>",
        run_cell(probe, run.run_id),
        utc(run.finished_unix),
        run.summary.result,
        run.summary.step,
        run.summary.reason,
        run.scheme.show(run.summary.status),
        escape(&run.reason_text),
        detail_cell(probe, run),
        millis(Duration::from_secs_f64(run.duration_seconds)),
        run.trigger.as_str(),
    );
}

/// A run's detail, and a link to its trace when one is kept.
fn detail_cell(probe: &str, run: &PastRun) -> String {
    let mut cell = escape(&run.detail);
    match (run.trace, run.run_id) {
        (TraceNote::Kept, Some(id)) => {
            let _ = write!(cell, " <a class=\"trace\" href=\"/probes/{probe}/runs/{}#trace\">trace</a>", id.run);
        }
        (TraceNote::OverBudget, _) => cell.push_str(
            " <span class=\"muted\" title=\"the memory set aside for traces (--probe.failure-traces-size) was full\">(trace not kept)</span>",
        ),
        _ => {}
    }
    if cell.is_empty() {
        "–".to_owned()
    } else {
        cell
    }
}

/// The colour of the `i`th step a chart shows: distinct on light and dark backgrounds.
pub(super) fn step_colour(i: usize) -> &'static str {
    const COLOURS: [&str; 8] = ["#1f6feb", "#d97706", "#8250df", "#0f766e", "#bf3989", "#9a6700", "#6e7781", "#2da44e"];
    COLOURS[i % COLOURS.len()]
}

/// The recent runs' step times (newest first in `runs`) as stacked bars, oldest on the left,
/// with a legend: where the time of a login goes, step by step.
fn step_chart(runs: &[PastRun]) -> String {
    const W: f64 = 560.0;
    const H: f64 = 130.0;
    const LEFT: f64 = 64.0;
    const BOTTOM: f64 = 18.0;
    const TOP: f64 = 10.0;
    let shown: Vec<&PastRun> = runs.iter().filter(|r| !r.steps.is_empty()).take(crate::results::RECENT_RUNS).collect();
    if shown.is_empty() {
        return String::new();
    }
    let mut steps: Vec<Step> = Vec::new();
    for r in &shown {
        for s in &r.steps {
            if !steps.contains(&s.step) {
                steps.push(s.step);
            }
        }
    }
    let colour = |step: Step| step_colour(steps.iter().position(|s| *s == step).unwrap_or(0));
    let total = |r: &PastRun| r.steps.iter().map(|s| s.duration_seconds).sum::<f64>();
    let max = shown.iter().map(|r| total(r)).fold(0.0_f64, f64::max).max(1e-6);
    let plot_h = H - BOTTOM;
    let scale = (plot_h - TOP) / max;
    let slot = (W - LEFT) / crate::results::RECENT_RUNS as f64;
    let mut bars = String::new();
    for (i, r) in shown.iter().rev().enumerate() {
        let x = LEFT + i as f64 * slot + 1.0;
        let mut y = plot_h;
        let run = r.run_id.map_or_else(String::new, |id| format!("run {id}, "));
        let _ = write!(bars, "<g class=\"{}\">", if r.result() == ResultClass::Success { "ok" } else { "fail" });
        for s in &r.steps {
            let h = s.duration_seconds * scale;
            y -= h;
            let _ = write!(
                bars,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{run}{}: {} at {} ({})</title></rect>",
                (slot - 2.0).max(1.0),
                h.max(0.5),
                colour(s.step),
                r.result(),
                s.step,
                millis(Duration::from_secs_f64(s.duration_seconds)),
                utc(r.finished_unix),
            );
        }
        bars.push_str("</g>");
    }
    let mut axes = y_axis(LEFT, W, plot_h, TOP, max);
    let _ = write!(
        axes,
        "<text x=\"{LEFT}\" y=\"{H}\" font-size=\"11\" fill=\"currentColor\">{}</text>",
        utc(shown[shown.len() - 1].finished_unix)
    );
    let legend: String = steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("<li><span class=\"swatch\" style=\"background:{}\"></span>{s}</li>", step_colour(i)))
        .collect();
    format!(
        "<figure><svg class=\"chart steps\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"time by step of the last {n} runs, longest {longest}\">{axes}{bars}</svg>\
         <figcaption class=\"muted\">Time by step of the last {n} runs, oldest on the left; longest {longest}.</figcaption><ul class=\"legend\">{legend}</ul></figure>",
        n = shown.len(),
        longest = millis(Duration::from_secs_f64(max)),
    )
}

/// A chart's y axis from `left` to `right`: grid lines and labels at 0, half and `max` seconds,
/// 0 at `zero` and `max` at `top`.
fn y_axis(left: f64, right: f64, zero: f64, top: f64, max: f64) -> String {
    let mut axis = String::new();
    for f in [0.0, 0.5, 1.0] {
        let y = zero - f * (zero - top);
        let _ = write!(
            axis,
            "<line x1=\"{left}\" x2=\"{right}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"currentColor\" stroke-opacity=\"0.15\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"currentColor\">{}</text>",
            left - 6.0,
            y + 4.0,
            millis(Duration::from_secs_f64(max * f)),
        );
    }
    axis
}

/// ` id="run-N"` for the row of a run with an id.
fn row_anchor(id: Option<crate::results::RunId>) -> String {
    id.map_or(String::new(), |id| format!(" id=\"run-{}\"", id.run))
}

/// A run's id as its row shows it, leading to the run's page (a dash for a failure restored
/// without one).
fn run_cell(probe: &str, id: Option<crate::results::RunId>) -> String {
    id.map_or_else(|| "–".to_owned(), |id| format!("<a href=\"/probes/{probe}/runs/{}\">{id}</a>", id.run))
}

/// The target's certificate and TLS version as the last run saw them: the expiry an on-call
/// engineer checks first when a TLS login starts failing.
fn tls_line(t: crate::protocol::TlsFacts, now: SystemTime) -> String {
    let mut parts = Vec::new();
    if let Some(v) = t.version {
        parts.push(format!("TLS version {v}"));
    }
    if let Some(at) = t.cert_not_after_unix {
        let now_unix = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let days = (at - now_unix) as f64 / 86_400.0;
        let when = utc(u64::try_from(at).unwrap_or(0));
        parts.push(if days < 0.0 {
            format!("<strong class=\"bad\">the certificate chain expired {when} ({:.0} days ago)</strong>", -days)
        } else if days < 14.0 {
            format!("<strong class=\"bad\">the certificate chain expires {when}, in {days:.1} days</strong>")
        } else {
            format!("the certificate chain expires {when}, in {days:.0} days")
        });
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("<p class=\"tls\">Last run: {}.</p>\n", parts.join("; "))
}

/// What the last run learnt of the account's password, in a line: an on-call engineer's first
/// question about a directory probe.
fn account_line(a: crate::protocol::AccountFacts) -> String {
    let mut parts = Vec::new();
    if let Some(s) = a.password_expires_in_seconds {
        let days = s as f64 / 86_400.0;
        parts.push(if s < 0 {
            format!("<strong style=\"color:#b3261e\">the account's password expired {:.1} days ago</strong>", -days)
        } else {
            format!("the account's password expires in {days:.1} days")
        });
    }
    if let Some(n) = a.grace_logins_remaining {
        parts.push(format!("<strong>{n} grace login(s) left</strong> with the expired password"));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("<p class=\"account\">Last run: {}.</p>\n", parts.join("; "))
}

/// Availability per hour over the last 7 days as an inline SVG, oldest on the left: a bar per
/// hour as tall as its availability, green when every run succeeded, red otherwise and grey
/// without runs; each failed hour names (in its tooltip) the results of the failures kept.
fn hourly_chart(hours: &[(u64, Counts)], failures: &[PastRun]) -> String {
    const W: f64 = 672.0;
    const H: f64 = 48.0;
    let bar = W / hours.len().max(1) as f64;
    let mut bars = String::new();
    for (i, (start, c)) in hours.iter().enumerate() {
        let x = i as f64 * bar;
        let w = (bar - 0.6).max(0.6);
        let mut results: Vec<&str> =
            failures.iter().filter(|f| f.finished_unix / 3600 == start / 3600).map(|f| f.result().as_str()).collect();
        results.dedup();
        let why = if results.is_empty() { String::new() } else { format!(" — {}", results.join(", ")) };
        let figure = c.ratio().map_or_else(|| "no runs".to_owned(), super::badges::percent);
        let title = format!("<title>{} UTC: {figure} of {} run(s){why}</title>", utc(*start), c.runs);
        // A full-height bar: green for the share of runs that succeeded, red above it for the rest.
        let (class, shapes) = match c.ratio() {
            None => (
                "none",
                format!("<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"3\" fill=\"#ddd\"/>", H - 3.0),
            ),
            Some(r) => {
                let green = H * r;
                let class = if c.successes == c.runs { "ok" } else { "fail" };
                (
                    class,
                    format!(
                        "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"#b3261e\"/>\
                         <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{green:.1}\" fill=\"#17752f\"/>",
                        H - green,
                        H - green,
                    ),
                )
            }
        };
        let _ = write!(bars, "<g class=\"{class}\">{title}{shapes}</g>");
    }
    format!(
        "<figure><svg class=\"hourly\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"availability per hour, last 7 days\">{bars}</svg><figcaption class=\"muted\">Availability per hour, last 7 days (UTC), oldest on the left; \
         red hours had failures.</figcaption></figure>"
    )
}

/// Durations of `runs` (newest first) as a small inline SVG, oldest on the left; failed runs
/// are red dots.
fn sparkline(runs: &[PastRun]) -> String {
    // The plot, and room for the axes' labels on the left and below.
    const W: f64 = 560.0;
    const H: f64 = 110.0;
    const LEFT: f64 = 64.0;
    const BOTTOM: f64 = 18.0;
    if runs.is_empty() {
        return "<p class=\"muted\">No runs yet.</p>".to_owned();
    }
    let max = runs.iter().map(|r| r.duration_seconds).fold(0.0_f64, f64::max).max(1e-6);
    // A margin of the dots' radius keeps the first and last dot whole.
    const PAD: f64 = 3.0;
    // Room above the highest point for its label.
    const TOP: f64 = 10.0;
    let plot_h = H - BOTTOM;
    let step = if runs.len() > 1 { (W - LEFT - 2.0 * PAD) / (runs.len() - 1) as f64 } else { 0.0 };
    let point = |i: usize, r: &PastRun| {
        (LEFT + PAD + i as f64 * step, plot_h - PAD - (r.duration_seconds / max) * (plot_h - PAD - TOP))
    };
    let oldest_first: Vec<&PastRun> = runs.iter().rev().collect();
    let mut path = String::new();
    let mut dots = String::new();
    for (i, r) in oldest_first.iter().enumerate() {
        let (x, y) = point(i, r);
        let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
        if r.result() != ResultClass::Success {
            let _ = write!(
                dots,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"#b3261e\"><title>{} · {} · {}</title></circle>",
                r.result(),
                millis(Duration::from_secs_f64(r.duration_seconds)),
                utc(r.finished_unix)
            );
        }
    }
    // The y axis: 0, half and the highest duration, with grid lines; the x axis: the runs'
    // times at both ends.
    let mut axes = y_axis(LEFT, W, plot_h - PAD, TOP, max);
    let (first, last) = (oldest_first[0], oldest_first[oldest_first.len() - 1]);
    let _ = write!(
        axes,
        "<text x=\"{LEFT}\" y=\"{H}\" font-size=\"11\" fill=\"currentColor\">{}</text>\
         <text x=\"{W}\" y=\"{H}\" text-anchor=\"end\" font-size=\"11\" fill=\"currentColor\">{}</text>",
        utc(first.finished_unix),
        utc(last.finished_unix),
    );
    format!(
        "<figure><svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"login duration of the last {} runs, at most {}\">{axes}<path d=\"{path}\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\"/>{dots}</svg>\
         <figcaption class=\"muted\">Duration of the last {} runs, oldest on the left; failed runs in red; highest {}.</figcaption></figure>",
        runs.len(),
        millis(Duration::from_secs_f64(max)),
        runs.len(),
        millis(Duration::from_secs_f64(max)),
    )
}

pub(super) fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "–"
    } else {
        s
    }
}

pub(super) fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(super) fn ago(now: SystemTime, then: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(d) => format!("{} ago", human(d)),
        Err(_) => "just now".to_owned(),
    }
}

/// A duration as people say it: seconds up to a minute and a half, then minutes, hours, days.
pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    match s {
        s if s < 90.0 => format!("{s:.0} s"),
        s if s < 90.0 * 60.0 => format!("{:.0} min", s / 60.0),
        s if s < 48.0 * 3600.0 => format!("{:.0} h", s / 3600.0),
        s => format!("{:.0} days", s / 86_400.0),
    }
}

pub(super) fn until(now: SystemTime, then: SystemTime) -> String {
    match then.duration_since(now) {
        Ok(d) => format!("in {:.0} s", d.as_secs_f64().ceil()),
        Err(_) => "due now".to_owned(),
    }
}

pub(super) fn utc(unix: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(unix).unwrap_or(0), 0)
        .map_or_else(|| unix.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::results::{Results, Trigger};

    fn state(dir: &std::path::Path) -> AppState {
        let path = dir.join("probes.yaml");
        let text = "targets:\n  - {name: t, base_url: 'http://127.0.0.1:9/api', app_key: k}\n\
                    probes:\n  - {name: a, target: t, username: u, password: pw}\n  - {name: b, target: t, username: v, password: pw}\n";
        std::fs::write(&path, text).unwrap();
        let results = Arc::new(Results::new(&crate::config::Config::load(&path).unwrap().probes));
        AppState {
            metrics: Arc::new(crate::metrics::Metrics::new(results.clone()).unwrap()),
            results,
            ready: Default::default(),
            service: None,
            lifecycle: false,
            on_demand: false,
            instance: Default::default(),
            docs_url: None,
            scrapes: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// A failing run's status is named with its scheme in the "why" of its row and at the top
    /// (HTTP's beside LDAP's), a success shows none.
    #[tokio::test]
    async fn statuses_are_named_with_their_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let now = SystemTime::now();
        let http = crate::protocol::Outcome::bare(
            crate::protocol::Summary {
                status: 200,
                ..crate::protocol::Summary::of(ResultClass::Success, crate::protocol::etna::BASE_AUTHENTICATION)
            },
            &crate::protocol::http::STATUS,
            Duration::from_millis(5),
        );
        state.results.probe("a").unwrap().record_run(http, now, now, Trigger::Scheduled);
        let ldap = crate::report::tests::ldap_outcome();
        state.results.probe("b").unwrap().record_run(ldap, now, now, Trigger::Scheduled);
        let Html(page) = super::super::status::status(State(state), RawQuery(None)).await;
        assert!(page.contains("<td class=\"why\">–</td>"), "{page}");
        assert!(page.matches(" · LDAP 49").count() == 2 && !page.contains("HTTP 200"), "{page}");
    }

    /// The footer links to the documentation where `--web.docs-url` says it is published, and
    /// otherwise says where it is in the source tree.
    #[tokio::test]
    async fn the_footer_leads_to_the_documentation() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = state(dir.path());
        let Html(page) = super::super::status::status(State(state.clone()), RawQuery(None)).await;
        assert!(page.contains("<footer>") && page.contains("<code>docs/</code> in authprobe's source tree"), "{page}");
        state.docs_url = Some("https://wiki.example/authprobe/?a=1&b=\"2\"".to_owned());
        let Html(page) = super::super::status::status(State(state), RawQuery(None)).await;
        assert!(
            page.contains("<a href=\"https://wiki.example/authprobe/?a=1&amp;b=&quot;2&quot;\">Documentation</a>"),
            "{page}"
        );
    }

    /// A run id leads to its run's page while the run is kept, and to its probe's page, which
    /// says it is gone, once it is not.
    #[tokio::test]
    async fn run_ids_lead_to_their_page_or_say_the_run_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let now = SystemTime::now();
        let p = state.results.probe("a").unwrap();
        for _ in 0..130 {
            let o = crate::protocol::Outcome::bare(
                crate::protocol::Summary::of(ResultClass::Success, crate::protocol::etna::BASE_AUTHENTICATION),
                &crate::protocol::http::STATUS,
                Duration::from_millis(5),
            );
            p.record_run(o, now, now, Trigger::Scheduled);
        }
        let location = |id: crate::results::RunId| {
            let state = state.clone();
            async move {
                let r = super::super::runs::page(State(state), Path(id.to_string())).await;
                assert_eq!(r.status(), StatusCode::SEE_OTHER);
                r.headers()["location"].to_str().unwrap().to_owned()
            }
        };
        assert_eq!(location(p.run_id(130).unwrap()).await, "/probes/a/runs/130");
        assert_eq!(location(p.run_id(1).unwrap()).await, "/probes/a?run=1");
        let r = probe(State(state.clone()), Path("a".to_owned()), RawQuery(Some("run=1".to_owned()))).await;
        let body = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(&format!("Run {} is no longer kept", p.run_id(1).unwrap())), "{body}");
        let r = super::super::runs::run_page(State(state.clone()), Path(("a".to_owned(), "1".to_owned()))).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = super::super::runs::run_page(State(state), Path(("a".to_owned(), "130".to_owned()))).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}
