//! The pure heart of the OAuth 2.0 prober: one HTTP answer in, one decision out, for each
//! request a run makes (token, discovery document, JWKS, userinfo, introspection, revocation).
//!
//! No I/O happens here, so every rule is table-tested and fuzzed. Token answers follow RFC 6749
//! §5: a 3xx or 5xx is an HTTP error whatever its body; a JSON `error` decides the class and the
//! reason (the client refused → `client_rejected`, `temporarily_unavailable` → `rate_limited`,
//! any other → `auth_failed`); a 200 must carry a Bearer `access_token` and a numeric
//! `expires_in` if any. `error_description` is raw text for humans, never a label.

use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use secrecy::SecretString;
use serde_json::{Map, Value};
use url::Url;

use super::names::*;
use crate::protocol::http::{describe_body, get_number, get_str, json_object, Answer};
use crate::protocol::{Reason, ResultClass, Step, Verdict};

/// What a successful token answer granted. Tokens stay inside [`SecretString`].
#[derive(Debug)]
pub struct Granted {
    /// `access_token`.
    pub access_token: SecretString,
    /// `refresh_token`, if issued.
    pub refresh_token: Option<SecretString>,
    /// `id_token`, if issued (OpenID Connect).
    pub id_token: Option<SecretString>,
    /// `expires_in`: the lifetime granted, if stated.
    pub expires_in: Option<Duration>,
}

impl Granted {
    /// Its tokens with the hint their revocation takes, refresh token first (as
    /// [`tokens_in`] gives them).
    pub fn tokens(&self) -> Vec<(SecretString, &'static str)> {
        let refresh = self.refresh_token.iter().map(|t| (t.clone(), "refresh_token"));
        let id = self.id_token.iter().map(|t| (t.clone(), "id_token"));
        refresh.chain([(self.access_token.clone(), "access_token")]).chain(id).collect()
    }
}

/// The class and reason of an RFC 6749 §5.2 `error` code. Codes the RFC does not list are
/// `auth_failed` with reason `other`.
pub fn error_code(code: &str) -> (ResultClass, Reason) {
    match code.trim() {
        "invalid_request" => (ResultClass::AuthFailed, INVALID_REQUEST),
        "invalid_client" => (ResultClass::ClientRejected, INVALID_CLIENT),
        "invalid_grant" => (ResultClass::AuthFailed, INVALID_GRANT),
        "unauthorized_client" => (ResultClass::ClientRejected, UNAUTHORIZED_CLIENT),
        "unsupported_grant_type" => (ResultClass::ClientRejected, UNSUPPORTED_GRANT_TYPE),
        "invalid_scope" => (ResultClass::AuthFailed, INVALID_SCOPE),
        "temporarily_unavailable" => (ResultClass::RateLimited, TEMPORARILY_UNAVAILABLE),
        _ => (ResultClass::AuthFailed, Reason::OTHER),
    }
}

/// At most 40 characters of a server's error code, for details.
fn code_shown(code: &str) -> String {
    code.chars().take(40).collect()
}

fn verdict(step: Step, result: ResultClass, reason: Reason, reason_text: String, detail: String) -> Verdict {
    Verdict { result, state: None, step, reason, reason_text, detail, lockout: lockout(result, reason) }
}

/// The `error` and `error_description` of an OAuth 2.0 error body.
fn oauth_error(object: &Map<String, Value>) -> Option<(&str, &str)> {
    let code = get_str(object, "error")?;
    Some((code, get_str(object, "error_description").unwrap_or_default()))
}

/// The tokens a token answer carries, whatever else it says (an answer refused for its
/// `token_type`, say, still issued them): with the hint their revocation takes, refresh tokens
/// first (revoking one ends its grant).
pub fn tokens_in(answer: &Answer) -> Vec<(SecretString, &'static str)> {
    let Some(object) = answer.body_complete.then(|| json_object(answer)).flatten() else { return Vec::new() };
    ["refresh_token", "access_token", "id_token"]
        .into_iter()
        .filter_map(|key| {
            let t = get_str(&object, key).filter(|t| !t.trim().is_empty())?;
            Some((SecretString::from(t.to_owned()), key))
        })
        .collect()
}

