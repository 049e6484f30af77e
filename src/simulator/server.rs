//! The simulator's HTTP side: routes, the login state machine and the faults.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::Bytes;
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::listener::{Cut, Peer};
use super::{Account, AccountStats, Fault, Locked, RecordedRequest, Settings, WrongSecret};

/// A step of the login, as the server names it (its own names: the prober's are not trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    BaseAuthentication,
    SecutityPin,
    VerificationCode,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::BaseAuthentication => "BaseAuthentication",
            Step::SecutityPin => "SecutityPin",
            Step::VerificationCode => "VerificationCode",
        }
    }
}

const APP_KEY_ERROR: &str = "Application key is not defined or does not exist";
const INVALID_CREDENTIALS: &str = "Invalid credentials";
const INVALID_PIN: &str = "Invalid pin";
const PIN_NOT_INIT: &str = "PIN code is not init";
const EXPECTING_CODE: &str = "Expecting confirmation code";
const INVALID_CODE: &str = "Invalid verification code";
const CORRUPTED_TICKET: &str = "Corrupted ticket";
const PASSWORD_EXPIRED: &str = "Your Password has expired and must be changed";
const TOO_MANY: &str = "Too many login requests. Please try again later.";
const DENIED: &str = "Authorization has been denied for this request.";
/// Open sessions remembered at most; the oldest is forgotten first (as if it expired).
const MAX_SESSIONS: usize = 100_000;
/// Interim tokens are good for one use within this time.
const TICKET_LIFETIME: Duration = Duration::from_secs(300);
/// Per-account memory of requests and tokens, for tests.
const KEEP_PER_ACCOUNT: usize = 100;
/// `/token` answer times kept per account: enough for a benchmark's rounds.
const KEEP_SERVER_TIMES: usize = 10_000;
/// Size of the body sent by [`Fault::Oversized`].
const OVERSIZED_BYTES: usize = 20 * 1024 * 1024;

/// Everything the simulator knows, shared by all connections.
pub(crate) struct Shared {
    app_keys: Vec<SecretString>,
    app_key_error_status: StatusCode,
    default_rate_limit: Option<super::RateLimit>,
    base_path: String,
    accounts: Arc<Locked<HashMap<String, Account>>>,
    state: Locked<LoginState>,
    /// The OAuth 2.0 authorization server, when configured.
    pub(crate) oauth2: Option<Arc<super::oauth2::Server>>,
    /// The LDAP directory, when configured (its listeners are [`super::Simulator`]'s).
    pub(crate) ldap: Option<Arc<super::ldap::Directory>>,
}

#[derive(Default)]
struct LoginState {
    tickets: HashMap<String, Ticket>,
    per_account: HashMap<String, PerAccount>,
    /// Final token → username, for the calls made with it.
    sessions: HashMap<String, String>,
    /// Tokens in the order issued, to forget the oldest.
    session_order: VecDeque<String>,
}

struct Ticket {
    username: String,
    pending: Step,
    expires: Instant,
}

#[derive(Default)]
struct PerAccount {
    stats: AccountStats,
    requests: VecDeque<RecordedRequest>,
    tokens: VecDeque<String>,
    validated: VecDeque<String>,
    revoked: VecDeque<String>,
    recent_logins: VecDeque<Instant>,
    server_seconds: VecDeque<f64>,
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    push_within(q, v, KEEP_PER_ACCOUNT);
}

