//! The simulator's listeners, plain and TLS. Every connection they hand out can be cut by the
//! handler serving it ([`Peer::cut`]), for the faults that live below HTTP: a connection closed
//! with no answer, or reset half way through a body.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a handler ends its connection at the next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Cut {
    /// Close normally (FIN): the client sees the connection end.
    Close = 1,
    /// Reset (RST, by closing with a zero linger): the client sees "connection reset".
    Reset = 2,
}

/// Shared between a connection and the handlers serving its requests.
#[derive(Debug, Default)]
pub(crate) struct Control(AtomicU8);

/// The peer of a connection (axum's `ConnectInfo` for both listeners), and a handle to cut it.
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub SocketAddr, Arc<Control>);

impl Peer {
    /// Ends the connection at its next write: nothing more reaches the client.
    pub fn cut(&self, how: Cut) {
        self.1 .0.store(how as u8, Ordering::Release);
    }
}

/// A TCP connection that fails its writes once cut.
pub(crate) struct Conn {
    tcp: TcpStream,
    control: Arc<Control>,
}

impl Conn {
    fn new(tcp: TcpStream) -> Conn {
        Conn { tcp, control: Arc::default() }
    }

    fn check(&self) -> io::Result<()> {
        match self.control.0.load(Ordering::Acquire) {
            0 => Ok(()),
            how => {
                if how == Cut::Reset as u8 {
                    // Closing with a zero linger sends RST instead of FIN.
                    let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
                }
                Err(io::Error::new(io::ErrorKind::ConnectionAborted, "cut by a simulator fault"))
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, retrying after errors (such as running out of descriptors).
async fn accept_tcp(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::debug!(error = %e, "simulator: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Plain HTTP.
pub(crate) struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, peer) = accept_tcp(&self.0).await;
        let _ = tcp.set_nodelay(true);
        (Conn::new(tcp), peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Peer {
        Peer(*stream.remote_addr(), stream.io().control.clone())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        Peer(*stream.remote_addr(), stream.io().get_ref().0.control.clone())
    }
}

/// A TCP listener that completes a TLS handshake on every connection it hands out; connections
/// whose handshake fails (a client that does not trust the certificate, plain HTTP) are dropped.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener { tcp, acceptor: TlsAcceptor::from(config) }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<Conn>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, peer) = accept_tcp(&self.tcp).await;
            let _ = tcp.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(Conn::new(tcp))).await {
                Ok(Ok(tls)) => return (tls, peer),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "simulator: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "simulator: TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
