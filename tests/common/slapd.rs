//! OpenLDAP's slapd (Debian packages `slapd` and `ldap-utils`, installed by tests/run.sh), run by
//! tests/slapd/start.sh in a temporary folder of its own: an MDB database under [`SUFFIX`] loaded
//! from tests/slapd/entries.ldif.in, the ppolicy overlay with a default password policy, and a CA
//! and server certificate made by openssl. tests/slapd/README.md lists what it answers to each
//! account, with the bytes of real exchanges.
//!
//! The default policy: passwords expire 30 days after pwdChangedTime, with a warning in the last
//! 10 days (`timeBeforeExpiration`), then 3 grace logins (`graceAuthNsRemaining`); 3 failures
//! within 5 minutes lock an account for 5 minutes; a password reset by an administrator must be
//! changed (`changeAfterReset`). slapd sends its password policy response control only to a bind
//! that carried the request control ([`PPOLICY_OID`]): without it an expired or locked account
//! is a plain invalidCredentials (49).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The harness folder.
fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slapd")
}

/// The OID of the password policy request and response controls (draft-behera-ldap-password-policy).
pub const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
/// The OID of the "Who am I?" extended operation (RFC 4532), which slapd answers with
/// `dn:` and the bound DN (an empty value when anonymous).
pub const WHOAMI_OID: &str = "1.3.6.1.4.1.4203.1.11.3";
/// The OID of the StartTLS extended operation (RFC 4511); slapd's response has no responseName.
pub const STARTTLS_OID: &str = "1.3.6.1.4.1.1466.20037";

/// The naming context (the root DSE's `namingContexts`).
pub const SUFFIX: &str = "dc=authprobe,dc=test";
/// The rootdn: not subject to the password policy, reads the policy's operational attributes.
pub const ROOT_DN: &str = "cn=admin,dc=authprobe,dc=test";
/// The rootdn's password.
pub const ROOT_PASSWORD: &str = "slapd-Root-Pw-Qx47";
/// The service account a prober binds as to search for a user's DN (reads every entry but
/// passwords; anonymous clients can read only the root DSE and the schema).
pub const SERVICE_DN: &str = "cn=authprobe-svc,ou=Services,dc=authprobe,dc=test";
/// The service account's password.
pub const SERVICE_PASSWORD: &str = "slapd-Svc-Pw-Hn25";

/// The base of the people entries: [`USER_DN`], [`NO_PASSWORD_DN`] and a third, `uid=bob`.
pub const PEOPLE_BASE: &str = "ou=People,dc=authprobe,dc=test";
/// A filter that matches exactly [`USER_DN`] under [`PEOPLE_BASE`] (and under [`SUFFIX`]).
pub const USER_FILTER: &str = "(uid=probe-user)";
/// A filter that matches two entries under [`PEOPLE_BASE`] (alice and bob).
pub const TWO_MATCHES_FILTER: &str = "(description=twin)";
/// A filter that matches the three entries under [`PEOPLE_BASE`].
pub const ALL_PEOPLE_FILTER: &str = "(objectClass=inetOrgPerson)";
/// A base under the suffix that does not exist: a search there is noSuchObject (32), matchedDN
/// [`SUFFIX`].
pub const MISSING_BASE: &str = "ou=Nowhere,dc=authprobe,dc=test";

/// The user in good standing: a bind with the control gets 0 and an empty response control.
pub const USER_DN: &str = "uid=probe-user,ou=People,dc=authprobe,dc=test";
/// [`USER_DN`]'s uid.
pub const USER_UID: &str = "probe-user";
/// [`USER_DN`]'s password.
pub const USER_PASSWORD: &str = "slapd-User-Pw-Tz38";
/// An entry without a password: any simple bind to it is invalidCredentials (49).
pub const NO_PASSWORD_DN: &str = "uid=alice,ou=People,dc=authprobe,dc=test";
/// A DN that does not exist: a bind to it is invalidCredentials (49), like a wrong password, and
/// without a response control.
pub const UNKNOWN_DN: &str = "uid=nobody,ou=People,dc=authprobe,dc=test";