/// Classifies the answer to a token request (`step` is `Token` or `Refresh`).
pub fn token_answer(answer: &Answer, step: Step) -> Result<Granted, Verdict> {
    let status = answer.status;
    let fail = |result, reason, text: &str, detail: String| Err(verdict(step, result, reason, text.to_owned(), detail));
    if (300..400).contains(&status) {
        let to = crate::protocol::http::shown_location(answer.location);
        return fail(
            ResultClass::HttpError,
            Reason::NONE,
            "",
            format!("HTTP {status} redirect to {to}; redirects are not followed (is the token endpoint right?)"),
        );
    }
    let object = if answer.body_complete { json_object(answer) } else { None };
    let error = object.as_ref().and_then(oauth_error);
    if status == 429 {
        // Throttled, whatever error code says so (`slow_down`, `temporarily_unavailable`), and
        // whatever the body's size.
        let (reason, text) = error.map_or((TOO_MANY_REQUESTS, ""), |(code, text)| {
            (error_code(code).1, if text.is_empty() { code } else { text })
        });
        return fail(ResultClass::RateLimited, reason, text, format!("HTTP 429 ({})", describe_body(answer)));
    }
    if status >= 500 {
        let (reason, text) = error.map_or((Reason::NONE, ""), |(code, text)| (error_code(code).1, text));
        return fail(
            ResultClass::HttpError,
            reason,
            text,
            format!("HTTP {status} server error ({})", describe_body(answer)),
        );
    }
    if !answer.body_complete && matches!(status, 401 | 403) {
        // Too long to read an error from: a refusal all the same, counted as one.
        let detail = format!("HTTP {status} whose body exceeds the {} byte limit: refused", answer.body.len());
        return fail(ResultClass::AuthFailed, REFUSED, "", detail);
    }
    if !answer.body_complete {
        let class =
            if matches!(status, 200 | 400 | 401) { ResultClass::InvalidResponse } else { ResultClass::HttpError };
        let detail = format!("HTTP {status} body exceeds the {} byte limit; abandoned", answer.body.len());
        return fail(class, Reason::NONE, "", detail);
    }
    if let Some((code, text)) = error {
        let (class, reason) = error_code(code);
        let text = if text.is_empty() { code } else { text };
        let who = match class {
            ResultClass::ClientRejected => "the client was refused",
            ResultClass::RateLimited => "the server is temporarily unavailable",
            _ => "the grant was refused",
        };
        return fail(class, reason, text, format!("HTTP {status}: error {}: {who}", code_shown(code)));
    }
    if matches!(status, 400 | 401 | 403) {
        // A refusal without RFC 6749's error body: some servers answer a wrong password, secret
        // or unknown user so. Still a refusal of the credentials, for the lockout guard too.
        let shape = describe_body(answer);
        return fail(
            ResultClass::AuthFailed,
            REFUSED,
            "",
            format!("HTTP {status} with {shape} and no OAuth 2.0 error: refused"),
        );
    }
    let Some(object) = object else {
        let shape = describe_body(answer);
        return if status == 200 {
            fail(
                ResultClass::InvalidResponse,
                Reason::NONE,
                "",
                format!("HTTP 200 with {shape}, expected a JSON token answer"),
            )
        } else {
            fail(ResultClass::HttpError, Reason::NONE, "", format!("unexpected HTTP {status} ({shape})"))
        };
    };
    if status != 200 {
        return fail(ResultClass::HttpError, Reason::NONE, "", format!("unexpected HTTP {status}"));
    }
    let invalid = |detail: &str| fail(ResultClass::InvalidResponse, Reason::NONE, "", format!("HTTP 200: {detail}"));
    let Some(access) = get_str(&object, "access_token").filter(|t| !t.trim().is_empty()) else {
        return invalid("no access_token");
    };
    match get_str(&object, "token_type") {
        Some(t) if t.trim().eq_ignore_ascii_case("bearer") => {}
        Some(t) => {
            let shown: String = t.chars().take(20).collect();
            return invalid(&format!("token_type {shown:?} is not Bearer"));
        }
        None => return invalid("no token_type"),
    }
    let expires_in = match get_number(&object, "expires_in") {
        None => None,
        Some(Ok(n)) if (0.0..=1e9).contains(&n) => Some(Duration::from_secs_f64(n)),
        Some(_) => return invalid("expires_in is not a number of seconds"),
    };
    let secret = |key| get_str(&object, key).filter(|t| !t.trim().is_empty()).map(|t| SecretString::from(t.to_owned()));
    Ok(Granted {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: secret("refresh_token"),
        id_token: secret("id_token"),
        expires_in,
    })
}