/// Appends `v`, dropping the oldest entry once `q` holds `limit`.
fn push_within<T>(q: &mut VecDeque<T>, v: T, limit: usize) {
    if q.len() == limit {
        q.pop_front();
    }
    q.push_back(v);
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Self {
        let accounts: Arc<Locked<HashMap<String, Account>>> =
            Arc::new(Locked::new(settings.accounts.into_iter().map(|a| (a.username.clone(), a)).collect()));
        let users = accounts.clone();
        let lookup = move |name: &str| users.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        let oauth2 = settings.oauth2.as_ref().map(|o| Arc::new(super::oauth2::Server::new(o, Arc::new(lookup))));
        let ldap = settings.ldap.map(|l| Arc::new(super::ldap::Directory::new(l, accounts.clone())));
        Shared {
            app_keys: settings.app_keys,
            app_key_error_status: StatusCode::from_u16(settings.app_key_error_status).unwrap_or(StatusCode::FORBIDDEN),
            default_rate_limit: settings.rate_limit,
            base_path: settings.base_path,
            accounts,
            state: Locked::new(LoginState::default()),
            oauth2,
            ldap,
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, LoginState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn account(&self, username: &str) -> Option<Account> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner()).get(username).cloned()
    }

    pub(crate) fn update_account(&self, username: &str, change: impl FnOnce(&mut Account)) -> bool {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.get_mut(username).map(change).is_some()
    }

    /// How long the simulator took over each `/token` request of `username` (oldest first): the
    /// server's own time, which benchmarks subtract from a client's to find the client's overhead.
    pub(crate) fn server_seconds(&self, username: &str) -> Vec<f64> {
        self.lock_state()
            .per_account
            .get(username)
            .map(|a| a.server_seconds.iter().copied().collect())
            .unwrap_or_default()
    }

    fn record_server_time(&self, username: &str, took: Duration) {
        let mut state = self.lock_state();
        let times = &mut state.per_account.entry(username.to_owned()).or_default().server_seconds;
        push_within(times, took.as_secs_f64(), KEEP_SERVER_TIMES);
    }

    pub(crate) fn stats(&self, username: &str) -> AccountStats {
        self.lock_state().per_account.get(username).map(|a| a.stats).unwrap_or_default()
    }

    pub(crate) fn all_stats(&self) -> HashMap<String, AccountStats> {
        self.lock_state().per_account.iter().map(|(k, v)| (k.clone(), v.stats)).collect()
    }

    pub(crate) fn requests(&self, username: &str) -> Vec<RecordedRequest> {
        self.lock_state().per_account.get(username).map(|a| a.requests.iter().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn issued_tokens(&self, username: &str) -> Vec<String> {
        self.lock_state().per_account.get(username).map(|a| a.tokens.iter().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn validated_tokens(&self, username: &str) -> Vec<String> {
        self.lock_state().per_account.get(username).map(|a| a.validated.iter().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn revoked_tokens(&self, username: &str) -> Vec<String> {
        self.lock_state().per_account.get(username).map(|a| a.revoked.iter().cloned().collect()).unwrap_or_default()
    }

    /// The account whose open session `headers` carry (`Authorization: Bearer …`), after the app
    /// key is checked: the answer to give instead when either is wrong.
    fn session(&self, headers: &HeaderMap) -> Result<Account, (StatusCode, Value)> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if !text("et-app-key").is_some_and(|k| self.app_keys.iter().any(|a| a.expose_secret() == k)) {
            return Err((self.app_key_error_status, json!({ "error": APP_KEY_ERROR })));
        }
        let denied = || (StatusCode::UNAUTHORIZED, json!({ "Message": DENIED }));
        let token = bearer(headers).ok_or_else(denied)?;
        let username = self.lock_state().sessions.get(&token).cloned().ok_or_else(denied)?;
        let account = self.account(&username).ok_or_else(denied)?;
        if account.fault == Fault::RejectTokens {
            return Err(denied());
        }
        Ok(account)
    }

    /// `GET {base}/v1.0/users/@me/info`.
    fn user_info(&self, headers: &HeaderMap) -> (StatusCode, Value) {
        let account = match self.session(headers) {
            Ok(a) => a,
            Err(answer) => return answer,
        };
        let token = bearer(headers).unwrap_or_default();
        let mut state = self.lock_state();
        let per = state.per_account.entry(account.username.clone()).or_default();
        per.stats.validations += 1;
        push_bounded(&mut per.validated, token);
        let user_id =
            account.username.bytes().fold(1000u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 1_000_000;
        (
            StatusCode::OK,
            json!({ "UserId": user_id, "Login": account.username, "FirstName": "Probe", "LastName": "Account", "Email": null }),
        )
    }

    /// `POST {base}/logout`: ends the session of the Bearer token.
    fn logout(&self, headers: &HeaderMap) -> (StatusCode, Value) {
        let account = match self.session(headers) {
            Ok(a) => a,
            Err(answer) => return answer,
        };
        if account.fault == Fault::LogoutError {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "message": "An error occurred while processing your request", "error": "Unexpected server error" }),
            );
        }
        let token = bearer(headers).unwrap_or_default();
        let mut state = self.lock_state();
        state.sessions.remove(&token);
        let per = state.per_account.entry(account.username.clone()).or_default();
        per.stats.logouts += 1;
        push_bounded(&mut per.revoked, token);
        (StatusCode::OK, json!({}))
    }

    fn record(&self, account: Option<&Account>, peer: SocketAddr, method: &Method, uri: &Uri, headers: &HeaderMap) {
        // Unknown usernames are pooled under "" so a client cannot grow the map without bound.
        let key = account.map_or(String::new(), |a| a.username.clone());
        let req = RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            peer: Some(peer),
        };
        let mut state = self.lock_state();
        let entry = state.per_account.entry(key).or_default();
        entry.stats.requests += 1;
        push_bounded(&mut entry.requests, req);
    }

    /// The login state machine for a well-behaved server. Synchronous: the lock is never held
    /// across an await.
    fn login(&self, headers: &HeaderMap, account: Option<&Account>) -> (StatusCode, Value) {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let app_key_ok = text("et-app-key").is_some_and(|k| self.app_keys.iter().any(|a| a.expose_secret() == k));
        if !app_key_ok {
            return (self.app_key_error_status, json!({ "error": APP_KEY_ERROR }));
        }
        let Some(account) = account.filter(|a| text("password") == Some(a.password.expose_secret())) else {
            return failed(Step::BaseAuthentication, INVALID_CREDENTIALS);
        };
        let bearer = bearer(headers);
        let pin = text("pincode");
        let code = text("verificationcode");
        let now = Instant::now();
        let mut state = self.lock_state();
        state.tickets.retain(|_, t| t.expires > now);
        let ticket = bearer.and_then(|b| state.tickets.remove(&b)).filter(|t| t.username == account.username);

        let Some(ticket) = ticket else {
            let steps = required_steps(account);
            if !steps.is_empty() && (pin.is_some() || code.is_some()) {
                let step = if pin.is_some() { Step::SecutityPin } else { Step::VerificationCode };
                return with_extras(account, failed(step, CORRUPTED_TICKET));
            }
            let limit = account.rate_limit.or(self.default_rate_limit);
            let per = state.per_account.entry(account.username.clone()).or_default();
            if let Some(limit) = limit {
                while per.recent_logins.front().is_some_and(|t| now.duration_since(*t) >= limit.window) {
                    per.recent_logins.pop_front();
                }
                if per.recent_logins.len() >= limit.max_logins as usize {
                    return with_extras(account, failed(Step::BaseAuthentication, TOO_MANY));
                }
                per.recent_logins.push_back(now);
            }
            per.stats.logins += 1;
            if account.password_expired {
                return with_extras(account, failed(Step::BaseAuthentication, PASSWORD_EXPIRED));
            }
            let answer = advance(&mut state, account, None);
            return with_extras(account, answer);
        };

        let answer = match ticket.pending {
            Step::SecutityPin if !account.pin_initialized => match pin {
                Some(_) => failed(Step::SecutityPin, PIN_NOT_INIT),
                None => prompt(&mut state, account, Step::SecutityPin, PIN_NOT_INIT),
            },
            Step::SecutityPin => match (pin, &account.pin) {
                (None, _) => prompt(&mut state, account, Step::SecutityPin, INVALID_PIN),
                (Some(p), Some(want)) if p == want.expose_secret() => {
                    advance(&mut state, account, Some(Step::SecutityPin))
                }
                (Some(_), _) => wrong(&mut state, account, Step::SecutityPin, INVALID_PIN),
            },
            Step::VerificationCode => match (code, &account.verification_code) {
                (None, _) => prompt(&mut state, account, Step::VerificationCode, EXPECTING_CODE),
                (Some(c), Some(want)) if c == want.expose_secret() => {
                    advance(&mut state, account, Some(Step::VerificationCode))
                }
                (Some(_), _) => wrong(&mut state, account, Step::VerificationCode, INVALID_CODE),
            },
            _ => failed(Step::BaseAuthentication, CORRUPTED_TICKET),
        };
        with_extras(account, answer)
    }
}

/// The steps an account must pass after its password, in the server's order.
fn required_steps(account: &Account) -> Vec<Step> {
    let mut steps = Vec::new();
    if account.pin.is_some() || !account.pin_initialized {
        steps.push(Step::SecutityPin);
    }
    if account.verification_code.is_some() {
        steps.push(Step::VerificationCode);
    }
    steps
}

/// Moves past `passed` (None: just the password) to the next prompt or the final token.
fn advance(state: &mut LoginState, account: &Account, passed: Option<Step>) -> (StatusCode, Value) {
    let steps = required_steps(account);
    let next = match passed {
        None => steps.first(),
        Some(p) => steps.iter().skip_while(|s| **s != p).nth(1),
    };
    match next {
        Some(Step::SecutityPin) if !account.pin_initialized => prompt(state, account, Step::SecutityPin, PIN_NOT_INIT),
        // The real server's first PIN prompt already says "Invalid pin" (see the seed's 202 example).
        Some(Step::SecutityPin) => prompt(state, account, Step::SecutityPin, INVALID_PIN),
        Some(step) => prompt(state, account, *step, EXPECTING_CODE),
        None => {
            let token = new_token();
            let per = state.per_account.entry(account.username.clone()).or_default();
            per.stats.tokens_issued += 1;
            push_bounded(&mut per.tokens, token.clone());
            if state.session_order.len() == MAX_SESSIONS {
                if let Some(oldest) = state.session_order.pop_front() {
                    state.sessions.remove(&oldest);
                }
            }
            state.session_order.push_back(token.clone());
            state.sessions.insert(token.clone(), account.username.clone());
            (StatusCode::OK, json!({ "State": "Succeeded", "Token": token }))
        }
    }
}

fn prompt(state: &mut LoginState, account: &Account, step: Step, reason: &str) -> (StatusCode, Value) {
    let token = new_token();
    if account.fault != Fault::ForgetTickets {
        let ticket =
            Ticket { username: account.username.clone(), pending: step, expires: Instant::now() + TICKET_LIFETIME };
        state.tickets.insert(token.clone(), ticket);
    }
    (StatusCode::ACCEPTED, json!({ "Step": step.as_str(), "Reason": reason, "State": "Expecting", "Token": token }))
}

fn wrong(state: &mut LoginState, account: &Account, step: Step, reason: &str) -> (StatusCode, Value) {
    match account.wrong_secret {
        WrongSecret::Reject => failed(step, reason),
        WrongSecret::Reprompt => prompt(state, account, step, reason),
    }
}

fn failed(step: Step, reason: &str) -> (StatusCode, Value) {
    (StatusCode::UNAUTHORIZED, json!({ "State": "Failed", "Step": step.as_str(), "Reason": reason }))
}

fn with_extras(account: &Account, (status, mut body): (StatusCode, Value)) -> (StatusCode, Value) {
    if account.extra_fields {
        if let Value::Object(map) = &mut body {
            for key in ["ConfirmationToken", "PersonalPhrase", "Image"] {
                map.insert(key.to_owned(), Value::Null);
            }
        }
    }
    (status, body)
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// A fresh opaque token, unique per call.
fn new_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("SIM{}{n:x}", Alphanumeric.sample_string(&mut rand::rng(), 72))
}

pub(crate) fn router(shared: Arc<Shared>, scheme: &'static str) -> Router {
    let base = &shared.base_path;
    let oauth2 = shared.oauth2.as_ref().map(|o| o.router(scheme)).unwrap_or_default();
    Router::new()
        .route(&format!("{base}/token"), any(token))
        .route(&format!("{base}/v1.0/users/@me/info"), any(user_info))
        .route(&format!("{base}/logout"), any(logout))
        .route("/_sim/stats", get(stats))
        .route("/_sim/server-seconds/{username}", get(server_seconds))
        .fallback(not_found)
        .with_state(shared)
        .merge(oauth2)
}

/// The answer to a method a route does not serve, as ASP.NET Web API gives it.
fn method_not_allowed(method: &Method, allow: &str) -> Response {
    let body = json!({ "Message": format!("The requested resource does not support http method '{method}'.") });
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, allow)], Json(body)).into_response()
}

