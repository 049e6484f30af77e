//! The simulator's world: application keys, accounts with their secrets and steps, faults.
//! Read from YAML: a `simulator:` block of probes.yaml or a file of its own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::duration::serde_prom;
use crate::yaml::{self, FieldIndex, FileError, FileErrors};

/// How the simulator misbehaves for one account, to exercise every failure the prober classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Behave as the real server.
    #[default]
    None,
    /// Accept the request and never answer.
    Stall,
    /// 200 with an HTML page (a front-office or proxy page).
    Html,
    /// 302 to `/User/LogOn` (base URL pointing at the front office).
    Redirect,
    /// 500 `{"message": …, "error": "Unexpected server error"}`.
    ServerError,
    /// 500 `{"Model": null, "Errors": […], "StatusCode": 500, "IsSucceed": false}`.
    ServerErrorModel,
    /// 503 in plain text, as a proxy answers.
    Unavailable,
    /// 200 whose JSON stops half way.
    TruncatedJson,
    /// 200 with a 20 MiB body, streamed without Content-Length.
    Oversized,
    /// 202 Expecting a step nobody knows (`SecretQuestion`).
    UnknownStep,
    /// 202 Expecting forever, alternating SecutityPin and VerificationCode.
    Endless202,
    /// 404 in the ASP.NET Web API shape.
    NotFound,
    /// 200 with valid JSON of the wrong shape (an array).
    WrongShape,
    /// 200 with bytes that are not UTF-8.
    NonUtf8,
    /// 401 Failed with a 5 KB Reason that changes on every request.
    RandomReason,
    /// 200 whose body arrives one byte per second.
    SlowDrip,
    /// 200 headers, then the body never comes.
    HeadersThenStall,
    /// The connection is closed as soon as the request is read: no status line, no headers.
    CloseWithoutResponse,
    /// 200 with a Content-Length, half the body, then the connection is reset.
    ResetMidBody,
    /// 302 to the very URL requested, for ever.
    RedirectLoop,
    /// 200 with valid JSON of the wrong shape: a string.
    JsonString,
    /// 200 with valid JSON of the wrong shape: an empty object.
    EmptyObject,
    /// Interim tokens are never remembered, as behind a load balancer whose nodes do not share
    /// tickets: every second step is answered "Corrupted ticket".
    ForgetTickets,
    /// Logins succeed, but their tokens are refused by every other call (401 "Authorization has
    /// been denied for this request."), as when sessions are not shared between nodes.
    RejectTokens,
    /// Logins succeed, `POST /logout` answers 500.
    LogoutError,
}

impl Fault {
    /// Faults that replace the whole answer of `/token`; the others change the login state
    /// machine or the other endpoints.
    pub fn replaces_answer(self) -> bool {
        !matches!(self, Fault::None | Fault::ForgetTickets | Fault::RejectTokens | Fault::LogoutError)
    }
}

/// What the server does with a wrong pin or verification code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WrongSecret {
    /// 401 Failed (the documented behaviour for a wrong pin).
    #[default]
    Reject,
    /// 202 Expecting the same step again.
    Reprompt,
}

/// At most `max_logins` first-step requests per `window` per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Logins allowed per window.
    pub max_logins: u32,
    /// The window.
    #[serde(with = "serde_prom")]
    pub window: Duration,
}

impl RateLimit {
    /// A limit that would refuse every login.
    fn is_empty(self) -> bool {
        self.max_logins == 0 || self.window.is_zero()
    }
}

const RATE_LIMIT_MESSAGE: &str = "max_logins and window must be positive";

