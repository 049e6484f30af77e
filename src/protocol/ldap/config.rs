//! An LDAP target's and probe's fields as written in probes.yaml, and their validation.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::message::Scope;
use super::{filter, Account, Count, LdapLogin, LdapTarget, Search, Security};
use crate::protocol::family::{self, Secret, Validator};

/// An LDAP target's own fields: the directory, and the service account of search-then-bind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFields {
    url: Option<String>,
    start_tls: Option<bool>,
    bind_dn: Option<String>,
    password: Option<SecretString>,
    password_file: Option<PathBuf>,
}

/// An LDAP probe's own fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFields {
    bind_dn: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    password_file: Option<PathBuf>,
    user_search: Option<UserSearchFields>,
    search: Option<SearchFields>,
    whoami: Option<bool>,
    password_expiry: Option<bool>,
}

/// `user_search:` of a search-then-bind probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSearchFields {
    base: Option<String>,
    filter: Option<String>,
    scope: Option<String>,
}

/// `search:` after the bind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFields {
    base: Option<String>,
    filter: Option<String>,
    scope: Option<String>,
    expect_entries: Option<u32>,
    min_entries: Option<u32>,
}

/// The LDAP fields of `defaults:`: none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultFields {}

/// Most entries a search may be told to expect: what one run reads stays bounded.
pub const MAX_ENTRIES: u32 = 1000;

impl family::TargetFields for TargetFields {
    type Target = LdapTarget;
    const SECRETS: &'static [&'static str] = &["password"];

    fn validate(self, v: &mut dyn Validator) -> Option<LdapTarget> {
        let before = v.errors();
        let url = match &self.url {
            None => {
                v.error("url", "missing: an ldap target needs url (ldap://host or ldaps://host)".to_owned());
                None
            }
            Some(raw) => v.url("url", raw, &["ldap", "ldaps"]),
        };
        let url = url.and_then(|u| {
            if !matches!(u.path(), "" | "/") {
                v.error("url", "must not have a path: set the DN of a search in search.base".to_owned());
                return None;
            }
            match u.host_str() {
                Some(h) if !h.is_empty() => Some(u),
                _ => {
                    v.error("url", "must name a host".to_owned());
                    None
                }
            }
        });
        let start_tls = self.start_tls.unwrap_or(false);
        let security = match url.as_ref().map(|u| u.scheme()) {
            Some("ldaps") if start_tls => {
                v.error("start_tls", "not with ldaps://, which is TLS from the start".to_owned());
                Security::Ldaps
            }
            Some("ldaps") => Security::Ldaps,
            _ if start_tls => Security::StartTls,
            _ => Security::Plain,
        };
        if v.proxy_configured() {
            v.error(
                "proxy_url",
                "not for an ldap target: LDAP connects directly, HTTP proxies do not carry it".to_owned(),
            );
        }
        if security == Security::Plain && url.is_some() && v.tls_configured() {
            v.error("tls", "set for an ldap:// target without start_tls, which never opens TLS".to_owned());
        }
        let has_password = self.password.is_some() || self.password_file.is_some();
        let service = match (&self.bind_dn, has_password) {
            (None, false) => None,
            (None, true) => {
                let field = if self.password.is_some() { "password" } else { "password_file" };
                v.error(field, "the service account's password needs its bind_dn".to_owned());
                None
            }
            (Some(raw), _) => {
                let dn = v.text("bind_dn", Some(raw));
                let password =
                    v.secret("password", Secret::required(self.password.as_ref(), self.password_file.as_deref()));
                let password = password.filter(|p| not_empty(v, "password", p));
                dn.zip(password)
            }
        };
        if v.errors() != before {
            return None;
        }
        let url = url?;
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port().unwrap_or(if security == Security::Ldaps { 636 } else { 389 });
        Some(LdapTarget { url, host, port, security, service })
    }
}

/// An empty password makes an "unauthenticated" bind (RFC 4513 §5.1.2), which many directories
/// answer with success without checking anything: never sent.
fn not_empty(v: &mut dyn Validator, field: &str, password: &SecretString) -> bool {
    if password.expose_secret().is_empty() {
        v.error(
            field,
            "must not be empty: an empty password makes an unauthenticated bind, which directories accept unchecked"
                .to_owned(),
        );
        return false;
    }
    true
}

fn scope(v: &mut dyn Validator, field: &str, raw: Option<&str>) -> Option<Scope> {
    match raw.map(str::trim) {
        None | Some("sub") => Some(Scope::Sub),
        Some("one") => Some(Scope::One),
        Some("base") => Some(Scope::Base),
        Some(other) => {
            v.error(field, format!("unknown scope {other:?}: use base, one or sub"));
            None
        }
    }
}

