//! The `/metrics` exposition: what [`crate::results`] holds, in the Prometheus text format.
//!
//! Process-wide metrics (build info, probe count, the process collector) live in a
//! `prometheus` crate [`Registry`]. The per-probe families are written by hand from snapshots of
//! the results: at 10,000 probes the registry's `gather()` would copy some 450,000 series into
//! protobuf structures on every scrape. The body is produced in chunks, family by family, so a
//! scrape never holds the whole text, nor a copy of the probes' records, in memory.
//!
//! Series per probe, deliberately: 7 last-run gauges and 5 phases (once the probe has run; 2 more
//! TLS gauges for HTTPS and LDAPS targets, 1 token lifetime for OAuth 2.0, a password expiry and
//! grace logins where a directory tells them), 16 `runs_total`
//! (one per result, from startup), 3 `skipped_total` (one per reason, from startup), 1
//! `backoff_seconds`, 1 `interval_seconds`, 12 for the
//! login histogram, and 12 per step histogram: one for `BaseAuthentication`, one more for each
//! step the probe holds a secret for, and one for any other step seen. A password-only probe
//! has 57 series, a PIN probe 69; `validate` adds a `TokenValidation` histogram, `logout` a counter.
//! OAuth 2.0 targets that discover add 4 series each (discovery and JWKS), after the process's own.

mod format;
mod text;

use std::sync::{Arc, Mutex, PoisonError, Weak};

use prometheus::{Encoder as _, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::protocol::{ResultClass, Scheme, Step, Summary};
use crate::results::{
    unix_seconds, Histogram, ProbeRecord, ProbeResults, ProbeSet, Results, RunId, SkipReason, DELAY_BUCKETS,
    LATENCY_BUCKETS,
};
pub use format::Format;
use text::Value;

/// `Content-Type` of the text format, which `GET /probe` always answers in.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Chunks of the body are about this large: few enough writes for a 50 MB body, small enough
/// that a scrape never holds more than half a megabyte of text.
const CHUNK_BYTES: usize = 512 * 1024;

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric {name}: {source}")]
pub struct MetricsError {
    name: &'static str,
    source: prometheus::Error,
}

/// Renders the exposition.
pub struct Metrics {
    registry: Registry,
    probes_configured: IntGauge,
    results: Arc<Results>,
    /// The label sets of the probe set last rendered: a set only changes on reload, and its
    /// labels are some 100 bytes and an allocation per probe on every scrape otherwise. Weak,
    /// so that a replaced set is not kept alive (and its address not reused while this holds).
    labels: Mutex<(Weak<ProbeSet>, Arc<Vec<String>>)>,
    /// Whether OpenMetrics carries `_created` samples.
    created: bool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics over `results`.
    pub fn new(results: Arc<Results>) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let register = |name: &'static str, c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).map_err(|source| MetricsError { name, source })
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "authprobe_build_info",
                "Always 1, labelled with the version and git revision authprobe was built from.",
            ),
            &["version", "revision"],
        )
        .map_err(|source| MetricsError { name: "authprobe_build_info", source })?;
        build.with_label_values(&[crate::VERSION, crate::REVISION]).set(1);
        register("authprobe_build_info", Box::new(build))?;
        let probes_configured =
            IntGauge::new("authprobe_probes_configured", "Number of probes in the loaded configuration.")
                .map_err(|source| MetricsError { name: "authprobe_probes_configured", source })?;
        register("authprobe_probes_configured", Box::new(probes_configured.clone()))?;
        #[cfg(target_os = "linux")]
        register("process_*", Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Metrics { registry, probes_configured, results, labels: Mutex::default(), created: true })
    }

    /// Leaves `_created` out of OpenMetrics. Prometheus before 2.50, and later ones without
    /// `--enable-feature=created-timestamp-zero-ingestion`, store each `_created` sample as a
    /// series of its own: 21 more per probe (one per counter and histogram series), which a
    /// large installation may rather not pay.
    pub fn without_created(mut self) -> Self {
        self.created = false;
        self
    }

    /// The exposition in `format`, as an iterator of body chunks.
    pub fn render(&self, format: Format) -> Exposition {
        let om = format.is_open_metrics();
        let set = self.results.probes();
        self.probes_configured.set(set.list.len() as i64);
        let mut head = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut head) {
            // Only possible for malformed families, which this registry never holds.
            tracing::error!(error = %e, "cannot encode process metrics");
            head.clear();
        }
        if om {
            head = text::text_to_open_metrics(&String::from_utf8_lossy(&head));
        }
        let labels = self.labels_of(&set);
        // Which families have samples at all (a family without any gets no header), in one look
        // at each probe rather than one per family.
        let mut seen = Seen { any: !set.list.is_empty(), ..Seen::default() };
        // Per target, the discovery facts of its probes' newest run that reported them.
        let mut discovery = std::collections::BTreeMap::new();
        for p in &set.list {
            p.read(|r| {
                seen.ran |= r.last.is_some();
                if let Some(slot) = r.last.as_ref().and_then(|l| scheme_slot(l.outcome.scheme)) {
                    seen.schemes[slot] = true;
                }
                seen.stepped |= !r.steps.is_empty();
                seen.on_demand |= r.on_demand.is_some();
                seen.logout |= r.logout_failures.is_some();
                seen.retries |= r.retries.is_some();
                seen.tls |= r.last.as_ref().is_some_and(|l| l.outcome.tls.is_some());
                seen.lifetime |= r.last.as_ref().is_some_and(|l| l.outcome.token_expires_in.is_some());
                let account = r.last.as_ref().and_then(|l| l.outcome.account);
                seen.password_expiry |= account.is_some_and(|a| a.password_expires_in_seconds.is_some());
                seen.grace_logins |= account.is_some_and(|a| a.grace_logins_remaining.is_some());
                if let Some(last) = &r.last {
                    if let Some(facts) = last.outcome.discovery {
                        // The target's labels: its name, and the instance's location if set.
                        let location = p
                            .labels
                            .iter()
                            .find(|(k, _)| k == crate::instance::LOCATION_LABEL)
                            .map(|(_, v)| v.as_str());
                        let labels = text::label_pairs(
                            std::iter::once(("target", &*p.target))
                                .chain(location.map(|l| (crate::instance::LOCATION_LABEL, l))),
                        );
                        let newest = discovery.entry(labels).or_insert((last.finished, facts));
                        if last.finished >= newest.0 {
                            *newest = (last.finished, facts);
                        }
                    }
                }
            });
        }
        let mut tail = target_families(&discovery, om);
        tail.extend_from_slice(&process_families(&self.results, om, self.created));
        if om {
            tail.extend_from_slice(b"# EOF\n");
        }
        let present = families().iter().map(|f| f.present(&seen)).collect();
        Exposition {
            head: Some(head),
            set,
            labels,
            present,
            family: 0,
            probe: 0,
            tail: Some(tail),
            om,
            created: self.created,
        }
    }

    /// The rendered label sets of the probes of `set`, in set order.
    fn labels_of(&self, set: &Arc<ProbeSet>) -> Arc<Vec<String>> {
        let mut cached = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        if !std::ptr::eq(cached.0.as_ptr(), Arc::as_ptr(set)) {
            *cached = (Arc::downgrade(set), Arc::new(set.list.iter().map(|p| probe_labels(p)).collect()));
        }
        cached.1.clone()
    }
}

