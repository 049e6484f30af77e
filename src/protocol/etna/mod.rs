//! The ETNA Trader family: `POST {base}/token` with credentials in headers, continued through
//! `202 Expecting` steps (PIN, verification code) with the interim token the server returned;
//! optionally the final token checked with `GET {base}/v1.0/users/@me/info` and the session ended
//! with `POST {base}/logout`.
//!
//! [`config`] holds its fields and their validation, [`classify`] the pure decision over one
//! answer, [`flow`] the requests of one run; this module its steps, reasons and states, and the
//! validated target and login.

pub mod classify;
pub mod config;
mod flow;

use std::fmt;
use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

use super::family::{self, Family};
use super::outcome::{Finished, Scheme};
use super::run::Attempt;
use super::{Reason, Step};

/// The ETNA Trader family, as registered.
pub struct Etna;

impl Family for Etna {
    const NAME: &'static str = "etna";
    const STEPS: &'static [&'static str] =
        &["BaseAuthentication", "SecutityPin", "VerificationCode", "TokenValidation"];
    const REASONS: &'static [&'static str] = &[
        "invalid_credentials",
        "invalid_pin",
        "invalid_verification_code",
        "expecting_confirmation_code",
        "corrupted_ticket",
        "password_expired",
        "pin_not_initialized",
        "too_many_requests",
        "app_key_not_defined",
        "authorization_denied",
    ];
    const STATES: &'static [&'static str] =
        &[State::Succeeded.as_str(), State::Expecting.as_str(), State::Failed.as_str()];
    const STATUS: &'static Scheme = &super::http::STATUS;
    type Target = config::TargetFields;
    type Probe = config::ProbeFields;
}

/// Username and password.
pub const BASE_AUTHENTICATION: Step = Step::named("BaseAuthentication");
/// The PIN step, spelled as the server spells it.
pub const SECUTITY_PIN: Step = Step::named("SecutityPin");
/// The code sent by email or SMS.
pub const VERIFICATION_CODE: Step = Step::named("VerificationCode");
/// Not a server step: authprobe's check of the final token, `GET {base}/v1.0/users/@me/info`.
pub const TOKEN_VALIDATION: Step = Step::named("TokenValidation");

/// The steps a server names, which a probe can be told to expect.
pub const SERVER_STEPS: [Step; 3] = [BASE_AUTHENTICATION, SECUTITY_PIN, VERIFICATION_CODE];

/// "Invalid credentials".
pub const INVALID_CREDENTIALS: Reason = Reason::named("invalid_credentials");
/// "Invalid pin".
pub const INVALID_PIN: Reason = Reason::named("invalid_pin");
/// A rejected verification code.
pub const INVALID_VERIFICATION_CODE: Reason = Reason::named("invalid_verification_code");
/// "Expecting confirmation code" (the verification-code prompt).
pub const EXPECTING_CONFIRMATION_CODE: Reason = Reason::named("expecting_confirmation_code");
/// "Corrupted ticket": a later step arrived without a valid interim token.
pub const CORRUPTED_TICKET: Reason = Reason::named("corrupted_ticket");
/// "Your Password has expired and must be changed".
pub const PASSWORD_EXPIRED: Reason = Reason::named("password_expired");
/// "PIN code is not init".
pub const PIN_NOT_INITIALIZED: Reason = Reason::named("pin_not_initialized");
/// "Too many login requests…", or HTTP 429.
pub const TOO_MANY_REQUESTS: Reason = Reason::named("too_many_requests");
/// "Application key is not defined or does not exist".
pub const APP_KEY_NOT_DEFINED: Reason = Reason::named("app_key_not_defined");
/// "Authorization has been denied for this request.": a token refused by an API call.
pub const AUTHORIZATION_DENIED: Reason = Reason::named("authorization_denied");

