//! One login, by whichever protocol family its target speaks, and the [`Outcome`] it ends in.
//!
//! - [`family`]: the interface a family implements ([`Family`], [`FamilyLogin`]) and how its
//!   configuration code reports problems ([`Validator`]). The families are registered in one
//!   line at the end of this file; nothing else lists them.
//! - [`names`]: the bounded [`Step`], [`Reason`] and [`State`] values, merged from the names
//!   the families declare.
//! - [`outcome`]: the result taxonomy, the run [`Summary`] and the whole [`Outcome`].
//! - [`run`]: the run core, transport-neutral: deadline, retries, hooks, the clock, the trace.
//! - [`http`]: the HTTP layer of the HTTP families: clients, one exchange, its timing;
//!   [`socket`]: TCP and TLS for families that open their own connections.
//! - [`tls`]: TLS settings and trust for any TLS session a family opens; [`trace`]: the debug
//!   record of a run.
//! - A folder per family: [`etna`] (ETNA Trader's `/token` with its `202 Expecting` steps),
//!   [`oauth2`] (OAuth 2.0 and OpenID Connect token endpoints), [`ldap`] (LDAP and Active
//!   Directory binds).
//!
//! This module knows nothing of scheduling, metrics or HTTP serving.

pub mod family;
mod hooks;
pub mod http;
pub mod names;
pub mod outcome;
pub mod run;
pub mod socket;
mod text;
pub mod tls;
pub mod trace;

pub mod etna;
pub mod ldap;
pub mod oauth2;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

pub use etna::{EtnaLogin, Expect};
use family::{DefaultsOf, LoginOf, ProbeFields as _, TargetFields as _, TargetOf};
pub use family::{Family, Login as FamilyLogin, Target as FamilyTarget, Validator};
pub use names::{Reason, State, Step};
pub use oauth2::{OAuth2Login, OAuth2Target};
pub use outcome::{
    AccountFacts, DiscoveryFacts, Finished, Lockout, LogoutOutcome, Outcome, Phases, ResultClass, Scheme, StepRecord,
    Summary, TlsFacts, Verdict,
};
pub use run::{Attempt, Prober, ProberError};
pub(crate) use text::redact;
pub use text::sanitize;
pub use tls::{read_certificates, read_private_key, TlsSettings};
pub use trace::{redact_sensitive_members, Trace};

/// Everything one login needs: its family's login and what every family shares. Secrets stay
/// inside [`SecretString`], which prints as redacted.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// What to do, by protocol family.
    pub login: Login,
    /// Deadline for the whole login: connect, every step, every answer.
    pub timeout: Duration,
    /// Answers longer than this are abandoned.
    pub max_body_bytes: usize,
    /// Further attempts at a login that failed to connect or timed out before any answer.
    pub retries: u32,
    /// How to trust the server and what to present to it, for targets reached over TLS.
    pub tls: Arc<TlsSettings>,
    /// The proxy to go through; without one, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` apply.
    pub proxy: Option<Arc<Url>>,
}

impl LoginSpec {
    /// Whether `other` logs in as the same identity with the same secrets (the lockout guard
    /// of one is the other's).
    pub fn same_credentials(&self, other: &LoginSpec) -> bool {
        self.login.kind() == other.login.kind() && self.login.credentials() == other.login.credentials()
    }

    /// A digest of what [`LoginSpec::same_credentials`] compares, salted: equal for the same
    /// credentials under the same salt, so that a lockout guard saved before a restart is
    /// resumed only for the credentials it was earned with. 64 bits of a salted SHA-256: enough
    /// to tell a change, too few to confirm a guessed password with.
    pub fn credentials_digest(&self, salt: &[u8]) -> u64 {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(salt);
        // A family's tag is its place in the registry: the first two's are the bytes the
        // release before families wrote, so that its stored digests still match.
        h.update([self.login.kind() as u8]);
        for part in self.login.credentials() {
            // Length-prefixed, with absence apart from emptiness: no two lists feed the same bytes.
            match part {
                None => h.update([0]),
                Some(p) => {
                    h.update([1]);
                    h.update((p.len() as u64).to_le_bytes());
                    h.update(p.as_bytes());
                }
            }
        }
        let digest = h.finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
    }

    /// Whether `other` is the same login with the same settings and secrets.
    pub fn same_as(&self, other: &LoginSpec) -> bool {
        self.login.same_settings(&other.login)
            && self.timeout == other.timeout
            && self.max_body_bytes == other.max_body_bytes
            && self.retries == other.retries
            && *self.tls == *other.tls
            && self.proxy == other.proxy
    }

    /// Every secret the login sends.
    pub fn secrets(&self) -> Vec<&SecretString> {
        self.login.secrets()
    }

    /// The login's settings in one line, `name=value` separated by spaces (for `check-config`).
    pub fn summary(&self) -> String {
        self.login.summary(&crate::duration::format(self.timeout))
    }
}

