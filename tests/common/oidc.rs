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
