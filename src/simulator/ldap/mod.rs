//! The simulator's LDAP server, modelled on Active Directory: the simulator's accounts are the
//! users of one domain, `CN=<username>,CN=Users,<base DN>`, bound to by DN, by UPN
//! (`<username>@<dns domain>`) or as `DOMAIN\<username>`. A refused bind is result 49 with AD's
//! diagnostic message and its `data` sub-code (52e wrong password, 525 unknown user, 532
//! password expired, 533 disabled, 701 account expired, 773 must change, 775 locked out), and
//! an optional lockout policy locks an account after its threshold of wrong passwords, as AD's
//! does. It answers anonymous reads of the root entry, searches (base, one, sub; equality,
//! presence, substrings, ordering, AD's bit-wise matching rules; a size limit) once bound, with
//! `msDS-UserPasswordExpiryTimeComputed` computed from the account's settings, "Who am I?"
//! (`u:DOMAIN\user`), StartTLS with the simulator's certificate, and ldaps:// on a port of its
//! own. No response control is sent: AD sends none for a bind, its words say why.
//!
//! The wire is kanidm's `ldap3_proto` codec; [`directory`] holds the domain (its entries, the
//! answers to binds and searches, the lockout state and the counters), `server` the listeners
//! and connections: bounded in number, in message size and in idle time.

mod directory;
mod server;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_prom;

pub(crate) use directory::Directory;
pub(crate) use server::{listen, Listening};

/// Default address of the directory's plain listener (`ldap://`, StartTLS on it).
pub const DEFAULT_LDAP_LISTEN: &str = "127.0.0.1:17389";

/// How long a lockout lasts unless `lockout_duration` says: Windows' suggested lockout duration.
const DEFAULT_LOCKOUT_DURATION: Duration = Duration::from_secs(30 * 60);

/// `simulator.ldap` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapFile {
    /// Address of the plain listener (default [`DEFAULT_LDAP_LISTEN`]).
    #[serde(default)]
    pub listen: Option<String>,
    /// Also serve `ldaps://` here, with the simulator's `tls:` certificate.
    #[serde(default)]
    pub ldaps_listen: Option<String>,
    /// The domain's naming context, e.g. `DC=demo,DC=example` (its DNS name `demo.example`).
    #[serde(default)]
    pub base_dn: Option<String>,
    /// The NetBIOS name of the domain (default: the first DC component, upper-cased).
    #[serde(default)]
    pub netbios: Option<String>,
    /// Wrong passwords in a row that lock an account (AD's lockoutThreshold; 0 or absent: never).
    #[serde(default)]
    pub lockout_threshold: Option<u32>,
    /// How long a lockout lasts (AD's lockoutDuration; default 30m; 0s: until the simulator
    /// stops, as AD's 0 is until an administrator unlocks).
    #[serde(default, with = "serde_prom::option")]
    pub lockout_duration: Option<Duration>,
}

/// AD's account lockout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Wrong passwords in a row that lock an account (a successful bind starts the count again).
    pub threshold: u32,
    /// How long the lockout lasts; zero: until the simulator stops.
    pub duration: Duration,
}

/// Why a base DN cannot be a domain's naming context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a domain's naming context: expected DC=…,DC=… (e.g. DC=demo,DC=example)")]
pub struct BaseDnError(String);

