//! oidc-provider from the npm registry, a certified OpenID Connect server, run by Node.js with
//! the configuration of tests/oidc-provider/server.mjs (installed there by tests/run.sh).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The harness folder.
fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// The secret of its confidential clients (`svc`, `svc-post`, `app`).
pub const SECRET: &str = "oidc-Secret-Uu83-distinct";
/// Its user, for the password grant.
pub const USER: &str = "probe-user";
/// That user's password.
pub const USER_PASSWORD: &str = "oidc-User-Pw-Kk52";
/// The resource its JWT access tokens are for.
pub const API: &str = "https://api.authprobe.test";

// The interactive login: the authorization code flow (PKCE S256 required) through its HTML pages
// under /interaction/UID. Clients may ask for `openid offline_access api`; oidc-provider keeps
// offline_access (a refresh token) only when the request also says prompt=consent.

/// The redirect_uri its authorization code clients have registered (never fetched).
pub const REDIRECT_URI: &str = "https://app.authprobe.test/callback";
/// The post_logout_redirect_uri they have registered, for RP-initiated logout (/session/end).
pub const POST_LOGOUT_REDIRECT_URI: &str = "https://app.authprobe.test/logged-out";
/// A confidential client (client_secret_basic with [`SECRET`]): username and password on one
/// page, then a consent page (Allow / Deny).
pub const WEB_CLIENT: &str = "web";
/// A confidential client (client_secret_basic with [`SECRET`]): identifier first (a page for
/// the username, field `identifier`, then one for the password), then a consent page.
pub const IDFIRST_CLIENT: &str = "web-idfirst";
/// A public client (no secret, token_endpoint_auth_method none): one-page login, no consent page.
pub const PUBLIC_CLIENT: &str = "web-public";
/// A user who, once the password is accepted, is asked a TOTP code (interactive login only: the
/// password grant does not know this user).
pub const OTP_USER: &str = "otp-user";
/// That user's password.
pub const OTP_PASSWORD: &str = "oidc-Otp-Pw-Jj71";
/// That user's TOTP secret, base32 (RFC 6238: HMAC-SHA1, 6 digits, 30 s; the current step ±1 is
/// accepted, a step already used is refused as a wrong code).
pub const TOTP_SECRET: &str = "AUTHPROBEOTPUSERKJ7QW2XZ5MN4VLEB";

/// How to start one.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Port to listen on; a free one when `None`.
    pub port: Option<u16>,
    /// Its signing keys (kept across restarts to rotate them).
    pub keys_file: Option<PathBuf>,
    /// Put a new signing key first.
    pub rotate: bool,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The public JWK of the `keyed` private_key_jwt client.
    pub client_key: Option<PathBuf>,
    /// The public key (PEM) of the `keyed-rsa` private_key_jwt client.
    pub client_rsa_key: Option<PathBuf>,
    /// Leave the password grant out.
    pub no_password_grant: bool,
}

/// A running oidc-provider; killed when dropped.
pub struct OidcProvider {
    child: Child,
    /// Its port.
    pub port: u16,
    /// Its issuer.
    pub issuer: String,
    _keys: Option<tempfile::TempDir>,
}

impl OidcProvider {
    /// Starts one and waits (at most 30 s) until it listens.
    pub async fn start(options: Options) -> OidcProvider {
        let dir = harness();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run tests/run.sh, or npm ci --prefix tests/oidc-provider"
        );
        let port = options.port.unwrap_or_else(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let (keys_file, keys_dir) = match options.keys_file {
            Some(f) => (f, None),
            None => {
                let d = tempfile::tempdir().unwrap();
                (d.path().join("keys.json"), Some(d))
            }
        };
        let scheme = if options.tls.is_some() { "https://localhost" } else { "http://127.0.0.1" };
        let issuer = format!("{scheme}:{port}");
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("ISSUER", &issuer)
            .env("KEYS_FILE", &keys_file)
            .env("ROTATE", if options.rotate { "1" } else { "0" })
            .env("PASSWORD_GRANT", if options.no_password_grant { "0" } else { "1" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some((cert, key)) = &options.tls {
            cmd.env("TLS_CERT", cert).env("TLS_KEY", key);
        }
        if let Some(k) = &options.client_key {
            cmd.env("CLIENT_KEY_FILE", k);
        }
        if let Some(k) = &options.client_rsa_key {
            cmd.env("CLIENT_RSA_KEY_FILE", k);
        }
        let mut child = cmd.spawn().expect("start node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(listening, Ok(true), "oidc-provider did not start listening within 30 s");
        // It writes notices to stdout later on: a closed pipe would kill it (EPIPE).
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        OidcProvider { child, port, issuer, _keys: keys_dir }
    }

    /// Stops it and waits for the process to end.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