/// Whether two secrets are equal.
pub(crate) fn same_secret(a: &SecretString, b: &SecretString) -> bool {
    use secrecy::ExposeSecret as _;
    a.expose_secret() == b.expose_secret()
}

/// Registers the families: the bounded name tables merged from theirs, and an enum of each
/// family's targets, logins and fields whose methods delegate to the family once. Families are
/// only ever added at the end: a family's place is the tag of its credential digests.
macro_rules! families {
    ($($(#[$doc:meta])* $variant:ident => $family:ty),+ $(,)?) => {
        /// Every step of every family, and `other`.
        pub const STEPS: names::Table<{ names::MAX_STEPS }> =
            names::Table::merge(&[names::COMMON_STEPS, $(<$family as Family>::STEPS),+]);
        /// Every reason of every family, and `none` and `other`.
        pub const REASONS: names::Table<{ names::MAX_REASONS }> =
            names::Table::merge(&[names::COMMON_REASONS, $(<$family as Family>::REASONS),+]);
        /// Every state of every family.
        pub const STATES: names::Table<{ names::MAX_STATES }> =
            names::Table::merge(&[$(<$family as Family>::STATES),+]);

        /// A protocol family, as the registry lists them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($(#[$doc])* $variant),+
        }

        /// A validated target of any family.
        #[derive(Debug)]
        pub enum Target {
            $($(#[$doc])* $variant(Arc<TargetOf<$family>>)),+
        }

        /// A validated probe's login, of any family.
        #[derive(Debug, Clone)]
        pub enum Login {
            $($(#[$doc])* $variant(LoginOf<$family>)),+
        }

        /// A target's own fields as written, by family.
        // Read once per target at a load, then validated: not worth a box.
        #[allow(clippy::large_enum_variant)]
        pub enum TargetFields {
            $($(#[$doc])* $variant(<$family as Family>::Target)),+
        }

        /// A probe's own fields as written, by family.
        #[allow(clippy::large_enum_variant)]
        pub enum ProbeFields {
            $($(#[$doc])* $variant(<$family as Family>::Probe)),+
        }

        /// Every family's fields of `defaults:`.
        #[derive(Debug, Default)]
        #[allow(non_snake_case)]
        pub struct DefaultFields {
            $($(#[$doc])* pub $variant: DefaultsOf<$family>),+
        }

        impl Kind {
            /// Every family, in registry order.
            pub const ALL: &[Kind] = &[$(Kind::$variant),+];

            /// The `protocol:` value that selects it.
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => <$family as Family>::NAME),+ }
            }

            /// What its status codes are.
            pub fn scheme(self) -> &'static Scheme {
                match self { $(Kind::$variant => <$family as Family>::STATUS),+ }
            }

            /// Fields whose values are secrets, its targets' and its probes'.
            pub fn secret_fields(self) -> impl Iterator<Item = &'static str> {
                let (target, probe) = match self {
                    $(Kind::$variant => (
                        <<$family as Family>::Target as family::TargetFields>::SECRETS,
                        <<$family as Family>::Probe as family::ProbeFields>::SECRETS,
                    )),+
                };
                target.iter().chain(probe).copied()
            }

            /// Words added to "only for …" for a field of another family set on its probes.
            pub fn field_hint(self, field: &str) -> Option<&'static str> {
                let hints = match self { $(Kind::$variant => <<$family as Family>::Probe as family::ProbeFields>::HINTS),+ };
                hints.iter().find(|(f, _)| *f == field).map(|(_, h)| *h)
            }

            /// The fields its targets take.
            pub fn target_fields(self) -> &'static [&'static str] {
                match self { $(Kind::$variant => family::field_names::<<$family as Family>::Target>()),+ }
            }

            /// The fields its probes take.
            pub fn probe_fields(self) -> &'static [&'static str] {
                match self { $(Kind::$variant => family::field_names::<<$family as Family>::Probe>()),+ }
            }

            /// The fields it takes in `defaults:`.
            pub fn default_fields(self) -> &'static [&'static str] {
                match self { $(Kind::$variant => family::field_names::<DefaultsOf<$family>>()),+ }
            }

            /// Deserialises a target's own fields from `d` (fields of other families are the
            /// caller's to filter out).
            pub fn target_fields_from<'de, D: serde::Deserializer<'de>>(self, d: D) -> Result<TargetFields, D::Error> {
                use serde::Deserialize as _;
                match self { $(Kind::$variant => <<$family as Family>::Target>::deserialize(d).map(TargetFields::$variant)),+ }
            }

            /// Deserialises a probe's own fields from `d`.
            pub fn probe_fields_from<'de, D: serde::Deserializer<'de>>(self, d: D) -> Result<ProbeFields, D::Error> {
                use serde::Deserialize as _;
                match self { $(Kind::$variant => <<$family as Family>::Probe>::deserialize(d).map(ProbeFields::$variant)),+ }
            }

            /// Deserialises its fields of `defaults:` from `d` into `into`.
            pub fn default_fields_from<'de, D: serde::Deserializer<'de>>(
                self,
                d: D,
                into: &mut DefaultFields,
            ) -> Result<(), D::Error> {
                use serde::Deserialize as _;
                match self { $(Kind::$variant => into.$variant = <DefaultsOf<$family>>::deserialize(d)?),+ }
                Ok(())
            }

            /// Validates a target's fields.
            pub fn target(self, fields: TargetFields, v: &mut dyn Validator) -> Option<Target> {
                match fields {
                    $(TargetFields::$variant(f) => f.validate(v).map(|t| Target::$variant(Arc::new(t))),)+
                }
            }
        }

        impl Target {
            /// Its family.
            pub fn kind(&self) -> Kind {
                match self { $(Target::$variant(_) => Kind::$variant),+ }
            }

            /// Every secret it holds.
            pub fn secrets(&self) -> Vec<&SecretString> {
                match self { $(Target::$variant(t) => family::Target::secrets(&**t)),+ }
            }

            /// Validates a probe of this target; `None` after a problem (or for fields of
            /// another family, which the caller never passes).
            pub fn probe(&self, fields: ProbeFields, defaults: &DefaultFields, v: &mut dyn Validator) -> Option<Login> {
                #[allow(unreachable_patterns)]
                match (self, fields) {
                    $((Target::$variant(t), ProbeFields::$variant(f)) => {
                        f.validate(&defaults.$variant, t, v).map(Login::$variant)
                    })+
                    _ => None,
                }
            }
        }

        impl Login {
            /// Its family.
            pub fn kind(&self) -> Kind {
                match self { $(Login::$variant(_) => Kind::$variant),+ }
            }

            /// What its status codes are.
            pub fn scheme(&self) -> &'static Scheme {
                self.kind().scheme()
            }

            /// Performs one attempt at the login.
            pub async fn run(&self, attempt: &mut Attempt<'_>) -> Finished {
                match self { $(Login::$variant(l) => family::Login::run(l, attempt).await),+ }
            }

            /// Whether it has something to do while the lockout guard holds it back.
            pub fn runs_while_held(&self) -> bool {
                match self { $(Login::$variant(l) => family::Login::runs_while_held(l)),+ }
            }

            /// Performs one attempt at what it does while the lockout guard holds it back.
            pub async fn run_held(&self, attempt: &mut Attempt<'_>) -> Finished {
                match self { $(Login::$variant(l) => family::Login::run_held(l, attempt).await),+ }
            }

            /// Where it logs in.
            pub fn endpoint(&self) -> &Url {
                match self { $(Login::$variant(l) => family::Login::endpoint(l)),+ }
            }

            /// What identifies the account and proves it is the login's.
            pub fn credentials(&self) -> Vec<Option<&str>> {
                match self { $(Login::$variant(l) => family::Login::credentials(l)),+ }
            }

            /// Whether `other` is the same login with the same settings and secrets.
            pub fn same_settings(&self, other: &Login) -> bool {
                #[allow(unreachable_patterns)]
                match (self, other) {
                    $((Login::$variant(a), Login::$variant(b)) => family::Login::same_settings(a, b),)+
                    _ => false,
                }
            }

            /// Every secret the login sends.
            pub fn secrets(&self) -> Vec<&SecretString> {
                match self { $(Login::$variant(l) => family::Login::secrets(l)),+ }
            }

            /// Whether a healthy run sends a request of `step`.
            pub fn sends(&self, step: Step) -> bool {
                match self { $(Login::$variant(l) => family::Login::sends(l, step)),+ }
            }

            /// The family's steps, in the order its step series are written.
            pub fn steps(&self) -> &'static [&'static str] {
                match self { $(Login::$variant(_) => <$family as Family>::STEPS),+ }
            }

            /// Whether a run ends the session it opened.
            pub fn ends_session(&self) -> bool {
                match self { $(Login::$variant(l) => family::Login::ends_session(l)),+ }
            }

            /// Whether a run makes one request at most.
            pub fn single_request(&self) -> bool {
                match self { $(Login::$variant(l) => family::Login::single_request(l)),+ }
            }

            /// What is allowed but unwise in its settings.
            pub fn warnings(&self) -> Vec<String> {
                match self { $(Login::$variant(l) => family::Login::warnings(l)),+ }
            }

            /// The login's settings in one line, its `timeout` among them (`check-config`).
            pub fn summary(&self, timeout: &str) -> String {
                match self { $(Login::$variant(l) => family::Login::summary(l, timeout)),+ }
            }
        }
    };
}

families! {
    /// ETNA Trader's `/token`.
    Etna => etna::Etna,
    /// OAuth 2.0 and OpenID Connect token endpoints.
    OAuth2 => oauth2::OAuth2,
    /// LDAP and Active Directory binds.
    Ldap => ldap::Ldap,
}
