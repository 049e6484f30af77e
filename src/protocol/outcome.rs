//! What a run comes to, whatever its family: the result taxonomy, the run summary every output
//! shows, and the whole [`Outcome`].

use std::fmt;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::ser::{SerializeMap as _, SerializeStruct as _};
use serde::Serialize;

use super::{Reason, State, Step};

/// How one login ended. Bounded: every value is a fixed label value in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultClass {
    /// The login reached the probe's expected outcome.
    Success,
    /// Credentials, pin or verification code rejected (or a step answered and asked again).
    AuthFailed,
    /// The server throttles logins for this account ("Too many login requests…").
    RateLimited,
    /// "Your Password has expired and must be changed".
    PasswordExpired,
    /// "PIN code is not init": the account cannot finish the PIN step.
    PinNotInitialized,
    /// `{"error": "Application key is not defined or does not exist"}`.
    AppKeyRejected,
    /// OAuth 2.0: the server refuses the client itself (`invalid_client`,
    /// `unauthorized_client`, `unsupported_grant_type`), the twin of `app_key_rejected`.
    ClientRejected,
    /// The server asked for a step the probe neither expects nor can answer, or an unknown step.
    UnexpectedStep,
    /// Still `Expecting` after `max_steps` requests.
    StepLimit,
    /// The login succeeded but its token did not pass the probe's `validate` check (ETNA:
    /// `GET {base}/v1.0/users/@me/info`; OAuth 2.0: JWT, userinfo or introspection), or that
    /// check's request failed.
    ValidationFailed,
    /// A redirect, a 5xx or another status the protocol does not use.
    HttpError,
    /// A protocol status whose body is not the documented shape.
    InvalidResponse,
    /// The login did not finish within its deadline.
    Timeout,
    /// DNS failure, connection refused, reset or closed.
    ConnectError,
    /// TLS handshake or certificate failure.
    TlsError,
    /// authprobe itself failed during the run (a bug: the run panicked). Never produced by the
    /// protocol; the scheduler records it so that a crashing run is still counted and visible.
    InternalError,
}

impl ResultClass {
    /// Every class, in a stable order (for pre-initialised series and documentation).
    pub const ALL: [ResultClass; 16] = [
        ResultClass::Success,
        ResultClass::AuthFailed,
        ResultClass::RateLimited,
        ResultClass::PasswordExpired,
        ResultClass::PinNotInitialized,
        ResultClass::AppKeyRejected,
        ResultClass::ClientRejected,
        ResultClass::UnexpectedStep,
        ResultClass::StepLimit,
        ResultClass::ValidationFailed,
        ResultClass::HttpError,
        ResultClass::InvalidResponse,
        ResultClass::Timeout,
        ResultClass::ConnectError,
        ResultClass::TlsError,
        ResultClass::InternalError,
    ];

