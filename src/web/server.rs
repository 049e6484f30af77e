//! Serving the routes to clients we do not control: at most `max_connections` at once (further
//! ones wait in the listen backlog, as Prometheus's `--web.max-connections`), a deadline for
//! each request's headers and each TLS handshake (a slow or silent client is dropped, not
//! served forever), TLS and basic authentication from `--web.config.file`, and a graceful stop.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::auth::Authenticator;
use super::config::{WebConfig, WebConfigSource};

/// Default of `--web.max-connections` (Prometheus's).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default of `--web.read-header-timeout`.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest query string served; no endpoint needs more than a probe name and a flag.
pub const MAX_QUERY_BYTES: usize = 4096;

/// How the server treats connections.
pub struct ServeOptions {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and, with TLS, to complete its handshake).
    pub read_header_timeout: Duration,
    /// TLS, users and extra headers.
    pub web_config: Arc<WebConfigSource>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            web_config: Arc::new(WebConfigSource::none()),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in progress end.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let auth = Arc::new(Authenticator::default());
    let timeout = options.read_header_timeout;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be freed.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let config = options.web_config.current();
        let watcher = graceful.watcher();
        let (router, auth) = (router.clone(), auth.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = config.tls.clone();
            let service = hyper::service::service_fn(move |request| {
                handle(request, router.clone(), config.clone(), auth.clone())
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(timeout);
            let served = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(tcp), service)).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Checks what applies to every endpoint, then routes.
async fn handle(
    request: Request<Incoming>,
    mut router: Router,
    config: Arc<WebConfig>,
    auth: Arc<Authenticator>,
) -> Result<Response, Infallible> {
    let mut response = if request.uri().query().is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        text(StatusCode::BAD_REQUEST, format!("query string longer than {MAX_QUERY_BYTES} bytes\n"))
    } else if !auth.allows(&config, request.headers().get(header::AUTHORIZATION)).await {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n".to_owned());
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"authprobe\""));
        r
    } else {
        let response = tower_service::Service::call(&mut router, request.map(Body::new));
        match response.await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(response)
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}
