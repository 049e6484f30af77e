//! The simulated authorization server's own login pages: the authorization endpoint, the pages
//! a person goes through (one-page or identifier-first login, a one-time code for accounts with
//! a TOTP secret, consent for clients that ask it), the code's redemption with PKCE, and
//! RP-initiated logout with its confirmation page. Markup and behaviour follow Keycloak's: a
//! language picker before the login form, a `session_code` that changes with every page, errors
//! re-rendered with 200 in an alert, a 400 page without a form when the login's cookie is gone.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::ExposeSecret as _;

use super::{ClientFault, Ctx, LoginStyle, Server, SimClient};
use crate::protocol::oauth2::interactive::totp::Totp;

/// The cookie of a login in progress.
const LOGIN_COOKIE: &str = "SIM_LOGIN";
/// The cookie of a finished login: the identity provider's session.
const SESSION_COOKIE: &str = "SIM_SESSION";
/// How long a login in progress and an unredeemed code live.
const LOGIN_LIFETIME: Duration = Duration::from_secs(600);
/// Logins, sessions and codes kept at most; the oldest are forgotten.
const MAX_KEPT: usize = 10_000;

/// Where a login in progress stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Username,
    Password,
    Otp,
    Consent,
}

/// A login in progress.
pub(super) struct Login {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    challenge: String,
    stage: Stage,
    username: Option<String>,
    /// Changes with every page: a form of an older page is refused.
    session_code: String,
    created: Instant,
}

/// A code not yet redeemed.
pub(super) struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    sub: String,
    scope: String,
    nonce: Option<String>,
    created: Instant,
}

/// The interactive part of the server's state.
#[derive(Default)]
pub(super) struct Logins {
    logins: HashMap<String, Login>,
    codes: HashMap<String, Code>,
    /// Finished logins: session id → user.
    sessions: HashMap<String, String>,
    /// The last TOTP time step each user sent (a code is good once).
    used_steps: HashMap<String, u64>,
}

impl Logins {
    fn trim(&mut self) {
        let old = |at: &Instant| at.elapsed() > LOGIN_LIFETIME;
        self.logins.retain(|_, l| !old(&l.created));
        self.codes.retain(|_, c| !old(&c.created));
        if self.sessions.len() > MAX_KEPT {
            self.sessions.clear();
        }
    }
}

fn random(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').find_map(|pair| {
            let (n, value) = pair.trim().split_once('=')?;
            (n == name).then(|| value.to_owned())
        })
    })
}

/// `response` setting `cookies`.
fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = header::HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

