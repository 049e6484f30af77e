//! The interface of a protocol family, and the registry that lists the families.
//!
//! A family (ETNA, OAuth 2.0…) is a folder of `protocol/` that implements [`Family`]: the fields
//! its targets, probes and `defaults:` take and how they are validated, the secrets they hold,
//! its steps, reasons and states, what its status codes are, and — through its [`Login`] — which
//! endpoint and credentials identify a probe, the flow of one run and its one-line summary.
//! `protocol/mod.rs` registers the families in one line (the [`families!`] invocation); nothing
//! else lists them.
//!
//! Why a trait with associated types and an enum per registry rather than trait objects: a
//! family's fields are deserialised by serde_yaml_ng's own deserializer, which is generic, so
//! that YAML's scalars and every error's line and column stay exactly what the loader gave
//! before; and a run's future needs no box. The [`families!`] macro writes each delegation once,
//! so the enums never have to be matched by hand.

use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use url::Url;

use super::outcome::{Finished, Scheme};
use super::run::Attempt;
use super::Step;

/// A protocol family: its names and status codes, and the fields of its targets and probes.
/// Implemented by a unit type in the family's folder.
pub trait Family: 'static {
    /// The `protocol:` value that selects it.
    const NAME: &'static str;
    /// Its steps, in the order a probe's step series are written.
    const STEPS: &'static [&'static str];
    /// Its reasons.
    const REASONS: &'static [&'static str];
    /// The states its servers report, if they report any.
    const STATES: &'static [&'static str] = &[];
    /// What its status codes are (HTTP's for HTTP families).
    const STATUS: &'static Scheme;
    /// Its targets' own fields.
    type Target: TargetFields;
    /// Its probes' own fields.
    type Probe: ProbeFields<Target = TargetOf<Self>>;
}

/// A family's validated target.
pub type TargetOf<F> = <<F as Family>::Target as TargetFields>::Target;
/// A family's validated login.
pub type LoginOf<F> = <<F as Family>::Probe as ProbeFields>::Login;
/// A family's fields of `defaults:`.
pub type DefaultsOf<F> = <<F as Family>::Probe as ProbeFields>::Defaults;

/// A target's own fields as written (besides `name`, `protocol`, `tls` and `proxy_url`): serde,
/// `deny_unknown_fields`, no `flatten`.
pub trait TargetFields: DeserializeOwned {
    /// What they validate into, shared by the target's probes.
    type Target: Target;
    /// The fields whose values are secrets: errors never quote them.
    const SECRETS: &'static [&'static str];
    /// Validates them; every problem is reported to `v`.
    fn validate(self, v: &mut dyn Validator) -> Option<Self::Target>;
}

/// A probe's own fields as written (besides the scheduling, labels and limits every probe has):
/// serde, `deny_unknown_fields`, no `flatten`.
pub trait ProbeFields: DeserializeOwned {
    /// The validated target its probes log in at.
    type Target;
    /// The family's fields of `defaults:`.
    type Defaults: DeserializeOwned + Default + Debug;
    /// What they validate into.
    type Login: Login;
    /// The fields whose values are secrets: errors never quote them.
    const SECRETS: &'static [&'static str];
    /// Words added to "only for …" when a field of another family is set on a probe of this
    /// one.
    const HINTS: &'static [(&'static str, &'static str)] = &[];
    /// Validates them for a probe of `target`; every problem is reported to `v`.
    fn validate(self, d: &Self::Defaults, target: &Arc<Self::Target>, v: &mut dyn Validator) -> Option<Self::Login>;
}

/// A validated target of a family.
pub trait Target: Debug + Send + Sync + 'static {
    /// Every secret it holds.
    fn secrets(&self) -> Vec<&SecretString>;
}

/// A validated probe's login: everything one run of it needs from its family.
pub trait Login: Debug + Clone + Send + Sync + 'static {
    /// Performs one attempt at the login, every request through `attempt`.
    fn run<'a>(&'a self, attempt: &'a mut Attempt<'_>) -> impl Future<Output = Finished> + Send + 'a;
    /// Where it logs in (the URL it starts at).
    fn endpoint(&self) -> &Url;
    /// What identifies the account and proves it is the login's: compared to carry the lockout
    /// guard over a reload, and digested to carry it over a restart.
    fn credentials(&self) -> Vec<Option<&str>>;
    /// Whether `other` is the same login with the same settings and secrets.
    fn same_settings(&self, other: &Self) -> bool;
    /// Every secret the login sends.
    fn secrets(&self) -> Vec<&SecretString>;
    /// Whether a healthy run sends a request of `step` (its series exist from the start).
    fn sends(&self, step: Step) -> bool;
    /// Whether a run ends the session it opened (ETNA's logout, OAuth 2.0's revocation).
    fn ends_session(&self) -> bool;
    /// Whether the login has something to do while the lockout guard holds its credentials back
    /// ([`Login::run_held`]); without, the guard's ticks are skipped.
    fn runs_while_held(&self) -> bool {
        false
    }
    /// One attempt at what the login does while the lockout guard holds its credentials back:
    /// something that cannot lock anyone (LDAP: an anonymous read of the directory's root entry),
    /// so that the server is still measured. Its success says the server answers; the run's
    /// result is then the held one.
    fn run_held<'a>(&'a self, attempt: &'a mut Attempt<'_>) -> impl Future<Output = Finished> + Send + 'a {
        let _ = attempt;
        async {
            let detail = "this family has nothing to do while its credentials are held back".to_owned();
            Finished::from(super::outcome::Verdict::of(Step::OTHER, super::ResultClass::InternalError, detail))
        }
    }
    /// Whether a run makes one request at most (plus retries): an HTTP family's runs then take
    /// their target's shared client, which keeps no connection.
    fn single_request(&self) -> bool {
        false
    }
    /// What is allowed but unwise in the login's settings (a password sent in the clear), in
    /// words: `check-config` prints them and the service logs them at start.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// The login's settings in one line, `name=value` separated by spaces, its `timeout` (as
    /// written) among them (`check-config`).
    fn summary(&self, timeout: &str) -> String;
}

