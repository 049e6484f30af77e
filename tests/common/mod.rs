//! Helpers shared by the integration test binaries.
#![allow(dead_code)]

pub mod browser;
pub mod django;
pub mod oidc;
pub mod openssl;
pub mod prometheus;
pub mod samba;
pub mod service;
pub mod slapd;

use std::time::Duration;

use authprobe::protocol::etna::EtnaTarget;
use authprobe::protocol::{EtnaLogin, Expect, Login, LoginSpec};
use authprobe::simulator::{Account, Settings, Simulator};

/// ETNA's `State`s, as outcomes carry them.
pub const SUCCEEDED: authprobe::protocol::State = authprobe::protocol::State::named("Succeeded");
/// See [`SUCCEEDED`].
pub const EXPECTING: authprobe::protocol::State = authprobe::protocol::State::named("Expecting");
/// See [`SUCCEEDED`].
pub const FAILED: authprobe::protocol::State = authprobe::protocol::State::named("Failed");

/// The app key every test simulator accepts.
pub const APP_KEY: &str = "test-app-key-Zq81";

/// Starts a simulator on a free loopback port.
pub async fn simulator(accounts: Vec<Account>) -> Simulator {
    simulator_with(Settings::new(&[APP_KEY], accounts)).await
}

/// Starts a simulator with explicit settings on a free loopback port.
pub async fn simulator_with(settings: Settings) -> Simulator {
    Simulator::start(settings, "127.0.0.1:0".parse().unwrap()).await.expect("bind simulator")
}

/// An account with a pin.
pub fn pin_account(username: &str, password: &str, pin: &str) -> Account {
    let mut a = Account::new(username, password);
    a.pin = Some(pin.into());
    a
}

/// A password-only account (password `pw`) that misbehaves with `fault`.
pub fn fault_account(username: &str, fault: authprobe::simulator::Fault) -> Account {
    let mut a = Account::new(username, "pw");
    a.fault = fault;
    a
}

/// An account with a verification code.
pub fn code_account(username: &str, password: &str, code: &str) -> Account {
    let mut a = Account::new(username, password);
    a.verification_code = Some(code.into());
    a
}

/// The ETNA part of an ETNA login spec, to change it.
pub fn etna(spec: &mut LoginSpec) -> &mut EtnaLogin {
    match &mut spec.login {
        Login::Etna(e) => e,
        _ => panic!("not an ETNA login"),
    }
}

/// The target of an ETNA login spec, to change it (the spec's own copy).
pub fn etna_target(spec: &mut LoginSpec) -> &mut EtnaTarget {
    std::sync::Arc::make_mut(&mut etna(spec).target)
}

/// A login spec for `username` against `sim`.
pub fn spec(sim: &Simulator, username: &str, password: &str) -> LoginSpec {
    spec_at(&sim.base_url(), username, password)
}

/// A login spec for `username` against the server at `base_url`.
pub fn spec_at(base_url: &str, username: &str, password: &str) -> LoginSpec {
    LoginSpec {
        login: Login::Etna(EtnaLogin {
            target: std::sync::Arc::new(EtnaTarget { base_url: base_url.parse().unwrap(), app_key: APP_KEY.into() }),
            username: username.to_owned(),
            password: password.into(),
            pin: None,
            verification_code: None,
            expect: Expect::Succeeded,
            max_steps: 3,
            validate: false,
            logout: false,
        }),
        timeout: Duration::from_secs(5),
        max_body_bytes: 64 * 1024,
        retries: 0,
        tls: Default::default(),
        proxy: None,
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `n` accounts `{prefix}-000`… (password `pw`) on a new simulator, and `dir/probes.yaml` with
/// a probe of each, of the same name, with `defaults`.
pub async fn many_probes(
    dir: &std::path::Path,
    prefix: &str,
    n: usize,
    defaults: &str,
) -> (Simulator, std::path::PathBuf) {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:03}")).collect();
    let sim = simulator(names.iter().map(|n| Account::new(n, "pw")).collect()).await;
    let probes: String =
        names.iter().map(|n| format!("  - {{name: {n}, target: sim, username: {n}, password: pw}}\n")).collect();
    let text = format!(
        "defaults: {defaults}\ntargets: [{{name: sim, base_url: {}, app_key: {APP_KEY}}}]\nprobes:\n{probes}",
        sim.base_url()
    );
    (sim, write(dir, "probes.yaml", &text))
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A plain HTTP client for talking to servers under test (the crate ships rustls without a
/// process-wide crypto provider, so install ring once).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// GET `url` and return status and body text.
pub async fn get(url: &str) -> (u16, String) {
    let r = http().get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A test certificate authority and a server certificate it issued, for the TLS simulator.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    /// The server's configuration: the leaf and the CA as its chain, and the leaf's key.
    pub server: std::sync::Arc<rustls::ServerConfig>,
    /// The earliest notAfter of the served chain (Unix seconds): the CA's, which expires first.
    pub chain_not_after: i64,
    /// A client certificate the CA issued and its key, PEM.
    pub client_pem: (String, String),
    /// A server configuration that demands a client certificate from the CA.
    pub server_with_client_auth: std::sync::Arc<rustls::ServerConfig>,
    /// The server's chain (leaf, CA) and key, PEM, for servers configured by file.
    pub server_pem: (String, String),
}

/// A CA expiring on 2030-06-01 and a leaf for `names` expiring on 2031-01-15.
pub fn pki(names: &[&str]) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "authprobe test CA");
    ca_params.not_after = rcgen::date_time_ymd(2030, 6, 1);
    let chain_not_after = ca_params.not_after.unix_timestamp();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    leaf_params.not_after = rcgen::date_time_ymd(2031, 1, 15);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(Vec::<String>::new()).unwrap().signed_by(&client_key, &issuer).unwrap();
    let key = || rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        || rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let chain = vec![leaf.der().clone(), ca.der().clone()];
    let server = builder().with_no_client_auth().with_single_cert(chain.clone(), key()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider.clone())
            .build()
            .unwrap();
    let with_client_auth = builder().with_client_cert_verifier(client_verifier).with_single_cert(chain, key()).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server: std::sync::Arc::new(server),
        chain_not_after,
        client_pem: (client.pem(), client_key.serialize_pem()),
        server_with_client_auth: std::sync::Arc::new(with_client_auth),
        server_pem: (format!("{}{}", leaf.pem(), ca.pem()), leaf_key.serialize_pem()),
    }
}

