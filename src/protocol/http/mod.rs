//! The HTTP layer the HTTP families (ETNA, OAuth 2.0) make their requests through: one request
//! under the run's deadline, its answer read up to the body cap, transport failures classified,
//! the first exchange timed, and everything recorded in the trace when there is one. A family
//! that does not speak HTTP never touches it.

mod answer;
mod client;

use std::error::Error as StdError;
use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use std::borrow::Cow;

pub use answer::Answer;
pub(crate) use answer::{describe_body, get_number, get_str, json_object};
pub(crate) use client::Clients;
pub use client::USER_AGENT;

use super::hooks::RunHooks;
use super::outcome::Scheme;
use super::run::Attempt;
use super::{ResultClass, State, Step};

/// The longest `Location` header read; a longer one is taken as missing.
const MAX_LOCATION_BYTES: usize = 16 * 1024;

/// A `Location` as details show it: query values redacted (they carry codes and session ids),
/// at most 120 characters.
pub(crate) fn shown_location(location: Option<&str>) -> String {
    match location {
        None => "(no Location header)".to_owned(),
        Some(l) => super::trace::shown_url(l).chars().take(120).collect(),
    }
}

/// HTTP's status codes, as HTTP families report them.
pub const STATUS: Scheme = Scheme {
    name: "HTTP",
    label: "http_status",
    metric: "authprobe_probe_http_status_code",
    help: "Final HTTP status of the probe's last run; 0 if no answer arrived.",
    no_answer: 0,
};

/// One answer, read as far as the body cap allows.
pub(crate) struct Received {
    pub(crate) status: u16,
    /// When the request went to the network (see [`Attempt::exchange`]) and its answer ended.
    span: (Instant, Instant),
    /// When the answer's head arrived.
    headers_at: Instant,
    content_type: Option<String>,
    location: Option<String>,
    /// Wiped when dropped: login answers carry tokens.
    body: zeroize::Zeroizing<Vec<u8>>,
    complete: bool,
    /// The `Set-Cookie` headers, for a family that keeps cookies.
    pub(crate) set_cookies: Vec<SecretString>,
}

impl Received {
    pub(crate) fn answer(&self) -> Answer<'_> {
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
pub(crate) struct Failure {
    pub(crate) class: ResultClass,
    pub(crate) detail: String,
    pub(crate) status: Option<u16>,
    /// When the request went to the network and when it failed.
    span: (Instant, Instant),
    /// When the answer's head arrived, if it did.
    headers_at: Option<Instant>,
}

/// A form body (`application/x-www-form-urlencoded`): each field with whether its value is a
/// secret, so that traces show the field and never the value.
#[derive(Default, Clone)]
pub(crate) struct Form {
    fields: Vec<(Cow<'static, str>, SecretString, bool)>,
}

impl Form {
    /// Adds a field whose value may be shown.
    pub(crate) fn field(mut self, name: impl Into<Cow<'static, str>>, value: &str) -> Self {
        self.fields.push((name.into(), SecretString::from(value.to_owned()), false));
        self
    }

    /// Adds a field whose value is a secret.
    pub(crate) fn secret(mut self, name: impl Into<Cow<'static, str>>, value: &SecretString) -> Self {
        self.fields.push((name.into(), value.clone(), true));
        self
    }

    /// The encoded body (or a GET form's query). Wiped when dropped: it holds the secrets.
    pub(crate) fn encode(&self) -> zeroize::Zeroizing<String> {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value, _) in &self.fields {
            out.append_pair(name, value.expose_secret());
        }
        zeroize::Zeroizing::new(out.finish())
    }

    /// The body as a trace shows it: secret values replaced.
    fn shown(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value, secret) in &self.fields {
            out.append_pair(name, if *secret { "<redacted>" } else { value.expose_secret() });
        }
        out.finish().replace("%3Credacted%3E", "<redacted>")
    }
}

/// What to send: the method, the URL, the headers, the form body if any, and what to call the
/// request in details and traces.
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) url: &'a url::Url,
    pub(crate) label: &'a str,
    pub(crate) headers: HeaderMap,
    pub(crate) form: Option<Form>,
}

