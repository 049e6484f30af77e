//! The HTTP exchange every protocol family makes: one request under the run's deadline, its
//! answer read up to the body cap, transport failures classified, the first exchange timed, and
//! everything recorded in the trace when there is one.

use std::error::Error as StdError;
use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use super::answer::Answer;
use super::timing::RunClock;
use super::{Phases, ResultClass, State, Step, StepRecord, Trace};

/// When the first request's answer arrived and its body ended, and the TLS version it came over.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FirstExchange {
    headers_at: Option<Instant>,
    body_at: Option<Instant>,
    pub(crate) tls_version: Option<&'static str>,
}

/// The phases of the first request, from the connection hooks and the first exchange.
pub(crate) fn phases(clock: &RunClock, first: &FirstExchange) -> Option<Phases> {
    let (resolve, connect, tls) = clock.connection_phases()?;
    let connected = clock.connected_at()?;
    let processing = first.headers_at.map(|h| h.saturating_duration_since(connected));
    let transfer = match (first.headers_at, first.body_at) {
        (Some(h), Some(b)) => Some(b.saturating_duration_since(h)),
        _ => None,
    };
    Some(Phases { resolve, connect, tls, processing, transfer })
}

/// What one attempt at a login works with: its client, its deadline, where its requests are
/// recorded. A protocol family's flow makes every request through it.
pub(crate) struct Run<'a> {
    pub(crate) client: &'a reqwest::Client,
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) max_body_bytes: usize,
    /// Every request made, in order.
    pub(crate) records: &'a mut Vec<StepRecord>,
    pub(crate) first: &'a mut FirstExchange,
    pub(crate) trace: Option<&'a mut Trace>,
    /// Requests sent so far in this attempt.
    sent: u32,
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        client: &'a reqwest::Client,
        deadline: tokio::time::Instant,
        max_body_bytes: usize,
        records: &'a mut Vec<StepRecord>,
        first: &'a mut FirstExchange,
        trace: Option<&'a mut Trace>,
    ) -> Self {
        Run { client, deadline, max_body_bytes, records, first, trace, sent: 0 }
    }

    /// Sends `request` and reads its answer. The first request of the attempt is timed for the
    /// phases.
    pub(crate) async fn exchange(&mut self, request: Request<'_>) -> Result<Received, Failure> {
        self.sent += 1;
        let first = (self.sent == 1).then_some(&mut *self.first);
        exchange(self.client, request, self.max_body_bytes, self.deadline, first, self.trace.as_deref_mut()).await
    }

    /// Records a request of `step` that started at `started` and got `received`.
    pub(crate) fn record(
        &mut self,
        step: Step,
        received: &Result<Received, Failure>,
        state: Option<State>,
        started: Instant,
    ) {
        let http_status = match received {
            Ok(r) => r.status,
            Err(f) => f.status.unwrap_or(0),
        };
        self.records.push(StepRecord { step, http_status, state, duration: started.elapsed() });
    }

    /// Adds a remark to the trace, if there is one.
    pub(crate) fn note(&mut self, text: &str) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.note(text);
        }
    }
}

/// One answer, read as far as the body cap allows.
pub(crate) struct Received {
    pub(crate) status: u16,
    content_type: Option<String>,
    location: Option<String>,
    /// Wiped when dropped: login answers carry tokens.
    body: zeroize::Zeroizing<Vec<u8>>,
    complete: bool,
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
}

/// A form body (`application/x-www-form-urlencoded`): each field with whether its value is a
/// secret, so that traces show the field and never the value.
#[derive(Default)]
pub(crate) struct Form {
    fields: Vec<(&'static str, SecretString, bool)>,
}

impl Form {
    /// Adds a field whose value may be shown.
    pub(crate) fn field(mut self, name: &'static str, value: &str) -> Self {
        self.fields.push((name, SecretString::from(value.to_owned()), false));
        self
    }

    /// Adds a field whose value is a secret.
    pub(crate) fn secret(mut self, name: &'static str, value: &SecretString) -> Self {
        self.fields.push((name, value.clone(), true));
        self
    }

    /// The encoded body. Wiped when dropped: it holds the secrets.
    fn encode(&self) -> zeroize::Zeroizing<String> {
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

async fn exchange(
    client: &reqwest::Client,
    request: Request<'_>,
    cap: usize,
    deadline: tokio::time::Instant,
    mut first: Option<&mut FirstExchange>,
    mut trace: Option<&mut Trace>,
) -> Result<Received, Failure> {
    let Request { method, url, label: step, mut headers, form } = request;
    if form.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    }
    if let Some(t) = trace.as_deref_mut() {
        t.request(step, method.as_str(), url, &headers);
        if let Some(form) = &form {
            t.request_body(&form.shown());
        }
    }
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
    let mut builder = client.request(method.clone(), url.clone()).headers(headers);
    if let Some(form) = &form {
        builder = builder.body(form.encode().as_bytes().to_vec());
    } else if method == Method::POST {
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
