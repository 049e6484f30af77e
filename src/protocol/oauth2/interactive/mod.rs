//! Interactive logins: the authorization code grant through the identity provider's own pages,
//! as a person's browser goes through them, at the HTTP level.
//!
//! One run: the authorization request (PKCE S256, `state`, `nonce`), then each page in turn —
//! the form that asks for what the probe holds filled and posted ([`page`]), redirects followed
//! by authprobe itself with a cookie jar of the run's own — until the identity provider
//! redirects to the client's `redirect_uri`, which is never requested: its `code` is read from
//! the `Location` header ([`callback`]). The token request and the checks are the family's.
//!
//! What a page shows decides the verdict, not a vendor's wording: a credential asked again
//! after it was given is refused, a code asked again is a wrong code, a login that starts over
//! after the password was taken has expired. Credentials are posted only to the issuer's origin
//! (or `login.allowed_origins`), never from https to http; every page and redirect counts
//! against a bound.

pub mod page;
pub mod totp;

use std::time::SystemTime;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, COOKIE};
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use self::page::{Asks, Hints, Page};
use self::totp::Totp;
use super::discovery::Resolved;
use super::names::*;
use super::OAuth2Login;
use crate::protocol::http::{secret_header, Form, Received, Request};
use crate::protocol::{Attempt, LogoutOutcome, Reason, ResultClass, Step, Verdict};

/// Most pages one login shows before it is taken for a loop.
pub const MAX_PAGES: u32 = 12;
/// Most redirects one login follows before it is taken for a loop.
pub const MAX_REDIRECTS: u32 = 24;
/// Largest page read. HTML's tree builder takes time that grows with the square of a page's
/// nesting: a bigger page could hold a run's thread for minutes. Login pages weigh kilobytes.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// What to do with a consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Approve it.
    Approve,
    /// Fail the run: the client should have been consented to already.
    Fail,
}

/// An interactive login's own settings.
#[derive(Debug, Clone)]
pub struct Interactive {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: SecretString,
    /// `totp_secret`: the one-time codes, when the account has an authenticator.
    pub totp: Option<Totp>,
    /// `redirect_uri`: registered for the client, never requested.
    pub redirect_uri: Url,
    /// What to do with a consent page.
    pub consent: Consent,
    /// End the identity provider's session after the run.
    pub logout: bool,
    /// `login:`: the form and fields where a page defeats the defaults.
    pub hints: Hints,
    /// Origins a credential may be posted to besides the issuer's (`login.allowed_origins`).
    pub allowed_origins: Vec<url::Origin>,
}

impl Interactive {
    /// Whether `other` has the same settings (secrets are compared by the login's credentials).
    pub fn same_settings(&self, other: &Interactive) -> bool {
        self.redirect_uri == other.redirect_uri
            && self.consent == other.consent
            && self.logout == other.logout
            && self.hints == other.hints
            && self.allowed_origins == other.allowed_origins
            && self.totp.as_ref().map(|t| (t.algorithm, t.digits, t.period))
                == other.totp.as_ref().map(|t| (t.algorithm, t.digits, t.period))
    }
}

/// What the authorization got: the code, and what redeeming and checking it takes.
pub(crate) struct Authorized {
    /// `code`.
    pub(crate) code: SecretString,
    /// PKCE's `code_verifier`.
    pub(crate) verifier: SecretString,
    /// The `nonce` the ID token must carry.
    pub(crate) nonce: SecretString,
}

/// The run's browser: its cookie jar (dropped with it), what it may post where, and its counts.
pub(crate) struct Browser {
    jar: cookie_store::CookieStore,
    /// Origins credentials may be posted to.
    allowed: Vec<url::Origin>,
    pages: u32,
    redirects: u32,
    /// The ID token, for the logout's `id_token_hint`.
    pub(crate) id_token: Option<SecretString>,
    /// The login's public values, never taken for secrets (see [`keep_server_value`]).
    public: Vec<String>,
}

/// What the run has sent, to tell a refusal from a next step.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    username: bool,
    password: bool,
    otp: bool,
    consent: bool,
}

