//! One run of an LDAP probe: connect (TLS at once or by StartTLS), bind as the probe account —
//! directly, or after the service account's bind and a search for the user's DN — then the
//! probe's search, the account's password expiry and "Who am I?", each only if asked, and an
//! unbind. Every message is timed as a step, traced with the DN and the operation (never the
//! password), and read under the run's deadline. While the lockout guard holds the credentials
//! back, [`root_dse`] measures the directory with an anonymous read instead.

use std::time::{Instant, SystemTime};

use secrecy::ExposeSecret as _;

use super::classify::{self, Policy};
use super::message::{self, op, Entry, Response, Scope, PPOLICY_OID, STARTTLS_OID, WHOAMI_OID};
use super::names::{self, *};
use super::session::{Fault, Session, Stream};
use super::{filter, Account, Count, LdapLogin, Security, STATUS};
use crate::protocol::outcome::{AccountFacts, Finished, LogoutOutcome, Verdict};
use crate::protocol::{Attempt, Lockout, Reason, ResultClass, Step};

/// Active Directory's computed password expiry of an account (a FILETIME).
const AD_PASSWORD_EXPIRY: &str = "msDS-UserPasswordExpiryTimeComputed";
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_TO_UNIX: i64 = 11_644_473_600;

/// A result code as the family's status: `u16::MAX` is "no answer", so codes beyond are cut
/// just below it.
fn status(code: i64) -> u16 {
    u16::try_from(code).ok().filter(|c| *c != STATUS.no_answer).unwrap_or(STATUS.no_answer - 1)
}

/// A run in progress: the attempt, the login, and what the run learnt.
struct Run<'r, 'a> {
    attempt: &'r mut Attempt<'a>,
    login: &'r LdapLogin,
    /// The first answer of the attempt has been read (its phases are noted).
    answered: bool,
    account: AccountFacts,
}

impl Run<'_, '_> {
    fn peer(&self) -> String {
        format!("{}:{}", self.login.target.host, self.login.target.port)
    }

    /// Notes an operation in the trace.
    fn trace(&mut self, label: Step, line: String, fields: Vec<(String, Option<Vec<u8>>)>) {
        let peer = self.peer();
        if let Some(t) = self.attempt.trace() {
            t.operation(label.as_str(), &line, peer, fields);
        }
    }

    /// Notes an answer in the trace: its code, message and controls.
    fn trace_answer(&mut self, r: &Response, extra: Vec<(&str, String)>) {
        if let Some(t) = self.attempt.trace() {
            let mut shown: Vec<(&str, Vec<u8>)> = vec![("message", r.message.clone().into_bytes())];
            if !r.matched_dn.is_empty() {
                shown.push(("matched-dn", r.matched_dn.clone().into_bytes()));
            }
            for c in &r.controls {
                shown.push(("control", c.oid.clone().into_bytes()));
            }
            shown.extend(extra.into_iter().map(|(k, v)| (k, v.into_bytes())));
            t.response_head(&format!("LDAP {}", r.code), shown.iter().map(|(k, v)| (*k, v.as_slice())));
        }
    }

    /// Sends `bytes` as message `id` of `step` and reads its answer (the first of a search's).
    async fn exchange(
        &mut self,
        session: &mut Session,
        step: Step,
        id: i32,
        bytes: &[u8],
        started: Instant,
    ) -> Result<Response, Verdict> {
        if let Err(f) = session.send(bytes).await {
            return Err(self.fault(step, f, started));
        }
        self.next(session, step, id, started).await
    }

    /// Reads the next message of `id`.
    async fn next(
        &mut self,
        session: &mut Session,
        step: Step,
        id: i32,
        started: Instant,
    ) -> Result<Response, Verdict> {
        match session.receive(id).await {
            Ok((r, (began, ended))) => {
                if !self.answered {
                    self.answered = true;
                    self.attempt.first_answer(Some(began), Some(ended));
                }
                Ok(r)
            }
            Err(f) => Err(self.fault(step, f, started)),
        }
    }

