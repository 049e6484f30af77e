//! The directory's listeners and connections: LDAP messages read and written with
//! `ldap3_proto`'s codec, each request answered from the [`Directory`]; StartTLS on the plain
//! port and `ldaps://` on its own, with the simulator's certificate. Bounded: connections in
//! number, messages in size, every read and write in time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindResponse, LdapExtendedResponse, LdapMsg, LdapOp, LdapResult, LdapResultCode,
};
use ldap3_proto::{DisconnectionNotice, LdapCodec};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Decoder as _, Encoder as _};

use super::directory::{Directory, NEEDS_BIND};
use crate::protocol::ldap::ber;
use crate::protocol::ldap::message::{STARTTLS_OID, WHOAMI_OID};
use crate::simulator::listener::{accept_tcp, HANDSHAKE_TIMEOUT};

/// Connections open at once, over both ports; one more is closed as soon as it is accepted.
pub(super) const MAX_CONNECTIONS: usize = 256;
/// Largest request read: a bind or a search is a few hundred bytes.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long a connection may stay silent, or a client take to read an answer (AD's
/// MaxConnIdleTime is 900 s; a simulator's clients are tests and the demo).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// AD's answers to what this server does not do, in AD's shape (the DSID, which names a line of
/// AD's own source, differs between Windows builds).
const ALREADY_TLS: &str = "00000000: LdapErr: DSID-0C090F78, comment: TLS or SSL already in effect, data 0, v4563\0";
const NO_CERTIFICATE: &str = "00000000: LdapErr: DSID-0C09126A, comment: Error initializing SSL/TLS, data 0, v4563\0";
const UNKNOWN_EXTENDED: &str =
    "0000203D: LdapErr: DSID-0C090C49, comment: Unknown extended request OID, data 0, v4563\0";
const NO_ACCESS: &str = "00000005: SecErr: DSID-03152E29, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0\n\0";
const CRITICAL_CONTROL: &str =
    "00002035: LdapErr: DSID-0C090CF6, comment: The server does not support a requested critical extension., data 0, v4563\0";
const SASL_UNSUPPORTED: &str =
    "00002027: LdapErr: DSID-0C0907DB, comment: Unknown authentication method, data 0, v4563\0";
const BAD_VERSION: &str = "00002024: LdapErr: DSID-0C0907DB, comment: Unsupported LDAP version, data 0, v4563\0";
const NOT_A_REQUEST: &str = "00000057: LdapErr: DSID-0C090EDC, comment: Error decoding ldap message, data 0, v4563\0";

/// The directory's listeners while they serve; dropping it stops them and every connection.
pub(crate) struct Listening {
    /// The plain listener's address.
    pub ldap: SocketAddr,
    /// The `ldaps://` listener's address.
    pub ldaps: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), (SocketAddr, io::Error)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| (addr, e))?;
    let bound = listener.local_addr().map_err(|e| (addr, e))?;
    Ok((listener, bound))
}

