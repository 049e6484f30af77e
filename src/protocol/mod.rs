//! One login against `POST {base}/token`: the request sequence, the classification of every
//! answer and the [`Outcome`] it ends in.
//!
//! This module knows nothing of scheduling, metrics or HTTP serving. [`classify`] is a pure
//! function from one HTTP answer to a decision (finish with a result, or continue with the next
//! step); [`client`] performs the requests, bounded in steps, time and body size.

pub mod classify;
pub mod client;
mod text;
mod timing;
pub mod tls;
pub mod trace;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use url::Url;

pub use client::{Prober, ProberError};
pub(crate) use text::redact;
pub use text::sanitize;
pub use tls::TlsSettings;
pub use trace::{redact_sensitive_members, Trace};

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
    /// The server asked for a step the probe neither expects nor can answer, or an unknown step.
    UnexpectedStep,
    /// Still `Expecting` after `max_steps` requests.
    StepLimit,
    /// The login succeeded but its token was refused by `GET {base}/v1.0/users/@me/info`, or
    /// that request failed (probes with `validate: true`).
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
    pub const ALL: [ResultClass; 15] = [
        ResultClass::Success,
        ResultClass::AuthFailed,
        ResultClass::RateLimited,
        ResultClass::PasswordExpired,
        ResultClass::PinNotInitialized,
        ResultClass::AppKeyRejected,
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
}

impl fmt::Display for ResultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `State` field of a token answer; `None` where the answer had none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum State {
    /// Login complete, `Token` is final.
    Succeeded,
    /// More is needed: `Step` says what.
    Expecting,
    /// Login refused at `Step`.
    Failed,
}

impl State {
    /// The server's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Succeeded => "Succeeded",
            State::Expecting => "Expecting",
            State::Failed => "Failed",
        }
    }

    /// Label value: the state, or `""` for none.
    pub fn label(state: Option<State>) -> &'static str {
        state.map_or("", State::as_str)
    }
}

/// An authentication step. Names outside the known three collapse into [`Step::Other`] so that
/// no output is unbounded; the raw name goes to the human-readable detail only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Step {
    /// Username and password.
    BaseAuthentication,
    /// The PIN step, spelled as the server spells it.
    SecutityPin,
    /// The code sent by email or SMS.
    VerificationCode,
    /// Not a server step: authprobe's own check of the final token against
    /// `GET {base}/v1.0/users/@me/info`.
    TokenValidation,
    /// A step name nobody knows.
    #[serde(rename = "other")]
    Other,
}

impl Step {
    /// The three documented steps.
    pub const KNOWN: [Step; 3] = [Step::BaseAuthentication, Step::SecutityPin, Step::VerificationCode];

