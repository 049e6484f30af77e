//! probes.yaml: the model, its loading and its validation.
//!
//! Loading is all-or-nothing: [`Config::load`] either returns a fully validated configuration or
//! every problem found, each naming the file, line and field, and never a secret's value.

mod secrets;
pub mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::duration::{self, serde_prom};
use crate::protocol::oauth2::{ClientAuth, Endpoints, Grant, OAuth2Login, SigningKey, Validate};
use crate::protocol::{EtnaLogin, Expect, Flow, LoginSpec, OAuth2Target, TlsSettings};
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
/// Default age at which an OAuth 2.0 target's discovery document and JWKS are fetched again.
pub const DEFAULT_DISCOVERY_REFRESH: Duration = Duration::from_secs(300);
/// Default clock skew tolerated when checking a JWT's times.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
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
    #[serde(default)]
    probe_files: Vec<String>,
}

/// A file of `probe_files`: targets and probes only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbeFile {
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    probes: Vec<RawProbe>,
}

/// A file the configuration was read from, for locating its errors.
struct Place {
    file: PathBuf,
    base_dir: PathBuf,
    index: FieldIndex,
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
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    app_key: Option<SecretString>,
    #[serde(default)]
    app_key_file: Option<PathBuf>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    introspection_endpoint: Option<String>,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    client_auth: Option<String>,
    #[serde(default)]
    client_key_file: Option<PathBuf>,
    #[serde(default)]
    client_key_id: Option<String>,
    #[serde(default, with = "serde_prom::option")]
    discovery_refresh: Option<Duration>,
    #[serde(default, with = "serde_prom::option")]
    jwt_leeway: Option<Duration>,
}

/// `validate:` as written: a boolean (both families) or a method name (OAuth 2.0).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawValidate {
    Flag(bool),
    Method(String),
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
    #[serde(default)]
    username: Option<String>,
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
    validate: Option<RawValidate>,
    #[serde(default)]
    logout: Option<bool>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    lockout_guard: RawGuard,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    grant: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    refresh: Option<bool>,
    #[serde(default)]
    revoke: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// The validated model.

/// A validated probes.yaml.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Every configuration file read: this one, then those `probe_files` matched, in order.
    pub files: Vec<PathBuf>,
    /// The embedded simulator to start first, if any.
    pub simulator: Option<SimulatorSpec>,
    /// Targets by name order of the file.
    pub targets: Vec<Arc<Target>>,
    /// Probes in file order.
    pub probes: Vec<Probe>,
}

/// A server probes log in at: its protocol's settings, and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name, as referenced by probes and used as the `target` label.
    pub name: String,
    /// The protocol and what it needs.
    pub kind: TargetKind,
    /// How to trust it (HTTPS).
    pub tls: Arc<TlsSettings>,
    /// The proxy its requests go through, instead of `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
    pub proxy: Option<Url>,
}

/// A target's protocol family and its settings.
#[derive(Debug, Clone)]
pub enum TargetKind {
    /// `protocol: etna` (the default).
    Etna {
        /// API base URL.
        base_url: Url,
        /// `Et-App-Key`.
        app_key: SecretString,
    },
    /// `protocol: oauth2`: the authorization server and the client.
    OAuth2(Arc<OAuth2Target>),
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

/// The files `globs` match (relative to `base_dir`), each once, in the order of the globs and
/// by name within one; never the main file itself. A glob that is not valid is an error at its
/// place in the main file; one that matches nothing matches nothing, as Prometheus' rule_files.
fn probe_files(
    main: &Path,
    base_dir: &Path,
    globs: &[String],
    place: &Place,
    errors: &mut Vec<FileError>,
) -> Vec<PathBuf> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    // Files taken so far, the main one first, as canonical paths: each is read once.
    let mut seen = HashSet::from([canonical(main)]);
    let mut out = Vec::new();
    for (i, pattern) in globs.iter().enumerate() {
        match glob_files(base_dir, pattern) {
            Ok(files) => out.extend(files.into_iter().filter(|f| seen.insert(canonical(f)))),
            Err(e) => {
                errors.push(place.index.error(&place.file, format!("probe_files[{i}]"), format!("invalid glob: {e}")))
            }
        }
    }
    out
}

