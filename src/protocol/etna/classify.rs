//! The pure heart of the ETNA prober: one HTTP answer of `/token` in, one decision out.
//!
//! No I/O happens here, so every rule below is table-tested and fuzzed. The order of the rules
//! matters and follows ../shared/PROTOCOL.md: a 3xx or 5xx is an HTTP error whatever its body
//! (a 5xx may carry an `error` key too); an `{"error": …}` body is the app-key rejection whatever
//! the non-5xx status; then the `State`/`Step`/`Reason` shape decides.

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::{
    normalize_reason, parse_step, EtnaLogin, Expect, State, PASSWORD_EXPIRED, PIN_NOT_INITIALIZED, SECUTITY_PIN,
    TOO_MANY_REQUESTS, VERIFICATION_CODE,
};
use crate::protocol::http::{describe_body, get_str, json_object, Answer};
use crate::protocol::{Reason, ResultClass, Step, Verdict};

/// Where in the login the answer arrived.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The step the request answered.
    pub sent: Step,
    /// 1-based number of the request within the login.
    pub request: u32,
}

/// What to do after an answer.
#[derive(Debug)]
pub enum Decision {
    /// The login is over.
    Finish(Verdict),
    /// Send the next request, answering `step`, with the interim `token` as Bearer.
    Continue {
        /// The step the server asks for.
        step: Step,
        /// The interim token to send back.
        token: SecretString,
        /// Reason text of the prompt (e.g. "Invalid pin" on the first PIN prompt).
        reason: Reason,
    },
}

/// The `State` of an answer, if its body has the token shape. Used for step records.
pub fn answer_state(answer: &Answer) -> Option<State> {
    json_object(answer).and_then(|o| State::parse(get_str(&o, "State")?))
}

/// Classifies one answer of the login described by `spec`.
pub fn classify(answer: &Answer, spec: &EtnaLogin, ctx: Context) -> Decision {
    let status = answer.status;
    let finish = |result, reason, reason_text: String, detail: String| {
        Decision::Finish(Verdict { reason, reason_text, ..Verdict::of(ctx.sent, result, detail) })
    };

    if (300..400).contains(&status) {
        let to = crate::protocol::http::shown_location(answer.location);
        return finish(
            ResultClass::HttpError,
            Reason::NONE,
            String::new(),
            format!("HTTP {status} redirect to {to}; redirects are not followed (is base_url the API and not the front office?)"),
        );
    }

    let object = if answer.body_complete { json_object(answer) } else { None };
    let message = object.as_ref().and_then(error_message).unwrap_or_default();
    let msg_reason = |m: &str| if m.is_empty() { Reason::NONE } else { normalize_reason(m) };

    if status >= 500 {
        let shape = describe_body(answer);
        return finish(
            ResultClass::HttpError,
            msg_reason(&message),
            message.clone(),
            format!("HTTP {status} server error ({shape})"),
        );
    }
    if !answer.body_complete {
        let class = if is_protocol_status(status) { ResultClass::InvalidResponse } else { ResultClass::HttpError };
        return finish(
            class,
            Reason::NONE,
            String::new(),
            format!("HTTP {status} body exceeds the {} byte limit; abandoned", answer.body.len()),
        );
    }

    let Some(object) = object else {
        let shape = describe_body(answer);
        return if status == 429 {
            finish(ResultClass::RateLimited, TOO_MANY_REQUESTS, String::new(), format!("HTTP 429 ({shape})"))
        } else if is_protocol_status(status) {
            finish(
                ResultClass::InvalidResponse,
                Reason::NONE,
                String::new(),
                format!("HTTP {status} with {shape}, expected a JSON object with State"),
            )
        } else {
            finish(ResultClass::HttpError, Reason::NONE, String::new(), format!("unexpected HTTP {status} ({shape})"))
        };
    };

    let state_text = get_str(&object, "State");
    if state_text.is_none() {
        if let Some(err) = get_str(&object, "error") {
            return finish(
                ResultClass::AppKeyRejected,
                msg_reason(err),
                err.to_owned(),
                format!("HTTP {status}: the application key was rejected"),
            );
        }
        return if status == 429 {
            finish(ResultClass::RateLimited, TOO_MANY_REQUESTS, message, "HTTP 429".to_owned())
        } else if is_protocol_status(status) {
            finish(
                ResultClass::InvalidResponse,
                msg_reason(&message),
                message,
                format!("HTTP {status} JSON has no State"),
            )
        } else {
            finish(ResultClass::HttpError, msg_reason(&message), message, format!("unexpected HTTP {status}"))
        };
    }

    token_answer(&object, status, spec, ctx)
}

