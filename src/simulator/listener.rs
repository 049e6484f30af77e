//! The simulator's listeners, plain and TLS. Every connection they hand out can be cut by the
//! handler serving it ([`Peer::cut`]), for the faults that live below HTTP: a connection closed
//! with no answer, or reset half way through a body. Each also times its exchanges at the socket
//! ([`Peer::when_answered`]): from the first byte of a request read to the write call that
//! sends the last byte of its answer. That is the server's whole share of a login, which
//! benchmarks subtract from what a client measured.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its handshake before the connection is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a handler ends its connection at the next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Cut {
    /// Close normally (FIN): the client sees the connection end.
    Close = 1,
    /// Reset (RST, by closing with a zero linger): the client sees "connection reset".
    Reset = 2,
}

/// Called with the socket-level time of an exchange once its answer is written.
type Answered = Box<dyn FnOnce(Duration) + Send>;

/// Shared between a connection and the handlers serving its requests.
#[derive(Default)]
pub(crate) struct Control {
    cut: AtomicU8,
    exchange: Mutex<Exchange>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("cut", &self.cut).finish_non_exhaustive()
    }
}

/// The exchange in progress on a connection, as its socket sees it.
#[derive(Default)]
struct Exchange {
    /// When the first byte of the current request was read.
    request_read: Option<Instant>,
    /// When the last write since the handler asked to be told happened.
    last_write: Option<Instant>,
    answered: Option<Answered>,
}

impl Control {
    fn exchange(&self) -> std::sync::MutexGuard<'_, Exchange> {
        self.exchange.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self, bytes: usize) {
        if bytes > 0 {
            self.exchange().request_read.get_or_insert_with(Instant::now);
        }
    }

    /// `issued` is taken before the write call: the write wakes the client, which may preempt
    /// this thread before it reads the clock again, and the client's time would then count as
    /// the server's.
    fn wrote(&self, bytes: usize, issued: Instant) {
        if bytes > 0 {
            let mut e = self.exchange();
            if e.answered.is_some() {
                e.last_write = Some(issued);
            }
        }
    }

    /// The answer is out once hyper flushes after writing it (hyper writes a whole answer with
    /// a known body, head and body, before one flush): report its time and start afresh.
    fn flushed(&self) {
        let mut e = self.exchange();
        if let (Some(read), Some(written)) = (e.request_read, e.last_write) {
            if let Some(answered) = e.answered.take() {
                *e = Exchange::default();
                drop(e);
                answered(written.saturating_duration_since(read));
            }
        }
    }
}

/// The peer of a connection (axum's `ConnectInfo` for both listeners), and a handle to cut it.
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub SocketAddr, Arc<Control>);

impl Peer {
    /// Ends the connection at its next write: nothing more reaches the client.
    pub fn cut(&self, how: Cut) {
        self.1.cut.store(how as u8, Ordering::Release);
    }

    /// Once the answer the handler is about to return has been written, `answered` gets the
    /// time from the first byte of its request read to the last byte of the answer written.
    /// Not called if the answer is never written.
    pub fn when_answered(&self, answered: impl FnOnce(Duration) + Send + 'static) {
        let mut e = self.1.exchange();
        e.answered = Some(Box::new(answered));
        e.last_write = None;
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
        match self.control.cut.load(Ordering::Acquire) {
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

    /// A write unless cut, noted for the exchange's timing.
    fn timed_write(
        mut self: Pin<&mut Self>,
        write: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        let issued = Instant::now();
        let polled = write(Pin::new(&mut self.tcp));
        if let Poll::Ready(Ok(n)) = polled {
            self.control.wrote(n, issued);
        }
        polled
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.control.read(buf.filled().len() - before);
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.timed_write(|tcp| tcp.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.timed_write(|tcp| tcp.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        let polled = Pin::new(&mut self.tcp).poll_flush(cx);
        if polled.is_ready() {
            self.control.flushed();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, retrying after errors (such as running out of descriptors).
pub(crate) async fn accept_tcp(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
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