impl Browser {
    /// A browser with an empty jar for a login at `spec`'s issuer.
    pub(crate) fn new(spec: &OAuth2Login, login: &Interactive, resolved: &Resolved) -> Browser {
        let mut allowed = login.allowed_origins.clone();
        let home = spec.target.issuer.as_ref().or(resolved.authorization.as_ref());
        allowed.extend(home.map(Url::origin));
        let public = [Some(&spec.target.client_id), Some(&login.username), spec.scope.as_ref()]
            .into_iter()
            .flatten()
            .cloned()
            .chain([login.redirect_uri.to_string()])
            .collect();
        Browser { jar: cookie_store::CookieStore::default(), allowed, pages: 0, redirects: 0, id_token: None, public }
    }

    /// Sends one request with the jar's cookies, records it as `step` and keeps the cookies
    /// the answer sets (their values secrets of the run).
    async fn send(
        &mut self,
        run: &mut Attempt<'_>,
        next: &mut Next,
        step: Step,
        issued: &mut Vec<SecretString>,
    ) -> Result<Received, Verdict> {
        let (method, url, form, origin) = (next.method.clone(), &next.url, next.form.take(), next.origin.as_ref());
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"));
        // A browser names the origin of the page a form is posted from; CSRF checks (Django's
        // over HTTPS) refuse a POST without it.
        if let (true, Some(from)) = (method == Method::POST, origin) {
            if let Ok(v) = HeaderValue::from_str(&from.ascii_serialization()) {
                headers.insert(reqwest::header::ORIGIN, v);
            }
        }
        let mut cookies = zeroize::Zeroizing::new(String::new());
        for (n, v) in self.jar.get_request_values(url) {
            if !cookies.is_empty() {
                cookies.push_str("; ");
            }
            cookies.push_str(n);
            cookies.push('=');
            cookies.push_str(v);
        }
        if !cookies.is_empty() {
            let value = SecretString::from(cookies.as_str().to_owned());
            match secret_header(&value, "a cookie") {
                Ok(h) => {
                    headers.insert(COOKIE, h);
                }
                Err(_) => run.note("A cookie cannot be sent as a header: left out"),
            }
        }
        let request = Request { method, url, label: step.as_str(), headers, form };
        let received = run.exchange(request).await;
        run.record_http(step, &received, None);
        let received = received.map_err(|f| Verdict::of(step, f.class, f.detail))?;
        for header in &received.set_cookies {
            if let Ok(cookie) = cookie_store::RawCookie::parse(header.expose_secret().to_owned()) {
                keep_server_value(run, issued, &self.public(), cookie.value());
                self.jar.store_response_cookies(std::iter::once(cookie.into_owned()), url);
            }
        }
        Ok(received)
    }

    /// Whether the run holds cookies of the identity provider: a session that may need ending.
    pub(crate) fn has_cookies(&self) -> bool {
        self.jar.iter_unexpired().next().is_some()
    }

    fn public(&self) -> Vec<&str> {
        self.public.iter().map(String::as_str).collect()
    }

    /// Whether a form filled with the probe's credentials may be sent from `from` to `to`.
    fn may_post(&self, from: &Url, to: &Url) -> bool {
        !(from.scheme() == "https" && to.scheme() != "https") && self.allowed.contains(&to.origin())
    }
}

/// Adds a value the run made or was given (a state, a code) to those every output redacts.
fn keep(run: &mut Attempt<'_>, issued: &mut Vec<SecretString>, value: &str) {
    if value.is_empty() || issued.iter().any(|s| s.expose_secret() == value) {
        return;
    }
    let s = SecretString::from(value.to_owned());
    run.secret(&s);
    issued.push(s);
}

/// Adds a value the server handed over (a cookie's, a hidden field's) to those redacted when it
/// looks like a session id or a token: 12 characters or more, no space, and none of the login's
/// public values (the client id, the redirect URI, the scope, the username), which outputs show.
/// Words of the page (`approve`, `Authorize`) stay readable.
fn keep_server_value(run: &mut Attempt<'_>, issued: &mut Vec<SecretString>, public: &[&str], value: &str) {
    if value.len() >= 12 && !value.contains(char::is_whitespace) && !public.contains(&value) {
        keep(run, issued, value);
    }
}

