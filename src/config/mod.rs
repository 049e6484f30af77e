//! probes.yaml: the model, its loading and its validation.
//!
//! Loading is all-or-nothing: [`Config::load`] either returns a fully validated configuration or
//! every problem found, each naming the file, line and field, and never a secret's value. What
//! every target and probe has (names, schedule, limits, labels, TLS, proxy) is this module's;
//! each family's own fields are the family's ([`crate::protocol::Family`]), handed over by
//! [`raw`] and validated through [`check`]. The `simulator:` block is the simulator's.

mod check;
mod raw;
mod secrets;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::duration;
use crate::protocol::{Kind, LoginSpec, TlsSettings};
use crate::yaml::{self, FileError, FileErrors};

pub use secrets::expand_env;

/// Default interval between runs of a probe.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default deadline of one login.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
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
    // (and each family's status label, `ldap_result_code`: see check.rs)
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
// The validated model.

/// A validated probes.yaml.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Every configuration file read: this one, then those `probe_files` matched, in order.
    pub files: Vec<PathBuf>,
    /// Targets by name order of the file.
    pub targets: Vec<Arc<Target>>,
    /// Probes in file order.
    pub probes: Vec<Probe>,
}

/// A probe's static labels, sorted by name: shared by the probe and its results. (A slice: a
/// `BTreeMap` node costs half a kilobyte even for one label, times 10,000 probes.)
pub type Labels = Arc<[(String, String)]>;

/// A server probes log in at: its family's settings, and how to reach it.
#[derive(Debug)]
pub struct Target {
    /// Name, as referenced by probes and used as the `target` label (shared by its probes).
    pub name: Arc<str>,
    /// Its family and what the family needs.
    pub target: crate::protocol::Target,
    /// How to trust it, for targets reached over TLS.
    pub tls: Arc<TlsSettings>,
    /// The proxy its requests go through, instead of `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
    pub proxy: Option<Arc<Url>>,
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
    /// Unique name; the `probe` label (shared with its results).
    pub name: Arc<str>,
    /// Name of its target; the `target` label (shared with the target's other probes).
    pub target: Arc<str>,
    /// When it runs.
    pub schedule: Schedule,
    /// Static labels added to its series, sorted by name.
    pub labels: Labels,
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
    index: &yaml::FieldIndex,
    errors: &mut Vec<FileError>,
) -> Vec<PathBuf> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    // Files taken so far, the main one first, as canonical paths: each is read once.
    let mut seen = HashSet::from([canonical(main)]);
    let mut out = Vec::new();
    for (i, pattern) in globs.iter().enumerate() {
        match glob_files(base_dir, pattern) {
            Ok(files) => out.extend(files.into_iter().filter(|f| seen.insert(canonical(f)))),
            Err(e) => errors.push(index.error(main, format!("probe_files[{i}]"), format!("invalid glob: {e}"))),
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

/// Every field name whose value is a secret, whichever family's: errors never quote their values.
fn secret_fields() -> Vec<&'static str> {
    let mut fields: Vec<&'static str> = Kind::ALL.iter().flat_map(|k| k.secret_fields()).collect();
    fields.sort_unstable();
    fields.dedup();
    fields
}

impl Config {
    /// Every secret the configuration holds or names: its targets' and its probes' (for
    /// [`crate::panics`]).
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut out: Vec<SecretString> = Vec::new();
        for t in &self.targets {
            out.extend(t.target.secrets().into_iter().cloned());
        }
        for p in &self.probes {
            out.extend(p.login.secrets().into_iter().cloned());
        }
        out
    }

    /// Logs a warning for each target whose certificates are not verified, and each probe whose
    /// settings are unwise (see [`Config::warnings`]).
    pub fn warn_insecure(&self) {
        for t in self.targets.iter().filter(|t| t.tls.insecure_skip_verify) {
            tracing::warn!(
                target = %t.name,
                "insecure_skip_verify: the certificates of this target are not verified (for test environments only)"
            );
        }
        for (probes, warning) in self.warnings() {
            tracing::warn!(probes = %probes, "{warning}");
        }
    }

    /// What is allowed but unwise in the probes' settings (a password in the clear), each once
    /// with the probes it concerns (`a, b, c and 997 more`): 1,000 probes of one directory make
    /// one warning, not 1,000.
    pub fn warnings(&self) -> Vec<(String, String)> {
        let mut by_text: Vec<(String, Vec<&str>)> = Vec::new();
        for p in &self.probes {
            for w in p.login.login.warnings() {
                match by_text.iter_mut().find(|(text, _)| *text == w) {
                    Some((_, names)) => names.push(&p.name),
                    None => by_text.push((w, vec![&p.name])),
                }
            }
        }
        by_text
            .into_iter()
            .map(|(text, names)| {
                let shown = names.iter().take(3).copied().collect::<Vec<_>>().join(", ");
                let more = names.len().saturating_sub(3);
                let probes = if more > 0 { format!("{shown} and {more} more") } else { shown };
                (probes, text)
            })
            .collect()
    }

    /// Reads and validates `path` and the files its `probe_files` match. Writes nothing.
    pub fn load(path: &Path) -> Result<Config, FileErrors> {
        // The files read besides the main one, to redact their secrets from errors.
        let mut read = Vec::new();
        let loaded = load_files(path, &mut read);
        // A secret misplaced by an edit (pasted as a key, say) would be quoted by the parser's
        // messages: remove every value the files give a secret field. An edit can also cut a
        // secret from its key (the value then reads as part of another field's): on a reload,
        // the secrets of the configuration running are removed as well.
        loaded.map_err(|errors| {
            let files = std::iter::once(path).chain(read.iter().map(PathBuf::as_path));
            errors.without_secrets(files, &secret_fields(), crate::panics::redact)
        })
    }

    /// The probe called `name`.
    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| *p.name == *name)
    }
}

