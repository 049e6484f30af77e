//! The domain the LDAP server serves — its entries (the domain, `CN=Users`, a user per account)
//! and the root entry — and its answers to binds, searches and "Who am I?", in Active
//! Directory's words. Synchronous: the state's lock is never held across an await.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ldap3_proto::proto::{
    LdapFilter, LdapMatchingRuleAssertion, LdapPartialAttribute, LdapResult, LdapResultCode, LdapSearchRequest,
    LdapSearchResultEntry, LdapSearchScope, LdapSubstringFilter,
};
use secrecy::ExposeSecret as _;

use super::{LdapAccountStats, LdapSettings};
use crate::protocol::ldap::message::{STARTTLS_OID, WHOAMI_OID};
use crate::simulator::{Account, Locked};

/// AD's sub-codes of a refused bind (the `data` of its diagnostic message).
mod data {
    /// Wrong password (and, with the right one, nothing else wrong).
    pub const WRONG_PASSWORD: &str = "52e";
    /// No such user.
    pub const UNKNOWN_USER: &str = "525";
    /// The password has expired.
    pub const PASSWORD_EXPIRED: &str = "532";
    /// The account is disabled.
    pub const DISABLED: &str = "533";
    /// The account has expired.
    pub const ACCOUNT_EXPIRED: &str = "701";
    /// The password must be changed before the first logon.
    pub const MUST_CHANGE: &str = "773";
    /// The account is locked out.
    pub const LOCKED: &str = "775";
}

/// The diagnostic message of a refused simple bind, as Windows Server 2016 and later write it
/// (Windows ends its diagnostic messages with a NUL, unlike Samba).
fn refused(data: &str) -> String {
    format!("80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data {data}, v4563\0")
}

/// AD's answer to an anonymous search below the root entry (result 1).
pub(super) const NEEDS_BIND: &str = "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563\0";

/// AD's answer to a search whose base does not exist (result 32).
fn no_object(best_match: &str) -> String {
    format!("0000208D: NameErr: DSID-03100241, problem 2001 (NO_OBJECT), data 0, best match of:\n\t'{best_match}'\n\0")
}

/// AD's answer to a base that is not a DN (result 34).
fn bad_dn(text: &str) -> String {
    let shown: String = text.chars().take(256).collect();
    format!("00002081: NameErr: DSID-03050F42, problem 2003 (BAD_ATT_SYNTAX), data 0, best match of:\n\t'{shown}'\n\0")
}

/// Entries one search returns at most, whatever its size limit: AD's MaxPageSize.
const MAX_PAGE_SIZE: usize = 1000;
/// FILETIME (100 ns since 1601-01-01) for "never" in AD's time attributes.
const NEVER: i64 = i64::MAX;
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_TO_UNIX: u64 = 11_644_473_600;
/// How long before the simulator's start an expired password or account expired.
const EXPIRED_BEFORE_START: Duration = Duration::from_secs(86_400);
/// AD's computed password expiry of a user (constructed: returned only when asked by name).
const PASSWORD_EXPIRY: &str = "msDS-UserPasswordExpiryTimeComputed";
/// AD's computed account control flags (constructed).
const COMPUTED_CONTROL: &str = "msDS-User-Account-Control-Computed";
/// `userAccountControl` of an enabled user (NORMAL_ACCOUNT) and the flag of a disabled one.
const NORMAL_ACCOUNT: u32 = 0x200;
const ACCOUNTDISABLE: u32 = 0x2;
/// Flags of `msDS-User-Account-Control-Computed`.
const UF_LOCKOUT: u32 = 0x10;
const UF_PASSWORD_EXPIRED: u32 = 0x80_0000;
/// AD's bit-wise matching rules: every bit set, any bit set.
const BIT_AND: &str = "1.2.840.113556.1.4.803";
const BIT_OR: &str = "1.2.840.113556.1.4.804";