/// Binds the directory's listeners and serves them in the background; an error names the
/// address that could not be served.
pub(crate) async fn listen(directory: Arc<Directory>) -> Result<Listening, (SocketAddr, io::Error)> {
    let settings = directory.settings();
    let (plain, ldap) = bind(settings.listen).await?;
    let ldaps = match (settings.ldaps_listen, &settings.tls) {
        (None, _) => None,
        (Some(addr), None) => {
            return Err((addr, io::Error::new(io::ErrorKind::InvalidInput, "ldaps needs a TLS certificate")));
        }
        (Some(addr), Some(tls)) => Some((bind(addr).await?, TlsAcceptor::from(tls.clone()))),
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut listening = Listening { ldap, ldaps: None, tasks: Vec::new() };
    listening.tasks.push(tokio::spawn(accept(directory.clone(), plain, None, slots.clone())));
    if let Some(((listener, addr), acceptor)) = ldaps {
        listening.tasks.push(tokio::spawn(accept(directory, listener, Some(acceptor), slots)));
        listening.ldaps = Some(addr);
    }
    Ok(listening)
}

/// Accepts connections (TLS first with `ldaps`) while there is a free slot.
async fn accept(directory: Arc<Directory>, tcp: TcpListener, ldaps: Option<TlsAcceptor>, slots: Arc<Semaphore>) {
    // Dropped with this task when the simulator stops: every connection ends with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            (stream, peer) = accept_tcp(&tcp) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    connections.spawn(connection(directory.clone(), stream, ldaps.clone(), slot));
                }
                Err(_) => tracing::debug!(%peer, "simulator LDAP: too many connections; this one closed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What a connection knows across its requests.
#[derive(Default)]
struct Conn {
    /// The account bound (`None`: anonymous).
    bound: Option<String>,
    /// Whether it is TLS (`ldaps://` or after StartTLS).
    tls: bool,
}

/// One connection, until the client unbinds, closes, stays silent or breaks the protocol.
async fn connection(
    directory: Arc<Directory>,
    tcp: TcpStream,
    ldaps: Option<TlsAcceptor>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn::default();
    if let Some(acceptor) = ldaps {
        if let Some(tls) = handshake(&acceptor, tcp).await {
            conn.tls = true;
            session(&directory, tls, &mut conn).await;
        }
        return;
    }
    if let Ended::StartTls(tcp, config) = session(&directory, tcp, &mut conn).await {
        if let Some(tls) = handshake(&TlsAcceptor::from(config), tcp).await {
            conn.tls = true;
            session(&directory, tls, &mut conn).await;
        }
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(acceptor: &TlsAcceptor, io: S) -> Option<TlsStream<S>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "simulator LDAP: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("simulator LDAP: TLS handshake timed out");
            None
        }
    }
}

/// How a session over one stream ended.
enum Ended<S> {
    /// The connection is over.
    Closed,
    /// StartTLS was granted: the handshake follows on the same stream.
    StartTls(S, Arc<rustls::ServerConfig>),
}

/// What to do with a request.
enum Answer {
    /// Send these messages (none: an abandon).
    Reply(Vec<LdapMsg>),
    /// Close without a word (an unbind).
    Close,
    /// Send the notice of disconnection with this message, and close.
    Disconnect(&'static str),
    /// Send StartTLS's success, then hand the stream over to TLS.
    StartTls(LdapMsg, Arc<rustls::ServerConfig>),
}

/// Requests read and answered over `io` until the connection ends or turns to TLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(directory: &Directory, mut io: S, conn: &mut Conn) -> Ended<S> {
    let mut codec = Codec::new();
    let mut input = BytesMut::with_capacity(4096);
    loop {
        let answer = match read(&mut io, &mut codec, &mut input).await {
            Ok(Some(request)) => answer(directory, request, conn).await,
            Ok(None) => return Ended::Closed,
            Err(e) => {
                tracing::debug!(error = %e, "simulator LDAP: not an LDAP request; disconnecting");
                Answer::Disconnect(NOT_A_REQUEST)
            }
        };
        let sent = match answer {
            Answer::Reply(messages) => write(&mut io, &mut codec, messages).await,
            Answer::Close => {
                let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, io.shutdown()).await;
                return Ended::Closed;
            }
            Answer::Disconnect(why) => {
                let notice = DisconnectionNotice::gen_response(LdapResultCode::ProtocolError, why);
                let _ = write(&mut io, &mut codec, vec![notice]).await;
                return Ended::Closed;
            }
            Answer::StartTls(reply, config) => {
                if write(&mut io, &mut codec, vec![reply]).await.is_err() {
                    return Ended::Closed;
                }
                // Bytes sent before the handshake would be taken as protected (RFC 4513 §3.1.1).
                if !input.is_empty() {
                    tracing::debug!("simulator LDAP: data before the StartTLS handshake; disconnecting");
                    return Ended::Closed;
                }
                return Ended::StartTls(io, config);
            }
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "simulator LDAP: answer not written");
            return Ended::Closed;
        }
    }
}

/// The next request; `None` once the client has closed, or stayed silent for [`IDLE_TIMEOUT`].
async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
    codec: &mut Codec,
    input: &mut BytesMut,
) -> io::Result<Option<LdapMsg>> {
    loop {
        if let Some(request) = codec.decode(input)? {
            return Ok(Some(request));
        }
        input.reserve(4096);
        match tokio::time::timeout(IDLE_TIMEOUT, io.read_buf(input)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes `messages` at once, within [`IDLE_TIMEOUT`].
async fn write<S: AsyncWrite + Unpin>(io: &mut S, codec: &mut Codec, messages: Vec<LdapMsg>) -> io::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut out = BytesMut::new();
    for m in messages {
        codec.encode(m, &mut out)?;
    }
    let written = async {
        io.write_all(&out).await?;
        io.flush().await
    };
    tokio::time::timeout(IDLE_TIMEOUT, written)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client does not read"))?
}

/// `ldap3_proto`'s codec, its messages capped at [`MAX_MESSAGE_BYTES`], and silenced: it traces
/// the BER of what it decodes (a bind's password among it), logs a message it cannot read with
/// its bytes, and prints operations RFC 4511 does not define to stdout — those are refused here
/// before it sees them.
struct Codec(LdapCodec);

impl Codec {
    fn new() -> Codec {
        Codec(LdapCodec::new(Some(MAX_MESSAGE_BYTES), None))
    }

    fn decode(&mut self, input: &mut BytesMut) -> io::Result<Option<LdapMsg>> {
        // Every LDAPMessage is a SEQUENCE: anything else is refused from its first byte.
        if input.first().is_some_and(|tag| *tag != 0x30) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not an LDAP message"));
        }
        if announced(input).is_some_and(|size| size > MAX_MESSAGE_BYTES) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a message over the size cap"));
        }
        if let Ok(Some(size)) = ber::frame(input) {
            if !known_operation(&input[..size]) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "an operation LDAP does not define"));
            }
        }
        quiet(|| self.0.decode(input))
    }

    fn encode(&mut self, message: LdapMsg, out: &mut BytesMut) -> io::Result<()> {
        quiet(|| self.0.encode(message, out))
    }
}

