//! The requests of one OAuth 2.0 run: discovery if needed, the token request by the probe's
//! grant with the client authenticated, then the refresh, the check and the revocation its
//! probe asks for. Every answer is read by [`super::classify`] or [`super::jwt`].

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use super::classify::{self, Granted, Refusal};
use super::discovery::{self, Resolved};
use super::jwt::{self, Check, Expected};
use super::names::*;
use super::{interactive, ClientAuth, Grant, OAuth2Login, Validate};
use crate::protocol::http::{bearer_header, secret_header, Form, Request};
use crate::protocol::{Attempt, Finished, LogoutOutcome, Reason, ResultClass, Step, Verdict};

/// How long a `private_key_jwt` assertion is valid.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// Performs one attempt at the login.
pub(crate) async fn run(run: &mut Attempt<'_>, spec: &OAuth2Login) -> Finished {
    let target = &spec.target;
    let interactive = match &spec.grant {
        Grant::AuthorizationCode(i) => Some(&**i),
        _ => None,
    };
    let need_keys = spec.validate == Validate::Jwt;
    // An interactive login needs discovery for the endpoints its target does not name.
    let browser_endpoints = interactive.is_some_and(|i| {
        target.endpoints.authorization.is_none() || (i.logout && target.endpoints.end_session.is_none())
    });
    let (resolved, mut facts) = discovery::resolve(run, target, need_keys, browser_endpoints).await;
    let mut resolved = match resolved {
        Ok(r) => r,
        Err((class, detail)) => {
            // The fetch that failed: the discovery document's or the key set's.
            let step = run.last_step().filter(|s| *s == JWKS).unwrap_or(DISCOVERY);
            let verdict = Verdict { reason: DISCOVERY_FAILED, ..Verdict::of(step, class, detail) };
            return Finished { discovery: facts, ..Finished::from(verdict) };
        }
    };
    let mut issued = Vec::new();
    let mut tokens = Vec::new();
    let mut browser = interactive.map(|i| interactive::Browser::new(spec, i, &resolved));
    let mut form = Form::default().field("grant_type", spec.grant.name());
    let mut nonce = None;
    match (&spec.grant, interactive, browser.as_mut()) {
        (Grant::Password { username, password }, _, _) => {
            form = form.field("username", username).secret("password", password);
        }
        (_, Some(login), Some(browser)) => {
            match interactive::authorize(run, spec, login, &resolved, browser, &mut issued).await {
                Ok(authorized) => {
                    form = form
                        .secret("code", &authorized.code)
                        .field("redirect_uri", login.redirect_uri.as_str())
                        .secret("code_verifier", &authorized.verifier);
                    nonce = Some(authorized.nonce);
                }
                Err(verdict) => {
                    // A login that failed past the password may have left a session open.
                    let done = run.answered_until();
                    let session_end = if login.logout && browser.has_cookies() {
                        Some(interactive::logout(run, spec, login, &resolved, browser, &mut issued).await)
                    } else {
                        None
                    };
                    let login_done = session_end.as_ref().and(done);
                    return Finished { discovery: facts, issued, session_end, login_done, ..Finished::from(verdict) };
                }
            }
        }
        _ => {}
    }
    // An interactive login asked its scope and audience of the authorization endpoint.
    let asked = if interactive.is_some() {
        [&None, &None, &spec.resource]
    } else {
        [&spec.scope, &spec.audience, &spec.resource]
    };
    for (name, value) in ["scope", "audience", "resource"].into_iter().zip(asked) {
        if let Some(v) = value {
            form = form.field(name, v);
        }
    }
    let mut token_expires_in = None;
    let mut verdict = login(
        run,
        spec,
        &mut resolved,
        form,
        nonce.as_ref(),
        &mut facts,
        &mut issued,
        &mut tokens,
        &mut token_expires_in,
    )
    .await;
    if interactive.is_some() && matches!(verdict.step, TOKEN | REFRESH) && verdict.reason != INVALID_CLIENT {
        // The person's password was taken by the pages: what the token endpoint refuses is the
        // code, the verifier or the client, never credentials the guard should spare.
        if verdict.lockout == crate::protocol::Lockout::Strike {
            verdict.lockout = crate::protocol::Lockout::Neutral;
        }
    }
    let login_done = run.answered_until();
    // What was issued is revoked whatever the run's outcome: a refresh token left active by a
    // failed run stays valid for weeks.
    let mut session_end = None;
    if spec.revoke && !tokens.is_empty() {
        session_end = Some(revoke(run, spec, &resolved, &tokens).await);
    }
    if let (Some(login), Some(browser)) = (interactive.filter(|i| i.logout), browser.as_mut()) {
        browser.id_token = tokens.iter().find(|(_, hint)| *hint == "id_token").map(|(t, _)| t.clone());
        let ended = interactive::logout(run, spec, login, &resolved, browser, &mut issued).await;
        session_end = Some(match session_end {
            None => ended,
            Some(revoked) => LogoutOutcome {
                ok: revoked.ok && ended.ok,
                status: ended.status,
                detail: format!("revocation: {}; logout: {}", revoked.detail, ended.detail),
            },
        });
    }
    let login_done = if session_end.is_some() { login_done } else { None };
    Finished { token_expires_in, discovery: facts, issued, login_done, session_end, ..Finished::from(verdict) }
}

