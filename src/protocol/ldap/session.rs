//! One LDAP connection: messages written and read whole under the run's deadline, over TCP or
//! TLS (from the start, or after StartTLS), each answer matched to its request.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::ber::{self, BerError};
use super::message::{self, op, Response, NOTICE_OF_DISCONNECTION_OID};
use crate::protocol::ResultClass;

/// Why no answer could be read.
#[derive(Debug)]
pub(super) enum Fault {
    /// The deadline passed first.
    Timeout(String),
    /// The connection ended or failed.
    Closed(String),
    /// The bytes are not an LDAP answer to what was asked.
    Garbage(String),
    /// The server said it is closing the connection (an unsolicited notice of disconnection).
    Disconnected(Response),
}

impl Fault {
    /// The run's class for it.
    pub fn class(&self) -> ResultClass {
        match self {
            Fault::Timeout(_) => ResultClass::Timeout,
            Fault::Closed(_) => ResultClass::ConnectError,
            Fault::Garbage(_) => ResultClass::InvalidResponse,
            Fault::Disconnected(_) => ResultClass::HttpError,
        }
    }

    /// What happened, in words (never a secret: the server's own words at most).
    pub fn detail(&self) -> String {
        match self {
            Fault::Timeout(d) | Fault::Closed(d) | Fault::Garbage(d) => d.clone(),
            Fault::Disconnected(r) => {
                format!("the server ended the connection (notice of disconnection, LDAP {}): {}", r.code, r.message)
            }
        }
    }
}

/// A connection's byte stream: TCP, or TLS over it.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn io(&mut self) -> &mut (dyn Io + Send) {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut **s,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// One connection and the messages exchanged on it.
pub(super) struct Session {
    pub stream: Stream,
    /// Bytes read beyond the last message.
    buf: Vec<u8>,
    /// The last message ID used.
    last_id: i32,
    deadline: tokio::time::Instant,
    /// The largest answer read.
    max_bytes: usize,
    /// What the session is with, for details: `host:port`.
    peer: String,
}

impl Session {
    pub fn new(stream: Stream, deadline: tokio::time::Instant, max_bytes: usize, peer: String) -> Self {
        let max_bytes = max_bytes.clamp(4096, ber::MAX_MESSAGE_BYTES);
        Session { stream, buf: Vec::new(), last_id: 0, deadline, max_bytes, peer }
    }

    /// The next message ID.
    pub fn next_id(&mut self) -> i32 {
        self.last_id += 1;
        self.last_id
    }

    /// Writes a whole message.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        let peer = self.peer.clone();
        let io = self.stream.io();
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match tokio::time::timeout_at(self.deadline, write).await {
            Err(_) => Err(Fault::Timeout(format!("deadline exceeded while sending to {peer}"))),
            Ok(Err(e)) => Err(Fault::Closed(format!("sending to {peer}: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads the answer to message `id` (a search's entries come one by one: each call reads
    /// the next message of `id`), and when its first byte and its last arrived.
    pub async fn receive(&mut self, id: i32) -> Result<(Response, (Instant, Instant)), Fault> {
        let mut began = (!self.buf.is_empty()).then(Instant::now);
        let size = loop {
            // Every LDAPMessage is a SEQUENCE: anything else (an HTTP or TLS server's answer)
            // is known for what it is at its first byte, not when the deadline passes.
            if self.buf.first().is_some_and(|b| *b != 0x30) {
                let first = self.buf[0];
                return Err(Fault::Garbage(format!(
                    "{} sent what is not LDAP (a message starting with {first:#04x}, not a SEQUENCE)",
                    self.peer
                )));
            }
            match ber::frame(&self.buf) {
                Err(e) => return Err(self.garbage(e)),
                Ok(Some(size)) => break size,
                Ok(None) => {}
            }
            if self.buf.len() > self.max_bytes {
                return Err(Fault::Garbage(format!(
                    "an answer from {} longer than {} bytes (max_body_bytes)",
                    self.peer, self.max_bytes
                )));
            }
            let mut chunk = [0u8; 8192];
            let io = self.stream.io();
            let n = match tokio::time::timeout_at(self.deadline, io.read(&mut chunk)).await {
                Err(_) => {
                    let what = if self.buf.is_empty() { "waiting for an answer" } else { "in the middle of an answer" };
                    return Err(Fault::Timeout(format!("deadline exceeded {what} from {}", self.peer)));
                }
                Ok(Err(e)) => return Err(Fault::Closed(format!("reading from {}: {e}", self.peer))),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                let what = if self.buf.is_empty() {
                    "closed the connection without answering"
                } else {
                    "closed the connection in the middle of an answer"
                };
                return Err(Fault::Closed(format!("{} {what}", self.peer)));
            }
            began.get_or_insert_with(Instant::now);
            self.buf.extend_from_slice(&chunk[..n]);
        };
        if size > self.max_bytes {
            return Err(Fault::Garbage(format!(
                "an answer from {} of {size} bytes, over {} (max_body_bytes)",
                self.peer, self.max_bytes
            )));
        }
        let ended = Instant::now();
        let bytes: Vec<u8> = self.buf.drain(..size).collect();
        let response = message::response(&bytes).map_err(|e| self.garbage(e))?;
        let notice = response.name.as_deref() == Some(NOTICE_OF_DISCONNECTION_OID) || response.code != 0;
        if response.id == 0 && response.op == op::EXTENDED_RESPONSE && notice {
            return Err(Fault::Disconnected(response));
        }
        if response.id != i64::from(id) {
            return Err(Fault::Garbage(format!(
                "an answer to message {} from {} where one to {id} was due",
                response.id, self.peer
            )));
        }
        Ok((response, (began.unwrap_or(ended), ended)))
    }

    /// Continues the numbering of a session this one replaces (StartTLS's).
    pub fn resume_ids(&mut self, last_id: i32) {
        self.last_id = last_id;
    }

    /// The stream and the last message ID, for a session to go on over TLS.
    pub fn into_parts(self) -> (Stream, i32) {
        (self.stream, self.last_id)
    }

    fn garbage(&self, e: BerError) -> Fault {
        Fault::Garbage(format!("{} sent what is not LDAP: {e}", self.peer))
    }

    /// Whether bytes arrived that no request asked for yet (before StartTLS's handshake, an
    /// attack on it: RFC 4513 §3.1.1).
    pub fn has_unread(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes an unbind and closes the connection, under the deadline (no answer is due).
    pub async fn unbind(&mut self) -> Result<(), Fault> {
        let id = self.next_id();
        self.send(&message::unbind_request(id)).await?;
        let io = self.stream.io();
        let _ = tokio::time::timeout_at(self.deadline, io.shutdown()).await;
        Ok(())
    }
}