    /// The verdict on a message that got no answer, its step recorded.
    fn fault(&mut self, step: Step, f: Fault, started: Instant) -> Verdict {
        let code = match &f {
            Fault::Disconnected(r) => status(r.code),
            _ => STATUS.no_answer,
        };
        self.attempt.record(step, code, None, started);
        let detail = f.detail();
        if let Some(t) = self.attempt.trace() {
            t.failure(&detail);
        }
        let mut v = Verdict::of(step, f.class(), detail);
        if let Fault::Disconnected(r) = f {
            v.reason = UNAVAILABLE;
            v.reason_text = r.message;
        }
        v
    }

    /// A verdict on an answer of the wrong kind.
    fn wrong_answer(&mut self, step: Step, r: &Response, started: Instant) -> Verdict {
        self.attempt.record(step, status(r.code), None, started);
        let detail = format!("{} answered {step} with operation {:#04x}, not its answer", self.peer(), r.op);
        Verdict::of(step, ResultClass::InvalidResponse, detail)
    }

    /// Connects, with TLS at once (`ldaps://`) or by StartTLS.
    async fn open(&mut self) -> Result<Session, Verdict> {
        let target = self.login.target.clone();
        let started = self.attempt.starting();
        self.trace(CONNECT, format!("CONNECT {}", target.url), Vec::new());
        let tcp = match self.attempt.connect(&target.host, target.port).await {
            Ok(tcp) => {
                // Small messages, each awaited: Nagle's algorithm would hold one back for the
                // peer's delayed acknowledgement (40 ms on Linux).
                let _ = tcp.set_nodelay(true);
                tcp
            }
            Err(refused) => {
                self.attempt.record(CONNECT, STATUS.no_answer, None, started);
                return Err(Verdict::of(CONNECT, refused.class, refused.detail));
            }
        };
        let stream = if target.security == Security::Ldaps {
            match self.attempt.tls(tcp, &target.host).await {
                Ok(tls) => Stream::Tls(Box::new(tls)),
                Err(refused) => {
                    self.attempt.record(CONNECT, STATUS.no_answer, None, started);
                    return Err(Verdict::of(CONNECT, refused.class, refused.detail));
                }
            }
        } else {
            Stream::Plain(tcp)
        };
        self.attempt.record(CONNECT, 0, None, started);
        let mut session = Session::new(stream, self.attempt.deadline, self.attempt.max_body_bytes, self.peer());
        if target.security == Security::StartTls {
            session = self.start_tls(session).await?;
        }
        Ok(session)
    }

    /// StartTLS (RFC 4511 §4.14), then the TLS handshake over the same connection.
    async fn start_tls(&mut self, mut session: Session) -> Result<Session, Verdict> {
        let started = self.attempt.starting();
        let id = session.next_id();
        self.trace(START_TLS, "LDAP ExtendedRequest StartTLS".to_owned(), Vec::new());
        let r =
            self.exchange(&mut session, START_TLS, id, &message::extended_request(id, STARTTLS_OID), started).await?;
        self.trace_answer(&r, Vec::new());
        if r.op != op::EXTENDED_RESPONSE {
            return Err(self.wrong_answer(START_TLS, &r, started));
        }
        if r.code != 0 {
            self.attempt.record(START_TLS, status(r.code), None, started);
            return Err(Verdict {
                result: ResultClass::TlsError,
                reason: START_TLS_REFUSED,
                reason_text: r.message.clone(),
                ..Verdict::of(START_TLS, ResultClass::TlsError, format!("StartTLS refused (LDAP {})", r.code))
            });
        }
        if session.has_unread() {
            // Bytes sent before the handshake would be read as if protected (RFC 4513 §3.1.1).
            self.attempt.record(START_TLS, 0, None, started);
            let detail = format!("{} sent more before the TLS handshake of StartTLS", self.peer());
            return Err(Verdict::of(START_TLS, ResultClass::InvalidResponse, detail));
        }
        let (stream, last_id) = session.into_parts();
        let Stream::Plain(tcp) = stream else { unreachable!("StartTLS is only sent in the clear") };
        let host = self.login.target.host.clone();
        match self.attempt.tls(tcp, &host).await {
            Ok(tls) => {
                self.attempt.record(START_TLS, 0, None, started);
                let mut s = Session::new(
                    Stream::Tls(Box::new(tls)),
                    self.attempt.deadline,
                    self.attempt.max_body_bytes,
                    self.peer(),
                );
                s.resume_ids(last_id);
                Ok(s)
            }
            Err(refused) => {
                self.attempt.record(START_TLS, 0, None, started);
                Err(Verdict::of(START_TLS, refused.class, refused.detail))
            }
        }
    }