/// The token request, the refresh and the check: the run's verdict. Every token received joins
/// `tokens` (with its revocation hint) and `issued`.
#[allow(clippy::too_many_arguments)]
async fn login(
    run: &mut Attempt<'_>,
    spec: &OAuth2Login,
    resolved: &mut Resolved,
    form: Form,
    nonce: Option<&SecretString>,
    facts: &mut Option<crate::protocol::DiscoveryFacts>,
    issued: &mut Vec<SecretString>,
    tokens: &mut Vec<(SecretString, &'static str)>,
    expires_in: &mut Option<Duration>,
) -> Verdict {
    let mut granted = match token_request(run, spec, resolved, form, TOKEN, issued, tokens).await {
        Ok(g) => g,
        Err(verdict) => return verdict,
    };
    *expires_in = granted.expires_in;
    let mut last_step = TOKEN;
    let mut nonce = nonce;
    if spec.refresh && spec.validate == Validate::Jwt && nonce.is_some() {
        // The nonce is the code exchange's ID token's to carry (OpenID Connect Core §3.1.3.7);
        // a refreshed one need not repeat it (§12.2): that one is checked without it, below.
        if let Some((reason, reason_text, detail)) = check_jwt(run, spec, resolved, &granted, nonce, facts).await {
            return Verdict {
                reason,
                reason_text,
                ..Verdict::of(TOKEN_VALIDATION, ResultClass::ValidationFailed, detail)
            };
        }
        nonce = None;
    }
    if spec.refresh {
        let Some(refresh_token) = granted.refresh_token.clone() else {
            let detail = "no refresh_token was issued to redeem (is the refresh_token grant allowed for the client, \
                          or is a scope such as offline_access needed?)"
                .to_owned();
            return Verdict::of(REFRESH, ResultClass::InvalidResponse, detail);
        };
        let form = Form::default().field("grant_type", "refresh_token").secret("refresh_token", &refresh_token);
        match token_request(run, spec, resolved, form, REFRESH, issued, tokens).await {
            Ok(mut again) => {
                // A server that does not rotate refresh tokens keeps the first one valid.
                again.refresh_token = again.refresh_token.or(Some(refresh_token));
                granted = again;
                last_step = REFRESH;
            }
            Err(verdict) => return verdict,
        }
    }
    if spec.validate != Validate::No {
        // A JWT is verified here, without a request: no step is recorded for it.
        let refused = match spec.validate {
            Validate::Jwt => check_jwt(run, spec, resolved, &granted, nonce, facts).await,
            Validate::Userinfo => userinfo(run, resolved, &granted.access_token).await,
            Validate::Introspection => match introspect(run, spec, resolved, &granted.access_token).await {
                Ok(true) => None,
                Ok(false) => Some((INACTIVE, String::new(), "introspection: the new token is not active".to_owned())),
                Err(refusal) => Some(refusal),
            },
            Validate::No => None,
        };
        if let Some((reason, reason_text, detail)) = refused {
            return Verdict {
                reason,
                reason_text,
                ..Verdict::of(TOKEN_VALIDATION, ResultClass::ValidationFailed, detail)
            };
        }
        last_step = TOKEN_VALIDATION;
    }
    Verdict::of(last_step, ResultClass::Success, "token issued".to_owned())
}

/// POSTs a token request and reads its answer; the tokens granted join `issued`.
async fn token_request(
    run: &mut Attempt<'_>,
    spec: &OAuth2Login,
    resolved: &Resolved,
    form: Form,
    step: Step,
    issued: &mut Vec<SecretString>,
    tokens: &mut Vec<(SecretString, &'static str)>,
) -> Result<Granted, Verdict> {
    let (headers, form) = match authenticate(spec, resolved, form, issued) {
        Ok(x) => x,
        Err(detail) => return Err(Verdict::of(step, ResultClass::InvalidResponse, detail)),
    };
    let request =
        Request { method: Method::POST, url: &resolved.token, label: step.as_str(), headers, form: Some(form) };
    let received = run.exchange(request).await;
    run.record_http(step, &received, None);
    let received = received.map_err(|f| Verdict::of(step, f.class, f.detail))?;
    let granted = classify::token_answer(&received.answer(), step);
    // Whatever the answer is judged, the tokens it carries are the run's to revoke; a refused
    // one is read again for them only then.
    let carried = match &granted {
        Ok(g) => g.tokens(),
        Err(_) => classify::tokens_in(&received.answer()),
    };
    for (token, hint) in carried {
        if !tokens.iter().any(|(t, _)| crate::protocol::same_secret(t, &token)) {
            issued.push(token.clone());
            tokens.push((token, hint));
        }
    }
    granted
}

/// The headers and form of a request the client authenticates, by its method.
fn authenticate(
    spec: &OAuth2Login,
    resolved: &Resolved,
    mut form: Form,
    issued: &mut Vec<SecretString>,
) -> Result<(HeaderMap, Form), String> {
    let target = &spec.target;
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let secret = || target.client_secret.clone().unwrap_or_else(|| SecretString::from(String::new()));
    match &target.client_auth {
        ClientAuth::ClientSecretBasic => {
            use base64::Engine as _;
            // RFC 6749 §2.3.1: both are form-encoded before being joined.
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&target.client_id), enc(secret().expose_secret()));
            let value = SecretString::from(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)));
            let header = secret_header(&value, "the client credentials").map_err(|f| format!("{f} cannot be sent"))?;
            headers.insert(AUTHORIZATION, header);
        }
        ClientAuth::ClientSecretPost => {
            form = form.field("client_id", &target.client_id).secret("client_secret", &secret());
        }
        ClientAuth::None => form = form.field("client_id", &target.client_id),
        ClientAuth::PrivateKeyJwt(key) => {
            let assertion = assertion(&target.client_id, key, &resolved.token)?;
            issued.push(assertion.clone());
            form = form
                .field("client_id", &target.client_id)
                .field("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                .secret("client_assertion", &assertion);
        }
    }
    Ok((headers, form))
}

