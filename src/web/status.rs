//! `/`, the status page, as an on-call engineer reads it: what is broken and since when first,
//! then every probe grouped by target in a table that fits 1200 px (why, duration, last success,
//! availability over 24 hours with the runs behind it, a heartbeat of the last 50 runs), filtered
//! by the URL so that a link can be shared, refreshed in place every 15 seconds.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{RawQuery, State};
use axum::response::Html;

use super::pages::{ago, escape, millis, page, run_now_button, utc, AVAILABILITY_HEADERS};
use super::AppState;
use crate::protocol::ResultClass;
use crate::results::availability::Counts;
use crate::results::{Beat, ProbeResults};

/// Runs in a heartbeat bar.
pub const HEARTBEAT_RUNS: usize = 50;

/// Probes listed per page of the table: a page of 10,000 probes stays small (each row's
/// heartbeat is some 4 KB).
pub const PAGE_ROWS: usize = 200;

/// Failing probes named at the top; the rest are a filter away.
const BROKEN_SHOWN: usize = 50;

/// What the URL asks to see: `label=team=brokers` (repeatable), `family=ldap`, `failing=1`,
/// `page=2`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    labels: Vec<(String, String)>,
    family: Option<String>,
    failing: bool,
    page: usize,
}

impl Filter {
    /// The filter of a query string; what it cannot read is ignored (a page must render).
    pub fn parse(query: Option<&str>) -> Filter {
        let mut f = Filter::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "label" => {
                    if let Some((name, value)) = v.split_once('=') {
                        f.labels.push((name.trim().to_owned(), value.trim().to_owned()));
                    }
                }
                "family" if !v.is_empty() => f.family = Some(v.into_owned()),
                "failing" => f.failing = matches!(v.as_ref(), "1" | "true" | "on"),
                "page" => f.page = v.parse::<usize>().unwrap_or(1).saturating_sub(1),
                _ => {}
            }
        }
        f
    }

    fn admits(&self, p: &ProbeResults, failing: bool) -> bool {
        (!self.failing || failing)
            && self.family.as_deref().is_none_or(|f| f == p.kind.name())
            && self.labels.iter().all(|(k, v)| p.labels.iter().any(|(pk, pv)| pk == k && pv == v))
    }

    /// The query string of this filter on page `page` (0-based).
    fn query(&self, page: usize) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.labels {
            q.append_pair("label", &format!("{k}={v}"));
        }
        if let Some(f) = &self.family {
            q.append_pair("family", f);
        }
        if self.failing {
            q.append_pair("failing", "1");
        }
        if page > 0 {
            q.append_pair("page", &(page + 1).to_string());
        }
        q.finish()
    }
}

/// What a row shows of a probe, taken under its lock.
struct Row {
    probe: Arc<ProbeResults>,
    /// `ok`, `fail` or `pending`.
    class: &'static str,
    result: &'static str,
    why: String,
    duration: String,
    last_success: Option<SystemTime>,
    day: Counts,
    interval_secs: f64,
    beats: Vec<Beat>,
}