impl Attempt<'_> {
    /// Sends `request` over HTTP and reads its answer. What is timed is the network's and the
    /// server's part: from the moment the request goes to the network (for the attempt's first
    /// request, when its connection starts: resolving, connecting, the handshake) to the end of
    /// its answer, not what authprobe does to prepare the request or to read the answer. The
    /// first of these moments starts the run's clock; the first request is timed for the phases.
    pub(crate) async fn exchange(&mut self, request: Request<'_>) -> Result<Received, Failure> {
        if request.url.scheme() == "https" {
            self.hooks.tls_intended();
        }
        let client = match &self.http {
            Some(c) => c.clone(),
            None => {
                let made = self.prober.http_client(self.transport);
                match made {
                    Ok(c) => self.http.insert(c).clone(),
                    Err(e) => {
                        let detail = format!("cannot set up the HTTP client: {e}");
                        let now = Instant::now();
                        let span = (now, now);
                        return Err(Failure {
                            class: ResultClass::TlsError,
                            detail,
                            status: None,
                            span,
                            headers_at: None,
                        });
                    }
                }
            }
        };
        self.requests += 1;
        let first = self.requests == 1;
        let (deadline, cap, hooks) = (self.deadline, self.max_body_bytes, self.hooks.clone());
        let sending = Instant::now();
        let received = exchange(&client, request, cap, deadline, self.trace()).await;
        // The connection this request opened, if it opened the attempt's first: the network's part
        // starts there, not in hyper's checkout of a connection before it.
        let opened = hooks.clock.mark(|m| m.connect_start).filter(|at| *at >= sending);
        let started = opened.unwrap_or(sending);
        let received = match received {
            Ok(r) => Ok(Received { span: (started, r.span.1), ..r }),
            Err(f) => Err(Failure { span: (started, f.span.1), ..f }),
        };
        if first {
            let (headers_at, body_at) = match &received {
                Ok(r) => (Some(r.headers_at), Some(r.span.1)),
                Err(f) => (f.headers_at, None),
            };
            self.first_answer(headers_at, body_at);
        }
        received
    }

    /// How long the network and the server took over `received` (see [`Attempt::exchange`]).
    pub(crate) fn took(received: &Result<Received, Failure>) -> std::time::Duration {
        let (started, ended) = match received {
            Ok(r) => r.span,
            Err(f) => f.span,
        };
        ended.saturating_duration_since(started)
    }

    /// Records a request of `step` that got `received`, with its state, timed by the exchange.
    pub(crate) fn record_http(&mut self, step: Step, received: &Result<Received, Failure>, state: Option<State>) {
        let (status, span) = match received {
            Ok(r) => (r.status, r.span),
            Err(f) => (f.status.unwrap_or(0), f.span),
        };
        self.record_span(step, status, state, span);
    }
}

async fn exchange(
    client: &reqwest::Client,
    request: Request<'_>,
    cap: usize,
    deadline: tokio::time::Instant,
    mut trace: Option<&mut super::Trace>,
) -> Result<Received, Failure> {
    let Request { method, url, label: step, mut headers, form } = request;
    if form.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    }
    if let Some(t) = trace.as_deref_mut() {
        let line = format!("{} {}", method.as_str(), super::trace::shown_url(url.as_str()));
        t.request(step, &line, host_of(url), shown_request_headers(&headers));
        if let Some(form) = &form {
            t.request_body(&form.shown());
        }
    }
    let failed = |mut failure: Failure, headers_at: Option<Instant>, trace: Option<&mut super::Trace>| {
        if let Some(t) = trace {
            t.failure(&failure.detail);
        }
        failure.span.1 = Instant::now();
        failure.headers_at = headers_at;
        Err(failure)
    };
    let timeout = |what: &str, status: Option<u16>| {
        let now = Instant::now();
        let detail = format!("deadline exceeded while {what} of the {step} request");
        Failure { class: ResultClass::Timeout, detail, status, span: (now, now), headers_at: None }
    };
    let mut builder = client.request(method.clone(), url.clone()).headers(headers);
    if let Some(form) = &form {
        builder = builder.body(form.encode().as_bytes().to_vec());
    } else if method == Method::POST {
        builder = builder.body(Vec::<u8>::new());
    }
    let send = builder.send();
    let mut response = match tokio::time::timeout_at(deadline, send).await {
        Err(_) => return failed(timeout("waiting for the response headers", None), None, trace),
        Ok(Err(e)) => return failed(transport_failure(e, "sending the request", None), None, trace),
        Ok(Ok(r)) => r,
    };
    let headers_at = Instant::now();
    if let Some(version) = response.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.version()) {
        if let Some(hooks) = RunHooks::current() {
            hooks.tls_version(match version {
                reqwest::tls::Version::TLS_1_0 => "TLS 1.0",
                reqwest::tls::Version::TLS_1_1 => "TLS 1.1",
                reqwest::tls::Version::TLS_1_2 => "TLS 1.2",
                reqwest::tls::Version::TLS_1_3 => "TLS 1.3",
                _ => "other",
            });
        }
    }
    let status = response.status().as_u16();
    if let Some(t) = trace.as_deref_mut() {
        let phrase = response.status().canonical_reason().map_or(String::new(), |p| format!(" {p}"));
        t.response_head(&format!("{:?} {status}{phrase}", response.version()), response_headers(response.headers()));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(|s| s.chars().take(200).collect::<String>())
    };
    let content_type = header(CONTENT_TYPE);
    // Whole (within reason): an interactive login follows it, and its code is in its query.
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.len() <= MAX_LOCATION_BYTES)
        .map(str::to_owned);
    let set_cookies = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| SecretString::from(v.to_owned()))
        .collect();
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
                    return failed(timeout("reading the body", Some(status)), Some(headers_at), trace);
                }
                Ok(Err(e)) => {
                    record_body(trace.as_deref_mut(), &body, false);
                    return failed(transport_failure(e, "reading the body", Some(status)), Some(headers_at), trace);
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
    let body_at = Instant::now();
    record_body(trace, &body, complete);
    Ok(Received { status, content_type, location, body, complete, set_cookies, span: (body_at, body_at), headers_at })
}