/// A DN as compared: its RDNs' attribute types and values trimmed and lower-cased (AD's names
/// ignore case), the first RDN first; the root entry's is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dn(Vec<(String, String)>);

impl Dn {
    /// Reads `text` (RFC 4514, as far as a login needs: escaped commas stay in their value);
    /// `None` when it is not a DN.
    pub fn parse(text: &str) -> Option<Dn> {
        let text = text.trim();
        if text.is_empty() {
            return Some(Dn(Vec::new()));
        }
        let mut rdns = Vec::new();
        let mut escaped = false;
        let mut start = 0;
        for (at, c) in text.char_indices().chain(std::iter::once((text.len(), ','))) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == ',' {
                let (kind, value) = text[start..at].split_once('=')?;
                let (kind, value) = (kind.trim(), value.trim());
                let type_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
                if kind.is_empty() || value.is_empty() || !kind.chars().all(type_char) {
                    return None;
                }
                rdns.push((kind.to_ascii_lowercase(), value.to_lowercase()));
                start = at + 1;
            }
        }
        Some(Dn(rdns))
    }

    /// Whether this is `base` or lies below it.
    fn is_within(&self, base: &Dn) -> bool {
        self.0.len() >= base.0.len() && self.0[self.0.len() - base.0.len()..] == base.0[..]
    }

    fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

/// An entry: its DN as shown and as compared, its attributes, and for a user's its account (its
/// constructed attributes are computed from it).
struct Entry {
    dn: String,
    key: Dn,
    attributes: Vec<(&'static str, Vec<String>)>,
    account: Option<Account>,
}

/// What the directory keeps of one account, or of `""` (anonymous requests, unknown names).
#[derive(Default)]
struct PerAccount {
    stats: LdapAccountStats,
    /// Wrong passwords since the last good one or lockout (AD's badPwdCount).
    bad_passwords: u32,
    /// When the lockout policy locked the account.
    locked_at: Option<Instant>,
}

/// A bind's answer: the account bound (`None`: anonymous) or the refusal, and the account's
/// delay to wait before answering.
pub(crate) struct BindAnswer {
    /// Bound, or refused with this result.
    pub result: Result<Option<String>, LdapResult>,
    /// The account's `delay`.
    pub delay: Option<Duration>,
}

/// A search's entries and its final result.
pub(crate) struct Found {
    /// The entries, attributes chosen as asked.
    pub entries: Vec<LdapSearchResultEntry>,
    /// The SearchResultDone's result.
    pub done: LdapResult,
}

/// The domain, shared by every connection.
pub(crate) struct Directory {
    settings: LdapSettings,
    base: Dn,
    accounts: Arc<Locked<HashMap<String, Account>>>,
    /// `password_expires_in` counts from here.
    started: SystemTime,
    /// By account name, `""` for anonymous requests and unknown names: bounded by the accounts.
    state: Locked<HashMap<String, PerAccount>>,
}

fn result(code: LdapResultCode, matched: &str, message: String) -> LdapResult {
    LdapResult { code, matcheddn: matched.to_owned(), message, referral: Vec::new() }
}

/// A FILETIME (100 ns since 1601-01-01 UTC), as AD's time attributes hold it.
fn filetime(t: SystemTime) -> i64 {
    let unix = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let ticks = (u128::from(unix.as_secs() + FILETIME_TO_UNIX)) * 10_000_000 + u128::from(unix.subsec_nanos() / 100);
    i64::try_from(ticks).unwrap_or(NEVER)
}

impl Directory {
    /// The domain of `settings`, whose users are `accounts` (the simulator's, shared).
    pub fn new(settings: LdapSettings, accounts: Arc<Locked<HashMap<String, Account>>>) -> Directory {
        let base = Dn::parse(settings.base_dn()).expect("LdapSettings::new checks the base DN");
        Directory { settings, base, accounts, started: SystemTime::now(), state: Locked::default() }
    }