/// Redacts the code (and anything else but the error and the issuer) of an authorization
/// response before it is checked: a refused one is shown nowhere either.
fn keep_callback_values(run: &mut Attempt<'_>, issued: &mut Vec<SecretString>, to: &Url) {
    let fragment = to.fragment().map(|f| url::form_urlencoded::parse(f.as_bytes()).into_owned().collect::<Vec<_>>());
    for (name, value) in to.query_pairs().into_owned().chain(fragment.into_iter().flatten()) {
        if !matches!(name.as_str(), "error" | "error_description" | "iss") {
            keep(run, issued, &value);
        }
    }
}

/// Redacts what a page holds that looks like a session id or token: the hidden fields of all its
/// forms and the query values of their actions (Keycloak's `session_code`), whichever form is
/// sent — the trace shows the page's body.
fn keep_page_values(run: &mut Attempt<'_>, issued: &mut Vec<SecretString>, public: &[&str], page: &Page) {
    for form in &page.forms {
        for c in form.controls.iter().filter(|c| c.kind == page::Kind::Hidden) {
            keep_server_value(run, issued, public, &c.value);
        }
        for (_, value) in form.action.iter().flat_map(|a| a.query_pairs().into_owned().collect::<Vec<_>>()) {
            keep_server_value(run, issued, public, &value);
        }
    }
}