fn quiet<T>(f: impl FnOnce() -> T) -> T {
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), f)
}

/// The size a message announces in its first bytes (tag and length), once they are in: a
/// message too long is refused before it is read whole.
fn announced(input: &[u8]) -> Option<usize> {
    let first = *input.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    if count > 4 {
        return Some(usize::MAX);
    }
    let bytes = input.get(2..2 + count)?;
    let length = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    Some(2 + count + length)
}

/// Whether a whole message's operation is one RFC 4511 defines, or not an application tag at
/// all (the codec refuses those itself).
fn known_operation(message: &[u8]) -> bool {
    let Ok((outer, _)) = ber::read(message) else { return true };
    let mut m = ber::Reader::new(outer.value);
    let (Ok(_id), Ok(operation)) = (m.element(), m.element()) else { return true };
    operation.tag & 0xc0 != 0x40 || matches!(operation.tag & 0x1f, 0..=16 | 19 | 23..=25)
}

/// Whether a request control is marked critical (the kinds that carry no criticality are not).
fn critical(control: &LdapControl) -> bool {
    match control {
        LdapControl::SyncRequest { criticality, .. }
        | LdapControl::ManageDsaIT { criticality }
        | LdapControl::PasswordPolicyRequest { criticality }
        | LdapControl::SearchOptions { criticality, .. }
        | LdapControl::ShowDeleted { criticality }
        | LdapControl::SdFlags { criticality, .. }
        | LdapControl::ExtendedDn { criticality, .. }
        | LdapControl::Unknown { criticality, .. } => *criticality,
        _ => false,
    }
}

fn result(code: LdapResultCode, message: &str) -> LdapResult {
    LdapResult { code, matcheddn: String::new(), message: message.to_owned(), referral: Vec::new() }
}

/// The response of request `op` refusing it with `code`; `None` for what is not a request
/// with a response (an unbind, an abandon, a client's response).
fn refusal(op: &LdapOp, code: LdapResultCode, message: &str) -> Option<LdapOp> {
    let res = result(code, message);
    Some(match op {
        LdapOp::BindRequest(_) => LdapOp::BindResponse(LdapBindResponse { res, saslcreds: None }),
        LdapOp::SearchRequest(_) => LdapOp::SearchResultDone(res),
        LdapOp::ModifyRequest(_) => LdapOp::ModifyResponse(res),
        LdapOp::AddRequest(_) => LdapOp::AddResponse(res),
        LdapOp::DelRequest(_) => LdapOp::DelResponse(res),
        LdapOp::ModifyDNRequest(_) => LdapOp::ModifyDNResponse(res),
        LdapOp::CompareRequest(_) => LdapOp::CompareResult(res),
        LdapOp::ExtendedRequest(_) => LdapOp::ExtendedResponse(LdapExtendedResponse { res, name: None, value: None }),
        _ => return None,
    })
}