    /// Its settings.
    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, HashMap<String, PerAccount>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, bound: Option<&str>, what: impl FnOnce(&mut LdapAccountStats)) {
        what(&mut self.lock_state().entry(bound.unwrap_or_default().to_owned()).or_default().stats);
    }

    /// Counters of one account (`""`: anonymous requests and unknown names).
    pub fn stats(&self, username: &str) -> LdapAccountStats {
        self.lock_state().get(username).map(|p| p.stats).unwrap_or_default()
    }

    /// Counters of every account that received a request.
    pub fn all_stats(&self) -> HashMap<String, LdapAccountStats> {
        self.lock_state().iter().map(|(k, v)| (k.clone(), v.stats)).collect()
    }

    fn user_dn(&self, username: &str) -> String {
        format!("CN={username},CN=Users,{}", self.settings.base_dn())
    }

    /// The account a bind names: by DN (`CN=user,CN=Users,<base>`), UPN (`user@domain`, the
    /// NetBIOS name accepted as a suffix as AD does) or `DOMAIN\user`, names ignoring case.
    fn resolve(&self, name: &str) -> Option<Account> {
        let user = if name.contains('=') {
            let dn = Dn::parse(name)?;
            let users = self.base.0.len() + 1;
            let in_users =
                dn.0.len() == users + 1 && dn.is_within(&self.base) && dn.0[1] == ("cn".to_owned(), "users".to_owned());
            if !in_users || dn.0[0].0 != "cn" {
                return None;
            }
            dn.0[0].1.clone()
        } else if let Some((domain, user)) = name.split_once('\\') {
            if !domain.eq_ignore_ascii_case(&self.settings.netbios) {
                return None;
            }
            user.to_lowercase()
        } else {
            let (user, domain) = name.rsplit_once('@')?;
            if !domain.eq_ignore_ascii_case(self.settings.dns_domain())
                && !domain.eq_ignore_ascii_case(&self.settings.netbios)
            {
                return None;
            }
            user.to_lowercase()
        };
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.values().find(|a| a.username.to_lowercase() == user).cloned()
    }

    /// When `account`'s password expires (`None`: never).
    fn password_expiry(&self, account: &Account) -> Option<SystemTime> {
        if account.password_expired {
            return Some(self.started - EXPIRED_BEFORE_START);
        }
        account.password_expires_in.map(|d| self.started + d)
    }

    /// `msDS-UserPasswordExpiryTimeComputed`: 0 for a password to change, "never" without
    /// expiry, as AD computes it.
    fn password_expiry_filetime(&self, account: &Account) -> i64 {
        if account.must_change_password {
            return 0;
        }
        self.password_expiry(account).map_or(NEVER, filetime)
    }

    fn password_has_expired(&self, account: &Account) -> bool {
        self.password_expiry(account).is_some_and(|t| t <= SystemTime::now())
    }

    /// Whether `account` is locked out now: by its setting, or by the lockout policy until its
    /// duration has passed (then AD counts wrong passwords from zero again).
    fn locked_out(&self, account: &Account, per: &mut PerAccount, now: Instant) -> bool {
        if account.locked {
            return true;
        }
        let (Some(at), Some(policy)) = (per.locked_at, self.settings.lockout) else { return false };
        if policy.duration.is_zero() || now.duration_since(at) < policy.duration {
            return true;
        }
        per.locked_at = None;
        per.bad_passwords = 0;
        false
    }

