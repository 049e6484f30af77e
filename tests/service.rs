//! `authprobe run`, the real binary: the metrics contract on its `/metrics`, promtool, a real
//! Prometheus scraping it, the README's demo command, and its endpoints and exit paths.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authprobe::protocol::ResultClass;
use authprobe::simulator::{Account, Fault, Simulator};
use common::browser::{self, artifacts_dir};
use common::prometheus::Prometheus;
use common::service::{Exposition, Service};
use common::*;

/// Distinctive secrets: none may appear in anything the service emits.
const GOOD_PW: &str = "Good-Pw-Hx39";
const PIN_PW: &str = "Pin-Pw-Lq20";
const PIN: &str = "Pin-7413-Zk";
const WRONG_PW: &str = "Wrong-Pw-Vb57";

/// Four probes at a 1 s interval: `good` (password), `pinned` (PIN step), `bad` (wrong
/// password) and `chatty` (a server that sends a different 5 KB Reason every time). The lockout
/// guard is off: these tests want the failing probes to keep running every second.
async fn four_probe_setup(dir: &Path) -> (Simulator, PathBuf) {
    let sim = simulator(vec![
        Account::new("good", GOOD_PW),
        pin_account("pinned", PIN_PW, PIN),
        Account::new("victim", "the-real-password"),
        fault_account("chatty", Fault::RandomReason),
    ])
    .await;
    let file = write(
        dir,
        "probes.yaml",
        &format!(
            r#"defaults: {{interval: 1s, timeout: 900ms, lockout_guard: {{max_failures: 0}}}}
targets:
  - name: sim
    base_url: {base}
    app_key: {APP_KEY}
probes:
  - {{name: good, target: sim, username: good, password: {GOOD_PW}, labels: {{team: brokers}}}}
  - {{name: pinned, target: sim, username: pinned, password: {PIN_PW}, pin: {PIN}, labels: {{team: brokers}}}}
  - {{name: bad, target: sim, username: victim, password: {WRONG_PW}, labels: {{team: mobile}}}}
  - {{name: chatty, target: sim, username: chatty, password: pw, labels: {{team: mobile}}}}
"#,
            base = sim.base_url()
        ),
    );
    (sim, file)
}

const PROBES: [&str; 4] = ["good", "pinned", "bad", "chatty"];

/// [`four_probe_setup`] served by `authprobe [global…] run --config.file … [args…]`. The
/// directory is returned so that it lives as long as the service.
async fn four_probe_service(global: &[&str], args: &[&str]) -> (tempfile::TempDir, Simulator, Service) {
    let dir = tempfile::tempdir().unwrap();
    let (sim, file) = four_probe_setup(dir.path()).await;
    let mut all = vec!["--config.file", file.to_str().unwrap()];
    all.extend(args);
    let svc = Service::start(dir.path(), global, &all).await;
    (dir, sim, svc)
}

