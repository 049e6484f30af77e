//! The run core: one login of any family, whatever its transport. One deadline over everything,
//! retries only of attempts that failed before any answer, the transport's hooks in scope, the
//! clock started by the first request, the debug trace, and the [`Outcome`] the family's
//! verdict becomes (its texts sanitised, every secret and issued token redacted). The family's
//! flow decides what to send; its transport ([`super::http`] for HTTP families) how.

use std::sync::Arc;
use std::time::Instant;

use super::hooks::RunHooks;
use super::outcome::{LogoutOutcome, Outcome, Phases, StepRecord, Summary, Verdict};
use super::{http, sanitize, LoginSpec, ResultClass, State, Step, TlsSettings, Trace};

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
/// the threads, the system's CA certificates and the HTTP clients runs start from.
#[derive(Clone)]
pub struct Prober {
    /// The system's CA certificates, for targets without a CA file of their own.
    roots: Arc<rustls::RootCertStore>,
    /// The HTTP families' clients.
    http: Arc<http::Clients>,
    lanes: &'static crate::lanes::Lanes,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

/// What one attempt at a login works with, whatever its transport: its deadline and answer cap,
/// where its requests are recorded and traced, and the hooks its connections report to. A
/// family's flow makes every request through it ([`Attempt::exchange`] for HTTP).
pub struct Attempt<'a> {
    /// The run's deadline.
    pub deadline: tokio::time::Instant,
    /// Answers longer than this are abandoned.
    pub max_body_bytes: usize,
    /// How to reach the server.
    pub(crate) transport: Transport<'a>,
    pub(crate) prober: &'a Prober,
    pub(crate) hooks: Arc<RunHooks>,
    gathered: &'a mut Gathered,
    trace: Option<&'a mut Trace>,
    /// The HTTP client of this attempt, made at its first HTTP request.
    pub(crate) http: Option<reqwest::Client>,
    /// Requests sent in this attempt.
    pub(crate) requests: u32,
}

/// What a run gathers over its attempts.
#[derive(Default)]
pub(crate) struct Gathered {
    /// Every request made.
    steps: Vec<StepRecord>,
    /// When the run's first request went out: where its duration starts.
    pub(crate) sent: Option<Instant>,
    /// When the answer to the last attempt's first request began and ended.
    first: (Option<Instant>, Option<Instant>),
    /// When the last answer ended.
    last_end: Option<Instant>,
}

/// How an attempt reaches its server: the target's TLS settings and proxy, and whether the
/// login makes one request at most.
#[derive(Clone, Copy)]
pub(crate) struct Transport<'a> {
    pub tls: &'a Arc<TlsSettings>,
    pub proxy: Option<&'a url::Url>,
    pub single_request: bool,
}

impl<'a> Transport<'a> {
    fn of(spec: &'a LoginSpec) -> Self {
        Transport { tls: &spec.tls, proxy: spec.proxy.as_deref(), single_request: spec.login.single_request() }
    }
}

