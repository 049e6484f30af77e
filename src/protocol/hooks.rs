//! Timing the phases of a run's first connection — name resolution, TCP connect, TLS handshake —
//! from inside the HTTP client, through the hooks it offers: its DNS resolver, a layer around
//! its connector, and rustls's session store, which rustls consults as it starts a handshake,
//! i.e. the moment the TCP connection is up. Only the first connection of a run is timed.
//!
//! The hooks belong to the client, which serves many runs at once (one client per target); each
//! finds the run it works for in a task-local, [`RunHooks`], set around the run's requests and
//! carried into the connection attempts they start.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

use super::tls::ServedChain;

/// What one run's connection hooks write to and obey.
#[derive(Debug, Default)]
pub(super) struct RunHooks {
    /// The moments of the run's first connection.
    pub clock: RunClock,
    /// What the run's server presented.
    pub chain: ServedChain,
    /// How long one connection attempt may take (its share of the deadline, with retries).
    pub connect_within: Option<Duration>,
}

tokio::task_local! {
    static RUN: Arc<RunHooks>;
}

impl RunHooks {
    /// Runs `work` with these hooks in reach of the connections it makes.
    pub async fn scope<F: Future>(self: &Arc<Self>, work: F) -> F::Output {
        RUN.scope(self.clone(), work).await
    }

    /// The hooks of the run being served, if any.
    pub fn current() -> Option<Arc<RunHooks>> {
        RUN.try_with(Arc::clone).ok()
    }

    fn mark(f: impl FnOnce(&mut Marks)) {
        if let Some(hooks) = Self::current() {
            hooks.clock.mark(f);
        }
    }
}

/// The moments of the first connection of a run, as the hooks saw them.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    connect_start: Option<Instant>,
    dns_start: Option<Instant>,
    dns_end: Option<Instant>,
    tls_start: Option<Instant>,
    connect_end: Option<Instant>,
}

/// The moments of one run's first connection, as its hooks marked them.
#[derive(Debug, Default)]
pub(super) struct RunClock {
    marks: Mutex<Marks>,
}

impl RunClock {
    fn mark(&self, f: impl FnOnce(&mut Marks)) {
        f(&mut self.marks.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// When the first connection was ready to carry a request.
    pub fn connected_at(&self) -> Option<Instant> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner).connect_end
    }

    /// Resolve, connect and TLS durations of the first connection; `None` if it was never made.
    pub fn connection_phases(&self) -> Option<(Duration, Duration, Duration)> {
        let m = *self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, end) = (m.connect_start?, m.connect_end?);
        let resolve = match (m.dns_start, m.dns_end) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        let tcp_from = m.dns_end.unwrap_or(start);
        let tcp_to = m.tls_start.unwrap_or(end);
        let tls = m.tls_start.map_or(Duration::ZERO, |t| end.saturating_duration_since(t));
        Some((resolve, tcp_to.saturating_duration_since(tcp_from), tls))
    }
}

/// The system resolver (through tokio), timed.
pub(super) struct TimedResolver;

impl Resolve for TimedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let started = Instant::now();
            RunHooks::mark(|m| {
                m.dns_start.get_or_insert(started);
            });
            let found = tokio::net::lookup_host((host.as_str(), 0)).await;
            let ended = Instant::now();
            RunHooks::mark(|m| {
                if m.dns_start == Some(started) {
                    m.dns_end = Some(ended);
                }
            });
            let addrs: Vec<SocketAddr> = found?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A connector layer that marks when the run's first connection starts and is ready, bounds
/// each attempt by the run's `connect_within`, and carries the run's hooks into the attempt (the
/// resolver and rustls's callbacks run inside it).
#[derive(Clone)]
pub(super) struct TimedConnectLayer;

impl<S> tower_layer::Layer<S> for TimedConnectLayer {
    type Service = TimedConnect<S>;

    fn layer(&self, inner: S) -> TimedConnect<S> {
        TimedConnect { inner }
    }
}

/// See [`TimedConnectLayer`].
#[derive(Clone)]
pub(super) struct TimedConnect<S> {
    inner: S,
}

impl<S, R> tower_service::Service<R> for TimedConnect<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: From<std::io::Error> + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let Some(hooks) = RunHooks::current() else {
            return Box::pin(self.inner.call(request));
        };
        let started = Instant::now();
        let first = {
            let mut m = hooks.clock.marks.lock().unwrap_or_else(PoisonError::into_inner);
            let first = m.connect_start.is_none();
            m.connect_start.get_or_insert(started);
            first
        };
        let connecting = RUN.sync_scope(hooks.clone(), || self.inner.call(request));
        Box::pin(async move {
            let within = hooks.connect_within;
            let connecting = RUN.scope(hooks.clone(), connecting);
            let result = match within {
                None => connecting.await,
                Some(limit) => match tokio::time::timeout(limit, connecting).await {
                    Ok(result) => result,
                    Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out").into()),
                },
            };
            if first && result.is_ok() {
                hooks.clock.mark(|m| m.connect_end = Some(Instant::now()));
            }
            result
        })
    }
}

/// rustls's session store, used only as a clock: rustls asks it for a session to resume as it
/// starts a handshake, which is when the TCP connection is up. It keeps nothing, so every
/// handshake is a full one, as a new user's is.
#[derive(Debug)]
pub(super) struct HandshakeStart;

impl ClientSessionStore for HandshakeStart {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {}

    fn take_tls13_ticket(&self, _: &ServerName<'_>) -> Option<Tls13ClientSessionValue> {
        let now = Instant::now();
        RunHooks::mark(|m| {
            m.tls_start.get_or_insert(now);
        });
        None
    }
}
