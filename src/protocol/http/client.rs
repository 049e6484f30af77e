//! The HTTP clients runs make their requests with: a fresh connection per run, no redirects,
//! no retries, no referer, HTTP/1.1, and the run's hooks in the resolver and the connector.
//!
//! No connection is ever reused across runs, so every run pays what a new user pays (DNS,
//! connect, TLS). A login that can only make one request takes its target's shared client,
//! which keeps no connection at all; one that may make several gets a client of its own, so that
//! its requests share a connection as a user's would.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::protocol::hooks::RunHooks;
use crate::protocol::TlsSettings;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("authprobe/", env!("CARGO_PKG_VERSION"));

/// A shared client's settings: the address of the target's TLS settings, and its proxy.
type SharedKey = (usize, Option<url::Url>);

/// The clients of single-request logins, one per target's TLS settings and proxy, each with the
/// settings it was built from (to tell them from others that took their address after they
/// were freed).
#[derive(Default)]
pub(crate) struct Clients {
    shared: Mutex<HashMap<SharedKey, (Weak<TlsSettings>, reqwest::Client)>>,
}

impl Clients {
    /// The client for a run with these settings: the target's shared one when `single`, else a
    /// new one that keeps its connection.
    pub fn get(
        &self,
        tls: &Arc<TlsSettings>,
        proxy: Option<&url::Url>,
        single: bool,
        roots: &Arc<rustls::RootCertStore>,
    ) -> Result<reqwest::Client, String> {
        if !single {
            return build(tls, proxy, true, roots);
        }
        let key = (Arc::as_ptr(tls) as usize, proxy.cloned());
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, client)) = shared.get(&key) {
            // The same settings, not others that took the address of freed ones.
            if kept.upgrade().is_some_and(|t| Arc::ptr_eq(&t, tls)) {
                return Ok(client.clone());
            }
        }
        let client = build(tls, proxy, false, roots)?;
        // Targets of a replaced configuration are gone: their clients go with them.
        shared.retain(|_, (kept, _)| kept.strong_count() > 0);
        shared.insert(key, (Arc::downgrade(tls), client.clone()));
        Ok(client)
    }
}

fn build(
    tls: &TlsSettings,
    proxy: Option<&url::Url>,
    keep_connections: bool,
    roots: &Arc<rustls::RootCertStore>,
) -> Result<reqwest::Client, String> {
    let tls = rustls::ClientConfig::clone(&*tls.build(roots)?);
    let mut builder = reqwest::Client::builder();
    if !keep_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    if let Some(proxy) = proxy {
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

/// The system resolver (through tokio), timed.
struct TimedResolver;

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
struct TimedConnectLayer;

impl<S> tower_layer::Layer<S> for TimedConnectLayer {
    type Service = TimedConnect<S>;

    fn layer(&self, inner: S) -> TimedConnect<S> {
        TimedConnect { inner }
    }
}

/// See [`TimedConnectLayer`].
#[derive(Clone)]
struct TimedConnect<S> {
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
        let first = hooks.clock.connection_starts(Instant::now());
        let connecting = hooks.sync_scope(|| self.inner.call(request));
        Box::pin(async move {
            let within = hooks.connect_within;
            let connecting = hooks.scope(connecting);
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