/// A password within the expiry warning: a bind gets 0 and `timeBeforeExpiration` of about
/// [`EXPIRING_SECONDS`].
pub const EXPIRING_DN: &str = "uid=expiring-user,ou=Accounts,dc=authprobe,dc=test";
/// [`EXPIRING_DN`]'s password.
pub const EXPIRING_PASSWORD: &str = "slapd-Expiring-Pw-Rk61";
/// The `timeBeforeExpiration` a bind to [`EXPIRING_DN`] gets just after the start (5 days; it
/// counts down from the moment start.sh wrote the entries).
pub const EXPIRING_SECONDS: u64 = 5 * 86_400;
/// An expired password, under a policy without grace logins: a bind gets 49 and the error
/// passwordExpired (0).
pub const EXPIRED_DN: &str = "uid=expired-user,ou=Accounts,dc=authprobe,dc=test";
/// [`EXPIRED_DN`]'s password.
pub const EXPIRED_PASSWORD: &str = "slapd-Expired-Pw-Wd84";
/// An expired password with [`GRACE_LOGINS`] grace logins: each bind uses one and gets 0 and
/// `graceAuthNsRemaining` (2, then 1, then 0); the next gets 49 and passwordExpired.
pub const GRACE_DN: &str = "uid=grace-user,ou=Accounts,dc=authprobe,dc=test";
/// [`GRACE_DN`]'s password.
pub const GRACE_PASSWORD: &str = "slapd-Grace-Pw-Pm19";
/// The grace logins of [`GRACE_DN`] at the start.
pub const GRACE_LOGINS: u32 = 3;
/// A password reset by an administrator (pwdReset TRUE): a bind gets 0 and the error
/// changeAfterReset (2); then a search is insufficientAccessRights (50), "Operations are
/// restricted to bind/unbind/abandon/StartTLS/modify password", while "Who am I?" still answers.
pub const RESET_DN: &str = "uid=reset-user,ou=Accounts,dc=authprobe,dc=test";
/// [`RESET_DN`]'s password.
pub const RESET_PASSWORD: &str = "slapd-Reset-Pw-Ly53";
/// A locked account (pwdAccountLockedTime 000001010000Z, until an administrator unlocks it): a
/// bind, right password or not, gets 49 and an empty response control, or the error
/// accountLocked (1) with [`Options::use_lockout`].
pub const LOCKED_DN: &str = "uid=locked-user,ou=Accounts,dc=authprobe,dc=test";
/// [`LOCKED_DN`]'s password.
pub const LOCKED_PASSWORD: &str = "slapd-Locked-Pw-Cv72";
/// An account in good standing that [`MAX_FAILURE`] wrong passwords lock (for
/// [`LOCKOUT_SECONDS`]): read its state with [`Slapd::password_state`].
pub const LOCKOUT_DN: &str = "uid=lockout-target,ou=Accounts,dc=authprobe,dc=test";
/// [`LOCKOUT_DN`]'s password.
pub const LOCKOUT_PASSWORD: &str = "slapd-Lockout-Pw-Nb46";
/// The failures (within 5 minutes) that lock an account.
pub const MAX_FAILURE: usize = 3;
/// How long a lockout lasts.
pub const LOCKOUT_SECONDS: u64 = 300;

/// How to start one.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `security simple_bind=128`: a simple bind with a DN without TLS gets confidentialityRequired
    /// (13, "confidentiality required"), whatever the DN and password; anonymous binds, the root
    /// DSE and StartTLS still work over plain LDAP.
    pub require_tls: bool,
    /// `ppolicy_use_lockout`: the response control of a bind to a locked account carries the
    /// error accountLocked (1) instead of nothing.
    pub use_lockout: bool,
}

