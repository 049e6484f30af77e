//! The ETNA Trader family: `POST {base}/token` with credentials in headers, continued through
//! `202 Expecting` steps (PIN, verification code) with the interim token the server returned;
//! optionally the final token checked with `GET {base}/v1.0/users/@me/info` and the session ended
//! with `POST {base}/logout`.
//!
//! [`classify`] is the pure decision over one answer; this module performs the requests.

pub mod classify;

use std::fmt;
use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Method;
use secrecy::SecretString;
use url::Url;

use self::classify::{Context, Decision};
use super::exchange::{bearer_header, empty_body, secret_header, Request, Run};
use super::{failure_verdict, Finished, LogoutOutcome, Reason, ResultClass, Step, Verdict};

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

/// An ETNA login: where, as whom, and what counts as healthy. Secrets stay inside
/// [`SecretString`], which prints as redacted.
#[derive(Debug, Clone)]
pub struct EtnaLogin {
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
    /// Maximum number of requests in one login.
    pub max_steps: u32,
    /// After `Succeeded`, check the token with `GET {base}/v1.0/users/@me/info`.
    pub validate: bool,
    /// After the login (and its validation), end the session with `POST {base}/logout`.
    pub logout: bool,
}

impl EtnaLogin {
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

    /// What identifies the account and proves it is this login's: app key, user, password,
    /// PIN and code.
    pub(crate) fn credential_parts(&self) -> Vec<Option<&str>> {
        use secrecy::ExposeSecret as _;
        fn secret(s: &Option<SecretString>) -> Option<&str> {
            s.as_ref().map(|s| s.expose_secret())
        }
        vec![
            Some(self.app_key.expose_secret()),
            Some(self.username.as_str()),
            Some(self.password.expose_secret()),
            secret(&self.pin),
            secret(&self.verification_code),
        ]
    }

    /// Whether `other` logs in as the same user with the same secrets.
    pub fn same_credentials(&self, other: &EtnaLogin) -> bool {
        self.credential_parts() == other.credential_parts()
    }

    /// Whether `other` is the same login with the same settings and secrets.
    pub fn same_as(&self, other: &EtnaLogin) -> bool {
        self.base_url == other.base_url
            && self.same_credentials(other)
            && self.expect == other.expect
            && self.max_steps == other.max_steps
            && self.validate == other.validate
            && self.logout == other.logout
    }

    /// Whether a login makes one request at most: it can answer no step and neither validates
    /// nor ends its session.
    pub fn single_request(&self) -> bool {
        self.pin.is_none() && self.verification_code.is_none() && !self.validate && !self.logout
    }

    /// Whether the probe holds the secret that answers `step`.
    pub fn can_answer(&self, step: Step) -> bool {
        match step {
            Step::SecutityPin => self.pin.is_some(),
            Step::VerificationCode => self.verification_code.is_some(),
            _ => false,
        }
    }

    /// Whether a healthy login of this probe sends a request of `step`.
    pub fn sends(&self, step: Step) -> bool {
        match step {
            Step::BaseAuthentication => true,
            Step::TokenValidation => self.validate,
            _ => self.can_answer(step),
        }
    }

    /// The secrets a login sends.
    pub fn secrets(&self) -> Vec<&SecretString> {
        let mut s = vec![&self.app_key, &self.password];
        s.extend(self.pin.iter());
        s.extend(self.verification_code.iter());
        s
    }
}

/// Performs one attempt at the login: the token steps, then the validation and the end of the
/// session its probe asks for.
pub(crate) async fn run(run: &mut Run<'_>, spec: &EtnaLogin) -> Finished {
    let (mut verdict, token) = token_steps(run, spec).await;
    let (mut login_done, mut session_end) = (None, None);
    if let Some(token) = token {
        if spec.validate {
            if let Some((reason, reason_text, detail)) = validate(run, spec, &token).await {
                verdict = Verdict {
                    result: ResultClass::ValidationFailed,
                    step: Step::TokenValidation,
                    reason,
                    reason_text,
                    detail,
                    ..verdict
                };
            }
        }
        // The login's duration is what a user waits for; ending the session is ours.
        login_done = Some(Instant::now());
        if spec.logout {
            session_end = Some(end_session(run, spec, &token).await);
        }
    }
    Finished { login_done, session_end, ..Finished::from(verdict) }
}

async fn token_steps(run: &mut Run<'_>, spec: &EtnaLogin) -> (Verdict, Option<SecretString>) {
    let url = spec.token_url();
    let mut sending = Step::BaseAuthentication;
    let mut bearer: Option<SecretString> = None;
    for number in 1..=spec.max_steps.max(1) {
        let started = Instant::now();
        let headers = match request_headers(spec, sending, bearer.as_ref()) {
            Ok(h) => h,
            Err(field) => {
                let detail = format!("{field} cannot be sent as an HTTP header value");
                return (failure_verdict(sending, ResultClass::InvalidResponse, detail), None);
            }
        };
        let request = Request { method: Method::POST, url: &url, label: sending.as_str(), headers, form: None };
        let received = run.exchange(request).await;
        let state = received.as_ref().ok().and_then(|r| classify::answer_state(&r.answer()));
        run.record(sending, &received, state, started);
        let received = match received {
            Ok(r) => r,
            Err(f) => return (failure_verdict(sending, f.class, f.detail), None),
        };
        match classify::classify(&received.answer(), spec, Context { sent: sending, request: number }) {
            Decision::Finish(verdict) => {
                // Only a final token is validated or logged out; an expected prompt has none.
                let keep = verdict.result == ResultClass::Success && (spec.validate || spec.logout);
                let token = if keep { classify::final_token(&received.answer()) } else { None };
                return (verdict, token);
            }
            Decision::Continue { step, token, .. } => {
                sending = step;
                bearer = Some(token);
            }
        }
    }
    // classify() finishes with step_limit on the last allowed request; this is only reached
    // with max_steps = 0, which the configuration rejects.
    (failure_verdict(sending, ResultClass::StepLimit, "max_steps reached".to_owned()), None)
}