    /// The server's spelling, or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::BaseAuthentication => "BaseAuthentication",
            Step::SecutityPin => "SecutityPin",
            Step::VerificationCode => "VerificationCode",
            Step::TokenValidation => "TokenValidation",
            Step::Other => "other",
        }
    }

    /// Recognises a server step name. Case is ignored, and `SecurityPin` is taken for the PIN
    /// step too so that a server fixing its spelling does not break every probe. Never
    /// [`Step::TokenValidation`], which is ours, not the server's.
    pub fn parse(name: &str) -> Step {
        let n = name.trim();
        if n.eq_ignore_ascii_case("BaseAuthentication") {
            Step::BaseAuthentication
        } else if n.eq_ignore_ascii_case("SecutityPin") || n.eq_ignore_ascii_case("SecurityPin") {
            Step::SecutityPin
        } else if n.eq_ignore_ascii_case("VerificationCode") {
            Step::VerificationCode
        } else {
            Step::Other
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's `Reason`, normalised to a bounded set. The raw text is kept apart
/// ([`Outcome::reason_text`]) for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// "Invalid credentials".
    InvalidCredentials,
    /// "Invalid pin".
    InvalidPin,
    /// A rejected verification code.
    InvalidVerificationCode,
    /// "Expecting confirmation code" (the verification-code prompt).
    ExpectingConfirmationCode,
    /// "Corrupted ticket": a later step arrived without a valid interim token.
    CorruptedTicket,
    /// "Your Password has expired and must be changed".
    PasswordExpired,
    /// "PIN code is not init".
    PinNotInitialized,
    /// "Too many login requests…", or HTTP 429.
    TooManyRequests,
    /// "Application key is not defined or does not exist".
    AppKeyNotDefined,
    /// "Authorization has been denied for this request.": a token refused by an API call.
    AuthorizationDenied,
    /// No reason given.
    None,
    /// A reason text nobody knows.
    Other,
}

impl Reason {
    /// Every reason, in a stable order.
    pub const ALL: [Reason; 12] = [
        Reason::InvalidCredentials,
        Reason::InvalidPin,
        Reason::InvalidVerificationCode,
        Reason::ExpectingConfirmationCode,
        Reason::CorruptedTicket,
        Reason::PasswordExpired,
        Reason::PinNotInitialized,
        Reason::TooManyRequests,
        Reason::AppKeyNotDefined,
        Reason::AuthorizationDenied,
        Reason::None,
        Reason::Other,
    ];

    /// The snake_case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidCredentials => "invalid_credentials",
            Reason::InvalidPin => "invalid_pin",
            Reason::InvalidVerificationCode => "invalid_verification_code",
            Reason::ExpectingConfirmationCode => "expecting_confirmation_code",
            Reason::CorruptedTicket => "corrupted_ticket",
            Reason::PasswordExpired => "password_expired",
            Reason::PinNotInitialized => "pin_not_initialized",
            Reason::TooManyRequests => "too_many_requests",
            Reason::AppKeyNotDefined => "app_key_not_defined",
            Reason::AuthorizationDenied => "authorization_denied",
            Reason::None => "none",
            Reason::Other => "other",
        }
    }

    /// Normalises a server reason text (case and surrounding space ignored).
    pub fn normalize(text: &str) -> Reason {
        let t = text.trim().to_ascii_lowercase();
        let t = t.trim_end_matches('.');
        match t {
            "" => Reason::None,
            "invalid credentials" => Reason::InvalidCredentials,
            "invalid pin" | "invalid pin code" => Reason::InvalidPin,
            "expecting confirmation code" | "expecting verification code" => Reason::ExpectingConfirmationCode,
            "corrupted ticket" => Reason::CorruptedTicket,
            "pin code is not init" | "pin code is not initialized" => Reason::PinNotInitialized,
            "application key is not defined or does not exist" => Reason::AppKeyNotDefined,
            _ if t.starts_with("authorization has been denied") => Reason::AuthorizationDenied,
            _ if t.starts_with("too many login requests") => Reason::TooManyRequests,
            _ if t.contains("password has expired") => Reason::PasswordExpired,
            _ if t.starts_with("invalid") && (t.contains("verification code") || t.contains("confirmation code")) => {
                Reason::InvalidVerificationCode
            }
            _ => Reason::Other,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which outcome of the login counts as healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// A final token (`200 Succeeded`).
    Succeeded,
    /// Reaching this step (`202 Expecting <step>`): for accounts whose code arrives by SMS.
    Step(Step),
}

impl Expect {
    /// Parses `Succeeded` or a known step name.
    pub fn parse(text: &str) -> Option<Expect> {
        if text.trim().eq_ignore_ascii_case("Succeeded") {
            return Some(Expect::Succeeded);
        }
        match Step::parse(text) {
            Step::Other => None,
            step => Some(Expect::Step(step)),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Succeeded => f.write_str("Succeeded"),
            Expect::Step(s) => f.write_str(s.as_str()),
        }
    }
}

/// Everything one login needs. Secrets stay inside [`SecretString`], which prints as redacted.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// API base, e.g. `https://host/api`; the token URL is `{base}/token`.
    pub base_url: Url,
    /// `Et-App-Key`.
    pub app_key: SecretString,
    /// `Username`.
    pub username: String,
    /// `Password`.
    pub password: SecretString,
    /// `PinCode`, sent when the server asks for `SecutityPin`.
    pub pin: Option<SecretString>,
    /// `VerificationCode`, sent when the server asks for `VerificationCode`.
    pub verification_code: Option<SecretString>,
    /// The healthy outcome.
    pub expect: Expect,
    /// Deadline for the whole login: connect, every step, every body.
    pub timeout: Duration,
    /// Maximum number of requests in one login.
    pub max_steps: u32,
    /// Bodies longer than this are abandoned.
    pub max_body_bytes: usize,
    /// After `Succeeded`, check the token with `GET {base}/v1.0/users/@me/info`.
    pub validate: bool,
    /// After the login (and its validation), end the session with `POST {base}/logout`.
    pub logout: bool,
    /// Further attempts at a login that failed to connect or timed out before any answer.
    pub retries: u32,
    /// How to trust the server and what to present to it, for HTTPS targets.
    pub tls: Arc<TlsSettings>,
    /// The proxy to go through; without one, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` apply.
    pub proxy: Option<Url>,
}