/// One simulated user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// `Username`.
    pub username: String,
    /// `Password`.
    pub password: SecretString,
    /// Enables the SecutityPin step.
    #[serde(default)]
    pub pin: Option<SecretString>,
    /// False: the PIN step answers "PIN code is not init".
    #[serde(default = "yes")]
    pub pin_initialized: bool,
    /// Enables the VerificationCode step; the code the "SMS" carries.
    #[serde(default)]
    pub verification_code: Option<SecretString>,
    /// Answers "Your Password has expired and must be changed"; the directory answers its binds
    /// AD's 532 (password expired).
    #[serde(default)]
    pub password_expired: bool,
    /// Wrong pin or code: reject (default) or prompt again.
    #[serde(default)]
    pub wrong_secret: WrongSecret,
    /// Overrides the global rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Server time added to every answer for this account.
    #[serde(default, with = "serde_prom::option")]
    pub delay: Option<Duration>,
    /// Misbehaviour.
    #[serde(default)]
    pub fault: Fault,
    /// Adds `ConfirmationToken`, `PersonalPhrase` and `Image` (null) to answers.
    #[serde(default)]
    pub extra_fields: bool,
    /// The OAuth 2.0 server's interactive login asks this account for a one-time code of this
    /// TOTP secret (base32 or an otpauth:// URI) after its password.
    #[serde(default)]
    pub totp_secret: Option<SecretString>,
    /// The directory ([`super::ldap`]) answers every bind 775 (locked out), whatever the
    /// password, as Active Directory answers an account its lockout policy locked.
    #[serde(default)]
    pub locked: bool,
    /// The directory answers binds with the right password 533 (account disabled).
    #[serde(default)]
    pub disabled: bool,
    /// The directory answers binds with the right password 701 (account expired).
    #[serde(default)]
    pub account_expired: bool,
    /// The directory answers binds with the right password 773 (the password must be changed
    /// at the next logon: AD's pwdLastSet 0).
    #[serde(default)]
    pub must_change_password: bool,
    /// The directory's password expires this long after the simulator started
    /// (`msDS-UserPasswordExpiryTimeComputed`; once past, binds answer 532). Without it, and
    /// without `password_expired`, the password never expires.
    #[serde(default, with = "serde_prom::option")]
    pub password_expires_in: Option<Duration>,
}

fn yes() -> bool {
    true
}

impl Account {
    /// A password-only account with no fault; change fields for other behaviour.
    pub fn new(username: &str, password: &str) -> Account {
        Account {
            username: username.to_owned(),
            password: password.into(),
            pin: None,
            pin_initialized: true,
            verification_code: None,
            password_expired: false,
            wrong_secret: WrongSecret::Reject,
            rate_limit: None,
            delay: None,
            fault: Fault::None,
            extra_fields: false,
            totp_secret: None,
            locked: false,
            disabled: false,
            account_expired: false,
            must_change_password: false,
            password_expires_in: None,
        }
    }
}

/// The simulator section as written in YAML: `listen`, `tls` and `accounts_file` only make sense in the
/// `simulator:` block of probes.yaml; the rest may also be a file of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorFile {
    /// Address to serve on.
    #[serde(default)]
    pub listen: Option<String>,
    /// Accounts come from this file instead of this block.
    #[serde(default)]
    pub accounts_file: Option<PathBuf>,
    /// Valid `Et-App-Key` values.
    #[serde(default)]
    pub app_keys: Option<Vec<SecretString>>,
    /// Path prefix of the API (default `/api`).
    #[serde(default)]
    pub base_path: Option<String>,
    /// Status of the app-key error (default 403; some deployments answer 401).
    #[serde(default)]
    pub app_key_error_status: Option<u16>,
    /// Default rate limit for every account.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// The users.
    #[serde(default)]
    pub accounts: Option<Vec<Account>>,
    /// Also serve the same world over HTTPS.
    #[serde(default)]
    pub tls: Option<super::block::TlsFiles>,
    /// Also be an OAuth 2.0 / OpenID Connect authorization server (the accounts are its users).
    #[serde(default)]
    pub oauth2: Option<super::oauth2::OAuth2File>,
    /// Also be an LDAP directory modelled on Active Directory (the accounts are its users).
    #[serde(default)]
    pub ldap: Option<super::ldap::LdapFile>,
}

/// A validated simulator world.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Valid application keys.
    pub app_keys: Vec<SecretString>,
    /// API prefix, starting with `/`, without trailing `/`.
    pub base_path: String,
    /// Status of the app-key error.
    pub app_key_error_status: u16,
    /// Default rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Accounts, usernames unique.
    pub accounts: Vec<Account>,
    /// The OAuth 2.0 authorization server, if any.
    pub oauth2: Option<super::oauth2::OAuth2Settings>,
    /// The LDAP directory, if any.
    pub ldap: Option<super::ldap::LdapSettings>,
}

impl Settings {
    /// A world with these app keys and accounts, the `/api` base path and 403 app-key errors.
    pub fn new(app_keys: &[&str], accounts: Vec<Account>) -> Settings {
        Settings {
            app_keys: app_keys.iter().map(|k| SecretString::from(*k)).collect(),
            base_path: "/api".to_owned(),
            app_key_error_status: 403,
            rate_limit: None,
            accounts,
            oauth2: None,
            ldap: None,
        }
    }

