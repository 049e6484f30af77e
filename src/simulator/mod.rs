//! A faithful simulator of the ETNA Trader `/token` endpoint, for tests, benchmarks and the demo.
//!
//! It follows ../shared/seeds and ../shared/PROTOCOL.md: the app-key check with its `{"error": …}`
//! body, `Invalid credentials`, the SecutityPin and VerificationCode steps continued with interim
//! tokens that remember which steps were passed, `Corrupted ticket`, wrong pin or code, expired
//! passwords, uninitialised PINs, rate limiting, and a unique final token per login. Per-account
//! [`Fault`]s produce every misbehaviour the prober must classify. It counts and records the
//! requests each account received so tests can assert what the prober sent. With `oauth2:` it
//! is also an OAuth 2.0 / OpenID Connect authorization server ([`oauth2`]), and with `ldap:` an
//! LDAP directory modelled on Active Directory ([`ldap`]); the accounts are the users of both.

mod accounts;
mod block;
pub mod certificate;
pub mod ldap;
mod listener;
pub mod oauth2;
mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use accounts::{Account, Fault, RateLimit, Settings, SimulatorFile, WrongSecret};
pub use block::{SimulatorBlock, SimulatorSpec, SimulatorTls, TlsFiles, DEFAULT_LISTEN};
pub use ldap::{LdapAccountStats, LdapSettings};

/// Why [`Simulator::start`] could not serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The HTTP listener's address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An address of the LDAP directory cannot be served.
    #[error("the LDAP directory cannot listen on {addr}: {source}")]
    Ldap {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Requests one account received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AccountStats {
    /// Every request naming this account.
    pub requests: u64,
    /// First-step requests (no interim token).
    pub logins: u64,
    /// Final tokens issued.
    pub tokens_issued: u64,
    /// Tokens accepted by `GET {base}/v1.0/users/@me/info`.
    pub validations: u64,
    /// Sessions ended by `POST {base}/logout`.
    pub logouts: u64,
}

/// One request as the simulator received it, for tests. Holds secrets: never printed by the
/// simulator itself.
#[derive(Clone, Default)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The client's address: a new port means a new connection.
    pub peer: Option<SocketAddr>,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("header_names", &names)
            .field("peer", &self.peer)
            .finish()
    }
}

/// A running simulator. Stops when [`Simulator::shutdown`] is called or when dropped.
pub struct Simulator {
    addr: SocketAddr,
    scheme: &'static str,
    base_path: String,
    state: Arc<server::Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The LDAP directory's listeners, when [`Simulator::start`] serves one.
    ldap: Option<ldap::Listening>,
}

impl Simulator {
    /// Binds `listen` and serves `settings` in the background; with `settings.ldap`, its LDAP
    /// directory too, on the addresses it names.
    pub async fn start(settings: Settings, listen: SocketAddr) -> Result<Simulator, StartError> {
        let listener = TcpListener::bind(listen).await.map_err(|source| StartError::Listen { addr: listen, source })?;
        let mut sim = Self::serve(settings, listener);
        if let Some(directory) = sim.state.ldap.clone() {
            let listening =
                ldap::listen(directory).await.map_err(|(addr, source)| StartError::Ldap { addr, source })?;
            sim.ldap = Some(listening);
        }
        Ok(sim)
    }

    /// Serves `settings` on an already bound listener (HTTP only: an LDAP directory is served
    /// by [`Simulator::start`]).
    pub fn serve(settings: Settings, listener: TcpListener) -> Simulator {
        Self::serve_on(settings, listener, None)
    }