/// The endpoints of an authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// `issuer`, exactly as the server spells it (the `iss` tokens must carry).
    pub issuer: String,
    /// `token_endpoint`.
    pub token_endpoint: Url,
    /// `jwks_uri`.
    pub jwks_uri: Option<Url>,
    /// `userinfo_endpoint`.
    pub userinfo_endpoint: Option<Url>,
    /// `introspection_endpoint`.
    pub introspection_endpoint: Option<Url>,
    /// `revocation_endpoint`.
    pub revocation_endpoint: Option<Url>,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<Url>,
    /// `end_session_endpoint` (OpenID Connect RP-Initiated Logout).
    pub end_session_endpoint: Option<Url>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207): every authorization
    /// response must then carry `iss`.
    pub iss_parameter_supported: bool,
}

/// Why a discovery or JWKS fetch failed: a class (for a first fetch, the run's result) and a
/// detail.
pub type FetchFailure = (ResultClass, String);

/// Checks that an answer to a discovery or JWKS fetch is a complete 200 JSON object.
fn fetched_object(answer: &Answer, what: &str) -> Result<Map<String, Value>, FetchFailure> {
    let status = answer.status;
    if status != 200 {
        let to = answer
            .location
            .map(|l| format!(" to {}", crate::protocol::http::shown_location(Some(l))))
            .unwrap_or_default();
        return Err((ResultClass::HttpError, format!("{what}: HTTP {status}{to} ({})", describe_body(answer))));
    }
    if !answer.body_complete {
        return Err((
            ResultClass::InvalidResponse,
            format!("{what}: body exceeds the {} byte limit", answer.body.len()),
        ));
    }
    json_object(answer).ok_or_else(|| {
        (ResultClass::InvalidResponse, format!("{what}: {} is not a JSON object", describe_body(answer)))
    })
}

/// Reads a discovery document fetched for `issuer` (OpenID Connect Discovery 1.0 §4): its
/// `issuer` must be the configured one (a trailing slash aside) and it must name a token
/// endpoint.
pub fn metadata(answer: &Answer, issuer: &Url) -> Result<Metadata, FetchFailure> {
    let object = fetched_object(answer, "discovery")?;
    let invalid = |detail: String| Err((ResultClass::InvalidResponse, format!("discovery: {detail}")));
    let Some(said) = get_str(&object, "issuer") else { return invalid("the document has no issuer".to_owned()) };
    if said.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
        let shown: String = said.chars().take(80).collect();
        return invalid(format!("issuer mismatch: the document says {shown:?}, the target is {:?}", issuer.as_str()));
    }
    let url = |key: &str| -> Result<Option<Url>, FetchFailure> {
        match get_str(&object, key) {
            None => Ok(None),
            Some(text) => match Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(u)),
                _ => Err((ResultClass::InvalidResponse, format!("discovery: {key} is not an http(s) URL"))),
            },
        }
    };
    let Some(token_endpoint) = url("token_endpoint")? else {
        return invalid("the document names no token_endpoint".to_owned());
    };
    Ok(Metadata {
        issuer: said.to_owned(),
        token_endpoint,
        jwks_uri: url("jwks_uri")?,
        userinfo_endpoint: url("userinfo_endpoint")?,
        introspection_endpoint: url("introspection_endpoint")?,
        revocation_endpoint: url("revocation_endpoint")?,
        authorization_endpoint: url("authorization_endpoint")?,
        end_session_endpoint: url("end_session_endpoint")?,
        iss_parameter_supported: matches!(
            object.get("authorization_response_iss_parameter_supported"),
            Some(Value::Bool(true))
        ),
    })
}