    /// A simple bind as `name` with `password` (`tls`: over TLS), as AD answers it: a lockout
    /// whatever the password; a wrong password (counted toward the lockout); then, for the
    /// right one, the account's state. An empty name and password bind anonymously; an empty
    /// password with a name (an "unauthenticated" bind, RFC 4513 §5.1.2) is refused as a wrong
    /// password, without counting toward the lockout.
    pub fn bind(&self, name: &str, password: &str, tls: bool) -> BindAnswer {
        let account = if name.is_empty() && password.is_empty() { None } else { self.resolve(name) };
        let key = account.as_ref().map_or(String::new(), |a| a.username.clone());
        let mut state = self.lock_state();
        let per = state.entry(key).or_default();
        per.stats.binds += 1;
        per.stats.tls_binds += u64::from(tls);
        let outcome = match &account {
            None if name.is_empty() && password.is_empty() => Ok(()),
            None => Err(data::UNKNOWN_USER),
            Some(_) if password.is_empty() => Err(data::WRONG_PASSWORD),
            Some(a) => self.check(a, password, per),
        };
        if outcome.is_err() {
            per.stats.failed_binds += 1;
        }
        drop(state);
        let delay = account.as_ref().and_then(|a| a.delay);
        let result = match outcome {
            Ok(()) => Ok(account.map(|a| a.username)),
            Err(code) => Err(result(LdapResultCode::InvalidCredentials, "", refused(code))),
        };
        BindAnswer { result, delay }
    }