/// A scrape in progress: yields the body in chunks of about 512 KiB. Each family of each probe
/// is written under that probe's lock, briefly; nothing is copied per probe but its label set.
pub struct Exposition {
    head: Option<Vec<u8>>,
    set: Arc<ProbeSet>,
    /// Rendered `probe="…",target="…",…` of each probe, in set order.
    labels: Arc<Vec<String>>,
    /// Whether each family has any sample.
    present: Vec<bool>,
    family: usize,
    probe: usize,
    tail: Option<Vec<u8>>,
    /// OpenMetrics rather than the text format.
    om: bool,
    /// With `_created` samples (OpenMetrics only).
    created: bool,
}

/// What OpenMetrics adds to a probe's lines: its runs' ids on exemplars, and when its counters
/// started (`_created`).
struct OpenMetricsProbe {
    key: u64,
    /// Written once per probe and family, copied into each `_created` line; `None` when they
    /// are left out (see [`Metrics::without_created`]).
    created: Option<text::Stamp>,
}

impl Iterator for Exposition {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(head) = self.head.take() {
            if !head.is_empty() {
                return Some(head);
            }
        }
        // Room beyond the chunk for the probe that crosses it (an OpenMetrics runs family with
        // long labels is some 8 KB): never a reallocation doubling a half-megabyte buffer.
        // Untouched, the room costs no memory.
        let mut out = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
        let families = families();
        while self.family < families.len() && out.len() < CHUNK_BYTES {
            let family = families[self.family];
            if self.probe == 0 {
                if !self.present[self.family] {
                    self.family += 1;
                    continue;
                }
                let (name, kind, help) = family.meta();
                text::header(&mut out, name, kind, help, self.om);
            }
            // `_created` only where a counter or histogram needs it.
            let created = self.created && family.counts();
            while self.probe < self.set.list.len() && out.len() < CHUNK_BYTES {
                let labels = &self.labels[self.probe];
                let probe = &self.set.list[self.probe];
                let om = self.om.then(|| OpenMetricsProbe {
                    key: probe.key,
                    created: created.then(|| text::Stamp::millis(probe.created_ms)),
                });
                probe.read(|r| family.write(self.family, labels, r, &mut out, om.as_ref()));
                self.probe += 1;
            }
            if self.probe == self.set.list.len() {
                self.family += 1;
                self.probe = 0;
            }
        }
        if self.family == families.len() {
            if let Some(tail) = self.tail.take() {
                out.extend_from_slice(&tail);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// What the probes have, to tell which families have samples at all.
#[derive(Debug, Default)]
struct Seen {
    /// Any probe exists.
    any: bool,
    /// Any probe has run.
    ran: bool,
    /// Any probe has a step histogram.
    stepped: bool,
    /// Any probe ran on demand.
    on_demand: bool,
    /// Any probe logs out (or failed to).
    logout: bool,
    /// Any probe retries (or did).
    retries: bool,
    /// Any probe's last run was against an HTTPS target.
    tls: bool,
    /// Any probe's last run was granted a token lifetime.
    lifetime: bool,
    /// Any probe's last run was told when its password expires.
    password_expiry: bool,
    /// Any probe's last run was told its grace logins.
    grace_logins: bool,
    /// Any probe's last run had its status in each scheme, indexed like [`schemes`].
    schemes: [bool; MAX_SCHEMES],
}

/// Most status schemes the families may have among them.
const MAX_SCHEMES: usize = 8;

/// The status schemes of the families, each once: each is a gauge of its own.
fn schemes() -> &'static [&'static Scheme] {
    static SCHEMES: std::sync::OnceLock<Vec<&'static Scheme>> = std::sync::OnceLock::new();
    SCHEMES.get_or_init(|| {
        let mut all: Vec<&'static Scheme> = Vec::new();
        for kind in crate::protocol::Kind::ALL {
            if !all.iter().any(|s| *s == kind.scheme()) {
                all.push(kind.scheme());
            }
        }
        assert!(all.len() <= MAX_SCHEMES, "more status schemes than the exposition counts");
        all
    })
}

/// The place of `scheme` among the families' (`None` for one of no family: a test's).
fn scheme_slot(scheme: &Scheme) -> Option<usize> {
    schemes().iter().position(|s| *s == scheme)
}

/// The per-probe families, in exposition order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    Success,
    Duration,
    /// The last run's status code, one gauge per scheme (indexed like [`schemes`]).
    Status(usize),
    LastRun,
    LastSuccess,
    ConsecutiveFailures,
    Outcome,
    Phase,
    TlsNotAfter,
    TlsVersion,
    TokenExpiresIn,
    PasswordExpiresIn,
    GraceLogins,
    Runs,
    OnDemand,
    Skipped,
    LogoutFailures,
    Retries,
    Interval,
    Backoff,
    Login,
    Steps,
}

/// The per-probe families, in exposition order: a status gauge per scheme.
fn families() -> &'static [Family] {
    static FAMILIES: std::sync::OnceLock<Vec<Family>> = std::sync::OnceLock::new();
    FAMILIES.get_or_init(|| {
        let mut all = vec![Family::Success, Family::Duration];
        all.extend((0..schemes().len()).map(Family::Status));
        all.extend([
            Family::LastRun,
            Family::LastSuccess,
            Family::ConsecutiveFailures,
            Family::Outcome,
            Family::Phase,
            Family::TlsNotAfter,
            Family::TlsVersion,
            Family::TokenExpiresIn,
            Family::PasswordExpiresIn,
            Family::GraceLogins,
            Family::Runs,
            Family::OnDemand,
            Family::Skipped,
            Family::LogoutFailures,
            Family::Retries,
            Family::Interval,
            Family::Backoff,
            Family::Login,
            Family::Steps,
        ]);
        all
    })
}