/// Where a family's configuration code reports problems and finds what the file refers to.
/// Implemented by the configuration loader for the target, probe or defaults block at hand.
pub trait Validator {
    /// The name of the target or probe being validated.
    fn name(&self) -> &str;
    /// Reports a problem with `field` of the block (a path below it, `tls.ca_file`).
    fn error(&mut self, field: &str, message: String);
    /// Reports a problem with `field` of `defaults:`, where a probe took a value from.
    fn defaults_error(&mut self, field: &str, message: String);
    /// Problems reported so far, to tell whether a part failed.
    fn errors(&self) -> usize;
    /// `raw` with `${VAR}` expanded from the environment, or a problem at `field`.
    fn expand(&mut self, field: &str, raw: &str) -> Option<String>;
    /// The secret `field`, as `source` gives it; `None` after a problem (or when an optional
    /// one is not given).
    fn secret(&mut self, field: &str, source: Secret<'_>) -> Option<SecretString>;
    /// A path as written, relative to the file it is written in.
    fn path(&self, written: &Path) -> PathBuf;
    /// Whether the target's `tls:` block sets anything (for a target that never opens TLS, a
    /// mistake).
    fn tls_configured(&self) -> bool;
    /// Whether the target sets `proxy_url` (for a family that never goes through an HTTP
    /// proxy, a mistake).
    fn proxy_configured(&self) -> bool {
        false
    }
}

/// Where a secret field's value comes from: inline (`password`) or a file (`password_file`),
/// exactly one of them, or neither when it is optional.
#[derive(Debug, Clone, Copy)]
pub struct Secret<'a> {
    /// The value written in the file.
    pub inline: Option<&'a SecretString>,
    /// The file that holds it.
    pub file: Option<&'a Path>,
    /// Whether one of them must be given.
    pub required: bool,
}

impl<'a> Secret<'a> {
    /// A secret that must be given, inline or in `file`.
    pub fn required(inline: Option<&'a SecretString>, file: Option<&'a Path>) -> Self {
        Secret { inline, file, required: true }
    }

    /// A secret that may be given, inline or in `file`.
    pub fn optional(inline: Option<&'a SecretString>, file: Option<&'a Path>) -> Self {
        Secret { inline, file, required: false }
    }
}

/// A field that is either a flag or a word (`validate: true`, `validate: jwt`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum FlagOrWord {
    /// `true` or `false`.
    Flag(bool),
    /// Any other scalar.
    Word(String),
}

impl dyn Validator + '_ {
    /// The required text `field`, `${VAR}` expanded: missing (`needed` says why it is needed) or
    /// blank is a problem.
    pub fn required_text(&mut self, field: &str, value: Option<&str>, needed: &str) -> Option<String> {
        let Some(raw) = value else {
            self.error(field, format!("missing: {needed}"));
            return None;
        };
        let v = self.expand(field, raw)?;
        if v.trim().is_empty() {
            self.error(field, "must not be empty".to_owned());
            return None;
        }
        Some(v)
    }

    /// An optional text `field`, `${VAR}` expanded and trimmed; blank is a problem.
    pub fn text(&mut self, field: &str, value: Option<&str>) -> Option<String> {
        let v = self.expand(field, value?)?;
        if v.trim().is_empty() {
            self.error(field, "must not be empty".to_owned());
            return None;
        }
        Some(v.trim().to_owned())
    }

    /// A URL `field` with one of `schemes`, without credentials, query or fragment. The URL is
    /// never echoed: it might carry credentials.
    pub fn url(&mut self, field: &str, raw: &str, schemes: &[&str]) -> Option<Url> {
        let text = self.expand(field, raw)?;
        let problem = match Url::parse(text.trim()) {
            Err(e) => format!("invalid URL: {e}"),
            Ok(u) if !schemes.contains(&u.scheme()) => format!("scheme must be {}", schemes.join(" or ")),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                "must not contain credentials; set them in their own fields".to_owned()
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => "must not have a query or fragment".to_owned(),
            Ok(u) => return Some(u),
        };
        self.error(field, problem);
        None
    }

    /// A file's text, or a problem at `field` naming the file (never quoting it).
    pub fn read_file(&mut self, field: &str, written: &Path) -> Option<String> {
        let full = self.path(written);
        std::fs::read_to_string(&full)
            .map_err(|e| self.error(field, format!("cannot read {}: {e}", full.display())))
            .ok()
    }
}

/// The field names a serde struct deserialises, asked of serde itself: what a family's block
/// takes, so that no list of fields is written twice.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};
    #[derive(Debug)]
    struct Caught(&'static [&'static str]);
    impl std::fmt::Display for Caught {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields")
        }
    }
    impl std::error::Error for Caught {}
    impl serde::de::Error for Caught {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Caught(&[])
        }
    }
    struct Ask;
    impl<'de> serde::Deserializer<'de> for Ask {
        type Error = Caught;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Caught> {
            Err(Caught::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Caught> {
            Err(Caught(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Ask) {
        Err(Caught(fields)) => fields,
        Ok(_) => &[],
    }
}