    /// The password and the state of a known account.
    fn check(&self, account: &Account, password: &str, per: &mut PerAccount) -> Result<(), &'static str> {
        let now = Instant::now();
        if self.locked_out(account, per, now) {
            return Err(data::LOCKED);
        }
        if password != account.password.expose_secret() {
            per.bad_passwords += 1;
            if self.settings.lockout.is_some_and(|p| per.bad_passwords >= p.threshold) {
                // The bind that reaches the threshold is still answered 52e; the next ones 775.
                per.locked_at = Some(now);
            }
            return Err(data::WRONG_PASSWORD);
        }
        per.bad_passwords = 0;
        match () {
            () if account.disabled => Err(data::DISABLED),
            () if account.account_expired => Err(data::ACCOUNT_EXPIRED),
            () if account.must_change_password => Err(data::MUST_CHANGE),
            () if self.password_has_expired(account) => Err(data::PASSWORD_EXPIRED),
            () => Ok(()),
        }
    }

    /// "Who am I?" (RFC 4532) as AD answers it: `u:DOMAIN\user`, or nothing when anonymous.
    pub fn whoami(&self, bound: Option<&str>) -> String {
        self.count(bound, |s| s.whoami += 1);
        bound.map(|user| format!("u:{}\\{user}", self.settings.netbios)).unwrap_or_default()
    }

    /// The root entry (rootDSE): what any client may read before binding.
    fn root_entry(&self) -> Entry {
        let base = self.settings.base_dn();
        let domain = self.settings.dns_domain();
        let config = format!("CN=Configuration,{base}");
        let schema = format!("CN=Schema,{config}");
        let server = format!("CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,{config}");
        let mut extensions = vec![WHOAMI_OID.to_owned()];
        if self.settings.tls.is_some() {
            extensions.insert(0, STARTTLS_OID.to_owned());
        }
        let now = chrono::Utc::now().format("%Y%m%d%H%M%S.0Z").to_string();
        let one = |v: &str| vec![v.to_owned()];
        Entry {
            dn: String::new(),
            key: Dn(Vec::new()),
            attributes: vec![
                ("currentTime", vec![now]),
                ("subschemaSubentry", vec![format!("CN=Aggregate,{schema}")]),
                ("dsServiceName", vec![format!("CN=NTDS Settings,{server}")]),
                ("namingContexts", vec![base.to_owned(), config.clone(), schema.clone()]),
                ("defaultNamingContext", one(base)),
                ("rootDomainNamingContext", one(base)),
                ("configurationNamingContext", vec![config.clone()]),
                ("schemaNamingContext", vec![schema.clone()]),
                ("supportedLDAPVersion", vec!["3".to_owned(), "2".to_owned()]),
                ("supportedExtension", extensions),
                ("dnsHostName", vec![format!("DC1.{domain}")]),
                ("ldapServiceName", vec![format!("{domain}:dc1$@{}", domain.to_uppercase())]),
                ("serverName", vec![server]),
                ("isSynchronized", one("TRUE")),
                ("domainFunctionality", one("7")),
                ("forestFunctionality", one("7")),
                ("domainControllerFunctionality", one("7")),
            ],
            account: None,
        }
    }

    /// The domain's entries, made from the accounts as they are now, in DN order.
    fn entries(&self) -> Vec<Entry> {
        let base = self.settings.base_dn();
        let category = |class: &str| vec![format!("CN={class},CN=Schema,CN=Configuration,{base}")];
        let users_dn = format!("CN=Users,{base}");
        let dc = self.settings.dns_domain().split('.').next().unwrap_or_default().to_owned();
        let mut entries = vec![
            Entry {
                dn: base.to_owned(),
                key: self.base.clone(),
                attributes: vec![
                    ("objectClass", vec!["top".into(), "domain".into(), "domainDNS".into()]),
                    ("dc", vec![dc.clone()]),
                    ("name", vec![dc]),
                    ("distinguishedName", vec![base.to_owned()]),
                    ("objectCategory", category("Domain-DNS")),
                ],
                account: None,
            },
            Entry {
                key: Dn::parse(&users_dn).expect("a DN"),
                attributes: vec![
                    ("objectClass", vec!["top".into(), "container".into()]),
                    ("cn", vec!["Users".into()]),
                    ("name", vec!["Users".into()]),
                    ("distinguishedName", vec![users_dn.clone()]),
                    ("objectCategory", category("Container")),
                ],
                dn: users_dn,
                account: None,
            },
        ];
        let mut accounts: Vec<Account> =
            self.accounts.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        accounts.sort_by(|a, b| a.username.cmp(&b.username));
        // Settings made in code are not checked at load: a name AD refuses is no user.
        for a in accounts.into_iter().filter(|a| super::check_username(&a.username).is_ok()) {
            let dn = self.user_dn(&a.username);
            let control = NORMAL_ACCOUNT | if a.disabled { ACCOUNTDISABLE } else { 0 };
            let expires = if a.account_expired { filetime(self.started - EXPIRED_BEFORE_START) } else { NEVER };
            let name = vec![a.username.clone()];
            entries.push(Entry {
                key: Dn::parse(&dn).expect("a checked name makes a DN"),
                attributes: vec![
                    ("objectClass", vec!["top".into(), "person".into(), "organizationalPerson".into(), "user".into()]),
                    ("cn", name.clone()),
                    ("name", name.clone()),
                    ("distinguishedName", vec![dn.clone()]),
                    ("sAMAccountName", name),
                    ("userPrincipalName", vec![format!("{}@{}", a.username, self.settings.dns_domain())]),
                    ("objectCategory", category("Person")),
                    ("userAccountControl", vec![control.to_string()]),
                    ("sAMAccountType", vec!["805306368".into()]),
                    ("accountExpires", vec![expires.to_string()]),
                ],
                dn,
                account: Some(a),
            });
        }
        entries
    }

    /// A user's constructed attributes, as AD computes them when they are asked for by name.
    fn constructed(&self, account: &Account) -> [(&'static str, String); 2] {
        let locked = {
            let mut state = self.lock_state();
            let per = state.entry(account.username.clone()).or_default();
            self.locked_out(account, per, Instant::now())
        };
        let expired = account.must_change_password || self.password_has_expired(account);
        let flags = if locked { UF_LOCKOUT } else { 0 } | if expired { UF_PASSWORD_EXPIRED } else { 0 };
        [(PASSWORD_EXPIRY, self.password_expiry_filetime(account).to_string()), (COMPUTED_CONTROL, flags.to_string())]
    }

    /// `entry` with the attributes `wanted` (none: every stored one, as `*`; `1.1`: none;
    /// constructed ones only by name).
    fn select(&self, entry: &Entry, wanted: &[String], types_only: bool) -> LdapSearchResultEntry {
        let all = wanted.is_empty() || wanted.iter().any(|w| w == "*");
        let asked = |name: &str| wanted.iter().any(|w| w.eq_ignore_ascii_case(name));
        let mut attributes: Vec<LdapPartialAttribute> = entry
            .attributes
            .iter()
            .filter(|(name, _)| all || asked(name))
            .map(|(name, values)| LdapPartialAttribute {
                atype: (*name).to_owned(),
                vals: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            })
            .collect();
        if let Some(account) = &entry.account {
            for (name, value) in self.constructed(account).into_iter().filter(|(name, _)| asked(name)) {
                attributes.push(LdapPartialAttribute { atype: name.to_owned(), vals: vec![value.into_bytes()] });
            }
        }
        if types_only {
            attributes.iter_mut().for_each(|a| a.vals.clear());
        }
        LdapSearchResultEntry { dn: entry.dn.clone(), attributes }
    }

    /// A search as `bound` (`None`: anonymous): the root entry for anyone; below it, once bound,
    /// the entries in scope that match the filter, at most the size limit (then result 4).
    pub fn search(&self, request: &LdapSearchRequest, bound: Option<&str>) -> Found {
        self.count(bound, |s| s.searches += 1);
        let done =
            |code, matched: &str, message: String| Found { entries: Vec::new(), done: result(code, matched, message) };
        let Some(base) = Dn::parse(&request.base) else {
            return done(LdapResultCode::InvalidDNSyntax, "", bad_dn(&request.base));
        };
        if base.is_root() {
            // Nothing is found below the root entry: AD searches there only with its phantom
            // root control.
            let root = self.root_entry();
            let entries = if request.scope == LdapSearchScope::Base && matches(&request.filter, &root.attributes) {
                vec![self.select(&root, &request.attrs, request.typesonly)]
            } else {
                Vec::new()
            };
            return Found { entries, done: result(LdapResultCode::Success, "", String::new()) };
        }
        if bound.is_none() {
            return done(LdapResultCode::OperationsError, "", NEEDS_BIND.to_owned());
        }
        let entries = self.entries();
        if !entries.iter().any(|e| e.key == base) {
            let best = entries.iter().filter(|e| base.is_within(&e.key)).max_by_key(|e| e.key.0.len());
            let matched = best.map(|e| e.dn.as_str()).unwrap_or_default();
            return done(LdapResultCode::NoSuchObject, matched, no_object(matched));
        }
        let limit =
            usize::try_from(request.sizelimit).ok().filter(|n| *n > 0).map_or(MAX_PAGE_SIZE, |n| n.min(MAX_PAGE_SIZE));
        let depth = base.0.len();
        let in_scope = |e: &Entry| match request.scope {
            LdapSearchScope::Base => e.key == base,
            LdapSearchScope::OneLevel => e.key.0.len() == depth + 1 && e.key.is_within(&base),
            LdapSearchScope::Subtree => e.key.is_within(&base),
            LdapSearchScope::Children => e.key.0.len() > depth && e.key.is_within(&base),
        };
        let mut found = Vec::new();
        let mut code = LdapResultCode::Success;
        for e in entries.iter().filter(|e| in_scope(e) && matches(&request.filter, &e.attributes)) {
            if found.len() == limit {
                code = LdapResultCode::SizeLimitExceeded;
                break;
            }
            found.push(self.select(e, &request.attrs, request.typesonly));
        }
        Found { entries: found, done: result(code, "", String::new()) }
    }
}