/// A validated directory, ready to serve.
#[derive(Clone)]
pub struct LdapSettings {
    /// Address of the plain listener.
    pub listen: SocketAddr,
    /// Address of the `ldaps://` listener, if any (it needs [`LdapSettings::tls`]).
    pub ldaps_listen: Option<SocketAddr>,
    /// The domain's naming context as configured, e.g. `DC=demo,DC=example` (checked by
    /// [`LdapSettings::new`]: only DC components).
    base_dn: String,
    /// The domain's DNS name, from the base DN: `demo.example` (the UPN suffix).
    dns_domain: String,
    /// The domain's NetBIOS name, e.g. `DEMO` (`DEMO\user` binds, "Who am I?").
    pub netbios: String,
    /// The account lockout policy, if any.
    pub lockout: Option<LockoutPolicy>,
    /// The certificate of StartTLS and `ldaps://` (the simulator's `tls:`); without it StartTLS
    /// is refused as a domain controller without a certificate refuses it.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for LdapSettings {
    /// Without the TLS configuration, which holds the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSettings")
            .field("listen", &self.listen)
            .field("ldaps_listen", &self.ldaps_listen)
            .field("base_dn", &self.base_dn)
            .field("dns_domain", &self.dns_domain)
            .field("netbios", &self.netbios)
            .field("lockout", &self.lockout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl LdapSettings {
    /// A domain of naming context `base_dn` (e.g. `DC=demo,DC=example`) on `listen`, its
    /// NetBIOS name the first DC component upper-cased, without lockout policy or TLS.
    pub fn new(base_dn: &str, listen: SocketAddr) -> Result<LdapSettings, BaseDnError> {
        let labels = domain_labels(base_dn).ok_or_else(|| BaseDnError(base_dn.to_owned()))?;
        Ok(LdapSettings {
            listen,
            ldaps_listen: None,
            base_dn: base_dn.trim().to_owned(),
            dns_domain: labels.join("."),
            netbios: labels[0].to_uppercase(),
            lockout: None,
            tls: None,
        })
    }

    /// The domain's naming context, e.g. `DC=demo,DC=example`.
    pub fn base_dn(&self) -> &str {
        &self.base_dn
    }

    /// The domain's DNS name, e.g. `demo.example`: the UPN suffix.
    pub fn dns_domain(&self) -> &str {
        &self.dns_domain
    }

    /// Validates `simulator.ldap`: every problem as (field, message).
    pub fn from_file(file: LdapFile) -> Result<LdapSettings, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut address = |field: &str, text: &str| {
            let parsed = text.parse::<SocketAddr>();
            let invalid = || (field.to_owned(), format!("invalid address {text:?}: expected IP:PORT"));
            parsed.map_err(|_| problems.push(invalid())).ok()
        };
        let listen = address("listen", file.listen.as_deref().unwrap_or(DEFAULT_LDAP_LISTEN));
        let ldaps_listen = file.ldaps_listen.as_deref().map(|t| address("ldaps_listen", t));
        let settings = match (file.base_dn.as_deref(), listen) {
            (None, _) => {
                let missing = "missing: the domain's naming context, e.g. DC=demo,DC=example";
                problems.push(("base_dn".to_owned(), missing.to_owned()));
                None
            }
            // Checked whatever the address, so that both are reported at once.
            (Some(text), listen) => match LdapSettings::new(text, listen.unwrap_or(([127, 0, 0, 1], 0).into())) {
                Err(e) => {
                    problems.push(("base_dn".to_owned(), e.to_string()));
                    None
                }
                Ok(s) => Some(s),
            },
        };
        let netbios = file.netbios.map(|n| n.trim().to_uppercase());
        if let Some(n) = &netbios {
            // AD's NetBIOS domain names: 1 to 15 characters, none of its reserved ones.
            let reserved = |c: char| "\\/:*?\"<>|.,@ ".contains(c) || c.is_control();
            if n.is_empty() || n.chars().count() > 15 || n.chars().any(reserved) {
                let why =
                    format!("{n:?} is not a NetBIOS domain name: 1 to 15 characters, none of \\/:*?\"<>|.,@ or spaces");
                problems.push(("netbios".to_owned(), why));
            }
        }
        let threshold = file.lockout_threshold.unwrap_or(0);
        if threshold == 0 && file.lockout_duration.is_some() {
            let why = "needs lockout_threshold: nothing locks an account without it";
            problems.push(("lockout_duration".to_owned(), why.to_owned()));
        }
        let lockout = (threshold > 0)
            .then(|| LockoutPolicy { threshold, duration: file.lockout_duration.unwrap_or(DEFAULT_LOCKOUT_DURATION) });
        match settings {
            Some(s) if problems.is_empty() => Ok(LdapSettings {
                ldaps_listen: ldaps_listen.flatten(),
                netbios: netbios.unwrap_or(s.netbios),
                lockout,
                ..s
            }),
            _ => Err(problems),
        }
    }
}

/// The DNS labels of a naming context made of DC components only (`DC=demo,DC=example` →
/// `demo`, `example`), as an AD domain's is.
fn domain_labels(base_dn: &str) -> Option<Vec<String>> {
    let mut labels = Vec::new();
    for rdn in base_dn.split(',') {
        let (kind, value) = rdn.split_once('=')?;
        let value = value.trim();
        let label = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if !kind.trim().eq_ignore_ascii_case("dc") || value.is_empty() || !value.chars().all(label) {
            return None;
        }
        labels.push(value.to_owned());
    }
    Some(labels)
}

/// Whether `username` can be a directory account: AD forbids these characters in a
/// sAMAccountName, and the name goes into the entry's DN and UPN as it is.
pub(crate) fn check_username(username: &str) -> Result<(), String> {
    const FORBIDDEN: &str = "\"/\\[]:;|=,+*?<>@#";
    if username.starts_with(' ')
        || username.ends_with(' ')
        || username.chars().any(|c| FORBIDDEN.contains(c) || c.is_control())
    {
        return Err(format!(
            "{username:?} cannot be a directory account: Active Directory refuses names with \"/\\[]:;|=,+*?<>@# or control characters, or spaces around them (rename it, or remove ldap:)"
        ));
    }
    Ok(())
}

/// What the directory received for one account: binds naming it; searches and "Who am I?"
/// made while bound as it. Anonymous requests, and binds naming nobody, count under `""`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LdapAccountStats {
    /// Simple binds.
    pub binds: u64,
    /// Binds refused (49, whatever the sub-code).
    pub failed_binds: u64,
    /// Binds over TLS (`ldaps://` or after StartTLS): the password was not sent in the clear.
    pub tls_binds: u64,
    /// Search requests.
    pub searches: u64,
    /// "Who am I?" requests.
    pub whoami: u64,
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn a_block_is_validated_with_every_problem_named() {
        let file = LdapFile {
            listen: Some("nowhere".to_owned()),
            base_dn: Some("OU=People,DC=x".to_owned()),
            netbios: Some("A.B".to_owned()),
            lockout_duration: Some(Duration::from_secs(60)),
            ..LdapFile::default()
        };
        let problems = LdapSettings::from_file(file).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["listen", "base_dn", "netbios", "lockout_duration"], "{problems:?}");
        let file = LdapFile { base_dn: Some("OU=People,DC=x".to_owned()), ..LdapFile::default() };
        assert_eq!(LdapSettings::from_file(file).unwrap_err()[0].0, "base_dn");
        assert_eq!(LdapSettings::from_file(LdapFile::default()).unwrap_err()[0].0, "base_dn");

        let file = LdapFile {
            base_dn: Some("DC=Corp, DC=example,DC=com".to_owned()),
            lockout_threshold: Some(3),
            ..LdapFile::default()
        };
        let s = LdapSettings::from_file(file).unwrap();
        assert_eq!((s.dns_domain.as_str(), s.netbios.as_str()), ("Corp.example.com", "CORP"));
        assert_eq!(s.listen.to_string(), DEFAULT_LDAP_LISTEN);
        assert_eq!(s.lockout, Some(LockoutPolicy { threshold: 3, duration: DEFAULT_LOCKOUT_DURATION }));
        assert!(!format!("{s:?}").contains("ServerConfig"));
    }

    #[test]
    fn directory_names_are_checked() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("probe-user.1").is_ok());
        for bad in ["a@b", "a,b", "a=b", "DOM\\a", " a", "a\u{0}"] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }
}