    /// The snake_case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultClass::Success => "success",
            ResultClass::AuthFailed => "auth_failed",
            ResultClass::RateLimited => "rate_limited",
            ResultClass::PasswordExpired => "password_expired",
            ResultClass::PinNotInitialized => "pin_not_initialized",
            ResultClass::AppKeyRejected => "app_key_rejected",
            ResultClass::ClientRejected => "client_rejected",
            ResultClass::UnexpectedStep => "unexpected_step",
            ResultClass::StepLimit => "step_limit",
            ResultClass::ValidationFailed => "validation_failed",
            ResultClass::HttpError => "http_error",
            ResultClass::InvalidResponse => "invalid_response",
            ResultClass::Timeout => "timeout",
            ResultClass::ConnectError => "connect_error",
            ResultClass::TlsError => "tls_error",
            ResultClass::InternalError => "internal_error",
        }
    }

    /// The class called `name`.
    pub fn from_name(name: &str) -> Option<ResultClass> {
        ResultClass::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Its place in [`ResultClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ResultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run's result means to the lockout guard, whichever protocol produced it. The family
/// decides (see [`Verdict::lockout`]); [`Lockout::of`] is the rule it starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lockout {
    /// A success: the guard starts over.
    Clear,
    /// The server refused the credentials themselves (a bad password, pin or code, an expired
    /// password, an unknown client): repeated, they would lock the account.
    Strike,
    /// The server throttles logins.
    Throttle,
    /// A credential failure at a server that locks accounts after very few (a directory, which
    /// may lock after 3 and count failures for 30 minutes or more): the guard holds the
    /// credentials back at once, for `max_backoff`, until a success or a change of credentials.
    Hold,
    /// Nothing about the credentials (a timeout, a 5xx, a bad scope).
    #[default]
    Neutral,
}

impl Lockout {
    /// What a result means by its class alone: credential failures strike, throttling
    /// throttles, a success clears, anything else is neutral.
    pub fn of(result: ResultClass) -> Lockout {
        match result {
            ResultClass::Success => Lockout::Clear,
            ResultClass::AuthFailed | ResultClass::PasswordExpired | ResultClass::PinNotInitialized => Lockout::Strike,
            ResultClass::RateLimited => Lockout::Throttle,
            _ => Lockout::Neutral,
        }
    }
}

/// What a family's status codes are: HTTP statuses, or a protocol's own result codes. The name
/// is what outputs show before a code, the label what the outcome series and JSON call it, the
/// metric the gauge of the last run's code.
#[derive(Debug, PartialEq, Eq)]
pub struct Scheme {
    /// Shown before a code: `HTTP`.
    pub name: &'static str,
    /// The label of the outcome series and the JSON field: `http_status`.
    pub label: &'static str,
    /// The gauge of the last run's code: `authprobe_probe_http_status_code`.
    pub metric: &'static str,
    /// The gauge's help.
    pub help: &'static str,
    /// The code that stands for "no answer arrived": HTTP's 0, which no server sends; LDAP's
    /// `u16::MAX`, since 0 is LDAP's success.
    pub no_answer: u16,
}

impl Scheme {
    /// Whether `code` is an answer's (not [`Scheme::no_answer`]).
    pub fn answered(&self, code: u16) -> bool {
        code != self.no_answer
    }

    /// Whether "no answer" has a code of its own that people should not read as one.
    fn hides_no_answer(&self, code: u16) -> bool {
        code == self.no_answer && code != 0
    }

    /// A code as people read it: `HTTP 401`, `LDAP 49`, `no answer`.
    pub fn show(&self, code: u16) -> String {
        if self.hides_no_answer(code) {
            return "no answer".to_owned();
        }
        format!("{} {code}", self.name)
    }

    /// A code as a label value: its digits, or `none` for a scheme whose "no answer" is not 0.
    pub fn label_value<'a>(&self, code: u16, itoa: &'a mut itoa::Buffer) -> &'a str {
        if self.hides_no_answer(code) {
            return "none";
        }
        itoa.format(code)
    }

    /// A code as the status gauge's value: -1 for "no answer" where that is not 0.
    pub fn gauge_value(&self, code: u16) -> f64 {
        if self.hides_no_answer(code) {
            return -1.0;
        }
        f64::from(code)
    }

    /// A code as JSON shows it: `null` for "no answer" where that is not 0.
    pub fn json_value(&self, code: u16) -> Option<u16> {
        (!self.hides_no_answer(code)).then_some(code)
    }
}

/// What a run came to, in bounded fields only: each is a label value of the outcome series and
/// a field of every output (the last run, the history, the saved state, the JSON API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The result class.
    pub result: ResultClass,
    /// The last answer's state, for families whose servers report one.
    pub state: Option<State>,
    /// The step reached or failed.
    pub step: Step,
    /// The reason, normalised.
    pub reason: Reason,
    /// The final status code, in its family's [`Scheme`]; 0 when no answer arrived.
    pub status: u16,
}

impl Summary {
    /// A summary of `result` alone: no state, no reason, no answer, at `step`.
    pub fn of(result: ResultClass, step: Step) -> Summary {
        Summary { result, state: None, step, reason: Reason::NONE, status: 0 }
    }

    /// Its fields as label pairs, the status under `scheme`'s label (`itoa` holds its digits).
    pub fn labels<'a>(&self, scheme: &Scheme, itoa: &'a mut itoa::Buffer) -> [(&'static str, &'a str); 5]
    where
        'static: 'a,
    {
        [
            ("result", self.result.as_str()),
            ("state", State::label(self.state)),
            ("step", self.step.as_str()),
            ("reason", self.reason.as_str()),
            (scheme.label, scheme.label_value(self.status, itoa)),
        ]
    }

    /// Writes its fields into a JSON object (or any map), the status under `scheme`'s label, with
    /// `reason_text` after the reason.
    pub fn serialize_into<M: serde::ser::SerializeMap>(
        &self,
        map: &mut M,
        scheme: &Scheme,
        reason_text: &str,
    ) -> Result<(), M::Error> {
        map.serialize_entry("result", &self.result)?;
        map.serialize_entry("state", State::label(self.state))?;
        map.serialize_entry("step", &self.step)?;
        map.serialize_entry("reason", &self.reason)?;
        map.serialize_entry("reason_text", reason_text)?;
        map.serialize_entry(scheme.label, &scheme.json_value(self.status))
    }
}

/// The final classification of a login by its family. Texts are raw server input: the run core
/// sanitises them.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Result class.
    pub result: ResultClass,
    /// The answer's state.
    pub state: Option<State>,
    /// The step reached or failed.
    pub step: Step,
    /// Normalised reason.
    pub reason: Reason,
    /// Raw reason (or error message) text.
    pub reason_text: String,
    /// Why, in words.
    pub detail: String,
    /// What the result means to the lockout guard.
    pub lockout: Lockout,
}

impl Verdict {
    /// A verdict of `result` at `step` with nothing the server said: no state, no reason.
    pub fn of(step: Step, result: ResultClass, detail: String) -> Verdict {
        Verdict {
            result,
            state: None,
            step,
            reason: Reason::NONE,
            reason_text: String::new(),
            detail,
            lockout: Lockout::of(result),
        }
    }
}

/// How one attempt of a family's flow ended.
#[derive(Debug)]
pub struct Finished {
    /// The verdict.
    pub verdict: Verdict,
    /// When the part a user waits for ended, before the session was ended; `None` for now.
    pub login_done: Option<Instant>,
    /// How ending the session went, when the probe ends it.
    pub session_end: Option<LogoutOutcome>,
    /// The lifetime the server granted the token.
    pub token_expires_in: Option<Duration>,
    /// How the target's discovery stands.
    pub discovery: Option<DiscoveryFacts>,
    /// Tokens and assertions the run received or made: redacted from every text it returns.
    pub issued: Vec<SecretString>,
    /// What the run learnt of the account's password.
    pub account: Option<AccountFacts>,
}

impl From<Verdict> for Finished {
    fn from(verdict: Verdict) -> Self {
        Finished {
            verdict,
            login_done: None,
            session_end: None,
            token_expires_in: None,
            discovery: None,
            issued: Vec::new(),
            account: None,
        }
    }
}

/// One request of a login.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRecord {
    /// The step this request answered.
    pub step: Step,
    /// Its status code, 0 when no answer arrived.
    pub status: u16,
    /// The answer's state.
    pub state: Option<State>,
    /// From sending the request to the end of its answer (or the failure).
    pub duration: Duration,
}

/// The result of one login. Contains no secret and no token.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Result, state, step, reason and final status.
    pub summary: Summary,
    /// What the status codes are.
    pub scheme: &'static Scheme,
    /// The last answer's reason text, sanitised and at most 200 characters. For humans only.
    pub reason_text: String,
    /// Total duration of the login.
    pub duration: Duration,
    /// Every request made.
    pub steps: Vec<StepRecord>,
    /// Why the login got this result, in words (sanitised, bounded).
    pub detail: String,
    /// How ending the session went (ETNA's logout, OAuth 2.0's revocation), for probes that end
    /// it and got a final token.
    pub logout: Option<LogoutOutcome>,
    /// Attempts made again after a transport failure before any answer (see `retries`).
    pub retries: u32,
    /// How long each phase of the first request took, as far as it got.
    pub phases: Option<Phases>,
    /// What the TLS handshake showed, for runs that open TLS.
    pub tls: Option<TlsFacts>,
    /// The lifetime the server granted the token it issued (OAuth 2.0 `expires_in`).
    pub token_expires_in: Option<Duration>,
    /// How the target's discovery (document and keys) stands after this run, for targets that
    /// discover or fetch keys.
    pub discovery: Option<DiscoveryFacts>,
    /// What the result means to the lockout guard.
    pub lockout: Lockout,
    /// What the run learnt of the account's password (a directory's password policy).
    pub account: Option<AccountFacts>,
}

/// What a run learnt of the probe account's password, from the server's own words (LDAP's
/// password policy control, Active Directory's computed expiry time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AccountFacts {
    /// Seconds until the password expires; negative once it has.
    pub password_expires_in_seconds: Option<i64>,
    /// Logins left with the expired password (grace logins).
    pub grace_logins_remaining: Option<u64>,
}

impl Outcome {
    /// An outcome of only a summary and a duration: no steps, texts or facts. For runs that made
    /// no request (a panic inside authprobe), and a base for tests.
    pub fn bare(summary: Summary, scheme: &'static Scheme, duration: Duration) -> Outcome {
        Outcome {
            summary,
            scheme,
            reason_text: String::new(),
            duration,
            steps: Vec::new(),
            detail: String::new(),
            logout: None,
            retries: 0,
            phases: None,
            tls: None,
            token_expires_in: None,
            discovery: None,
            lockout: Lockout::of(summary.result),
            account: None,
        }
    }

    /// The result class.
    pub fn result(&self) -> ResultClass {
        self.summary.result
    }

    /// Whether the result is `success`.
    pub fn is_success(&self) -> bool {
        self.summary.result == ResultClass::Success
    }

    /// Whether every request got an answer (the login latency is then unpolluted by timeouts
    /// and refused connections).
    pub fn answered(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| self.scheme.answered(s.status))
    }
}

/// As every output has shown it: result, state, step, reason, reason_text, the status under its
/// scheme's label, duration_seconds, steps, detail, then the facts a run has.
impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.summary.serialize_into(&mut m, self.scheme, &self.reason_text)?;
        m.serialize_entry("duration_seconds", &self.duration.as_secs_f64())?;
        let steps: Vec<Shown> = self.steps.iter().map(|r| Shown::Step(r, self.scheme)).collect();
        m.serialize_entry("steps", &steps)?;
        m.serialize_entry("detail", &self.detail)?;
        if let Some(l) = &self.logout {
            m.serialize_entry("logout", &Shown::Logout(l, self.scheme))?;
        }
        m.serialize_entry("retries", &self.retries)?;
        if let Some(p) = &self.phases {
            m.serialize_entry("phases", p)?;
        }
        if let Some(t) = &self.tls {
            m.serialize_entry("tls", t)?;
        }
        if let Some(d) = self.token_expires_in {
            m.serialize_entry("token_expires_in_seconds", &d.as_secs_f64())?;
        }
        if let Some(d) = &self.discovery {
            m.serialize_entry("discovery", d)?;
        }
        if let Some(a) = &self.account {
            m.serialize_entry("account", a)?;
        }
        m.end()
    }
}

/// A step record or the end of a session, as shown, its status under `scheme`'s label:
/// `{step, <status>, state, duration_seconds}` and `{ok, <status>, detail}`.
enum Shown<'a> {
    Step(&'a StepRecord, &'static Scheme),
    Logout(&'a LogoutOutcome, &'static Scheme),
}

impl Serialize for Shown<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match *self {
            Shown::Step(r, scheme) => {
                m.serialize_entry("step", &r.step)?;
                m.serialize_entry(scheme.label, &scheme.json_value(r.status))?;
                m.serialize_entry("state", State::label(r.state))?;
                m.serialize_entry("duration_seconds", &r.duration.as_secs_f64())?;
            }
            Shown::Logout(l, scheme) => {
                m.serialize_entry("ok", &l.ok)?;
                m.serialize_entry(scheme.label, &scheme.json_value(l.status))?;
                m.serialize_entry("detail", &l.detail)?;
            }
        }
        m.end()
    }
}

/// How a target's discovery stands: its last fetch, and the keys it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscoveryFacts {
    /// Whether the last fetch (of the document, the keys or both) succeeded.
    pub ok: bool,
    /// How long the last fetch took.
    pub duration: Duration,
    /// Keys in the cached JWKS, if one was fetched.
    pub jwks_keys: Option<usize>,
    /// When the key set last changed, in Unix seconds.
    pub jwks_changed_unix: Option<i64>,
}

impl Serialize for DiscoveryFacts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("DiscoveryFacts", 4)?;
        st.serialize_field("ok", &self.ok)?;
        st.serialize_field("duration_seconds", &self.duration.as_secs_f64())?;
        st.serialize_field("jwks_keys", &self.jwks_keys)?;
        st.serialize_field("jwks_changed_unix", &self.jwks_changed_unix)?;
        st.end()
    }
}

/// The phases of a run's first request, as blackbox_exporter reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phases {
    /// Name resolution (0 for an IP address).
    pub resolve: Duration,
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake (0 without TLS).
    pub tls: Duration,
    /// From the connection being ready to the answer's start: sending the request, the
    /// server's work, the first byte.
    pub processing: Option<Duration>,
    /// Reading the rest of the answer.
    pub transfer: Option<Duration>,
}

impl Phases {
    /// The phases' names (the `phase` label), in order.
    pub const NAMES: [&'static str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

    /// Each phase's duration, indexed like [`Phases::NAMES`]; `None` for a phase not reached.
    pub fn durations(&self) -> [Option<Duration>; 5] {
        [Some(self.resolve), Some(self.connect), Some(self.tls), self.processing, self.transfer]
    }

    /// Phase names and durations, in order; phases not reached are left out.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, Duration)> {
        Self::NAMES.into_iter().zip(self.durations()).filter_map(|(name, d)| Some((name, d?)))
    }
}

impl Serialize for Phases {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Phases", 5)?;
        st.serialize_field("resolve", &self.resolve.as_secs_f64())?;
        st.serialize_field("connect", &self.connect.as_secs_f64())?;
        st.serialize_field("tls", &self.tls.as_secs_f64())?;
        st.serialize_field("processing", &self.processing.map(|d| d.as_secs_f64()))?;
        st.serialize_field("transfer", &self.transfer.map(|d| d.as_secs_f64()))?;
        st.end()
    }
}

/// The TLS facts of a run that opened TLS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TlsFacts {
    /// The negotiated version, e.g. `TLS 1.3`; `None` if the handshake did not finish.
    pub version: Option<&'static str>,
    /// The earliest `notAfter` in the chain the server served, in Unix seconds.
    pub cert_not_after_unix: Option<i64>,
}

/// The result of ending the session: ETNA's `POST {base}/logout`, OAuth 2.0's revocation. A
/// failure never fails the login.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutOutcome {
    /// Whether the server ended the session.
    pub ok: bool,
    /// Its status code, 0 when no answer arrived.
    pub status: u16,
    /// What happened, in words (sanitised, bounded).
    pub detail: String,
}