fn runs(m: &Exposition, probe: &str) -> f64 {
    m.series("authprobe_probe_runs_total", &[("probe", probe)]).iter().map(|s| s.value).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_contract_on_a_running_service() {
    let (_dir, sim, svc) = four_probe_service(&["--log.level", "trace"], &[]).await;

    // Counters exist from the first scrape, before any run.
    let first = svc.metrics().await;
    for p in PROBES {
        assert_eq!(first.series("authprobe_probe_runs_total", &[("probe", p)]).len(), ResultClass::ALL.len(), "{p}");
    }

    let m = svc.metrics_until(Duration::from_secs(15), |m| PROBES.iter().all(|p| runs(m, p) >= 2.0)).await;

    let want_types = [
        ("authprobe_probe_success", "gauge"),
        ("authprobe_probe_duration_seconds", "gauge"),
        ("authprobe_probe_login_duration_seconds", "histogram"),
        ("authprobe_probe_step_duration_seconds", "histogram"),
        ("authprobe_probe_runs_total", "counter"),
        ("authprobe_probe_outcome", "gauge"),
        ("authprobe_probe_http_status_code", "gauge"),
        ("authprobe_probe_last_run_timestamp_seconds", "gauge"),
        ("authprobe_probe_last_success_timestamp_seconds", "gauge"),
        ("authprobe_probe_consecutive_failures", "gauge"),
        ("authprobe_probe_skipped_total", "counter"),
        ("authprobe_probe_backoff_seconds", "gauge"),
        ("authprobe_scheduler_delay_seconds", "histogram"),
        ("authprobe_probes_configured", "gauge"),
        ("authprobe_build_info", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ];
    assert!(!m.types.contains_key("authprobe_probe_tls_version_info"), "no HTTPS target, no TLS family");
    for (name, kind) in want_types {
        assert_eq!(m.types.get(name).map(String::as_str), Some(kind), "# TYPE of {name}");
        assert!(m.helps.get(name).is_some_and(|h| !h.is_empty()), "# HELP of {name}");
    }

    // Every probe series carries probe, target and the static labels, and only bounded ones.
    let allowed: BTreeSet<&str> =
        ["probe", "target", "team", "result", "state", "step", "reason", "http_status", "phase", "le"].into();
    for s in m.samples.iter().filter(|s| s.name.starts_with("authprobe_probe_")) {
        assert!(PROBES.contains(&s.label("probe")), "{s:?}");
        assert_eq!(s.label("target"), "sim", "{s:?}");
        let team = if ["good", "pinned"].contains(&s.label("probe")) { "brokers" } else { "mobile" };
        assert_eq!(s.label("team"), team, "{s:?}");
        for k in s.labels.keys() {
            assert!(allowed.contains(k.as_str()), "unexpected label {k} on {s:?}");
        }
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    for p in PROBES {
        let by = [("probe", p)];
        // runs_total: one series per result, whose sum is the number of runs.
        let results: BTreeSet<&str> =
            m.series("authprobe_probe_runs_total", &by).iter().map(|s| s.label("result")).collect();
        assert_eq!(results, ResultClass::ALL.iter().map(|r| r.as_str()).collect(), "{p}");
        let skipped: BTreeSet<&str> =
            m.series("authprobe_probe_skipped_total", &by).iter().map(|s| s.label("reason")).collect();
        assert_eq!(skipped, ["backoff", "missed", "overlap"].into(), "{p}");
        assert_eq!(m.value("authprobe_probe_backoff_seconds", &by), 0.0, "{p}: the guard is off here");
        assert_eq!(m.series("authprobe_probe_outcome", &by).len(), 1, "{p}: exactly one outcome series");
        let phases: BTreeSet<&str> =
            m.series("authprobe_probe_phase_duration_seconds", &by).iter().map(|s| s.label("phase")).collect();
        assert_eq!(phases, ["connect", "processing", "resolve", "tls", "transfer"].into(), "{p}");
        assert_eq!(
            m.value("authprobe_probe_phase_duration_seconds", &[("probe", p), ("phase", "tls")]),
            0.0,
            "plain HTTP"
        );
        let last_run = m.value("authprobe_probe_last_run_timestamp_seconds", &by);
        assert!(now - last_run < 10.0 && last_run <= now + 1.0, "{p}: last run {last_run}, now {now}");
        assert!(m.value("authprobe_probe_duration_seconds", &by) > 0.0);
        // Histograms: cumulative buckets, +Inf equal to the count.
        let buckets = m.series("authprobe_probe_login_duration_seconds_bucket", &by);
        let les: Vec<&str> = buckets.iter().map(|s| s.label("le")).collect();
        assert_eq!(les, ["0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"], "{p}");
        assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value), "{p}: cumulative");
        assert_eq!(buckets.last().unwrap().value, m.value("authprobe_probe_login_duration_seconds_count", &by));
    }

    for p in ["good", "pinned"] {
        let by = [("probe", p)];
        assert_eq!(m.value("authprobe_probe_success", &by), 1.0, "{p}");
        assert_eq!(m.value("authprobe_probe_http_status_code", &by), 200.0, "{p}");
        assert_eq!(m.value("authprobe_probe_consecutive_failures", &by), 0.0, "{p}");
        assert!(now - m.value("authprobe_probe_last_success_timestamp_seconds", &by) < 10.0, "{p}");
        assert_eq!(m.value("authprobe_probe_runs_total", &[("probe", p), ("result", "success")]), runs(&m, p), "{p}");
    }
    let good = [("probe", "good")];
    let outcome = m.series("authprobe_probe_outcome", &good)[0];
    assert_eq!(
        (
            outcome.label("result"),
            outcome.label("state"),
            outcome.label("step"),
            outcome.label("reason"),
            outcome.label("http_status")
        ),
        ("success", "Succeeded", "BaseAuthentication", "none", "200")
    );
    // The PIN probe times both of its requests, each under its own step.
    for step in ["BaseAuthentication", "SecutityPin"] {
        let n = m.value("authprobe_probe_step_duration_seconds_count", &[("probe", "pinned"), ("step", step)]);
        assert!(n >= 2.0, "{step}: {n}");
    }
    assert!(m
        .series("authprobe_probe_step_duration_seconds_count", &[("probe", "good"), ("step", "SecutityPin")])
        .is_empty());

    let bad = [("probe", "bad")];
    assert_eq!(m.value("authprobe_probe_success", &bad), 0.0);
    assert_eq!(m.value("authprobe_probe_http_status_code", &bad), 401.0);
    assert_eq!(m.value("authprobe_probe_last_success_timestamp_seconds", &bad), 0.0);
    assert!(m.value("authprobe_probe_consecutive_failures", &bad) >= 2.0);
    let outcome = m.series("authprobe_probe_outcome", &bad)[0];
    assert_eq!(
        (outcome.label("result"), outcome.label("state"), outcome.label("reason"), outcome.label("http_status")),
        ("auth_failed", "Failed", "invalid_credentials", "401")
    );
    assert_eq!(m.value("authprobe_probe_runs_total", &[("probe", "bad"), ("result", "auth_failed")]), runs(&m, "bad"));

    // A server inventing a new Reason on every run creates no series: the count stays put.
    let chatty = [("probe", "chatty")];
    assert_eq!(m.series("authprobe_probe_outcome", &chatty)[0].label("reason"), "other");
    let before = m.samples.len();
    let runs_before = runs(&m, "chatty");
    let later = svc.metrics_until(Duration::from_secs(15), |l| runs(l, "chatty") >= runs_before + 3.0).await;
    assert_eq!(
        later.samples.len(),
        before,
        "series count changed after {} more runs",
        runs(&later, "chatty") - runs_before
    );

    assert_eq!(m.value("authprobe_probes_configured", &[]), 4.0);
    assert_eq!(m.value("authprobe_build_info", &[("version", authprobe::VERSION)]), 1.0);
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.value("authprobe_scheduler_delay_seconds_count", &[]) >= 8.0);

    // One log line per run: warn for failures with the bounded fields, never a secret.
    let log = svc.stderr();
    let failure = log
        .lines()
        .find(|l| l.contains("level=warn") && l.contains("probe=bad"))
        .unwrap_or_else(|| panic!("no warn line for the failing probe:\n{log}"));
    for field in [
        "target=sim",
        "result=auth_failed",
        "step=BaseAuthentication",
        "reason=invalid_credentials",
        "duration_seconds=",
    ] {
        assert!(failure.contains(field), "{field} missing in {failure}");
    }
    assert!(log
        .lines()
        .any(|l| l.contains("level=debug") && l.contains("msg=\"probe succeeded\"") && l.contains("probe=good")));
    let page = get(&svc.url("/")).await.1;
    for secret in [GOOD_PW, PIN_PW, PIN, WRONG_PW, APP_KEY] {
        assert!(!log.contains(secret), "secret in the log");
        assert!(!later.text.contains(secret), "secret in /metrics");
        assert!(!page.contains(secret), "secret on /");
    }
    let tokens: Vec<String> = ["good", "pinned"].iter().flat_map(|u| sim.issued_tokens(u)).collect();
    assert!(tokens.len() >= 4, "tokens were issued");
    for token in tokens {
        assert!(!log.contains(&token) && !later.text.contains(&token) && !page.contains(&token), "token leaked");
    }
    assert_eq!(svc.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_series_is_replaced_when_the_outcome_changes() {
    let (_dir, sim, svc) = four_probe_service(&[], &[]).await;
    let good = [("probe", "good")];
    svc.metrics_until(Duration::from_secs(10), |m| m.get("authprobe_probe_success", &good) == Some(1.0)).await;

    // The account's password expires: the next run's outcome replaces the old series.
    assert!(sim.update_account("good", |a| a.password_expired = true));
    let m = svc
        .metrics_until(Duration::from_secs(10), |m| {
            m.series("authprobe_probe_outcome", &[("probe", "good"), ("result", "password_expired")]).len() == 1
        })
        .await;
    let series = m.series("authprobe_probe_outcome", &good);
    assert_eq!(series.len(), 1, "exactly one outcome series: {series:?}");
    assert_eq!((series[0].label("state"), series[0].label("reason")), ("Failed", "password_expired"));
    assert_eq!(m.value("authprobe_probe_success", &good), 0.0);
    assert!(m.value("authprobe_probe_runs_total", &[("probe", "good"), ("result", "success")]) >= 1.0);

    // And back.
    assert!(sim.update_account("good", |a| a.password_expired = false));
    let m = svc.metrics_until(Duration::from_secs(10), |m| m.get("authprobe_probe_success", &good) == Some(1.0)).await;
    let series = m.series("authprobe_probe_outcome", &good);
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].label("result"), "success");
    assert_eq!(m.value("authprobe_probe_consecutive_failures", &good), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_report() {
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    // Before any run, and once every family is present.
    let (code, report) = promtool_check_metrics(&svc.metrics_text().await);
    assert_eq!((code, report.as_str()), (0, ""), "promtool on the first scrape");
    let m = svc.metrics_until(Duration::from_secs(10), |m| PROBES.iter().all(|p| runs(m, p) >= 1.0)).await;
    let (code, report) = promtool_check_metrics(&m.text);
    assert_eq!((code, report.as_str()), (0, ""), "promtool with every family present");
    // And it catches problems, so its silence means something.
    let (code, report) = promtool_check_metrics("# TYPE authprobe_bad counter\nauthprobe_bad 1\n");
    assert!(code != 0 || !report.is_empty(), "promtool accepted a counter without _total");
}

/// `/metrics` in OpenMetrics when asked, as Prometheus asks: checked by the reference parser
/// (promtool reads only the text format), and the same series as the text format, which stays
/// the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_when_asked_with_exemplars_naming_runs() {
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    let om = |accept: &'static str| {
        let svc = &svc;
        async move {
            let r = http().get(svc.url("/metrics")).header("accept", accept).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["vary"], "Accept");
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            (ct, r.text().await.unwrap())
        }
    };
    // Before any run: valid already.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (ct, first) = om(prometheus).await;
    assert_eq!(ct, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let (code, report) = openmetrics_parse(&first);
    assert_eq!(code, 0, "the first scrape: {report}");
    let text = svc.metrics_until(Duration::from_secs(15), |m| PROBES.iter().all(|p| runs(m, p) >= 2.0)).await;
    let (_, body) = om(prometheus).await;
    let (code, report) = openmetrics_parse(&body);
    assert_eq!(code, 0, "{report}\n{body}");
    assert!(body.ends_with("\n# EOF\n") && body.matches("# EOF").count() == 1);
    // Families as OpenMetrics names them, and _created beside every counter and histogram.
    for line in
        ["# TYPE authprobe_probe_runs counter", "# TYPE authprobe_build info", "# TYPE process_cpu_seconds counter"]
    {
        assert!(body.lines().any(|l| l == line), "{line}");
    }
    for created in
        ["authprobe_probe_runs_created{probe=\"good\"", "authprobe_probe_login_duration_seconds_created{probe=\"good\""]
    {
        assert!(body.contains(created), "{created}");
    }
    // Exemplars: on the login and step histograms' buckets, one per bucket, naming a run the
    // JSON API knows, whose duration is the exemplar's value.
    let exemplar_lines: Vec<&str> = body.lines().filter(|l| l.contains(" # {")).collect();
    assert!(
        exemplar_lines.iter().all(|l| l.starts_with("authprobe_probe_login_duration_seconds_bucket{")
            || l.starts_with("authprobe_probe_step_duration_seconds_bucket{")),
        "{exemplar_lines:?}"
    );
    for p in PROBES {
        let line = exemplar_lines
            .iter()
            .find(|l| l.starts_with(&format!("authprobe_probe_login_duration_seconds_bucket{{probe=\"{p}\"")))
            .unwrap_or_else(|| panic!("no exemplar for {p}"));
        let (_, exemplar) = line.split_once(" # ").unwrap();
        let id = exemplar.split('"').nth(1).unwrap();
        let mut parts = exemplar.rsplit(' ');
        let (at, value): (f64, f64) = (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap());
        let (status, run) = get(&svc.url(&format!("/api/v1/runs/{id}"))).await;
        assert_eq!(status, 200, "{run}");
        let run: serde_json::Value = serde_json::from_str(&run).unwrap();
        assert_eq!(run["probe"], *p);
        assert_eq!(run["run"]["run_id"], id);
        assert!((run["run"]["duration_seconds"].as_f64().unwrap() - value).abs() < 2e-6, "{run} {value}");
        assert!((run["run"]["finished_unix"].as_f64().unwrap() - at).abs() <= 1.0, "{run} {at}");
        // A run the probe has not made yet is not one it no longer keeps.
        let future = format!("{}-999999", id.split('-').next().unwrap());
        let (status, body) = get(&svc.url(&format!("/runs/{future}"))).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("has not made run") && body.contains(p), "{body}");
    }
    let (status, refused) = get(&svc.url("/api/v1/runs/not-an-id")).await;
    assert_eq!(status, 400, "{refused}");
    // The same series as the text format, which has no _created and no exemplar.
    let samples = |body: &str| -> std::collections::BTreeSet<String> {
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                l.rsplit_once(" # ").map_or(l, |(s, _)| s).rsplit_once(' ').map(|(name, _)| name.to_owned())
            })
            .filter(|series| {
                !series.split('{').next().unwrap().ends_with("_created") && !series.starts_with("process_")
            })
            .collect()
    };
    let (om_samples, text_samples) = (samples(&body), samples(&text.text));
    let differ: Vec<&String> = om_samples.symmetric_difference(&text_samples).collect();
    assert!(differ.is_empty(), "series in one format only: {differ:?}");
    assert!(!text.text.contains("_created") && !text.text.contains(" # {"));
    // Anything not asking for OpenMetrics gets the text format.
    for accept in ["text/plain", "*/*", "application/json", "application/openmetrics-text; version=9.9.9"] {
        assert!(om(accept).await.0.starts_with("text/plain; version=0.0.4"), "{accept}");
    }
    // The parser refuses what is not OpenMetrics, so its silence means something.
    let (code, _) = openmetrics_parse(body.trim_end_matches("# EOF\n"));
    assert_ne!(code, 0, "accepted a body without # EOF");
    let (code, _) = openmetrics_parse(&text.text);
    assert_ne!(code, 0, "accepted the text format");

    // --web.openmetrics-created=false: the same exposition without _created.
    let (_dir, _sim, svc) = four_probe_service(&[], &["--web.openmetrics-created=false"]).await;
    svc.metrics_until(Duration::from_secs(15), |m| PROBES.iter().all(|p| runs(m, p) >= 1.0)).await;
    let r = http().get(svc.url("/metrics")).header("accept", prometheus).send().await.unwrap();
    let body = r.text().await.unwrap();
    let (code, report) = openmetrics_parse(&body);
    assert_eq!(code, 0, "{report}");
    assert!(!body.contains("_created") && body.contains(" # {run_id=\"") && body.ends_with("# EOF\n"));
}