/// Rules for the documented `State`/`Step`/`Reason`/`Token` shape.
fn token_answer(object: &Map<String, Value>, status: u16, spec: &EtnaLogin, ctx: Context) -> Decision {
    let state_text = get_str(object, "State").unwrap_or_default();
    let step_text = get_str(object, "Step");
    let reason_text = get_str(object, "Reason").unwrap_or_default().to_owned();
    let reason = normalize_reason(&reason_text);
    let token = get_str(object, "Token").filter(|t| !t.trim().is_empty());
    let step = step_text.map(parse_step);
    let state = State::parse(state_text);

    let done = |result: ResultClass, detail: String| {
        Decision::Finish(Verdict {
            state: state.map(Into::into),
            reason,
            reason_text: reason_text.clone(),
            ..Verdict::of(step.unwrap_or(ctx.sent), result, detail)
        })
    };

    let Some(state) = state else {
        return done(ResultClass::InvalidResponse, format!("unknown State {state_text:?}"));
    };
    let expected_status = match state {
        State::Succeeded => status == 200,
        State::Expecting => status == 202,
        State::Failed => (400..500).contains(&status),
    };
    if !expected_status {
        return done(ResultClass::InvalidResponse, format!("State {} with HTTP {status}", state.as_str()));
    }

    match state {
        State::Succeeded => {
            if token.is_none() {
                done(ResultClass::InvalidResponse, "State Succeeded without a Token".to_owned())
            } else if let Expect::Step(want) = spec.expect {
                done(
                    ResultClass::UnexpectedStep,
                    format!("expected the server to ask for {want}, but the login succeeded without it"),
                )
            } else {
                done(ResultClass::Success, "login succeeded".to_owned())
            }
        }
        State::Failed => {
            let class = match reason {
                TOO_MANY_REQUESTS => ResultClass::RateLimited,
                PASSWORD_EXPIRED => ResultClass::PasswordExpired,
                PIN_NOT_INITIALIZED => ResultClass::PinNotInitialized,
                _ => ResultClass::AuthFailed,
            };
            let at = step.map_or_else(|| ctx.sent.to_string(), |s| s.to_string());
            done(class, format!("login failed at {at}"))
        }
        State::Expecting => {
            match reason {
                TOO_MANY_REQUESTS => return done(ResultClass::RateLimited, "server throttles logins".to_owned()),
                PIN_NOT_INITIALIZED => {
                    return done(ResultClass::PinNotInitialized, "the account's PIN is not initialised".to_owned())
                }
                _ => {}
            }
            let Some(asked) = step else {
                return done(ResultClass::InvalidResponse, "State Expecting without a Step".to_owned());
            };
            if asked == Step::OTHER {
                let name = step_text.unwrap_or_default();
                return done(ResultClass::UnexpectedStep, format!("server asks for unknown step {name:?}"));
            }
            if spec.expect == Expect::Step(asked) {
                return done(ResultClass::Success, format!("reached the expected step {asked}"));
            }
            if asked == ctx.sent {
                return done(
                    ResultClass::AuthFailed,
                    format!("{asked} was answered and asked for again: the answer was rejected"),
                );
            }
            if !spec.can_answer(asked) {
                let why = match asked {
                    SECUTITY_PIN => "the probe has no pin",
                    VERIFICATION_CODE => "the probe has no verification_code",
                    _ => "the step cannot be answered",
                };
                return done(
                    ResultClass::UnexpectedStep,
                    format!("server asks for {asked}; {why} and expects {}", spec.expect),
                );
            }
            let Some(token) = token else {
                return done(ResultClass::InvalidResponse, format!("Expecting {asked} without an interim Token"));
            };
            if ctx.request >= spec.max_steps {
                return done(
                    ResultClass::StepLimit,
                    format!("still Expecting {asked} after max_steps={} requests", spec.max_steps),
                );
            }
            Decision::Continue { step: asked, token: SecretString::from(token), reason }
        }
    }
}

/// The final token of a `Succeeded` answer, for validating it and ending its session.
pub fn final_token(answer: &Answer) -> Option<SecretString> {
    let object = json_object(answer)?;
    if State::parse(get_str(&object, "State")?)? != State::Succeeded {
        return None;
    }
    get_str(&object, "Token").filter(|t| !t.trim().is_empty()).map(|t| SecretString::from(t.to_owned()))
}