/// An account's lockout state, as the rootdn reads it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PasswordState {
    /// `pwdFailureTime`: one GeneralizedTime per recorded failure (at most [`MAX_FAILURE`]; a
    /// successful bind clears them).
    pub failure_times: Vec<String>,
    /// `pwdAccountLockedTime`, when locked.
    pub locked_time: Option<String>,
}

/// A running slapd; killed when dropped.
pub struct Slapd {
    child: Child,
    /// The port of `ldap://` (StartTLS offered).
    pub ldap_port: u16,
    /// The port of `ldaps://`.
    pub ldaps_port: u16,
    /// The CA that issued its certificate (for 127.0.0.1 and localhost), PEM.
    pub ca_pem: PathBuf,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Slapd {
    /// Starts one on two free loopback ports and waits (at most 20 s) until both accept
    /// connections; it takes about 0.25 s.
    pub async fn start(options: Options) -> Slapd {
        assert!(
            Path::new("/usr/sbin/slapd").is_file() && which("ldapsearch"),
            "slapd is not installed: run tests/run.sh, or apt-get install slapd ldap-utils (see tests/slapd/README.md)"
        );
        // A port taken between its release and slapd's bind makes slapd exit: try other ports.
        let mut last = String::new();
        for _ in 0..3 {
            match Slapd::try_start(&options).await {
                Ok(s) => return s,
                Err(log) => last = log,
            }
        }
        panic!("slapd did not start:\n{last}");
    }

    async fn try_start(options: &Options) -> Result<Slapd, String> {
        let dir = tempfile::tempdir().unwrap();
        let (ldap_port, ldaps_port) = (free_port(), free_port());
        let log_path = dir.path().join("slapd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(harness().join("start.sh"))
            .arg(dir.path())
            .arg(ldap_port.to_string())
            .arg(ldaps_port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        if options.require_tls {
            cmd.arg("--require-tls");
        }
        if options.use_lockout {
            cmd.arg("--use-lockout");
        }
        let mut child = cmd.spawn().expect("start tests/slapd/start.sh");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("{status} (ports {ldap_port}, {ldaps_port})\n{log}"));
            }
            let ldap = tokio::net::TcpStream::connect(("127.0.0.1", ldap_port)).await.is_ok();
            if ldap && tokio::net::TcpStream::connect(("127.0.0.1", ldaps_port)).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("slapd did not accept connections within 20 s\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ca_pem = dir.path().join("ca.pem");
        Ok(Slapd { child, ldap_port, ldaps_port, ca_pem, dir })
    }

    /// `ldap://127.0.0.1:{ldap_port}`.
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:{ldaps_port}`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// Its folder: slapd.conf, entries.ldif, the certificates, db/ and slapd.log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The password policy state of the entry `dn` (`pwdFailureTime`, `pwdAccountLockedTime`),
    /// read by ldapsearch over ldaps as the rootdn.
    pub async fn password_state(&self, dn: &str) -> PasswordState {
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-o", "ldif_wrap=no", "-H", &self.ldaps_url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .args(["-b", dn, "-s", "base", "(objectClass=*)", "pwdFailureTime", "pwdAccountLockedTime"])
            .env("LDAPTLS_CACERT", &self.ca_pem)
            .env("LDAPTLS_REQCERT", "demand")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run ldapsearch");
        assert!(out.status.success(), "ldapsearch {dn}: {}", String::from_utf8_lossy(&out.stderr));
        let mut state = PasswordState::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(t) = line.strip_prefix("pwdFailureTime: ") {
                state.failure_times.push(t.to_owned());
            } else if let Some(t) = line.strip_prefix("pwdAccountLockedTime: ") {
                state.locked_time = Some(t.to_owned());
            }
        }
        state
    }

    /// Stops it and waits for the process to end.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Whether `tool` is on the PATH.
fn which(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}
