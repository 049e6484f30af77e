//! Samba's Active Directory domain controller (Debian's samba, its LDAP server only), started by
//! tests/samba/dc.py in a network namespace of its own (Samba's LDAP ports are fixed: 389, 636,
//! 3268, 3269) and reached through loopback ports of the tests' namespace that dc.py relays into
//! it. Needs root, as tests/run.sh and CI run. See tests/samba/README.md for what it answers.
//!
//! Each start copies a provisioned template (made once, some seconds, into
//! `CARGO_TARGET_TMPDIR/samba-template`, again when tests/samba changes or after 30 days) into a
//! folder of its own: a DC starts in about half a second, its state (lockouts) its own.
//!
//! Simple binds succeed with a user principal name (`name@authprobe.test`), a DN or
//! `AUTHPROBE\name`; a bare sAMAccountName is refused as a wrong password. Every refusal of a
//! simple bind is result 49 (invalidCredentials) with [`diagnostic`] of a sub-code: a wrong
//! password and an unknown user alike [`DATA_BAD_CREDENTIALS`]; the account's state only with the
//! right password, except a lockout, which is told with any password.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The harness folder.
fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samba")
}

/// The provisioned template every start copies (dc.py makes it when missing or stale).
fn template() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("samba-template")
}

/// The Kerberos realm; user principal names end with it (in either case).
pub const REALM: &str = "AUTHPROBE.TEST";
/// The DNS domain, the suffix of the users' principal names.
pub const DNS_DOMAIN: &str = "authprobe.test";
/// The NetBIOS domain, for `AUTHPROBE\name` binds.
pub const NETBIOS_DOMAIN: &str = "AUTHPROBE";
/// The DC's host name: `dnsHostName` in its rootDSE, the only name in the certificate Samba
/// makes (as its CN, with no subjectAltName: name checks that ignore the CN, as rustls' do, fail).
pub const HOST_NAME: &str = "DC1.authprobe.test";
/// The domain's naming context (`defaultNamingContext`), the base of searches for users.
pub const BASE_DN: &str = "DC=authprobe,DC=test";
/// The container of every user below.
pub const USERS_DN: &str = "CN=Users,DC=authprobe,DC=test";

/// The domain's administrator.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=authprobe,DC=test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "ldap-Admin-Pw-Xx91";

/// A service account for search-then-bind (its password never expires); it may search the users
/// and read their `msDS-UserPasswordExpiryTimeComputed`. Anonymous searches below the rootDSE are
/// refused (result 1, `00002020: Operation unavailable without authentication`).
pub const SERVICE_USER: &str = "svc-authprobe";
/// Its DN.
pub const SERVICE_DN: &str = "CN=svc-authprobe,CN=Users,DC=authprobe,DC=test";
/// Its password.
pub const SERVICE_PASSWORD: &str = "ldap-Svc-Pw-Hh81";

/// The user in good standing (sAMAccountName). Its CN is not its name ([`USER_DN`]), as when
/// search-then-bind is needed; its password expires [`MAX_PASSWORD_AGE`] after the template was
/// made ([`Samba::template_made_at`]).
pub const USER: &str = "probe-user";
/// Its user principal name.
pub const USER_UPN: &str = "probe-user@authprobe.test";
/// Its DN.
pub const USER_DN: &str = "CN=Grace Probe,CN=Users,DC=authprobe,DC=test";
/// Its `mail` (and `displayName` is `Grace Probe`).
pub const USER_MAIL: &str = "probe-user@authprobe.test";
/// Its password.
pub const USER_PASSWORD: &str = "ldap-User-Pw-Aa11";
/// A password no account has: [`DATA_BAD_CREDENTIALS`] (no user's wrong passwords lock it out
/// but [`LOCKOUT_USER`]'s and [`LOCKED_USER`]'s).
pub const WRONG_PASSWORD: &str = "ldap-Wrong-Pw-Zz00";
/// A user that does not exist: [`DATA_BAD_CREDENTIALS`] too, with any password.
pub const UNKNOWN_USER: &str = "probe-nobody";