/// 32 random bytes, base64url: a `state`, a `nonce`, a PKCE verifier.
fn random_token() -> String {
    use base64::Engine as _;
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn verdict(step: Step, result: ResultClass, reason: Reason, text: Option<&str>, detail: String) -> Verdict {
    Verdict {
        reason,
        reason_text: text.unwrap_or_default().to_owned(),
        lockout: lockout(result, reason),
        ..Verdict::of(step, result, detail)
    }
}

/// The next request of a login.
struct Next {
    method: Method,
    url: Url,
    form: Option<Form>,
    /// The origin of the page a form is posted from.
    origin: Option<url::Origin>,
}

/// Goes through the identity provider's pages to the code.
pub(crate) async fn authorize(
    run: &mut Attempt<'_>,
    spec: &OAuth2Login,
    login: &Interactive,
    resolved: &Resolved,
    browser: &mut Browser,
    issued: &mut Vec<SecretString>,
) -> Result<Authorized, Verdict> {
    let Some(endpoint) = resolved.authorization.clone() else {
        let detail = "the server names no authorization_endpoint (discovery) and the target sets none".to_owned();
        return Err(Verdict::of(AUTHORIZE, ResultClass::InvalidResponse, detail));
    };
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    for s in [&state, &nonce, &verifier] {
        keep(run, issued, s);
    }
    let challenge = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let mut url = endpoint;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &spec.target.client_id)
            .append_pair("redirect_uri", login.redirect_uri.as_str());
        if let Some(scope) = &spec.scope {
            q.append_pair("scope", scope);
        }
        q.append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in [("audience", &spec.audience), ("resource", &spec.resource)] {
            if let Some(v) = value {
                q.append_pair(name, v);
            }
        }
    }
    let mut next = Next { method: Method::GET, url, form: None, origin: None };
    let mut step = AUTHORIZE;
    let username = SecretString::from(login.username.clone());
    let mut sent = Sent::default();
    loop {
        // A 307 or 308 answer sends the same form again.
        let form_sent = next.form.clone();
        let received = browser.send(run, &mut next, step, issued).await?;
        let here = next.url.clone();
        let status = received.status;
        if let (300..=399, Some(location)) = (status, received.answer().location) {
            let Ok(to) = here.join(location.trim()) else {
                return Err(Verdict::of(
                    step,
                    ResultClass::InvalidResponse,
                    format!("HTTP {status}: unreadable Location"),
                ));
            };
            if is_redirect_uri(&to, &login.redirect_uri) {
                keep_callback_values(run, issued, &to);
                let code = callback(&to, &state, resolved, step, sent)?;
                return Ok(Authorized {
                    code,
                    verifier: SecretString::from(verifier),
                    nonce: SecretString::from(nonce),
                });
            }
            browser.redirects += 1;
            if browser.redirects > MAX_REDIRECTS {
                let detail = format!("more than {MAX_REDIRECTS} redirects without reaching the redirect_uri (a loop?)");
                return Err(verdict(step, ResultClass::StepLimit, TOO_MANY_PAGES, None, detail));
            }
            // 307 and 308 repeat a POST; a form is sent again only where it may go.
            next = match (status, form_sent) {
                (307 | 308, Some(_)) if !browser.may_post(&here, &to) => {
                    let detail = format!("a {status} redirect would send the form on to {}", origin_of(&to));
                    return Err(verdict(step, ResultClass::InvalidResponse, FOREIGN_ORIGIN, None, detail));
                }
                (307 | 308, Some(form)) => {
                    Next { method: Method::POST, url: to, form: Some(form), origin: next.origin.clone() }
                }
                _ => Next { method: Method::GET, url: to, form: None, origin: None },
            };
            continue;
        }
        let answer = received.answer();
        let page = read_page(run, answer.body, &here, &login.hints, step).await?;
        keep_page_values(run, issued, &browser.public(), &page);
        let text = page.error.as_deref();
        // A refusal may come back with the form again and a 4xx (dex answers a wrong password
        // with its login page and 401): such a page is read like any other.
        let chosen = page.choose(&login.hints);
        let refused_with_form = (400..=499).contains(&status) && status != 429 && chosen.is_some();
        if !(200..=299).contains(&status) && !refused_with_form {
            let shown = describe_page(&page, &here);
            return Err(match status {
                429 => verdict(step, ResultClass::RateLimited, TOO_MANY_REQUESTS, text, format!("HTTP 429 on {shown}")),
                500.. => verdict(step, ResultClass::HttpError, Reason::NONE, text, format!("HTTP {status} on {shown}")),
                // A form of the login in progress refused: its session is gone (a lost cookie,
                // an expired or finished login).
                400..=499 if sent.any() => verdict(
                    step,
                    ResultClass::UnexpectedStep,
                    SESSION_EXPIRED,
                    text,
                    format!("HTTP {status} on {shown} after the {} form: the login's session is gone", step.as_str()),
                ),
                _ => verdict(step, ResultClass::HttpError, Reason::NONE, text, format!("HTTP {status} on {shown}")),
            });
        }
        if !answer.body_complete {
            let detail = format!(
                "the page at {} exceeds max_body_bytes ({} bytes read); raise max_body_bytes",
                describe_url(&here),
                answer.body.len()
            );
            return Err(Verdict::of(step, ResultClass::InvalidResponse, detail));
        }
        browser.pages += 1;
        if browser.pages > MAX_PAGES {
            let detail = format!("more than {MAX_PAGES} pages without reaching the redirect_uri (a loop?)");
            return Err(verdict(step, ResultClass::StepLimit, TOO_MANY_PAGES, text, detail));
        }
        let Some((index, asks)) = chosen else {
            let detail = format!(
                "no form of {} asks for a username, a password, a one-time code or consent ({})",
                describe_page(&page, &here),
                page.describe_forms()
            );
            return Err(verdict(step, ResultClass::UnexpectedStep, LOGIN_FORM_NOT_FOUND, text, detail));
        };
        let form = &page.forms[index];
        let restarted = |what: &str| {
            let detail = format!("{what} asked again after the password was taken: the login started over");
            verdict(step, ResultClass::UnexpectedStep, SESSION_EXPIRED, text, detail)
        };
        let refused = |what: &str| {
            let detail = format!("{what} asked again after it was sent: refused");
            verdict(step, ResultClass::AuthFailed, INVALID_CREDENTIALS, text, detail)
        };
        let password_taken = sent.otp || sent.consent;
        let mut ours: Vec<(usize, &SecretString)> = Vec::new();
        let code;
        let mut button = form.submit_button();
        let (new_step, credential) = match asks {
            Asks::Password { username: field, password } => {
                if password_taken {
                    return Err(restarted("the password"));
                }
                if sent.password {
                    return Err(refused("the password"));
                }
                ours.extend(field.map(|f| (f, &username)));
                ours.push((password, &login.password));
                sent.password = true;
                (PASSWORD, true)
            }
            Asks::Username(field) => {
                if password_taken {
                    return Err(restarted("the username"));
                }
                if sent.username || sent.password {
                    return Err(refused("the username"));
                }
                ours.push((field, &username));
                sent.username = true;
                (USERNAME, true)
            }
            Asks::Otp(_) => {
                if sent.otp {
                    let detail = "the one-time code was asked again after a code was sent: refused".to_owned();
                    return Err(verdict(step, ResultClass::AuthFailed, INVALID_OTP, text, detail));
                }
                if login.totp.is_none() {
                    let detail = format!(
                        "{} asks for a one-time code and the probe has no totp_secret",
                        describe_page(&page, &here)
                    );
                    return Err(verdict(step, ResultClass::UnexpectedStep, LOGIN_FORM_NOT_FOUND, text, detail));
                }
                // The code is made once the form is known to go where it may: a time step is
                // claimed only to be sent.
                sent.otp = true;
                (OTP, true)
            }
            Asks::Consent(approve) => {
                if login.consent == Consent::Fail {
                    let detail =
                        format!("{} asks for consent, and the probe has consent: fail", describe_page(&page, &here));
                    return Err(verdict(step, ResultClass::UnexpectedStep, CONSENT_REQUIRED, text, detail));
                }
                if sent.consent {
                    let detail = "the consent page came back after it was approved".to_owned();
                    return Err(verdict(step, ResultClass::UnexpectedStep, CONSENT_REQUIRED, text, detail));
                }
                button = Some(approve);
                sent.consent = true;
                (CONSENT, true)
            }
            Asks::AutoSubmit => (step, false),
        };
        let (action, method) = form.target(button);
        let Some(action) = action else {
            return Err(Verdict::of(step, ResultClass::InvalidResponse, "the form's action is not a URL".to_owned()));
        };
        if is_redirect_uri(&action, &login.redirect_uri) {
            // response_mode=form_post: the authorization response is the form, never sent.
            let mut to = action;
            to.query_pairs_mut().clear().extend_pairs(
                form.entries(button, &[]).iter().map(|(n, v)| (n.as_str(), v.expose_secret().to_owned())),
            );
            keep_callback_values(run, issued, &to);
            let code = callback(&to, &state, resolved, step, sent)?;
            return Ok(Authorized { code, verifier: SecretString::from(verifier), nonce: SecretString::from(nonce) });
        }
        let downgrade = here.scheme() == "https" && action.scheme() != "https";
        if (credential && !browser.may_post(&here, &action)) || downgrade {
            let detail = format!(
                "the {} form of {} would be sent to {}, {}: nothing was sent",
                new_step.as_str(),
                describe_url(&here),
                origin_of(&action),
                if downgrade { "over plain http" } else { "not the issuer's origin nor an allowed one" }
            );
            return Err(verdict(new_step, ResultClass::InvalidResponse, FOREIGN_ORIGIN, None, detail));
        }
        if let (Asks::Otp(field), Some(totp)) = (asks, &login.totp) {
            code = match one_time_code(run, totp).await {
                Ok(c) => c,
                Err(detail) => return Err(Verdict::of(OTP, ResultClass::Timeout, detail)),
            };
            keep(run, issued, code.expose_secret());
            ours.push((field, &code));
        }
        let entries = match asks {
            Asks::Consent(approve) => form.consent_entries(approve),
            _ => form.entries(button, &ours),
        };
        let mut body = Form::default();
        for (name, value) in &entries {
            body = body.secret(name.clone(), value);
        }
        step = new_step;
        next = match method {
            page::Method::Post => {
                Next { method: Method::POST, url: action, form: Some(body), origin: Some(here.origin()) }
            }
            page::Method::Get => {
                let mut url = action;
                url.set_query(Some(&body.encode()));
                Next { method: Method::GET, url, form: None, origin: None }
            }
        };
    }
}