/// Recognises a server step name. Case is ignored, and `SecurityPin` is taken for the PIN step
/// too so that a server fixing its spelling does not break every probe. Only the
/// [`SERVER_STEPS`] or [`Step::OTHER`]: `TokenValidation` is ours, not the server's.
pub fn parse_step(name: &str) -> Step {
    let n = name.trim();
    if n.eq_ignore_ascii_case("BaseAuthentication") {
        BASE_AUTHENTICATION
    } else if n.eq_ignore_ascii_case("SecutityPin") || n.eq_ignore_ascii_case("SecurityPin") {
        SECUTITY_PIN
    } else if n.eq_ignore_ascii_case("VerificationCode") {
        VERIFICATION_CODE
    } else {
        Step::OTHER
    }
}

/// Normalises a server reason text (case and surrounding space ignored).
pub fn normalize_reason(text: &str) -> Reason {
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('.');
    match t {
        "" => Reason::NONE,
        "invalid credentials" => INVALID_CREDENTIALS,
        "invalid pin" | "invalid pin code" => INVALID_PIN,
        "expecting confirmation code" | "expecting verification code" => EXPECTING_CONFIRMATION_CODE,
        "corrupted ticket" => CORRUPTED_TICKET,
        "pin code is not init" | "pin code is not initialized" => PIN_NOT_INITIALIZED,
        "application key is not defined or does not exist" => APP_KEY_NOT_DEFINED,
        _ if t.starts_with("authorization has been denied") => AUTHORIZATION_DENIED,
        _ if t.starts_with("too many login requests") => TOO_MANY_REQUESTS,
        _ if t.contains("password has expired") => PASSWORD_EXPIRED,
        _ if t.starts_with("invalid") && (t.contains("verification code") || t.contains("confirmation code")) => {
            INVALID_VERIFICATION_CODE
        }
        _ => Reason::OTHER,
    }
}

/// The `State` of a token answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Succeeded => "Succeeded",
            State::Expecting => "Expecting",
            State::Failed => "Failed",
        }
    }

    /// Recognises a `State` value, case ignored.
    pub fn parse(text: &str) -> Option<State> {
        let t = text.trim();
        [State::Succeeded, State::Expecting, State::Failed].into_iter().find(|s| s.as_str().eq_ignore_ascii_case(t))
    }
}