impl Family {
    fn meta(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Family::Success => ("authprobe_probe_success", "gauge", "1 if the probe's last run succeeded, else 0."),
            Family::Duration => ("authprobe_probe_duration_seconds", "gauge", "Total duration of the probe's last run."),
            Family::Status(i) => (schemes()[i].metric, "gauge", schemes()[i].help),
            Family::LastRun => (
                "authprobe_probe_last_run_timestamp_seconds",
                "gauge",
                "When the probe's last run finished, in seconds since the Unix epoch.",
            ),
            Family::LastSuccess => (
                "authprobe_probe_last_success_timestamp_seconds",
                "gauge",
                "When the probe's last successful run finished, in seconds since the Unix epoch; 0 if none since startup.",
            ),
            Family::ConsecutiveFailures => (
                "authprobe_probe_consecutive_failures",
                "gauge",
                "Runs of the probe since its last success.",
            ),
            Family::Outcome => (
                "authprobe_probe_outcome",
                "gauge",
                "Always 1: one series per probe, labelled with its last run's result, State, Step, Reason and HTTP status (a protocol's own result code for families without HTTP).",
            ),
            Family::Phase => (
                "authprobe_probe_phase_duration_seconds",
                "gauge",
                "Duration of each phase of the first request of the probe's last run: resolve, connect, tls, processing (connection ready to response headers), transfer (body); phases not reached are absent.",
            ),
            Family::TlsNotAfter => (
                "authprobe_probe_tls_cert_not_after_timestamp_seconds",
                "gauge",
                "Earliest expiry (notAfter) in the certificate chain the target served on the probe's last run, in seconds since the Unix epoch; targets over TLS only (HTTPS, ldaps, StartTLS).",
            ),
            Family::TlsVersion => (
                "authprobe_probe_tls_version_info",
                "gauge",
                "Always 1, labelled with the TLS version negotiated on the probe's last run; targets over TLS only (HTTPS, ldaps, StartTLS).",
            ),
            Family::TokenExpiresIn => (
                "authprobe_probe_token_expires_in_seconds",
                "gauge",
                "Lifetime of the token the probe's last run was granted (OAuth 2.0 expires_in); only when the server stated one.",
            ),
            Family::PasswordExpiresIn => (
                "authprobe_probe_password_expires_in_seconds",
                "gauge",
                "Time until the probe account's password expires, as the server told the probe's last run (LDAP password policy warning, Active Directory's msDS-UserPasswordExpiryTimeComputed); negative once expired; only when told.",
            ),
            Family::GraceLogins => (
                "authprobe_probe_grace_logins_remaining",
                "gauge",
                "Logins left with the probe account's expired password, as the server told the probe's last run (LDAP password policy graceAuthNsRemaining); only when told.",
            ),
            Family::Runs => ("authprobe_probe_runs_total", "counter", "Finished scheduled runs of the probe, by result."),
            Family::OnDemand => (
                "authprobe_probe_on_demand_runs_total",
                "counter",
                "Runs of the probe made on demand (GET /probe), by result; a result appears when first seen.",
            ),
            Family::Skipped => (
                "authprobe_probe_skipped_total",
                "counter",
                "Scheduled ticks of the probe that started no run: overlap (previous run still going), missed (tick passed while the scheduler could not act) or backoff (the lockout guard holding the probe back after credential failures).",
            ),
            Family::LogoutFailures => (
                "authprobe_probe_logout_failures_total",
                "counter",
                "Runs of the probe whose end of session failed (ETNA POST /logout, OAuth 2.0 revocation; the login itself is not failed by it); only for probes with logout: true or revoke: true.",
            ),
            Family::Retries => (
                "authprobe_probe_retries_total",
                "counter",
                "Login attempts of the probe made again after a connection failure or timeout before any answer; only for probes with retries.",
            ),
            Family::Interval => (
                "authprobe_probe_interval_seconds",
                "gauge",
                "Time between the probe's scheduled runs; for a cron schedule, between its next two ticks when it was configured.",
            ),
            Family::Backoff => (
                "authprobe_probe_backoff_seconds",
                "gauge",
                "Extra delay between the probe's runs imposed by the lockout guard after repeated credential failures; 0 normally.",
            ),
            Family::Login => (
                "authprobe_probe_login_duration_seconds",
                "histogram",
                "Total duration of the probe's runs in which every request got an answer.",
            ),
            Family::Steps => (
                "authprobe_probe_step_duration_seconds",
                "histogram",
                "Duration of each request of the probe's runs, by the step it answered.",
            ),
        }
    }

    /// Whether the family is a counter or a histogram: one with `_created` in OpenMetrics.
    fn counts(self) -> bool {
        matches!(self.meta().1, "counter" | "histogram")
    }

    /// Whether the family has samples.
    fn present(self, seen: &Seen) -> bool {
        match self {
            Family::OnDemand => seen.on_demand,
            Family::Runs | Family::Skipped | Family::Interval | Family::Backoff | Family::Login => seen.any,
            Family::Steps => seen.stepped,
            Family::LogoutFailures => seen.logout,
            Family::Retries => seen.retries,
            Family::TlsNotAfter | Family::TlsVersion => seen.tls,
            Family::TokenExpiresIn => seen.lifetime,
            Family::PasswordExpiresIn => seen.password_expiry,
            Family::GraceLogins => seen.grace_logins,
            Family::Status(i) => seen.schemes[i],
            _ => seen.ran,
        }
    }

    /// Writes the family's lines of one probe; `at` is the family's place in [`families`];
    /// `om` for OpenMetrics.
    fn write(self, at: usize, labels: &str, r: &ProbeRecord, out: &mut Vec<u8>, om: Option<&OpenMetricsProbe>) {
        let lines = lines();
        let head = lines.heads[at].as_str();
        let gauge = |out: &mut Vec<u8>, v: Value| text::line(out, head, labels, "} ", v);
        // A counter's sample, and in OpenMetrics its `_created` beside it.
        let counter = |out: &mut Vec<u8>, tail: &str, n: u64| {
            text::line(out, head, labels, tail, Value::Int(n));
            if let Some(created) = om.and_then(|om| om.created.as_ref()) {
                text::line_raw(out, &lines.created_heads[at], labels, tail, created.as_bytes());
            }
        };
        match self {
            Family::Runs => {
                for (tail, n) in lines.results.iter().zip(r.runs) {
                    counter(out, tail, n);
                }
            }
            Family::OnDemand => {
                for (tail, n) in lines.results.iter().zip(r.on_demand.iter().flat_map(|c| c.iter())) {
                    if *n > 0 {
                        counter(out, tail, *n);
                    }
                }
            }
            Family::Skipped => {
                for (tail, n) in lines.skips.iter().zip(r.skipped) {
                    counter(out, tail, n);
                }
            }
            Family::LogoutFailures | Family::Retries => {
                let n = if matches!(self, Family::Retries) { r.retries } else { r.logout_failures };
                if let Some(n) = n {
                    counter(out, "} ", n);
                }
            }
            Family::Interval => gauge(out, Value::Float(r.interval.as_secs_f64())),
            Family::Backoff => gauge(out, Value::Float(r.backoff.as_secs_f64())),
            Family::Login => histogram_lines(out, &lines.login, labels, &r.login, om),
            Family::Steps => {
                for (step, h) in &r.steps {
                    histogram_lines(out, &lines.steps[step.index()], labels, h, om);
                }
            }
            _ => {
                let Some(last) = &r.last else { return };
                match self {
                    Family::Success => gauge(out, Value::Int(u64::from(last.result() == ResultClass::Success))),
                    Family::Duration => gauge(out, Value::Float(last.duration().as_secs_f64())),
                    Family::Status(i) => {
                        if last.outcome.scheme == schemes()[i] {
                            gauge(out, status_value(last.outcome.scheme, last.summary().status));
                        }
                    }
                    Family::LastRun => gauge(out, Value::Float(unix_seconds(last.finished))),
                    Family::LastSuccess => gauge(out, Value::Float(r.last_success.map_or(0.0, unix_seconds))),
                    Family::ConsecutiveFailures => gauge(out, Value::Int(r.consecutive_failures)),
                    Family::Outcome => outcome_sample(out, labels, last.summary(), last.outcome.scheme),
                    Family::Phase => {
                        let durations = last.outcome.phases.map(|p| p.durations()).unwrap_or_default();
                        for (tail, d) in lines.phases.iter().zip(durations) {
                            if let Some(d) = d {
                                text::line(out, head, labels, tail, Value::Float(d.as_secs_f64()));
                            }
                        }
                    }
                    Family::TlsNotAfter => {
                        if let Some(t) = last.outcome.tls.and_then(|t| t.cert_not_after_unix) {
                            gauge(out, Value::Float(t as f64));
                        }
                    }
                    Family::TlsVersion => {
                        if let Some(v) = last.outcome.tls.and_then(|t| t.version) {
                            text::line(out, head, labels, &text::tail(&[("version", v)]), Value::Int(1));
                        }
                    }
                    Family::TokenExpiresIn => {
                        if let Some(d) = last.outcome.token_expires_in {
                            gauge(out, Value::Float(d.as_secs_f64()));
                        }
                    }
                    Family::PasswordExpiresIn => {
                        if let Some(s) = last.outcome.account.and_then(|a| a.password_expires_in_seconds) {
                            gauge(out, Value::Float(s as f64));
                        }
                    }
                    Family::GraceLogins => {
                        if let Some(n) = last.outcome.account.and_then(|a| a.grace_logins_remaining) {
                            gauge(out, Value::Int(n));
                        }
                    }
                    _ => unreachable!("handled above"),
                }
            }
        }
    }
}

