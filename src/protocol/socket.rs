//! For families that open their own connections rather than go through the HTTP layer (an LDAP
//! bind, say): a TCP connection and a TLS session over it (at once, or later as StartTLS does),
//! each under the run's deadline, timed as the run's first connection (resolve, connect, tls), the
//! TLS facts recorded, and failures in the words the HTTP layer uses.

use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::run::Attempt;
use super::ResultClass;

/// Why a connection or TLS session could not be had: the run's class and the words for it.
#[derive(Debug)]
pub struct Refused {
    /// `connect_error`, `timeout` or `tls_error`.
    pub class: ResultClass,
    /// What happened (never a secret: addresses and the system's or rustls' words).
    pub detail: String,
}

impl Attempt<'_> {
    /// A TCP connection to `host:port`, resolved and connected under the run's deadline (each
    /// address in turn), the run's first connection timed. Starts the run's clock. With retries,
    /// one connection attempt gets its share of the deadline, as an HTTP family's does.
    pub async fn connect(&mut self, host: &str, port: u16) -> Result<TcpStream, Refused> {
        self.starting();
        let hooks = self.hooks.clone();
        let started = Instant::now();
        let first = hooks.clock.connection_starts(started);
        let share = hooks.connect_within.map(|w| tokio::time::Instant::from_std(started) + w);
        let by = share.map_or(self.deadline, |s| s.min(self.deadline));
        let within = |what: &str| Refused {
            class: ResultClass::Timeout,
            detail: if by < self.deadline {
                format!("connection attempt timed out (its share of the deadline) while {what} {host}:{port}")
            } else {
                format!("deadline exceeded while {what} {host}:{port}")
            },
        };
        let resolving = tokio::net::lookup_host((host, port));
        let addrs: Vec<_> = match tokio::time::timeout_at(by, resolving).await {
            Err(_) => return Err(within("resolving")),
            Ok(Err(e)) => {
                return Err(Refused { class: ResultClass::ConnectError, detail: format!("resolving {host}: {e}") })
            }
            Ok(Ok(a)) => a.collect(),
        };
        if first && host.parse::<std::net::IpAddr>().is_err() {
            let resolved = Instant::now();
            hooks.clock.mark(|m| {
                m.dns_start = Some(started);
                m.dns_end = Some(resolved);
            });
        }
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout_at(by, TcpStream::connect(addr)).await {
                Err(_) => return Err(within("connecting to")),
                Ok(Ok(stream)) => {
                    if first {
                        hooks.clock.mark(|m| m.connect_end = Some(Instant::now()));
                    }
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(format!("connecting to {addr}: {e}")),
            }
        }
        let detail = last.unwrap_or_else(|| format!("{host} has no address"));
        Err(Refused { class: ResultClass::ConnectError, detail })
    }

    /// A TLS session over `stream` with the target's TLS settings, for the name `host`, under the
    /// run's deadline: its handshake timed (the tls phase of the run's first connection), its
    /// version and the chain's earliest expiry recorded.
    pub async fn tls<S>(&mut self, stream: S, host: &str) -> Result<tokio_rustls::client::TlsStream<S>, Refused>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let hooks = self.hooks.clone();
        hooks.tls_intended();
        let failed = |detail: String| Refused { class: ResultClass::TlsError, detail };
        let config =
            self.prober.tls_config(self.transport.tls).map_err(|e| failed(format!("cannot set up TLS: {e}")))?;
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| failed(format!("invalid server name {host:?}")))?;
        // The handshake's start is marked by the configuration's session store; its end here.
        let first = hooks.clock.mark(|m| m.tls_start.is_none());
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, stream);
        let session = match tokio::time::timeout_at(self.deadline, handshake).await {
            Err(_) => {
                let detail = format!("deadline exceeded during the TLS handshake with {host}");
                return Err(Refused { class: ResultClass::Timeout, detail });
            }
            Ok(Err(e)) => {
                let words = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    Some(tls) => super::tls::describe(tls),
                    None => e.to_string(),
                };
                return Err(failed(format!("TLS: {words}")));
            }
            Ok(Ok(session)) => session,
        };
        if first && !self.answered_yet() {
            hooks.clock.mark(|m| m.connect_end = Some(Instant::now()));
        }
        if let Some(version) = session.get_ref().1.protocol_version() {
            hooks.tls_version(match version {
                rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
                rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
                _ => "other",
            });
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::protocol::hooks::RunHooks;
    use crate::protocol::run::{Gathered, Transport};
    use crate::protocol::{Prober, TlsSettings};

    /// A TLS server on loopback with a self-signed certificate for localhost that answers one
    /// connection `hello`: its address and its certificate.
    async fn server() -> (std::net::SocketAddr, Vec<rustls::pki_types::CertificateDer<'static>>) {
        use rustls::pki_types::pem::PemObject as _;
        let (cert, key) = crate::simulator::certificate::make(&["localhost".to_owned()]).unwrap();
        let chain: Vec<_> =
            rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let config = crate::simulator::certificate::server_config(chain.clone(), key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config.clone()).accept(tcp).await {
                    let _ = tls.write_all(b"hello").await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        (addr, chain)
    }

    /// A family's own TCP connection and TLS session: timed as the run's connection, the TLS facts
    /// recorded as for HTTPS, refusals in the run's classes.
    #[tokio::test]
    async fn a_family_of_its_own_transport_gets_phases_and_tls_facts() {
        let (addr, chain) = server().await;
        let prober = Prober::new().unwrap();
        let mut settings = TlsSettings::default();
        settings.roots = Some(chain);
        let tls = Arc::new(settings);
        let transport = Transport { tls: &tls, proxy: None, single_request: false };
        let hooks = Arc::new(RunHooks::new(None));
        let mut gathered = Gathered::default();
        let mut attempt = prober.attempt(transport, in_5s(), 4096, hooks.clone(), &mut gathered, None);
        let got = hooks
            .scope(async {
                let tcp = attempt.connect("localhost", addr.port()).await.map_err(|r| r.detail)?;
                let mut session = attempt.tls(tcp, "localhost").await.map_err(|r| r.detail)?;
                let mut hello = String::new();
                session.read_to_string(&mut hello).await.map_err(|e| e.to_string())?;
                let wrong = attempt.connect("127.0.0.1", addr.port()).await.map_err(|r| r.detail)?;
                let refused = attempt.tls(wrong, "other.example").await.expect_err("another name");
                Ok::<_, String>((hello, refused))
            })
            .await;
        let (hello, refused) = got.unwrap();
        assert_eq!(hello, "hello");
        assert_eq!(refused.class, ResultClass::TlsError);
        assert!(refused.detail.contains("certificate"), "{}", refused.detail);
        let facts = hooks.tls_facts().expect("TLS facts");
        assert_eq!(facts.version, Some("TLS 1.3"));
        let in_89_days = crate::results::unix_seconds(std::time::SystemTime::now()) as i64 + 89 * 86_400;
        assert!(facts.cert_not_after_unix.is_some_and(|t| t > in_89_days), "{facts:?}");
        let (_, connect, tls_phase) = hooks.clock.connection_phases().expect("the first connection is timed");
        assert!(connect > Duration::ZERO && tls_phase > Duration::ZERO, "{connect:?} {tls_phase:?}");
        assert!(gathered.sent.is_some(), "the run's clock started");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut gathered = Gathered::default();
        let mut attempt = prober.attempt(transport, in_5s(), 4096, Arc::default(), &mut gathered, None);
        let refused = attempt.connect("127.0.0.1", closed).await.expect_err("nothing listens");
        assert_eq!(refused.class, ResultClass::ConnectError, "{}", refused.detail);
    }

    fn in_5s() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    /// With retries, a connection that cannot be made gives up at its share of the deadline,
    /// leaving time for the next attempt.
    #[tokio::test]
    async fn a_stalled_connection_gives_up_at_its_share_of_the_deadline() {
        // A listener whose backlog of one is taken: the kernel drops the next handshakes.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let prober = Prober::new().unwrap();
        let tls = Arc::default();
        let transport = Transport { tls: &tls, proxy: None, single_request: false };
        let hooks = Arc::new(RunHooks::new(Some(Duration::from_millis(300))));
        let mut gathered = Gathered::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut attempt = prober.attempt(transport, deadline, 4096, hooks, &mut gathered, None);
        let started = std::time::Instant::now();
        let refused = attempt.connect("127.0.0.1", addr.port()).await.expect_err("the handshake is dropped");
        assert_eq!(refused.class, ResultClass::Timeout, "{}", refused.detail);
        assert!(refused.detail.contains("its share of the deadline"), "{}", refused.detail);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