/// `/`.
pub(super) async fn status(State(state): State<AppState>, RawQuery(query): RawQuery) -> Html<String> {
    let filter = Filter::parse(query.as_deref());
    let set = state.results.probes();
    let now = SystemTime::now();
    let reload = state.results.reload_status();
    let mut counts = [0usize; 3];
    let mut sums = crate::results::TargetSums::default();
    let mut broken = Vec::new();
    let mut rows = Vec::new();
    for p in &set.list {
        let (class, result, why, duration, last_success, own, interval_secs) = p.read(|r| {
            let (class, result, why, duration) = match &r.last {
                None => ("pending", "not run yet", String::new(), "–".to_owned()),
                Some(last) => {
                    let s = last.summary();
                    let ok = s.result == ResultClass::Success;
                    let why = if ok {
                        String::new()
                    } else {
                        format!("{} · {} · {}", s.step, s.reason, last.outcome.scheme.show(s.status))
                    };
                    (if ok { "ok" } else { "fail" }, s.result.as_str(), why, millis(last.duration()))
                }
            };
            (class, result, why, duration, r.last_success, r.availability.all_counts(now), r.interval.as_secs_f64())
        });
        counts[match class {
            "ok" => 0,
            "fail" => 1,
            _ => 2,
        }] += 1;
        sums.add(&p.target, own);
        if class == "fail" {
            broken.push(p.clone());
        }
        if filter.admits(p, class == "fail") {
            rows.push(Row {
                probe: p.clone(),
                class,
                result,
                why,
                duration,
                last_success,
                day: own[1],
                interval_secs,
                beats: Vec::new(),
            });
        }
    }
    // Grouped by target (in the order targets first appear), then by probe as configured.
    // Each target's place, looked up rather than searched for: 10,000 probes over as many
    // targets would otherwise be a quadratic sort.
    let mut order: std::collections::HashMap<Arc<str>, usize> = std::collections::HashMap::new();
    for r in &rows {
        let next = order.len();
        order.entry(r.probe.target.clone()).or_insert(next);
    }
    rows.sort_by_key(|r| order[&r.probe.target]);
    let shown = rows.len();
    let pages = shown.div_ceil(PAGE_ROWS).max(1);
    let page_no = filter.page.min(pages - 1);
    let mut rows: Vec<Row> = rows.into_iter().skip(page_no * PAGE_ROWS).take(PAGE_ROWS).collect();
    for r in &mut rows {
        r.beats = r.probe.beats(HEARTBEAT_RUNS);
    }

    let mut body = String::new();
    let mut whereabouts = String::new();
    if let Some(location) = &state.instance.location {
        let _ = write!(whereabouts, " Location <strong>{}</strong>.", escape(location));
    }
    if let Some(shard) = state.instance.shard {
        let _ = write!(whereabouts, " Running {shard} of the configured probes.");
    }
    let reload_text = if reload.successful {
        format!("configuration loaded {}", ago(now, reload.last_success))
    } else {
        format!(
            "<strong class=\"bad\">the last configuration reload failed</strong>; running the configuration loaded {} (see the log)",
            ago(now, reload.last_success)
        )
    };
    let _ = write!(
        body,
        "<header><h1>authprobe</h1>\n<p class=\"muted\">Synthetic monitor of login paths: ETNA Trader <code>/token</code>, OAuth 2.0 token endpoints and login pages, LDAP directories. \
         Version {} ({}); {reload_text}.{whereabouts} Refreshes every 15 s.</p>\n\
         <nav><a href=\"/metrics\">Metrics</a> · <a href=\"/api/v1/probes\">JSON</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></nav></header>\n<main>\n",
        crate::VERSION,
        escape(crate::REVISION),
    );
    broken_section(&mut body, &broken, set.list.len(), now);
    let _ = write!(
        body,
        "<h2>Probes ({})</h2>\n<p class=\"summary\"><span>{} succeeding</span><span>{} failing</span><span>{} not run yet</span></p>\n",
        set.list.len(),
        counts[0],
        counts[1],
        counts[2],
    );
    filter_form(&mut body, &filter);
    if filter != Filter::default() || pages > 1 {
        let _ = writeln!(
            body,
            "<p class=\"muted\">{shown} of {} probes match{}.</p>",
            set.list.len(),
            if pages > 1 { format!("; page {} of {pages}", page_no + 1) } else { String::new() }
        );
    }
    body.push_str(
        "<table class=\"probes\">\n<thead><tr><th>Probe</th><th>Result</th><th>Why</th><th>Duration</th><th>Last success</th>\
         <th title=\"successful scheduled runs ÷ scheduled runs over the last 24 hours\">24h</th><th>Last 50 runs</th><th><span class=\"sr\">Run now</span></th></tr></thead>\n",
    );
    // Each target's sums, counted once: its day for the group rows, every window for the Targets
    // table.
    let target_counts = sums.counts();
    let day_sums: std::collections::HashMap<&str, Counts> =
        target_counts.iter().map(|(t, c)| (t.as_str(), c[1])).collect();
    let mut current: Option<&str> = None;
    for r in &rows {
        if current != Some(&*r.probe.target) {
            if current.is_some() {
                body.push_str("</tbody>\n");
            }
            current = Some(&r.probe.target);
            let day = day_sums.get(&*r.probe.target).copied().unwrap_or_default();
            let _ = writeln!(
                body,
                "<tbody><tr class=\"group\" data-target=\"{name}\"><th colspan=\"8\">{name} <span class=\"muted\">{family} · 24h {}</span></th></tr>",
                day.ratio().map_or_else(|| "no runs".to_owned(), super::badges::percent),
                name = escape(&r.probe.target),
                family = r.probe.kind.name(),
            );
        }
        row(&mut body, r, now, state.on_demand);
    }
    if current.is_some() {
        body.push_str("</tbody>\n");
    }
    body.push_str("</table>\n");
    if pages > 1 {
        body.push_str("<nav class=\"pages\">");
        for i in 0..pages {
            if i == page_no {
                let _ = write!(body, "<strong>{}</strong> ", i + 1);
            } else {
                let _ = write!(body, "<a href=\"/?{}\">{}</a> ", escape(&filter.query(i)), i + 1);
            }
        }
        body.push_str("</nav>\n");
    }
    let mut targets = String::new();
    for (target, counts) in &target_counts {
        let _ = writeln!(
            targets,
            "<tr data-target=\"{name}\"><td>{name}</td>{}</tr>",
            super::pages::availability_cells(&crate::results::Figures::of(*counts)),
            name = escape(target)
        );
    }
    let _ = write!(
        body,
        "<h2>Targets</h2>\n<p class=\"muted\">Availability: successful scheduled runs ÷ scheduled runs of the target's probes, over the last hour, day, week and month.</p>\n\
         <table>\n<tr><th>Target</th>{AVAILABILITY_HEADERS}</tr>\n{targets}</table>\n</main>\n{}{REFRESH}",
        super::pages::footer(state.docs_url.as_deref()),
    );
    Html(page("authprobe", &body))
}