/// A `private_key_jwt` assertion (RFC 7523 §3) for the token endpoint, valid for a minute.
fn assertion(client_id: &str, key: &super::SigningKey, audience: &Url) -> Result<SecretString, String> {
    super::crypto::install();
    use rand::Rng as _;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let jti: String = (0..16).map(|_| format!("{:02x}", rand::rng().random::<u8>())).collect();
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": audience.as_str(), "jti": jti, "iat": now, "exp": now + ASSERTION_LIFETIME.as_secs(),
    });
    let mut header = jsonwebtoken::Header::new(key.algorithm);
    header.kid = key.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &key.key)
        .map(SecretString::from)
        .map_err(|e| format!("cannot sign the client assertion: {e}"))
}

/// `validate: jwt`: the access token, or the ID token when the access token is opaque, verified
/// against the JWKS (fetched again once when it names an unknown key).
async fn check_jwt(
    run: &mut Attempt<'_>,
    spec: &OAuth2Login,
    resolved: &mut Resolved,
    granted: &Granted,
    nonce: Option<&SecretString>,
    facts: &mut Option<crate::protocol::DiscoveryFacts>,
) -> Option<Refusal> {
    let access = granted.access_token.expose_secret();
    // An interactive login checks its ID token, the one that carries its nonce.
    let id_token = granted.id_token.as_ref().filter(|_| nonce.is_some());
    let (token, audience, which) = if let Some(id) = id_token {
        (id.expose_secret(), spec.target.client_id.as_str(), "ID token")
    } else if jwt::is_jwt(access) {
        (access, spec.expected_audience(), "access token")
    } else if let Some(id) = granted.id_token.as_ref().filter(|_| spec.asks_openid()) {
        (id.expose_secret(), spec.target.client_id.as_str(), "ID token")
    } else {
        let detail = "the access token is opaque (not a JWT) and no ID token was issued: validate with \
                      introspection or userinfo, or ask the openid scope";
        return Some((Reason::NONE, String::new(), detail.to_owned()));
    };
    let issuer = resolved.issuer.clone().unwrap_or_default();
    let leeway = spec.target.leeway.as_secs();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let nonce = if id_token.is_some() { nonce.map(|n| n.expose_secret()) } else { None };
    let expected = Expected { issuer: &issuer, audience, leeway, now, nonce };
    let keys = resolved.keys.clone()?;
    let check = match jwt::verify(token, &keys, expected) {
        Check::UnknownKey(kid) => {
            let Some(jwks_uri) = resolved.jwks.clone() else {
                return Some((UNKNOWN_KEY, String::new(), format!("{which}: unknown key {kid:?}")));
            };
            run.note(&format!("The {which} names key {kid:?}, not in the cached JWKS: fetching it again"));
            let (fetched, now_facts) = discovery::refetch_keys(run, &spec.target, &jwks_uri).await;
            *facts = now_facts.or(*facts);
            match fetched {
                Ok(keys) => {
                    resolved.keys = Some(keys.clone());
                    jwt::verify(token, &keys, expected)
                }
                Err((_, detail)) => return Some((DISCOVERY_FAILED, String::new(), detail)),
            }
        }
        other => other,
    };
    match check {
        Check::Valid => None,
        Check::UnknownKey(kid) => {
            Some((UNKNOWN_KEY, String::new(), format!("{which}: key {kid:?} is not in the JWKS, even fetched again")))
        }
        Check::Refused(reason, detail) => Some((reason, String::new(), format!("{which}: {detail}"))),
    }
}