/// The first pass over one file: its text, and what every target and probe has.
struct First<T> {
    place: check::Place,
    text: String,
    value: T,
}

fn first<T: serde::de::DeserializeOwned>(file: &Path) -> Result<First<T>, FileError> {
    let text = yaml::read(file)?;
    let doc = yaml::parse_str::<T>(file, &text)?;
    let base_dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    Ok(First { place: check::Place { file: file.to_owned(), base_dir, index: doc.index }, text, value: doc.value })
}

/// Both passes over the main file and its probe files, then the validation.
fn load_files(path: &Path, read: &mut Vec<PathBuf>) -> Result<Config, FileErrors> {
    let mut main = first::<raw::RawConfig>(path)?;
    let mut errors = Vec::new();
    let globs = std::mem::take(&mut main.value.probe_files);
    let defaults = std::mem::take(&mut main.value.defaults);
    let mut files: Vec<(check::Place, String, Vec<raw::RawTarget>, Vec<raw::RawProbe>)> =
        vec![(main.place, main.text, std::mem::take(&mut main.value.targets), std::mem::take(&mut main.value.probes))];
    for file in probe_files(path, &files[0].0.base_dir.clone(), &globs, &files[0].0.index, &mut errors) {
        read.push(file.clone());
        match first::<raw::RawProbeFile>(&file) {
            Ok(f) => files.push((f.place, f.text, f.value.targets, f.value.probes)),
            Err(e) => errors.push(e),
        }
    }
    // Each target's family, by name (the first target of a name decides, as for probes).
    let mut families: HashMap<&str, Option<Kind>> = HashMap::new();
    for (_, _, targets, _) in &files {
        for t in targets {
            families.entry(t.name.as_str()).or_insert_with(|| check::target_kind(t.protocol.as_deref()));
        }
    }
    let mut places = Vec::new();
    let mut parts = Vec::new();
    let mut family_defaults = None;
    for (n, (place, text, targets, probes)) in files.iter().enumerate() {
        let kinds = raw::Kinds {
            targets: targets.iter().map(|t| check::target_kind(t.protocol.as_deref())).collect(),
            probes: probes.iter().map(|p| families.get(p.target.as_str()).copied().flatten()).collect(),
        };
        match yaml::parse_seed(&place.file, text, raw::FileSeed(&kinds)) {
            Ok(found) => {
                if n == 0 {
                    family_defaults = Some(found.defaults);
                }
                parts.push((kinds, found.targets, found.probes));
            }
            Err(e) if n == 0 => return Err(e.into()),
            Err(e) => {
                errors.push(e);
                parts.push((kinds, Vec::new(), Vec::new()));
            }
        }
    }
    let mut joined = Vec::new();
    for ((place, _, targets, probes), (kinds, target_parts, probe_parts)) in files.into_iter().zip(parts) {
        places.push(place);
        let targets = check::Read::join(targets, kinds.targets, target_parts);
        joined.push(check::Part { targets, probes: check::Read::join(probes, kinds.probes, probe_parts) });
    }
    let family_defaults = family_defaults.expect("the main file's second pass succeeded");
    check::Checker::new(&places, errors).validate(defaults, joined, family_defaults)
}

#[cfg(test)]
mod tests;
