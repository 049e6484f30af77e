//! One login, by whichever protocol family its target speaks, and the [`Outcome`] it ends in.
//!
//! Each family has a folder of its own with a pure classifier of its answers: [`etna`] (ETNA
//! Trader's `/token` with its `202 Expecting` steps) and [`oauth2`] (OAuth 2.0 and OpenID Connect
//! token endpoints). What they share sits here: the result
//! taxonomy ([`ResultClass`], [`Step`], [`Reason`]), the [`Outcome`], the HTTP exchange with
//! its deadline, body cap and timing, TLS, and the debug [`Trace`]. [`client`] runs a login of
//! any family with retries and hooks; nothing outside this module asks which family it was.
//!
//! This module knows nothing of scheduling, metrics or HTTP serving.

mod answer;
pub mod client;
pub mod etna;
mod exchange;
pub mod oauth2;
mod text;
mod timing;
pub mod tls;
pub mod trace;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::Serialize;
use url::Url;

pub use answer::Answer;
pub use client::{Prober, ProberError};
pub use etna::{EtnaLogin, Expect};
pub use oauth2::{OAuth2Login, OAuth2Target};
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
    /// Not a server step: authprobe's own check of the final token (ETNA:
    /// `GET {base}/v1.0/users/@me/info`; OAuth 2.0: JWT signature and claims, userinfo or
    /// introspection).
    TokenValidation,
    /// OAuth 2.0: fetching the discovery document and the JWKS, in a run that needed them.
    Discovery,
    /// OAuth 2.0: the token request of the probe's grant.
    Token,
    /// OAuth 2.0: redeeming the refresh token once.
    Refresh,
    /// OAuth 2.0: revoking what was issued (RFC 7009), like ETNA's logout.
    Revocation,
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
            Step::Discovery => "Discovery",
            Step::Token => "Token",
            Step::Refresh => "Refresh",
            Step::Revocation => "Revocation",
            Step::Other => "other",
        }
    }

    /// Recognises an ETNA server step name. Case is ignored, and `SecurityPin` is taken for the
    /// PIN step too so that a server fixing its spelling does not break every probe. Only the
    /// three [`Step::KNOWN`] or [`Step::Other`]: the rest are ours, not the server's.
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
    /// OAuth 2.0 `error`: `invalid_request` (RFC 6749 §5.2).
    InvalidRequest,
    /// OAuth 2.0 `error`: `invalid_client`.
    InvalidClient,
    /// OAuth 2.0 `error`: `invalid_grant` (wrong password, expired or revoked refresh token).
    InvalidGrant,
    /// OAuth 2.0 `error`: `unauthorized_client`.
    UnauthorizedClient,
    /// OAuth 2.0 `error`: `unsupported_grant_type`.
    UnsupportedGrantType,
    /// OAuth 2.0 `error`: `invalid_scope`.
    InvalidScope,
    /// OAuth 2.0 `error`: `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// Token validation: the JWT's signature does not verify, or its algorithm is refused.
    BadSignature,
    /// Token validation: the JWT names a key the JWKS does not have, even after a refresh.
    UnknownKey,
    /// Token validation: the JWT has expired (`exp`).
    Expired,
    /// Token validation: the JWT is not valid yet (`nbf`, or `iat` in the future).
    NotYetValid,
    /// Token validation: `iss` is not the target's issuer.
    WrongIssuer,
    /// Token validation: `aud` does not name the expected audience.
    WrongAudience,
    /// Token validation: introspection says the token is not active.
    Inactive,
    /// Token validation: the userinfo endpoint refused the token or named no subject.
    UserinfoDenied,
    /// The discovery document or the JWKS could not be fetched or read.
    DiscoveryFailed,
    /// No reason given.
    None,
    /// A reason text nobody knows.
    Other,
}

impl Reason {
    /// Every reason, in a stable order.
    pub const ALL: [Reason; 28] = [
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
        Reason::InvalidRequest,
        Reason::InvalidClient,
        Reason::InvalidGrant,
        Reason::UnauthorizedClient,
        Reason::UnsupportedGrantType,
        Reason::InvalidScope,
        Reason::TemporarilyUnavailable,
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::Inactive,
        Reason::UserinfoDenied,
        Reason::DiscoveryFailed,
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
            Reason::InvalidRequest => "invalid_request",
            Reason::InvalidClient => "invalid_client",
            Reason::InvalidGrant => "invalid_grant",
            Reason::UnauthorizedClient => "unauthorized_client",
            Reason::UnsupportedGrantType => "unsupported_grant_type",
            Reason::InvalidScope => "invalid_scope",
            Reason::TemporarilyUnavailable => "temporarily_unavailable",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::Inactive => "inactive",
            Reason::UserinfoDenied => "userinfo_denied",
            Reason::DiscoveryFailed => "discovery_failed",
            Reason::None => "none",
            Reason::Other => "other",
        }
    }

    /// Normalises an ETNA server reason text (case and surrounding space ignored).
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