/// A Prometheus server from Debian's package, on a free loopback port with its own data dir.
fn sample_value(v: &serde_json::Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_and_answers_queries() {
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    let prom = Prometheus::scraping(svc.base.trim_start_matches("http://")).await;

    let up = prom.query_until(r#"up{job="authprobe"} == 1"#, Duration::from_secs(20)).await;
    assert_eq!(up.len(), 1);
    let ok = prom.query_until(r#"authprobe_probe_success{probe="good"} == 1"#, Duration::from_secs(20)).await;
    assert_eq!(ok[0]["metric"]["target"], "sim");
    assert_eq!(ok[0]["metric"]["team"], "brokers");
    let failing = prom.query_until(r#"authprobe_probe_success{probe="bad"} == 0"#, Duration::from_secs(20)).await;
    assert_eq!(failing.len(), 1);
    let p95 = r#"histogram_quantile(0.95, sum by (le) (rate(authprobe_probe_login_duration_seconds_bucket{probe="good"}[10s])))"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let latency = loop {
        let r = prom.query(p95).await;
        if let Some(v) = r.first().map(sample_value).filter(|v| v.is_finite()) {
            break v;
        }
        assert!(Instant::now() < deadline, "no p95 login latency after 30 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(latency > 0.0 && latency <= 0.025, "p95 login latency {latency} s of a simulator answering at once");
    // Prometheus took every sample we served, and labels survived ingestion.
    let outcome = prom.query(r#"authprobe_probe_outcome{probe="bad"}"#).await;
    assert_eq!(outcome[0]["metric"]["reason"], "invalid_credentials");
    let scraped = prom.query(r#"scrape_samples_scraped{job="authprobe"}"#).await;
    // Prometheus asks for OpenMetrics, and stores its _created samples as series too.
    let om = svc.metrics_openmetrics().await;
    let served = om.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count() as f64;
    assert!((sample_value(&scraped[0]) - served).abs() <= 2.0, "scraped {scraped:?}, served {served}");
    prom.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_command_serves_every_demo_probe() {
    // `cargo run --release` runs the binary with no arguments in the checkout: the same here,
    // with the top-level probes.yaml, its embedded simulator and the default listen address.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let svc = Service::spawn(repo, &[]).await;
    assert!(svc.base.ends_with(":9871"), "{}", svc.base);
    let demo = [
        "alice-password",
        "bob-pin",
        "carol-sms-2fa",
        "dave-expired",
        "erin-https",
        "service-account",
        "frank-oidc",
        "grace-login",
        "henry-directory",
        "irene-directory-expired",
        "judy-directory-locked",
    ];
    let m = svc.metrics().await;
    for p in demo {
        assert_eq!(m.series("authprobe_probe_runs_total", &[("probe", p)]).len(), ResultClass::ALL.len(), "{p}");
    }
    // Every demo probe runs within its 30 s interval (dave's cron every 15 s): runs of this
    // start, not the last ones of an earlier start that the checkout's data/ brings back.
    let m = svc
        .metrics_until(Duration::from_secs(35), |m| {
            demo.iter().all(|p| m.get("authprobe_probe_last_run_timestamp_seconds", &[("probe", p)]) >= Some(started))
        })
        .await;
    for (p, want) in [
        ("alice-password", 1.0),
        ("bob-pin", 1.0),
        ("carol-sms-2fa", 1.0),
        ("dave-expired", 0.0),
        ("erin-https", 1.0),
        ("service-account", 1.0),
        ("frank-oidc", 1.0),
        ("grace-login", 1.0),
        ("henry-directory", 1.0),
        ("irene-directory-expired", 0.0),
        ("judy-directory-locked", 0.0),
    ] {
        assert_eq!(m.value("authprobe_probe_success", &[("probe", p)]), want, "{p}");
        assert_eq!(m.value("authprobe_probe_runs_total", &[("probe", p), ("result", "internal_error")]), 0.0, "{p}");
    }
    // The OAuth 2.0 probes: the lifetime granted, and the discovery of their issuer's targets.
    for p in ["service-account", "frank-oidc", "grace-login"] {
        assert_eq!(m.value("authprobe_probe_token_expires_in_seconds", &[("probe", p)]), 3600.0, "{p}");
    }
    // Those that end their session: revocation, and the identity provider's logout.
    for p in ["frank-oidc", "grace-login"] {
        assert_eq!(m.value("authprobe_probe_logout_failures_total", &[("probe", p)]), 0.0, "{p}");
    }
    // The interactive login went through every page: its steps' series.
    for step in ["Authorize", "Username", "Password", "OTP", "Consent", "Token", "Logout"] {
        let labels = [("probe", "grace-login"), ("step", step)];
        assert!(m.get("authprobe_probe_step_duration_seconds_count", &labels).is_some_and(|c| c >= 1.0), "{step}");
    }
    // The directory's good account: its password expires in 10 days of the simulator's start
    // (msDS-UserPasswordExpiryTimeComputed).
    let expires_in = m.value("authprobe_probe_password_expires_in_seconds", &[("probe", "henry-directory")]);
    assert!((9.0 * 86_400.0..=10.0 * 86_400.0).contains(&expires_in), "{expires_in}");
    for t in ["oidc-demo", "oidc-demo-app", "oidc-demo-web"] {
        assert_eq!(m.value("authprobe_target_discovery_success", &[("target", t)]), 1.0, "{t}");
        assert_eq!(m.value("authprobe_target_jwks_keys", &[("target", t)]), 1.0, "{t}");
    }
    // Both protocols' families together, the per-target ones included, are promtool-clean.
    let (code, report) = promtool_check_metrics(&m.text);
    assert_eq!((code, report.as_str()), (0, ""), "promtool on the demo's metrics");
    // The HTTPS target, trusting the certificate the simulator made at start, fills the TLS
    // series: its expiry (about 90 days ahead) and version, and the tls phase.
    let expires_in = m.value("authprobe_probe_tls_cert_not_after_timestamp_seconds", &[("probe", "erin-https")])
        - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((80.0 * 86_400.0..=91.0 * 86_400.0).contains(&expires_in), "expires in {expires_in} s");
    assert_eq!(m.value("authprobe_probe_tls_version_info", &[("probe", "erin-https"), ("version", "TLS 1.3")]), 1.0);
    assert!(m.get("authprobe_probe_phase_duration_seconds", &[("probe", "erin-https"), ("phase", "tls")]).is_some());
    // The status page as Chromium renders it; its screenshot is the README's.
    let dom = browser::dump_dom(&svc.url("/")).await;
    for (p, class) in [
        ("alice-password", "ok"),
        ("bob-pin", "ok"),
        ("carol-sms-2fa", "ok"),
        ("dave-expired", "fail"),
        ("erin-https", "ok"),
        ("service-account", "ok"),
        ("frank-oidc", "ok"),
        ("grace-login", "ok"),
        ("henry-directory", "ok"),
        ("irene-directory-expired", "fail"),
        ("judy-directory-locked", "fail"),
    ] {
        assert!(row_of(&dom, p).starts_with(&format!("<tr class=\"{class}\"")), "{p} row:\n{dom}");
    }
    // The availability columns, per probe and per target.
    assert!(dom.contains("<th>1h</th><th>24h</th><th>7d</th><th>30d</th>"), "{dom}");
    assert!(row_of(&dom, "alice-password").contains(">100%<br><small>"), "{dom}");
    assert!(row_of(&dom, "dave-expired").contains(">0.0%<br><small>"), "{dom}");
    // What is failing, first: the demo's broken accounts, each with why and since when.
    for p in ["dave-expired", "irene-directory-expired", "judy-directory-locked"] {
        assert!(dom.contains(&format!("<li data-failing=\"{p}\">")), "{p} named at the top:\n{dom}");
    }
    assert!(dom.find("Failing now (3)").unwrap() < dom.find("<table class=\"probes\">").unwrap());
    assert!(dom.contains("<tr data-target=\"oidc-demo\"><td>oidc-demo</td><td class=\"avail\">100%</td>"), "{dom}");
    let shot = artifacts_dir().join("status-page.png");
    browser::screenshot(&svc.url("/"), &shot, 1900, 700).await;
    eprintln!("status page screenshot: {}", shot.display());
    assert_eq!(svc.terminate().await, 0);
}

/// The pages as people meet them, checked in Chromium with axe-core: no serious or critical
/// accessibility violation, light or dark; the status page without sideways scrolling at 1200 px
/// and its first failing probe in view without scrolling on a laptop and on a phone; heartbeats
/// and the duration chart drawn. Screenshots of each, light and dark, in target/test-artifacts
/// (docs/ has copies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_accessible_and_fit_a_laptop_and_a_phone() {
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    svc.metrics_until(Duration::from_secs(10), |m| PROBES.iter().all(|p| runs(m, p) >= 3.0)).await;
    for (path, name) in [("/", "status-page"), ("/probes/bad", "probe-page"), ("/probes/bad/runs/2", "run-page")] {
        for (width, height, dark) in [(1200, 800, false), (1200, 800, true), (390, 844, false)] {
            let seen = browser::inspect(&svc.url(path), width, height, dark).await;
            let bad: Vec<&serde_json::Value> = seen
                .violations
                .iter()
                .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
                .collect();
            assert!(bad.is_empty(), "{path} at {width}×{height} (dark: {dark}): {bad:#?}");
            if path == "/" {
                if width == 1200 {
                    assert!(seen.scroll_width <= seen.inner_width, "{path} scrolls sideways at 1200 px: {seen:?}");
                }
                assert!(
                    seen.first_failing_bottom > 0.0 && seen.first_failing_bottom <= seen.inner_height,
                    "the first failing probe in view at {width}×{height}: {seen:?}"
                );
                assert!(seen.heartbeats >= 4 * 3, "heartbeats drawn: {seen:?}");
            } else if path == "/probes/bad" {
                assert!(seen.charts >= 2, "the duration and step charts drawn: {seen:?}");
            } else if width == 1200 {
                assert!(seen.scroll_width <= seen.inner_width, "{path}'s trace wraps at 1200 px: {seen:?}");
            }
        }
        for dark in [false, true] {
            let file = format!("{name}{}.png", if dark { "-dark" } else { "" });
            browser::screenshot_in(&svc.url(path), &artifacts_dir().join(&file), 1200, 800, dark).await;
        }
    }
}

/// A failed run keeps what the server said at the time: its row shows the detail and links to
/// the run's page, which shows every step's time and the redacted trace (also in the JSON API).
/// Successes keep no trace; a budget too small keeps none and says so; 0 traces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_runs_trace_is_kept_with_its_steps_and_linked_from_its_row() {
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    svc.metrics_until(Duration::from_secs(10), |m| ["bad", "pinned"].iter().all(|p| runs(m, p) >= 2.0)).await;
    let (_, api) = get(&svc.url("/api/v1/probes/bad")).await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let last = &api["history"][0];
    let (id, n) = (last["run_id"].as_str().unwrap(), last["run_id"].as_str().unwrap().split('-').nth(1).unwrap());
    assert_eq!((last["result"].as_str(), last["trace"].as_str()), (Some("auth_failed"), Some("kept")), "{last}");
    assert_eq!(last["detail"], "login failed at BaseAuthentication", "{last}");
    assert_eq!(last["steps"][0]["step"], "BaseAuthentication", "{last}");
    assert!(last["steps"][0]["duration_seconds"].as_f64().unwrap() > 0.0, "{last}");

    // The status page's failing probe leads straight to its last failure's trace.
    let (_, status) = get(&svc.url("/")).await;
    let item = status.split("<li data-failing=\"bad\">").nth(1).and_then(|t| t.split("</li>").next()).unwrap();
    assert!(item.contains("#trace\">Trace of the last failure</a>"), "{item}");
    let (_, page) = get(&svc.url("/probes/bad")).await;
    let link = format!("<a class=\"trace\" href=\"/probes/bad/runs/{n}#trace\">trace</a>");
    assert!(page.contains(&format!("<td class=\"why\">login failed at BaseAuthentication {link}</td>")), "{page}");
    assert!(page.contains("<svg class=\"chart steps\"") && page.contains("</span>BaseAuthentication</li>"), "{page}");

    let (status, run) = get(&svc.url(&format!("/probes/bad/runs/{n}"))).await;
    assert_eq!(status, 200, "{run}");
    assert!(run.contains(&format!("<h1>Run {id} of bad</h1>")), "{run}");
    assert!(run.contains("<dt>Detail</dt><dd>login failed at BaseAuthentication</dd>"), "{run}");
    assert!(run.contains("</span>BaseAuthentication</td>") && run.contains("<td>100 %</td>"), "{run}");
    let trace = run.split("<pre class=\"trace\">").nth(1).and_then(|t| t.split("</pre>").next()).expect("a trace");
    assert!(trace.contains("&gt; POST http://127.0.0.1:") && trace.contains("&lt; HTTP/1.1 "), "{trace}");
    assert!(trace.contains("Invalid credentials") && trace.contains("&lt;redacted&gt;"), "{trace}");
    for secret in [WRONG_PW, APP_KEY] {
        assert!(!run.contains(secret), "{secret} in the run page");
    }
    let (_, json) = get(&svc.url(&format!("/api/v1/runs/{id}"))).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let text = json["trace"].as_str().expect("the trace in the API");
    assert!(text.contains("> POST http://127.0.0.1:") && text.contains("Invalid credentials"), "{text}");
    assert_eq!(text.lines().count(), trace.lines().count());

    // A multi-step success: its steps, no trace.
    let (_, api) = get(&svc.url("/api/v1/probes/pinned")).await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let last = &api["history"][0];
    assert_eq!((last["trace"].as_str(), last["steps"].as_array().map(Vec::len)), (Some("none"), Some(2)), "{last}");
    let n = last["run_id"].as_str().unwrap().split('-').nth(1).unwrap().to_owned();
    let (_, run) = get(&svc.url(&format!("/probes/pinned/runs/{n}"))).await;
    assert!(run.contains("None: traces are kept for failed runs.") && run.contains("</span>SecutityPin</td>"), "{run}");
    let (status, gone) = get(&svc.url("/probes/pinned/runs/999999")).await;
    assert_eq!(status, 404, "{gone}");
    assert!(gone.contains("keeps no run"), "{gone}");
    drop(svc);

    for (size, note) in [("100B", "over_budget"), ("0", "none")] {
        let (_dir, _sim, svc) = four_probe_service(&[], &["--probe.failure-traces-size", size]).await;
        svc.metrics_until(Duration::from_secs(10), |m| runs(m, "bad") >= 1.0).await;
        let (_, api) = get(&svc.url("/api/v1/probes/bad")).await;
        let api: serde_json::Value = serde_json::from_str(&api).unwrap();
        assert_eq!(api["history"][0]["trace"], note, "{size}: {api}");
        assert_eq!(api["history"][0]["detail"], "login failed at BaseAuthentication", "{size}");
        let (_, page) = get(&svc.url("/probes/bad")).await;
        assert!(!page.contains("class=\"trace\""), "{size}: {page}");
        assert_eq!(page.contains("(trace not kept)"), note == "over_budget", "{size}");
    }
}

/// The status page refreshes itself in place: 16 s of its time later, Chromium has fetched the
/// page again at its own URL, filter included, and put the new `<main>` in place of the old, the
/// header untouched. A server of the test's own stands in front of authprobe so that the second
/// answer can be told from the first and the request seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_refreshes_itself_in_place_keeping_its_filter() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    svc.metrics_until(Duration::from_secs(10), |m| runs(m, "bad") >= 1.0).await;
    let (_, page) = get(&svc.url("/?failing=1")).await;
    assert_eq!(page.matches("<main>").count(), 1, "{page}");
    let newer = page.replace("<main>", "<main><p id=\"refreshed\">a newer rendering</p>");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let served = asked.clone();
    let server = tokio::spawn(async move {
        // Bounded: a few connections, a few requests each, each read within 30 s.
        for _ in 0..8 {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let (served, page, newer) = (served.clone(), page.clone(), newer.clone());
            tokio::spawn(async move {
                for _ in 0..8 {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 65_536 {
                        match tokio::time::timeout(Duration::from_secs(30), conn.read(&mut byte)).await {
                            Ok(Ok(1)) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
                    let body = {
                        let mut served = served.lock().unwrap();
                        let first = !served.iter().any(|l| l.starts_with("GET /?"));
                        served.push(line.clone());
                        match (line.starts_with("GET /?"), first) {
                            (true, true) => page.clone(),
                            (true, false) => newer.clone(),
                            _ => String::new(),
                        }
                    };
                    let status = if body.is_empty() { "404 Not Found" } else { "200 OK" };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dom = browser::dump_dom_after(&format!("http://{addr}/?failing=1"), 16_000).await;
    server.abort();
    let asked = asked.lock().unwrap().clone();
    let pages: Vec<&String> =
        asked.iter().filter(|l| l.starts_with("GET /")).filter(|l| !l.contains("favicon")).collect();
    assert!(pages.len() >= 2, "the page fetched itself again: {asked:?}");
    assert!(pages.iter().all(|l| l.starts_with("GET /?failing=1 ")), "with its filter: {asked:?}");
    assert!(dom.contains("<p id=\"refreshed\">a newer rendering</p>"), "the new <main> in place: {dom}");
    assert_eq!((dom.matches("<main>").count(), dom.matches("<header>").count()), (1, 1), "{dom}");
}

/// The `<tr …>…</tr>` of `probe` in a status page.
fn row_of<'a>(page: &'a str, probe: &str) -> &'a str {
    let at = page.find(&format!("data-probe=\"{probe}\"")).unwrap_or_else(|| panic!("no row for {probe}:\n{page}"));
    let start = page[..at].rfind("<tr ").expect("row start");
    let end = at + page[at..].find("</tr>").expect("row end") + "</tr>".len();
    &page[start..end]
}

/// The pages as a real browser builds and paints them: every probe's row with its result,
/// failing rows tinted red, the sparkline drawn with failed runs as red dots. Screenshots are
/// left in target/test-artifacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_render_in_a_real_browser() {
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    svc.metrics_until(Duration::from_secs(10), |m| PROBES.iter().all(|p| runs(m, p) >= 3.0)).await;

    let dom = browser::dump_dom(&svc.url("/")).await;
    for (probe, class, result) in [
        ("good", "ok", "success"),
        ("pinned", "ok", "success"),
        ("bad", "fail", "auth_failed"),
        ("chatty", "fail", "auth_failed"),
    ] {
        let row = row_of(&dom, probe);
        assert!(row.starts_with(&format!("<tr class=\"{class}\" data-probe=\"{probe}\">")), "{row}");
        assert!(row.contains(&format!("<td class=\"result\">{result}</td>")), "{row}");
        assert!(row.contains(&format!("<a href=\"/probes/{probe}\">{probe}</a>")), "{row}");
        assert!(
            row.contains(&format!("<form method=\"post\" action=\"/probe?probe={probe}&amp;debug=true\"")),
            "{row}"
        );
    }
    assert!(dom.contains("<span>2 succeeding</span><span>2 failing</span>"), "{dom}");

    const FAIL_ROW: [u8; 3] = [0xfd, 0xf0, 0xef];
    const GREEN: [u8; 3] = [0x17, 0x75, 0x2f];
    const RED: [u8; 3] = [0xb3, 0x26, 0x1e];
    const BLUE: [u8; 3] = [0x1f, 0x6f, 0xeb];
    let page = browser::screenshot(&svc.url("/"), &artifacts_dir().join("status-page-test.png"), 1600, 900).await;
    // Two failing rows of the table's width, on their tint; the succeeding results in green.
    assert!(page.count_near(FAIL_ROW, 0) > 2 * 1000 * 15, "{} tinted pixels", page.count_near(FAIL_ROW, 0));
    assert!(page.count_near(GREEN, 24) > 30, "{} green pixels", page.count_near(GREEN, 24));

    let bad =
        browser::screenshot(&svc.url("/probes/bad"), &artifacts_dir().join("probe-page-bad.png"), 1200, 800).await;
    assert!(bad.count_near(BLUE, 24) > 100, "sparkline: {} blue pixels", bad.count_near(BLUE, 24));
    assert!(bad.count_near(RED, 24) > 50, "red dots: {} red pixels", bad.count_near(RED, 24));
    // The hourly availability: the current hour's bar, full height (48 px) and red.
    assert!(bad.count_near(RED, 8) > 48, "hourly bar: {} red pixels", bad.count_near(RED, 8));
    let good =
        browser::screenshot(&svc.url("/probes/good"), &artifacts_dir().join("probe-page-good.png"), 1200, 800).await;
    assert!(good.count_near(BLUE, 24) > 100, "sparkline: {} blue pixels", good.count_near(BLUE, 24));
    assert_eq!(good.count_near(RED, 24), 0, "no failed run, nothing red");
    // The hourly availability: the current hour's bar, full height (48 px) and green.
    assert!(good.count_near(GREEN, 24) > 48, "hourly bar: {} green pixels", good.count_near(GREEN, 24));
    // A badge as a browser draws it: the green of a perfect window.
    let badge =
        browser::screenshot(&svc.url("/badges/good/uptime/1h.svg"), &artifacts_dir().join("badge-good.png"), 200, 40)
            .await;
    assert!(
        badge.count_near([0x44, 0xcc, 0x11], 24) > 200,
        "{} badge-green pixels",
        badge.count_near([0x44, 0xcc, 0x11], 24)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_as_documented() {
    let (_dir, _sim, svc) = four_probe_service(&[], &[]).await;
    assert_eq!(get(&svc.url("/-/healthy")).await.0, 200);
    assert_eq!(get(&svc.url("/-/ready")).await.0, 200);
    let (status, page) = get(&svc.url("/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<a href=\"/metrics\">"));
    assert!(page.contains(&format!("Version {}", authprobe::VERSION)) && page.contains("configuration loaded"));
    for p in PROBES {
        assert!(page.contains(&format!("<a href=\"/probes/{p}\">{p}</a>")), "{p} listed with a link");
        assert!(
            page.contains(&format!("<form method=\"post\" action=\"/probe?probe={p}&amp;debug=true\"")),
            "{p} has a debug-run button"
        );
    }
    // Every probe runs each second, so its page says the next run is at most a second away (or
    // due this very moment, when the page is drawn as a tick falls).
    for p in PROBES {
        let probe_page = get(&svc.url(&format!("/probes/{p}"))).await.1;
        let soon = ["next run in 1 s.", "next run in 0 s.", "next run due now."];
        assert!(soon.iter().any(|s| probe_page.contains(s)), "{p}: {probe_page}");
    }

    // One probe's page: its runs and a sparkline, failures marked.
    let m = svc.metrics_until(Duration::from_secs(10), |m| runs(m, "bad") >= 3.0).await;
    let (status, bad) = get(&svc.url("/probes/bad")).await;
    assert_eq!(status, 200);
    assert!(bad.contains("<svg") && bad.contains("<path d=\"M"), "sparkline");
    assert!(
        bad.contains("text-anchor=\"end\"") && bad.contains(" ms</text>") && bad.contains("UTC</text>"),
        "the chart's axes"
    );
    let dots = bad.matches("<circle").count();
    // Each row is its run's anchor, its id shown.
    let rows = bad.matches("<tr class=\"fail\" id=\"run-").count();
    assert!(rows as f64 >= runs(&m, "bad") && dots == rows, "{rows} failed rows, {dots} red dots");
    assert!(bad.contains("<td class=\"why\">Invalid credentials</td>") && bad.contains("<td>scheduled</td>"));
    // The failures kept apart, the hourly availability with the failed hour red and its results
    // named, and the figures.
    assert!(bad.matches("<tr class=\"fail kept\"").count() >= 3, "{bad}");
    assert!(bad.contains("<td class=\"run\"><a href=\"/probes/bad/runs/1\">"), "{bad}");
    assert!(bad.contains("<g class=\"fail\">") && bad.contains("UTC: 0.0% of "), "{bad}");
    assert!(bad.contains(" run(s) — auth_failed</title>"), "{bad}");
    // Each window with the runs behind it: an hour of 1 s runs holds few yet, a month fewer.
    assert!(bad.contains(">0.0%<br><small>") && bad.contains("<td class=\"avail thin\" title=\"only "), "{bad}");
    let (status, good) = get(&svc.url("/probes/good")).await;
    assert_eq!(status, 200);
    assert!(good.contains("<tr class=\"ok\" id=\"run-") && !good.contains("<circle"));
    assert!(good.contains("<g class=\"ok\">") && good.contains("No failed run since startup."), "{good}");
    // The start page: availability per probe and per target.
    let (_, page) = get(&svc.url("/")).await;
    assert!(page.contains("<th>1h</th><th>24h</th><th>7d</th><th>30d</th>"), "{page}");
    // A probe's day: its figure with the runs behind it, greyed while the day holds a few
    // minutes of runs.
    let good_row = row_of(&page, "good");
    assert!(
        good_row.contains("<td class=\"avail thin\" title=\"only ") && good_row.contains(">100%<br><small>"),
        "{good_row}"
    );
    assert!(row_of(&page, "bad").contains(">0.0%<br><small>"), "{page}");
    // Filters live in the URL, so that a link shows the same.
    let rows = |page: &str| -> Vec<String> {
        PROBES
            .iter()
            .filter(|p| {
                page.contains(&format!("<tr class=\"ok\" data-probe=\"{p}\""))
                    || page.contains(&format!("<tr class=\"fail\" data-probe=\"{p}\""))
            })
            .map(|p| p.to_string())
            .collect()
    };
    assert_eq!(rows(&get(&svc.url("/?failing=1")).await.1), ["bad", "chatty"]);
    assert_eq!(rows(&get(&svc.url("/?label=team%3Dbrokers")).await.1), ["good", "pinned"]);
    assert_eq!(rows(&get(&svc.url("/?label=team%3Dmobile&failing=1")).await.1), ["bad", "chatty"]);
    assert!(rows(&get(&svc.url("/?family=ldap")).await.1).is_empty());
    let filtered = get(&svc.url("/?label=team%3Dbrokers&failing=1")).await.1;
    assert!(
        rows(&filtered).is_empty()
            && filtered.contains("value=\"team=brokers\"")
            && filtered.contains("name=\"failing\" value=\"1\" checked")
    );
    assert!(good_row.contains("<svg class=\"heartbeat\"") && good_row.contains("<title>success · "), "{good_row}");
    assert!(page.contains("<tr data-target=\"sim\"><td>sim</td><td class=\"avail low\">"), "{page}");
    // The JSON API: figures, per target too, and on a probe's own the hours and the failures.
    let (_, api) = get(&svc.url("/api/v1/probes")).await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["targets"][0]["name"], "sim");
    let good_api = api["probes"].as_array().unwrap().iter().find(|p| p["name"] == "good").unwrap();
    assert_eq!(good_api["availability"]["1h"], 1.0);
    assert_eq!(good_api["availability"]["30d"], 1.0);
    // And how many runs are behind each figure, per probe and per target.
    // (every probe has run at least once, `bad` three times; the windows all hold them)
    let behind = good_api["availability_runs"]["24h"].as_u64().unwrap();
    assert!(behind >= 1 && good_api["availability_runs"]["1h"].as_u64() == Some(behind), "{good_api}");
    assert!(api["targets"][0]["availability_runs"]["30d"].as_u64().unwrap() >= 3 + 3, "{api}");
    let (_, bad_api) = get(&svc.url("/api/v1/probes/bad")).await;
    let bad_api: serde_json::Value = serde_json::from_str(&bad_api).unwrap();
    assert_eq!(bad_api["availability"]["24h"], 0.0);
    assert_eq!(bad_api["hours"].as_array().unwrap().len(), 168);
    assert!(bad_api["hours"][167]["runs"].as_u64().unwrap() >= 3);
    assert_eq!(bad_api["failures"][0]["result"], "auth_failed");
    // Badges: SVG, coloured by the figure; unknown probes and windows are 404s.
    for (path, words, colour) in [
        ("/badges/good/uptime/24h.svg", "uptime 24h: 100%", "#4c1"),
        ("/badges/bad/uptime/1h.svg", "uptime 1h: 0.0%", "#e05d44"),
        ("/badges/good/status.svg", "login: success", "#4c1"),
        ("/badges/bad/status.svg", "login: auth_failed", "#e05d44"),
    ] {
        let r = http().get(svc.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "image/svg+xml; charset=utf-8", "{path}");
        let svg = r.text().await.unwrap();
        assert!(
            svg.starts_with("<svg ") && svg.contains(&format!("<title>{words}</title>")) && svg.contains(colour),
            "{svg}"
        );
    }
    for path in ["/badges/nobody/status.svg", "/badges/good/uptime/2h.svg", "/badges/good/uptime/24h.png"] {
        assert_eq!(get(&svc.url(path)).await.0, 404, "{path}");
    }
    let (status, missing) = get(&svc.url("/probes/%3Cscript%3E")).await;
    assert_eq!(status, 404);
    assert!(missing.contains("&lt;script&gt;") && !missing.contains("<script>"), "{missing}");
    assert_eq!(get(&svc.url("/nope")).await.0, 404);
    let post = http().post(svc.url("/metrics")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_bad_config_and_a_busy_port_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "probes:\n  - name: x\n    target: nowhere\n    username: u\n    password: Secret-Jd88\n",
    );
    let out = tokio::process::Command::new(common::service::BIN)
        .args(["run", "--config.file", bad.to_str().unwrap(), "--web.listen-address", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:3:5: probes[0].target: unknown target \"nowhere\" (no targets are defined)"),
        "{stderr}"
    );
    assert!(!stderr.contains("Secret-Jd88"));

    let (_sim, file) = four_probe_setup(dir.path()).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = tokio::process::Command::new(common::service::BIN)
        .args(["run", "--config.file", file.to_str().unwrap(), "--web.listen-address", &addr])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_probes_are_scheduled() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use authprobe::metrics::Metrics;
    use authprobe::results::Results;
    use authprobe::web;

    // The same router `run` serves, before `run` has scheduled anything.
    let results = Arc::new(Results::new([]));
    let ready = Arc::new(AtomicBool::new(false));
    let state = web::AppState {
        metrics: Arc::new(Metrics::new(results.clone()).unwrap()),
        results,
        ready: ready.clone(),
        service: None,
        lifecycle: false,
        on_demand: false,
        instance: Default::default(),
        docs_url: None,
        scrapes: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let listener = web::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::serve(listener, web::router(state), Default::default(), async move {
        let _ = stopped.await;
    }));
    let (status, body) = get(&format!("{base}/-/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(&format!("{base}/-/healthy")).await.0, 200, "healthy while not ready");
    ready.store(true, Ordering::Release);
    assert_eq!(get(&format!("{base}/-/ready")).await.0, 200);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_run_in_flight_finish_and_exits_0() {
    let mut slow = Account::new("slow", "slow-pw");
    slow.delay = Some(Duration::from_millis(2500));
    let sim = simulator(vec![slow]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "targets: [{{name: sim, base_url: '{}', app_key: {APP_KEY}}}]\n\
             probes: [{{name: slow, target: sim, username: slow, password: slow-pw, interval: 4s, timeout: 4s}}]\n",
            sim.base_url()
        ),
    );
    let mut svc =
        Service::start(dir.path(), &["--log.level", "debug"], &["--config.file", file.to_str().unwrap()]).await;
    // Wait for the login to reach the server, then ask the service to stop while it waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.stats("slow").requests == 0 {
        assert!(Instant::now() < deadline, "the probe never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = Instant::now();
    let pid = svc.pid();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = get(&svc.url("/-/ready")).await;
    assert_eq!(status, 503, "not ready while shutting down");
    assert_eq!(get(&svc.url("/-/healthy")).await.0, 200);
    let stderr_before_exit = svc.stderr();
    assert!(!stderr_before_exit.contains("probe=slow target=sim result=success"), "run recorded too early");
    let code = svc.wait().await;
    let took = sent.elapsed();
    assert_eq!(code, 0);
    assert!(took >= Duration::from_millis(1500), "exited after {took:?}, before the run in flight finished");
    assert!(took <= Duration::from_secs(5), "exited after {took:?}: more than timeout + 1 s");
    let log = svc.stderr();
    assert!(log.contains("msg=\"probe succeeded\" probe=slow"), "the run in flight was recorded:\n{log}");
    assert!(!log.contains("abandoned"), "{log}");
}

fn reload_config(base: &str, probes: &str) -> String {
    format!("defaults: {{interval: 1s, timeout: 900ms}}\ntargets: [{{name: sim, base_url: '{base}', app_key: {APP_KEY}}}]\nprobes:\n{probes}")
}

async fn post(url: &str) -> (u16, String) {
    let r = http().post(url).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_diffs_by_probe_name_and_keeps_serving_on_bad_files() {
    let sim = simulator(vec![
        Account::new("keep", "keep-pw"),
        Account::new("gone", "gone-pw"),
        Account::new("fresh", "fresh-pw"),
        Account::new("rot", "Old-Rot-Pw-Kc12"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rot.pw", "Old-Rot-Pw-Kc12\n");
    let v1 = reload_config(
        &sim.base_url(),
        "  - {name: keep, target: sim, username: keep, password: keep-pw}\n\
         \x20 - {name: gone, target: sim, username: gone, password: gone-pw}\n\
         \x20 - {name: rot, target: sim, username: rot, password_file: rot.pw}\n",
    );
    let file = write(dir.path(), "probes.yaml", &v1);
    let mut svc =
        Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap(), "--web.enable-lifecycle"]).await;
    let m =
        svc.metrics_until(Duration::from_secs(10), |m| ["keep", "gone", "rot"].iter().all(|p| runs(m, p) >= 2.0)).await;
    let keep_before = runs(&m, "keep");
    assert_eq!(m.value("authprobe_config_last_reload_successful", &[]), 1.0);
    assert_eq!(get(&svc.url("/-/reload")).await.0, 405);

    // The password is rotated on the server and in the file; `gone` is removed, `fresh` added,
    // `keep` slowed down to every 3 s.
    assert!(sim.update_account("rot", |a| a.password = "New-Rot-Pw-Jw48".into()));
    write(dir.path(), "rot.pw", "New-Rot-Pw-Jw48\n");
    let v2 = reload_config(
        &sim.base_url(),
        "  - {name: keep, target: sim, username: keep, password: keep-pw, interval: 3s}\n\
         \x20 - {name: fresh, target: sim, username: fresh, password: fresh-pw}\n\
         \x20 - {name: rot, target: sim, username: rot, password_file: rot.pw}\n",
    );
    write(dir.path(), "probes.yaml", &v2);
    let (status, body) = post(&svc.url("/-/reload")).await;
    assert_eq!((status, body.as_str()), (200, "configuration reloaded: 3 probe(s)\n"));
    let m = svc
        .metrics_until(Duration::from_secs(10), |m| {
            runs(m, "fresh") >= 1.0 && m.get("authprobe_probe_success", &[("probe", "rot")]) == Some(1.0)
        })
        .await;
    assert!(m.series("authprobe_probe_runs_total", &[]).iter().all(|s| s.label("probe") != "gone"));
    assert!(!m.text.contains("probe=\"gone\""), "every series of the removed probe is gone");
    assert!(runs(&m, "keep") >= keep_before, "keep's counters continue: {} < {keep_before}", runs(&m, "keep"));
    let keep_at = runs(&m, "keep");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let slower = runs(&svc.metrics().await, "keep") - keep_at;
    assert!((1.0..=3.0).contains(&slower), "{slower} runs in 6 s at the new 3 s interval");
    assert!(get(&svc.url("/probes/keep")).await.1.contains("every 3s"), "the new schedule on the probe's page");

    // Bad files change nothing, and say why without secrets.
    let bad_files = [
        ("probes: [\n  - {name: x", "probes.yaml:"),
        (
            &*v2.replace("password: fresh-pw}", "password: fresh-pw, pasword: Typo-Secret-Qq71}"),
            "unknown field `pasword`",
        ),
        (&*v2.replace("password_file: rot.pw", "password_file: missing.pw"), "probes[2].password_file"),
    ];
    for (text, want) in bad_files {
        write(dir.path(), "probes.yaml", text);
        let (status, body) = post(&svc.url("/-/reload")).await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains(want) && body.contains("nothing changed"), "{want:?} not in {body}");
        assert!(!body.contains("Typo-Secret-Qq71") && !body.contains("New-Rot-Pw-Jw48"), "{body}");
        let m = svc.metrics().await;
        assert_eq!(m.value("authprobe_config_last_reload_successful", &[]), 0.0);
        assert_eq!(m.series("authprobe_probe_runs_total", &[("result", "success")]).len(), 3, "the old probes stay");
    }
    let fresh_now = runs(&svc.metrics().await, "fresh");
    svc.metrics_until(Duration::from_secs(5), |m| runs(m, "fresh") >= fresh_now + 2.0).await;

    // SIGHUP reloads too.
    write(dir.path(), "probes.yaml", &v2);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(svc.pid(), libc::SIGHUP) };
    let m = svc
        .metrics_until(Duration::from_secs(5), |m| m.get("authprobe_config_last_reload_successful", &[]) == Some(1.0))
        .await;
    assert!(m.value("authprobe_config_last_reload_success_timestamp_seconds", &[]) >= before - 1.0);

    // Concurrent reloads are serialised: each one succeeds, and the schedule ends up holding each
    // probe once (a doubled probe would run twice as often).
    let url = svc.url("/-/reload");
    let answers = futures_util::future::join_all((0..8).map(|_| post(&url))).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let at = runs(&svc.metrics().await, "fresh");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fresh_runs = runs(&svc.metrics().await, "fresh") - at;
    assert!((3.0..=5.0).contains(&fresh_runs), "{fresh_runs} runs in 4 s at 1 s after 8 concurrent reloads");
    let log = svc.stderr();
    for secret in ["Old-Rot-Pw-Kc12", "New-Rot-Pw-Jw48", "Typo-Secret-Qq71"] {
        assert!(!log.contains(secret), "secret in the log");
    }
    assert_eq!(svc.wait_terminated().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_shows_state_and_history() {
    let (_dir, sim, svc) = four_probe_service(&[], &[]).await;
    svc.metrics_until(Duration::from_secs(10), |m| PROBES.iter().all(|p| runs(m, p) >= 3.0)).await;

    let (status, body) = get(&svc.url("/api/v1/probes")).await;
    assert_eq!(status, 200);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = all["probes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, PROBES, "in configuration order");
    let good = &all["probes"][0];
    assert_eq!(good["target"], "sim");
    assert_eq!(good["labels"]["team"], "brokers");
    assert_eq!(good["schedule"], "every 1s");
    assert_eq!(good["last"]["result"], "success");
    assert_eq!(good["last"]["state"], "Succeeded");
    assert_eq!(good["consecutive_failures"], 0);
    assert!(good["last_success_unix"].as_f64().unwrap() > 1.7e9);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let next = good["next_run_unix"].as_f64().unwrap();
    assert!(next > now - 0.5 && next <= now + 1.1, "next run {next} vs now {now}: every 1s");
    assert!(good.get("history").is_none(), "the list carries no history");

    let (status, body) = get(&svc.url("/api/v1/probes/bad")).await;
    assert_eq!(status, 200);
    let bad: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(bad["last"]["reason"], "invalid_credentials");
    assert_eq!(bad["last"]["reason_text"], "Invalid credentials");
    assert_eq!(bad["last_success_unix"], serde_json::Value::Null);
    let history = bad["history"].as_array().unwrap();
    let total: u64 = bad["runs"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(history.len() as u64 >= 3 && history.len() as u64 <= total, "{} runs kept of {total}", history.len());
    assert!(
        history.windows(2).all(|w| w[0]["finished_unix"].as_u64() >= w[1]["finished_unix"].as_u64()),
        "newest first"
    );
    for run in history {
        assert_eq!(run["result"], "auth_failed");
        assert_eq!(run["http_status"], 401);
        assert_eq!(run["trigger"], "scheduled");
        assert!(run["duration_seconds"].as_f64().unwrap() > 0.0);
    }

    let (status, body) = get(&svc.url("/api/v1/probes/nope%22%3Cx%3E")).await;
    assert_eq!(status, 404);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"], "no probe named \"nope\\\"<x>\"");

    let mut everything = String::new();
    for p in PROBES {
        everything.push_str(&get(&svc.url(&format!("/api/v1/probes/{p}"))).await.1);
    }
    for secret in [GOOD_PW, PIN_PW, PIN, WRONG_PW, APP_KEY] {
        assert!(!everything.contains(secret), "secret in the API");
    }
    for token in ["good", "pinned"].iter().flat_map(|u| sim.issued_tokens(u)) {
        assert!(!everything.contains(&token), "token in the API");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_probe_answers_with_that_runs_metrics_and_is_rate_limited() {
    let (_dir, sim, svc) = four_probe_service(&[], &["--probe.on-demand-min-interval", "3s"]).await;
    assert_eq!(get(&svc.url("/probe")).await.0, 400);
    let (status, body) = get(&svc.url("/probe?probe=nope")).await;
    assert_eq!((status, body.as_str()), (404, "no probe named \"nope\"\n"));
    assert_eq!(get(&svc.url("/probe?probe=good&debug=maybe")).await.0, 400);
    // A browser on another site must not start a login: refused before anything runs (so the
    // rate limit below is not spent).
    let attacks: [&[(&str, &str)]; 4] = [
        &[("sec-fetch-site", "cross-site")],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
    ];
    for headers in attacks {
        for post in [false, true] {
            let url = svc.url("/probe?probe=good&debug=true");
            let mut r = if post { http().post(url) } else { http().get(url) };
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 403, "{headers:?} post={post}");
            assert!(r.text().await.unwrap().contains("cross-site request"), "{headers:?}");
        }
    }
    let m = svc.metrics().await;
    assert!(m.series("authprobe_probe_on_demand_runs_total", &[("probe", "good")]).is_empty(), "nothing ran");

    let r = http().get(svc.url("/probe?probe=good")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let body = r.text().await.unwrap();
    let m = Exposition::parse(&body);
    assert_eq!(m.value("authprobe_probe_success", &[("probe", "good"), ("target", "sim"), ("team", "brokers")]), 1.0);
    assert_eq!(m.value("authprobe_probe_http_status_code", &[]), 200.0);
    assert!(m.value("authprobe_probe_duration_seconds", &[]) > 0.0);
    assert_eq!(m.series("authprobe_probe_outcome", &[("result", "success"), ("state", "Succeeded")]).len(), 1);
    let (code, report) = promtool_check_metrics(&body);
    assert_eq!((code, report.as_str()), (0, ""), "promtool on /probe");

    // Protect the account: a second run within 3 s is refused, with a Retry-After.
    let r = http().get(svc.url("/probe?probe=good")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");

    // The debug trace of a two-step login: every request and answer, no secret and no token.
    let r = http().get(svc.url("/probe?probe=pinned&debug=true")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let trace = r.text().await.unwrap();
    let expected = [
        "Login of probe pinned (target sim)".to_owned(),
        "Request 1 (BaseAuthentication) at +".to_owned(),
        format!("> POST {}/token", sim.base_url()),
        "> username: pinned".to_owned(),
        "> password: <redacted>".to_owned(),
        "> et-app-key: <redacted>".to_owned(),
        "< HTTP/1.1 202".to_owned(),
        "< content-type: application/json".to_owned(),
        "\"Step\":\"SecutityPin\"".to_owned(),
        "Request 2 (SecutityPin) at +".to_owned(),
        "> authorization: <redacted>".to_owned(),
        "> pincode: <redacted>".to_owned(),
        "< HTTP/1.1 200".to_owned(),
        "\"State\":\"Succeeded\"".to_owned(),
        "\"Token\":\"<redacted>\"".to_owned(),
        "Result\npinned (target sim): success in ".to_owned(),
        "  2. SecutityPin        -> HTTP 200 Succeeded".to_owned(),
    ];
    for want in &expected {
        assert!(trace.contains(want.as_str()), "{want:?} missing from the trace:\n{trace}");
    }
    assert!(trace.contains(" after sending)") && trace.contains("bytes read (complete) by +"), "timings:\n{trace}");
    assert_eq!(trace.matches("\"Token\":\"<redacted>\"").count(), 2, "the interim and the final token:\n{trace}");
    let tokens = sim.issued_tokens("pinned");
    assert!(!tokens.is_empty());
    for secret in [PIN_PW, PIN, APP_KEY].into_iter().chain(tokens.iter().map(String::as_str)) {
        assert!(!trace.contains(secret), "secret or token in the trace");
    }
    assert_eq!(get(&svc.url("/probe?probe=pinned&debug=true")).await.0, 429, "debug runs are rate limited too");

    let (status, bad) = get(&svc.url("/probe?probe=bad")).await;
    assert_eq!(status, 200);
    assert_eq!(Exposition::parse(&bad).value("authprobe_probe_success", &[]), 0.0);
    for secret in [GOOD_PW, WRONG_PW, APP_KEY] {
        assert!(!body.contains(secret) && !bad.contains(secret), "secret in /probe");
    }

    // Counted apart from scheduled runs, and kept in the history with its trigger.
    let m = svc.metrics().await;
    assert_eq!(m.value("authprobe_probe_on_demand_runs_total", &[("probe", "good"), ("result", "success")]), 1.0);
    assert_eq!(m.value("authprobe_probe_on_demand_runs_total", &[("probe", "bad"), ("result", "auth_failed")]), 1.0);
    assert!(m.series("authprobe_probe_on_demand_runs_total", &[("probe", "chatty")]).is_empty());
    let api: serde_json::Value = serde_json::from_str(&get(&svc.url("/api/v1/probes/good")).await.1).unwrap();
    let triggers: Vec<&str> =
        api["history"].as_array().unwrap().iter().map(|r| r["trigger"].as_str().unwrap()).collect();
    assert_eq!(triggers.iter().filter(|t| **t == "on_demand").count(), 1, "{triggers:?}");
    let (code, report) = promtool_check_metrics(&m.text);
    assert_eq!((code, report.as_str()), (0, ""), "promtool with on-demand counters");
    // Once the rate limit allows again (3 s):
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The page's button: a POST from authprobe's own origin (as a browser sends it) runs, once
    // the rate limit allows; behind a proxy that rewrites Host, X-Forwarded-Host names the origin.
    let host = svc.base.trim_start_matches("http://").to_owned();
    let r = http()
        .post(svc.url("/probe?probe=good&debug=true"))
        .header("origin", svc.base.as_str())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{host}");
    assert!(r.text().await.unwrap().contains("Login of probe good"));
    let r = http()
        .post(svc.url("/probe?probe=bad&debug=true"))
        .header("origin", "https://authprobe.example.com")
        .header("x-forwarded-host", "authprobe.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `validate` and `logout` from the defaults on a running service: the TokenValidation step
/// histogram from the first scrape, a refused token as `validation_failed`, failed logouts
/// counted apart without failing the login, and every issued token validated and revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_and_logout_on_a_running_service() {
    let sim = simulator(vec![
        Account::new("checked", "checked-pw"),
        fault_account("refused", Fault::RejectTokens),
        fault_account("sticky", Fault::LogoutError),
        code_account("sms", "sms-pw", "000000"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "defaults: {{interval: 1s, timeout: 900ms, validate: true, logout: true}}\n\
             targets: [{{name: sim, base_url: {}, app_key: {APP_KEY}}}]\n\
             probes:\n\
             \x20 - {{name: checked, target: sim, username: checked, password: checked-pw}}\n\
             \x20 - {{name: refused, target: sim, username: refused, password: pw}}\n\
             \x20 - {{name: sticky, target: sim, username: sticky, password: pw}}\n\
             \x20 - {{name: sms, target: sim, username: sms, password: sms-pw, expect: VerificationCode, validate: false, logout: false}}\n",
            sim.base_url()
        ),
    );
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap()]).await;
    let first = svc.metrics().await;
    let validation = [("probe", "checked"), ("step", "TokenValidation")];
    // Present from the first scrape (a first run may already have happened).
    assert!(first.get("authprobe_probe_step_duration_seconds_count", &validation).is_some());
    assert!(first
        .series("authprobe_probe_step_duration_seconds_count", &[("probe", "sms"), ("step", "TokenValidation")])
        .is_empty());
    assert!(first.get("authprobe_probe_logout_failures_total", &[("probe", "sticky")]).is_some());
    assert!(
        first.series("authprobe_probe_logout_failures_total", &[("probe", "sms")]).is_empty(),
        "sms does not log out"
    );

    let m = svc
        .metrics_until(Duration::from_secs(10), |m| {
            ["checked", "refused", "sticky", "sms"].iter().all(|p| runs(m, p) >= 3.0)
        })
        .await;
    let outcome = |p: &str| m.series("authprobe_probe_outcome", &[("probe", p)])[0].clone();
    let refused = outcome("refused");
    assert_eq!(
        [
            refused.label("result"),
            refused.label("state"),
            refused.label("step"),
            refused.label("reason"),
            refused.label("http_status")
        ],
        ["validation_failed", "Succeeded", "TokenValidation", "authorization_denied", "401"]
    );
    for p in ["checked", "sticky", "sms"] {
        assert_eq!(outcome(p).label("result"), "success", "{p}");
    }
    assert_eq!(m.value("authprobe_probe_logout_failures_total", &[("probe", "checked")]), 0.0);
    assert_eq!(m.value("authprobe_probe_logout_failures_total", &[("probe", "sticky")]), runs(&m, "sticky"));
    let checked_runs = runs(&m, "checked");
    assert_eq!(m.value("authprobe_probe_step_duration_seconds_count", &validation), checked_runs);

    // At the server: every token issued to `checked` was validated and then revoked (the run in
    // flight during this look may have done only part).
    let (issued, validated, revoked) =
        (sim.issued_tokens("checked"), sim.validated_tokens("checked"), sim.revoked_tokens("checked"));
    assert!(issued.len() as f64 >= checked_runs && revoked.len() as f64 >= checked_runs);
    assert!(
        revoked.iter().all(|t| issued.contains(t) && validated.contains(t)),
        "only issued, validated tokens revoked"
    );
    assert!(issued.len() - revoked.len() <= 1, "{} issued, {} revoked", issued.len(), revoked.len());
    assert!(svc.stderr().contains("logout failed; the probe's session may stay open"));
    let (code, report) = promtool_check_metrics(&m.text);
    assert_eq!((code, report.as_str()), (0, ""), "promtool");
    let everything = m.text.clone() + &svc.stderr();
    for token in issued.iter().chain(&sim.issued_tokens("refused")).chain(&sim.issued_tokens("sticky")) {
        assert!(!everything.contains(token.as_str()), "token in the output");
    }
}

/// The lockout guard: a failing account gets far fewer logins than an unguarded one, a
/// rate-limited one backs off at once, and a success or new credentials lift the backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lockout_guard_cuts_down_logins_until_the_account_works() {
    let mut throttled = Account::new("throttled", "old-pw");
    throttled.rate_limit = Some(authprobe::simulator::RateLimit { max_logins: 1, window: Duration::from_secs(600) });
    let sim = simulator(vec![
        Account::new("locked", "right-pw"),
        Account::new("unguarded", "right-pw"),
        throttled,
        Account::new("patient", "right-pw"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = |throttled_pw: &str| {
        format!(
            "defaults: {{interval: 250ms, timeout: 200ms, lockout_guard: {{max_failures: 2, max_backoff: 2s}}}}\n\
             targets: [{{name: sim, base_url: {}, app_key: {APP_KEY}}}]\n\
             probes:\n\
             \x20 - {{name: locked, target: sim, username: locked, password: wrong-pw}}\n\
             \x20 - {{name: unguarded, target: sim, username: unguarded, password: wrong-pw, lockout_guard: {{max_failures: 0}}}}\n\
             \x20 - {{name: throttled, target: sim, username: throttled, password: {throttled_pw}, lockout_guard: {{max_backoff: 1h}}}}\n\
             \x20 - {{name: patient, target: sim, username: patient, password: wrong-pw, lockout_guard: {{max_backoff: 1h}}}}\n",
            sim.base_url()
        )
    };
    let file = write(dir.path(), "probes.yaml", &config("old-pw"));
    let svc =
        Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap(), "--web.enable-lifecycle"]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let (locked, unguarded) = (sim.stats("locked").requests, sim.stats("unguarded").requests);
    assert!(unguarded >= 18, "without the guard, a login every 250 ms: {unguarded} in 6 s");
    assert!((3..=8).contains(&locked), "with the guard, {locked} logins in 6 s (unguarded: {unguarded})");
    let throttled_logins = sim.stats("throttled").requests;
    assert!(throttled_logins <= 6, "rate_limited backs off at once: {throttled_logins} logins in 6 s");
    let m = svc.metrics().await;
    let backoff = |p: &str| m.value("authprobe_probe_backoff_seconds", &[("probe", p)]);
    assert_eq!(backoff("locked"), 1.75, "capped at 2 s between runs: 1.75 s more than the interval");
    assert_eq!(backoff("unguarded"), 0.0);
    assert!(backoff("throttled") >= 1.75, "{}", backoff("throttled"));
    assert!(m.value("authprobe_probe_skipped_total", &[("probe", "locked"), ("reason", "backoff")]) >= 10.0);
    assert_eq!(m.value("authprobe_probe_skipped_total", &[("probe", "unguarded"), ("reason", "backoff")]), 0.0);
    let page = get(&svc.url("/probes/locked")).await.1;
    assert!(page.contains("(backing off +1s750ms)"), "{page}");
    assert!(svc.stderr().contains("backing off to protect the account"));

    // The account is fixed: the next run (within the 2 s cap) succeeds and lifts the backoff.
    sim.update_account("locked", |a| a.password = "wrong-pw".into());
    let m = svc
        .metrics_until(Duration::from_secs(4), |m| {
            m.get("authprobe_probe_success", &[("probe", "locked")]) == Some(1.0)
        })
        .await;
    assert_eq!(m.value("authprobe_probe_backoff_seconds", &[("probe", "locked")]), 0.0);
    let at = sim.stats("locked").requests;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sim.stats("locked").requests - at >= 4, "back to a login every 250 ms");

    // New credentials lift the backoff at once: the throttled probe, seconds into its backoff,
    // runs at its next tick after the reload instead of at the end of the backoff.
    sim.update_account("throttled", |a| {
        a.password = "new-pw".into();
        a.rate_limit = None;
    });
    write(dir.path(), "probes.yaml", &config("new-pw"));
    // Reload only while the next run is more than 1.5 s away (the API's next run includes the
    // backoff), so that running within 1 s can only be the reload's doing.
    until_next_run_is_far(&svc, "throttled").await;
    let before = sim.stats("throttled").requests;
    let reloaded = Instant::now();
    assert_eq!(post(&svc.url("/-/reload")).await.0, 200);
    svc.metrics_until(Duration::from_secs(1), |m| {
        m.get("authprobe_probe_success", &[("probe", "throttled")]) == Some(1.0)
    })
    .await;
    assert!(reloaded.elapsed() < Duration::from_secs(1) && sim.stats("throttled").requests > before);
    assert_eq!(svc.metrics().await.value("authprobe_probe_backoff_seconds", &[("probe", "throttled")]), 0.0);

    // A successful run on demand lifts the backoff too: `patient` is seconds from its next run.
    sim.update_account("patient", |a| a.password = "wrong-pw".into());
    until_next_run_is_far(&svc, "patient").await;
    assert_eq!(get(&svc.url("/probe?probe=patient")).await.0, 200);
    assert_eq!(svc.metrics().await.value("authprobe_probe_backoff_seconds", &[("probe", "patient")]), 0.0);
}

/// Three instances over one configuration, each with its shard: every probe runs on exactly
/// one of them (counted at the simulator), each serves only its own, and `--location` labels
/// every series of its instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_probes_and_location_labels_them() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, file) = common::many_probes(dir.path(), "acct", 30, "{interval: 1s, timeout: 900ms}").await;
    let names: Vec<String> = (0..30).map(|i| format!("acct-{i:03}")).collect();
    let cfg = file.to_str().unwrap();
    let mut instances = Vec::new();
    for i in 0..3 {
        let index = i.to_string();
        let mut args = vec!["--config.file", cfg, "--shard.count", "3", "--shard.index", &index];
        if i == 0 {
            args.extend(["--location", "eu-west"]);
        }
        instances.push(Service::start(dir.path(), &[], &args).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Stop them, then compare what each recorded with what the simulator saw: nothing in flight.
    let mut seen: Vec<BTreeSet<String>> = Vec::new();
    let mut runs_by_probe = std::collections::BTreeMap::new();
    for svc in &instances {
        let m = svc.metrics().await;
        let own: BTreeSet<String> =
            m.series("authprobe_probe_runs_total", &[]).iter().map(|s| s.label("probe").to_owned()).collect();
        for p in &own {
            runs_by_probe.insert(p.clone(), runs(&m, p));
        }
        assert_eq!(m.value("authprobe_probes_configured", &[]), own.len() as f64);
        seen.push(own);
    }
    for svc in instances {
        assert_eq!(svc.terminate().await, 0);
    }
    let all: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(seen.iter().map(BTreeSet::len).sum::<usize>(), 30, "no probe on two instances: {seen:?}");
    assert_eq!(seen.iter().flatten().cloned().collect::<BTreeSet<_>>(), all, "every probe on one");
    assert!(seen.iter().all(|s| (4..=16).contains(&s.len())), "shards of sensible size: {seen:?}");
    for n in &names {
        let logins = sim.stats(n).requests as f64;
        let recorded = runs_by_probe[n];
        assert!(
            logins >= 2.0 && logins <= recorded + 1.0,
            "{n}: {logins} logins at the server, {recorded} runs recorded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_labels_every_series_and_bad_shard_settings_are_refused() {
    let (_dir, _sim, svc) = four_probe_service(&[], &["--location", "ap-south"]).await;
    let m = svc.metrics_until(Duration::from_secs(10), |m| PROBES.iter().all(|p| runs(m, p) >= 1.0)).await;
    let probe_series: Vec<_> = m.samples.iter().filter(|s| s.name.starts_with("authprobe_probe_")).collect();
    assert!(probe_series.len() > 100);
    assert!(probe_series.iter().all(|s| s.label("location") == "ap-south"), "every probe series has the location");
    let api: serde_json::Value = serde_json::from_str(&get(&svc.url("/api/v1/probes")).await.1).unwrap();
    assert_eq!(api["location"], "ap-south");
    assert_eq!(api["probes"][0]["labels"]["location"], "ap-south");
    assert!(get(&svc.url("/")).await.1.contains("Location <strong>ap-south</strong>."));
    let (code, report) = promtool_check_metrics(&m.text);
    assert_eq!((code, report.as_str()), (0, ""));

    for (args, want) in [
        (&["--shard.count", "3", "--shard.index", "3"][..], "shard index 3 is out of range for 3 shard(s): use 0 to 2"),
        (&["--shard.count", "0", "--shard.index", "0"][..], "--shard.count must be at least 1"),
        (&["--shard.count", "2"][..], "--shard.count needs --shard.index or --shard.from-hostname"),
        (&["--location", ""][..], "--location must be 1 to 128 characters"),
    ] {
        let out = tokio::process::Command::new(common::service::BIN)
            .args(["run", "--config.file", "/nonexistent.yaml", "--web.listen-address", "127.0.0.1:0"])
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

/// HTTPS targets configured with `tls:`, and proxies, on the real binary: the TLS families and
/// phases on /metrics, a wrong CA as `tls_error`, `insecure_skip_verify` warned about, and
/// requests going through `proxy_url` or `HTTP_PROXY` to a host that only the proxy can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_and_proxies_on_a_running_service() {
    let good = pki(&["127.0.0.1"]);
    let other = pki(&["127.0.0.1"]);
    let sim = tls_simulator(vec![Account::new("alice", "pw")], &good).await;
    let plain = simulator(vec![Account::new("bob", "pw"), Account::new("carol", "pw")]).await;
    let relay = Relay::start(plain.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca.pem", &good.ca_pem);
    write(dir.path(), "other-ca.pem", &other.ca_pem);
    // Only the proxy can reach this host: `.invalid` never resolves.
    let hidden = "http://etna.invalid:18080/api";
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "defaults: {{interval: 1s, timeout: 900ms}}\n\
             targets:\n\
             \x20 - {{name: tls, base_url: {base}, app_key: {APP_KEY}, tls: {{ca_file: ca.pem}}}}\n\
             \x20 - {{name: wrong-ca, base_url: {base}, app_key: {APP_KEY}, tls: {{ca_file: other-ca.pem}}}}\n\
             \x20 - {{name: insecure, base_url: {base}, app_key: {APP_KEY}, tls: {{insecure_skip_verify: true}}}}\n\
             \x20 - {{name: proxied, base_url: {hidden}, app_key: {APP_KEY}, proxy_url: http://{relay}}}\n\
             \x20 - {{name: env-proxied, base_url: {hidden}, app_key: {APP_KEY}}}\n\
             probes:\n\
             \x20 - {{name: tls, target: tls, username: alice, password: pw}}\n\
             \x20 - {{name: wrong-ca, target: wrong-ca, username: alice, password: pw}}\n\
             \x20 - {{name: insecure, target: insecure, username: alice, password: pw}}\n\
             \x20 - {{name: proxied, target: proxied, username: bob, password: pw}}\n\
             \x20 - {{name: env-proxied, target: env-proxied, username: carol, password: pw}}\n",
            base = sim.base_url(),
            relay = relay.addr,
        ),
    );
    let cfg = file.to_str().unwrap();
    let proxy = format!("http://{}", relay.addr);
    let svc = Service::spawn_with_env(
        dir.path(),
        &["run", "--web.listen-address", "127.0.0.1:0", "--config.file", cfg],
        // The metrics server and the HTTPS simulator are on 127.0.0.1, which NO_PROXY keeps direct.
        &[("HTTP_PROXY", &proxy), ("NO_PROXY", "127.0.0.1")],
    )
    .await;
    let names = ["tls", "wrong-ca", "insecure", "proxied", "env-proxied"];
    let m = svc.metrics_until(Duration::from_secs(10), |m| names.iter().all(|p| runs(m, p) >= 2.0)).await;
    let result = |p: &str| m.series("authprobe_probe_outcome", &[("probe", p)])[0].label("result").to_owned();
    assert_eq!(names.map(result), ["success", "tls_error", "success", "success", "success"]);

    let tls = [("probe", "tls")];
    assert_eq!(m.value("authprobe_probe_tls_cert_not_after_timestamp_seconds", &tls), good.chain_not_after as f64);
    assert_eq!(m.value("authprobe_probe_tls_version_info", &[("probe", "tls"), ("version", "TLS 1.3")]), 1.0);
    assert!(m.value("authprobe_probe_phase_duration_seconds", &[("probe", "tls"), ("phase", "tls")]) > 0.0);
    assert_eq!(
        m.value("authprobe_probe_tls_cert_not_after_timestamp_seconds", &[("probe", "wrong-ca")]),
        good.chain_not_after as f64,
        "the expiry of an untrusted chain is reported too"
    );
    assert!(m.get("authprobe_probe_tls_version_info", &[("probe", "wrong-ca")]).is_none(), "no handshake finished");
    assert!(m.series("authprobe_probe_tls_version_info", &[("probe", "proxied")]).is_empty(), "plain HTTP");
    // The probe's page says what the last run saw of the certificate.
    let page = get(&svc.url("/probes/tls")).await.1;
    let expires = chrono::DateTime::from_timestamp(good.chain_not_after, 0).unwrap().format("%Y-%m-%d %H:%M:%S UTC");
    assert!(page.contains(&format!("TLS version TLS 1.3; the certificate chain expires {expires}")), "{page}");
    assert!(!get(&svc.url("/probes/proxied")).await.1.contains("certificate chain"));
    assert!(svc.stderr().contains("insecure_skip_verify"), "the insecure target is warned about");
    assert!(relay.connections.load(std::sync::atomic::Ordering::SeqCst) >= 4, "both proxied probes went through it");
    assert!(plain.stats("bob").tokens_issued >= 2 && plain.stats("carol").tokens_issued >= 2);
    let (code, report) = promtool_check_metrics(&m.text);
    assert_eq!((code, report.as_str()), (0, ""));
}

/// Waits (at most 20 s) until `probe`'s next run, backoff included, is more than 1.5 s away.
async fn until_next_run_is_far(svc: &Service, probe: &str) {
    let waiting = Instant::now();
    loop {
        let api: serde_json::Value =
            serde_json::from_str(&get(&svc.url(&format!("/api/v1/probes/{probe}"))).await.1).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        if api["next_run_unix"].as_f64().unwrap() - now > 1.5 {
            return;
        }
        assert!(waiting.elapsed() < Duration::from_secs(20), "{probe} never backed off by more than 1.5 s: {api}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--config.auto-reload-interval`: a probe file added, edited or broken is noticed and applied
/// (or refused, the running probes untouched) without a signal; `probe_files` are re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reload_applies_changed_probe_files_and_refuses_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(vec![Account::new("good", GOOD_PW), Account::new("other", "pw-other")]).await;
    std::fs::create_dir(dir.path().join("probes.d")).unwrap();
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "defaults: {{interval: 1s, timeout: 900ms}}\nprobe_files: [probes.d/*.yaml]\ntargets:\n  - {{name: sim, base_url: {}, app_key: {APP_KEY}}}\n",
            sim.base_url()
        ),
    );
    write(
        &dir.path().join("probes.d"),
        "a.yaml",
        &format!("probes:\n  - {{name: good, target: sim, username: good, password: {GOOD_PW}}}\n"),
    );
    let svc = Service::start(
        dir.path(),
        &[],
        &["--config.file", file.to_str().unwrap(), "--config.auto-reload-interval", "200ms"],
    )
    .await;
    svc.metrics_until(Duration::from_secs(10), |m| runs(m, "good") >= 1.0).await;

    // A new file: its probe is scheduled, with no signal.
    write(
        &dir.path().join("probes.d"),
        "b.yaml",
        "probes:\n  - {name: other, target: sim, username: other, password: pw-other}\n",
    );
    let m = svc.metrics_until(Duration::from_secs(10), |m| runs(m, "other") >= 1.0).await;
    assert_eq!(m.value("authprobe_probes_configured", &[]), 2.0);
    assert_eq!(m.value("authprobe_config_last_reload_successful", &[]), 1.0);

    // A broken edit is refused as a SIGHUP reload is: both probes keep running.
    write(&dir.path().join("probes.d"), "b.yaml", "probes:\n  - {name: other, target: nowhere}\n");
    let m = svc
        .metrics_until(Duration::from_secs(10), |m| m.value("authprobe_config_last_reload_successful", &[]) == 0.0)
        .await;
    let before = runs(&m, "other");
    let m = svc.metrics_until(Duration::from_secs(10), |m| runs(m, "other") >= before + 1.0).await;
    assert_eq!(m.value("authprobe_probes_configured", &[]), 2.0);

    // Removing the file applies too.
    std::fs::remove_file(dir.path().join("probes.d/b.yaml")).unwrap();
    let m = svc.metrics_until(Duration::from_secs(10), |m| m.value("authprobe_probes_configured", &[]) == 1.0).await;
    assert_eq!(m.value("authprobe_config_last_reload_successful", &[]), 1.0);
    assert!(m.series("authprobe_probe_runs_total", &[("probe", "other")]).is_empty(), "the removed probe's series go");
    let (_, log) = svc.terminate_with_log().await;
    assert!(log.contains("the configuration files changed: reloading"), "{log}");
}