/// Reads a JWKS: the keys authprobe can use (a key of a type it cannot read is skipped, as
/// clients do), and a fingerprint of the set to notice rotations. An empty set is an error.
pub fn jwks(answer: &Answer) -> Result<(JwkSet, u64), FetchFailure> {
    let object = fetched_object(answer, "JWKS")?;
    let Some(Value::Array(keys)) = object.get("keys") else {
        return Err((ResultClass::InvalidResponse, "JWKS: no keys array".to_owned()));
    };
    let mut usable = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for key in keys {
        let jwk = serde_json::from_value::<Jwk>(key.clone()).ok();
        if let Some(jwk) = jwk.filter(|j| jsonwebtoken::DecodingKey::from_jwk(j).is_ok()) {
            usable.push(jwk);
            texts.push(key.to_string());
        }
    }
    if usable.is_empty() {
        return Err((ResultClass::InvalidResponse, format!("JWKS: none of its {} keys is usable", keys.len())));
    }
    texts.sort();
    let fingerprint = crate::hash::stable_hash(texts.join("\n").as_bytes());
    Ok((JwkSet { keys: usable }, fingerprint))
}

/// Why a check of the token failed: the reason, its raw text and a detail.
pub type Refusal = (Reason, String, String);

/// Reads a userinfo answer: the token works if it is a 200 JSON object with a `sub`.
pub fn userinfo(answer: &Answer) -> Result<(), Refusal> {
    let status = answer.status;
    let object = if answer.body_complete { json_object(answer) } else { None };
    if status == 200 {
        return match object.as_ref().and_then(|o| get_str(o, "sub")) {
            Some(sub) if !sub.is_empty() => Ok(()),
            _ => Err((
                USERINFO_DENIED,
                String::new(),
                format!("userinfo: HTTP 200 without a sub ({})", describe_body(answer)),
            )),
        };
    }
    let text = object.as_ref().and_then(oauth_error).map(|(c, d)| if d.is_empty() { c } else { d }).unwrap_or_default();
    let detail = match status {
        401 | 403 => format!("userinfo: HTTP {status}, the token was refused"),
        _ => format!("userinfo: unexpected HTTP {status} ({})", describe_body(answer)),
    };
    Err((USERINFO_DENIED, text.to_owned(), detail))
}

/// Reads an RFC 7662 introspection answer: `Ok(true)` for an active token, `Ok(false)` for an
/// inactive one, else why it could not be read.
pub fn introspection(answer: &Answer) -> Result<bool, Refusal> {
    let status = answer.status;
    let object = if answer.body_complete { json_object(answer) } else { None };
    if status != 200 {
        let (reason, text) = match object.as_ref().and_then(oauth_error) {
            Some((code, d)) => (error_code(code).1, if d.is_empty() { code } else { d }),
            None => (Reason::NONE, ""),
        };
        return Err((reason, text.to_owned(), format!("introspection: HTTP {status} ({})", describe_body(answer))));
    }
    match object.as_ref().and_then(|o| o.get("active")) {
        Some(Value::Bool(active)) => Ok(*active),
        _ => Err((
            Reason::NONE,
            String::new(),
            format!("introspection: HTTP 200 without a boolean active ({})", describe_body(answer)),
        )),
    }
}