/// The files `pattern` (relative to `base_dir`) matches now, sorted by name.
pub(crate) fn glob_files(base_dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, glob::PatternError> {
    let mut files: Vec<PathBuf> =
        glob::glob(&base_dir.join(pattern).to_string_lossy())?.filter_map(Result::ok).filter(|p| p.is_file()).collect();
    files.sort();
    Ok(files)
}

impl Config {
    /// Every secret the file holds or names: app keys, passwords, pins and verification codes
    /// of the probes and of the embedded simulator's accounts (for [`crate::panics`]).
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut out: Vec<SecretString> = Vec::new();
        for t in &self.targets {
            match &t.kind {
                TargetKind::Etna { app_key, .. } => out.push(app_key.clone()),
                TargetKind::OAuth2(o) => out.extend(o.secrets().into_iter().cloned()),
            }
        }
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

    /// Reads and validates `path` and the files its `probe_files` match.
    pub fn load(path: &Path) -> Result<Config, FileErrors> {
        let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
        // The files read besides the main one, to redact their secrets from errors.
        let mut read = Vec::new();
        let loaded = yaml::load_file::<RawConfig>(path).map_err(FileErrors::from).and_then(|mut doc| {
            let main = Place { file: path.to_owned(), base_dir: base_dir.clone(), index: doc.index };
            let (mut places, mut parts, mut errors) = (vec![main], Vec::new(), Vec::new());
            let globs = std::mem::take(&mut doc.value.probe_files);
            parts.push((std::mem::take(&mut doc.value.targets), std::mem::take(&mut doc.value.probes)));
            for file in probe_files(path, &base_dir, &globs, &places[0], &mut errors) {
                read.push(file.clone());
                match yaml::load_file::<RawProbeFile>(&file) {
                    Ok(d) => {
                        let dir = file.parent().unwrap_or(Path::new(".")).to_owned();
                        places.push(Place { file, base_dir: dir, index: d.index });
                        parts.push((d.value.targets, d.value.probes));
                    }
                    Err(e) => errors.push(e),
                }
            }
            Validator { file: path, base_dir: &base_dir, index: &places[0].index, errors }
                .validate(doc.value, &places, parts)
        });
        // A secret misplaced by an edit (pasted as a key, say) would be quoted by the parser's
        // messages: remove every value the files give a secret field. An edit can also cut a
        // secret from its key (the value then reads as part of another field's): on a reload,
        // the secrets of the configuration running are removed as well.
        loaded.map_err(|mut errors| {
            for file in std::iter::once(path).chain(read.iter().map(PathBuf::as_path)) {
                if let Ok(text) = std::fs::read_to_string(file) {
                    errors.redact(&secrets::values_in(&text));
                }
            }
            errors.map_texts(crate::panics::redact);
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

impl<'a> Validator<'a> {
    /// Locates what follows in `place`'s file.
    fn at(&mut self, place: &'a Place) {
        self.file = &place.file;
        self.base_dir = &place.base_dir;
        self.index = &place.index;
    }

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

    fn validate(
        mut self,
        raw: RawConfig,
        places: &'a [Place],
        parts: Vec<(Vec<RawTarget>, Vec<RawProbe>)>,
    ) -> Result<Config, FileErrors> {
        let d = &raw.defaults;
        let default_interval = d.interval.unwrap_or(DEFAULT_INTERVAL);
        let default_timeout = d.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let default_body = d.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if default_interval.is_zero() {
            self.error("defaults.interval", "must be greater than 0s");
        }

        let simulator = raw.simulator.map(|s| self.simulator(s));

        let (mut raw_targets, mut raw_probes) = (Vec::new(), Vec::new());
        for (place, (targets, probes)) in places.iter().zip(parts) {
            raw_targets.extend(targets.into_iter().enumerate().map(|(i, t)| (place, i, t)));
            raw_probes.extend(probes.into_iter().enumerate().map(|(i, p)| (place, i, p)));
        }
        // Where each name was first defined, to name it in a duplicate's error.
        let elsewhere = |first: &Path, here: &Path| {
            if first == here {
                String::new()
            } else {
                format!(" (also in {})", first.display())
            }
        };
        let mut targets: Vec<Arc<Target>> = Vec::new();
        let mut target_names: HashMap<String, &Path> = HashMap::new();
        for (place, i, mut t) in raw_targets {
            self.at(place);
            let path = format!("targets[{i}]");
            self.check_name(&format!("{path}.name"), &t.name);
            if let Some(first) = target_names.get(&t.name).copied() {
                let also = elsewhere(first, &place.file);
                self.error(format!("{path}.name"), format!("duplicate target name {:?}{also}", t.name));
            } else {
                target_names.insert(t.name.clone(), &place.file);
            }
            let tls = self.tls(&format!("{path}.tls"), t.tls.take().unwrap_or_default());
            let proxy = t.proxy_url.take().and_then(|raw| self.proxy_url(&format!("{path}.proxy_url"), &raw));
            let kind = match t.protocol.as_deref().map(str::trim) {
                None | Some("etna") => self.etna_target(&path, &mut t),
                Some("oauth2") => self.oauth2_target(&path, &mut t),
                Some(other) => {
                    self.error(format!("{path}.protocol"), format!("unknown protocol {other:?}: use etna or oauth2"));
                    None
                }
            };
            let plain = match &kind {
                Some(TargetKind::Etna { base_url, .. }) => (base_url.scheme() == "http").then_some("base_url"),
                Some(TargetKind::OAuth2(o)) => (o.endpoint().scheme() == "http").then_some(if o.issuer.is_some() {
                    "issuer"
                } else {
                    "token_endpoint"
                }),
                None => None,
            };
            if let Some(field) = plain.filter(|_| tls.as_ref().is_some_and(|t| **t != TlsSettings::default())) {
                self.error(format!("{path}.tls"), format!("set for a target whose {field} is http, not https"));
            }
            if let (Some(kind), Some(tls)) = (kind, tls) {
                targets.push(Arc::new(Target { name: t.name, kind, tls, proxy }));
            }
        }

        let mut probes = Vec::new();
        let mut probe_names: HashMap<String, &Path> = HashMap::new();
        for (place, i, mut p) in raw_probes {
            self.at(place);
            let path = format!("probes[{i}]");
            self.check_name(&format!("{path}.name"), &p.name);
            if let Some(first) = probe_names.get(&p.name).copied() {
                let also = elsewhere(first, &place.file);
                self.error(format!("{path}.name"), format!("duplicate probe name {:?}{also}", p.name));
            } else {
                probe_names.insert(p.name.clone(), &place.file);
            }
            let target = targets.iter().find(|t| t.name == p.target).cloned();
            if target.is_none() && !target_names.contains_key(&p.target) {
                let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
                let known = if known.is_empty() {
                    "no targets are defined".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                self.error(format!("{path}.target"), format!("unknown target {:?} ({known})", p.target));
            }
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
            let max_body_bytes = p.max_body_bytes.unwrap_or(default_body);
            if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
                self.error(format!("{path}.max_body_bytes"), "must be between 1024 and 16777216");
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
            let labels = self.labels(&path, std::mem::take(&mut p.labels));

            let flow = match target.as_ref().map(|t| &t.kind) {
                Some(TargetKind::Etna { base_url, app_key }) => self.etna_probe(&path, &p, d, base_url, app_key),
                Some(TargetKind::OAuth2(server)) => self.oauth2_probe(&path, &p, server),
                None => None,
            };
            if let (Some(target), Some(flow), Some(schedule)) = (target, flow, schedule) {
                probes.push(Probe {
                    name: p.name,
                    target: target.name.clone(),
                    schedule,
                    labels: labels.into_iter().collect(),
                    login: LoginSpec {
                        flow,
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
            let files = places.iter().map(|p| p.file.clone()).collect();
            Ok(Config { file: places[0].file.clone(), files, simulator: simulator.flatten(), targets, probes })
        } else {
            Err(FileErrors(self.errors))
        }
    }

    /// Reports each of `fields` that is set as belonging to the other protocol.
    fn foreign(&mut self, path: &str, fields: &[(&str, bool)], belongs: &str) {
        for (name, set) in fields {
            if *set {
                self.error(format!("{path}.{name}"), format!("only for {belongs}"));
            }
        }
    }

    /// An ETNA target's own fields.
    fn etna_target(&mut self, path: &str, t: &mut RawTarget) -> Option<TargetKind> {
        let oauth2_only = [
            ("issuer", t.issuer.is_some()),
            ("token_endpoint", t.token_endpoint.is_some()),
            ("jwks_uri", t.jwks_uri.is_some()),
            ("userinfo_endpoint", t.userinfo_endpoint.is_some()),
            ("introspection_endpoint", t.introspection_endpoint.is_some()),
            ("revocation_endpoint", t.revocation_endpoint.is_some()),
            ("client_id", t.client_id.is_some()),
            ("client_secret", t.client_secret.is_some()),
            ("client_secret_file", t.client_secret_file.is_some()),
            ("client_auth", t.client_auth.is_some()),
            ("client_key_file", t.client_key_file.is_some()),
            ("client_key_id", t.client_key_id.is_some()),
            ("discovery_refresh", t.discovery_refresh.is_some()),
            ("jwt_leeway", t.jwt_leeway.is_some()),
        ];
        self.foreign(path, &oauth2_only, "protocol: oauth2 targets");
        let base_url = match &t.base_url {
            Some(raw) => self.base_url(&format!("{path}.base_url"), raw),
            None => {
                self.error(format!("{path}.base_url"), "missing: an ETNA target needs base_url");
                None
            }
        };
        let app_key = self.secret(path, "app_key", t.app_key.as_ref(), t.app_key_file.as_ref(), true);
        Some(TargetKind::Etna { base_url: base_url?, app_key: app_key? })
    }

    /// An OAuth 2.0 target's own fields.
    fn oauth2_target(&mut self, path: &str, t: &mut RawTarget) -> Option<TargetKind> {
        let etna_only = [
            ("base_url", t.base_url.is_some()),
            ("app_key", t.app_key.is_some()),
            ("app_key_file", t.app_key_file.is_some()),
        ];
        self.foreign(path, &etna_only, "protocol: etna targets");
        let before = self.errors.len();
        let url = |v: &mut Self, field: &str, raw: &Option<String>| {
            raw.as_deref().and_then(|r| v.base_url(&format!("{path}.{field}"), r))
        };
        let issuer = url(self, "issuer", &t.issuer);
        let endpoints = Endpoints {
            token: url(self, "token_endpoint", &t.token_endpoint),
            jwks: url(self, "jwks_uri", &t.jwks_uri),
            userinfo: url(self, "userinfo_endpoint", &t.userinfo_endpoint),
            introspection: url(self, "introspection_endpoint", &t.introspection_endpoint),
            revocation: url(self, "revocation_endpoint", &t.revocation_endpoint),
        };
        if t.issuer.is_none() && t.token_endpoint.is_none() {
            self.error(format!("{path}.issuer"), "missing: set issuer (for discovery) or token_endpoint");
        }
        let client_id =
            self.required_text(path, "client_id", t.client_id.as_deref(), "an oauth2 target needs client_id", false);
        let method = t.client_auth.as_deref().map(str::trim).unwrap_or("client_secret_basic");
        let has_secret = t.client_secret.is_some() || t.client_secret_file.is_some();
        let auth = match method {
            "client_secret_basic" | "client_secret_post" => {
                if t.client_key_file.is_some() {
                    self.error(format!("{path}.client_key_file"), format!("not used with client_auth: {method}"));
                }
                Some(if method == "client_secret_basic" {
                    ClientAuth::ClientSecretBasic
                } else {
                    ClientAuth::ClientSecretPost
                })
            }
            "none" | "private_key_jwt" => {
                if has_secret {
                    let field = if t.client_secret.is_some() { "client_secret" } else { "client_secret_file" };
                    self.error(format!("{path}.{field}"), format!("not used with client_auth: {method}"));
                }
                if method == "none" {
                    if t.client_key_file.is_some() {
                        self.error(format!("{path}.client_key_file"), "not used with client_auth: none");
                    }
                    Some(ClientAuth::None)
                } else {
                    match &t.client_key_file {
                        None => {
                            self.error(
                                format!("{path}.client_key_file"),
                                "missing: private_key_jwt needs client_key_file",
                            );
                            None
                        }
                        Some(file) => {
                            let full = self.base_dir.join(file);
                            let key = std::fs::read_to_string(&full)
                                .map_err(|e| format!("cannot read {}: {e}", full.display()))
                                .and_then(|pem| {
                                    SigningKey::from_pem(&pem, t.client_key_id.clone())
                                        .map_err(|e| format!("{}: {e}", full.display()))
                                });
                            match key {
                                Ok(k) => Some(ClientAuth::PrivateKeyJwt(k)),
                                Err(e) => {
                                    self.error(format!("{path}.client_key_file"), e);
                                    None
                                }
                            }
                        }
                    }
                }
            }
            other => {
                self.error(
                    format!("{path}.client_auth"),
                    format!("unknown method {other:?}: use client_secret_basic, client_secret_post, private_key_jwt or none"),
                );
                None
            }
        };
        let needs_secret = matches!(auth, Some(ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost));
        let client_secret = if needs_secret {
            self.secret(path, "client_secret", t.client_secret.as_ref(), t.client_secret_file.as_ref(), true)
        } else {
            None
        };
        if t.client_key_id.is_some() && !matches!(auth, Some(ClientAuth::PrivateKeyJwt(_))) {
            self.error(format!("{path}.client_key_id"), "only with client_auth: private_key_jwt");
        }
        let discovery_refresh = t.discovery_refresh.unwrap_or(DEFAULT_DISCOVERY_REFRESH);
        if discovery_refresh.is_zero() {
            self.error(format!("{path}.discovery_refresh"), "must be greater than 0s");
        }
        let leeway = t.jwt_leeway.unwrap_or(DEFAULT_JWT_LEEWAY);
        if self.errors.len() != before {
            return None;
        }
        let target = OAuth2Target::new(issuer, endpoints, client_id?, client_secret, auth?, discovery_refresh, leeway);
        // Without an issuer or a token endpoint it was refused above, with its place.
        target.ok().map(|t| TargetKind::OAuth2(Arc::new(t)))
    }

    /// The ETNA part of a probe of an ETNA target.
    fn etna_probe(
        &mut self,
        path: &str,
        p: &RawProbe,
        d: &RawDefaults,
        base_url: &Url,
        app_key: &SecretString,
    ) -> Option<Flow> {
        let oauth2_only = [
            ("grant", p.grant.is_some()),
            ("scope", p.scope.is_some()),
            ("audience", p.audience.is_some()),
            ("resource", p.resource.is_some()),
            ("refresh", p.refresh.is_some()),
            ("revoke", p.revoke.is_some()),
        ];
        self.foreign(path, &oauth2_only, "probes of protocol: oauth2 targets");
        // ETNA sends it in a header of its own.
        let username =
            self.required_text(path, "username", p.username.as_deref(), "an ETNA probe needs username", true);
        let password = self.secret(path, "password", p.password.as_ref(), p.password_file.as_ref(), true);
        let pin = self.secret(path, "pin", p.pin.as_ref(), p.pin_file.as_ref(), false);
        let verification_code = self.secret(
            path,
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

        let max_steps = p.max_steps.or(d.max_steps).unwrap_or(DEFAULT_MAX_STEPS);
        if !(1..=10).contains(&max_steps) {
            self.error(format!("{path}.max_steps"), "must be between 1 and 10");
        }
        let validate = match &p.validate {
            None => d.validate.unwrap_or(false),
            Some(RawValidate::Flag(on)) => *on,
            Some(RawValidate::Method(m)) => {
                self.error(
                    format!("{path}.validate"),
                    format!("{m:?} is for oauth2 targets: an ETNA probe validates with true or false"),
                );
                false
            }
        };
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
        Some(Flow::Etna(EtnaLogin {
            base_url: base_url.clone(),
            app_key: app_key.clone(),
            username: username?,
            password: password?,
            pin,
            verification_code,
            expect: expect?,
            max_steps,
            validate,
            logout,
        }))
    }

    /// The OAuth 2.0 part of a probe of an oauth2 target.
    fn oauth2_probe(&mut self, path: &str, p: &RawProbe, server: &Arc<OAuth2Target>) -> Option<Flow> {
        let etna_only = [
            ("pin", p.pin.is_some()),
            ("pin_file", p.pin_file.is_some()),
            ("verification_code", p.verification_code.is_some()),
            ("verification_code_file", p.verification_code_file.is_some()),
            ("expect", p.expect.is_some()),
            ("max_steps", p.max_steps.is_some()),
            ("logout", p.logout.is_some()),
        ];
        self.foreign(
            path,
            &etna_only,
            "probes of protocol: etna targets (an oauth2 probe ends its session with revoke)",
        );
        let before = self.errors.len();
        let grant = match p.grant.as_deref().map(str::trim) {
            Some("client_credentials") => {
                for (field, set) in [
                    ("username", p.username.is_some()),
                    ("password", p.password.is_some()),
                    ("password_file", p.password_file.is_some()),
                ] {
                    if set {
                        self.error(
                            format!("{path}.{field}"),
                            "not used with grant: client_credentials (the client logs in for itself)",
                        );
                    }
                }
                if p.refresh == Some(true) {
                    self.error(
                        format!("{path}.refresh"),
                        "grant: client_credentials issues no refresh token (RFC 6749 §4.4.3); set refresh: false",
                    );
                }
                Some(Grant::ClientCredentials)
            }
            Some("password") => {
                let username = self.required_text(
                    path,
                    "username",
                    p.username.as_deref(),
                    "grant: password needs username",
                    false,
                );
                let password = self.secret(path, "password", p.password.as_ref(), p.password_file.as_ref(), true);
                match (username, password) {
                    (Some(username), Some(password)) => Some(Grant::Password { username, password }),
                    _ => None,
                }
            }
            Some(other) => {
                self.error(
                    format!("{path}.grant"),
                    format!("unknown grant {other:?}: use client_credentials or password"),
                );
                None
            }
            None => {
                self.error(
                    format!("{path}.grant"),
                    "missing: an oauth2 probe needs grant (client_credentials or password)",
                );
                None
            }
        };
        let text = |v: &mut Self, field: &str, raw: &Option<String>| match raw.as_deref().map(expand_env) {
            None => None,
            Some(Ok(t)) if t.trim().is_empty() => {
                v.error(format!("{path}.{field}"), "must not be empty");
                None
            }
            Some(Ok(t)) => Some(t.trim().to_owned()),
            Some(Err(m)) => {
                v.error(format!("{path}.{field}"), m);
                None
            }
        };
        let scope = text(self, "scope", &p.scope);
        let audience = text(self, "audience", &p.audience);
        let resource = text(self, "resource", &p.resource);
        if let Some(r) = &resource {
            // RFC 8707 §2: an absolute URI without a fragment.
            if Url::parse(r).map_or(true, |u| u.fragment().is_some()) {
                self.error(format!("{path}.resource"), "must be an absolute URI without a fragment (RFC 8707)");
            }
        }
        let validate = match &p.validate {
            None | Some(RawValidate::Flag(false)) => Validate::No,
            Some(RawValidate::Method(m)) if m.trim() == "jwt" => Validate::Jwt,
            Some(RawValidate::Method(m)) if m.trim() == "userinfo" => Validate::Userinfo,
            Some(RawValidate::Method(m)) if m.trim() == "introspection" => Validate::Introspection,
            Some(RawValidate::Method(m)) if m.trim() == "false" => Validate::No,
            Some(other) => {
                let shown = match other {
                    RawValidate::Flag(f) => f.to_string(),
                    RawValidate::Method(m) => format!("{m:?}"),
                };
                self.error(
                    format!("{path}.validate"),
                    format!("{shown} is not a method: use jwt, userinfo, introspection or false"),
                );
                Validate::No
            }
        };
        let discovers = server.discovers();
        let openid = scope.as_deref().is_some_and(|s| s.split_whitespace().any(|w| w == "openid"));
        let missing = |own: &Option<Url>| own.is_none() && !discovers;
        match validate {
            Validate::Userinfo if !openid => {
                self.error(format!("{path}.validate"), "validate: userinfo needs the openid scope: add openid to scope")
            }
            Validate::Userinfo if missing(&server.endpoints.userinfo) => self.error(
                format!("{path}.validate"),
                "validate: userinfo, but the target has neither issuer discovery nor userinfo_endpoint",
            ),
            Validate::Introspection if missing(&server.endpoints.introspection) => self.error(
                format!("{path}.validate"),
                "validate: introspection, but the target has neither issuer discovery nor introspection_endpoint",
            ),
            Validate::Jwt if server.issuer.is_none() => self.error(
                format!("{path}.validate"),
                "validate: jwt needs the target's issuer (the iss every token must carry)",
            ),
            Validate::Jwt if missing(&server.endpoints.jwks) => self.error(
                format!("{path}.validate"),
                "validate: jwt, but the target has neither issuer discovery nor jwks_uri",
            ),
            _ => {}
        }
        let refresh = p.refresh.unwrap_or(false);
        let revoke = p.revoke.unwrap_or(false);
        if revoke && missing(&server.endpoints.revocation) {
            self.error(format!("{path}.revoke"), "the target has neither issuer discovery nor revocation_endpoint");
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Flow::OAuth2(OAuth2Login {
            target: server.clone(),
            grant: grant?,
            scope,
            audience,
            resource,
            validate,
            refresh,
            revoke,
        }))
    }

    /// The required text `field` of the item at `path`, `${VAR}` expanded. Missing (`needed`
    /// says why it is needed), blank, or with `header`, unsendable in an HTTP header: a located
    /// error and `None`.
    fn required_text(
        &mut self,
        path: &str,
        field: &str,
        value: Option<&str>,
        needed: &str,
        header: bool,
    ) -> Option<String> {
        let at = format!("{path}.{field}");
        let Some(raw) = value else {
            self.error(at, format!("missing: {needed}"));
            return None;
        };
        match expand_env(raw) {
            Ok(v) if v.trim().is_empty() => self.error(at, "must not be empty"),
            Ok(v) if header && reqwest::header::HeaderValue::from_str(&v).is_err() => {
                self.error(at, "contains characters that cannot be sent in an HTTP header")
            }
            Ok(v) => return Some(v),
            Err(m) => self.error(at, m),
        }
        None
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
                self.error(field, "must not contain credentials; set them in their own fields")
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
                    || block.rate_limit.is_some()
                    || block.oauth2.is_some();
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