/// The values of attribute `name` (case ignored).
fn values<'a>(attributes: &'a [(&str, Vec<String>)], name: &'a str) -> impl Iterator<Item = &'a String> + 'a {
    attributes.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).flat_map(|(_, v)| v.iter())
}

/// Whether an entry of `attributes` matches `filter` (RFC 4511 §4.5.1.7, values compared as
/// AD compares its strings: ignoring case; a filter on an attribute the entry lacks is false).
fn matches(filter: &LdapFilter, attributes: &[(&str, Vec<String>)]) -> bool {
    match filter {
        LdapFilter::And(all) => all.iter().all(|f| matches(f, attributes)),
        LdapFilter::Or(any) => any.iter().any(|f| matches(f, attributes)),
        LdapFilter::Not(f) => !matches(f, attributes),
        // Every entry has an object class; AD's root entry matches `(objectClass=*)` too.
        LdapFilter::Present(a) => a.eq_ignore_ascii_case("objectClass") || values(attributes, a).next().is_some(),
        LdapFilter::Equality(a, v) | LdapFilter::Approx(a, v) => values(attributes, a).any(|x| equal(a, x, v)),
        LdapFilter::Substring(a, s) => values(attributes, a).any(|x| substrings(x, s)),
        LdapFilter::GreaterOrEqual(a, v) => values(attributes, a).any(|x| order(x, v) != Ordering::Less),
        LdapFilter::LessOrEqual(a, v) => values(attributes, a).any(|x| order(x, v) != Ordering::Greater),
        LdapFilter::Extensible(m) => extensible(m, attributes),
    }
}

