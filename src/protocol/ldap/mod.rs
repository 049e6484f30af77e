//! The LDAP family: a directory login as applications make it — a simple bind as the probe
//! account (directly by DN or UPN, or search-then-bind through the target's service account),
//! optionally a search and RFC 4532 "Who am I?" after it, the session ended with an unbind —
//! over `ldap://`, StartTLS or `ldaps://`, every message under the run's deadline.
//!
//! [`ber`] reads and writes the BER of its messages, [`message`] the messages themselves,
//! [`filter`] RFC 4515 search filters, [`classify`] why a bind was refused (the password policy
//! control, Active Directory's sub-codes), [`names`] the steps and reasons and what a refusal
//! means to the run and the lockout guard, [`config`] the fields and their validation,
//! `session` one connection's messages and `flow` one run. Each reading is tested on the bytes
//! and words of real directories (Debian's slapd with ppolicy, Samba's AD DC: tests/slapd,
//! tests/samba).

pub mod ber;
pub mod classify;
pub mod config;
pub mod filter;
mod flow;
pub mod message;
pub mod names;
mod session;

use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

use super::family::{self, Family};
use super::outcome::{Finished, Scheme};
use super::run::Attempt;
use super::Step;
use message::Scope;

/// The LDAP family, as registered.
pub struct Ldap;

impl Family for Ldap {
    const NAME: &'static str = "ldap";
    const STEPS: &'static [&'static str] = names::STEPS;
    const REASONS: &'static [&'static str] = names::REASONS;
    const STATUS: &'static Scheme = &STATUS;
    type Target = config::TargetFields;
    type Probe = config::ProbeFields;
}

/// LDAP's result codes, as the family reports them. 0 is LDAP's success, so "no answer" is a
/// code of its own, shown as `none` (and -1 on the gauge).
pub const STATUS: Scheme = Scheme {
    name: "LDAP",
    label: "ldap_result_code",
    metric: "authprobe_probe_ldap_result_code",
    help:
        "Final LDAP result code of the probe's last run (0 success, 49 invalid credentials…); -1 if no answer arrived.",
    no_answer: u16::MAX,
};

/// How a target's connections are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `ldap://` without StartTLS: everything, passwords too, in the clear.
    Plain,
    /// `ldap://` and StartTLS before anything else.
    StartTls,
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
}

/// A directory, and the service account its search-then-bind probes search with.
#[derive(Debug)]
pub struct LdapTarget {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: Url,
    /// The host to connect to and to verify the certificate for.
    pub host: String,
    /// The port: 389 or 636 unless the URL says.
    pub port: u16,
    /// How connections are protected.
    pub security: Security,
    /// The service account (DN or UPN) and its password, for search-then-bind probes.
    pub service: Option<(String, SecretString)>,
}

impl family::Target for LdapTarget {
    fn secrets(&self) -> Vec<&SecretString> {
        self.service.iter().map(|(_, p)| p).collect()
    }
}

/// Whom a probe binds as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// A DN, a UPN (`probe@corp.example.com`) or whatever name the directory takes in a bind.
    Name(String),
    /// The DN found by a search for the user, as applications find it.
    Search {
        /// The user's name, put into the filter escaped.
        username: String,
        /// Where to search.
        base: String,
        /// How deep.
        scope: Scope,
        /// The filter with `{username}` in it.
        filter: String,
    },
}

/// How many entries a probe's search must find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Exactly this many.
    Exactly(u32),
    /// At least this many.
    AtLeast(u32),
}

/// A search after the bind: the directory reads as well as binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Where.
    pub base: String,
    /// How deep.
    pub scope: Scope,
    /// The filter as written.
    pub filter: String,
    /// The filter's BER, encoded once at load.
    pub filter_ber: Vec<u8>,
    /// How many entries it must find.
    pub count: Count,
}

