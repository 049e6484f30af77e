//! What a run's transport tells about itself as it goes: when its first connection started,
//! resolved, connected and began its TLS handshake, what the server's certificate chain said,
//! which TLS version was agreed, and how long one connection attempt may take.
//!
//! The transports that report here belong to many runs at once (one HTTP client per target, one
//! rustls configuration per target's TLS settings); each finds the run it works for in a
//! task-local, [`RunHooks`], set around the run's work and carried into the connection attempts
//! it starts. Only the first connection of a run is timed.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

use super::outcome::TlsFacts;

/// What one run's transport writes to and obeys.
#[derive(Debug, Default)]
pub(crate) struct RunHooks {
    /// The moments of the run's first connection.
    pub clock: RunClock,
    /// What its TLS sessions showed.
    tls: Mutex<TlsSeen>,
    /// How long one connection attempt may take (its share of the deadline, with retries).
    pub connect_within: Option<Duration>,
}

/// What a run's TLS sessions showed.
#[derive(Debug, Default, Clone, Copy)]
struct TlsSeen {
    /// The run set out to open TLS.
    intended: bool,
    version: Option<&'static str>,
    not_after: Option<i64>,
}

tokio::task_local! {
    static RUN: Arc<RunHooks>;
}

impl RunHooks {
    /// Hooks of a new attempt, each connection attempt bounded by `connect_within`.
    pub fn new(connect_within: Option<Duration>) -> Self {
        RunHooks { connect_within, ..RunHooks::default() }
    }

    /// Runs `work` with these hooks in reach of the connections it makes.
    pub async fn scope<F: Future>(self: &Arc<Self>, work: F) -> F::Output {
        RUN.scope(self.clone(), work).await
    }

    /// Runs `f` with these hooks in reach (for a connection attempt being started).
    pub fn sync_scope<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        RUN.sync_scope(self.clone(), f)
    }

    /// The hooks of the run being served, if any.
    pub fn current() -> Option<Arc<RunHooks>> {
        RUN.try_with(Arc::clone).ok()
    }

    /// Marks a moment of the current run's first connection.
    pub fn mark(f: impl FnOnce(&mut Marks)) {
        if let Some(hooks) = Self::current() {
            hooks.clock.mark(f);
        }
    }

    fn tls(&self, f: impl FnOnce(&mut TlsSeen)) {
        f(&mut self.tls.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Notes that the run opens TLS: its outcome then has TLS facts, even if the handshake
    /// never finished.
    pub fn tls_intended(&self) {
        self.tls(|t| t.intended = true);
    }

    /// Notes the TLS version a session agreed (the run's first that says).
    pub fn tls_version(&self, version: &'static str) {
        self.tls(|t| {
            t.intended = true;
            t.version.get_or_insert(version);
        });
    }

    /// Notes the earliest expiry of the certificate chain a server presented.
    pub fn tls_chain(&self, not_after: Option<i64>) {
        self.tls(|t| {
            t.intended = true;
            t.not_after = not_after;
        });
    }

    /// The run's TLS facts, if it opened TLS.
    pub fn tls_facts(&self) -> Option<TlsFacts> {
        let t = *self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        t.intended.then_some(TlsFacts { version: t.version, cert_not_after_unix: t.not_after })
    }
}

/// The moments of the first connection of a run, as the hooks saw them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Marks {
    pub connect_start: Option<Instant>,
    pub dns_start: Option<Instant>,
    pub dns_end: Option<Instant>,
    pub tls_start: Option<Instant>,
    pub connect_end: Option<Instant>,
}

/// The moments of one run's first connection, as its hooks marked them.
#[derive(Debug, Default)]
pub(crate) struct RunClock {
    marks: Mutex<Marks>,
}

impl RunClock {
    /// Marks a moment.
    pub fn mark<R>(&self, f: impl FnOnce(&mut Marks) -> R) -> R {
        f(&mut self.marks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Marks that a connection of the run starts at `at`; whether it is the run's first (the
    /// one timed).
    pub fn connection_starts(&self, at: Instant) -> bool {
        self.mark(|m| {
            let first = m.connect_start.is_none();
            m.connect_start.get_or_insert(at);
            first
        })
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

/// rustls's session store, used only as a clock: rustls asks it for a session to resume as it
/// starts a handshake, which is when the TCP connection is up. It keeps nothing, so every
/// handshake is a full one, as a new user's is.
#[derive(Debug)]
pub(crate) struct HandshakeStart;

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