    /// A simple bind as `name`, the password policy control asked for. `service`: the target's
    /// service account (its refusal is the application's, `client_rejected`).
    async fn bind(
        &mut self,
        session: &mut Session,
        step: Step,
        name: &str,
        password: &secrecy::SecretString,
        service: bool,
    ) -> Result<Option<Policy>, Verdict> {
        let started = self.attempt.starting();
        let id = session.next_id();
        self.trace(
            step,
            "LDAP BindRequest (simple)".to_owned(),
            vec![
                ("name".to_owned(), Some(name.as_bytes().to_vec())),
                ("password".to_owned(), None),
                ("control".to_owned(), Some(PPOLICY_OID.as_bytes().to_vec())),
            ],
        );
        let request = message::bind_request(id, name, password.expose_secret().as_bytes(), &[PPOLICY_OID]);
        let r = self.exchange(session, step, id, &request, started).await?;
        drop(request);
        if r.op != op::BIND_RESPONSE {
            return Err(self.wrong_answer(step, &r, started));
        }
        self.attempt.record(step, status(r.code), None, started);
        let policy = match r.control(PPOLICY_OID).map(classify::policy) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                // A control that cannot be read refines nothing; the result code still stands.
                self.attempt.note(&format!("the password policy control cannot be read: {e}"));
                None
            }
        };
        let mut extra = Vec::new();
        if let Some(p) = &policy {
            extra.push(("password-policy", format!("{p:?}")));
        }
        self.trace_answer(&r, extra);
        if !service {
            if let Some(p) = &policy {
                if let Some(s) = p.expires_in {
                    self.account.password_expires_in_seconds = Some(i64::try_from(s).unwrap_or(i64::MAX));
                }
                if let Some(n) = p.grace_left {
                    self.account.grace_logins_remaining = Some(n);
                }
            }
        }
        match classify::bind(r.code, &r.message, policy.as_ref()) {
            None => Ok(policy),
            Some(refusal) => {
                let (result, reason, lockout) = names::refusal(refusal, service);
                let sub = classify::ad_data(&r.message).map(|d| format!(", AD data {d:x}")).unwrap_or_default();
                let who = if service { "the service account" } else { "the probe account" };
                let detail = format!("bind as {who} {name} refused: LDAP {}{sub} ({})", r.code, refusal.name());
                Err(Verdict { reason, reason_text: r.message, lockout, ..Verdict::of(step, result, detail) })
            }
        }
    }

    /// A search; its entries (up to `keep` of them kept), how many there were, and how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &mut self,
        session: &mut Session,
        step: Step,
        base: &str,
        scope: Scope,
        filter_text: &str,
        filter_ber: &[u8],
        attributes: &[&str],
        size_limit: u32,
        keep: usize,
    ) -> Result<Found, Verdict> {
        let started = self.attempt.starting();
        let id = session.next_id();
        self.trace(
            step,
            format!("LDAP SearchRequest base={base:?} scope={} filter={filter_text}", scope.name()),
            vec![("attributes".to_owned(), Some(attributes.join(",").into_bytes()))],
        );
        let request = message::search_request(id, base, scope, filter_ber, attributes, i64::from(size_limit));
        let mut r = self.exchange(session, step, id, &request, started).await?;
        let mut found = Found::default();
        // A server that sends more than it was asked for is cut off: what one run reads is bounded.
        let most = u64::from(size_limit.max(1)) + super::config::MAX_ENTRIES as u64;
        loop {
            match r.op {
                op::SEARCH_ENTRY => {
                    found.entries += 1;
                    if found.kept.len() < keep {
                        found.kept.extend(r.entry.take());
                    }
                }
                op::SEARCH_REFERENCE => found.references += 1,
                op::SEARCH_DONE => break,
                _ => return Err(self.wrong_answer(step, &r, started)),
            }
            if found.entries + found.references > most {
                self.attempt.record(step, STATUS.no_answer, None, started);
                let detail = format!("{} sent more than {most} entries and references to one search", self.peer());
                return Err(Verdict::of(step, ResultClass::InvalidResponse, detail));
            }
            r = self.next(session, step, id, started).await?;
        }
        self.attempt.record(step, status(r.code), None, started);
        let shown = format!("{} entries, {} references", found.entries, found.references);
        self.trace_answer(&r, vec![("found", shown)]);
        found.code = r.code;
        found.message = r.message;
        Ok(found)
    }

    /// A search that ended with a code other than success (or size limit exceeded).
    fn search_refused(&self, step: Step, found: Found, base: &str) -> Verdict {
        let (result, reason) = match found.code {
            32 => (ResultClass::ValidationFailed, NO_SUCH_OBJECT),
            10 => (ResultClass::ValidationFailed, REFERRAL),
            51 => (ResultClass::RateLimited, BUSY),
            52 => (ResultClass::HttpError, UNAVAILABLE),
            53 => (ResultClass::HttpError, UNWILLING_TO_PERFORM),
            _ => (ResultClass::ValidationFailed, Reason::OTHER),
        };
        let lockout = if result == ResultClass::RateLimited { Lockout::Throttle } else { Lockout::Neutral };
        let detail = format!("search of {base:?} refused: LDAP {}", found.code);
        Verdict { reason, reason_text: found.message, lockout, ..Verdict::of(step, result, detail) }
    }

    /// Search-then-bind's first half: the service account's bind, if the target has one, and
    /// the search for the user's DN.
    async fn find_user(&mut self, session: &mut Session) -> Result<String, Verdict> {
        let Account::Search { username, base, scope, filter: template } = &self.login.account else {
            unreachable!("only for search-then-bind probes")
        };
        if let Some((dn, password)) = self.login.target.service.clone() {
            self.bind(session, SERVICE_BIND, &dn, &password, true).await?;
        }
        let filter_text = template.replace("{username}", &filter::escape(username));
        let filter_ber = filter::encode(&filter_text).map_err(|e| {
            // Checked at load with a plain name; an escaped one cannot break it, but say so if it does.
            Verdict::of(USER_SEARCH, ResultClass::InternalError, format!("the user filter cannot be made: {e}"))
        })?;
        let found = self.search(session, USER_SEARCH, base, *scope, &filter_text, &filter_ber, &[], 2, 1).await?;
        if !matches!(found.code, 0 | 4) {
            return Err(self.search_refused(USER_SEARCH, found, base));
        }
        match (found.entries, found.kept.into_iter().next()) {
            (1, Some(entry)) => Ok(entry.dn),
            (0, _) => Err(Verdict {
                reason: UNKNOWN_USER,
                // No bind was tried: nothing to hold back.
                lockout: Lockout::Neutral,
                ..Verdict::of(
                    USER_SEARCH,
                    ResultClass::AuthFailed,
                    format!("no entry under {base:?} matches {filter_text}"),
                )
            }),
            (n, _) => Err(Verdict {
                reason: ENTRY_COUNT,
                ..Verdict::of(
                    USER_SEARCH,
                    ResultClass::ValidationFailed,
                    format!("{n} entries under {base:?} match {filter_text}: the user is ambiguous"),
                )
            }),
        }
    }

    /// The probe's search after its bind: what it found, in words, or the verdict on it.
    async fn probe_search(&mut self, session: &mut Session) -> Result<Option<String>, Verdict> {
        let Some(s) = self.login.search.clone() else { return Ok(None) };
        let limit = match s.count {
            Count::Exactly(n) => n + 1,
            // A size limit of 0 is "no limit" to LDAP: at least one is asked for.
            Count::AtLeast(n) => n.max(1),
        };
        let found = self.search(session, SEARCH, &s.base, s.scope, &s.filter, &s.filter_ber, &[], limit, 0).await?;
        if !matches!(found.code, 0 | 4) {
            return Err(self.search_refused(SEARCH, found, &s.base));
        }
        let n = found.entries;
        let ok = match s.count {
            Count::Exactly(want) => n == u64::from(want),
            Count::AtLeast(want) => n >= u64::from(want),
        };
        let entries = if n == 1 { "1 entry matches".to_owned() } else { format!("{n} entries match") };
        let words = format!("{entries} {} under {:?}", s.filter, s.base);
        if ok {
            return Ok(Some(words));
        }
        let want = match s.count {
            Count::Exactly(want) if found.code == 4 => format!("more than {want} where exactly {want} were expected"),
            Count::Exactly(want) => format!("{n} where exactly {want} were expected"),
            Count::AtLeast(want) => format!("{n} where at least {want} were expected"),
        };
        let detail = format!("search of {:?} for {}: {want}", s.base, s.filter);
        Err(Verdict { reason: ENTRY_COUNT, ..Verdict::of(SEARCH, ResultClass::ValidationFailed, detail) })
    }

    /// Active Directory's computed password expiry of the bound account, into the run's facts.
    async fn password_expiry(&mut self, session: &mut Session, bound: &str) -> Result<(), Verdict> {
        if !self.login.password_expiry {
            return Ok(());
        }
        // A DN is read directly; a UPN (`user@corp.example.com`) is looked for under the naming
        // context of its domain, AD's default UPN suffix.
        let (base, scope, filter_text) = match bound.split_once('@') {
            Some((_, domain)) if !bound.contains('=') => {
                let base = domain.split('.').map(|part| format!("DC={part}")).collect::<Vec<_>>().join(",");
                (base, Scope::Sub, format!("(userPrincipalName={})", filter::escape(bound)))
            }
            _ => (bound.to_owned(), Scope::Base, "(objectClass=*)".to_owned()),
        };
        let filter_ber = filter::encode(&filter_text)
            .map_err(|e| Verdict::of(SEARCH, ResultClass::InternalError, format!("cannot search: {e}")))?;
        let found =
            self.search(session, SEARCH, &base, scope, &filter_text, &filter_ber, &[AD_PASSWORD_EXPIRY], 1, 1).await?;
        if !matches!(found.code, 0 | 4) {
            return Err(self.search_refused(SEARCH, found, &base));
        }
        let value = found.kept.first().and_then(|e| e.first(AD_PASSWORD_EXPIRY)).map(|v| v.to_vec());
        let Some(value) = value else {
            let detail = format!("{bound} has no {AD_PASSWORD_EXPIRY} (not Active Directory, or not readable)");
            return Err(Verdict::of(SEARCH, ResultClass::ValidationFailed, detail));
        };
        let filetime: Option<i64> = std::str::from_utf8(&value).ok().and_then(|t| t.trim().parse().ok());
        match filetime {
            // Never expires (DONT_EXPIRE_PASSWORD, or no maximum age), or must change now (the
            // bind says that better).
            Some(i64::MAX) | Some(0) => {}
            Some(ft) => {
                let expires_unix = ft / 10_000_000 - FILETIME_TO_UNIX;
                let now = crate::results::unix_seconds(SystemTime::now()) as i64;
                self.account.password_expires_in_seconds = Some(expires_unix - now);
            }
            None => {
                let detail = format!("{AD_PASSWORD_EXPIRY} of {bound} is not a number");
                return Err(Verdict::of(SEARCH, ResultClass::InvalidResponse, detail));
            }
        }
        Ok(())
    }

    /// "Who am I?" (RFC 4532): it must name the bound identity.
    async fn whoami(&mut self, session: &mut Session, bound: &str) -> Result<Option<String>, Verdict> {
        if !self.login.whoami {
            return Ok(None);
        }
        let started = self.attempt.starting();
        let id = session.next_id();
        self.trace(WHO_AM_I, "LDAP ExtendedRequest WhoAmI".to_owned(), Vec::new());
        let r = self.exchange(session, WHO_AM_I, id, &message::extended_request(id, WHOAMI_OID), started).await?;
        if r.op != op::EXTENDED_RESPONSE {
            return Err(self.wrong_answer(WHO_AM_I, &r, started));
        }
        self.attempt.record(WHO_AM_I, status(r.code), None, started);
        let authz = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        self.trace_answer(&r, vec![("authzid", authz.clone())]);
        if r.code != 0 {
            let detail = format!("Who am I? refused (LDAP {}): the server may not support it", r.code);
            return Err(Verdict {
                reason_text: r.message,
                ..Verdict::of(WHO_AM_I, ResultClass::ValidationFailed, detail)
            });
        }
        let username = match &self.login.account {
            Account::Search { username, .. } => Some(username.as_str()),
            Account::Name(_) => None,
        };
        if same_identity(&authz, bound, username) {
            return Ok(Some(authz));
        }
        let shown = if authz.is_empty() { "anonymous".to_owned() } else { authz.chars().take(120).collect() };
        let detail = format!("Who am I? names {shown}, not {bound}");
        Err(Verdict { reason: WRONG_IDENTITY, ..Verdict::of(WHO_AM_I, ResultClass::ValidationFailed, detail) })
    }

    /// Unbinds and closes (a failure there fails nothing: the login was made).
    async fn unbind(&mut self, session: &mut Session) -> LogoutOutcome {
        let started = self.attempt.starting();
        self.trace(UNBIND, "LDAP UnbindRequest".to_owned(), Vec::new());
        match session.unbind().await {
            Ok(()) => {
                self.attempt.record(UNBIND, 0, None, started);
                LogoutOutcome { ok: true, status: 0, detail: "unbound".to_owned() }
            }
            Err(f) => {
                self.attempt.record(UNBIND, STATUS.no_answer, None, started);
                LogoutOutcome { ok: false, status: STATUS.no_answer, detail: f.detail() }
            }
        }
    }

    /// The run's end: `verdict`, the session ended first when there is one.
    async fn end(&mut self, session: Option<&mut Session>, verdict: Verdict) -> Finished {
        let login_done = self.attempt.answered_until();
        let session_end = match session {
            Some(s) => Some(self.unbind(s).await),
            None => None,
        };
        let account = (self.account != AccountFacts::default()).then_some(self.account);
        Finished { login_done, session_end, account, ..Finished::from(verdict) }
    }
}