/// Why `GET {base}/v1.0/users/@me/info` refused a new token: the normalised reason, its raw
/// text (server input: the caller sanitises it) and a detail; `None` when the answer is a user
/// object, i.e. the token works.
pub fn validation_failure(answer: &Answer) -> Option<(Reason, String, String)> {
    let status = answer.status;
    let object = if answer.body_complete { json_object(answer) } else { None };
    if status == 200 {
        let is_user = object
            .as_ref()
            .is_some_and(|o| o.keys().any(|k| k.eq_ignore_ascii_case("UserId") || k.eq_ignore_ascii_case("Login")));
        return (!is_user).then(|| {
            let shape = describe_body(answer);
            (Reason::NONE, String::new(), format!("token validation: HTTP 200 without a user object ({shape})"))
        });
    }
    let message = object.as_ref().and_then(error_message).unwrap_or_default();
    let reason = if message.is_empty() { Reason::NONE } else { normalize_reason(&message) };
    let detail = if status == 401 {
        "token validation: HTTP 401, the new token was refused".to_owned()
    } else {
        format!("token validation: unexpected HTTP {status} ({})", describe_body(answer))
    };
    Some((reason, message, detail))
}

fn is_protocol_status(status: u16) -> bool {
    matches!(status, 200 | 202 | 401)
}