fn record_body(trace: Option<&mut super::Trace>, body: &[u8], complete: bool) {
    if let Some(t) = trace {
        t.response_body(body, complete);
    }
}

/// `host[:port]` of a URL, as the `Host` header says it.
fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    url.port().map_or_else(|| host.to_owned(), |port| format!("{host}:{port}"))
}

/// A request's headers as a trace shows them: sensitive values (marked so by the family) are
/// never copied.
/// A `Cookie` header is shown by its cookies' names.
fn shown_request_headers(headers: &HeaderMap) -> Vec<(String, Option<Vec<u8>>)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if name == COOKIE {
                Some(super::trace::cookie_names(value.as_bytes()).into_bytes())
            } else {
                (!value.is_sensitive()).then(|| value.as_bytes().to_vec())
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// An answer's headers, for the trace (which decides what it shows).
fn response_headers(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> + '_ {
    headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes()))
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
    let now = Instant::now();
    if let Some(t) = tls {
        let detail = format!("TLS: {}", super::tls::describe(t));
        return Failure { class: ResultClass::TlsError, detail, status, span: (now, now), headers_at: None };
    }
    let class = if err.is_timeout() {
        // A connection attempt that ran out of its share of the deadline (see `retries`).
        ResultClass::Timeout
    } else {
        ResultClass::ConnectError
    };
    let detail = format!("{while_doing}: {}", parts.join(": "));
    Failure { class, detail, status, span: (now, now), headers_at: None }
}

/// `Authorization: Bearer <token>`, sensitive.
pub(crate) fn bearer_header(token: &SecretString, name: &'static str) -> Result<HeaderValue, &'static str> {
    secret_header(&SecretString::from(format!("Bearer {}", token.expose_secret())), name)
}

/// A header value that never prints: [`HeaderValue::set_sensitive`].
pub(crate) fn secret_header(value: &SecretString, name: &'static str) -> Result<HeaderValue, &'static str> {
    let mut v = HeaderValue::from_str(value.expose_secret()).map_err(|_| name)?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Content-Length: 0`, for a POST without a body.
pub(crate) fn empty_body(headers: &mut HeaderMap) {
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
}

/// A target that speaks plain HTTP at `url` (its `field`) has no use for `tls:`: a mistake,
/// reported as such.
pub fn no_tls_to_plain(v: &mut dyn super::Validator, field: &str, url: &url::Url) {
    if url.scheme() == "http" && v.tls_configured() {
        v.error("tls", format!("set for a target whose {field} is http, not https"));
    }
}

/// Whether `text` can be sent as an HTTP header value (configuration checks of header fields).
pub fn header_safe(text: &str) -> bool {
    HeaderValue::from_str(text).is_ok()
}