/// The account a session call is made for, for recording and delays: the token's owner.
fn session_owner(shared: &Shared, headers: &HeaderMap) -> Option<Account> {
    let token = bearer(headers)?;
    let username = shared.lock_state().sessions.get(&token).cloned()?;
    shared.account(&username)
}

async fn user_info(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = SessionCall { peer: conn.0, method, uri, headers };
    call.answer(&shared, Method::GET, Shared::user_info).await
}

async fn logout(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let call = SessionCall { peer: conn.0, method, uri, headers };
    call.answer(&shared, Method::POST, Shared::logout).await
}

/// A call made with a final token (`/v1.0/users/@me/info`, `/logout`).
struct SessionCall {
    peer: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl SessionCall {
    /// Records the call under the token's owner, refuses another method than `allowed`, waits
    /// the owner's delay and answers with `respond`.
    async fn answer(
        self,
        shared: &Shared,
        allowed: Method,
        respond: fn(&Shared, &HeaderMap) -> (StatusCode, Value),
    ) -> Response {
        let account = session_owner(shared, &self.headers);
        shared.record(account.as_ref(), self.peer, &self.method, &self.uri, &self.headers);
        if self.method != allowed {
            return method_not_allowed(&self.method, allowed.as_str());
        }
        if let Some(delay) = account.as_ref().and_then(|a| a.delay) {
            tokio::time::sleep(delay).await;
        }
        let (status, body) = respond(shared, &self.headers);
        (status, Json(body)).into_response()
    }
}

async fn token(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let account = headers.get("username").and_then(|v| v.to_str().ok()).and_then(|u| shared.account(u));
    shared.record(account.as_ref(), conn.0, &method, &uri, &headers);
    if method != Method::POST {
        return method_not_allowed(&method, "POST");
    }
    if let Some(delay) = account.as_ref().and_then(|a| a.delay) {
        tokio::time::sleep(delay).await;
    }
    if let Some(account) = account.as_ref().filter(|a| a.fault.replaces_answer()) {
        tracing::debug!(username = %account.username, fault = ?account.fault, "simulator fault");
        return fault(account.fault, &headers, &uri, &conn).await;
    }
    let (status, body) = shared.login(&headers, account.as_ref());
    if let Some(username) = account.map(|a| a.username) {
        let shared = shared.clone();
        conn.when_answered(move |took| shared.record_server_time(&username, took));
    }
    (status, Json(body)).into_response()
}

async fn server_seconds(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(username): axum::extract::Path<String>,
) -> Json<Vec<f64>> {
    Json(shared.server_seconds(&username))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<HashMap<String, AccountStats>> {
    Json(shared.all_stats())
}

async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let message = format!("No HTTP resource was found that matches the request URI 'http://{host}{uri}'.");
    (StatusCode::NOT_FOUND, Json(json!({ "Message": message }))).into_response()
}

fn raw(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

async fn fault(fault: Fault, headers: &HeaderMap, uri: &Uri, conn: &Peer) -> Response {
    const JSON: &str = "application/json; charset=utf-8";
    match fault {
        Fault::None | Fault::ForgetTickets | Fault::RejectTokens | Fault::LogoutError => {
            unreachable!("filtered by the caller")
        }
        Fault::Stall => std::future::pending().await,
        Fault::Html => raw(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<!DOCTYPE html>\n<html><head><title>ETNA Trader</title></head><body><h1>Log on</h1></body></html>\n",
        ),
        Fault::Redirect => {
            let mut r = raw(StatusCode::FOUND, "text/html; charset=utf-8", "<html><body>Object moved to <a href=\"/User/LogOn\">here</a>.</body></html>");
            r.headers_mut().insert(header::LOCATION, "/User/LogOn?ReturnUrl=%2fapi%2ftoken".parse().expect("static"));
            r
        }
        Fault::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "message": "An error occurred while processing your request", "error": "Unexpected server error" })),
        )
            .into_response(),
        Fault::ServerErrorModel => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "Model": null, "Errors": ["Unexpected server error"], "StatusCode": 500, "IsSucceed": false })),
        )
            .into_response(),
        Fault::Unavailable => raw(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "Service Unavailable"),
        Fault::TruncatedJson => raw(StatusCode::OK, JSON, r#"{"State":"Succeeded","Token":"VGhpcyBpcyBleGFt"#),
        Fault::Oversized => {
            let head = Bytes::from_static(br#"{"State":"Succeeded","Token":""#);
            let chunk = Bytes::from(vec![b'A'; 64 * 1024]);
            let chunks = std::iter::once(head).chain(std::iter::repeat_n(chunk, OVERSIZED_BYTES / (64 * 1024)));
            let stream = futures_util::stream::iter(chunks.map(Ok::<_, std::io::Error>));
            raw(StatusCode::OK, JSON, Body::from_stream(stream))
        }
        Fault::UnknownStep => (
            StatusCode::ACCEPTED,
            Json(json!({ "State": "Expecting", "Step": "SecretQuestion", "Reason": "Answer your secret question", "Token": new_token() })),
        )
            .into_response(),
        Fault::Endless202 => {
            let (step, reason) = if headers.contains_key("pincode") {
                (Step::VerificationCode, EXPECTING_CODE)
            } else {
                (Step::SecutityPin, INVALID_PIN)
            };
            let body = json!({ "Step": step.as_str(), "Reason": reason, "State": "Expecting", "Token": new_token() });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Fault::NotFound => not_found(uri.clone(), headers.clone()).await,
        Fault::WrongShape => raw(StatusCode::OK, JSON, r#"[{"State":"Succeeded","Token":"x"}]"#),
        Fault::NonUtf8 => raw(StatusCode::OK, JSON, Bytes::from_static(b"{\"State\":\"\xff\xfe\xfd\"}")),
        Fault::RandomReason => {
            let reason = Alphanumeric.sample_string(&mut rand::rng(), 5 * 1024);
            (StatusCode::UNAUTHORIZED, Json(json!({ "State": "Failed", "Step": "BaseAuthentication", "Reason": reason }))).into_response()
        }
        Fault::SlowDrip => {
            let body: &'static [u8] = br#"{"State":"Succeeded","Token":"drip"}"#;
            let stream = futures_util::stream::unfold(0usize, move |i| async move {
                if i >= body.len() {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, std::io::Error>(Bytes::from_static(&body[i..i + 1])), i + 1))
            });
            raw(StatusCode::OK, JSON, Body::from_stream(stream))
        }
        Fault::CloseWithoutResponse => {
            conn.cut(Cut::Close);
            raw(StatusCode::OK, JSON, "")
        }
        Fault::ResetMidBody => {
            // Half the announced body, a pause so that it reaches the client, then RST.
            let conn = conn.clone();
            let half = Bytes::from(format!(r#"{{"State":"Succeeded","Token":"{}"#, "R".repeat(4096)));
            let length = 2 * half.len();
            let stream = futures_util::stream::unfold(0u8, move |i| {
                let (conn, half) = (conn.clone(), half.clone());
                async move {
                    match i {
                        0 => Some((Ok::<_, std::io::Error>(half), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            conn.cut(Cut::Reset);
                            Some((Ok(half), 2))
                        }
                        _ => None,
                    }
                }
            });
            let mut r = raw(StatusCode::OK, JSON, Body::from_stream(stream));
            r.headers_mut().insert(header::CONTENT_LENGTH, length.into());
            r
        }
        Fault::RedirectLoop => {
            let mut r = raw(StatusCode::FOUND, "text/html; charset=utf-8", "");
            r.headers_mut().insert(header::LOCATION, uri.path().parse().unwrap_or(HeaderValue::from_static("/")));
            r
        }
        Fault::JsonString => raw(StatusCode::OK, JSON, r#""Succeeded""#),
        Fault::EmptyObject => raw(StatusCode::OK, JSON, "{}"),
        Fault::HeadersThenStall => {
            let stream = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            raw(StatusCode::OK, JSON, Body::from_stream(stream))
        }
    }
}