fn html(status: StatusCode, body: String, cookies: &[String]) -> Response {
    with_cookies((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(), cookies)
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    with_cookies((StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response(), cookies)
}

/// A page of the login theme: the language picker (a form that asks for nothing), then `main`.
fn layout(title: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body class=\"login-pf\">\n\
         <div id=\"kc-locale\"><form id=\"kc-locale-form\" method=\"get\" action=\"?\"><select name=\"kc_locale\">\
         <option value=\"en\" selected>English</option><option value=\"de\">Deutsch</option></select>\
         <button type=\"submit\">Change language</button></form></div>\n<div id=\"kc-content\">\n{main}\n</div>\n</body></html>\n"
    )
}

/// A page without a form: what a person sees when the login cannot go on.
fn error_page(status: StatusCode, message: &str) -> Response {
    let main = format!("<div id=\"kc-error-message\"><p class=\"instruction\">{}</p></div>", escape(message));
    html(status, layout("We are sorry...", &main), &[])
}

/// The page of `login`'s stage, with `error` shown if any.
fn page(issuer: &str, login: &Login, client: &SimClient, error: Option<&str>) -> Response {
    let alert = error.map_or(String::new(), |e| {
        format!(
            "<div class=\"alert-error pf-c-alert\" role=\"alert\"><span class=\"kc-feedback-text\">{}</span></div>\n",
            escape(e)
        )
    });
    let action = if client.fault == ClientFault::ForeignForm {
        "https://login.elsewhere.test/login-actions/authenticate".to_owned()
    } else {
        format!(
            "{issuer}/login-actions/authenticate?session_code={}&amp;client_id={}",
            login.session_code,
            escape(&client.client_id)
        )
    };
    let user = escape(login.username.as_deref().unwrap_or_default());
    let mut main = alert;
    let title = match login.stage {
        Stage::Username | Stage::Password if client.fault == ClientFault::PageChanged => {
            main.push_str("<div id=\"app\">Loading…</div><script src=\"/static/login-app.js\"></script>");
            "Sign in"
        }
        Stage::Username => {
            let _ = write!(
                main,
                "<form id=\"kc-form-login\" method=\"post\" action=\"{action}\">\n\
                 <label for=\"username\">Username or email</label>\
                 <input tabindex=\"1\" id=\"username\" name=\"username\" value=\"{user}\" type=\"text\" autofocus autocomplete=\"username\">\n\
                 <input tabindex=\"2\" class=\"pf-c-button\" name=\"login\" id=\"kc-login\" type=\"submit\" value=\"Next\">\n</form>"
            );
            "Sign in to your account"
        }
        Stage::Password => {
            let username_field = if client.login == LoginStyle::IdentifierFirst {
                format!("<div id=\"kc-username\"><label id=\"kc-attempted-username\">{user}</label></div>")
            } else {
                format!(
                    "<label for=\"username\">Username or email</label>\
                     <input tabindex=\"1\" id=\"username\" name=\"username\" value=\"{user}\" type=\"text\" autocomplete=\"username\">\n"
                )
            };
            let _ = write!(
                main,
                "<form id=\"kc-form-login\" onsubmit=\"login.disabled = true; return true;\" method=\"post\" action=\"{action}\">\n\
                 {username_field}<label for=\"password\">Password</label>\
                 <input tabindex=\"2\" id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\">\n\
                 <input type=\"hidden\" id=\"id-hidden-input\" name=\"credentialId\">\n\
                 <input tabindex=\"4\" class=\"pf-c-button\" name=\"login\" id=\"kc-login\" type=\"submit\" value=\"Sign In\">\n</form>\n\
                 <div id=\"kc-registration\"><a href=\"{issuer}/registrations\">Register</a></div>"
            );
            "Sign in to your account"
        }
        Stage::Otp => {
            let _ = write!(
                main,
                "<form id=\"kc-otp-login-form\" method=\"post\" action=\"{action}\">\n\
                 <label for=\"otp\">One-time code</label>\
                 <input id=\"otp\" name=\"otp\" autocomplete=\"one-time-code\" type=\"text\" inputmode=\"numeric\" autofocus>\n\
                 <input class=\"pf-c-button\" name=\"login\" id=\"kc-login\" type=\"submit\" value=\"Sign In\">\n</form>"
            );
            "Sign in to your account"
        }
        Stage::Consent => {
            let scopes: String =
                login.scope.split_whitespace().map(|s| format!("<li><span>{}</span></li>", escape(s))).collect();
            let _ = write!(
                main,
                "<div id=\"kc-oauth\"><h3>Do you grant these access privileges?</h3><ul>{scopes}</ul>\n\
                 <form class=\"form-actions\" action=\"{action}\" method=\"POST\">\n\
                 <input type=\"hidden\" name=\"code\" value=\"{}\">\n\
                 <input class=\"pf-c-button\" name=\"accept\" id=\"kc-login\" type=\"submit\" value=\"Yes\">\n\
                 <input class=\"pf-c-button\" name=\"cancel\" id=\"kc-cancel\" type=\"submit\" value=\"No\">\n</form></div>",
                login.session_code
            );
            "Grant Access to simulator"
        }
    };
    html(StatusCode::OK, layout(title, &main), &[])
}

/// `GET {path}/authorize`: checks the request, starts a login and sends the browser to its page.
pub(super) async fn authorize(
    State((server, scheme)): Ctx,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let issuer = server.issuer(scheme, &headers);
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let client = server.lock().clients.get(get("client_id")).cloned();
    let Some(client) = client else { return error_page(StatusCode::BAD_REQUEST, "Client not found.") };
    let redirect_uri = get("redirect_uri");
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return error_page(StatusCode::BAD_REQUEST, "Invalid parameter: redirect_uri");
    }
    let state = q.get("state").cloned();
    let back = |code: &str, description: &str| {
        let mut to = url::Url::parse(redirect_uri).expect("a registered redirect URI");
        to.query_pairs_mut().append_pair("error", code).append_pair("error_description", description);
        if let Some(s) = &state {
            to.query_pairs_mut().append_pair("state", s);
        }
        to.query_pairs_mut().append_pair("iss", &issuer);
        redirect(to.as_str(), &[])
    };
    if get("response_type") != "code" {
        return back("unsupported_response_type", "only code is supported");
    }
    if !client.allows("authorization_code") {
        return back("unauthorized_client", "the client may not use the authorization code grant");
    }
    if get("code_challenge").is_empty() || get("code_challenge_method") != "S256" {
        return back("invalid_request", "PKCE with S256 is required");
    }
    let known = ["openid", "profile", "email", "offline_access", "api"];
    if get("scope").split_whitespace().any(|s| !known.contains(&s)) {
        return back("invalid_scope", "a requested scope is unknown");
    }
    if client.fault == ClientFault::RedirectLoop {
        let here = format!(
            "{issuer}/authorize?{}",
            url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&q).finish()
        );
        return redirect(&here, &[]);
    }
    let id = random(24);
    let login = Login {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state,
        nonce: q.get("nonce").cloned(),
        scope: get("scope").to_owned(),
        challenge: get("code_challenge").to_owned(),
        stage: if client.login == LoginStyle::IdentifierFirst { Stage::Username } else { Stage::Password },
        username: None,
        session_code: random(16),
        created: Instant::now(),
    };
    let mut inner = server.lock();
    inner.logins.trim();
    inner.logins.logins.insert(id.clone(), login);
    drop(inner);
    let path = server.path();
    let cookie = format!("{LOGIN_COOKIE}={id}; Path={path}/; HttpOnly; SameSite=Lax");
    let mut to = url::Url::parse(&format!("{issuer}/login-actions/authenticate")).expect("the issuer is a URL");
    to.query_pairs_mut().append_pair("client_id", &client.client_id);
    redirect(to.as_str(), &[cookie])
}