    /// Serves `settings` over HTTPS with `tls` (certificate and key) on a bound listener.
    pub fn serve_tls(settings: Settings, listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> Simulator {
        Self::serve_on(settings, listener, Some(tls))
    }

    /// Serves the same world (accounts, tokens, counters, rate limits) over HTTPS with `tls` on
    /// another bound listener, as one server answering on two ports would.
    pub fn serve_tls_too(&self, listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> Simulator {
        Self::serve_state(self.state.clone(), self.base_path.clone(), listener, Some(tls))
    }

    fn serve_on(settings: Settings, tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Simulator {
        let base_path = settings.base_path.clone();
        Self::serve_state(Arc::new(server::Shared::new(settings)), base_path, tcp, tls)
    }

    fn serve_state(
        state: Arc<server::Shared>,
        base_path: String,
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Simulator {
        let addr = tcp.local_addr().expect("bound listener has an address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = server::router(state.clone(), scheme).into_make_service_with_connect_info::<listener::Peer>();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            let served = match tls {
                None => axum::serve(listener::PlainListener(tcp), app).with_graceful_shutdown(stopped).await,
                Some(config) => {
                    axum::serve(listener::TlsListener::new(tcp, config), app).with_graceful_shutdown(stopped).await
                }
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Simulator { addr, scheme, base_path, state, stop: Some(stop), task: Some(task), ldap: None }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL to configure targets with, e.g. `http://127.0.0.1:18080/api`
    /// (`https://` when serving TLS).
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.addr, self.base_path)
    }

    /// Counters of one account (zero for an unknown one).
    pub fn stats(&self, username: &str) -> AccountStats {
        self.state.stats(username)
    }

    /// Counters of every account that received a request.
    pub fn all_stats(&self) -> HashMap<String, AccountStats> {
        self.state.all_stats()
    }

    /// The simulator's own time over each well-behaved `/token` answer to `username`, at the
    /// socket: from the first byte of the request read to the last byte of the answer written
    /// (the last 10,000, oldest first; also `GET /_sim/server-seconds/USERNAME`).
    pub fn server_seconds(&self, username: &str) -> Vec<f64> {
        self.state.server_seconds(username)
    }

    /// The last requests (at most 100) naming `username`, oldest first.
    pub fn requests(&self, username: &str) -> Vec<RecordedRequest> {
        self.state.requests(username)
    }

    /// The final tokens issued to `username` (at most the last 100), oldest first.
    pub fn issued_tokens(&self, username: &str) -> Vec<String> {
        self.state.issued_tokens(username)
    }

    /// The final tokens `GET {base}/v1.0/users/@me/info` accepted for this account, oldest first
    /// (the last 100).
    pub fn validated_tokens(&self, username: &str) -> Vec<String> {
        self.state.validated_tokens(username)
    }

    /// The tokens whose session `POST {base}/logout` ended for this account, oldest first (the
    /// last 100).
    pub fn revoked_tokens(&self, username: &str) -> Vec<String> {
        self.state.revoked_tokens(username)
    }

    /// Changes an account while serving (e.g. break it, then fix it). Returns false if unknown.
    pub fn update_account(&self, username: &str, change: impl FnOnce(&mut Account)) -> bool {
        self.state.update_account(username, change)
    }

    /// The OAuth 2.0 issuer, e.g. `http://127.0.0.1:18080/oauth2`, when the OAuth 2.0 server is on.
    pub fn issuer(&self) -> Option<String> {
        let o = self.state.oauth2.as_ref()?;
        Some(format!("{}://{}{}", self.scheme, self.addr, o.path()))
    }

    /// Requests the OAuth 2.0 server received (zeros when it is off).
    pub fn oauth2_stats(&self) -> oauth2::OAuth2Stats {
        self.state.oauth2.as_ref().map(|o| o.stats()).unwrap_or_default()
    }

    /// Every token the OAuth 2.0 server issued and every client assertion it received (the last
    /// thousand), for tests that search outputs for them.
    pub fn oauth2_secrets_seen(&self) -> Vec<String> {
        self.state.oauth2.as_ref().map(|o| o.secrets_seen()).unwrap_or_default()
    }

    /// Signs new tokens with a new key, published beside the old ones.
    pub fn rotate_oauth2_key(&self) {
        if let Some(o) = &self.state.oauth2 {
            o.rotate_key();
        }
    }

    /// Sets the OAuth 2.0 server's server-wide faults.
    pub fn set_oauth2_faults(&self, faults: oauth2::ServerFaults) {
        if let Some(o) = &self.state.oauth2 {
            o.set_faults(faults);
        }
    }

    /// Changes an OAuth 2.0 client while serving. Returns false if unknown.
    pub fn update_oauth2_client(&self, client_id: &str, change: impl FnOnce(&mut oauth2::SimClient)) -> bool {
        self.state.oauth2.as_ref().is_some_and(|o| o.update_client(client_id, change))
    }

    /// The LDAP directory's plain address (`ldap://`, StartTLS on it), when this simulator
    /// serves one.
    pub fn ldap_addr(&self) -> Option<SocketAddr> {
        self.ldap.as_ref().map(|l| l.ldap)
    }

    /// The LDAP directory's `ldaps://` address, when it serves one.
    pub fn ldaps_addr(&self) -> Option<SocketAddr> {
        self.ldap.as_ref().and_then(|l| l.ldaps)
    }

    /// What the LDAP directory received for one account (zeros for an unknown one, or without
    /// a directory); `""` holds anonymous requests and binds naming nobody.
    pub fn ldap_stats(&self, username: &str) -> LdapAccountStats {
        self.state.ldap.as_ref().map(|d| d.stats(username)).unwrap_or_default()
    }

    /// What the LDAP directory received, by account.
    pub fn all_ldap_stats(&self) -> HashMap<String, LdapAccountStats> {
        self.state.ldap.as_ref().map(|d| d.all_stats()).unwrap_or_default()
    }

    /// Stops accepting, lets open requests finish (stalled ones are cut), and waits. The LDAP
    /// directory's connections are closed at once.
    pub async fn shutdown(mut self) {
        self.ldap = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            // Stalled handlers never finish on their own: give graceful shutdown a moment.
            if tokio::time::timeout(std::time::Duration::from_secs(2), task).await.is_err() {
                tracing::debug!("simulator shutdown timed out; aborting open connections");
                abort.abort();
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Keeps a value behind a mutex that is never held across an await.
pub(crate) type Locked<T> = Mutex<T>;