/// The fixed parts of the per-probe lines, rendered once for the process's life.
struct Lines {
    /// `name{` of each family, indexed like [`families`].
    heads: Vec<String>,
    /// `name_created{` of each counter family (its name without `_total`), indexed like
    /// [`families`]; empty for the others.
    created_heads: Vec<String>,
    /// `,result="…"} ` of each result, indexed like [`ResultClass::ALL`].
    results: Vec<String>,
    /// `,reason="…"} ` of each skip reason, indexed like [`SkipReason::ALL`].
    skips: Vec<String>,
    /// `,phase="…"} ` of each phase, indexed like [`crate::protocol::Phases::NAMES`].
    phases: Vec<String>,
    login: HistogramLines,
    /// Indexed by [`Step::index`].
    steps: Vec<HistogramLines>,
}

/// The fixed parts of one histogram's lines (one step's, for the step histogram).
struct HistogramLines {
    bucket: String,
    sum: String,
    count: String,
    created: String,
    /// `…,le="…"} ` of each bound, `+Inf` last.
    les: Vec<String>,
    /// The tail of the sum and count lines.
    end: String,
}

impl HistogramLines {
    fn new(name: &str, step: Option<&str>) -> Self {
        let step: Vec<(&str, &str)> = step.map(|s| ("step", s)).into_iter().collect();
        let les = LATENCY_BUCKETS.iter().map(|b| text::le(*b)).chain(["+Inf".to_owned()]);
        HistogramLines {
            bucket: format!("{name}_bucket{{"),
            sum: format!("{name}_sum{{"),
            count: format!("{name}_count{{"),
            created: format!("{name}_created{{"),
            les: les.map(|le| text::tail(&[step.as_slice(), &[("le", le.as_str())]].concat())).collect(),
            end: text::tail(&step),
        }
    }
}