/// `validate: userinfo`: the token must get the user's `sub`.
async fn userinfo(run: &mut Attempt<'_>, resolved: &Resolved, token: &SecretString) -> Option<Refusal> {
    let Some(url) = resolved.userinfo.clone() else {
        return Some((USERINFO_DENIED, String::new(), "the server names no userinfo_endpoint".to_owned()));
    };
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    match bearer_header(token, "the token") {
        Ok(h) => headers.insert(AUTHORIZATION, h),
        Err(_) => return Some((Reason::NONE, String::new(), "the token cannot be sent as a header".to_owned())),
    };
    let request = Request { method: Method::GET, url: &url, label: "Userinfo", headers, form: None };
    let received = run.exchange(request).await;
    run.record_http(TOKEN_VALIDATION, &received, None);
    match received {
        Ok(r) => classify::userinfo(&r.answer()).err(),
        Err(f) => Some((Reason::NONE, String::new(), format!("userinfo: {}", f.detail))),
    }
}

/// RFC 7662 introspection of `token` with the client's credentials: whether it is active.
async fn introspect(
    run: &mut Attempt<'_>,
    spec: &OAuth2Login,
    resolved: &Resolved,
    token: &SecretString,
) -> Result<bool, Refusal> {
    let Some(url) = resolved.introspection.clone() else {
        return Err((Reason::NONE, String::new(), "the server names no introspection_endpoint".to_owned()));
    };
    let form = Form::default().secret("token", token).field("token_type_hint", "access_token");
    let mut assertions = Vec::new();
    let (headers, form) =
        authenticate(spec, resolved, form, &mut assertions).map_err(|d| (Reason::NONE, String::new(), d))?;
    let request = Request { method: Method::POST, url: &url, label: "Introspection", headers, form: Some(form) };
    let received = run.exchange(request).await;
    run.record_http(TOKEN_VALIDATION, &received, None);
    match received {
        Ok(r) => classify::introspection(&r.answer()),
        Err(f) => Err((Reason::NONE, String::new(), format!("introspection: {}", f.detail))),
    }
}