impl Sent {
    fn any(self) -> bool {
        self.username || self.password || self.otp || self.consent
    }
}

/// Parses a page, on a thread where it can take what it takes (see [`MAX_PAGE_BYTES`]) while the
/// run ends by its deadline.
async fn read_page(run: &Attempt<'_>, body: &[u8], url: &Url, hints: &Hints, step: Step) -> Result<Page, Verdict> {
    if body.len() > MAX_PAGE_BYTES {
        let detail = format!("the page at {} is over {} bytes: not read", describe_url(url), MAX_PAGE_BYTES);
        return Err(Verdict::of(step, ResultClass::InvalidResponse, detail));
    }
    let html = String::from_utf8_lossy(body).into_owned();
    if page::nesting(&html) > page::MAX_NESTING {
        let detail =
            format!("the page at {} nests elements over {} deep: not read", describe_url(url), page::MAX_NESTING);
        return Err(Verdict::of(step, ResultClass::InvalidResponse, detail));
    }
    let (url, hints) = (url.clone(), hints.clone());
    let parsing = tokio::task::spawn_blocking(move || Page::parse(&html, &url, &hints));
    match tokio::time::timeout_at(run.deadline, parsing).await {
        Ok(Ok(page)) => Ok(page),
        Ok(Err(_)) => Err(Verdict::of(step, ResultClass::InvalidResponse, "the page could not be read".to_owned())),
        Err(_) => Err(Verdict::of(step, ResultClass::Timeout, "deadline exceeded while reading a page".to_owned())),
    }
}