/// `GET {path}/login-actions/authenticate`: the page of the login in progress.
pub(super) async fn show(State((server, scheme)): Ctx, headers: HeaderMap) -> Response {
    let issuer = server.issuer(scheme, &headers);
    let id = cookie_of(&headers, LOGIN_COOKIE).unwrap_or_default();
    let mut inner = server.lock();
    let Some(login) = inner.logins.logins.get_mut(&id) else {
        drop(inner);
        return error_page(
            StatusCode::BAD_REQUEST,
            "Cookie not found. Please make sure cookies are enabled in your browser.",
        );
    };
    login.session_code = random(16);
    let client_id = login.client_id.clone();
    let client = inner.clients.get(&client_id).cloned();
    let login = inner.logins.logins.get(&id).expect("just found");
    match client {
        Some(c) if c.fault == ClientFault::LostCookie => {
            let gone = format!("{LOGIN_COOKIE}=; Path={}/; Max-Age=0", server.path());
            with_cookies(page(&issuer, login, &c, None), &[gone])
        }
        Some(c) => page(&issuer, login, &c, None),
        None => error_page(StatusCode::BAD_REQUEST, "Client not found."),
    }
}

/// `POST {path}/login-actions/authenticate`: a form of the login in progress.
pub(super) async fn submit(
    State((server, scheme)): Ctx,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let issuer = server.issuer(scheme, &headers);
    let id = cookie_of(&headers, LOGIN_COOKIE).unwrap_or_default();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let found = {
        let mut inner = server.lock();
        let login = inner.logins.logins.remove(&id);
        let client = login.as_ref().and_then(|l| inner.clients.get(&l.client_id).cloned());
        login.zip(client)
    };
    let Some((mut login, client)) = found else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Cookie not found. Please make sure cookies are enabled in your browser.",
        );
    };
    if q.get("session_code") != Some(&login.session_code) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Your login attempt timed out. Login will start from the beginning.",
        );
    }
    if client.fault == ClientFault::RequireOrigin {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or_default();
        if origin.is_empty() || !issuer.starts_with(origin) {
            return error_page(StatusCode::FORBIDDEN, "CSRF verification failed. Request aborted.");
        }
    }
    login.session_code = random(16);
    let mut error = None;
    let restart = client.fault == ClientFault::SessionTimeout;
    match login.stage {
        Stage::Username => {
            let name = field("username").trim().to_owned();
            if (server.accounts)(&name).is_some() {
                login.stage = Stage::Password;
            } else {
                error = Some("Invalid username.");
            }
            login.username = Some(name);
        }
        Stage::Password => {
            let name = if client.login == LoginStyle::IdentifierFirst {
                login.username.clone().unwrap_or_default()
            } else {
                field("username").trim().to_owned()
            };
            let account = (server.accounts)(&name);
            login.username = Some(name);
            match account {
                Some(a) if a.password.expose_secret() == field("password") => {
                    if let Some(d) = a.delay {
                        tokio::time::sleep(d).await;
                    }
                    login.stage = if a.totp_secret.is_some() {
                        Stage::Otp
                    } else if client.consent {
                        Stage::Consent
                    } else {
                        return finish(&server, &issuer, login, &client);
                    };
                }
                _ => error = Some("Invalid username or password."),
            }
        }
        Stage::Otp if restart => return start_over(&server, &issuer, id, login, &client),
        Stage::Otp => {
            let name = login.username.clone().unwrap_or_default();
            let totp =
                (server.accounts)(&name).and_then(|a| a.totp_secret).and_then(|s| Totp::parse(s.expose_secret()).ok());
            if totp.is_some_and(|t| server.check_code(&name, &t, field("otp").trim())) {
                if client.consent {
                    login.stage = Stage::Consent;
                } else {
                    return finish(&server, &issuer, login, &client);
                }
            } else {
                error = Some("Invalid authenticator code.");
            }
        }
        Stage::Consent if restart => return start_over(&server, &issuer, id, login, &client),
        Stage::Consent => {
            if form.contains_key("accept")
                && field("code") == q.get("session_code").map(String::as_str).unwrap_or_default()
            {
                return finish(&server, &issuer, login, &client);
            }
            return back_with_error(&issuer, &login, "access_denied", "The user denied the request");
        }
    }
    let mut response = page(&issuer, &login, &client, error);
    if error.is_some() && client.fault == ClientFault::RefusalWith401 {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    server.lock().logins.logins.insert(id, login);
    response
}