/// Revokes what was issued: the refresh token (which ends the grant), then the access token.
/// With `validate: introspection`, the access token is introspected again and must be inactive.
async fn revoke(
    run: &mut Attempt<'_>,
    spec: &OAuth2Login,
    resolved: &Resolved,
    tokens: &[(SecretString, &'static str)],
) -> LogoutOutcome {
    let Some(url) = resolved.revocation.clone() else {
        return LogoutOutcome { ok: false, status: 0, detail: "the server names no revocation_endpoint".to_owned() };
    };
    let mut last_status = 0;
    let mut failed: Option<LogoutOutcome> = None;
    // ID tokens are statements, not credentials: nothing revokes them.
    for (token, hint) in tokens.iter().filter(|(_, h)| *h != "id_token") {
        let form = Form::default().secret("token", token).field("token_type_hint", hint);
        let mut assertions = Vec::new();
        let (headers, form) = match authenticate(spec, resolved, form, &mut assertions) {
            Ok(x) => x,
            Err(detail) => return LogoutOutcome { ok: false, status: 0, detail },
        };
        // Each token its own step: the access token's revocation and the refresh token's are
        // told apart in traces, pages and the step histogram.
        let (step, label) = if *hint == "refresh_token" {
            (REFRESH_REVOCATION, "RefreshRevocation")
        } else {
            (REVOCATION, "Revocation")
        };
        let request = Request { method: Method::POST, url: &url, label, headers, form: Some(form) };
        let received = run.exchange(request).await;
        run.record_http(step, &received, None);
        // Every token is tried, whatever became of the one before.
        match received {
            Ok(r) => {
                last_status = r.status;
                let (ok, detail) = classify::revocation(&r.answer());
                if !ok {
                    failed.get_or_insert(LogoutOutcome { ok, status: r.status, detail: format!("{hint}: {detail}") });
                }
            }
            Err(f) => {
                let detail = format!("revocation of the {hint}: {}", f.detail);
                failed.get_or_insert(LogoutOutcome { ok: false, status: f.status.unwrap_or(0), detail });
            }
        }
    }
    if let Some(f) = failed {
        return f;
    }
    if spec.validate == Validate::Introspection {
        for (token, _) in tokens.iter().filter(|(_, h)| *h == "access_token") {
            match introspect(run, spec, resolved, token).await {
                Ok(false) => {}
                Ok(true) => {
                    let detail = "an access token is still active after its revocation".to_owned();
                    return LogoutOutcome { ok: false, status: last_status, detail };
                }
                Err((_, _, detail)) => return LogoutOutcome { ok: false, status: last_status, detail },
            }
        }
        return LogoutOutcome { ok: true, status: last_status, detail: "revoked; introspection confirms".to_owned() };
    }
    LogoutOutcome { ok: true, status: last_status, detail: "revoked".to_owned() }
}
