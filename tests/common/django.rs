//! django-oauth-toolkit from PyPI, an OAuth 2.0 / OpenID Connect server, behind Django's own login
//! view: the project of tests/django-oauth, served by tests/django-oauth/serve.py with the Python
//! of the virtual environment target/django-oauth (installed there by tests/run.sh).
//!
//! The authorization code flow goes through HTML forms no one here wrote: the authorization
//! endpoint sends a browser that has no session to Django's login page (`/accounts/login/?next=…`,
//! a form with a CSRF token, `username`, `password` and `next`), which sends it back to the
//! authorization endpoint; that shows DOT's consent page (its form posts back to the same URL,
//! `allow` to grant), whose answer redirects to [`REDIRECT_URI`] with `code` and `state`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The harness folder.
fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django-oauth")
}

/// The Python of the virtual environment that tests/run.sh installs its requirements into.
fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/django-oauth/bin/python")
}

/// The confidential client whose authorizations show DOT's consent page.
pub const CLIENT_ID: &str = "authprobe-app";
/// A confidential client with `skip_authorization`: no consent page.
pub const TRUSTED_CLIENT_ID: &str = "authprobe-trusted";
/// The secret of both clients (client_secret_basic or client_secret_post; DOT stores it hashed).
pub const CLIENT_SECRET: &str = "dot-Secret-Jj74-distinct";
/// The only redirect URI both clients have.
pub const REDIRECT_URI: &str = "https://app.authprobe.test/callback";
/// The only post-logout redirect URI both clients have.
pub const POST_LOGOUT_REDIRECT_URI: &str = "https://app.authprobe.test/logged-out";
/// The scopes it knows (`openid`, and the claims of the others in the ID token and at userinfo).
pub const SCOPES: &str = "openid profile email";
/// Its user.
pub const USER: &str = "probe-user";
/// That user's password.
pub const USER_PASSWORD: &str = "dot-User-Pw-Ff63";
/// That user's `email` claim.
pub const USER_EMAIL: &str = "probe-user@authprobe.test";

/// The issuer of a server on `port`: what its discovery document (`{issuer}/.well-known/openid-configuration`)
/// announces and its ID tokens carry.
pub fn issuer(port: u16) -> String {
    format!("http://127.0.0.1:{port}/o")
}

/// A running django-oauth-toolkit; killed when dropped.
pub struct DjangoOauth {
    child: Child,
    /// Its port.
    pub port: u16,
    /// Its issuer, [`issuer`] of its port.
    pub issuer: String,
    _data: tempfile::TempDir,
}

impl DjangoOauth {
    /// Starts one on a free loopback port, with a database of its own (the user and the clients
    /// above), and waits (at most 60 s) until it listens. The first start after its files or
    /// requirements change migrates and seeds a database, some seconds; later ones copy it.
    pub async fn start() -> DjangoOauth {
        let python = python();
        assert!(
            python.is_file(),
            "django-oauth-toolkit is not installed: run tests/run.sh, or python3 -m venv target/django-oauth \
             && target/django-oauth/bin/pip install -r tests/django-oauth/requirements.txt"
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let data = tempfile::tempdir().unwrap();
        let dir = harness();
        let mut child = Command::new(&python)
            .arg(dir.join("serve.py"))
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("DATA_DIR", data.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/django-oauth/serve.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(listening, Ok(true), "django-oauth-toolkit did not start listening within 60 s");
        // Whatever it prints later: a closed pipe would make its writes fail.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        DjangoOauth { child, port, issuer: issuer(port), _data: data }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops it and waits for the process to end.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