/// Equality of `value` of `attribute` with `asserted`: case ignored; DNs compared as DNs; AD's
/// `objectCategory` also matched by a class name (`person`, or `user`, whose category it is).
fn equal(attribute: &str, value: &str, asserted: &str) -> bool {
    if value.to_lowercase() == asserted.to_lowercase() {
        return true;
    }
    if attribute.eq_ignore_ascii_case("objectCategory") && !asserted.contains('=') {
        let class = if asserted.eq_ignore_ascii_case("user") { "person" } else { asserted };
        return Dn::parse(value).is_some_and(|dn| dn.0.first().is_some_and(|(_, v)| *v == class.to_lowercase()));
    }
    value.contains('=') && Dn::parse(value).is_some_and(|dn| Dn::parse(asserted) == Some(dn))
}

/// Whether `value` matches a substrings filter, case ignored.
fn substrings(value: &str, filter: &LdapSubstringFilter) -> bool {
    let value = value.to_lowercase();
    let mut rest = value.as_str();
    if let Some(initial) = &filter.initial {
        match rest.strip_prefix(initial.to_lowercase().as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for any in &filter.any {
        let any = any.to_lowercase();
        match rest.find(&any) {
            Some(at) => rest = &rest[at + any.len()..],
            None => return false,
        }
    }
    filter.final_.as_ref().is_none_or(|f| rest.ends_with(&f.to_lowercase()))
}

/// Ordering of `value` against `asserted`: as integers when both are, else as text, case ignored.
fn order(value: &str, asserted: &str) -> Ordering {
    match (value.parse::<i64>(), asserted.parse::<i64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => value.to_lowercase().cmp(&asserted.to_lowercase()),
    }
}

/// An extensible match: AD's bit-wise rules on an integer attribute
/// (`(userAccountControl:1.2.840.113556.1.4.803:=2)`), or equality without a rule; other rules
/// match nothing.
fn extensible(m: &LdapMatchingRuleAssertion, attributes: &[(&str, Vec<String>)]) -> bool {
    let Some(attribute) = &m.type_ else { return false };
    match m.matching_rule.as_deref() {
        None => values(attributes, attribute).any(|x| equal(attribute, x, &m.match_value)),
        Some(rule @ (BIT_AND | BIT_OR)) => {
            let Ok(bits) = m.match_value.trim().parse::<u64>() else { return false };
            values(attributes, attribute).filter_map(|x| x.parse::<u64>().ok()).any(|n| match rule {
                BIT_AND => n & bits == bits,
                _ => n & bits != 0,
            })
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ldap::message::{self, Scope};
    use tokio_util::codec::Decoder as _;

    /// A filter as the prober writes it, read as the server reads it.
    fn parse_ldap_filter_str(text: &str) -> Result<LdapFilter, String> {
        let ber = crate::protocol::ldap::filter::encode(text).map_err(|e| e.to_string())?;
        let request = message::search_request(1, "", Scope::Base, &ber, &[], 0);
        let mut buf = bytes::BytesMut::from(&request[..]);
        match ldap3_proto::LdapCodec::default().decode(&mut buf).map_err(|e| e.to_string())? {
            Some(ldap3_proto::proto::LdapMsg { op: ldap3_proto::proto::LdapOp::SearchRequest(s), .. }) => Ok(s.filter),
            other => Err(format!("{other:?}")),
        }
    }

    fn attributes() -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("objectClass", vec!["top".into(), "person".into(), "user".into()]),
            ("sAMAccountName", vec!["Henry".into()]),
            ("userAccountControl", vec!["514".into()]),
            ("objectCategory", vec!["CN=Person,CN=Schema,CN=Configuration,DC=demo,DC=example".into()]),
            ("distinguishedName", vec!["CN=henry,CN=Users,DC=demo,DC=example".into()]),
        ]
    }

    #[test]
    fn filters_are_evaluated_as_ad_does() {
        let e = attributes();
        let yes = [
            "(objectClass=*)",
            "(samaccountname=HENRY)",
            "(&(objectClass=user)(sAMAccountName=henry))",
            "(|(sAMAccountName=nobody)(sAMAccountName=henry))",
            "(!(sAMAccountName=nobody))",
            "(sAMAccountName=he*)",
            "(sAMAccountName=*EN*y)",
            "(sAMAccountName=h*n*r*)",
            "(userAccountControl>=500)",
            "(userAccountControl<=514)",
            "(userAccountControl:1.2.840.113556.1.4.803:=2)",
            "(userAccountControl:1.2.840.113556.1.4.804:=3)",
            "(objectCategory=person)",
            "(objectCategory=user)",
            "(distinguishedName=cn=HENRY, cn=users, dc=demo, dc=example)",
            "(mail=*)",
        ];
        for text in yes {
            let f = parse_ldap_filter_str(text).unwrap();
            let want = text != "(mail=*)";
            assert_eq!(matches(&f, &e), want, "{text}");
        }
        let no = [
            "(sAMAccountName=henr)",
            "(sAMAccountName=*x*)",
            "(sAMAccountName=henry*y)",
            "(userAccountControl>=600)",
            "(userAccountControl:1.2.840.113556.1.4.803:=3)",
            "(userAccountControl:1.2.3:=2)",
            "(!(objectClass=*))",
            "(objectCategory=group)",
        ];
        for text in no {
            assert!(!matches(&parse_ldap_filter_str(text).unwrap(), &e), "{text}");
        }
    }

    #[test]
    fn dns_are_read_and_compared_ignoring_case_and_spaces() {
        let dn = Dn::parse("CN=Henry , CN=Users,DC=Demo,dc=example").unwrap();
        assert_eq!(dn, Dn::parse("cn=henry,cn=users,dc=demo,dc=example").unwrap());
        assert!(dn.is_within(&Dn::parse("DC=demo,DC=example").unwrap()));
        assert!(!Dn::parse("DC=demo,DC=example").unwrap().is_within(&dn));
        assert_eq!(Dn::parse("CN=a\\,b,DC=x").unwrap().0.len(), 2);
        assert!(Dn::parse("").unwrap().is_root());
        for bad in ["henry", "CN=,DC=x", "=x", "CN=a,,DC=x", "C N=a"] {
            assert_eq!(Dn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn filetimes_count_from_1601() {
        assert_eq!(filetime(SystemTime::UNIX_EPOCH), 116_444_736_000_000_000);
        assert_eq!(filetime(SystemTime::UNIX_EPOCH + Duration::from_secs(1)), 116_444_736_010_000_000);
    }
}