/// Reads an RFC 7009 revocation answer: whether the server took it, and what happened in words.
pub fn revocation(answer: &Answer) -> (bool, String) {
    match answer.status {
        200 => (true, "revoked".to_owned()),
        status => {
            let code = json_object(answer).and_then(|o| get_str(&o, "error").map(code_shown));
            let code = code.map(|c| format!(": error {c}")).unwrap_or_default();
            (false, format!("revocation answered HTTP {status}{code}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer {
            status,
            content_type: Some("application/json"),
            location: None,
            body: body.as_bytes(),
            body_complete: true,
        }
    }

    fn refused(status: u16, body: &str) -> Verdict {
        token_answer(&answer(status, body), TOKEN).expect_err("a refusal")
    }

    #[test]
    fn table_of_token_answers() {
        use ResultClass::*;
        let cases: &[(u16, &str, ResultClass, Reason)] = &[
            (400, r#"{"error":"invalid_request"}"#, AuthFailed, INVALID_REQUEST),
            (
                401,
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
                ClientRejected,
                INVALID_CLIENT,
            ),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
                AuthFailed,
                INVALID_GRANT,
            ),
            (400, r#"{"error":"unauthorized_client"}"#, ClientRejected, UNAUTHORIZED_CLIENT),
            (400, r#"{"error":"unsupported_grant_type"}"#, ClientRejected, UNSUPPORTED_GRANT_TYPE),
            (400, r#"{"error":"invalid_scope"}"#, AuthFailed, INVALID_SCOPE),
            (400, r#"{"error":"invalid_target"}"#, AuthFailed, Reason::OTHER),
            (503, r#"{"error":"temporarily_unavailable"}"#, HttpError, TEMPORARILY_UNAVAILABLE),
            (400, r#"{"error":"temporarily_unavailable"}"#, RateLimited, TEMPORARILY_UNAVAILABLE),
            (429, "slow down", RateLimited, TOO_MANY_REQUESTS),
            (429, "{}", RateLimited, TOO_MANY_REQUESTS),
            (500, "<html>oops</html>", HttpError, Reason::NONE),
            (302, "", HttpError, Reason::NONE),
            (404, "not found", HttpError, Reason::NONE),
            (200, "<html>login</html>", InvalidResponse, Reason::NONE),
            (200, r#"{"token_type":"Bearer"}"#, InvalidResponse, Reason::NONE),
            (200, r#"{"access_token":"","token_type":"Bearer"}"#, InvalidResponse, Reason::NONE),
            (200, r#"{"access_token":"a","token_type":"mac"}"#, InvalidResponse, Reason::NONE),
            (200, r#"{"access_token":"a"}"#, InvalidResponse, Reason::NONE),
            (200, r#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#, InvalidResponse, Reason::NONE),
            (200, r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#, InvalidResponse, Reason::NONE),
            // Refusals without an OAuth 2.0 error body, which some servers send.
            (400, r#"{"message":"bad"}"#, AuthFailed, REFUSED),
            (401, "", AuthFailed, REFUSED),
            (403, "<html>Forbidden</html>", AuthFailed, REFUSED),
            // Throttled whatever the error code says.
            (429, r#"{"error":"slow_down","error_description":"wait"}"#, RateLimited, Reason::OTHER),
            (429, r#"{"error":"temporarily_unavailable"}"#, RateLimited, TEMPORARILY_UNAVAILABLE),
            (429, r#"{"error":"invalid_grant"}"#, RateLimited, INVALID_GRANT),
        ];
        for (status, body, class, reason) in cases {
            let v = refused(*status, body);
            assert_eq!((v.result, v.reason), (*class, *reason), "HTTP {status} {body}: {}", v.detail);
            assert_eq!(v.step, TOKEN);
        }
    }

    #[test]
    fn tokens_of_a_refused_answer_are_found_for_revocation() {
        let a = answer(200, r#"{"access_token":"at-9","token_type":"mac","refresh_token":"rt-9"}"#);
        assert!(token_answer(&a, TOKEN).is_err());
        let found: Vec<(String, &str)> =
            tokens_in(&a).into_iter().map(|(t, h)| (secrecy::ExposeSecret::expose_secret(&t).to_owned(), h)).collect();
        assert_eq!(found, [("rt-9".to_owned(), "refresh_token"), ("at-9".to_owned(), "access_token")]);
        assert!(tokens_in(&answer(200, "not json")).is_empty());
    }

    #[test]
    fn granted_tokens_and_lifetimes() {
        let body = r#"{"access_token":"at-1","token_type":"bearer","expires_in":"3600","refresh_token":"rt-1","id_token":"id-1","scope":"openid"}"#;
        let g = token_answer(&answer(200, body), TOKEN).unwrap();
        assert_eq!(g.access_token.expose_secret(), "at-1");
        assert_eq!(g.refresh_token.unwrap().expose_secret(), "rt-1");
        assert_eq!(g.id_token.unwrap().expose_secret(), "id-1");
        assert_eq!(g.expires_in, Some(Duration::from_secs(3600)));
        let g = token_answer(
            &answer(200, "\u{feff}{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":60}"),
            REFRESH,
        )
        .unwrap();
        assert_eq!(g.expires_in, Some(Duration::from_secs(60)));
        let g = token_answer(&answer(200, r#"{"access_token":"a","token_type":"Bearer"}"#), TOKEN).unwrap();
        assert!(g.expires_in.is_none() && g.refresh_token.is_none());
    }

    #[test]
    fn error_description_is_text_not_label_and_detail_is_bounded() {
        let long = "x".repeat(500);
        let v = refused(400, &format!(r#"{{"error":"{long}","error_description":"because"}}"#));
        assert_eq!((v.result, v.reason, v.reason_text.as_str()), (ResultClass::AuthFailed, Reason::OTHER, "because"));
        assert!(v.detail.len() < 120, "{}", v.detail);
    }

    #[test]
    fn discovery_documents() {
        let issuer = Url::parse("http://127.0.0.1:1/oauth2").unwrap();
        let good = r#"{"issuer":"http://127.0.0.1:1/oauth2/","token_endpoint":"http://127.0.0.1:1/oauth2/token","jwks_uri":"http://127.0.0.1:1/oauth2/jwks"}"#;
        let m = metadata(&answer(200, good), &issuer).unwrap();
        assert_eq!(m.token_endpoint.as_str(), "http://127.0.0.1:1/oauth2/token");
        assert_eq!(m.issuer, "http://127.0.0.1:1/oauth2/");
        assert!(m.revocation_endpoint.is_none());
        for (status, body, class, words) in [
            (
                200,
                r#"{"issuer":"http://evil/","token_endpoint":"http://x/t"}"#,
                ResultClass::InvalidResponse,
                "issuer mismatch",
            ),
            (200, r#"{"issuer":"http://127.0.0.1:1/oauth2"}"#, ResultClass::InvalidResponse, "no token_endpoint"),
            (
                200,
                r#"{"issuer":"http://127.0.0.1:1/oauth2","token_endpoint":"ftp://x"}"#,
                ResultClass::InvalidResponse,
                "not an http(s) URL",
            ),
            (200, "<html></html>", ResultClass::InvalidResponse, "HTML page"),
            (404, "nope", ResultClass::HttpError, "HTTP 404"),
        ] {
            let (c, d) = metadata(&answer(status, body), &issuer).unwrap_err();
            assert_eq!(c, class, "{body}");
            assert!(d.contains(words), "{d}");
        }
    }

    #[test]
    fn jwks_keeps_usable_keys_and_notices_changes() {
        let ec = r#"{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let odd = r#"{"kty":"weird","kid":"k2"}"#;
        let (set, a) = jwks(&answer(200, &format!(r#"{{"keys":[{ec},{odd}]}}"#))).unwrap();
        assert_eq!(set.keys.len(), 1);
        let (_, b) = jwks(&answer(200, &format!(r#"{{"keys":[{odd},{ec}]}}"#))).unwrap();
        assert_eq!(a, b, "order does not matter");
        let (_, c) = jwks(&answer(200, &format!(r#"{{"keys":[{}]}}"#, ec.replace("k1", "k3")))).unwrap();
        assert_ne!(a, c);
        assert!(jwks(&answer(200, r#"{"keys":[]}"#)).is_err());
        assert!(jwks(&answer(200, r#"{"nokeys":1}"#)).is_err());
    }

    #[test]
    fn userinfo_introspection_revocation() {
        assert!(userinfo(&answer(200, r#"{"sub":"u1"}"#)).is_ok());
        assert_eq!(userinfo(&answer(200, r#"{"name":"x"}"#)).unwrap_err().0, USERINFO_DENIED);
        let (r, _, d) = userinfo(&answer(401, r#"{"error":"invalid_token"}"#)).unwrap_err();
        assert_eq!(r, USERINFO_DENIED);
        assert!(d.contains("refused"));
        assert_eq!(introspection(&answer(200, r#"{"active":true,"sub":"x"}"#)), Ok(true));
        assert_eq!(introspection(&answer(200, r#"{"active":false}"#)), Ok(false));
        assert!(introspection(&answer(200, r#"{"active":"yes"}"#)).is_err());
        assert_eq!(introspection(&answer(401, r#"{"error":"invalid_client"}"#)).unwrap_err().0, INVALID_CLIENT);
        assert!(revocation(&answer(200, "")).0);
        let (ok, d) = revocation(&answer(400, r#"{"error":"unsupported_token_type"}"#));
        assert!(!ok && d.contains("unsupported_token_type"), "{d}");
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_answer_is_classified_without_panic(status in 100u16..=599, body in prop::collection::vec(any::<u8>(), 0..300), complete: bool) {
            let a = Answer { status, content_type: None, location: None, body: &body, body_complete: complete };
            match token_answer(&a, TOKEN) {
                Ok(g) => prop_assert!(status == 200 && !g.access_token.expose_secret().is_empty()),
                Err(v) => {
                    prop_assert!(v.result != ResultClass::Success);
                    prop_assert!(v.detail.chars().count() <= 200, "{}", v.detail);
                }
            }
            let issuer = Url::parse("http://h/").unwrap();
            let _ = metadata(&a, &issuer);
            let _ = jwks(&a);
            let _ = userinfo(&a);
            let _ = introspection(&a);
            let _ = revocation(&a);
        }

        #[test]
        fn token_shaped_bodies_are_classified(
            status in prop::sample::select(vec![200u16, 400, 401, 429, 500]),
            code in prop::sample::select(vec!["invalid_grant", "invalid_client", "x", ""]),
            token in prop::option::of("[a-z]{0,5}"),
            kind in prop::sample::select(vec!["Bearer", "bearer", "DPoP", ""]),
            expires in prop::sample::select(vec!["3600", "\"60\"", "\"x\"", "null", "-1"]),
        ) {
            let mut members = vec![format!("\"token_type\":\"{kind}\""), format!("\"expires_in\":{expires}")];
            if let Some(t) = &token { members.push(format!("\"access_token\":\"{t}\"")); }
            if !code.is_empty() { members.push(format!("\"error\":\"{code}\"")); }
            let body = format!("{{{}}}", members.join(","));
            let ok = token_answer(&answer(status, &body), TOKEN).is_ok();
            let want = status == 200 && code.is_empty() && token.is_some_and(|t| !t.is_empty())
                && kind.eq_ignore_ascii_case("bearer") && matches!(expires, "3600" | "\"60\"" | "null");
            prop_assert_eq!(ok, want, "{}", body);
        }
    }
}