/// The answer to one request.
async fn answer(directory: &Directory, request: LdapMsg, conn: &mut Conn) -> Answer {
    let LdapMsg { msgid, op, ctrl } = request;
    let reply = |op| Answer::Reply(vec![LdapMsg::new(msgid, op)]);
    // AD knows none of the controls a client could send here: a critical one is refused
    // (RFC 4511 §4.1.11); the others, the prober's password policy request among them, ignored.
    if ctrl.iter().any(critical) {
        if let Some(refused) = refusal(&op, LdapResultCode::UnavailableCriticalExtension, CRITICAL_CONTROL) {
            return reply(refused);
        }
    }
    match op {
        LdapOp::BindRequest(bind) => {
            // A bind starts from anonymous, and stays so if it is refused (RFC 4511 §4.2.1).
            conn.bound = None;
            let res = match (bind.version, &bind.cred) {
                (2 | 3, LdapBindCred::Simple(password)) => {
                    let answer = directory.bind(&bind.dn, password, conn.tls);
                    if let Some(delay) = answer.delay {
                        tokio::time::sleep(delay).await;
                    }
                    tracing::debug!(name = %bind.dn, bound = answer.result.is_ok(), "simulator LDAP: simple bind");
                    match answer.result {
                        Ok(bound) => {
                            conn.bound = bound;
                            result(LdapResultCode::Success, "")
                        }
                        Err(refused) => refused,
                    }
                }
                (2 | 3, _) => result(LdapResultCode::AuthMethodNotSupported, SASL_UNSUPPORTED),
                _ => result(LdapResultCode::ProtocolError, BAD_VERSION),
            };
            reply(LdapOp::BindResponse(LdapBindResponse { res, saslcreds: None }))
        }
        LdapOp::UnbindRequest => Answer::Close,
        LdapOp::SearchRequest(search) => {
            let found = directory.search(&search, conn.bound.as_deref());
            let entries = found.entries.into_iter().map(|e| LdapMsg::new(msgid, LdapOp::SearchResultEntry(e)));
            let done = LdapMsg::new(msgid, LdapOp::SearchResultDone(found.done));
            Answer::Reply(entries.chain(std::iter::once(done)).collect())
        }
        LdapOp::ExtendedRequest(extended) => match extended.name.as_str() {
            STARTTLS_OID => {
                let response = |res| {
                    LdapOp::ExtendedResponse(LdapExtendedResponse {
                        res,
                        name: Some(STARTTLS_OID.to_owned()),
                        value: None,
                    })
                };
                match &directory.settings().tls {
                    _ if conn.tls => reply(response(result(LdapResultCode::OperationsError, ALREADY_TLS))),
                    None => reply(response(result(LdapResultCode::Unavailable, NO_CERTIFICATE))),
                    Some(config) => Answer::StartTls(
                        LdapMsg::new(msgid, response(result(LdapResultCode::Success, ""))),
                        config.clone(),
                    ),
                }
            }
            WHOAMI_OID => {
                let authz = directory.whoami(conn.bound.as_deref());
                reply(LdapOp::ExtendedResponse(LdapExtendedResponse {
                    res: result(LdapResultCode::Success, ""),
                    name: None,
                    value: Some(authz.into_bytes()),
                }))
            }
            _ => reply(LdapOp::ExtendedResponse(LdapExtendedResponse {
                res: result(LdapResultCode::ProtocolError, UNKNOWN_EXTENDED),
                name: None,
                value: None,
            })),
        },
        // Every answer is sent before the next request is read: nothing is left to abandon.
        LdapOp::AbandonRequest(_) => Answer::Reply(Vec::new()),
        // Writes and compares: not for an anonymous client, nor for the accounts of a monitor.
        other => {
            let refused = if conn.bound.is_some() {
                refusal(&other, LdapResultCode::InsufficentAccessRights, NO_ACCESS)
            } else {
                refusal(&other, LdapResultCode::OperationsError, NEEDS_BIND)
            };
            match refused {
                Some(op) => reply(op),
                None => Answer::Disconnect(NOT_A_REQUEST),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Whatever a subscriber at TRACE level writes while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // A callsite first reached by another test's thread, under no subscriber, may have
            // cached "never": asked again here, with this one in force.
            tracing::callsite::rebuild_interest_cache();
            f()
        });
        let bytes = sink.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// ldap3_proto traces the BER of a bind, the password among it, and logs a message it
    /// cannot read with its bytes: through the simulator's codec, nothing is logged.
    #[test]
    fn the_codec_logs_nothing_of_what_it_reads() {
        let bind = crate::protocol::ldap::message::bind_request(1, "CN=a,DC=x", b"Pw-Never-Logged", &[]);
        let mut broken = bind.to_vec();
        let at = broken.len() - 3;
        broken[at] = 0xff;
        for bytes in [bind.to_vec(), broken] {
            let raw = logged(|| {
                let _ = LdapCodec::new(Some(MAX_MESSAGE_BYTES), None).decode(&mut BytesMut::from(&bytes[..]));
            });
            assert!(!raw.is_empty(), "the crate logs: this test sees it");
            let ours = logged(|| {
                let _ = Codec::new().decode(&mut BytesMut::from(&bytes[..]));
            });
            assert_eq!(ours, "");
        }
    }

    #[test]
    fn sizes_are_read_from_a_messages_first_bytes() {
        assert_eq!(announced(&[0x30]), None);
        assert_eq!(announced(&[0x30, 0x05]), Some(7));
        assert_eq!(announced(&[0x30, 0x82, 0x01]), None);
        assert_eq!(announced(&[0x30, 0x82, 0x01, 0x00]), Some(260));
        assert_eq!(announced(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), Some(6 + 0xffff_ffff));
        assert_eq!(announced(&[0x30, 0x85, 0, 0, 0, 0, 0]), Some(usize::MAX));
    }
}
