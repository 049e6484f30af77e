//! The directory over real TCP on 127.0.0.1, with authprobe's own LDAP messages as the client,
//! and the prober's LDAP probes against it. Every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{LdapSettings, LockoutPolicy};
use crate::protocol::ldap::classify::{self, Refusal};
use crate::protocol::ldap::message::{self, op, Entry, Response, Scope, STARTTLS_OID, WHOAMI_OID};
use crate::protocol::ldap::{ber, filter};
use crate::simulator::{Account, Settings, Simulator};

/// Longest any one answer may take.
const WAIT: Duration = Duration::from_secs(5);
const BASE: &str = "DC=demo,DC=example";
const HENRY_DN: &str = "CN=henry,CN=Users,DC=demo,DC=example";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client of one connection: messages written whole, answers read one by one.
struct Client {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    id: i32,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
        Client { io: Box::new(tcp), buf: Vec::new(), id: 0 }
    }

    /// TLS over `tcp` (ldaps://, or after StartTLS), trusting `roots` for 127.0.0.1.
    async fn tls(tcp: Box<dyn Io>, roots: &[CertificateDer<'static>]) -> std::io::Result<Box<dyn Io>> {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await.unwrap()?;
        Ok(Box::new(tls))
    }

    async fn ldaps(addr: std::net::SocketAddr, roots: &[CertificateDer<'static>]) -> Client {
        let plain = Client::connect(addr).await;
        Client { io: Client::tls(plain.io, roots).await.unwrap(), buf: Vec::new(), id: 0 }
    }

    fn next_id(&mut self) -> i32 {
        self.id += 1;
        self.id
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.io.write_all(bytes)).await.unwrap().unwrap();
        self.io.flush().await.unwrap();
    }

    /// The next message; `None` once the server has closed the connection.
    async fn receive(&mut self) -> Option<Response> {
        self.receive_bytes().await.map(|bytes| message::response(&bytes).unwrap())
    }

    /// The next message's bytes.
    async fn receive_bytes(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(size) = ber::frame(&self.buf).unwrap() {
                return Some(self.buf.drain(..size).collect());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.io.read(&mut chunk)).await.expect("an answer in time").unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The operation tag and result code of the next message, for the responses
    /// [`message::response`] does not read the result of.
    async fn raw_result(&mut self) -> (u8, i64) {
        let bytes = self.receive_bytes().await.expect("an answer");
        let (outer, _) = ber::read(&bytes).unwrap();
        let mut m = ber::Reader::new(outer.value);
        m.expect(0x02).unwrap();
        let operation = m.element().unwrap();
        let code = ber::integer(ber::Reader::new(operation.value).expect(0x0a).unwrap()).unwrap();
        (operation.tag, code)
    }

    async fn answer(&mut self) -> Response {
        self.receive().await.expect("an answer, not a closed connection")
    }

    async fn bind(&mut self, name: &str, password: &str) -> Response {
        let id = self.next_id();
        let request = message::bind_request(id, name, password.as_bytes(), &[message::PPOLICY_OID]);
        self.send(&request).await;
        let r = self.answer().await;
        assert_eq!((r.id, r.op), (i64::from(id), op::BIND_RESPONSE));
        r
    }

    async fn extended(&mut self, oid: &str) -> Response {
        let id = self.next_id();
        self.send(&message::extended_request(id, oid)).await;
        let r = self.answer().await;
        assert_eq!((r.id, r.op), (i64::from(id), op::EXTENDED_RESPONSE));
        r
    }

    async fn whoami(&mut self) -> String {
        let r = self.extended(WHOAMI_OID).await;
        assert_eq!(r.code, 0, "{r:?}");
        String::from_utf8(r.value.unwrap_or_default()).unwrap()
    }

    /// A search: its entries and its SearchResultDone.
    async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[&str],
        size: i64,
    ) -> (Vec<Entry>, Response) {
        let id = self.next_id();
        let f = filter::encode(filter).unwrap();
        self.send(&message::search_request(id, base, scope, &f, attributes, size)).await;
        let mut entries = Vec::new();
        loop {
            let r = self.answer().await;
            assert_eq!(r.id, i64::from(id));
            match r.op {
                op::SEARCH_ENTRY => entries.push(r.entry.unwrap()),
                op::SEARCH_DONE => return (entries, r),
                other => panic!("operation {other:#04x} in a search's answer"),
            }
        }
    }

    /// StartTLS, then the handshake.
    async fn start_tls(mut self, roots: &[CertificateDer<'static>]) -> Client {
        let r = self.extended(STARTTLS_OID).await;
        assert_eq!((r.code, r.name.as_deref()), (0, Some(STARTTLS_OID)), "{r:?}");
        let io = Client::tls(self.io, roots).await.unwrap();
        Client { io, buf: Vec::new(), id: self.id }
    }
}

/// A certificate for 127.0.0.1: the server's configuration, the chain to trust, and its PEM.
fn certificate() -> (Arc<rustls::ServerConfig>, Vec<CertificateDer<'static>>, String) {
    let (cert, key) = crate::simulator::certificate::make(&["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    (crate::simulator::certificate::server_config(chain.clone(), key).unwrap(), chain, cert)
}

fn account(username: &str, change: impl FnOnce(&mut Account)) -> Account {
    let mut a = Account::new(username, &format!("{username}-pw"));
    change(&mut a);
    a
}

/// The domain's users: one per state a bind can meet.
fn accounts() -> Vec<Account> {
    vec![
        account("henry", |a| a.password_expires_in = Some(Duration::from_secs(10 * 86_400))),
        account("never", |_| {}),
        account("irene", |a| a.password_expired = true),
        account("dora", |a| a.disabled = true),
        account("axel", |a| a.account_expired = true),
        account("mona", |a| a.must_change_password = true),
        account("judy", |a| a.locked = true),
        account("lock-me", |_| {}),
    ]
}

/// A simulator whose directory serves `accounts` on free ports, changed by `change`.
async fn directory(accounts: Vec<Account>, change: impl FnOnce(&mut LdapSettings)) -> Simulator {
    let mut settings = Settings::new(&["app-key"], accounts);
    let mut ldap = LdapSettings::new(BASE, "127.0.0.1:0".parse().unwrap()).unwrap();
    change(&mut ldap);
    settings.ldap = Some(ldap);
    tokio::time::timeout(WAIT, Simulator::start(settings, "127.0.0.1:0".parse().unwrap())).await.unwrap().unwrap()
}

/// The AD sub-code of a refused bind, checked to be in AD's words.
fn data_code(r: &Response) -> Option<Refusal> {
    if r.code == 0 {
        return None;
    }
    assert_eq!(r.code, 49, "{r:?}");
    assert!(
        r.message.starts_with("80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data "),
        "{r:?}"
    );
    assert!(r.message.ends_with(", v4563\0"), "{r:?}");
    assert!(r.controls.is_empty(), "AD sends no response control: {r:?}");
    classify::bind(r.code, &r.message, None)
}

#[tokio::test]
async fn binds_by_dn_upn_and_domain_name_and_who_am_i_names_the_account() {
    let sim = directory(accounts(), |_| {}).await;
    let addr = sim.ldap_addr().expect("the directory listens");
    assert_eq!(sim.ldaps_addr(), None);
    let mut c = Client::connect(addr).await;
    assert_eq!(c.whoami().await, "", "anonymous");
    for name in [
        HENRY_DN,
        "cn=HENRY, cn=users, dc=DEMO, dc=example",
        "henry@demo.example",
        "Henry@DEMO",
        "DEMO\\henry",
        "demo\\HENRY",
    ] {
        let r = c.bind(name, "henry-pw").await;
        assert_eq!((r.code, r.message.as_str()), (0, ""), "{name}: {r:?}");
        assert_eq!(c.whoami().await, "u:DEMO\\henry", "{name}");
    }
    // Names AD does not take in a simple bind: the bare sAMAccountName, another domain.
    for name in
        ["henry", "henry@other.example", "OTHER\\henry", "CN=henry,CN=Users,DC=other", "CN=henry,DC=demo,DC=example"]
    {
        assert_eq!(data_code(&c.bind(name, "henry-pw").await), Some(Refusal::UnknownUser), "{name}");
        assert_eq!(c.whoami().await, "", "a refused bind leaves the connection anonymous");
    }
    // An anonymous bind, then an unbind closes the connection.
    assert_eq!(c.bind("", "").await.code, 0);
    assert_eq!(c.whoami().await, "");
    let id = c.next_id();
    c.send(&message::unbind_request(id)).await;
    assert!(c.receive().await.is_none(), "the unbind closed the connection");

    let henry = sim.ldap_stats("henry");
    assert_eq!((henry.binds, henry.failed_binds, henry.tls_binds, henry.whoami), (6, 0, 0, 6), "{henry:?}");
    let nobody = sim.ldap_stats("");
    assert_eq!((nobody.binds, nobody.failed_binds), (6, 5), "{nobody:?}");
    assert!(sim.all_ldap_stats().contains_key("henry"));
    sim.shutdown().await;
}

#[tokio::test]
async fn each_refusal_has_ads_data_code_and_only_the_right_password_shows_the_state() {
    let sim = directory(accounts(), |_| {}).await;
    let mut c = Client::connect(sim.ldap_addr().unwrap()).await;
    let upn = |u: &str| format!("{u}@demo.example");
    assert_eq!(data_code(&c.bind(&upn("henry"), "wrong").await), Some(Refusal::InvalidCredentials));
    assert_eq!(data_code(&c.bind(&upn("nobody"), "wrong").await), Some(Refusal::UnknownUser));
    // An unauthenticated bind (a name, no password) is no way in.
    assert_eq!(data_code(&c.bind(&upn("henry"), "").await), Some(Refusal::InvalidCredentials));
    for (user, want) in [
        ("irene", Refusal::PasswordExpired),
        ("dora", Refusal::AccountDisabled),
        ("axel", Refusal::AccountExpired),
        ("mona", Refusal::PasswordMustChange),
        ("judy", Refusal::AccountLocked),
    ] {
        assert_eq!(data_code(&c.bind(&upn(user), &format!("{user}-pw")).await), Some(want), "{user}");
        let wrong = if user == "judy" { Refusal::AccountLocked } else { Refusal::InvalidCredentials };
        assert_eq!(data_code(&c.bind(&upn(user), "wrong").await), Some(wrong), "{user}, wrong password");
    }
    // The codes as the prober reads them, and the connection still usable after refusals.
    let r = c.bind(&upn("irene"), "irene-pw").await;
    assert_eq!(classify::ad_data(&r.message), Some(0x532));
    assert_eq!(c.bind(&upn("henry"), "henry-pw").await.code, 0);
    assert_eq!(sim.ldap_stats("irene").failed_binds, 3);
    assert_eq!(sim.ldap_stats("henry").failed_binds, 2);
    // Changed while serving, as tests break and mend accounts.
    assert!(sim.update_account("irene", |a| a.password_expired = false));
    assert_eq!(c.bind(&upn("irene"), "irene-pw").await.code, 0);
}

#[tokio::test]
async fn the_lockout_policy_locks_after_the_threshold_for_its_duration() {
    let policy = LockoutPolicy { threshold: 3, duration: Duration::from_millis(600) };
    let sim = directory(accounts(), |l| l.lockout = Some(policy)).await;
    let mut c = Client::connect(sim.ldap_addr().unwrap()).await;
    let dn = "CN=lock-me,CN=Users,DC=demo,DC=example";
    // A good bind starts the count again, as AD's badPwdCount.
    for _ in 0..2 {
        assert_eq!(data_code(&c.bind(dn, "wrong").await), Some(Refusal::InvalidCredentials));
    }
    assert_eq!(c.bind(dn, "lock-me-pw").await.code, 0);
    for _ in 0..3 {
        assert_eq!(data_code(&c.bind(dn, "wrong").await), Some(Refusal::InvalidCredentials), "up to the threshold");
    }
    let locked_at = std::time::Instant::now();
    assert_eq!(data_code(&c.bind(dn, "lock-me-pw").await), Some(Refusal::AccountLocked), "even the right password");
    assert_eq!(data_code(&c.bind(dn, "wrong").await), Some(Refusal::AccountLocked));
    // The account's own entry says so.
    assert_eq!(c.bind("henry@demo.example", "henry-pw").await.code, 0, "other accounts are not locked");
    let (entries, _) = c.search(dn, Scope::Base, "(objectClass=*)", &["msDS-User-Account-Control-Computed"], 0).await;
    assert_eq!(entries[0].first("msDS-User-Account-Control-Computed"), Some(&b"16"[..]));
    let stats = sim.ldap_stats("lock-me");
    assert_eq!((stats.binds, stats.failed_binds), (8, 7), "{stats:?}");
    // Once the duration has passed, the right password binds again.
    tokio::time::sleep(policy.duration.saturating_sub(locked_at.elapsed()) + Duration::from_millis(50)).await;
    assert_eq!(c.bind(dn, "lock-me-pw").await.code, 0);
}

#[tokio::test]
async fn searches_have_scopes_filters_a_size_limit_and_ads_answers() {
    let sim = directory(accounts(), |_| {}).await;
    let mut c = Client::connect(sim.ldap_addr().unwrap()).await;
    // The root entry, anonymously.
    let (root, done) = c.search("", Scope::Base, "(objectClass=*)", &["*"], 0).await;
    assert_eq!((root.len(), done.code), (1, 0));
    assert_eq!(root[0].dn, "");
    assert_eq!(root[0].first("defaultNamingContext"), Some(BASE.as_bytes()));
    let versions = &root[0].attributes.iter().find(|(n, _)| n == "supportedLDAPVersion").unwrap().1;
    assert!(versions.contains(&b"3".to_vec()));
    assert_eq!(root[0].first("dnsHostName"), Some(&b"DC1.demo.example"[..]));
    let (some, _) = c.search("", Scope::Base, "(objectClass=*)", &["supportedLDAPVersion"], 1).await;
    assert_eq!(some[0].attributes.len(), 1, "only what was asked");
    // Below it, not before a bind.
    let (none, done) = c.search(BASE, Scope::Sub, "(objectClass=*)", &[], 0).await;
    assert!(none.is_empty());
    assert_eq!(done.code, 1);
    assert!(done.message.starts_with("000004DC: LdapErr: DSID-"), "{done:?}");

    assert_eq!(c.bind("henry@demo.example", "henry-pw").await.code, 0);
    let users = "CN=Users,DC=demo,DC=example";
    let (all, done) = c.search(BASE, Scope::Sub, "(objectClass=*)", &[], 0).await;
    assert_eq!((all.len(), done.code), (2 + accounts().len(), 0));
    let (one, _) = c.search(BASE, Scope::One, "(objectClass=*)", &["1.1"], 0).await;
    assert_eq!(one.iter().map(|e| e.dn.as_str()).collect::<Vec<_>>(), [users]);
    assert!(one[0].attributes.is_empty(), "1.1: no attributes");
    let (people, _) =
        c.search(users, Scope::One, "(&(objectCategory=person)(objectClass=user))", &["sAMAccountName"], 0).await;
    assert_eq!(people.len(), accounts().len());
    for (filter, want) in [
        ("(sAMAccountName=HENRY)", vec!["henry"]),
        ("(userPrincipalName=henry@demo.example)", vec!["henry"]),
        ("(sAMAccountName=*o*)", vec!["dora", "lock-me", "mona"]),
        ("(&(sAMAccountName=j*)(!(sAMAccountName=*x)))", vec!["judy"]),
        ("(|(sAMAccountName=axel)(cn=irene))", vec!["axel", "irene"]),
        ("(userAccountControl:1.2.840.113556.1.4.803:=2)", vec!["dora"]),
        ("(mail=*)", vec![]),
    ] {
        let (found, done) = c.search(BASE, Scope::Sub, filter, &["sAMAccountName"], 0).await;
        let names: Vec<String> =
            found.iter().map(|e| String::from_utf8(e.first("sAMAccountName").unwrap().to_vec()).unwrap()).collect();
        assert_eq!((names, done.code), (want.iter().map(|s| s.to_string()).collect(), 0), "{filter}");
    }
    // A size limit: as many entries as allowed, then 4.
    let (two, done) = c.search(users, Scope::One, "(objectClass=user)", &[], 2).await;
    assert_eq!((two.len(), done.code), (2, 4));
    // A base that does not exist: 32 and the best match; one that is not a DN: 34.
    let (none, done) = c.search("CN=nobody,CN=Users,DC=demo,DC=example", Scope::Base, "(objectClass=*)", &[], 0).await;
    assert!(none.is_empty());
    assert_eq!((done.code, done.matched_dn.as_str()), (32, users), "{done:?}");
    assert!(done.message.starts_with("0000208D: NameErr: DSID-") && done.message.contains("NO_OBJECT"), "{done:?}");
    let (_, done) = c.search("DC=elsewhere", Scope::Base, "(objectClass=*)", &[], 0).await;
    assert_eq!((done.code, done.matched_dn.as_str()), (32, ""));
    assert_eq!(c.search("not a dn", Scope::Base, "(objectClass=*)", &[], 0).await.1.code, 34);

    // The password expiry AD computes, asked for by name only.
    let expiry = "msDS-UserPasswordExpiryTimeComputed";
    let filetime = |e: &Entry| -> i64 { std::str::from_utf8(e.first(expiry).unwrap()).unwrap().parse().unwrap() };
    let (plain, _) = c.search(HENRY_DN, Scope::Base, "(objectClass=*)", &["*"], 0).await;
    assert!(plain[0].first(expiry).is_none(), "constructed: not among all attributes");
    assert_eq!(plain[0].first("sAMAccountName"), Some(&b"henry"[..]));
    let (henry, _) = c.search(HENRY_DN, Scope::Base, "(objectClass=*)", &[expiry], 1).await;
    let now = crate::results::unix_seconds(std::time::SystemTime::now()) as i64;
    let in_seconds = filetime(&henry[0]) / 10_000_000 - 11_644_473_600 - now;
    assert!((10 * 86_400 - 60..=10 * 86_400).contains(&in_seconds), "{in_seconds}");
    let (never, _) = c.search(BASE, Scope::Sub, "(userPrincipalName=never@demo.example)", &[expiry], 1).await;
    assert_eq!(filetime(&never[0]), i64::MAX);
    let (mona, _) = c.search(BASE, Scope::Sub, "(sAMAccountName=mona)", &[expiry], 1).await;
    assert_eq!(filetime(&mona[0]), 0, "must change");
    assert_eq!(sim.ldap_stats("henry").searches, 18);
    assert_eq!(sim.ldap_stats("").searches, 3);
}

#[tokio::test]
async fn start_tls_and_ldaps_use_the_simulators_certificate() {
    let (config, roots, _) = certificate();
    let sim = directory(accounts(), |l| {
        l.tls = Some(config);
        l.ldaps_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = sim.ldap_addr().unwrap();
    // StartTLS, then a bind over it.
    let mut c = Client::connect(addr).await.start_tls(&roots).await;
    assert_eq!(c.bind("DEMO\\henry", "henry-pw").await.code, 0);
    assert_eq!(c.whoami().await, "u:DEMO\\henry");
    let again = c.extended(STARTTLS_OID).await;
    assert_eq!(again.code, 1, "TLS is already in effect: {again:?}");
    // ldaps://: TLS from the first byte.
    let mut s = Client::ldaps(sim.ldaps_addr().expect("ldaps listens"), &roots).await;
    assert_eq!(s.bind(HENRY_DN, "henry-pw").await.code, 0);
    let (root, _) = s.search("", Scope::Base, "(objectClass=*)", &["supportedExtension"], 1).await;
    let extensions = &root[0].attributes[0].1;
    assert!(extensions.contains(&STARTTLS_OID.as_bytes().to_vec()), "{extensions:?}");
    let stats = sim.ldap_stats("henry");
    assert_eq!((stats.binds, stats.tls_binds), (2, 2), "{stats:?}");
    // A client that does not trust the certificate gets nothing.
    let (_, other, _) = certificate();
    let plain = Client::connect(sim.ldaps_addr().unwrap()).await;
    assert!(Client::tls(plain.io, &other).await.is_err());

    // Without a certificate StartTLS is refused, as by a DC that has none.
    let bare = directory(accounts(), |_| {}).await;
    let mut c = Client::connect(bare.ldap_addr().unwrap()).await;
    let r = c.extended(STARTTLS_OID).await;
    assert_eq!((r.code, r.name.as_deref()), (52, Some(STARTTLS_OID)), "{r:?}");
    assert!(!bare.all_ldap_stats().values().any(|s| s.tls_binds > 0));
}

#[tokio::test]
async fn bad_clients_are_disconnected_and_connections_are_bounded() {
    let sim = directory(accounts(), |_| {}).await;
    let addr = sim.ldap_addr().unwrap();
    let notice = |r: Option<Response>| {
        let r = r.expect("a notice of disconnection");
        assert_eq!((r.id, r.op, r.code), (0, op::EXTENDED_RESPONSE, 2), "{r:?}");
        assert_eq!(r.name.as_deref(), Some(message::NOTICE_OF_DISCONNECTION_OID));
    };
    // Not LDAP at all.
    let mut c = Client::connect(addr).await;
    c.send(b"GET / HTTP/1.1\r\n\r\n").await;
    notice(c.receive().await);
    assert!(c.receive().await.is_none());
    // An operation LDAP does not define (application tag 30).
    let mut c = Client::connect(addr).await;
    let mut body = ber::int(0x02, 1);
    body.extend(ber::tlv(0x7e, &[]));
    c.send(&ber::tlv(0x30, &body)).await;
    notice(c.receive().await);
    // A message over the size cap: refused from its first bytes, before it is whole.
    let mut c = Client::connect(addr).await;
    let huge = message::bind_request(1, HENRY_DN, &vec![b'x'; 200 * 1024], &[]);
    c.send(&huge[..64]).await;
    notice(c.receive().await);
    // A write is refused, anonymous or bound, and the connection goes on.
    let mut c = Client::connect(addr).await;
    let mut del = ber::int(0x02, 1);
    del.extend(ber::tlv(0x4a, HENRY_DN.as_bytes()));
    c.send(&ber::tlv(0x30, &del)).await;
    assert_eq!(c.raw_result().await, (0x6b, 1), "a DelResponse: operations error");
    c.id = 1;
    assert_eq!(c.bind(HENRY_DN, "henry-pw").await.code, 0);
    let id = c.next_id();
    let mut del = ber::int(0x02, i64::from(id));
    del.extend(ber::tlv(0x4a, HENRY_DN.as_bytes()));
    c.send(&ber::tlv(0x30, &del)).await;
    assert_eq!(c.raw_result().await, (0x6b, 50), "a DelResponse: insufficient access rights");

    // At most MAX_CONNECTIONS at once: one more is closed at once.
    let mut open = Vec::new();
    for _ in 0..super::server::MAX_CONNECTIONS - 1 {
        open.push(Client::connect(addr).await);
    }
    let mut last = open.pop().unwrap();
    assert_eq!(last.whoami().await, "", "the last slot serves");
    let mut over = Client::connect(addr).await;
    let id = over.next_id();
    over.send(&message::extended_request(id, WHOAMI_OID)).await;
    assert!(over.receive().await.is_none(), "over the bound: closed");
    drop(open);
}

/// The prober's own LDAP probes, as the demo runs them, against the directory: a good account
/// over StartTLS with a search, "Who am I?" and its password expiry; an expired one; a locked
/// one.
#[tokio::test]
async fn the_probers_ldap_probes_read_the_directory() {
    let (config, _, pem) = certificate();
    let sim = directory(accounts(), |l| l.tls = Some(config)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, pem).unwrap();
    let file = dir.path().join("probes.yaml");
    let yaml = format!(
        r#"
targets:
  - name: directory
    protocol: ldap
    url: ldap://127.0.0.1:{port}
    start_tls: true
    tls: {{ca_file: {ca}}}
probes:
  - name: good
    target: directory
    bind_dn: henry@demo.example
    password: henry-pw
    search: {{base: "CN=Users,{BASE}", filter: "(sAMAccountName=henry)", scope: one, expect_entries: 1}}
    whoami: true
    password_expiry: true
  - name: expired
    target: directory
    bind_dn: "CN=irene,CN=Users,{BASE}"
    password: irene-pw
  - name: locked
    target: directory
    bind_dn: 'DEMO\judy'
    password: judy-pw
"#,
        port = sim.ldap_addr().unwrap().port(),
        ca = ca.display(),
    );
    std::fs::write(&file, yaml).unwrap();
    let config = crate::config::Config::load(&file).unwrap();
    let prober = crate::protocol::Prober::new().unwrap();
    let mut outcomes = Vec::new();
    for probe in &config.probes {
        let o = tokio::time::timeout(Duration::from_secs(10), prober.login(&probe.login)).await.unwrap();
        outcomes.push(o);
    }
    let [good, expired, locked] = &outcomes[..] else { panic!("three probes") };
    assert_eq!(good.summary.result.as_str(), "success", "{}", good.detail);
    let expires = good.account.and_then(|a| a.password_expires_in_seconds).expect("the password's expiry");
    assert!((10 * 86_400 - 60..=10 * 86_400).contains(&expires), "{expires}");
    assert!(good.detail.contains("u:DEMO\\henry"), "{}", good.detail);
    assert_eq!(
        (expired.summary.result.as_str(), expired.summary.reason.as_str()),
        ("password_expired", "password_expired")
    );
    assert_eq!((locked.summary.result.as_str(), locked.summary.reason.as_str()), ("auth_failed", "account_locked"));
    assert!(locked.reason_text.contains("data 775"), "{}", locked.reason_text);
    // Every bind crossed over TLS.
    for user in ["henry", "irene", "judy"] {
        let s = sim.ldap_stats(user);
        assert_eq!((s.binds, s.tls_binds), (1, 1), "{user}: {s:?}");
    }
    assert_eq!(sim.ldap_stats("henry").whoami, 1);
}

/// `simulator.ldap` in a probes file: read with the accounts, every problem located.
#[test]
fn the_ldap_block_is_read_and_its_problems_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probes.yaml");
    let block = |ldap: &str, account: &str| {
        format!("simulator:\n  listen: 127.0.0.1:18080\n  accounts:\n    - {{username: {account}, password: x, locked: true, password_expires_in: 10d}}\n  ldap: {ldap}\n")
    };
    std::fs::write(
        &file,
        block("{listen: 127.0.0.1:17389, base_dn: \"DC=demo,DC=example\", lockout_threshold: 3}", "henry"),
    )
    .unwrap();
    let loaded = crate::simulator::SimulatorBlock::load(&file).unwrap().unwrap().prepare().unwrap();
    let ldap = loaded.settings.ldap.unwrap();
    assert_eq!(
        (ldap.base_dn(), ldap.dns_domain(), ldap.netbios.as_str()),
        ("DC=demo,DC=example", "demo.example", "DEMO")
    );
    assert_eq!(ldap.lockout.map(|l| (l.threshold, l.duration)), Some((3, Duration::from_secs(1800))));
    assert!(ldap.tls.is_none(), "no tls: in the block");
    let account = &loaded.settings.accounts[0];
    assert!(account.locked);
    assert_eq!(account.password_expires_in, Some(Duration::from_secs(10 * 86_400)));

    let cases = [
        (
            block("{base_dn: \"OU=x\"}", "henry"),
            ":5:10: simulator.ldap.base_dn: \"OU=x\" is not a domain's naming context",
        ),
        (
            block("{base_dn: \"DC=x\", ldaps_listen: 127.0.0.1:17636}", "henry"),
            "simulator.ldap.ldaps_listen: needs the simulator's tls:",
        ),
        (
            block("{base_dn: \"DC=x\", listen: 127.0.0.1:18080}", "henry"),
            "simulator.ldap.listen: 127.0.0.1:18080 is already simulator.listen",
        ),
        (
            block("{base_dn: \"DC=x\", lockout_duration: 5q}", "henry"),
            "simulator.ldap.lockout_duration: invalid duration",
        ),
        (
            block("{base_dn: \"DC=x\", lockout_duration: 5m}", "henry"),
            "simulator.ldap.lockout_duration: needs lockout_threshold",
        ),
        (block("{base_dn: \"DC=x\", colour: blue}", "henry"), "unknown field `colour`"),
        (
            block("{base_dn: \"DC=x\"}", "a@b"),
            ":4:8: simulator.accounts[0].username: \"a@b\" cannot be a directory account",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&file, &text).unwrap();
        let err = crate::simulator::SimulatorBlock::load(&file).unwrap_err().to_string();
        assert!(err.contains(want), "{text}\n{err}");
        assert!(!err.contains("password: x"), "{err}");
    }
}