fn lines() -> &'static Lines {
    static LINES: std::sync::OnceLock<Lines> = std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let steps_name = Family::Steps.meta().0;
        Lines {
            heads: families().iter().map(|f| format!("{}{{", f.meta().0)).collect(),
            created_heads: families()
                .iter()
                .map(|f| match f.meta() {
                    (name, "counter", _) => format!("{}_created{{", name.strip_suffix("_total").unwrap_or(name)),
                    _ => String::new(),
                })
                .collect(),
            results: ResultClass::ALL.iter().map(|r| text::tail(&[("result", r.as_str())])).collect(),
            skips: SkipReason::ALL.iter().map(|r| text::tail(&[("reason", r.as_str())])).collect(),
            phases: crate::protocol::Phases::NAMES.map(|p| text::tail(&[("phase", p)])).into(),
            login: HistogramLines::new(Family::Login.meta().0, None),
            steps: Step::all().map(|s| HistogramLines::new(steps_name, Some(s.as_str()))).collect(),
        }
    })
}

/// A probe's histogram; in OpenMetrics, each bucket with the exemplar of the run that last
/// landed in it, and `_created`.
fn histogram_lines<const N: usize>(
    out: &mut Vec<u8>,
    lines: &HistogramLines,
    labels: &str,
    h: &Histogram<N>,
    om: Option<&OpenMetricsProbe>,
) {
    for (i, (tail, n)) in lines.les.iter().zip(h.cumulative().into_iter().chain([h.count])).enumerate() {
        match om.zip(h.exemplar(i)) {
            Some((om, e)) => {
                let id = RunId { probe: om.key, run: e.run };
                text::line_with_exemplar(out, &lines.bucket, labels, tail, Value::Int(n), (&id, e.value(), e.at_ms()));
            }
            None => text::line(out, &lines.bucket, labels, tail, Value::Int(n)),
        }
    }
    text::line(out, &lines.sum, labels, &lines.end, Value::Float(h.sum));
    text::line(out, &lines.count, labels, &lines.end, Value::Int(h.count));
    if let Some(created) = om.and_then(|om| om.created.as_ref()) {
        text::line_raw(out, &lines.created, labels, &lines.end, created.as_bytes());
    }
}