/// The failing probes, named before anything else: what, where it failed and since when.
fn broken_section(body: &mut String, broken: &[Arc<ProbeResults>], total: usize, now: SystemTime) {
    if broken.is_empty() {
        let _ =
            writeln!(body, "<section class=\"broken none\"><p>No probe is failing ({total} configured).</p></section>");
        return;
    }
    let _ = writeln!(
        body,
        "<section class=\"broken\" aria-labelledby=\"failing\"><h2 id=\"failing\">Failing now ({})</h2>\n<ul>",
        broken.len()
    );
    for p in broken.iter().take(BROKEN_SHOWN) {
        let (what, text, failures, last_run) = p.read(|r| {
            let what = r.last.as_ref().map_or(String::new(), |l| {
                let s = l.summary();
                format!(
                    "<strong>{}</strong> at {} · {} · {}",
                    s.result,
                    s.step,
                    s.reason,
                    l.outcome.scheme.show(s.status)
                )
            });
            let text = r.last.as_ref().map_or(String::new(), |l| l.outcome.reason_text.clone());
            (what, text, r.consecutive_failures, r.last.as_ref().map_or(0, |l| l.run))
        });
        // Straight to what the server said, when the last failure's trace is kept.
        let trace = if p.has_trace(last_run) {
            format!(" <a href=\"/probes/{}/runs/{last_run}#trace\">Trace of the last failure</a>.", escape(&p.name))
        } else {
            String::new()
        };
        let since = match p.failing_since() {
            Some((t, false)) => format!(
                "failing since {} ({})",
                utc(t),
                ago(now, SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t))
            ),
            Some((t, true)) => format!("failing since before {} (every kept run failed)", utc(t)),
            None => String::new(),
        };
        let text = if text.is_empty() { String::new() } else { format!(" — “{}”", escape(&text)) };
        let _ = writeln!(
            body,
            "<li data-failing=\"{name}\"><a href=\"/probes/{name}\">{name}</a> <span class=\"muted\">({target})</span>: {what}{text}. \
             <span class=\"since\">{since}; {failures} failed run(s) in a row.</span>{trace}</li>",
            name = escape(&p.name),
            target = escape(&p.target),
        );
    }
    if broken.len() > BROKEN_SHOWN {
        let _ = writeln!(
            body,
            "<li>… and {} more: <a href=\"/?failing=1\">list the failing probes only</a>.</li>",
            broken.len() - BROKEN_SHOWN
        );
    }
    body.push_str("</ul></section>\n");
}

/// The filter, as a form whose GET puts it in the URL.
fn filter_form(body: &mut String, f: &Filter) {
    let label = f.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    let mut families = String::from("<option value=\"\">every family</option>");
    for kind in crate::protocol::Kind::ALL {
        let selected = if f.family.as_deref() == Some(kind.name()) { " selected" } else { "" };
        let _ = write!(families, "<option value=\"{0}\"{selected}>{0}</option>", kind.name());
    }
    let _ = writeln!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/\"><label>Label <input name=\"label\" value=\"{}\" placeholder=\"team=brokers\" size=\"16\"></label> \
         <label>Family <select name=\"family\">{families}</select></label> \
         <label><input type=\"checkbox\" name=\"failing\" value=\"1\"{}> failing only</label> \
         <button type=\"submit\">Filter</button> <a href=\"/\">clear</a></form>",
        escape(&label),
        if f.failing { " checked" } else { "" },
    );
}

/// One probe's row.
fn row(body: &mut String, r: &Row, now: SystemTime, on_demand: bool) {
    let success = match r.last_success {
        None => "never".to_owned(),
        Some(t) => {
            let unix = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            format!("{}<br><small class=\"muted\">{}</small>", ago(now, t), utc(unix))
        }
    };
    let _ = writeln!(
        body,
        "<tr class=\"{class}\" data-probe=\"{name}\"><td><a href=\"/probes/{name}\">{name}</a></td><td class=\"result\">{result}</td>\
         <td class=\"why\">{why}</td><td>{duration}</td><td>{success}</td>{availability}<td>{heartbeat}</td><td>{button}</td></tr>",
        class = r.class,
        name = escape(&r.probe.name),
        result = r.result,
        why = if r.why.is_empty() { "–".to_owned() } else { escape(&r.why) },
        duration = r.duration,
        availability = coverage_cell(r.day, 86_400.0, r.interval_secs),
        heartbeat = heartbeat(&r.beats),
        button = if on_demand { run_now_button(&r.probe.name, "run") } else { String::new() },
    );
}