/// What a search found.
#[derive(Debug, Default)]
struct Found {
    entries: u64,
    references: u64,
    /// The first entries, as many as asked to keep.
    kept: Vec<Entry>,
    code: i64,
    message: String,
}

/// Whether "Who am I?"'s `authz` names the identity bound as `bound` (by DN, or `u:` and a
/// name: Active Directory's `u:DOMAIN\user`).
fn same_identity(authz: &str, bound: &str, username: Option<&str>) -> bool {
    fn dn(text: &str) -> String {
        let mut out = String::new();
        for part in text.split(',') {
            if !out.is_empty() {
                out.push(',');
            }
            let part: Vec<String> = part.split('=').map(|p| p.trim().to_lowercase()).collect();
            out.push_str(&part.join("="));
        }
        out
    }
    if let Some(d) = authz.strip_prefix("dn:") {
        return !d.trim().is_empty() && dn(d) == dn(bound);
    }
    if let Some(u) = authz.strip_prefix("u:") {
        let user = u.rsplit('\\').next().unwrap_or(u).trim();
        let bound_user = bound.split('@').next().unwrap_or(bound);
        return !user.is_empty()
            && (user.eq_ignore_ascii_case(bound)
                || user.eq_ignore_ascii_case(bound_user)
                || username.is_some_and(|n| user.eq_ignore_ascii_case(n)));
    }
    false
}