/// `probe="…",target="…"` and the probe's static labels: once per probe set for scrapes (see
/// [`Metrics::labels_of`]), once per run for `GET /probe`.
fn probe_labels(p: &ProbeResults) -> String {
    text::label_pairs(
        [("probe", &*p.name), ("target", &*p.target)]
            .into_iter()
            .chain(p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    )
}

/// The metrics of one on-demand run, for `GET /probe` (as blackbox_exporter's `/probe`): the
/// last-run gauges of that run alone.
pub fn render_run(probe: &ProbeResults, outcome: &crate::protocol::Outcome) -> Vec<u8> {
    let labels = probe_labels(probe);
    let mut out = Vec::new();
    let gauge = |out: &mut Vec<u8>, family: Family, v: Value| {
        let (name, kind, help) = family.meta();
        text::header(out, name, kind, help, false);
        text::sample(out, name, "", &labels, &[], v);
    };
    gauge(&mut out, Family::Success, Value::Int(u64::from(outcome.is_success())));
    gauge(&mut out, Family::Duration, Value::Float(outcome.duration.as_secs_f64()));
    let scheme = outcome.scheme;
    text::header(&mut out, scheme.metric, "gauge", scheme.help, false);
    text::sample(&mut out, scheme.metric, "", &labels, &[], status_value(scheme, outcome.summary.status));
    let (name, kind, help) = Family::Outcome.meta();
    text::header(&mut out, name, kind, help, false);
    outcome_sample(&mut out, &labels, &outcome.summary, outcome.scheme);
    out
}

/// A status code as its scheme's gauge shows it: -1 for "no answer" where 0 is a code.
fn status_value(scheme: &Scheme, code: u16) -> Value {
    match scheme.gauge_value(code) {
        v if v < 0.0 => Value::Float(v),
        _ => Value::Int(u64::from(code)),
    }
}

/// The one `authprobe_probe_outcome` sample of a run.
fn outcome_sample(out: &mut Vec<u8>, labels: &str, summary: &Summary, scheme: &Scheme) {
    let mut status = itoa::Buffer::new();
    text::sample(out, Family::Outcome.meta().0, "", labels, &summary.labels(scheme, &mut status), Value::Int(1));
}

/// A histogram without labels of its own (the process-wide ones); the per-probe ones are
/// written by [`histogram_lines`].
fn histogram<const N: usize>(out: &mut Vec<u8>, name: &str, h: &Histogram<N>, les: &[String], created: Option<f64>) {
    for (le, n) in les.iter().map(String::as_str).chain(["+Inf"]).zip(h.cumulative().into_iter().chain([h.count])) {
        text::sample(out, name, "_bucket", "", &[("le", le)], Value::Int(n));
    }
    text::sample(out, name, "_sum", "", &[], Value::Float(h.sum));
    text::sample(out, name, "_count", "", &[], Value::Int(h.count));
    if let Some(created) = created {
        text::sample(out, name, "_created", "", &[], Value::Float(created));
    }
}

/// A process-wide counter (`name` with `_total`): its header and sample, and its `_created` when
/// given (OpenMetrics only).
fn process_counter(out: &mut Vec<u8>, name: &str, help: &str, value: u64, om: bool, created: Option<f64>) {
    text::header(out, name, "counter", help, om);
    text::sample(out, name, "", "", &[], Value::Int(value));
    if let Some(created) = created {
        text::sample(out, name.strip_suffix("_total").unwrap_or(name), "_created", "", &[], Value::Float(created));
    }
}

/// The per-target families of OAuth 2.0 discovery, from the newest facts of each target (keyed
/// by the target's rendered labels).
fn target_families(
    facts: &std::collections::BTreeMap<String, (std::time::SystemTime, crate::protocol::DiscoveryFacts)>,
    om: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    if facts.is_empty() {
        return out;
    }
    let labels: Vec<(&str, &crate::protocol::DiscoveryFacts)> =
        facts.iter().map(|(l, (_, f))| (l.as_str(), f)).collect();
    type Pick = fn(&crate::protocol::DiscoveryFacts) -> Option<Value>;
    let families: [(&str, &str, Pick); 4] = [
        (
            "authprobe_target_discovery_success",
            "1 if the target's last fetch of its discovery document and JWKS succeeded, else 0 (runs go on with the copy fetched before).",
            |f| Some(Value::Int(u64::from(f.ok))),
        ),
        (
            "authprobe_target_discovery_duration_seconds",
            "How long the target's last fetch of its discovery document and JWKS took.",
            |f| Some(Value::Float(f.duration.as_secs_f64())),
        ),
        ("authprobe_target_jwks_keys", "Keys in the target's JWKS, as last fetched.", |f| {
            f.jwks_keys.map(|n| Value::Int(n as u64))
        }),
        (
            "authprobe_target_jwks_last_change_timestamp_seconds",
            "When the target's JWKS was last seen to change (its first fetch included), in seconds since the Unix epoch: key rotations.",
            |f| f.jwks_changed_unix.map(|t| Value::Float(t as f64)),
        ),
    ];
    for (name, help, pick) in families {
        let values: Vec<(&str, Value)> = labels.iter().filter_map(|(l, f)| Some((*l, pick(f)?))).collect();
        if values.is_empty() {
            continue;
        }
        text::header(&mut out, name, "gauge", help, om);
        for (l, v) in values {
            text::sample(&mut out, name, "", l, &[], v);
        }
    }
    out
}

/// The state store's series, present unless state is kept in memory only.
fn storage_families(out: &mut Vec<u8>, s: &crate::results::StorageStatus, om: bool, created: Option<f64>) {
    let families: [(&str, &str, &str, Value); 6] = [
        (
            "authprobe_storage_up",
            "gauge",
            "Whether probe state is being saved to the storage path (0: the store could not be opened; state will not survive a restart).",
            Value::Int(u64::from(s.up)),
        ),
        (
            "authprobe_storage_restored_probes",
            "gauge",
            "Probes whose state (history, availability, lockout guard, last outcome) was restored at start.",
            Value::Int(s.restored_probes),
        ),
        ("authprobe_storage_writes_total", "counter", "Batches of changed probe state written.", Value::Int(s.writes)),
        (
            "authprobe_storage_write_failures_total",
            "counter",
            "Batches of probe state that could not be written (disk full, I/O errors); they are tried again with the next batch.",
            Value::Int(s.write_failures),
        ),
        (
            "authprobe_storage_last_write_success_timestamp_seconds",
            "gauge",
            "When a batch of probe state was last written, in seconds since the Unix epoch (0: not yet).",
            Value::Float(s.last_write_success.map_or(0.0, unix_seconds)),
        ),
        (
            "authprobe_storage_last_write_duration_seconds",
            "gauge",
            "How long the last batch of probe state took to write.",
            Value::Float(s.last_write_duration.as_secs_f64()),
        ),
    ];
    for (name, kind, help, value) in families {
        match (kind, value) {
            ("counter", Value::Int(n)) => process_counter(out, name, help, n, om, created),
            _ => {
                text::header(out, name, kind, help, om);
                text::sample(out, name, "", "", &[], value);
            }
        }
    }
}

/// The process's own families; `om` for OpenMetrics.
fn process_families(results: &Results, om: bool, created: bool) -> Vec<u8> {
    let (delay, watchdog_runs, reload) = (results.delay(), results.cron_watchdog_runs(), results.reload_status());
    // Every counter of the process started with it.
    let created = (om && created).then(|| unix_seconds(results.started));
    let mut out = Vec::new();
    let name = "authprobe_config_last_reload_successful";
    text::header(&mut out, name, "gauge", "Whether the last configuration reload succeeded.", om);
    text::sample(&mut out, name, "", "", &[], Value::Int(u64::from(reload.successful)));
    let name = "authprobe_config_last_reload_success_timestamp_seconds";
    text::header(
        &mut out,
        name,
        "gauge",
        "When the configuration was last loaded successfully, in seconds since the Unix epoch.",
        om,
    );
    text::sample(&mut out, name, "", "", &[], Value::Float(unix_seconds(reload.last_success)));
    let name = "authprobe_scheduler_delay_seconds";
    text::header(
        &mut out,
        name,
        "histogram",
        "How late runs started against their plan (cron ticks included), all probes.",
        om,
    );
    let les: Vec<String> = DELAY_BUCKETS.iter().map(|b| text::le(*b)).collect();
    histogram(&mut out, name, &delay, &les, created);
    process_counter(
        &mut out,
        "authprobe_scheduler_cron_watchdog_runs_total",
        "Cron ticks that tokio-cron-scheduler did not start within the grace period, started by authprobe's watchdog instead.",
        watchdog_runs,
        om,
        created,
    );
    if let Some(storage) = results.storage() {
        storage_families(&mut out, &storage, om, created);
    }
    // Tasks alive: flat in a healthy process, whatever it goes through; growth is a leak.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let name = "authprobe_runtime_alive_tasks";
        text::header(&mut out, name, "gauge", "Tasks alive in authprobe's async runtime.", om);
        text::sample(&mut out, name, "", "", &[], Value::Int(runtime.metrics().num_alive_tasks() as u64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_names_every_value_of_a_fixed_label() {
        let help = |f: Family| f.meta().2;
        for reason in SkipReason::ALL {
            assert!(help(Family::Skipped).contains(reason.as_str()), "skipped_total's help lacks {}", reason.as_str());
        }
        for phase in crate::protocol::Phases::NAMES {
            assert!(help(Family::Phase).contains(phase), "phase_duration_seconds' help lacks {phase}");
        }
        for family in [Family::TlsNotAfter, Family::TlsVersion] {
            assert!(help(family).contains("ldaps") && help(family).contains("StartTLS"), "{}", help(family));
        }
    }

    #[test]
    fn families_are_listed_in_exposition_order() {
        // `Lines::heads` is indexed like `families()`.
        let runs = families().iter().position(|f| *f == Family::Runs).unwrap();
        assert_eq!(lines().heads[runs], "authprobe_probe_runs_total{");
        let pin = crate::protocol::etna::SECUTITY_PIN.index();
        assert_eq!(lines().steps[pin].les[0], ",step=\"SecutityPin\",le=\"0.025\"} ");
        assert_eq!(lines().heads[2], "authprobe_probe_http_status_code{");
    }

    fn config(dir: &std::path::Path, team: &str) -> crate::config::Config {
        let path = dir.join(format!("{team}.yaml"));
        let text = format!(
            "targets:\n  - {{name: t, base_url: 'http://127.0.0.1:9/api', app_key: k}}\n\
             probes:\n  - {{name: p, target: t, username: u, password: pw, labels: {{team: {team}}}}}\n"
        );
        std::fs::write(&path, text).unwrap();
        crate::config::Config::load(&path).unwrap()
    }

    #[test]
    fn a_run_of_a_family_without_http_has_its_own_status_gauge_and_label() {
        let dir = tempfile::tempdir().unwrap();
        let results = Results::new(&config(dir.path(), "red").probes);
        let p = results.probe("p").unwrap();
        let text = String::from_utf8(render_run(&p, &crate::report::tests::ldap_outcome())).unwrap();
        assert!(text.contains("authprobe_probe_ldap_result_code{probe=\"p\",target=\"t\",team=\"red\"} 49"), "{text}");
        assert!(text.contains(",reason=\"none\",ldap_result_code=\"49\"} 1"), "{text}");
        assert!(!text.contains("http"), "{text}");
    }

    #[test]
    fn labels_rendered_once_follow_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let results = Arc::new(Results::new(&config(dir.path(), "red").probes));
        let metrics = Metrics::new(results.clone()).unwrap();
        let text = |m: &Metrics| String::from_utf8(m.render(Format::Text).flatten().collect()).unwrap();
        let red = |t: &str| t.matches(r#"{probe="p",target="t",team="red""#).count();
        let first = text(&metrics);
        assert!(first.contains(r#"authprobe_probe_interval_seconds{probe="p",target="t",team="red"} 60"#));
        assert_eq!(red(&text(&metrics)), red(&first), "a second scrape of the same set has the same series");
        results.apply(&config(dir.path(), "blue").probes);
        let second = text(&metrics);
        assert!(second.contains(r#"authprobe_probe_interval_seconds{probe="p",target="t",team="blue"} 60"#));
        assert_eq!(red(&second), 0, "no series keeps the labels of the replaced set");
    }
}
