//! Performs one login over HTTP: a fresh connection per run, one deadline over everything,
//! capped bodies, no redirects, no retries but of connections that failed before any answer.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use super::classify::{self, Answer, Context, Decision, Verdict};
use super::timing::{RunClock, RunHooks, TimedConnectLayer, TimedResolver};
use super::{
    sanitize, LoginSpec, LogoutOutcome, Outcome, Phases, Reason, ResultClass, Step, StepRecord, TlsFacts, TlsSettings,
    Trace,
};

/// Why a [`Prober`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    /// The TLS configuration could not be assembled.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The threads logins run on could not be started.
    #[error("cannot start the login threads: {0}")]
    Threads(std::io::Error),
}

/// Runs logins, on threads of their own (see [`crate::lanes`]). Cheap to share: clones share
/// the threads and the TLS configuration every run starts from.
#[derive(Clone)]
pub struct Prober {
    /// The system's CA certificates, for targets without a CA file of their own.
    roots: Arc<rustls::RootCertStore>,
    /// The clients of single-request logins, one per target's TLS settings and proxy.
    shared: Arc<Mutex<SharedClients>>,
    lanes: &'static crate::lanes::Lanes,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

/// A shared client's settings: the address of the target's TLS settings, and its proxy.
type SharedKey = (usize, Option<url::Url>);

/// The shared clients, each with the settings it was built from (to tell them from others that
/// took their address after they were freed).
type SharedClients = HashMap<SharedKey, (Weak<TlsSettings>, reqwest::Client)>;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("authprobe/", env!("CARGO_PKG_VERSION"));

impl Prober {
    /// A prober trusting the system's CA certificates, running logins on the process's lanes.
    pub fn new() -> Result<Self, ProberError> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A single unparsable system certificate must not disable TLS probing.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            tracing::warn!("no system CA certificates found; HTTPS targets without ca_file will fail with tls_error");
        }
        // Fails early, not at the first run, if the crypto provider cannot make a configuration.
        TlsSettings::default().build(&Arc::new(roots.clone())).map_err(ProberError::Tls)?;
        let lanes = crate::lanes::Lanes::shared().map_err(ProberError::Threads)?;
        Ok(Prober { roots: Arc::new(roots), shared: Arc::default(), lanes })
    }

    /// Performs one login as described by `spec` and classifies it. Never panics on server
    /// input and always returns within `spec.timeout` (plus scheduling noise).
    pub async fn login(&self, spec: &LoginSpec) -> Outcome {
        if crate::lanes::Lanes::on_lane() {
            // Where the scheduler runs it: no hop, and no copy of the spec to make one.
            return self.perform(spec, None).await;
        }
        let (prober, spec) = (self.clone(), spec.clone());
        self.lanes.run(async move { prober.perform(&spec, None).await }).await
    }

    /// Runs the whole login machinery once against a loopback socket of its own that answers a
    /// canned success, before anything is timed. A one-shot process (`authprobe probe`) would
    /// otherwise run its first login on a cold thread through code and data nothing has touched
    /// yet, and count that against the server (about 0.1 ms on the machine of BENCHMARKS.md).
    /// Nothing is sent to any target. Best effort: a failure only means no warm-up.
    pub async fn warm_up(&self) {
        use std::io::{Read as _, Write as _};
        let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", 0)) else { return };
        let Ok(addr) = listener.local_addr() else { return };
        let answer = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept()?;
            conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"State":"Succeeded","Token":"warm-up"}"#;
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
            conn.write_all(head.as_bytes())?;
            conn.write_all(body.as_bytes())
        });
        let Ok(base_url) = url::Url::parse(&format!("http://{addr}/api")) else { return };
        let spec = LoginSpec {
            base_url,
            app_key: SecretString::from("warm-up"),
            username: "warm-up".to_owned(),
            password: SecretString::from("warm-up"),
            pin: None,
            verification_code: None,
            expect: super::Expect::Succeeded,
            timeout: std::time::Duration::from_secs(2),
            max_steps: 1,
            max_body_bytes: 4096,
            validate: false,
            logout: false,
            retries: 0,
            tls: Arc::default(),
            proxy: None,
        };
        let outcome = self.login(&spec).await;
        tracing::debug!(result = %outcome.result, "warmed up");
        let _ = answer.join();
    }

    /// Like [`Prober::login`], also recording every request and answer (see [`Trace`]).
    pub async fn login_traced(&self, spec: &LoginSpec) -> (Outcome, Trace) {
        let (prober, spec) = (self.clone(), spec.clone());
        self.lanes
            .run(async move {
                let mut trace = Trace::new(Instant::now(), &secrets_of(&spec));
                let outcome = prober.perform(&spec, Some(&mut trace)).await;
                (outcome, trace)
            })
            .await
    }

    async fn perform(&self, spec: &LoginSpec, mut trace: Option<&mut Trace>) -> Outcome {
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + spec.timeout);
        let mut steps = Vec::new();
        let mut logout = None;
        let mut duration = None;
        let mut retries = 0;
        let mut hooks: Arc<RunHooks>;
        let mut first: FirstExchange;
        // Durations count from the first request, not from setting up the client: what the
        // server and the network take, not what authprobe spends preparing (issue 9's overhead).
        let mut sent: Option<Instant> = None;
        let verdict = loop {
            // With retries, one attempt at connecting gets its share of the time left, so that
            // a connection that cannot be made leaves time for the next attempt.
            let attempts_left = spec.retries - retries + 1;
            let connect_within = (spec.retries > 0)
                .then(|| deadline.saturating_duration_since(tokio::time::Instant::now()) / attempts_left);
            // Each attempt is timed afresh: the phases reported are those of the last attempt.
            hooks = Arc::new(RunHooks { connect_within, ..RunHooks::default() });
            first = FirstExchange::default();
            let client = match self.client(spec) {
                Ok(client) => client,
                Err(e) => {
                    let detail = format!("cannot set up the HTTP client: {e}");
                    break failure_verdict(Step::BaseAuthentication, ResultClass::TlsError, detail);
                }
            };
            let sent = *sent.get_or_insert_with(Instant::now);
            let (mut verdict, token) =
                hooks.scope(run_steps(&client, spec, deadline, &mut steps, &mut first, trace.as_deref_mut())).await;
            // Retried: a transport failure before any answer of the run, while time is left.
            // Anything the server said, credentials above all, is final.
            let unanswered = steps.iter().all(|s| s.http_status == 0);
            let transport = matches!(verdict.result, ResultClass::ConnectError | ResultClass::Timeout);
            if retries < spec.retries && unanswered && transport && tokio::time::Instant::now() < deadline {
                retries += 1;
                tracing::debug!(attempt = retries + 1, detail = %verdict.detail, "retrying the login");
                if let Some(t) = trace.as_deref_mut() {
                    t.note(&format!("Retry {retries} of {}: {}", spec.retries, verdict.detail));
                }
                continue;
            }
            if let Some(token) = token {
                if spec.validate {
                    let refused =
                        hooks.scope(validate(&client, spec, &token, deadline, &mut steps, trace.as_deref_mut())).await;
                    if let Some((reason, reason_text, detail)) = refused {
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
                duration = Some(sent.elapsed());
                if spec.logout {
                    logout = Some(hooks.scope(end_session(&client, spec, &token, deadline, trace)).await);
                }
            }
            break verdict;
        };
        let secrets = secrets_of(spec);
        Outcome {
            result: verdict.result,
            state: verdict.state,
            step: verdict.step,
            reason: verdict.reason,
            reason_text: sanitize(&verdict.reason_text, &secrets),
            http_status: steps.last().map_or(0, |s: &StepRecord| s.http_status),
            duration: duration.unwrap_or_else(|| sent.unwrap_or(start).elapsed()),
            steps,
            detail: sanitize(&verdict.detail, &secrets),
            logout: logout.map(|l| LogoutOutcome { detail: sanitize(&l.detail, &secrets), ..l }),
            retries,
            phases: phases(&hooks.clock, &first),
            tls: (spec.base_url.scheme() == "https").then(|| TlsFacts {
                version: first.tls_version,
                cert_not_after_unix: *hooks.chain.not_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            }),
        }
    }

    /// The HTTP client for a run of `spec`. No connection is ever reused across runs, so every
    /// run pays what a new user pays (DNS, connect, TLS). A login that can only make one request
    /// (no pin, no verification code, no validation or logout) takes its target's shared client,
    /// which keeps no connection at all; one that may make several gets a client of its own, so
    /// that its steps share a connection as a user's would. Either way the hooks find the run
    /// they time in [`RunHooks`].
    fn client(&self, spec: &LoginSpec) -> Result<reqwest::Client, String> {
        if !spec.single_request() {
            return self.build_client(spec, true);
        }
        let key = (Arc::as_ptr(&spec.tls) as usize, spec.proxy.clone());
        let mut shared = self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((tls, client)) = shared.get(&key) {
            // The same settings, not others that took the address of freed ones.
            if tls.upgrade().is_some_and(|t| Arc::ptr_eq(&t, &spec.tls)) {
                return Ok(client.clone());
            }
        }
        let client = self.build_client(spec, false)?;
        // Targets of a replaced configuration are gone: their clients go with them.
        shared.retain(|_, (tls, _)| tls.strong_count() > 0);
        shared.insert(key, (Arc::downgrade(&spec.tls), client.clone()));
        Ok(client)
    }

    fn build_client(&self, spec: &LoginSpec, keep_connections: bool) -> Result<reqwest::Client, String> {
        let tls = rustls::ClientConfig::clone(&*spec.tls.build(&self.roots)?);
        let mut builder = reqwest::Client::builder();
        if !keep_connections {
            builder = builder.pool_max_idle_per_host(0);
        }
        if let Some(proxy) = &spec.proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy.clone()).map_err(|e| format!("proxy_url: {e}"))?);
        }
        builder
            .tls_backend_preconfigured(tls)
            .tls_info(true)
            .dns_resolver(Arc::new(TimedResolver))
            .connector_layer(TimedConnectLayer)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .referer(false)
            .http1_only()
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// When the first request's answer arrived and its body ended, and the TLS version it came over.
#[derive(Debug, Default, Clone, Copy)]
struct FirstExchange {
    headers_at: Option<Instant>,
    body_at: Option<Instant>,
    tls_version: Option<&'static str>,
}