    /// Reads a stand-alone accounts file.
    pub fn load(path: &Path) -> Result<Settings, FileErrors> {
        let doc = yaml::load_file::<SimulatorFile>(path)?;
        let mut errors = Vec::new();
        let block_only = [
            ("listen", doc.value.listen.is_some()),
            ("accounts_file", doc.value.accounts_file.is_some()),
            ("tls", doc.value.tls.is_some()),
        ];
        for (field, _) in block_only.into_iter().filter(|(_, set)| *set) {
            errors.push(doc.index.error(path, field, "only allowed in the simulator: block of the probes file"));
        }
        if doc.value.ldap.as_ref().is_some_and(|l| l.ldaps_listen.is_some()) {
            let message = "only in the simulator: block of the probes file, whose tls: certificate ldaps serves";
            errors.push(doc.index.error(path, "ldap.ldaps_listen", message));
        }
        let settings = Settings::from_fields(doc.value, "", path, &doc.index, &mut errors);
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(FileErrors(errors))
        }
    }

    /// Validates the account fields of `file`, reporting problems under `prefix` (e.g. `simulator.`).
    pub fn from_fields(
        file: SimulatorFile,
        prefix: &str,
        path: &Path,
        index: &FieldIndex,
        errors: &mut Vec<FileError>,
    ) -> Settings {
        let base_path = file.base_path.unwrap_or_else(|| "/api".to_owned());
        if !base_path.starts_with('/') {
            errors.push(index.error(path, format!("{prefix}base_path"), "must start with /"));
        }
        let app_key_error_status = file.app_key_error_status.unwrap_or(403);
        if !(400..500).contains(&app_key_error_status) {
            errors.push(index.error(path, format!("{prefix}app_key_error_status"), "must be a 4xx status"));
        }
        let accounts = file.accounts.unwrap_or_default();
        let mut seen = HashSet::new();
        for (i, a) in accounts.iter().enumerate() {
            if a.username.is_empty() {
                errors.push(index.error(path, format!("{prefix}accounts[{i}].username"), "must not be empty"));
            }
            if !seen.insert(a.username.as_str()) {
                errors.push(index.error(
                    path,
                    format!("{prefix}accounts[{i}].username"),
                    format!("duplicate account {:?}", a.username),
                ));
            }
            if a.rate_limit.is_some_and(RateLimit::is_empty) {
                errors.push(index.error(path, format!("{prefix}accounts[{i}].rate_limit"), RATE_LIMIT_MESSAGE));
            }
        }
        if file.rate_limit.is_some_and(RateLimit::is_empty) {
            errors.push(index.error(path, format!("{prefix}rate_limit"), RATE_LIMIT_MESSAGE));
        }
        let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // A section's problems come as (field within it, message): located under its name.
        let mut section = |name: &str, problems: Vec<(String, String)>| {
            for (field, message) in problems {
                errors.push(index.error(path, format!("{prefix}{name}.{field}"), message));
            }
        };
        let oauth2 = file
            .oauth2
            .and_then(|o| super::oauth2::OAuth2Settings::from_file(o, base_dir).map_err(|p| section("oauth2", p)).ok());
        let ldap = file.ldap.and_then(|l| super::ldap::LdapSettings::from_file(l).map_err(|p| section("ldap", p)).ok());
        if ldap.is_some() {
            // The directory's names are case-insensitive: two accounts differing in case only
            // would be one user there.
            let mut names = HashSet::new();
            for (i, a) in accounts.iter().enumerate() {
                let field = format!("{prefix}accounts[{i}].username");
                if let Err(why) = super::ldap::check_username(&a.username) {
                    errors.push(index.error(path, field, why));
                } else if !names.insert(a.username.to_lowercase()) {
                    let message =
                        format!("{:?} is another account's name in the directory, whose names ignore case", a.username);
                    errors.push(index.error(path, field, message));
                }
            }
        }
        Settings {
            app_keys: file.app_keys.unwrap_or_default(),
            base_path: base_path.trim_end_matches('/').to_owned(),
            app_key_error_status,
            rate_limit: file.rate_limit,
            accounts,
            oauth2,
            ldap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_file_rejects_duplicates_and_block_only_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.yaml");
        std::fs::write(
            &path,
            "listen: 127.0.0.1:1\naccounts:\n  - {username: a, password: x}\n  - {username: a, password: y}\n",
        )
        .unwrap();
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(err.contains(":1:1: listen: only allowed"), "{err}");
        assert!(err.contains(":4:6: accounts[1].username: duplicate account \"a\""), "{err}");
        assert!(!err.contains("x") || !err.contains("password: x"));
    }

    #[test]
    fn unknown_fault_is_reported_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.yaml");
        std::fs::write(&path, "accounts:\n  - username: a\n    password: x\n    fault: explode\n").unwrap();
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(err.contains(":4:12: accounts[0].fault: unknown variant `explode`"), "{err}");
    }
}