/// An availability figure with the runs behind it, greyed while the window holds less than half
/// the runs the schedule would put in it (a figure of 3 runs is not a day's availability).
pub(super) fn coverage_cell(c: Counts, window_secs: f64, interval_secs: f64) -> String {
    let Some(ratio) = c.ratio() else {
        return "<td class=\"avail muted\" title=\"no scheduled run in this window\">–</td>".to_owned();
    };
    let expected = if interval_secs > 0.0 { window_secs / interval_secs } else { 0.0 };
    let thin = expected > 0.0 && (c.runs as f64) < expected / 2.0;
    let class = match (thin, ratio < 0.99) {
        (true, _) => "avail thin",
        (false, true) => "avail low",
        (false, false) => "avail",
    };
    let title = if thin {
        format!("only {} of about {:.0} runs this window should hold: the figure says little yet", c.runs, expected)
    } else {
        format!("{} of {} runs succeeded", c.successes, c.runs)
    };
    format!(
        "<td class=\"{class}\" title=\"{title}\">{}<br><small>{} runs</small></td>",
        super::badges::percent(ratio),
        c.runs
    )
}

/// The last runs as a row of ticks, oldest on the left: green for a success, red for a failure,
/// each with its result and time as a tooltip.
pub(super) fn heartbeat(beats: &[Beat]) -> String {
    const TICK: usize = 4;
    const H: usize = 16;
    if beats.is_empty() {
        return "<span class=\"muted\">no runs yet</span>".to_owned();
    }
    let w = HEARTBEAT_RUNS * TICK;
    let mut svg = format!(
        "<svg class=\"heartbeat\" width=\"{w}\" height=\"{H}\" viewBox=\"0 0 {w} {H}\" role=\"img\" aria-label=\"last {} runs: {} failed\">",
        beats.len(),
        beats.iter().filter(|b| b.result != ResultClass::Success).count()
    );
    // Right-aligned: the newest run is always at the right edge.
    let offset = (HEARTBEAT_RUNS - beats.len().min(HEARTBEAT_RUNS)) * TICK;
    for (i, b) in beats.iter().enumerate() {
        let ok = b.result == ResultClass::Success;
        let _ = write!(
            svg,
            "<rect x=\"{}\" width=\"3\" height=\"{H}\" class=\"{}\"><title>{} · {}</title></rect>",
            offset + i * TICK,
            if ok { "ok" } else { "fail" },
            b.result,
            utc(u64::from(b.finished_unix)),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Refreshes the page in place every 15 s: the filter lives in the URL, and replacing `<main>`
/// keeps the scroll position (a reload would not always). Skipped while the tab is hidden.
const REFRESH: &str = "<script>\nsetInterval(async () => {\n  if (document.hidden) return;\n  try {\n    const r = await fetch(location.href, {cache: 'no-store'});\n    if (!r.ok) return;\n    const next = new DOMParser().parseFromString(await r.text(), 'text/html').querySelector('main');\n    const now = document.querySelector('main');\n    if (next && now) now.replaceWith(next);\n  } catch (e) {}\n}, 15000);\n</script>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_from_and_write_back_to_the_url() {
        let f = Filter::parse(Some("label=team%3Dbrokers&family=ldap&failing=1&page=3&junk=1"));
        assert_eq!(f.labels, [("team".to_owned(), "brokers".to_owned())]);
        assert_eq!((f.family.as_deref(), f.failing, f.page), (Some("ldap"), true, 2));
        assert_eq!(Filter::parse(Some(&f.query(2))), f);
        assert_eq!(Filter::parse(Some("page=0&label=novalue&family=")), Filter::default());
    }

    #[test]
    fn coverage_greys_a_thin_window() {
        let thin = coverage_cell(Counts { runs: 3, successes: 3 }, 86_400.0, 60.0);
        assert!(thin.contains("avail thin") && thin.contains("3 runs"), "{thin}");
        let full = coverage_cell(Counts { runs: 1_440, successes: 1_440 }, 86_400.0, 60.0);
        assert!(full.starts_with("<td class=\"avail\"") && full.contains("100%"), "{full}");
        let low = coverage_cell(Counts { runs: 1_000, successes: 900 }, 86_400.0, 60.0);
        assert!(low.contains("avail low"), "{low}");
    }
}
