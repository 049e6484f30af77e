//! Validation: what every target and probe has is checked here, each family's own fields by
//! the family, through [`At`], which locates what the family reports at its place in its file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

use super::raw::{common_fields, FamilyDefaults, Fields, Item, RawDefaults, RawGuard, RawProbe, RawTarget, RawTls};
use super::{
    parse_cron, secrets, Config, LockoutGuard, Probe, Schedule, Target, DEFAULT_INTERVAL, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT, MAX_NAME_CHARS, MAX_RETRIES, RESERVED_LABELS,
};
use crate::duration;
use crate::protocol::family::Secret;
use crate::protocol::{read_certificates, read_private_key, Kind, LoginSpec, TlsSettings, Validator};
use crate::yaml::{FieldIndex, FileError, FileErrors};

/// A file the configuration was read from, for locating its errors.
pub(super) struct Place {
    pub file: PathBuf,
    pub base_dir: PathBuf,
    pub index: FieldIndex,
}

/// One file's targets and probes, both passes.
pub(super) struct Part {
    pub targets: Vec<Read<RawTarget>>,
    pub probes: Vec<Read<RawProbe>>,
}

/// A target or probe as both passes read it.
pub(super) struct Read<R> {
    /// What every one has.
    pub raw: R,
    /// Its family as the first pass found it (a probe's, its target's).
    pub kind: Option<Kind>,
    /// The family's fields.
    pub fields: Option<Fields>,
    /// Fields neither common nor its family's.
    pub strays: Vec<String>,
}

impl<R> Read<R> {
    /// The items of one list of a file, from the first pass (`raw`, `kinds`) and the second
    /// (`parts`, empty when it failed).
    pub fn join(raw: Vec<R>, kinds: Vec<Option<Kind>>, parts: Vec<(Option<Fields>, Vec<String>)>) -> Vec<Read<R>> {
        let mut parts = parts.into_iter();
        raw.into_iter()
            .zip(kinds)
            .map(|(raw, kind)| {
                let (fields, strays) = parts.next().unwrap_or_default();
                Read { raw, kind, fields, strays }
            })
            .collect()
    }
}

/// Everything found wrong so far, each located in its file.
pub(super) struct Checker<'a> {
    places: &'a [Place],
    /// The place of what is being checked.
    at: usize,
    pub errors: Vec<FileError>,
}

impl<'a> Checker<'a> {
    pub fn new(places: &'a [Place], errors: Vec<FileError>) -> Self {
        Checker { places, at: 0, errors }
    }