impl LoginSpec {
    /// `{base_url}/token`, tolerating a trailing slash on the base.
    pub fn token_url(&self) -> Url {
        self.api_url("token")
    }

    /// Whether `other` logs in as the same user with the same secrets.
    pub fn same_credentials(&self, other: &LoginSpec) -> bool {
        use secrecy::ExposeSecret as _;
        let secret = |a: &SecretString, b: &SecretString| a.expose_secret() == b.expose_secret();
        let optional = |a: &Option<SecretString>, b: &Option<SecretString>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => secret(a, b),
            _ => false,
        };
        secret(&self.app_key, &other.app_key)
            && self.username == other.username
            && secret(&self.password, &other.password)
            && optional(&self.pin, &other.pin)
            && optional(&self.verification_code, &other.verification_code)
    }

    /// `{base_url}/v1.0/users/@me/info`: the current user, for token validation.
    pub fn user_info_url(&self) -> Url {
        self.api_url("v1.0/users/@me/info")
    }

    /// `{base_url}/logout`.
    pub fn logout_url(&self) -> Url {
        self.api_url("logout")
    }

    fn api_url(&self, tail: &str) -> Url {
        let mut url = self.base_url.clone();
        let path = format!("{}/{tail}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// Whether a login of this spec makes one request at most (plus retries of a connection
    /// that failed): it can answer no step and neither validates nor ends its session.
    pub fn single_request(&self) -> bool {
        self.pin.is_none() && self.verification_code.is_none() && !self.validate && !self.logout
    }

    /// Whether the probe holds the secret that answers `step`.
    pub fn can_answer(&self, step: Step) -> bool {
        match step {
            Step::SecutityPin => self.pin.is_some(),
            Step::VerificationCode => self.verification_code.is_some(),
            Step::BaseAuthentication | Step::TokenValidation | Step::Other => false,
        }
    }
}

/// One request of a login.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The step this request answered (`BaseAuthentication` for the first).
    pub step: Step,
    /// HTTP status, 0 when no response arrived.
    pub http_status: u16,
    /// The answer's `State`.
    #[serde(serialize_with = "ser_state")]
    pub state: Option<State>,
    /// From sending the request to the end of its body (or the failure).
    #[serde(rename = "duration_seconds", serialize_with = "ser_secs")]
    pub duration: Duration,
}

/// The result of one login. Contains no secret and no token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The result class.
    pub result: ResultClass,
    /// The last answer's `State`.
    #[serde(serialize_with = "ser_state")]
    pub state: Option<State>,
    /// The step reached or failed: the last answer's `Step`, else the step last sent.
    pub step: Step,
    /// The last answer's reason, normalised.
    pub reason: Reason,
    /// The last answer's reason text, sanitised and at most 200 characters. For humans only.
    pub reason_text: String,
    /// Final HTTP status, 0 if none.
    pub http_status: u16,
    /// Total duration of the login.
    #[serde(rename = "duration_seconds", serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Every request made.
    pub steps: Vec<StepRecord>,
    /// Why the login got this result, in words (sanitised, bounded).
    pub detail: String,
    /// How ending the session went, for probes with `logout: true` that got a final token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logout: Option<LogoutOutcome>,
    /// Attempts made again after a transport failure before any answer (see `retries`).
    pub retries: u32,
    /// How long each phase of the first request took, as far as it got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    /// What the TLS handshake of an HTTPS target showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFacts>,
}

