//! Timing the phases of a run's first connection — name resolution, TCP connect, TLS handshake —
//! from inside the HTTP client, through the hooks it offers: its DNS resolver, a layer around
//! its connector, and rustls's session store, which rustls consults as it starts a handshake,
//! i.e. the moment the TCP connection is up. Only the first connection of a run is timed (later
//! steps normally reuse it).

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

/// The moments of the first connection of a run, as the hooks saw them.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    connect_start: Option<Instant>,
    dns_start: Option<Instant>,
    dns_end: Option<Instant>,
    tls_start: Option<Instant>,
    connect_end: Option<Instant>,
}

/// Shared by the hooks of one run's client.
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
pub(super) struct TimedResolver(pub Arc<RunClock>);

impl Resolve for TimedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let clock = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let started = Instant::now();
            clock.mark(|m| {
                m.dns_start.get_or_insert(started);
            });
            let found = tokio::net::lookup_host((host.as_str(), 0)).await;
            let ended = Instant::now();
            clock.mark(|m| {
                if m.dns_start == Some(started) {
                    m.dns_end = Some(ended);
                }
            });
            let addrs: Vec<SocketAddr> = found?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A connector layer that marks when the first connection starts and is ready.
#[derive(Clone)]
pub(super) struct TimedConnectLayer(pub Arc<RunClock>);

impl<S> tower_layer::Layer<S> for TimedConnectLayer {
    type Service = TimedConnect<S>;

    fn layer(&self, inner: S) -> TimedConnect<S> {
        TimedConnect { inner, clock: self.0.clone() }
    }
}

/// See [`TimedConnectLayer`].
#[derive(Clone)]
pub(super) struct TimedConnect<S> {
    inner: S,
    clock: Arc<RunClock>,
}

impl<S, R> tower_service::Service<R> for TimedConnect<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let started = Instant::now();
        let first = {
            let mut m = self.clock.marks.lock().unwrap_or_else(PoisonError::into_inner);
            let first = m.connect_start.is_none();
            m.connect_start.get_or_insert(started);
            first
        };
        let clock = self.clock.clone();
        let connecting = self.inner.call(request);
        Box::pin(async move {
            let result = connecting.await;
            if first && result.is_ok() {
                clock.mark(|m| m.connect_end = Some(Instant::now()));
            }
            result
        })
    }
}

/// rustls's session store, used only as a clock: rustls asks it for a session to resume as it
/// starts a handshake, which is when the TCP connection is up. It keeps nothing, so every
/// handshake is a full one, as a new user's is.
#[derive(Debug)]
pub(super) struct HandshakeStart(pub Arc<RunClock>);

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
        self.0.mark(|m| {
            m.tls_start.get_or_insert(now);
        });
        None
    }
}