/// The human message of an error body, in any of the documented shapes.
fn error_message(object: &Map<String, Value>) -> Option<String> {
    if let Some(m) = get_str(object, "error").or_else(|| get_str(object, "Message")) {
        return Some(m.to_owned());
    }
    let errors = object.iter().find(|(k, _)| k.eq_ignore_ascii_case("Errors")).and_then(|(_, v)| v.as_array())?;
    let parts: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::etna;

    pub(crate) fn spec() -> EtnaLogin {
        EtnaLogin {
            target: std::sync::Arc::new(etna::EtnaTarget {
                base_url: url::Url::parse("http://127.0.0.1:1/api").unwrap(),
                app_key: "k".into(),
            }),
            username: "u".into(),
            password: "p".into(),
            pin: Some("1111".into()),
            verification_code: Some("2222".into()),
            expect: Expect::Succeeded,
            max_steps: 3,
            validate: false,
            logout: false,
        }
    }

    fn run(status: u16, body: &str, spec: &EtnaLogin, sent: Step, request: u32) -> Decision {
        let answer = Answer {
            status,
            content_type: Some("application/json"),
            location: None,
            body: body.as_bytes(),
            body_complete: true,
        };
        classify(&answer, spec, Context { sent, request })
    }

    fn verdict(status: u16, body: &str) -> Verdict {
        verdict_with(status, body, &spec(), etna::BASE_AUTHENTICATION, 1)
    }

    fn verdict_with(status: u16, body: &str, spec: &EtnaLogin, sent: Step, request: u32) -> Verdict {
        match run(status, body, spec, sent, request) {
            Decision::Finish(v) => v,
            Decision::Continue { step, .. } => panic!("expected a verdict, got Continue({step})"),
        }
    }

    #[test]
    fn table_of_single_answers() {
        use ResultClass::*;
        let cases: &[(u16, &str, ResultClass, Reason)] = &[
            (200, r#"{"State":"Succeeded","Token":"t"}"#, Success, Reason::NONE),
            (
                200,
                r#"{"State":"Succeeded","Token":"t","ConfirmationToken":null,"PersonalPhrase":null,"Image":null}"#,
                Success,
                Reason::NONE,
            ),
            (200, r#"{"state":"succeeded","token":"t"}"#, Success, Reason::NONE),
            (200, r#"{"State":"Succeeded"}"#, InvalidResponse, Reason::NONE),
            (200, r#"{"State":"Succeeded","Token":null}"#, InvalidResponse, Reason::NONE),
            (
                401,
                r#"{"State":"Failed","Step":"BaseAuthentication","Reason":"Invalid credentials"}"#,
                AuthFailed,
                etna::INVALID_CREDENTIALS,
            ),
            (
                401,
                r#"{"State":"Failed","Step":"BaseAuthentication","Reason":"Too many login requests. Please try again later."}"#,
                RateLimited,
                TOO_MANY_REQUESTS,
            ),
            (
                401,
                r#"{"State":"Failed","Step":"BaseAuthentication","Reason":"Your Password has expired and must be changed"}"#,
                PasswordExpired,
                PASSWORD_EXPIRED,
            ),
            (401, r#"{"State":"Failed","Step":"SecutityPin","Reason":"Invalid pin"}"#, AuthFailed, etna::INVALID_PIN),
            (
                401,
                r#"{"State":"Failed","Step":"VerificationCode","Reason":"Corrupted ticket"}"#,
                AuthFailed,
                etna::CORRUPTED_TICKET,
            ),
            (
                401,
                r#"{"State":"Failed","Step":"BaseAuthentication","Reason":"Account locked"}"#,
                AuthFailed,
                Reason::OTHER,
            ),
            (
                202,
                r#"{"State":"Expecting","Step":"SecutityPin","Reason":"PIN code is not init","Token":"i"}"#,
                PinNotInitialized,
                PIN_NOT_INITIALIZED,
            ),
            (202, r#"{"State":"Expecting","Step":"SecretQuestion","Token":"i"}"#, UnexpectedStep, Reason::NONE),
            (202, r#"{"State":"Expecting","Reason":"x","Token":"i"}"#, InvalidResponse, Reason::OTHER),
            (
                403,
                r#"{"error":"Application key is not defined or does not exist"}"#,
                AppKeyRejected,
                etna::APP_KEY_NOT_DEFINED,
            ),
            (
                401,
                r#"{"error":"Application key is not defined or does not exist"}"#,
                AppKeyRejected,
                etna::APP_KEY_NOT_DEFINED,
            ),
            (
                500,
                r#"{"message":"An error occurred while processing your request","error":"Unexpected server error"}"#,
                HttpError,
                Reason::OTHER,
            ),
            (500, r#"{"Model":null,"Errors":["boom"],"StatusCode":500,"IsSucceed":false}"#, HttpError, Reason::OTHER),
            (503, "Service Unavailable", HttpError, Reason::NONE),
            (302, "", HttpError, Reason::NONE),
            (
                404,
                r#"{"Message":"No HTTP resource was found that matches the request URI 'x'."}"#,
                HttpError,
                Reason::OTHER,
            ),
            (429, "slow down", RateLimited, TOO_MANY_REQUESTS),
            (200, "<html><body>Log on</body></html>", InvalidResponse, Reason::NONE),
            (200, r#"{"State":"Succeeded","Tok"#, InvalidResponse, Reason::NONE),
            (200, "[1,2]", InvalidResponse, Reason::NONE),
            (200, "\"x\"", InvalidResponse, Reason::NONE),
            (200, "{}", InvalidResponse, Reason::NONE),
            (200, r#"{"State":"Pending"}"#, InvalidResponse, Reason::NONE),
            (401, r#"{"State":"Succeeded","Token":"t"}"#, InvalidResponse, Reason::NONE),
            (200, r#"{"State":"Failed","Reason":"Invalid credentials"}"#, InvalidResponse, etna::INVALID_CREDENTIALS),
            (204, "", HttpError, Reason::NONE),
        ];
        for (status, body, result, reason) in cases {
            let v = verdict(*status, body);
            assert_eq!((v.result, v.reason), (*result, *reason), "HTTP {status} {body}: {}", v.detail);
        }
    }

    /// Where real servers vary and the protocol does not care, the reading is lenient: a byte
    /// order mark, keys in another case, a `Content-Type` that is not JSON (or none). Where the
    /// protocol is clear it is strict: anything else before the JSON is not the documented body.
    #[test]
    fn lenient_where_servers_vary_strict_where_the_protocol_is_clear() {
        use ResultClass::*;
        let bom = |json: &str| [b"\xEF\xBB\xBF".as_slice(), json.as_bytes()].concat();
        let ok = r#"{"State":"Succeeded","Token":"t"}"#;
        // (what, status, Content-Type, body, expected class)
        type Case<'a> = (&'a str, u16, Option<&'a str>, Vec<u8>, ResultClass);
        let cases: Vec<Case> = vec![
            ("byte order mark", 200, Some("application/json"), bom(ok), Success),
            (
                "byte order mark, failure",
                401,
                None,
                bom(r#"{"State":"Failed","Reason":"Invalid credentials"}"#),
                AuthFailed,
            ),
            (
                "byte order mark, app key",
                403,
                None,
                bom(r#"{"error":"Application key is not defined"}"#),
                AppKeyRejected,
            ),
            (
                "camelCase keys",
                200,
                Some("application/json"),
                br#"{"state":"Succeeded","token":"t"}"#.to_vec(),
                Success,
            ),
            ("lower-case State value", 200, None, br#"{"State":"succeeded","Token":"t"}"#.to_vec(), Success),
            ("text/plain", 200, Some("text/plain; charset=utf-8"), ok.as_bytes().to_vec(), Success),
            ("text/html", 200, Some("text/html"), ok.as_bytes().to_vec(), Success),
            ("no Content-Type", 200, None, ok.as_bytes().to_vec(), Success),
            ("whitespace around", 200, None, format!("\r\n  {ok}\n").into_bytes(), Success),
            ("two byte order marks", 200, None, bom(&String::from_utf8(bom(ok)).unwrap()), InvalidResponse),
            ("UTF-16 byte order mark", 200, None, [b"\xFF\xFE".as_slice(), ok.as_bytes()].concat(), InvalidResponse),
            ("garbage before", 200, None, format!(")]}}',\n{ok}").into_bytes(), InvalidResponse),
            ("a prefix of a BOM", 200, None, [b"\xEF\xBB".as_slice(), ok.as_bytes()].concat(), InvalidResponse),
            ("garbage after", 200, None, format!("{ok}x").into_bytes(), InvalidResponse),
        ];
        for (what, status, content_type, body, want) in cases {
            let answer = Answer { status, content_type, location: None, body: &body, body_complete: true };
            let ctx = Context { sent: etna::BASE_AUTHENTICATION, request: 1 };
            let got = match classify(&answer, &spec(), ctx) {
                Decision::Finish(v) => v.result,
                Decision::Continue { step, .. } => panic!("{what}: continues with {step}"),
            };
            assert_eq!(got, want, "{what}");
        }
        // A final token behind a byte order mark is found for validation and logout too.
        let body = bom(ok);
        let answer = Answer { status: 200, content_type: None, location: None, body: &body, body_complete: true };
        assert!(final_token(&answer).is_some());
    }

    #[test]
    fn failed_verdict_keeps_state_step_and_text() {
        let v = verdict(401, r#"{"State":"Failed","Step":"BaseAuthentication","Reason":"Invalid credentials"}"#);
        assert_eq!(v.state, Some(State::Failed.into()));
        assert_eq!(v.step, etna::BASE_AUTHENTICATION);
        assert_eq!(v.reason_text, "Invalid credentials");
    }

    #[test]
    fn pin_prompt_with_invalid_pin_reason_is_a_prompt() {
        let d = run(
            202,
            r#"{"Step":"SecutityPin","Reason":"Invalid pin","State":"Expecting","Token":"interim"}"#,
            &spec(),
            etna::BASE_AUTHENTICATION,
            1,
        );
        assert!(matches!(d, Decision::Continue { step: SECUTITY_PIN, reason: etna::INVALID_PIN, .. }), "{d:?}");
    }

    #[test]
    fn step_asked_again_after_answer_is_auth_failed() {
        let v = verdict_with(
            202,
            r#"{"Step":"SecutityPin","Reason":"Invalid pin","State":"Expecting","Token":"i"}"#,
            &spec(),
            SECUTITY_PIN,
            2,
        );
        assert_eq!((v.result, v.step, v.reason), (ResultClass::AuthFailed, SECUTITY_PIN, etna::INVALID_PIN));
    }

    #[test]
    fn expected_step_is_success_and_missing_secret_is_unexpected() {
        let mut s = spec();
        s.verification_code = None;
        let body =
            r#"{"State":"Expecting","Step":"VerificationCode","Reason":"Expecting confirmation code","Token":"i"}"#;
        assert_eq!(verdict_with(202, body, &s, SECUTITY_PIN, 2).result, ResultClass::UnexpectedStep);
        s.expect = Expect::Step(VERIFICATION_CODE);
        let v = verdict_with(202, body, &s, SECUTITY_PIN, 2);
        assert_eq!(
            (v.result, v.step, v.state),
            (ResultClass::Success, VERIFICATION_CODE, Some(State::Expecting.into()))
        );
        // Expecting a step but the server finishes without it.
        assert_eq!(
            verdict_with(200, r#"{"State":"Succeeded","Token":"t"}"#, &s, SECUTITY_PIN, 2).result,
            ResultClass::UnexpectedStep
        );
    }

    #[test]
    fn pin_not_initialised_even_when_pin_step_expected() {
        let mut s = spec();
        s.expect = Expect::Step(SECUTITY_PIN);
        let v = verdict_with(
            202,
            r#"{"State":"Expecting","Step":"SecutityPin","Reason":"PIN code is not init","Token":"i"}"#,
            &s,
            etna::BASE_AUTHENTICATION,
            1,
        );
        assert_eq!(v.result, ResultClass::PinNotInitialized);
    }

    #[test]
    fn step_limit_and_missing_interim_token() {
        let mut s = spec();
        s.max_steps = 2;
        let body = r#"{"State":"Expecting","Step":"VerificationCode","Token":"i"}"#;
        assert_eq!(verdict_with(202, body, &s, SECUTITY_PIN, 2).result, ResultClass::StepLimit);
        let no_token = r#"{"State":"Expecting","Step":"VerificationCode"}"#;
        assert_eq!(verdict_with(202, no_token, &spec(), SECUTITY_PIN, 2).result, ResultClass::InvalidResponse);
    }

    #[test]
    fn oversized_and_non_utf8_bodies() {
        let answer =
            Answer { status: 200, content_type: None, location: None, body: b"{\"State\"", body_complete: false };
        match classify(&answer, &spec(), Context { sent: etna::BASE_AUTHENTICATION, request: 1 }) {
            Decision::Finish(v) => assert_eq!(v.result, ResultClass::InvalidResponse),
            d => panic!("{d:?}"),
        }
        let answer =
            Answer { status: 200, content_type: None, location: None, body: &[0xff, 0xfe, b'{'], body_complete: true };
        match classify(&answer, &spec(), Context { sent: etna::BASE_AUTHENTICATION, request: 1 }) {
            Decision::Finish(v) => {
                assert_eq!(v.result, ResultClass::InvalidResponse);
                assert!(v.detail.contains("not UTF-8"), "{}", v.detail);
            }
            d => panic!("{d:?}"),
        }
    }
}

#[cfg(test)]
mod properties {
    use super::tests::spec;
    use super::*;
    use proptest::prelude::*;

    fn any_context() -> impl Strategy<Value = Context> {
        (prop::sample::select(vec![super::super::BASE_AUTHENTICATION, SECUTITY_PIN, VERIFICATION_CODE]), 1u32..=4)
            .prop_map(|(sent, request)| Context { sent, request })
    }

    /// JSON objects built from the protocol's own keys with values of any type, so the
    /// interesting branches are reached far more often than with random bytes.
    fn token_like_body() -> impl Strategy<Value = Vec<u8>> {
        let key = prop::sample::select(vec!["State", "state", "Step", "Reason", "Token", "error", "Message", "Errors"]);
        let text = prop::sample::select(vec![
            "Succeeded",
            "Expecting",
            "Failed",
            "SecutityPin",
            "VerificationCode",
            "BaseAuthentication",
            "Invalid pin",
            "PIN code is not init",
            "Too many login requests",
            "",
            "x",
        ]);
        let value = prop_oneof![
            text.prop_map(|t| serde_json::Value::String(t.to_owned())),
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::json!(["a"])),
        ];
        prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
            let map: serde_json::Map<String, serde_json::Value> =
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            serde_json::to_vec(&map).unwrap()
        })
    }

    fn check(status: u16, body: &[u8], complete: bool, ctx: Context) {
        let answer = Answer { status, content_type: None, location: None, body, body_complete: complete };
        match classify(&answer, &spec(), ctx) {
            Decision::Continue { .. } => {
                assert_eq!(status, 202, "only a 202 continues");
                assert!(complete);
                assert!(ctx.request < spec().max_steps, "never continues past max_steps");
            }
            Decision::Finish(v) => {
                if (300..400).contains(&status) || status >= 500 {
                    assert_eq!(v.result, ResultClass::HttpError);
                }
                if v.result == ResultClass::Success {
                    assert!(matches!(status, 200 | 202));
                }
            }
        }
        let _ = answer_state(&answer);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_any_status_is_classified(status in 100u16..=599, body in prop::collection::vec(any::<u8>(), 0..300), complete: bool, ctx in any_context()) {
            check(status, &body, complete, ctx);
        }

        #[test]
        fn token_shaped_bodies_are_classified(status in prop::sample::select(vec![200u16, 202, 302, 401, 403, 404, 429, 500]), body in token_like_body(), ctx in any_context()) {
            check(status, &body, true, ctx);
        }

        #[test]
        fn reasons_and_texts_stay_bounded(text in ".{0,600}") {
            let _ = normalize_reason(&text);
            let clean = crate::protocol::sanitize(&text, &[]);
            prop_assert!(clean.chars().count() <= crate::protocol::text::MAX_TEXT_CHARS);
            prop_assert!(!clean.chars().any(char::is_control));
        }
    }
}