impl Attempt<'_> {
    /// Records a request of `step` that started at `started`, got status `status` (0 for no
    /// answer) and state `state`.
    pub fn record(&mut self, step: Step, status: u16, state: Option<State>, started: Instant) {
        self.record_span(step, status, state, (started, Instant::now()));
    }

    /// Records a request of `step` that went to the network at `span.0` and whose answer (or
    /// failure) ended at `span.1`.
    pub fn record_span(&mut self, step: Step, status: u16, state: Option<State>, span: (Instant, Instant)) {
        let duration = span.1.saturating_duration_since(span.0);
        self.gathered.steps.push(StepRecord { step, status, state, duration });
        self.gathered.sent.get_or_insert(span.0);
        self.gathered.last_end = Some(span.1);
    }

    /// The step of the last request recorded so far.
    pub fn last_step(&self) -> Option<Step> {
        self.gathered.steps.last().map(|s| s.step)
    }

    /// When the login's last answer so far ended: where a family that goes on after the login
    /// (ending its session) says the login's duration ends.
    pub fn answered_until(&self) -> Option<Instant> {
        self.gathered.last_end
    }

    /// Adds a remark to the trace, if there is one.
    pub fn note(&mut self, text: &str) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.note(text);
        }
    }

    /// Adds a value the run learnt or made (a state, a code, a cookie) to those its trace
    /// redacts. The family also returns it in [`Finished::issued`](super::outcome::Finished)
    /// for every other text.
    pub(crate) fn secret(&mut self, value: &secrecy::SecretString) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.add_secret(value);
        }
    }

    /// The trace, when the run records one.
    pub fn trace(&mut self) -> Option<&mut Trace> {
        self.trace.as_deref_mut()
    }

    /// Notes that a request is about to be made, and returns when: where its step's duration
    /// starts, and for the run's first, the run's (not at what authprobe did before it).
    pub fn starting(&mut self) -> Instant {
        let now = Instant::now();
        self.gathered.sent.get_or_insert(now);
        now
    }

    /// Whether the answer to the attempt's first request has begun (TLS started after it, as
    /// StartTLS is, is not part of the connection).
    pub(crate) fn answered_yet(&self) -> bool {
        self.gathered.first.0.is_some()
    }

    /// Notes when the answer to the attempt's first request began and ended (the processing and
    /// transfer phases).
    pub fn first_answer(&mut self, began: Option<Instant>, ended: Option<Instant>) {
        self.gathered.first = (began, ended);
    }
}

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
        Ok(Prober { roots: Arc::new(roots), http: Arc::default(), lanes })
    }

    /// Performs one login as described by `spec` and classifies it. Never panics on server
    /// input and always returns within `spec.timeout` (plus scheduling noise).
    pub async fn login(&self, spec: &LoginSpec) -> Outcome {
        if crate::lanes::Lanes::on_lane() {
            // Where the scheduler runs it: no hop, and no copy of the spec to make one.
            return self.perform(spec, None, None).await;
        }
        let (prober, spec) = (self.clone(), spec.clone());
        self.lanes.run(async move { prober.perform(&spec, None, None).await }).await
    }

    /// What a login does while the lockout guard holds its credentials back
    /// ([`Login::run_held`](super::FamilyLogin::run_held)), for a login whose credentials were
    /// last refused as `held` says: when the server answers, the outcome is the held one (the
    /// credentials are not known to work), with what the server answered in its detail;
    /// otherwise the failure to reach it. Nothing in it counts for the guard.
    pub async fn login_held(&self, spec: &LoginSpec, held: Summary, traced: bool) -> (Outcome, Option<Trace>) {
        let (prober, spec) = (self.clone(), spec.clone());
        self.lanes
            .run(async move {
                let mut trace = traced.then(|| Trace::new(Instant::now(), &spec.secrets()));
                let outcome = prober.perform(&spec, trace.as_mut(), Some(held)).await;
                (outcome, trace)
            })
            .await
    }

    /// Like [`Prober::login`], also recording every request and answer (see [`Trace`]).
    pub async fn login_traced(&self, spec: &LoginSpec) -> (Outcome, Trace) {
        if crate::lanes::Lanes::on_lane() {
            // The scheduler traces every run while failures keep traces: no hop, no copy here
            // either.
            let mut trace = Trace::new(Instant::now(), &spec.secrets());
            let outcome = self.perform(spec, Some(&mut trace), None).await;
            return (outcome, trace);
        }
        let (prober, spec) = (self.clone(), spec.clone());
        self.lanes
            .run(async move {
                let mut trace = Trace::new(Instant::now(), &spec.secrets());
                let outcome = prober.perform(&spec, Some(&mut trace), None).await;
                (outcome, trace)
            })
            .await
    }

    /// Runs the HTTP machinery once against a loopback socket of its own that answers a canned
    /// JSON success, before anything is timed. A one-shot process (`authprobe probe`) would
    /// otherwise run its first login on a cold thread through code and data nothing has touched
    /// yet, and count that against the server (about 0.1 ms on the machine of docs/benchmarks.md).
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
        let Ok(url) = url::Url::parse(&format!("http://{addr}/warm-up")) else { return };
        let prober = self.clone();
        let status = self
            .lanes
            .run(async move {
                let tls = Arc::default();
                let transport = Transport { tls: &tls, proxy: None, single_request: true };
                let mut gathered = Gathered::default();
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
                let mut attempt = prober.attempt(transport, deadline, 4096, Arc::default(), &mut gathered, None);
                let request = http::Request {
                    method: reqwest::Method::POST,
                    url: &url,
                    label: "warm-up",
                    headers: reqwest::header::HeaderMap::new(),
                    form: None,
                };
                let received = attempt.exchange(request).await;
                received.map(|r| (r.status, http::json_object(&r.answer()).is_some()))
            })
            .await;
        tracing::debug!(ok = status.is_ok(), "warmed up");
        let _ = answer.join();
    }

    /// The TLS configuration of `tls`, made once (see [`TlsSettings`]).
    pub(crate) fn tls_config(&self, tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, String> {
        tls.build(&self.roots)
    }

    /// The HTTP client for an attempt that reaches its server so (see [`http`]).
    pub(crate) fn http_client(&self, transport: Transport<'_>) -> Result<reqwest::Client, String> {
        self.http.get(transport.tls, transport.proxy, transport.single_request, &self.roots)
    }

    /// An attempt that reaches its server so, within `deadline`, its connections reporting to
    /// `hooks`.
    pub(crate) fn attempt<'a>(
        &'a self,
        transport: Transport<'a>,
        deadline: tokio::time::Instant,
        max_body_bytes: usize,
        hooks: Arc<RunHooks>,
        gathered: &'a mut Gathered,
        trace: Option<&'a mut Trace>,
    ) -> Attempt<'a> {
        Attempt { deadline, max_body_bytes, transport, prober: self, hooks, gathered, trace, http: None, requests: 0 }
    }

    async fn perform(&self, spec: &LoginSpec, mut trace: Option<&mut Trace>, held: Option<Summary>) -> Outcome {
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + spec.timeout);
        let mut gathered = Gathered::default();
        let mut retries = 0;
        let mut hooks: Arc<RunHooks>;
        let finished = loop {
            // With retries, one attempt at connecting gets its share of the time left, so that
            // a connection that cannot be made leaves time for the next attempt.
            let attempts_left = spec.retries - retries + 1;
            let connect_within = (spec.retries > 0)
                .then(|| deadline.saturating_duration_since(tokio::time::Instant::now()) / attempts_left);
            // Each attempt is timed afresh: the phases reported are those of the last attempt.
            hooks = Arc::new(RunHooks::new(connect_within));
            gathered.first = (None, None);
            let before = gathered.steps.len();
            let mut attempt = self.attempt(
                Transport::of(spec),
                deadline,
                spec.max_body_bytes,
                hooks.clone(),
                &mut gathered,
                trace.as_deref_mut(),
            );
            let finished = match held {
                None => hooks.scope(spec.login.run(&mut attempt)).await,
                Some(_) => hooks.scope(spec.login.run_held(&mut attempt)).await,
            };
            // Retried: a transport failure before any answer of the run, while time is left.
            // Anything the server said, credentials above all, is final.
            let scheme = spec.login.scheme();
            let unanswered = gathered.steps[before..].iter().all(|s| !scheme.answered(s.status));
            let transport = matches!(finished.verdict.result, ResultClass::ConnectError | ResultClass::Timeout);
            if retries < spec.retries && unanswered && transport && tokio::time::Instant::now() < deadline {
                retries += 1;
                tracing::debug!(attempt = retries + 1, detail = %finished.verdict.detail, "retrying the login");
                if let Some(t) = trace.as_deref_mut() {
                    t.note(&format!("Retry {retries} of {}: {}", spec.retries, finished.verdict.detail));
                }
                continue;
            }
            break finished;
        };
        let Gathered { steps, sent, first, last_end } = gathered;
        // Durations count from the first request, not from preparing it (issue 9's overhead), and
        // end with the login's last answer, not when authprobe has read it.
        let duration = match sent {
            Some(sent) => finished.login_done.or(last_end).unwrap_or_else(Instant::now).saturating_duration_since(sent),
            None => start.elapsed(),
        };
        let mut secrets = spec.secrets();
        secrets.extend(finished.issued.iter());
        let Verdict { result, state, step, reason, reason_text, detail, lockout } = finished.verdict;
        // The status of the step the run ended at (not of a session's end after it), else the last.
        let at = steps.iter().rev().find(|s: &&StepRecord| s.step == step).or(steps.last());
        let status = at.map_or(spec.login.scheme().no_answer, |s| s.status);
        let (summary, detail, lockout) = match held {
            None => (Summary { result, state, step, reason, status }, detail, lockout),
            Some(held) if result == ResultClass::Success => {
                let detail = format!(
                    "credentials held back by the lockout guard after {} ({}); meanwhile {detail}",
                    held.result, held.reason
                );
                (held, detail, super::Lockout::Neutral)
            }
            Some(_) => (Summary { result, state, step, reason, status }, detail, super::Lockout::Neutral),
        };
        Outcome {
            summary,
            scheme: spec.login.scheme(),
            reason_text: sanitize(&reason_text, &secrets),
            duration,
            steps,
            detail: sanitize(&detail, &secrets),
            logout: finished.session_end.map(|l| LogoutOutcome { detail: sanitize(&l.detail, &secrets), ..l }),
            retries,
            phases: phases(&hooks, first),
            tls: hooks.tls_facts(),
            token_expires_in: finished.token_expires_in,
            discovery: finished.discovery,
            lockout,
            account: finished.account,
        }
    }
}

/// The phases of the first request, from the connection hooks and the first answer's marks.
fn phases(hooks: &RunHooks, (began, ended): (Option<Instant>, Option<Instant>)) -> Option<Phases> {
    let (resolve, connect, tls) = hooks.clock.connection_phases()?;
    let connected = hooks.clock.connected_at()?;
    let processing = began.map(|h| h.saturating_duration_since(connected));
    let transfer = match (began, ended) {
        (Some(h), Some(b)) => Some(b.saturating_duration_since(h)),
        _ => None,
    };
    Some(Phases { resolve, connect, tls, processing, transfer })
}