/// A filter, checked (with `{username}` standing for a value when `template`).
fn checked_filter(v: &mut dyn Validator, field: &str, raw: &str, template: bool) -> Option<(String, Vec<u8>)> {
    let text = v.expand(field, raw)?.trim().to_owned();
    if template && !text.contains("{username}") {
        v.error(field, "must contain {username}, where the user's name goes".to_owned());
        return None;
    }
    let sample = text.replace("{username}", "probe");
    match filter::encode(&sample) {
        Ok(ber) => Some((text, ber)),
        Err(e) => {
            v.error(field, format!("invalid filter: {e}"));
            None
        }
    }
}

impl family::ProbeFields for ProbeFields {
    type Target = LdapTarget;
    type Defaults = DefaultFields;
    type Login = LdapLogin;
    const SECRETS: &'static [&'static str] = &["password"];
    const HINTS: &'static [(&'static str, &'static str)] =
        &[("pin", "an ldap login is a bind: bind_dn or user_search, and password")];

    fn validate(self, _: &DefaultFields, target: &Arc<LdapTarget>, v: &mut dyn Validator) -> Option<LdapLogin> {
        let before = v.errors();
        let account = match (&self.bind_dn, &self.user_search) {
            (Some(_), Some(_)) => {
                v.error("user_search", "not with bind_dn: bind as a DN, or search for the user's".to_owned());
                None
            }
            (None, None) => {
                v.error("bind_dn", "missing: an ldap probe needs bind_dn, or user_search and username".to_owned());
                None
            }
            (Some(dn), None) => {
                if self.username.is_some() {
                    v.error("username", "only with user_search (bind_dn names the account)".to_owned());
                }
                v.text("bind_dn", Some(dn)).map(Account::Name)
            }
            (None, Some(us)) => {
                let username = v.required_text("username", self.username.as_deref(), "user_search needs username");
                let base = v.required_text("user_search.base", us.base.as_deref(), "user_search needs base");
                let scope = scope(v, "user_search.scope", us.scope.as_deref());
                let filter = match &us.filter {
                    None => {
                        v.error("user_search.filter", "missing: e.g. (sAMAccountName={username})".to_owned());
                        None
                    }
                    Some(raw) => checked_filter(v, "user_search.filter", raw, true).map(|(text, _)| text),
                };
                match (username, base, scope, filter) {
                    (Some(username), Some(base), Some(scope), Some(filter)) => {
                        Some(Account::Search { username: username.trim().to_owned(), base, scope, filter })
                    }
                    _ => None,
                }
            }
        };
        let password = v.secret("password", Secret::required(self.password.as_ref(), self.password_file.as_deref()));
        let password = password.filter(|p| not_empty(v, "password", p));
        let search = self.search.and_then(|s| {
            let base = match &s.base {
                Some(b) => v.expand("search.base", b).map(|b| b.trim().to_owned()),
                None => {
                    v.error("search.base", "missing: where to search (\"\" for the root entry)".to_owned());
                    None
                }
            };
            let scope = scope(v, "search.scope", s.scope.as_deref());
            let (filter, filter_ber) =
                checked_filter(v, "search.filter", s.filter.as_deref().unwrap_or("(objectClass=*)"), false)?;
            let count = match (s.expect_entries, s.min_entries) {
                (Some(_), Some(_)) => {
                    v.error("search.min_entries", "not with expect_entries: one or the other".to_owned());
                    None
                }
                (Some(n), None) if n > MAX_ENTRIES => {
                    v.error("search.expect_entries", format!("at most {MAX_ENTRIES}"));
                    None
                }
                (None, Some(n)) if n > MAX_ENTRIES => {
                    v.error("search.min_entries", format!("at most {MAX_ENTRIES}"));
                    None
                }
                (Some(n), None) => Some(Count::Exactly(n)),
                (None, Some(n)) => Some(Count::AtLeast(n)),
                (None, None) => Some(Count::AtLeast(1)),
            };
            Some(Search { base: base?, scope: scope?, filter, filter_ber, count: count? })
        });
        if v.errors() != before {
            return None;
        }
        Some(LdapLogin {
            target: target.clone(),
            account: account?,
            password: password?,
            search,
            whoami: self.whoami.unwrap_or(false),
            password_expiry: self.password_expiry.unwrap_or(false),
        })
    }
}