/// The phases of the first request, from the connection hooks and the first exchange.
fn phases(clock: &RunClock, first: &FirstExchange) -> Option<Phases> {
    let (resolve, connect, tls) = clock.connection_phases()?;
    let connected = clock.connected_at()?;
    let processing = first.headers_at.map(|h| h.saturating_duration_since(connected));
    let transfer = match (first.headers_at, first.body_at) {
        (Some(h), Some(b)) => Some(b.saturating_duration_since(h)),
        _ => None,
    };
    Some(Phases { resolve, connect, tls, processing, transfer })
}

fn secrets_of(spec: &LoginSpec) -> Vec<&SecretString> {
    let mut s = vec![&spec.app_key, &spec.password];
    s.extend(spec.pin.iter());
    s.extend(spec.verification_code.iter());
    s
}

fn failure_verdict(step: Step, result: ResultClass, detail: String) -> Verdict {
    Verdict { result, state: None, step, reason: Reason::None, reason_text: String::new(), detail }
}

async fn run_steps(
    client: &reqwest::Client,
    spec: &LoginSpec,
    deadline: tokio::time::Instant,
    records: &mut Vec<StepRecord>,
    first: &mut FirstExchange,
    mut trace: Option<&mut Trace>,
) -> (Verdict, Option<SecretString>) {
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
        let request = Request { method: Method::POST, url: &url, label: sending.as_str() };
        let timing = (number == 1).then_some(&mut *first);
        let received =
            exchange(client, request, headers, spec.max_body_bytes, deadline, timing, trace.as_deref_mut()).await;
        let (http_status, answer_state) = match &received {
            Ok(r) => (r.status, classify::answer_state(&r.answer())),
            Err(f) => (f.status.unwrap_or(0), None),
        };
        records.push(StepRecord { step: sending, http_status, state: answer_state, duration: started.elapsed() });
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
async fn validate(
    client: &reqwest::Client,
    spec: &LoginSpec,
    token: &SecretString,
    deadline: tokio::time::Instant,
    records: &mut Vec<StepRecord>,
    trace: Option<&mut Trace>,
) -> Option<(Reason, String, String)> {
    let started = Instant::now();
    let Ok(headers) = api_headers(spec, token) else {
        let detail = "token validation: the token cannot be sent as an HTTP header value".to_owned();
        return Some((Reason::None, String::new(), detail));
    };
    let url = spec.user_info_url();
    let request = Request { method: Method::GET, url: &url, label: Step::TokenValidation.as_str() };
    let received = exchange(client, request, headers, spec.max_body_bytes, deadline, None, trace).await;
    let http_status = match &received {
        Ok(r) => r.status,
        Err(f) => f.status.unwrap_or(0),
    };
    records.push(StepRecord { step: Step::TokenValidation, http_status, state: None, duration: started.elapsed() });
    match received {
        Ok(r) => classify::validation_failure(&r.answer()),
        Err(f) => Some((Reason::None, String::new(), format!("token validation: {}", f.detail))),
    }
}

/// Ends the session of `token` with `POST {base}/logout`.
async fn end_session(
    client: &reqwest::Client,
    spec: &LoginSpec,
    token: &SecretString,
    deadline: tokio::time::Instant,
    trace: Option<&mut Trace>,
) -> LogoutOutcome {
    let Ok(mut headers) = api_headers(spec, token) else {
        return LogoutOutcome { ok: false, http_status: 0, detail: "the token cannot be sent as a header".to_owned() };
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let url = spec.logout_url();
    let request = Request { method: Method::POST, url: &url, label: "Logout" };
    match exchange(client, request, headers, spec.max_body_bytes, deadline, None, trace).await {
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
fn api_headers(spec: &LoginSpec, token: &SecretString) -> Result<HeaderMap, &'static str> {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(HeaderName::from_static("et-app-key"), secret_header(&spec.app_key, "app_key")?);
    h.insert(AUTHORIZATION, bearer_header(token, "the token")?);
    Ok(h)
}

/// `Authorization: Bearer <token>`, sensitive.
fn bearer_header(token: &SecretString, name: &'static str) -> Result<HeaderValue, &'static str> {
    secret_header(&SecretString::from(format!("Bearer {}", token.expose_secret())), name)
}

/// A header value that never prints: [`HeaderValue::set_sensitive`].
fn secret_header(value: &SecretString, name: &'static str) -> Result<HeaderValue, &'static str> {
    let mut v = HeaderValue::from_str(value.expose_secret()).map_err(|_| name)?;
    v.set_sensitive(true);
    Ok(v)
}

/// Headers of one request. The credentials are repeated on every step, as the server expects.
fn request_headers(spec: &LoginSpec, step: Step, bearer: Option<&SecretString>) -> Result<HeaderMap, &'static str> {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
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
        Step::BaseAuthentication | Step::TokenValidation | Step::Other => {}
    }
    Ok(h)
}

/// One answer, read as far as the body cap allows.
struct Received {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    /// Wiped when dropped: login answers carry tokens.
    body: zeroize::Zeroizing<Vec<u8>>,
    complete: bool,
}

impl Received {
    fn answer(&self) -> Answer<'_> {
        Answer {
            status: self.status,
            content_type: self.content_type.as_deref(),
            location: self.location.as_deref(),
            body: &self.body,
            body_complete: self.complete,
        }
    }
}

/// A request that got no complete answer. `status` is set when the headers arrived.
struct Failure {
    class: ResultClass,
    detail: String,
    status: Option<u16>,
}

/// What to send: the method, the URL and what to call the request in details and traces.
struct Request<'a> {
    method: Method,
    url: &'a url::Url,
    label: &'a str,
}

async fn exchange(
    client: &reqwest::Client,
    request: Request<'_>,
    headers: HeaderMap,
    cap: usize,
    deadline: tokio::time::Instant,
    mut first: Option<&mut FirstExchange>,
    mut trace: Option<&mut Trace>,
) -> Result<Received, Failure> {
    if let Some(t) = trace.as_deref_mut() {
        t.request(request.label, request.method.as_str(), request.url, &headers);
    }
    let step = request.label;
    let failed = |failure: Failure, trace: Option<&mut Trace>| {
        if let Some(t) = trace {
            t.failure(&failure.detail);
        }
        Err(failure)
    };
    let timeout = |what: &str, status: Option<u16>| Failure {
        class: ResultClass::Timeout,
        detail: format!("deadline exceeded while {what} of the {step} request"),
        status,
    };
    let mut builder = client.request(request.method.clone(), request.url.clone()).headers(headers);
    if request.method == Method::POST {
        builder = builder.body(Vec::<u8>::new());
    }
    let send = builder.send();
    let mut response = match tokio::time::timeout_at(deadline, send).await {
        Err(_) => return failed(timeout("waiting for the response headers", None), trace),
        Ok(Err(e)) => return failed(transport_failure(e, "sending the request", None), trace),
        Ok(Ok(r)) => r,
    };
    if let Some(f) = first.as_deref_mut() {
        f.headers_at = Some(Instant::now());
        f.tls_version =
            response.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.version()).map(|v| match v {
                reqwest::tls::Version::TLS_1_0 => "TLS 1.0",
                reqwest::tls::Version::TLS_1_1 => "TLS 1.1",
                reqwest::tls::Version::TLS_1_2 => "TLS 1.2",
                reqwest::tls::Version::TLS_1_3 => "TLS 1.3",
                _ => "other",
            });
    }
    if let Some(t) = trace.as_deref_mut() {
        t.response_head(response.version(), response.status().as_u16(), response.headers());
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(|s| s.chars().take(200).collect::<String>())
    };
    let content_type = header(CONTENT_TYPE);
    let location = header(LOCATION);
    let status = response.status().as_u16();
    let mut body = zeroize::Zeroizing::new(Vec::new());
    let mut complete = true;
    if response.content_length().is_some_and(|n| n > cap as u64) {
        // Announced as too large: do not read a byte of it.
        complete = false;
    } else {
        loop {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => {
                    record_body(trace.as_deref_mut(), &body, false);
                    return failed(timeout("reading the body", Some(status)), trace);
                }
                Ok(Err(e)) => {
                    record_body(trace.as_deref_mut(), &body, false);
                    return failed(transport_failure(e, "reading the body", Some(status)), trace);
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    let room = cap - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        complete = false;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
    // Dropping an unfinished response closes its connection, abandoning the rest of the body.
    drop(response);
    if let Some(f) = first {
        f.body_at = Some(Instant::now());
    }
    record_body(trace, &body, complete);
    Ok(Received { status, content_type, location, body, complete })
}

fn record_body(trace: Option<&mut Trace>, body: &[u8], complete: bool) {
    if let Some(t) = trace {
        t.response_body(body, complete);
    }
}

/// Classifies a transport error as TLS or connection trouble and describes it without the URL.
fn transport_failure(err: reqwest::Error, while_doing: &str, status: Option<u16>) -> Failure {
    let err = err.without_url();
    let mut tls = None;
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(&err);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            // The layers around a TLS error add no information; the detail is its words alone.
            tls.get_or_insert(t);
        }
        let mut next = e.source();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips the wrapped error itself; look at it directly.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = next;
    }
    if let Some(t) = tls {
        return Failure { class: ResultClass::TlsError, detail: format!("TLS: {}", super::tls::describe(t)), status };
    }
    let class = if err.is_timeout() {
        // A connection attempt that ran out of its share of the deadline (see `retries`).
        ResultClass::Timeout
    } else {
        ResultClass::ConnectError
    };
    Failure { class, detail: format!("{while_doing}: {}", parts.join(": ")), status }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_credentials_marked_sensitive() {
        let spec = crate::protocol::classify::tests::spec();
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
        let mut spec = crate::protocol::classify::tests::spec();
        spec.password = "line\nbreak".into();
        assert_eq!(request_headers(&spec, Step::BaseAuthentication, None).unwrap_err(), "password");
    }
}