/// A user who must change the password (pwdLastSet 0): [`DATA_MUST_CHANGE`].
pub const MUST_CHANGE_USER: &str = "probe-mustchange";
/// Its password.
pub const MUST_CHANGE_PASSWORD: &str = "ldap-Must-Pw-Dd44";
/// A user whose password expired (pwdLastSet 2000-01-01, the domain's maximum age 42 days):
/// [`DATA_PASSWORD_EXPIRED`].
pub const EXPIRED_USER: &str = "probe-expired";
/// Its password.
pub const EXPIRED_PASSWORD: &str = "ldap-Expired-Pw-Cc33";
/// A disabled user (userAccountControl 514): [`DATA_DISABLED`].
pub const DISABLED_USER: &str = "probe-disabled";
/// Its password.
pub const DISABLED_PASSWORD: &str = "ldap-Disabled-Pw-Ee55";
/// A user whose account expired (accountExpires 2020-01-01): [`DATA_ACCOUNT_EXPIRED`].
pub const ACCOUNT_EXPIRED_USER: &str = "probe-acctexpired";
/// Its password.
pub const ACCOUNT_EXPIRED_PASSWORD: &str = "ldap-AcctExp-Pw-Ff66";
/// A user locked out from the start, until [`Samba::unlock`]: [`DATA_LOCKED`], with its password
/// or any other.
pub const LOCKED_USER: &str = "probe-locked";
/// Its password.
pub const LOCKED_PASSWORD: &str = "ldap-Locked-Pw-Bb22";
/// A user whom [`LOCKOUT_THRESHOLD`] wrong passwords (each [`DATA_BAD_CREDENTIALS`]) lock out
/// until [`Samba::unlock`]: every bind after them, right password or not, is [`DATA_LOCKED`].
pub const LOCKOUT_USER: &str = "probe-lockme";
/// Its password.
pub const LOCKOUT_PASSWORD: &str = "ldap-Lockme-Pw-Gg77";
/// The wrong passwords (within 30 minutes) that lock [`LOCKOUT_USER`] out: a fine-grained password
/// policy of it and [`LOCKED_USER`] only (the domain's own threshold is 0, Samba's default).
pub const LOCKOUT_THRESHOLD: u32 = 3;
/// The domain's maximum password age (Samba's default).
pub const MAX_PASSWORD_AGE: Duration = Duration::from_secs(42 * 86400);

/// The result code of every refused simple bind.
pub const INVALID_CREDENTIALS: u32 = 49;
/// The sub-code of a wrong password, an unknown user or an empty password (Windows says 525 for
/// an unknown user; Samba does not), and of any wrong password for an account in another state.
pub const DATA_BAD_CREDENTIALS: &str = "52e";
/// The sub-code of a right password that must be changed (pwdLastSet 0).
pub const DATA_MUST_CHANGE: &str = "773";
/// The sub-code of a right password that expired.
pub const DATA_PASSWORD_EXPIRED: &str = "532";
/// The sub-code of a right password of a disabled account.
pub const DATA_DISABLED: &str = "533";
/// The sub-code of a right password of an expired account.
pub const DATA_ACCOUNT_EXPIRED: &str = "701";
/// The sub-code of a locked-out account, whatever the password.
pub const DATA_LOCKED: &str = "775";
/// The result code of a simple bind over plain LDAP when [`Options::require_strong_auth`].
pub const STRONG_AUTH_REQUIRED: u32 = 8;
/// Its diagnostic message.
pub const STRONG_AUTH_MESSAGE: &str = "BindSimple: Transport encryption required.";

/// The diagnostic message of a refused simple bind with the sub-code `data` (e.g.
/// [`DATA_LOCKED`]), as Samba 4.17 sends it (no trailing NUL, unlike Windows).
pub fn diagnostic(data: &str) -> String {
    format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {data}, v1db1")
}

/// The user principal name of `user`.
pub fn upn(user: &str) -> String {
    format!("{user}@{DNS_DOMAIN}")
}

/// The DN of `user` (any but [`USER`], whose CN differs: [`USER_DN`]).
pub fn dn(user: &str) -> String {
    format!("CN={user},{USERS_DN}")
}

/// Unix seconds of an Active Directory time (FILETIME: 100 ns since 1601-01-01, as pwdLastSet
/// and msDS-UserPasswordExpiryTimeComputed; `i64::MAX` means never).
pub fn filetime_to_unix(filetime: i64) -> i64 {
    filetime / 10_000_000 - 11_644_473_600
}

/// How to start one.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Keep Samba's default `ldap server require strong auth = yes`: simple binds over plain LDAP
    /// are refused ([`STRONG_AUTH_REQUIRED`]) and work over StartTLS and LDAPS only.
    pub require_strong_auth: bool,
    /// Serve this certificate chain and its key (PEM files) on LDAPS and StartTLS instead of
    /// Samba's own ([`Samba::ca_file`]). Samba sends the whole chain.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The DC's folder: an empty one gets a copy of the template; a folder a DC ran in restarts
    /// that DC with its state. A new temporary folder when `None`.
    pub dir: Option<PathBuf>,
    /// Loopback port relayed to its LDAP port (389, StartTLS there too); a free one when `None`.
    pub ldap_port: Option<u16>,
    /// Loopback port relayed to its LDAPS port (636); a free one when `None`.
    pub ldaps_port: Option<u16>,
}