impl Server {
    /// Whether `code` is `totp`'s for now (one step either way) and its step was not used yet.
    fn check_code(&self, user: &str, totp: &Totp, code: &str) -> bool {
        let now = super::now();
        let current = totp.step_at(now);
        let mut inner = self.lock();
        let last = inner.logins.used_steps.get(user).copied();
        for step in [current.saturating_sub(1), current, current + 1] {
            if last.is_some_and(|l| step <= l) {
                continue;
            }
            if totp.code(step).expose_secret() == code {
                inner.logins.used_steps.insert(user.to_owned(), step);
                return true;
            }
        }
        false
    }
}

/// A login that timed out: the first page again, with Keycloak's message.
fn start_over(server: &Server, issuer: &str, id: String, mut login: Login, client: &SimClient) -> Response {
    login.stage = if client.login == LoginStyle::IdentifierFirst { Stage::Username } else { Stage::Password };
    login.username = None;
    let response =
        page(issuer, &login, client, Some("Your login attempt timed out. Login will start from the beginning."));
    server.lock().logins.logins.insert(id, login);
    response
}

fn back_with_error(issuer: &str, login: &Login, code: &str, description: &str) -> Response {
    let Ok(mut to) = url::Url::parse(&login.redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "Invalid parameter: redirect_uri");
    };
    to.query_pairs_mut().append_pair("error", code).append_pair("error_description", description);
    if let Some(s) = &login.state {
        to.query_pairs_mut().append_pair("state", s);
    }
    to.query_pairs_mut().append_pair("iss", issuer);
    redirect(to.as_str(), &[])
}