/// What a run's result means to the lockout guard, whichever protocol produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// A success: the guard starts over.
    Clear,
    /// The server refused the credentials themselves (ETNA's bad password, pin or code, an
    /// expired password; OAuth 2.0's `invalid_grant` and `invalid_client`): repeated, they
    /// would lock the account.
    Strike,
    /// The server throttles logins.
    Throttle,
    /// Nothing about the credentials (a timeout, a 5xx, a bad scope).
    Neutral,
}

impl Lockout {
    /// The signal of a result with its reason.
    pub fn of(result: ResultClass, reason: Reason) -> Lockout {
        match result {
            ResultClass::Success => Lockout::Clear,
            ResultClass::PasswordExpired | ResultClass::PinNotInitialized => Lockout::Strike,
            // A malformed request or an unknown scope is the probe's configuration, not its secret.
            ResultClass::AuthFailed if matches!(reason, Reason::InvalidRequest | Reason::InvalidScope) => {
                Lockout::Neutral
            }
            ResultClass::AuthFailed => Lockout::Strike,
            ResultClass::ClientRejected if reason == Reason::InvalidClient => Lockout::Strike,
            ResultClass::RateLimited => Lockout::Throttle,
            _ => Lockout::Neutral,
        }
    }
}

/// Everything one login needs: its family's flow and what every family shares. Secrets stay
/// inside [`SecretString`], which prints as redacted.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// What to send, by protocol family.
    pub flow: Flow,
    /// Deadline for the whole login: connect, every step, every body.
    pub timeout: Duration,
    /// Bodies longer than this are abandoned.
    pub max_body_bytes: usize,
    /// Further attempts at a login that failed to connect or timed out before any answer.
    pub retries: u32,
    /// How to trust the server and what to present to it, for HTTPS targets.
    pub tls: Arc<TlsSettings>,
    /// The proxy to go through; without one, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` apply.
    pub proxy: Option<Url>,
}

/// A login's requests, by protocol family.
#[derive(Debug, Clone)]
pub enum Flow {
    /// ETNA Trader's `/token`.
    Etna(EtnaLogin),
    /// An OAuth 2.0 / OpenID Connect token endpoint.
    OAuth2(OAuth2Login),
}

impl LoginSpec {
    /// The URL the login starts at, for its scheme and host.
    pub fn endpoint(&self) -> &Url {
        match &self.flow {
            Flow::Etna(e) => &e.base_url,
            Flow::OAuth2(o) => o.target.endpoint(),
        }
    }

    /// Whether `other` logs in as the same identity with the same secrets (the lockout guard
    /// of one is the other's).
    pub fn same_credentials(&self, other: &LoginSpec) -> bool {
        match (&self.flow, &other.flow) {
            (Flow::Etna(a), Flow::Etna(b)) => a.same_credentials(b),
            (Flow::OAuth2(a), Flow::OAuth2(b)) => a.same_credentials(b),
            _ => false,
        }
    }

    /// A digest of what [`LoginSpec::same_credentials`] compares, salted: equal for the same
    /// credentials under the same salt, so that a lockout guard saved before a restart is
    /// resumed only for the credentials it was earned with. 64 bits of a salted SHA-256: enough
    /// to tell a change, too few to confirm a guessed password with.
    pub fn credentials_digest(&self, salt: &[u8]) -> u64 {
        use sha2::{Digest as _, Sha256};
        let parts = match &self.flow {
            Flow::Etna(e) => e.credential_parts(),
            Flow::OAuth2(o) => o.credential_parts(),
        };
        let mut h = Sha256::new();
        h.update(salt);
        h.update([u8::from(matches!(self.flow, Flow::OAuth2(_)))]);
        for part in parts {
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
        let flow = match (&self.flow, &other.flow) {
            (Flow::Etna(a), Flow::Etna(b)) => a.same_as(b),
            (Flow::OAuth2(a), Flow::OAuth2(b)) => a.same_as(b),
            _ => false,
        };
        flow && self.timeout == other.timeout
            && self.max_body_bytes == other.max_body_bytes
            && self.retries == other.retries
            && *self.tls == *other.tls
            && self.proxy == other.proxy
    }

    /// Whether a login of this spec makes one request at most (plus retries of a connection
    /// that failed).
    pub fn single_request(&self) -> bool {
        match &self.flow {
            Flow::Etna(e) => e.single_request(),
            Flow::OAuth2(o) => o.single_request(),
        }
    }

    /// Whether a healthy login of this spec sends a request of `step` (its series exist from
    /// the start).
    pub fn sends(&self, step: Step) -> bool {
        match &self.flow {
            Flow::Etna(e) => e.sends(step),
            Flow::OAuth2(o) => o.sends(step),
        }
    }

    /// Whether a login ends the session it opened (ETNA's logout, OAuth 2.0's revocation).
    pub fn ends_session(&self) -> bool {
        match &self.flow {
            Flow::Etna(e) => e.logout,
            Flow::OAuth2(o) => o.revoke,
        }
    }

    /// The login's settings in one line, `name=value` separated by spaces (for `check-config`).
    pub fn summary(&self) -> String {
        let timeout = crate::duration::format(self.timeout);
        match &self.flow {
            Flow::Etna(e) => format!("expect={} timeout={timeout} max_steps={}", e.expect, e.max_steps),
            Flow::OAuth2(o) => format!(
                "protocol=oauth2 grant={} client_auth={} validate={} refresh={} revoke={} timeout={timeout}",
                o.grant.name(),
                o.target.client_auth.name(),
                o.validate.name(),
                o.refresh,
                o.revoke
            ),
        }
    }

    /// Every secret the login sends.
    pub fn secrets(&self) -> Vec<&SecretString> {
        match &self.flow {
            Flow::Etna(e) => e.secrets(),
            Flow::OAuth2(o) => o.secrets(),
        }
    }
}

/// Whether two secrets are equal.
pub(crate) fn same_secret(a: &SecretString, b: &SecretString) -> bool {
    use secrecy::ExposeSecret as _;
    a.expose_secret() == b.expose_secret()
}

/// The final classification of a login. Texts are raw server input: the caller sanitises them.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Result class.
    pub result: ResultClass,
    /// The answer's `State`.
    pub state: Option<State>,
    /// The step reached or failed.
    pub step: Step,
    /// Normalised reason.
    pub reason: Reason,
    /// Raw reason (or error message) text.
    pub reason_text: String,
    /// Why, in words.
    pub detail: String,
}