/// One attempt at the probe's login.
pub(super) async fn run(attempt: &mut Attempt<'_>, login: &LdapLogin) -> Finished {
    let mut run = Run { attempt, login, answered: false, account: AccountFacts::default() };
    let mut session = match run.open().await {
        Ok(s) => s,
        Err(v) => return run.end(None, v).await,
    };
    let bound = match &login.account {
        Account::Name(name) => Ok(name.clone()),
        Account::Search { .. } => run.find_user(&mut session).await,
    };
    let bound = match bound {
        Ok(b) => b,
        Err(v) => return run.end(Some(&mut session), v).await,
    };
    if let Err(v) = run.bind(&mut session, BIND, &bound, &login.password, false).await {
        return run.end(Some(&mut session), v).await;
    }
    let mut said = vec![format!("bound as {bound}")];
    match run.probe_search(&mut session).await {
        Ok(words) => said.extend(words),
        Err(v) => return run.end(Some(&mut session), v).await,
    }
    if let Err(v) = run.password_expiry(&mut session, &bound).await {
        return run.end(Some(&mut session), v).await;
    }
    match run.whoami(&mut session, &bound).await {
        Ok(authz) => said.extend(authz.map(|a| format!("Who am I? {a}"))),
        Err(v) => return run.end(Some(&mut session), v).await,
    }
    let last = *[WHO_AM_I, SEARCH, BIND].iter().find(|s| login.sends_step(**s)).unwrap_or(&BIND);
    let verdict = Verdict::of(last, ResultClass::Success, said.join("; "));
    run.end(Some(&mut session), verdict).await
}

