//! probes.yaml: the model, its loading and its validation.
//!
//! Loading is all-or-nothing: [`Config::load`] either returns a fully validated configuration or
//! every problem found, each naming the file, line and field, and never a secret's value.

mod secrets;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::duration::{self, serde_prom};
use crate::protocol::{EtnaLogin, Expect, Flow, LoginSpec, TlsSettings};
use crate::simulator::{Settings, SimulatorFile, SimulatorSpec, SimulatorTls, SimulatorTlsFile, DEFAULT_LISTEN};
use crate::yaml::{self, FieldIndex, FileError, FileErrors};

pub use secrets::expand_env;

/// Default interval between runs of a probe.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default deadline of one login.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of requests one login may make.
pub const DEFAULT_MAX_STEPS: u32 = 3;
/// Default body cap.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Most transport retries a probe may ask for.
pub const MAX_RETRIES: u32 = 5;
/// Longest probe or target name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// A name that came from outside (a request), cut to the longest a real name can be, so that
/// echoing it in an answer is bounded.
pub fn bounded_name(text: &str) -> String {
    text.chars().take(MAX_NAME_CHARS).collect()
}

/// Label names authprobe sets itself; static labels may not use them.
pub const RESERVED_LABELS: &[&str] = &[
    "probe",
    "target",
    "result",
    "state",
    "step",
    "reason",
    "http_status",
    "location",
    "phase",
    "trigger",
    "version",
    "revision",
    "le",
    "quantile",
    "instance",
    "job",
];

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    simulator: Option<SimulatorFile>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    probes: Vec<RawProbe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default, with = "serde_prom::option")]
    interval: Option<Duration>,
    #[serde(default, with = "serde_prom::option")]
    timeout: Option<Duration>,
    #[serde(default)]
    max_steps: Option<u32>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    validate: Option<bool>,
    #[serde(default)]
    logout: Option<bool>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    lockout_guard: RawGuard,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    #[serde(default)]
    max_failures: Option<u32>,
    #[serde(default, with = "serde_prom::option")]
    max_backoff: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    base_url: String,
    #[serde(default)]
    app_key: Option<SecretString>,
    #[serde(default)]
    app_key_file: Option<PathBuf>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    proxy_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    target: String,
    username: String,
    #[serde(default)]
    password: Option<SecretString>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    pin: Option<SecretString>,
    #[serde(default)]
    pin_file: Option<PathBuf>,
    #[serde(default)]
    verification_code: Option<SecretString>,
    #[serde(default)]
    verification_code_file: Option<PathBuf>,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default, with = "serde_prom::option")]
    interval: Option<Duration>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default, with = "serde_prom::option")]
    timeout: Option<Duration>,
    #[serde(default)]
    max_steps: Option<u32>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    validate: Option<bool>,
    #[serde(default)]
    logout: Option<bool>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    lockout_guard: RawGuard,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// The validated model.

/// A validated probes.yaml.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// The embedded simulator to start first, if any.
    pub simulator: Option<SimulatorSpec>,
    /// Targets by name order of the file.
    pub targets: Vec<Arc<Target>>,
    /// Probes in file order.
    pub probes: Vec<Probe>,
}

/// An ETNA API endpoint and the app key used with it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name, as referenced by probes and used as the `target` label.
    pub name: String,
    /// API base URL.
    pub base_url: Url,
    /// `Et-App-Key`.
    pub app_key: SecretString,
    /// How to trust it (HTTPS).
    pub tls: Arc<TlsSettings>,
    /// The proxy its requests go through, instead of `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
    pub proxy: Option<Url>,
}

/// When a probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every so often, phase-spread by the scheduler.
    Interval(Duration),
    /// A 6-field cron expression with seconds, in UTC.
    Cron(String),
}