/// A verdict of a request that got no usable answer.
pub(crate) fn failure_verdict(step: Step, result: ResultClass, detail: String) -> Verdict {
    Verdict { result, state: None, step, reason: Reason::None, reason_text: String::new(), detail }
}

/// How one attempt of a family's flow ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) verdict: Verdict,
    /// When the part a user waits for ended, before the session was ended; `None` for now.
    pub(crate) login_done: Option<Instant>,
    /// How ending the session went, when the probe ends it.
    pub(crate) session_end: Option<LogoutOutcome>,
    /// The lifetime the server granted the token.
    pub(crate) token_expires_in: Option<Duration>,
    /// How the target's discovery stands.
    pub(crate) discovery: Option<DiscoveryFacts>,
    /// Tokens and assertions the run received or made: redacted from every text it returns.
    pub(crate) issued: Vec<SecretString>,
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
    /// How ending the session went (ETNA's logout, OAuth 2.0's revocation), for probes that end
    /// it and got a final token.
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
    /// The lifetime the server granted the token it issued (OAuth 2.0 `expires_in`).
    #[serde(
        rename = "token_expires_in_seconds",
        serialize_with = "ser_opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_expires_in: Option<Duration>,
    /// How the target's discovery (document and keys) stands after this run, for targets that
    /// discover or fetch keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryFacts>,
}

/// How a target's discovery stands: its last fetch, and the keys it holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiscoveryFacts {
    /// Whether the last fetch (of the document, the keys or both) succeeded.
    pub ok: bool,
    /// How long the last fetch took.
    #[serde(rename = "duration_seconds", serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Keys in the cached JWKS, if one was fetched.
    pub jwks_keys: Option<usize>,
    /// When the key set last changed, in Unix seconds.
    pub jwks_changed_unix: Option<i64>,
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

/// The result of ending the session: ETNA's `POST {base}/logout`, OAuth 2.0's revocation. A
/// failure never fails the login.
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
    /// An outcome of only a result, reason, final status and duration: no state, steps, texts
    /// or facts. For runs that made no request (a panic inside authprobe), and a base for tests.
    pub fn bare(result: ResultClass, reason: Reason, http_status: u16, duration: Duration) -> Outcome {
        Outcome {
            result,
            state: None,
            step: Step::BaseAuthentication,
            reason,
            reason_text: String::new(),
            http_status,
            duration,
            steps: Vec::new(),
            detail: String::new(),
            logout: None,
            retries: 0,
            phases: None,
            tls: None,
            token_expires_in: None,
            discovery: None,
        }
    }

    /// Whether the result is `success`.
    pub fn is_success(&self) -> bool {
        self.result == ResultClass::Success
    }

    /// What the result means to the lockout guard.
    pub fn lockout(&self) -> Lockout {
        Lockout::of(self.result, self.reason)
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
        assert_eq!(Step::parse("Token"), Step::Other, "our steps are not the server's");
    }

    #[test]
    fn every_name_is_distinct_snake_or_server_case() {
        let reasons: std::collections::HashSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(reasons.len(), Reason::ALL.len());
        let results: std::collections::HashSet<&str> = ResultClass::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(results.len(), ResultClass::ALL.len());
        assert!(reasons.iter().chain(&results).all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