/// While the lockout guard holds the credentials back: an anonymous read of the root entry,
/// which cannot lock anyone. Any LDAP answer is a success (the directory answers); the run core
/// makes the outcome the held one.
pub(super) async fn root_dse(attempt: &mut Attempt<'_>, login: &LdapLogin) -> Finished {
    let mut run = Run { attempt, login, answered: false, account: AccountFacts::default() };
    let mut session = match run.open().await {
        Ok(s) => s,
        Err(v) => return run.end(None, v).await,
    };
    let all = filter::encode("(objectClass=*)").expect("a constant filter");
    let found = match run
        .search(&mut session, ROOT_DSE, "", Scope::Base, "(objectClass=*)", &all, &["supportedLDAPVersion"], 1, 0)
        .await
    {
        Ok(f) => f,
        Err(v) => return run.end(Some(&mut session), v).await,
    };
    let detail = format!(
        "the directory answered an anonymous read of its root entry (LDAP {}, {} entry)",
        found.code, found.entries
    );
    run.end(Some(&mut session), Verdict::of(ROOT_DSE, ResultClass::Success, detail)).await
}

impl LdapLogin {
    /// Whether a healthy run sends `step` (see [`crate::protocol::FamilyLogin::sends`]).
    fn sends_step(&self, step: Step) -> bool {
        crate::protocol::family::Login::sends(self, step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_am_i_is_compared_as_directories_write_it() {
        let dn = "uid=probe-user,ou=People,dc=authprobe,dc=test";
        assert!(same_identity("dn:uid=probe-user,ou=people,dc=authprobe,dc=test", dn, None));
        assert!(same_identity("dn:UID=probe-user, ou=People, dc=authprobe, dc=test", dn, None));
        assert!(!same_identity("dn:uid=other,ou=People,dc=authprobe,dc=test", dn, None));
        assert!(!same_identity("", dn, None), "anonymous");
        assert!(!same_identity("dn:", dn, None));
        assert!(same_identity("u:AUTHPROBE\\probe-user", "probe-user@authprobe.test", None));
        assert!(same_identity("u:AUTHPROBE\\probe-user", "CN=Probe,CN=Users,DC=x", Some("probe-user")));
        assert!(!same_identity("u:AUTHPROBE\\someone", "probe-user@authprobe.test", None));
    }

    #[test]
    fn result_codes_beyond_the_status_range_stay_answers() {
        assert_eq!(status(49), 49);
        assert_eq!(status(0), 0);
        assert_eq!(status(70_000), u16::MAX - 1);
        assert_eq!(status(-1), u16::MAX - 1);
        assert!(STATUS.answered(status(65_535)));
    }
}