/// The login is done: a code (or the client's configured error) back to the redirect URI, and
/// the identity provider's session cookie.
fn finish(server: &Server, issuer: &str, login: Login, client: &SimClient) -> Response {
    if let Some(code) = &client.authorize_error {
        return back_with_error(issuer, &login, code, "as configured");
    }
    let code = random(32);
    let sub = login.username.clone().unwrap_or_default();
    let session = random(24);
    let mut inner = server.lock();
    inner.logins.sessions.insert(session.clone(), sub.clone());
    inner.stats.logins += 1;
    inner.logins.codes.insert(
        code.clone(),
        Code {
            client_id: login.client_id.clone(),
            redirect_uri: login.redirect_uri.clone(),
            challenge: login.challenge.clone(),
            sub,
            scope: login.scope.clone(),
            nonce: login.nonce.clone(),
            created: Instant::now(),
        },
    );
    Server::keep_secret(&mut inner, &code);
    drop(inner);
    let Ok(mut to) = url::Url::parse(&login.redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "Invalid parameter: redirect_uri");
    };
    to.query_pairs_mut().append_pair("code", &code);
    let state = if client.fault == ClientFault::StateMismatch { Some("another-state".to_owned()) } else { login.state };
    if let Some(s) = state {
        to.query_pairs_mut().append_pair("state", &s);
    }
    let iss = if client.fault == ClientFault::WrongIss { "https://elsewhere.example/oauth2" } else { issuer };
    to.query_pairs_mut().append_pair("iss", iss);
    let path = server.path();
    let cookies = [
        format!("{LOGIN_COOKIE}=; Path={path}/; Max-Age=0"),
        format!("{SESSION_COOKIE}={session}; Path={path}/; HttpOnly; SameSite=Lax"),
    ];
    if client.fault == ClientFault::FormPost {
        let mut action = to.clone();
        action.set_query(None);
        let fields: String = to
            .query_pairs()
            .map(|(n, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(&n), escape(&v)))
            .collect();
        let body = format!(
            "<html><head><title>Submit This Form</title></head><body onload=\"javascript:document.forms[0].submit()\">\
             <form method=\"post\" action=\"{}\">{fields}<noscript><button type=\"submit\">Continue</button></noscript>\
             </form></body></html>",
            escape(action.as_str())
        );
        return html(StatusCode::OK, body, &cookies);
    }
    redirect(to.as_str(), &cookies)
}

/// Redeems a code (the token endpoint's `authorization_code` grant): the user, scope and nonce
/// it was issued for, or why not (`invalid_grant`'s description).
pub(super) fn redeem(
    server: &Server,
    client: &SimClient,
    form: &HashMap<String, String>,
) -> Result<(String, String, Option<String>), &'static str> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let code = form.get("code").map(String::as_str).unwrap_or_default();
    let mut inner = server.lock();
    // A code is good once, whatever happens next.
    let Some(grant) = inner.logins.codes.remove(code).filter(|c| c.created.elapsed() <= LOGIN_LIFETIME) else {
        return Err("the code is invalid, expired or used");
    };
    drop(inner);
    if grant.client_id != client.client_id {
        return Err("the code was issued to another client");
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return Err("redirect_uri is not the authorization request's");
    }
    let verifier = form.get("code_verifier").map(String::as_str).unwrap_or_default();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if verifier.is_empty() || challenge != grant.challenge {
        return Err("PKCE verification failed");
    }
    let nonce = if client.fault == ClientFault::WrongNonce { Some("another-nonce".to_owned()) } else { grant.nonce };
    Ok((grant.sub, grant.scope, nonce))
}

/// `GET {path}/logout`: the confirmation page of a session, or a page saying there is none.
pub(super) async fn logout(State((server, scheme)): Ctx, headers: HeaderMap) -> Response {
    let issuer = server.issuer(scheme, &headers);
    let session = cookie_of(&headers, SESSION_COOKIE).unwrap_or_default();
    if !server.lock().logins.sessions.contains_key(&session) {
        return html(
            StatusCode::OK,
            layout("Logging out", "<p class=\"instruction\">You are already logged out.</p>"),
            &[],
        );
    }
    let main = format!(
        "<p class=\"instruction\">Do you want to log out?</p>\n<form class=\"form-actions\" action=\"{issuer}/logout/confirm\" method=\"POST\">\n\
         <input type=\"hidden\" name=\"session_code\" value=\"{}\">\n\
         <input class=\"pf-c-button\" name=\"confirmLogout\" id=\"kc-logout\" type=\"submit\" value=\"Logout\">\n</form>",
        random(16)
    );
    html(StatusCode::OK, layout("Logging out", &main), &[])
}

/// `POST {path}/logout/confirm`: ends the session.
pub(super) async fn confirm_logout(State((server, _)): Ctx, headers: HeaderMap) -> Response {
    let session = cookie_of(&headers, SESSION_COOKIE).unwrap_or_default();
    let mut inner = server.lock();
    let ended = inner.logins.sessions.remove(&session).is_some();
    if ended {
        inner.stats.logouts += 1;
    }
    drop(inner);
    let path = server.path();
    let cookie = format!("{SESSION_COOKIE}=; Path={path}/; Max-Age=0");
    let text = if ended { "You are logged out." } else { "You are already logged out." };
    html(StatusCode::OK, layout("Logged out", &format!("<p class=\"instruction\">{text}</p>")), &[cookie])
}