/// The phases of a run's first request, as blackbox_exporter reports them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Phases {
    /// Name resolution (0 for an IP address).
    #[serde(serialize_with = "ser_secs")]
    pub resolve: Duration,
    /// TCP connect.
    #[serde(serialize_with = "ser_secs")]
    pub connect: Duration,
    /// TLS handshake (0 for plain HTTP).
    #[serde(serialize_with = "ser_secs")]
    pub tls: Duration,
    /// From the connection being ready to the response headers: sending the request, the
    /// server's work, the first byte.
    #[serde(serialize_with = "ser_opt_secs")]
    pub processing: Option<Duration>,
    /// Reading the body.
    #[serde(serialize_with = "ser_opt_secs")]
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

/// The TLS facts of a run against an HTTPS target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TlsFacts {
    /// The negotiated version, e.g. `TLS 1.3`; `None` if the handshake did not finish.
    pub version: Option<&'static str>,
    /// The earliest `notAfter` in the chain the server served, in Unix seconds.
    pub cert_not_after_unix: Option<i64>,
}

/// The result of `POST {base}/logout`. A failed logout never fails the login.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogoutOutcome {
    /// Whether the server ended the session (a 2xx answer).
    pub ok: bool,
    /// HTTP status, 0 when no response arrived.
    pub http_status: u16,
    /// What happened, in words (sanitised, bounded).
    pub detail: String,
}

impl Outcome {
    /// Whether the result is `success`.
    pub fn is_success(&self) -> bool {
        self.result == ResultClass::Success
    }
}

/// Serialises an optional [`State`] as its label: the name, or `""` for none.
pub(crate) fn ser_state<S: serde::Serializer>(s: &Option<State>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(State::label(*s))
}

fn ser_secs<S: serde::Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_f64(d.as_secs_f64())
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, ser: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser.serialize_f64(d.as_secs_f64()),
        None => ser.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_normalise() {
        let cases = [
            ("Invalid credentials", Reason::InvalidCredentials),
            ("Invalid pin", Reason::InvalidPin),
            ("Invalid verification code", Reason::InvalidVerificationCode),
            ("Expecting confirmation code", Reason::ExpectingConfirmationCode),
            ("Corrupted ticket", Reason::CorruptedTicket),
            ("Your Password has expired and must be changed", Reason::PasswordExpired),
            ("PIN code is not init", Reason::PinNotInitialized),
            ("Too many login requests. Please try again later.", Reason::TooManyRequests),
            ("Application key is not defined or does not exist", Reason::AppKeyNotDefined),
            ("", Reason::None),
            ("  ", Reason::None),
            ("Something new", Reason::Other),
        ];
        for (text, want) in cases {
            assert_eq!(Reason::normalize(text), want, "{text:?}");
        }
    }

    #[test]
    fn steps_parse_with_server_spelling() {
        assert_eq!(Step::parse("SecutityPin"), Step::SecutityPin);
        assert_eq!(Step::parse("securitypin"), Step::SecutityPin);
        assert_eq!(Step::parse("VerificationCode"), Step::VerificationCode);
        assert_eq!(Step::parse("SecretQuestion"), Step::Other);
        assert_eq!(Expect::parse("Succeeded"), Some(Expect::Succeeded));
        assert_eq!(Expect::parse("VerificationCode"), Some(Expect::Step(Step::VerificationCode)));
        assert_eq!(Expect::parse("Nope"), None);
    }

    #[test]
    fn token_url_handles_trailing_slash() {
        let mut spec = crate::protocol::classify::tests::spec();
        for base in ["http://h/api", "http://h/api/"] {
            spec.base_url = Url::parse(base).unwrap();
            assert_eq!(spec.token_url().as_str(), "http://h/api/token");
        }
        spec.base_url = Url::parse("http://h").unwrap();
        assert_eq!(spec.token_url().as_str(), "http://h/token");
    }
}