/// Checks `token` with `GET {base}/v1.0/users/@me/info`, recorded as the `TokenValidation` step:
/// `None` if it works, else the reason, its raw text and a detail.
async fn validate(run: &mut Run<'_>, spec: &EtnaLogin, token: &SecretString) -> Option<(Reason, String, String)> {
    let started = Instant::now();
    let Ok(headers) = api_headers(spec, token) else {
        let detail = "token validation: the token cannot be sent as an HTTP header value".to_owned();
        return Some((Reason::None, String::new(), detail));
    };
    let url = spec.user_info_url();
    let request =
        Request { method: Method::GET, url: &url, label: Step::TokenValidation.as_str(), headers, form: None };
    let received = run.exchange(request).await;
    run.record(Step::TokenValidation, &received, None, started);
    match received {
        Ok(r) => classify::validation_failure(&r.answer()),
        Err(f) => Some((Reason::None, String::new(), format!("token validation: {}", f.detail))),
    }
}

/// Ends the session of `token` with `POST {base}/logout`.
async fn end_session(run: &mut Run<'_>, spec: &EtnaLogin, token: &SecretString) -> LogoutOutcome {
    let Ok(mut headers) = api_headers(spec, token) else {
        return LogoutOutcome { ok: false, http_status: 0, detail: "the token cannot be sent as a header".to_owned() };
    };
    empty_body(&mut headers);
    let url = spec.logout_url();
    let request = Request { method: Method::POST, url: &url, label: "Logout", headers, form: None };
    match run.exchange(request).await {
        Ok(r) if (200..300).contains(&r.status) => {
            LogoutOutcome { ok: true, http_status: r.status, detail: "session ended".to_owned() }
        }
        Ok(r) => {
            LogoutOutcome { ok: false, http_status: r.status, detail: format!("logout answered HTTP {}", r.status) }
        }
        Err(f) => {
            LogoutOutcome { ok: false, http_status: f.status.unwrap_or(0), detail: format!("logout: {}", f.detail) }
        }
    }
}

/// Headers of an API call made with the token: `Et-App-Key` and the Bearer token.
fn api_headers(spec: &EtnaLogin, token: &SecretString) -> Result<HeaderMap, &'static str> {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(HeaderName::from_static("et-app-key"), secret_header(&spec.app_key, "app_key")?);
    h.insert(AUTHORIZATION, bearer_header(token, "the token")?);
    Ok(h)
}

/// Headers of one request. The credentials are repeated on every step, as the server expects.
fn request_headers(spec: &EtnaLogin, step: Step, bearer: Option<&SecretString>) -> Result<HeaderMap, &'static str> {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    empty_body(&mut h);
    h.insert(HeaderName::from_static("et-app-key"), secret_header(&spec.app_key, "app_key")?);
    h.insert(HeaderName::from_static("username"), HeaderValue::from_str(&spec.username).map_err(|_| "username")?);
    h.insert(HeaderName::from_static("password"), secret_header(&spec.password, "password")?);
    if let Some(token) = bearer {
        h.insert(AUTHORIZATION, bearer_header(token, "the interim Token")?);
    }
    match step {
        Step::SecutityPin => {
            if let Some(pin) = &spec.pin {
                h.insert(HeaderName::from_static("pincode"), secret_header(pin, "pin")?);
            }
        }
        Step::VerificationCode => {
            if let Some(code) = &spec.verification_code {
                h.insert(HeaderName::from_static("verificationcode"), secret_header(code, "verification_code")?);
            }
        }
        _ => {}
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_credentials_marked_sensitive() {
        let spec = classify::tests::spec();
        let h = request_headers(&spec, Step::SecutityPin, Some(&"interim".into())).unwrap();
        assert_eq!(h["pincode"], "1111");
        assert!(h["pincode"].is_sensitive() && h["password"].is_sensitive() && h["et-app-key"].is_sensitive());
        assert_eq!(h["authorization"], "Bearer interim");
        assert!(!h.contains_key("verificationcode"));
        let dbg = format!("{h:?}");
        assert!(!dbg.contains("1111") && !dbg.contains("interim"), "{dbg}");
    }

    #[test]
    fn invalid_header_secret_is_named_not_shown() {
        let mut spec = classify::tests::spec();
        spec.password = "line\nbreak".into();
        assert_eq!(request_headers(&spec, Step::BaseAuthentication, None).unwrap_err(), "password");
    }

    #[test]
    fn steps_parse_with_server_spelling() {
        assert_eq!(Expect::parse("Succeeded"), Some(Expect::Succeeded));
        assert_eq!(Expect::parse("VerificationCode"), Some(Expect::Step(Step::VerificationCode)));
        assert_eq!(Expect::parse("Nope"), None);
    }

    #[test]
    fn token_url_handles_trailing_slash() {
        let mut spec = classify::tests::spec();
        for base in ["http://h/api", "http://h/api/"] {
            spec.base_url = Url::parse(base).unwrap();
            assert_eq!(spec.token_url().as_str(), "http://h/api/token");
        }
        spec.base_url = Url::parse("http://h").unwrap();
        assert_eq!(spec.token_url().as_str(), "http://h/token");
    }
}