impl Schedule {
    /// The time between two runs: the interval, or for cron the gap between its next two ticks
    /// from now (a minute if the expression cannot be read or has no next ticks).
    pub fn period(&self) -> Duration {
        match self {
            Schedule::Interval(d) => *d,
            Schedule::Cron(expr) => {
                let next_two = || -> Option<Duration> {
                    let cron = parse_cron(expr).ok()?;
                    let first = cron.find_next_occurrence(&chrono::Utc::now(), false).ok()?;
                    let second = cron.find_next_occurrence(&first, false).ok()?;
                    (second - first).to_std().ok()
                };
                next_two().unwrap_or(Duration::from_secs(60))
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "every {}", duration::format(*d)),
            Schedule::Cron(c) => write!(f, "cron \"{c}\""),
        }
    }
}

/// One probe account and how to log in with it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Unique name; the `probe` label.
    pub name: String,
    /// Name of its target; the `target` label.
    pub target: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Static labels added to its series, sorted by name. (A vector: a `BTreeMap` node costs
    /// half a kilobyte even for one label, times 10,000 probes.)
    pub labels: Vec<(String, String)>,
    /// The login it performs.
    pub login: LoginSpec,
    /// When to back off so that failing logins do not lock the account.
    pub lockout_guard: LockoutGuard,
}

/// Backing off a probe whose credentials keep failing, before the server locks the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutGuard {
    /// Consecutive credential failures (`auth_failed`, `password_expired`,
    /// `pin_not_initialized`) before the probe backs off; 0 turns the guard off.
    pub max_failures: u32,
    /// The longest time between two runs while backing off.
    pub max_backoff: Duration,
}

impl Default for LockoutGuard {
    fn default() -> Self {
        LockoutGuard { max_failures: 3, max_backoff: Duration::from_secs(3600) }
    }
}

impl Probe {
    /// Whether `other` is the same probe with the same settings and secrets (a reload keeps such
    /// a probe's schedule untouched; a rotated password makes it a changed probe).
    pub fn same_as(&self, other: &Probe) -> bool {
        self.name == other.name
            && self.target == other.target
            && self.schedule == other.schedule
            && self.labels == other.labels
            && self.lockout_guard == other.lockout_guard
            && self.login.same_as(&other.login)
    }
}

/// The certificates of the PEM file `file`: at least one, or why not, naming the file.
pub fn read_certificates(file: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    match rustls::pki_types::CertificateDer::pem_file_iter(file).and_then(|i| i.collect::<Result<Vec<_>, _>>()) {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!("{} holds no PEM certificate", file.display())),
        Err(e) => Err(format!("cannot read certificates from {}: {e}", file.display())),
    }
}

/// Writes `text` to `path` (replacing it), creating its folder, the file with `mode`.
fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
    f.write_all(text.as_bytes())
}

/// The private key of the PEM file `file`, or why not: the file is named, never its content.
pub fn read_private_key(file: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::PrivateKeyDer::from_pem_file(file)
        .map_err(|e| format!("cannot read a private key from {}: {e}", file.display()))
}

/// Parses a cron expression exactly as tokio-cron-scheduler does (seconds required, UTC; when
/// both day-of-month and day-of-week are restricted, both must match).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

impl Config {
    /// Every secret the file holds or names: app keys, passwords, pins and verification codes
    /// of the probes and of the embedded simulator's accounts (for [`crate::panics`]).
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut out: Vec<SecretString> = self.targets.iter().map(|t| t.app_key.clone()).collect();
        for p in &self.probes {
            out.extend(p.login.secrets().into_iter().cloned());
        }
        if let Some(sim) = &self.simulator {
            out.extend(sim.settings.app_keys.iter().cloned());
            for a in &sim.settings.accounts {
                out.push(a.password.clone());
                out.extend(a.pin.iter().chain(&a.verification_code).cloned());
            }
        }
        out
    }

    /// Logs a warning for each target whose certificates are not verified.
    pub fn warn_insecure(&self) {
        for t in self.targets.iter().filter(|t| t.tls.insecure_skip_verify) {
            tracing::warn!(
                target = %t.name,
                "insecure_skip_verify: the certificates of this target are not verified (for test environments only)"
            );
        }
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, FileErrors> {
        let loaded = yaml::load_file::<RawConfig>(path).map_err(FileErrors::from).and_then(|doc| {
            Validator {
                file: path,
                base_dir: path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
                index: &doc.index,
                errors: Vec::new(),
            }
            .validate(doc.value)
        });
        // A secret misplaced by an edit (pasted as a key, say) would be quoted by the parser's
        // messages: remove every value the file gives a secret field.
        loaded.map_err(|mut errors| {
            if let Ok(text) = std::fs::read_to_string(path) {
                errors.redact(&secrets::values_in(&text));
            }
            errors
        })
    }

    /// The probe called `name`.
    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }
}