/// The simulator over HTTPS with `pki`'s server certificate, on a free loopback port.
pub async fn tls_simulator(accounts: Vec<Account>, pki: &TestPki) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::serve_tls(Settings::new(&[APP_KEY], accounts), listener, pki.server.clone())
}

/// A TCP relay to `target` on a free loopback port, counting the connections it carried: an
/// HTTP proxy for plain-HTTP requests (the simulator accepts their absolute-form target).
/// Stops when dropped.
pub struct Relay {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Connections relayed so far.
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { addr, connections, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The secret of the test simulator's OAuth 2.0 clients.
pub const CLIENT_SECRET: &str = "cs-Oq7-distinct-Vv3";

/// Starts a simulator whose OAuth 2.0 server has `clients` and whose accounts are its users.
pub async fn oauth2_simulator(
    clients: Vec<authprobe::simulator::oauth2::SimClient>,
    accounts: Vec<Account>,
) -> Simulator {
    let mut settings = Settings::new(&[APP_KEY], accounts);
    settings.oauth2 = Some(authprobe::simulator::oauth2::OAuth2Settings::new(clients));
    simulator_with(settings).await
}

/// An OAuth 2.0 target at the issuer `issuer` (discovery) for `client_id` with [`CLIENT_SECRET`].
pub fn oauth2_target(issuer: &str, client_id: &str) -> authprobe::protocol::oauth2::OAuth2Target {
    use authprobe::protocol::oauth2::{ClientAuth, Endpoints, OAuth2Target};
    OAuth2Target::new(
        Some(issuer.parse().unwrap()),
        Endpoints::default(),
        client_id.to_owned(),
        Some(CLIENT_SECRET.into()),
        ClientAuth::ClientSecretBasic,
        Duration::from_secs(300),
        Duration::from_secs(60),
    )
    .expect("an issuer")
}

/// A client_credentials login at `target`, validating nothing.
pub fn oauth2_spec(target: authprobe::protocol::oauth2::OAuth2Target) -> LoginSpec {
    use authprobe::protocol::oauth2::{Grant, OAuth2Login, Validate};
    LoginSpec {
        login: Login::OAuth2(OAuth2Login {
            target: std::sync::Arc::new(target),
            grant: Grant::ClientCredentials,
            scope: None,
            audience: None,
            resource: None,
            validate: Validate::No,
            refresh: false,
            revoke: false,
        }),
        timeout: Duration::from_secs(5),
        max_body_bytes: 64 * 1024,
        retries: 0,
        tls: Default::default(),
        proxy: None,
    }
}

/// The OAuth 2.0 part of a login spec, to change it.
pub fn oauth2(spec: &mut LoginSpec) -> &mut authprobe::protocol::oauth2::OAuth2Login {
    match &mut spec.login {
        Login::OAuth2(o) => o,
        _ => panic!("not an OAuth 2.0 login"),
    }
}

/// Runs `command` with `input` on its stdin: its exit code, and what it printed (stdout, then
/// stderr).
fn run_with_input(mut command: std::process::Command, input: &str, what: &str) -> (i32, String) {
    use std::io::Write as _;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), report)
}

/// Runs `promtool check metrics` on `text`: its output and exit code.
pub fn promtool_check_metrics(text: &str) -> (i32, String) {
    let mut command = std::process::Command::new("promtool");
    command.args(["check", "metrics"]);
    run_with_input(command, text, "promtool from Debian's prometheus package (tests/run.sh installs it)")
}

/// A Python tool of the tests, installed by tests/run.sh into target/pytools (hadolint,
/// kubernetes-validate, and `python` with prometheus_client).
pub fn pytool(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pytools/bin").join(name);
    assert!(path.exists(), "{} is missing: run `bash tests/run.sh`, which installs it", path.display());
    path.display().to_string()
}

/// Parses `text` with prometheus_client's OpenMetrics parser (the Python reference client's,
/// which checks the format strictly: `# EOF`, `_total` and `_created`, exemplars, histogram
/// order): its exit code, and the families it read or what it refused.
pub fn openmetrics_parse(text: &str) -> (i32, String) {
    let script = "import sys\n\
from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
families = list(text_string_to_metric_families(sys.stdin.read()))\n\
exemplars = sum(1 for f in families for s in f.samples if s.exemplar)\n\
print(len(families), 'families,', exemplars, 'exemplars')\n";
    let mut command = std::process::Command::new(pytool("python"));
    command.args(["-c", script]);
    run_with_input(command, text, "python from target/pytools")
}