impl From<State> for super::State {
    fn from(s: State) -> Self {
        const SUCCEEDED: super::State = super::State::named(State::Succeeded.as_str());
        const EXPECTING: super::State = super::State::named(State::Expecting.as_str());
        const FAILED: super::State = super::State::named(State::Failed.as_str());
        match s {
            State::Succeeded => SUCCEEDED,
            State::Expecting => EXPECTING,
            State::Failed => FAILED,
        }
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
    /// Parses `Succeeded` or a server step name.
    pub fn parse(text: &str) -> Option<Expect> {
        if text.trim().eq_ignore_ascii_case("Succeeded") {
            return Some(Expect::Succeeded);
        }
        match parse_step(text) {
            Step::OTHER => None,
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

/// An ETNA server and the application key its probes present. Shared by the probes of a target.
#[derive(Debug, Clone)]
pub struct EtnaTarget {
    /// API base, e.g. `https://host/api`; the token URL is `{base}/token`.
    pub base_url: Url,
    /// `Et-App-Key`.
    pub app_key: SecretString,
}

impl family::Target for EtnaTarget {
    fn secrets(&self) -> Vec<&SecretString> {
        vec![&self.app_key]
    }
}

impl EtnaTarget {
    /// `{base_url}/token`, tolerating a trailing slash on the base.
    pub fn token_url(&self) -> Url {
        self.api_url("token")
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
}

/// An ETNA login: where, as whom, and what counts as healthy. Secrets stay inside
/// [`SecretString`], which prints as redacted.
#[derive(Debug, Clone)]
pub struct EtnaLogin {
    /// The server and application key, shared with the other probes of the target.
    pub target: Arc<EtnaTarget>,
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
    /// Maximum number of requests in one login.
    pub max_steps: u32,
    /// After `Succeeded`, check the token with `GET {base}/v1.0/users/@me/info`.
    pub validate: bool,
    /// After the login (and its validation), end the session with `POST {base}/logout`.
    pub logout: bool,
}

impl EtnaLogin {
    /// Whether the probe holds the secret that answers `step`.
    pub fn can_answer(&self, step: Step) -> bool {
        match step {
            SECUTITY_PIN => self.pin.is_some(),
            VERIFICATION_CODE => self.verification_code.is_some(),
            _ => false,
        }
    }
}

impl family::Login for EtnaLogin {
    fn run<'a>(&'a self, attempt: &'a mut Attempt<'_>) -> impl std::future::Future<Output = Finished> + Send + 'a {
        flow::run(attempt, self)
    }

    fn endpoint(&self) -> &Url {
        &self.target.base_url
    }

    fn credentials(&self) -> Vec<Option<&str>> {
        use secrecy::ExposeSecret as _;
        fn secret(s: &Option<SecretString>) -> Option<&str> {
            s.as_ref().map(|s| s.expose_secret())
        }
        vec![
            Some(self.target.app_key.expose_secret()),
            Some(self.username.as_str()),
            Some(self.password.expose_secret()),
            secret(&self.pin),
            secret(&self.verification_code),
        ]
    }

    fn same_settings(&self, other: &Self) -> bool {
        self.target.base_url == other.target.base_url
            && self.credentials() == other.credentials()
            && self.expect == other.expect
            && self.max_steps == other.max_steps
            && self.validate == other.validate
            && self.logout == other.logout
    }

    fn secrets(&self) -> Vec<&SecretString> {
        let mut s = vec![&self.target.app_key, &self.password];
        s.extend(self.pin.iter());
        s.extend(self.verification_code.iter());
        s
    }

    fn sends(&self, step: Step) -> bool {
        match step {
            BASE_AUTHENTICATION => true,
            TOKEN_VALIDATION => self.validate,
            _ => self.can_answer(step),
        }
    }

    fn ends_session(&self) -> bool {
        self.logout
    }

    /// It can answer no step and neither validates nor ends its session.
    fn single_request(&self) -> bool {
        self.pin.is_none() && self.verification_code.is_none() && !self.validate && !self.logout
    }

    fn summary(&self, timeout: &str) -> String {
        format!("expect={} timeout={timeout} max_steps={}", self.expect, self.max_steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_normalise() {
        let cases = [
            ("Invalid credentials", INVALID_CREDENTIALS),
            ("Invalid pin", INVALID_PIN),
            ("Invalid verification code", INVALID_VERIFICATION_CODE),
            ("Expecting confirmation code", EXPECTING_CONFIRMATION_CODE),
            ("Corrupted ticket", CORRUPTED_TICKET),
            ("Your Password has expired and must be changed", PASSWORD_EXPIRED),
            ("PIN code is not init", PIN_NOT_INITIALIZED),
            ("Too many login requests. Please try again later.", TOO_MANY_REQUESTS),
            ("Application key is not defined or does not exist", APP_KEY_NOT_DEFINED),
            ("", Reason::NONE),
            ("  ", Reason::NONE),
            ("Something new", Reason::OTHER),
        ];
        for (text, want) in cases {
            assert_eq!(normalize_reason(text), want, "{text:?}");
        }
    }

    #[test]
    fn steps_parse_with_server_spelling() {
        assert_eq!(parse_step("SecutityPin"), SECUTITY_PIN);
        assert_eq!(parse_step("securitypin"), SECUTITY_PIN);
        assert_eq!(parse_step("VerificationCode"), VERIFICATION_CODE);
        assert_eq!(parse_step("SecretQuestion"), Step::OTHER);
        assert_eq!(parse_step("TokenValidation"), Step::OTHER, "our steps are not the server's");
        assert_eq!(Expect::parse("Succeeded"), Some(Expect::Succeeded));
        assert_eq!(Expect::parse("VerificationCode"), Some(Expect::Step(VERIFICATION_CODE)));
        assert_eq!(Expect::parse("Nope"), None);
    }

    #[test]
    fn token_url_handles_trailing_slash() {
        for base in ["http://h/api", "http://h/api/"] {
            let t = EtnaTarget { base_url: Url::parse(base).unwrap(), app_key: "k".into() };
            assert_eq!(t.token_url().as_str(), "http://h/api/token");
        }
        let t = EtnaTarget { base_url: Url::parse("http://h").unwrap(), app_key: "k".into() };
        assert_eq!(t.token_url().as_str(), "http://h/token");
    }
}
