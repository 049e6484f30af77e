//! The requests of one ETNA run: the token steps, then the validation and the end of the session
//! its probe asks for. Every answer is read by [`super::classify`].

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Method;
use secrecy::SecretString;

use super::classify::{self, Context, Decision};
use super::{EtnaLogin, BASE_AUTHENTICATION, SECUTITY_PIN, TOKEN_VALIDATION, VERIFICATION_CODE};
use crate::protocol::http::{bearer_header, empty_body, secret_header, Request};
use crate::protocol::{Attempt, Finished, Lockout, LogoutOutcome, Reason, ResultClass, Step, Verdict};

/// Performs one attempt at the login: the token steps, then the validation and the end of the
/// session its probe asks for.
pub(super) async fn run(run: &mut Attempt<'_>, spec: &EtnaLogin) -> Finished {
    let (mut verdict, token) = token_steps(run, spec).await;
    let (mut login_done, mut session_end) = (None, None);
    if let Some(token) = token {
        if spec.validate {
            if let Some((reason, reason_text, detail)) = validate(run, spec, &token).await {
                // The login's state stays the one it reached.
                verdict = Verdict {
                    result: ResultClass::ValidationFailed,
                    step: TOKEN_VALIDATION,
                    reason,
                    reason_text,
                    detail,
                    lockout: Lockout::of(ResultClass::ValidationFailed),
                    ..verdict
                };
            }
        }
        // The login's duration is what a user waits for; ending the session is ours.
        login_done = run.answered_until();
        if spec.logout {
            session_end = Some(end_session(run, spec, &token).await);
        }
    }
    Finished { login_done, session_end, ..Finished::from(verdict) }
}

async fn token_steps(run: &mut Attempt<'_>, spec: &EtnaLogin) -> (Verdict, Option<SecretString>) {
    let url = spec.target.token_url();
    let mut sending = BASE_AUTHENTICATION;
    let mut bearer: Option<SecretString> = None;
    for number in 1..=spec.max_steps.max(1) {
        let headers = match request_headers(spec, sending, bearer.as_ref()) {
            Ok(h) => h,
            Err(field) => {
                let detail = format!("{field} cannot be sent as an HTTP header value");
                return (Verdict::of(sending, ResultClass::InvalidResponse, detail), None);
            }
        };
        let request = Request { method: Method::POST, url: &url, label: sending.as_str(), headers, form: None };
        let received = run.exchange(request).await;
        let state = received.as_ref().ok().and_then(|r| classify::answer_state(&r.answer()));
        run.record_http(sending, &received, state.map(Into::into));
        let received = match received {
            Ok(r) => r,
            Err(f) => return (Verdict::of(sending, f.class, f.detail), None),
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
    (Verdict::of(sending, ResultClass::StepLimit, "max_steps reached".to_owned()), None)
}

/// Checks `token` with `GET {base}/v1.0/users/@me/info`, recorded as the `TokenValidation` step:
/// `None` if it works, else the reason, its raw text and a detail.
async fn validate(run: &mut Attempt<'_>, spec: &EtnaLogin, token: &SecretString) -> Option<(Reason, String, String)> {
    let Ok(headers) = api_headers(spec, token) else {
        let detail = "token validation: the token cannot be sent as an HTTP header value".to_owned();
        return Some((Reason::NONE, String::new(), detail));
    };
    let url = spec.target.user_info_url();
    let request = Request { method: Method::GET, url: &url, label: TOKEN_VALIDATION.as_str(), headers, form: None };
    let received = run.exchange(request).await;
    run.record_http(TOKEN_VALIDATION, &received, None);
    match received {
        Ok(r) => classify::validation_failure(&r.answer()),
        Err(f) => Some((Reason::NONE, String::new(), format!("token validation: {}", f.detail))),
    }
}

/// Ends the session of `token` with `POST {base}/logout`.
async fn end_session(run: &mut Attempt<'_>, spec: &EtnaLogin, token: &SecretString) -> LogoutOutcome {
    let Ok(mut headers) = api_headers(spec, token) else {
        return LogoutOutcome { ok: false, status: 0, detail: "the token cannot be sent as a header".to_owned() };
    };
    empty_body(&mut headers);
    let url = spec.target.logout_url();
    let request = Request { method: Method::POST, url: &url, label: "Logout", headers, form: None };
    match run.exchange(request).await {
        Ok(r) if (200..300).contains(&r.status) => {
            LogoutOutcome { ok: true, status: r.status, detail: "session ended".to_owned() }
        }
        Ok(r) => LogoutOutcome { ok: false, status: r.status, detail: format!("logout answered HTTP {}", r.status) },
        Err(f) => LogoutOutcome { ok: false, status: f.status.unwrap_or(0), detail: format!("logout: {}", f.detail) },
    }
}

/// Headers of an API call made with the token: `Et-App-Key` and the Bearer token.
fn api_headers(spec: &EtnaLogin, token: &SecretString) -> Result<HeaderMap, &'static str> {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(HeaderName::from_static("et-app-key"), secret_header(&spec.target.app_key, "app_key")?);
    h.insert(AUTHORIZATION, bearer_header(token, "the token")?);
    Ok(h)
}

/// Headers of one request. The credentials are repeated on every step, as the server expects.
fn request_headers(spec: &EtnaLogin, step: Step, bearer: Option<&SecretString>) -> Result<HeaderMap, &'static str> {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    empty_body(&mut h);
    h.insert(HeaderName::from_static("et-app-key"), secret_header(&spec.target.app_key, "app_key")?);
    h.insert(HeaderName::from_static("username"), HeaderValue::from_str(&spec.username).map_err(|_| "username")?);
    h.insert(HeaderName::from_static("password"), secret_header(&spec.password, "password")?);
    if let Some(token) = bearer {
        h.insert(AUTHORIZATION, bearer_header(token, "the interim Token")?);
    }
    match step {
        SECUTITY_PIN => {
            if let Some(pin) = &spec.pin {
                h.insert(HeaderName::from_static("pincode"), secret_header(pin, "pin")?);
            }
        }
        VERIFICATION_CODE => {
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
        let h = request_headers(&spec, SECUTITY_PIN, Some(&"interim".into())).unwrap();
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
        assert_eq!(request_headers(&spec, BASE_AUTHENTICATION, None).unwrap_err(), "password");
    }
}