    fn place(&self) -> &'a Place {
        &self.places[self.at]
    }

    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let place = self.place();
        self.errors.push(place.index.error(&place.file, field, message));
    }

    /// An error at `field` of the main file (`defaults:`).
    fn main_error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let main = &self.places[0];
        self.errors.push(main.index.error(&main.file, field, message));
    }

    /// A field no family takes, or one of another family, at `path` (`targets[0]`).
    fn stray(&mut self, path: &str, item: Item, key: &str, own: Option<Kind>) {
        let knowers = item.known_by(key);
        if knowers.is_empty() || own.is_none() {
            // As serde words it, at the field but named for the block it is in: what the block
            // takes, its family's fields (every family's, where it has none).
            let mut expected: Vec<&str> = common_fields(item).to_vec();
            let kinds = match &own {
                Some(kind) => std::slice::from_ref(kind),
                None => Kind::ALL,
            };
            for kind in kinds {
                for field in item.fields(*kind) {
                    if !expected.contains(field) {
                        expected.push(field);
                    }
                }
            }
            let place = self.place();
            let field_path = if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
            let position = place.index.position(&field_path);
            let message = crate::yaml::unknown_field(key, &expected);
            self.errors.push(FileError { file: place.file.clone(), position, field: path.to_owned(), message });
            return;
        }
        let names: Vec<&str> = knowers.iter().map(|k| k.name()).collect();
        let whose = match item {
            Item::Target => format!("only for protocol: {} targets", names.join(" or ")),
            Item::Probe => format!("only for probes of protocol: {} targets", names.join(" or ")),
            Item::Defaults => format!("only for protocol: {} probes", names.join(" or ")),
        };
        let hint = own.and_then(|k| k.field_hint(key)).map(|h| format!(" ({h})")).unwrap_or_default();
        self.error(format!("{path}.{key}"), format!("{whose}{hint}"));
    }

    pub fn validate(
        mut self,
        main: RawDefaults,
        parts: Vec<Part>,
        family_defaults: FamilyDefaults,
    ) -> Result<Config, FileErrors> {
        let default_interval = main.interval.unwrap_or(DEFAULT_INTERVAL);
        let default_timeout = main.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let default_body = main.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if default_interval.is_zero() {
            self.error("defaults.interval", "must be greater than 0s");
        }
        let FamilyDefaults { fields: family_defaults, problems, strays } = family_defaults;
        for (field, message) in problems {
            let at = if field.is_empty() { "defaults".to_owned() } else { format!("defaults.{field}") };
            self.error(at, message);
        }
        for key in strays {
            self.stray("defaults", Item::Defaults, &key, None);
        }

        let places = self.places;
        let mut targets: Vec<Arc<Target>> = Vec::new();
        let mut target_names: HashMap<String, &Path> = HashMap::new();
        let mut probe_parts = Vec::new();
        for (at, part) in parts.into_iter().enumerate() {
            self.at = at;
            let file = &places[at].file;
            for (i, Read { raw: mut t, fields, strays, .. }) in part.targets.into_iter().enumerate() {
                let path = format!("targets[{i}]");
                self.unique_name(&mut target_names, "target", &path, &t.name, file);
                let kind = target_kind(t.protocol.as_deref());
                if kind.is_none() {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    let other = t.protocol.as_deref().unwrap_or_default().trim();
                    self.error(
                        format!("{path}.protocol"),
                        format!("unknown protocol {other:?}: use {}", known.join(" or ")),
                    );
                }
                for key in strays {
                    self.stray(&path, Item::Target, &key, kind);
                }
                let tls_set = t.tls.as_ref().is_some_and(|raw| raw.sets_anything());
                let tls = self.tls(&format!("{path}.tls"), t.tls.take().unwrap_or_default());
                let proxy_set = t.proxy_url.is_some();
                let proxy = t.proxy_url.take().and_then(|raw| self.proxy_url(&format!("{path}.proxy_url"), &raw));
                let validated = match (kind, fields) {
                    (Some(kind), Some(Fields::Target(fields))) => {
                        let mut v = At {
                            checker: &mut self,
                            path: path.clone(),
                            name: t.name.clone(),
                            tls: tls_set,
                            proxy: proxy_set,
                        };
                        kind.target(fields, &mut v)
                    }
                    _ => None,
                };
                if let (Some(target), Some(tls)) = (validated, tls) {
                    let name = t.name.into();
                    targets.push(Arc::new(Target { name, target, tls, proxy: proxy.map(Arc::new) }));
                }
            }
            probe_parts.push(part.probes);
        }

        let mut probes = Vec::new();
        let mut probe_names: HashMap<String, &Path> = HashMap::new();
        for (at, part) in probe_parts.into_iter().enumerate() {
            self.at = at;
            let file = &places[at].file;
            for (i, Read { raw: mut p, kind, fields, strays }) in part.into_iter().enumerate() {
                let path = format!("probes[{i}]");
                self.unique_name(&mut probe_names, "probe", &path, &p.name, file);
                let target = targets.iter().find(|t| *t.name == *p.target).cloned();
                if target.is_none() && !target_names.contains_key(&p.target) {
                    let known: Vec<&str> = targets.iter().map(|t| &*t.name).collect();
                    let known = if known.is_empty() {
                        "no targets are defined".to_owned()
                    } else {
                        format!("known: {}", known.join(", "))
                    };
                    self.error(format!("{path}.target"), format!("unknown target {:?} ({known})", p.target));
                }
                for key in strays {
                    self.stray(&path, Item::Probe, &key, kind);
                }
                let schedule = self.schedule(&path, &p, default_interval);
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
                let retries = p.retries.or(main.retries).unwrap_or(0);
                if retries > MAX_RETRIES {
                    let at =
                        if p.retries.is_some() { format!("{path}.retries") } else { "defaults.retries".to_owned() };
                    self.error(at, format!("must be between 0 and {MAX_RETRIES}"));
                }
                let lockout_guard = self.guard(&path, &p.lockout_guard, &main.lockout_guard);
                let labels = self.labels(&path, std::mem::take(&mut p.labels));

                let login = match (&target, fields) {
                    (Some(target), Some(Fields::Probe(fields))) => {
                        let mut v = At {
                            checker: &mut self,
                            path: path.clone(),
                            name: p.name.clone(),
                            tls: false,
                            proxy: false,
                        };
                        target.target.probe(fields, &family_defaults, &mut v)
                    }
                    _ => None,
                };
                if let (Some(target), Some(login), Some(schedule)) = (target, login, schedule) {
                    probes.push(Probe {
                        name: p.name.into(),
                        target: target.name.clone(),
                        schedule,
                        labels: labels.into_iter().collect(),
                        login: LoginSpec {
                            login,
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
        }

        if self.errors.is_empty() {
            let files = self.places.iter().map(|p| p.file.clone()).collect();
            Ok(Config { file: self.places[0].file.clone(), files, targets, probes })
        } else {
            Err(FileErrors(self.errors))
        }
    }

    fn schedule(&mut self, path: &str, p: &RawProbe, default_interval: std::time::Duration) -> Option<Schedule> {
        match (p.interval, &p.schedule) {
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
        }
    }

    fn guard(&mut self, path: &str, own: &RawGuard, defaults: &RawGuard) -> LockoutGuard {
        let built_in = LockoutGuard::default();
        let guard = LockoutGuard {
            max_failures: own.max_failures.or(defaults.max_failures).unwrap_or(built_in.max_failures),
            max_backoff: own.max_backoff.or(defaults.max_backoff).unwrap_or(built_in.max_backoff),
        };
        if guard.max_backoff.is_zero() {
            let at = if own.max_backoff.is_some() { path } else { "defaults" };
            self.error(format!("{at}.lockout_guard.max_backoff"), "must be greater than 0s");
        }
        guard
    }

    /// Checks the name of the `what` at `path`, and that no other of `names` (name to the file
    /// it was first in) has it.
    fn unique_name(
        &mut self,
        names: &mut HashMap<String, &'a Path>,
        what: &str,
        path: &str,
        name: &str,
        file: &'a Path,
    ) {
        self.check_name(&format!("{path}.name"), name);
        match names.get(name).copied() {
            None => {
                names.insert(name.to_owned(), file);
            }
            Some(first) => {
                let also = if first == file { String::new() } else { format!(" (also in {})", first.display()) };
                self.error(format!("{path}.name"), format!("duplicate {what} name {name:?}{also}"));
            }
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
        secrets::expand_env(raw).map_err(|m| self.error(field, m)).ok()
    }

    /// A target's `tls:` block, its files read and checked now.
    fn tls(&mut self, path: &str, raw: RawTls) -> Option<Arc<TlsSettings>> {
        use rustls::pki_types::{CertificateDer, ServerName};
        let before = self.errors.len();
        let base_dir = self.place().base_dir.clone();
        let mut settings = TlsSettings::default();
        settings.insecure_skip_verify = raw.insecure_skip_verify;
        let certs = |v: &mut Self, field: &str, file: &Path| -> Option<Vec<CertificateDer<'static>>> {
            read_certificates(&base_dir.join(file)).map_err(|e| v.error(format!("{path}.{field}"), e)).ok()
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
                let key =
                    read_private_key(&base_dir.join(key)).map_err(|e| self.error(format!("{path}.key_file"), e)).ok();
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
            } else if RESERVED_LABELS.contains(&name.as_str()) || Kind::ALL.iter().any(|k| k.scheme().label == name) {
                self.error(&field, format!("label {name:?} is set by authprobe itself"));
            } else {
                match secrets::expand_env(&value) {
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
}

/// The family a target's `protocol:` names; the first family registered when it names none.
pub(super) fn target_kind(protocol: Option<&str>) -> Option<Kind> {
    match protocol.map(str::trim) {
        None => Some(Kind::ALL[0]),
        Some(name) => Kind::ALL.iter().copied().find(|k| k.name() == name),
    }
}

impl RawTls {
    /// Whether the block sets anything.
    fn sets_anything(&self) -> bool {
        self.ca_file.is_some()
            || self.server_name.is_some()
            || self.insecure_skip_verify
            || self.cert_file.is_some()
            || self.key_file.is_some()
    }
}

/// A target or probe being validated by its family: where what it reports is located.
struct At<'c, 'a> {
    checker: &'c mut Checker<'a>,
    /// `targets[0]`, `probes[3]`.
    path: String,
    name: String,
    /// Whether the target's `tls:` block sets anything.
    tls: bool,
    /// Whether the target sets `proxy_url`.
    proxy: bool,
}

impl Validator for At<'_, '_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn error(&mut self, field: &str, message: String) {
        self.checker.error(format!("{}.{field}", self.path), message);
    }

    fn defaults_error(&mut self, field: &str, message: String) {
        self.checker.main_error(format!("defaults.{field}"), message);
    }

    fn errors(&self) -> usize {
        self.checker.errors.len()
    }

    fn expand(&mut self, field: &str, raw: &str) -> Option<String> {
        let at = format!("{}.{field}", self.path);
        self.checker.expanded(&at, raw)
    }

    fn secret(&mut self, field: &str, source: Secret<'_>) -> Option<SecretString> {
        let base_dir = &self.checker.place().base_dir;
        match secrets::resolve(field, source.inline, source.file, base_dir, source.required) {
            Ok(v) => v,
            Err((f, m)) => {
                self.checker.error(format!("{}.{f}", self.path), m);
                None
            }
        }
    }

    fn path(&self, written: &Path) -> PathBuf {
        self.checker.place().base_dir.join(written)
    }

    fn tls_configured(&self) -> bool {
        self.tls
    }

    fn proxy_configured(&self) -> bool {
        self.proxy
    }
}