/// An LDAP probe's login.
#[derive(Debug, Clone)]
pub struct LdapLogin {
    /// The directory.
    pub target: Arc<LdapTarget>,
    /// Whom it binds as.
    pub account: Account,
    /// The account's password.
    pub password: SecretString,
    /// A search after the bind.
    pub search: Option<Search>,
    /// Ask "Who am I?" after the bind: it must name the bound identity.
    pub whoami: bool,
    /// Read Active Directory's `msDS-UserPasswordExpiryTimeComputed` of the bound account after
    /// the bind.
    pub password_expiry: bool,
}

impl LdapLogin {
    /// Whether a run's connection is protected (a password never crosses in the clear).
    pub fn encrypted(&self) -> bool {
        self.target.security != Security::Plain
    }
}

impl family::Login for LdapLogin {
    fn run<'a>(&'a self, attempt: &'a mut Attempt<'_>) -> impl std::future::Future<Output = Finished> + Send + 'a {
        flow::run(attempt, self)
    }

    fn runs_while_held(&self) -> bool {
        true
    }

    fn run_held<'a>(&'a self, attempt: &'a mut Attempt<'_>) -> impl std::future::Future<Output = Finished> + Send + 'a {
        flow::root_dse(attempt, self)
    }

    fn endpoint(&self) -> &Url {
        &self.target.url
    }

    fn credentials(&self) -> Vec<Option<&str>> {
        use secrecy::ExposeSecret as _;
        let (name, username) = match &self.account {
            Account::Name(n) => (Some(n.as_str()), None),
            Account::Search { username, .. } => (None, Some(username.as_str())),
        };
        let service = self.target.service.as_ref();
        vec![
            name,
            username,
            Some(self.password.expose_secret()),
            service.map(|(dn, _)| dn.as_str()),
            service.map(|(_, p)| p.expose_secret()),
        ]
    }

    fn same_settings(&self, other: &Self) -> bool {
        self.target.url == other.target.url
            && self.target.security == other.target.security
            && self.credentials() == other.credentials()
            && self.account == other.account
            && self.search == other.search
            && self.whoami == other.whoami
            && self.password_expiry == other.password_expiry
    }

    fn secrets(&self) -> Vec<&SecretString> {
        let mut s = vec![&self.password];
        s.extend(self.target.service.iter().map(|(_, p)| p));
        s
    }

    fn sends(&self, step: Step) -> bool {
        let searches = matches!(self.account, Account::Search { .. });
        match step {
            names::CONNECT | names::BIND | names::UNBIND => true,
            names::START_TLS => self.target.security == Security::StartTls,
            names::SERVICE_BIND => searches && self.target.service.is_some(),
            names::USER_SEARCH => searches,
            names::SEARCH => self.search.is_some() || self.password_expiry,
            names::WHO_AM_I => self.whoami,
            _ => false,
        }
    }

    fn ends_session(&self) -> bool {
        true
    }

    fn warnings(&self) -> Vec<String> {
        if self.encrypted() {
            return Vec::new();
        }
        vec![format!("{} is ldap:// without start_tls: the password crosses the network in the clear", self.target.url)]
    }

    fn summary(&self, timeout: &str) -> String {
        let bind = match &self.account {
            Account::Name(_) => "dn",
            Account::Search { .. } => "search",
        };
        let security = match self.target.security {
            Security::Plain => "plain",
            Security::StartTls => "start_tls",
            Security::Ldaps => "ldaps",
        };
        let mut s = format!("bind={bind} security={security} timeout={timeout}");
        if let Some(search) = &self.search {
            let count = match search.count {
                Count::Exactly(n) => format!("expect_entries={n}"),
                Count::AtLeast(n) => format!("min_entries={n}"),
            };
            s.push_str(&format!(" search={} {count}", search.scope.name()));
        }
        if self.whoami {
            s.push_str(" whoami=true");
        }
        if self.password_expiry {
            s.push_str(" password_expiry=true");
        }
        s
    }
}