/// The code of the next unused time step, waiting for it (within the deadline) when this
/// secret's current step was used already.
async fn one_time_code(run: &mut Attempt<'_>, totp: &Totp) -> Result<SecretString, String> {
    let (step, wait) = totp.claim(SystemTime::now());
    if !wait.is_zero() {
        if tokio::time::Instant::now() + wait > run.deadline {
            totp.release(step);
            return Err(format!(
                "this secret's one-time code was used within the current {} s step; the next starts after the deadline",
                totp.period
            ));
        }
        run.note(&format!("This secret's current time step was used: waiting {} ms for the next", wait.as_millis()));
        tokio::time::sleep(wait).await;
    }
    Ok(totp.code(step))
}

/// Whether `to` is the client's redirect URI (its query aside): the end of the login.
fn is_redirect_uri(to: &Url, redirect_uri: &Url) -> bool {
    to.scheme() == redirect_uri.scheme()
        && to.host_str() == redirect_uri.host_str()
        && to.port_or_known_default() == redirect_uri.port_or_known_default()
        && to.path() == redirect_uri.path()
}

/// Reads the authorization response at the redirect URI (RFC 6749 §4.1.2, RFC 9207): its
/// `state`, its `iss`, then its `error` or its `code`.
fn callback(to: &Url, state: &str, resolved: &Resolved, step: Step, sent: Sent) -> Result<SecretString, Verdict> {
    let mut params: Vec<(String, String)> = to.query_pairs().into_owned().collect();
    if !params.iter().any(|(k, _)| k == "code" || k == "error") {
        // A server answering in the fragment (response_mode=fragment).
        if let Some(f) = to.fragment() {
            params.extend(url::form_urlencoded::parse(f.as_bytes()).into_owned());
        }
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let invalid =
        |reason, detail: &str| Err(verdict(step, ResultClass::InvalidResponse, reason, None, detail.to_owned()));
    match get("state") {
        Some(s) if s == state => {}
        Some(_) => return invalid(STATE_MISMATCH, "the authorization response's state is not the one sent"),
        None => return invalid(STATE_MISMATCH, "the authorization response has no state"),
    }
    // Without an issuer (a target of endpoints alone) there is nothing to compare iss with.
    let issuer = resolved.issuer.as_deref();
    match get("iss") {
        Some(iss) if issuer.is_some_and(|i| iss.trim_end_matches('/') != i.trim_end_matches('/')) => {
            let shown: String = iss.chars().take(80).collect();
            return invalid(WRONG_ISSUER, &format!("the authorization response's iss {shown:?} is not the issuer"));
        }
        None if resolved.iss_required => {
            return invalid(
                WRONG_ISSUER,
                "the authorization response has no iss, which the server announces it sends (RFC 9207)",
            );
        }
        _ => {}
    }
    if let Some(code) = get("error") {
        let (result, reason) = match code {
            // Denied after the consent page was approved: the consent did not hold.
            "access_denied" if sent.consent => (ResultClass::UnexpectedStep, CONSENT_REQUIRED),
            "access_denied" => (ResultClass::AuthFailed, ACCESS_DENIED),
            "consent_required" => (ResultClass::UnexpectedStep, CONSENT_REQUIRED),
            "login_required" => (ResultClass::AuthFailed, LOGIN_REQUIRED),
            "interaction_required" | "account_selection_required" => (ResultClass::AuthFailed, INTERACTION_REQUIRED),
            "server_error" => (ResultClass::HttpError, SERVER_ERROR),
            "temporarily_unavailable" => (ResultClass::RateLimited, TEMPORARILY_UNAVAILABLE),
            "invalid_request" => (ResultClass::ClientRejected, INVALID_REQUEST),
            "unauthorized_client" => (ResultClass::ClientRejected, UNAUTHORIZED_CLIENT),
            "invalid_scope" => (ResultClass::ClientRejected, INVALID_SCOPE),
            _ => (ResultClass::ClientRejected, Reason::OTHER),
        };
        let text = get("error_description").filter(|d| !d.is_empty()).unwrap_or(code);
        let shown: String = code.chars().take(40).collect();
        let detail = format!("the authorization response is error {shown}");
        return Err(verdict(step, result, reason, Some(text), detail));
    }
    match get("code").filter(|c| !c.is_empty()) {
        Some(code) => Ok(SecretString::from(code.to_owned())),
        None => invalid(Reason::NONE, "the redirect to the redirect_uri carries neither code nor error"),
    }
}

/// Ends the identity provider's session: the `end_session_endpoint` with `id_token_hint`, and
/// the confirmation it asks for, if any (oidc-provider, Django OAuth Toolkit and Keycloak ask
/// one without a post-logout redirect).
pub(crate) async fn logout(
    run: &mut Attempt<'_>,
    spec: &OAuth2Login,
    login: &Interactive,
    resolved: &Resolved,
    browser: &mut Browser,
    issued: &mut Vec<SecretString>,
) -> LogoutOutcome {
    let fail = |status, detail: String| LogoutOutcome { ok: false, status, detail };
    let Some(mut url) = resolved.end_session.clone() else {
        return fail(0, "the server names no end_session_endpoint".to_owned());
    };
    {
        let mut q = url.query_pairs_mut();
        if let Some(hint) = &browser.id_token {
            q.append_pair("id_token_hint", hint.expose_secret());
        }
        q.append_pair("client_id", &spec.target.client_id);
    }
    let mut next = Next { method: Method::GET, url, form: None, origin: None };
    let mut confirmed = false;
    for _ in 0..MAX_PAGES + MAX_REDIRECTS {
        let received = match browser.send(run, &mut next, LOGOUT, issued).await {
            Ok(r) => r,
            Err(v) => return fail(0, v.detail),
        };
        let (here, status) = (next.url.clone(), received.status);
        if let (300..=399, Some(location)) = (status, received.answer().location) {
            match here.join(location.trim()) {
                // After the confirmation, or away from the identity provider: the session is over.
                Ok(to) if !confirmed && browser.allowed.contains(&to.origin()) => {
                    next = Next { method: Method::GET, url: to, form: None, origin: None };
                    continue;
                }
                Ok(_) => return LogoutOutcome { ok: true, status, detail: "logged out".to_owned() },
                Err(_) => return fail(status, format!("HTTP {status}: unreadable Location")),
            }
        }
        if !(200..=299).contains(&status) {
            return fail(status, format!("end_session: HTTP {status}"));
        }
        let page = match read_page(run, received.answer().body, &here, &login.hints, LOGOUT).await {
            Ok(p) => p,
            Err(v) => return fail(status, v.detail),
        };
        keep_page_values(run, issued, &browser.public(), &page);
        let Some((index, button)) = page.logout_confirmation().filter(|_| !confirmed) else {
            return LogoutOutcome { ok: true, status, detail: "logged out".to_owned() };
        };
        let form = &page.forms[index];
        let (action, _) = form.target(button);
        let Some(action) = action.filter(|a| browser.may_post(&here, a)) else {
            return fail(
                status,
                "the logout confirmation would be sent elsewhere than the identity provider".to_owned(),
            );
        };
        let mut body = Form::default();
        for (name, value) in form.entries(button, &[]) {
            body = body.secret(name, &value);
        }
        confirmed = true;
        next = Next { method: Method::POST, url: action, form: Some(body), origin: Some(here.origin()) };
    }
    fail(0, "too many pages and redirects while logging out".to_owned())
}

/// A URL as details show it: its origin and path, no query.
fn describe_url(url: &Url) -> String {
    let path: String = url.path().chars().take(80).collect();
    format!("{}{path}", origin_of(url))
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A page as details show it: its title and where it is.
fn describe_page(page: &Page, url: &Url) -> String {
    let title: String = page.title.chars().take(60).collect();
    if title.is_empty() {
        format!("the page at {}", describe_url(url))
    } else {
        format!("the page {title:?} at {}", describe_url(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(iss_required: bool) -> Resolved {
        Resolved {
            issuer: Some("https://idp.test/realms/x".to_owned()),
            token: Url::parse("https://idp.test/token").unwrap(),
            jwks: None,
            userinfo: None,
            introspection: None,
            revocation: None,
            authorization: None,
            end_session: None,
            iss_required,
            keys: None,
        }
    }

    fn read(query: &str, iss_required: bool, consent: bool) -> Result<String, (ResultClass, Reason, String)> {
        let to = Url::parse(&format!("https://app.test/cb{query}")).unwrap();
        let sent = Sent { consent, ..Sent::default() };
        callback(&to, "st-1", &resolved(iss_required), PASSWORD, sent)
            .map(|c| c.expose_secret().to_owned())
            .map_err(|v| (v.result, v.reason, v.reason_text))
    }

    #[test]
    fn the_authorization_response_is_read_state_then_iss_then_error_or_code() {
        use ResultClass::*;
        assert_eq!(read("?code=c-1&state=st-1", false, false), Ok("c-1".to_owned()));
        assert_eq!(
            read("?code=c-1&state=st-1&iss=https%3A%2F%2Fidp.test%2Frealms%2Fx%2F", true, false),
            Ok("c-1".to_owned())
        );
        assert_eq!(read("#code=c-2&state=st-1", false, false), Ok("c-2".to_owned()), "a fragment response");
        let no = |q: &str, req, consent| read(q, req, consent).unwrap_err();
        assert_eq!(no("?code=c-1&state=other", false, false).1, STATE_MISMATCH);
        assert_eq!(no("?code=c-1", false, false).1, STATE_MISMATCH);
        assert_eq!(no("?error=access_denied", false, false).1, STATE_MISMATCH, "state is checked first");
        assert_eq!(no("?code=c-1&state=st-1", true, false).1, WRONG_ISSUER, "iss announced but missing");
        assert_eq!(no("?code=c-1&state=st-1&iss=https%3A%2F%2Fevil.test", false, false).1, WRONG_ISSUER);
        assert_eq!(no("?state=st-1", false, false), (InvalidResponse, Reason::NONE, String::new()));
        assert_eq!(no("?state=st-1&code=", false, false).0, InvalidResponse);
        for (code, consent, class, reason) in [
            ("access_denied", false, AuthFailed, ACCESS_DENIED),
            ("access_denied", true, UnexpectedStep, CONSENT_REQUIRED),
            ("consent_required", false, UnexpectedStep, CONSENT_REQUIRED),
            ("login_required", false, AuthFailed, LOGIN_REQUIRED),
            ("account_selection_required", false, AuthFailed, INTERACTION_REQUIRED),
            ("server_error", false, HttpError, SERVER_ERROR),
            ("temporarily_unavailable", false, RateLimited, TEMPORARILY_UNAVAILABLE),
            ("unsupported_response_type", false, ClientRejected, Reason::OTHER),
        ] {
            let got = no(&format!("?error={code}&error_description=Why+not&state=st-1"), false, consent);
            assert_eq!(got, (class, reason, "Why not".to_owned()), "{code}");
        }
        assert_eq!(
            no("?error=server_error&state=st-1", false, false).2,
            "server_error",
            "the code when no description"
        );
    }
}
