//! Runs one login of any protocol family: a fresh connection per run, one deadline over
//! everything, capped bodies, no redirects, and no retries but of connections that failed
//! before any answer. The family's flow decides what to send; this module decides how.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use secrecy::SecretString;

use super::exchange::{phases, FirstExchange, Run};
use super::timing::{RunHooks, TimedConnectLayer, TimedResolver};
use super::{
    etna, failure_verdict, oauth2, sanitize, Finished, Flow, LoginSpec, LogoutOutcome, Outcome, ResultClass, Step,
    StepRecord, TlsFacts, TlsSettings, Trace,
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
            flow: Flow::Etna(etna::EtnaLogin {
                base_url,
                app_key: SecretString::from("warm-up"),
                username: "warm-up".to_owned(),
                password: SecretString::from("warm-up"),
                pin: None,
                verification_code: None,
                expect: etna::Expect::Succeeded,
                max_steps: 1,
                validate: false,
                logout: false,
            }),
            timeout: std::time::Duration::from_secs(2),
            max_body_bytes: 4096,
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
                let mut trace = Trace::new(Instant::now(), &spec.secrets());
                let outcome = prober.perform(&spec, Some(&mut trace)).await;
                (outcome, trace)
            })
            .await
    }

    async fn perform(&self, spec: &LoginSpec, mut trace: Option<&mut Trace>) -> Outcome {
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + spec.timeout);
        let mut steps = Vec::new();
        let mut retries = 0;
        let mut hooks: Arc<RunHooks>;
        let mut first: FirstExchange;
        // Durations count from the first request, not from setting up the client: what the
        // server and the network take, not what authprobe spends preparing (issue 9's overhead).
        let mut sent: Option<Instant> = None;
        let finished = loop {
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
                    break Finished::from(failure_verdict(Step::Other, ResultClass::TlsError, detail));
                }
            };
            let sent = *sent.get_or_insert_with(Instant::now);
            let before = steps.len();
            let mut run =
                Run::new(&client, deadline, spec.max_body_bytes, &mut steps, &mut first, trace.as_deref_mut());
            let finished = hooks.scope(self.flow(&mut run, spec)).await;
            // Retried: a transport failure before any answer of the run, while time is left.
            // Anything the server said, credentials above all, is final.
            let unanswered = steps[before..].iter().all(|s| s.http_status == 0);
            let transport = matches!(finished.verdict.result, ResultClass::ConnectError | ResultClass::Timeout);
            if retries < spec.retries && unanswered && transport && tokio::time::Instant::now() < deadline {
                retries += 1;
                tracing::debug!(attempt = retries + 1, detail = %finished.verdict.detail, "retrying the login");
                if let Some(t) = trace.as_deref_mut() {
                    t.note(&format!("Retry {retries} of {}: {}", spec.retries, finished.verdict.detail));
                }
                continue;
            }
            let login_done = finished.login_done.unwrap_or_else(Instant::now);
            break Finished { login_done: Some(login_done.max(sent)), ..finished };
        };
        let duration = match (finished.login_done, sent) {
            (Some(done), Some(sent)) => done.saturating_duration_since(sent),
            _ => start.elapsed(),
        };
        let mut secrets = spec.secrets();
        secrets.extend(finished.issued.iter());
        let verdict = finished.verdict;
        Outcome {
            result: verdict.result,
            state: verdict.state,
            step: verdict.step,
            reason: verdict.reason,
            reason_text: sanitize(&verdict.reason_text, &secrets),
            http_status: steps.last().map_or(0, |s: &StepRecord| s.http_status),
            duration,
            steps,
            detail: sanitize(&verdict.detail, &secrets),
            logout: finished.session_end.map(|l| LogoutOutcome { detail: sanitize(&l.detail, &secrets), ..l }),
            retries,
            phases: phases(&hooks.clock, &first),
            tls: (spec.endpoint().scheme() == "https").then(|| TlsFacts {
                version: first.tls_version,
                cert_not_after_unix: *hooks.chain.not_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            }),
            token_expires_in: finished.token_expires_in,
            discovery: finished.discovery,
        }
    }

    /// One attempt at the login by its family's flow.
    async fn flow(&self, run: &mut Run<'_>, spec: &LoginSpec) -> Finished {
        match &spec.flow {
            Flow::Etna(e) => etna::run(run, e).await,
            Flow::OAuth2(o) => oauth2::run(run, o).await,
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