/// A running DC; stopped when dropped (dc.py stops samba when its stdin closes).
pub struct Samba {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The loopback port relayed to its LDAP port (389).
    pub ldap_port: u16,
    /// The loopback port relayed to its LDAPS port (636).
    pub ldaps_port: u16,
    /// The loopback port relayed to its global catalog's LDAP port (3268).
    pub gc_port: u16,
    /// The loopback port relayed to its global catalog's LDAPS port (3269).
    pub gcs_port: u16,
    /// Its folder (etc/smb.conf, private/sam.ldb, private/tls, log/samba.out).
    pub dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Samba {
    /// Starts one and waits (at most 120 s: the first start makes the template) until it
    /// accepts LDAP connections.
    pub async fn start(options: Options) -> Samba {
        assert!(
            Path::new("/usr/sbin/samba").is_file(),
            "samba is not installed: run tests/run.sh, or apt-get install --no-install-recommends samba \
             samba-ad-provision samba-dsdb-modules samba-vfs-modules"
        );
        let (dir, temp) = match options.dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::tempdir().unwrap();
                (t.path().join("dc"), Some(t))
            }
        };
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(harness().join("dc.py"))
            .arg("serve")
            .arg("--dir")
            .arg(&dir)
            .arg("--template")
            .arg(template())
            .arg("--ldap-port")
            .arg(options.ldap_port.unwrap_or(0).to_string())
            .arg("--ldaps-port")
            .arg(options.ldaps_port.unwrap_or(0).to_string())
            .arg("--strong-auth")
            .arg(if options.require_strong_auth { "yes" } else { "no" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((cert, key)) = &options.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd.spawn().expect("start tests/samba/dc.py");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("listening ") {
                    return Some(line);
                }
            }
            None
        })
        .await;
        let line = match listening {
            Ok(Some(line)) => line,
            _ => panic!("samba did not accept LDAP connections within 120 s (see dc.py's errors above)"),
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = |name: &str| -> u16 {
            let prefix = format!("{name}=");
            line.split(' ')
                .find_map(|w| w.strip_prefix(prefix.as_str()))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {name} port in dc.py's line {line:?}"))
        };
        let samba = Samba {
            child,
            stdin,
            ldap_port: port("ldap"),
            ldaps_port: port("ldaps"),
            gc_port: port("gc"),
            gcs_port: port("gcs"),
            dir,
            _dir: temp,
        };
        tokio::net::TcpStream::connect(("127.0.0.1", samba.ldap_port)).await.expect("connect to the LDAP relay");
        samba
    }

    /// `ldap://127.0.0.1:{ldap_port}` (plain LDAP; StartTLS there too).
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:{ldaps_port}`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The self-signed CA (PEM) of the certificate Samba made and serves unless [`Options::tls`]:
    /// RSA 4096, valid 700 days from the template's making, for [`HOST_NAME`] as CN only. Samba
    /// sends the leaf alone.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("private/tls/ca.pem")
    }

    /// When the template was made (Unix seconds): the users' passwords were set just before, so
    /// [`USER`]'s expires about [`MAX_PASSWORD_AGE`] later.
    pub fn template_made_at(&self) -> f64 {
        let stamp = std::fs::read_to_string(self.dir.join("authprobe-stamp")).expect("the template's stamp");
        stamp.split_whitespace().nth(1).and_then(|t| t.parse().ok()).expect("a time in the template's stamp")
    }

    /// Runs `samba-tool ARGS -H {dir}/private/sam.ldb -s {dir}/etc/smb.conf` on its database (the
    /// running DC sees the change at once), e.g. `["user", "disable", USER]`; panics unless it
    /// succeeds.
    pub async fn samba_tool(&self, args: &[&str]) -> String {
        let out = Command::new("/usr/bin/samba-tool")
            .args(args)
            .arg("-H")
            .arg(self.dir.join("private/sam.ldb"))
            .arg("-s")
            .arg(self.dir.join("etc/smb.conf"))
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run samba-tool");
        assert!(out.status.success(), "samba-tool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Unlocks `user` (badPwdCount and lockoutTime back to 0), about half a second.
    pub async fn unlock(&self, user: &str) {
        self.samba_tool(&["user", "unlock", user]).await;
    }

    /// Stops it and waits (at most 15 s) for samba and dc.py to end; its folder is kept when it
    /// was [`Options::dir`], to start it again.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        // dc.py closes samba's stdin in turn, waits for it and exits (reaped by tokio).
        drop(self.stdin.take());
    }
}