struct Validator<'a> {
    file: &'a Path,
    base_dir: &'a Path,
    index: &'a FieldIndex,
    errors: Vec<FileError>,
}

impl Validator<'_> {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(self.index.error(self.file, field, message));
    }

    fn secret(
        &mut self,
        path: &str,
        field: &str,
        inline: Option<&SecretString>,
        file: Option<&PathBuf>,
        required: bool,
    ) -> Option<SecretString> {
        match secrets::resolve(field, inline, file, self.base_dir, required) {
            Ok(v) => v,
            Err((f, m)) => {
                self.error(format!("{path}.{f}"), m);
                None
            }
        }
    }

    fn validate(mut self, raw: RawConfig) -> Result<Config, FileErrors> {
        let d = &raw.defaults;
        let default_interval = d.interval.unwrap_or(DEFAULT_INTERVAL);
        let default_timeout = d.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let default_max_steps = d.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
        let default_body = d.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if default_interval.is_zero() {
            self.error("defaults.interval", "must be greater than 0s");
        }

        let simulator = raw.simulator.map(|s| self.simulator(s));

        let mut targets: Vec<Arc<Target>> = Vec::new();
        let mut target_names = HashSet::new();
        for (i, t) in raw.targets.into_iter().enumerate() {
            let path = format!("targets[{i}]");
            self.check_name(&format!("{path}.name"), &t.name);
            if !target_names.insert(t.name.clone()) {
                self.error(format!("{path}.name"), format!("duplicate target name {:?}", t.name));
            }
            let base_url = self.base_url(&format!("{path}.base_url"), &t.base_url);
            let app_key = self.secret(&path, "app_key", t.app_key.as_ref(), t.app_key_file.as_ref(), true);
            let tls = self.tls(&format!("{path}.tls"), t.tls.unwrap_or_default());
            let proxy = t.proxy_url.as_deref().and_then(|raw| self.proxy_url(&format!("{path}.proxy_url"), raw));
            if base_url.as_ref().is_some_and(|u| u.scheme() == "http")
                && tls.as_ref().is_some_and(|t| **t != TlsSettings::default())
            {
                self.error(format!("{path}.tls"), "set for a target whose base_url is http, not https");
            }
            if let (Some(base_url), Some(app_key), Some(tls)) = (base_url, app_key, tls) {
                targets.push(Arc::new(Target { name: t.name, base_url, app_key, tls, proxy }));
            }
        }

        let mut probes = Vec::new();
        let mut probe_names = HashSet::new();
        for (i, p) in raw.probes.into_iter().enumerate() {
            let path = format!("probes[{i}]");
            self.check_name(&format!("{path}.name"), &p.name);
            if !probe_names.insert(p.name.clone()) {
                self.error(format!("{path}.name"), format!("duplicate probe name {:?}", p.name));
            }
            let target = targets.iter().find(|t| t.name == p.target).cloned();
            if target.is_none() && !target_names.contains(&p.target) {
                let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
                let known = if known.is_empty() {
                    "no targets are defined".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                self.error(format!("{path}.target"), format!("unknown target {:?} ({known})", p.target));
            }
            let username = match expand_env(&p.username) {
                Ok(u) if u.is_empty() => {
                    self.error(format!("{path}.username"), "must not be empty");
                    None
                }
                Ok(u) if reqwest::header::HeaderValue::from_str(&u).is_err() => {
                    self.error(format!("{path}.username"), "contains characters that cannot be sent in an HTTP header");
                    None
                }
                Ok(u) => Some(u),
                Err(m) => {
                    self.error(format!("{path}.username"), m);
                    None
                }
            };
            let password = self.secret(&path, "password", p.password.as_ref(), p.password_file.as_ref(), true);
            let pin = self.secret(&path, "pin", p.pin.as_ref(), p.pin_file.as_ref(), false);
            let verification_code = self.secret(
                &path,
                "verification_code",
                p.verification_code.as_ref(),
                p.verification_code_file.as_ref(),
                false,
            );
            let expect = match p.expect.as_deref() {
                None => Some(Expect::Succeeded),
                Some(text) => {
                    let e = Expect::parse(text);
                    if e.is_none() {
                        self.error(
                            format!("{path}.expect"),
                            format!("unknown value {text:?}: use Succeeded, SecutityPin or VerificationCode"),
                        );
                    }
                    e
                }
            };
            let schedule = match (p.interval, &p.schedule) {
                (Some(_), Some(_)) => {
                    self.error(format!("{path}.schedule"), "set either interval or schedule, not both");
                    None
                }
                (Some(d), None) if d.is_zero() => {
                    self.error(format!("{path}.interval"), "must be greater than 0s");
                    None
                }
                (Some(d), None) => Some(Schedule::Interval(d)),
                (None, Some(expr)) => match parse_cron(expr) {
                    Ok(_) => Some(Schedule::Cron(expr.trim().to_owned())),
                    Err(e) => {
                        self.error(
                            format!("{path}.schedule"),
                            format!("invalid cron expression (6 fields with seconds, UTC): {e}"),
                        );
                        None
                    }
                },
                (None, None) => Some(Schedule::Interval(default_interval)),
            };
            let timeout = p.timeout.unwrap_or(default_timeout);
            let timeout_field =
                if p.timeout.is_some() { format!("{path}.timeout") } else { "defaults.timeout".to_owned() };
            if timeout.is_zero() {
                self.error(timeout_field, "must be greater than 0s");
            } else if let Some(Schedule::Interval(every)) = &schedule {
                if timeout > *every {
                    self.error(
                        timeout_field,
                        format!(
                            "timeout {} is longer than the interval {} of probe {:?}",
                            duration::format(timeout),
                            duration::format(*every),
                            p.name
                        ),
                    );
                }
            }
            let max_steps = p.max_steps.unwrap_or(default_max_steps);
            if !(1..=10).contains(&max_steps) {
                self.error(format!("{path}.max_steps"), "must be between 1 and 10");
            }
            let max_body_bytes = p.max_body_bytes.unwrap_or(default_body);
            if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
                self.error(format!("{path}.max_body_bytes"), "must be between 1024 and 16777216");
            }
            let validate = p.validate.or(d.validate).unwrap_or(false);
            let logout = p.logout.or(d.logout).unwrap_or(false);
            if let Some(Expect::Step(step)) = expect {
                // Only a login that ends in Succeeded has a final token to check or log out.
                for (on, field, verb, set_here) in [
                    (validate, "validate", "validate", p.validate.is_some()),
                    (logout, "logout", "log out", p.logout.is_some()),
                ] {
                    if on {
                        let at = if set_here { format!("{path}.{field}") } else { format!("defaults.{field}") };
                        self.error(
                            at,
                            format!(
                                "probe {:?} expects {step} and never gets a final token to {verb}; set {field}: false for it",
                                p.name
                            ),
                        );
                    }
                }
            }
            let retries = p.retries.or(d.retries).unwrap_or(0);
            if retries > MAX_RETRIES {
                let at = if p.retries.is_some() { format!("{path}.retries") } else { "defaults.retries".to_owned() };
                self.error(at, format!("must be between 0 and {MAX_RETRIES}"));
            }
            let built_in = LockoutGuard::default();
            let lockout_guard = LockoutGuard {
                max_failures: p
                    .lockout_guard
                    .max_failures
                    .or(d.lockout_guard.max_failures)
                    .unwrap_or(built_in.max_failures),
                max_backoff: p
                    .lockout_guard
                    .max_backoff
                    .or(d.lockout_guard.max_backoff)
                    .unwrap_or(built_in.max_backoff),
            };
            if lockout_guard.max_backoff.is_zero() {
                let at = if p.lockout_guard.max_backoff.is_some() { path.clone() } else { "defaults".to_owned() };
                self.error(format!("{at}.lockout_guard.max_backoff"), "must be greater than 0s");
            }
            let labels = self.labels(&path, p.labels);

            if let (Some(target), Some(username), Some(password), Some(expect), Some(schedule)) =
                (target, username, password, expect, schedule)
            {
                probes.push(Probe {
                    name: p.name,
                    target: target.name.clone(),
                    schedule,
                    labels: labels.into_iter().collect(),
                    login: LoginSpec {
                        flow: Flow::Etna(EtnaLogin {
                            base_url: target.base_url.clone(),
                            app_key: target.app_key.clone(),
                            username,
                            password,
                            pin,
                            verification_code,
                            expect,
                            max_steps,
                            validate,
                            logout,
                        }),
                        timeout,
                        max_body_bytes,
                        retries,
                        tls: target.tls.clone(),
                        proxy: target.proxy.clone(),
                    },
                    lockout_guard,
                });
            }
        }

        if self.errors.is_empty() {
            Ok(Config { file: self.file.to_owned(), simulator: simulator.flatten(), targets, probes })
        } else {
            Err(FileErrors(self.errors))
        }
    }

    fn check_name(&mut self, field: &str, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_CHARS
            && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            self.error(field, format!("invalid name {name:?}: use letters, digits, '_', '-' and '.', starting with a letter or digit (at most 128)"));
        }
    }

    /// `raw` with `${VAR}` expanded, or an error at `field`.
    fn expanded(&mut self, field: &str, raw: &str) -> Option<String> {
        expand_env(raw).map_err(|m| self.error(field, m)).ok()
    }

    fn base_url(&mut self, field: &str, raw: &str) -> Option<Url> {
        let text = self.expanded(field, raw)?;
        // The URL is not echoed: it might carry credentials, which are rejected below.
        match Url::parse(text.trim()) {
            Err(e) => self.error(field, format!("invalid URL: {e}")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => self.error(field, "scheme must be http or https"),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                self.error(field, "must not contain credentials; use app_key, username and password")
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                self.error(field, "must not have a query or fragment")
            }
            Ok(u) => return Some(u),
        }
        None
    }

    /// A target's `tls:` block, its files read and checked now.
    fn tls(&mut self, path: &str, raw: RawTls) -> Option<Arc<TlsSettings>> {
        use rustls::pki_types::{CertificateDer, ServerName};
        let before = self.errors.len();
        let mut settings = TlsSettings::default();
        settings.insecure_skip_verify = raw.insecure_skip_verify;
        let certs = |v: &mut Self, field: &str, file: &Path| -> Option<Vec<CertificateDer<'static>>> {
            read_certificates(&v.base_dir.join(file)).map_err(|e| v.error(format!("{path}.{field}"), e)).ok()
        };
        if let Some(file) = &raw.ca_file {
            settings.roots = certs(self, "ca_file", file);
        }
        if let Some(name) = &raw.server_name {
            match ServerName::try_from(name.clone()) {
                Ok(n) => settings.server_name = Some(n),
                Err(_) => self.error(format!("{path}.server_name"), format!("invalid server name {name:?}")),
            }
        }
        match (&raw.cert_file, &raw.key_file) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                let chain = certs(self, "cert_file", cert);
                let key = read_private_key(&self.base_dir.join(key))
                    .map_err(|e| self.error(format!("{path}.key_file"), e))
                    .ok();
                if let (Some(chain), Some(key)) = (chain, key) {
                    settings.client_auth = Some((chain, key));
                }
            }
            (Some(_), None) => self.error(format!("{path}.key_file"), "missing: cert_file needs key_file"),
            (None, Some(_)) => self.error(format!("{path}.cert_file"), "missing: key_file needs cert_file"),
        }
        (self.errors.len() == before).then(|| Arc::new(settings))
    }

    fn proxy_url(&mut self, field: &str, raw: &str) -> Option<Url> {
        let text = self.expanded(field, raw)?;
        // Not echoed: a proxy URL may carry credentials.
        match Url::parse(text.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https" | "socks5") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.error(field, "must be an http://, https:// or socks5:// URL with a host");
                None
            }
            Err(e) => {
                self.error(field, format!("invalid URL: {e}"));
                None
            }
        }
    }

    fn labels(&mut self, path: &str, raw: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, value) in raw {
            let field = format!("{path}.labels.{name}");
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(&field, format!("invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"));
            } else if name.starts_with("__") {
                self.error(&field, "label names starting with __ are reserved by Prometheus");
            } else if RESERVED_LABELS.contains(&name.as_str()) {
                self.error(&field, format!("label {name:?} is set by authprobe itself"));
            } else {
                match expand_env(&value) {
                    Ok(v) if v.chars().count() > 256 => self.error(&field, "label value longer than 256 characters"),
                    Ok(v) => {
                        out.insert(name, v);
                    }
                    Err(m) => self.error(&field, m),
                }
            }
        }
        out
    }

    fn simulator(&mut self, mut block: SimulatorFile) -> Option<SimulatorSpec> {
        let listen_text = block.listen.take().unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = self.address("simulator.listen", &listen_text);
        let tls = block.tls.take().map(|t| self.simulator_tls(t));
        let settings = match block.accounts_file.take() {
            Some(file) => {
                let inline = block.app_keys.is_some()
                    || block.accounts.is_some()
                    || block.base_path.is_some()
                    || block.rate_limit.is_some();
                if inline {
                    self.error(
                        "simulator.accounts_file",
                        "set either accounts_file or inline app_keys/accounts, not both",
                    );
                }
                match Settings::load(&self.base_dir.join(&file)) {
                    Ok(s) => Some(s),
                    Err(errors) => {
                        self.errors.extend(errors.0);
                        None
                    }
                }
            }
            None => Some(Settings::from_fields(block, "simulator.", self.file, self.index, &mut self.errors)),
        };
        let tls = match tls {
            Some(t) => Some(t?),
            None => None,
        };
        Some(SimulatorSpec { listen: listen?, settings: settings?, tls })
    }

    fn address(&mut self, field: &str, text: &str) -> Option<SocketAddr> {
        let parsed = text.parse::<SocketAddr>();
        parsed.map_err(|_| self.error(field, format!("invalid address {text:?}: expected IP:PORT"))).ok()
    }

    /// `simulator.tls`: its certificate files, made first when either is missing or the
    /// certificate expires within a day (so that targets' `ca_file` can name the certificate).
    /// Made files are kept: a reload or a restart serves and trusts the same certificate.
    fn simulator_tls(&mut self, raw: SimulatorTlsFile) -> Option<SimulatorTls> {
        let listen = self.address("simulator.tls.listen", &raw.listen)?;
        let (cert, key) = (self.base_dir.join(&raw.cert_file), self.base_dir.join(&raw.key_file));
        let usable = cert.exists()
            && key.exists()
            && read_certificates(&cert).is_ok_and(|c| crate::simulator::certificate::valid_for(&c, 1));
        if !usable {
            let names = vec!["localhost".to_owned(), listen.ip().to_string()];
            let written = crate::simulator::certificate::make(&names).and_then(|(cert_pem, key_pem)| {
                write_new(&key, &key_pem, 0o600).map_err(|e| format!("cannot write {}: {e}", key.display()))?;
                write_new(&cert, &cert_pem, 0o644).map_err(|e| format!("cannot write {}: {e}", cert.display()))
            });
            if let Err(e) = written {
                self.error("simulator.tls.cert_file", e);
                return None;
            }
            tracing::info!(cert_file = %cert.display(), "made a self-signed certificate for the simulator");
        }
        let chain = read_certificates(&cert).map_err(|e| self.error("simulator.tls.cert_file", e)).ok()?;
        let key = read_private_key(&key).map_err(|e| self.error("simulator.tls.key_file", e)).ok()?;
        let config = crate::simulator::certificate::server_config(chain, key)
            .map_err(|e| self.error("simulator.tls", e))
            .ok()?;
        Some(SimulatorTls { listen, config })
    }
}

#[cfg(test)]
mod tests;
