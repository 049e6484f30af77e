//! Reliability and security of the running binary: what it does with clients it cannot trust
//! (slow, oversized, unauthenticated), servers that misbehave in every way the matrix lists, and
//! the secrets it handles.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authprobe::simulator::oauth2::SimClient;
use authprobe::simulator::{Account, Fault, Simulator};
use common::service::Service;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One password probe every second against `sim`.
fn one_probe_config(dir: &Path, sim: &Simulator, password: &str) -> PathBuf {
    write(
        dir,
        "probes.yaml",
        &format!(
            "defaults: {{interval: 1s, timeout: 900ms}}\n\
             targets: [{{name: sim, base_url: {}, app_key: {APP_KEY}}}]\n\
             probes: [{{name: good, target: sim, username: good, password: {password}}}]\n",
            sim.base_url()
        ),
    )
}

fn address(svc: &Service) -> SocketAddr {
    svc.base.trim_start_matches("http://").parse().unwrap()
}

/// Sends `request` (a whole HTTP/1.0 request) over TLS restricted to `versions`, trusting `ca`;
/// returns the raw answer, or why there was none.
async fn https(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    request: &str,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let exchange = async {
        let mut tls = connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        // A server that closes without close_notify still gave its whole HTTP/1.0 answer.
        let _ = tls.read_to_end(&mut out).await;
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.map_err(|_| "timed out".to_owned())?
}

fn get_request(path: &str, auth: Option<(&str, &str)>) -> String {
    use base64::Engine as _;
    let auth = auth
        .map(|(u, p)| {
            format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
        })
        .unwrap_or_default();
    format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n")
}

fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

const SCRAPE_PW: &str = "Scrape-Pw-Qm72";
const ROTATED_PW: &str = "Rotated-Scrape-Pw-Tc05";

#[tokio::test]
async fn web_config_serves_tls_only_and_every_endpoint_demands_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(vec![Account::new("good", "Probe-Pw-Web-Lk33")]).await;
    let file = one_probe_config(dir.path(), &sim, "Probe-Pw-Web-Lk33");
    let pki = pki(&["localhost"]);
    write(dir.path(), "server.crt", &pki.server_pem.0);
    write(dir.path(), "server.key", &pki.server_pem.1);
    let web = |user: &str, password: &str| {
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  {user}: {}\n",
            bcrypt::hash(password, 4).unwrap()
        )
    };
    let web_file = write(dir.path(), "web.yml", &web("prometheus", SCRAPE_PW));
    let svc = Service::start(
        dir.path(),
        &["--log.level", "debug"],
        &["--config.file", file.to_str().unwrap(), "--web.config.file", web_file.to_str().unwrap()],
    )
    .await;
    let addr = address(&svc);
    let tls13 = [&rustls::version::TLS13];

    // TLS only: plain HTTP gets no HTTP answer, and TLS 1.2 is below min_version.
    let plain = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(get_request("/metrics", None).as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    };
    let plain = tokio::time::timeout(Duration::from_secs(15), plain).await.expect("plain HTTP is dropped");
    assert!(!plain.starts_with(b"HTTP/"), "plain HTTP was answered: {:?}", String::from_utf8_lossy(&plain));
    let err = https(addr, &pki.ca_der, &[&rustls::version::TLS12], &get_request("/metrics", None)).await.unwrap_err();
    assert!(err.starts_with("handshake"), "{err}");

    // Every endpoint, known or not, asks for credentials first.
    for path in [
        "/metrics",
        "/",
        "/-/healthy",
        "/-/ready",
        "/api/v1/probes",
        "/probe?probe=good",
        "/probes/good",
        "/badges/good/status.svg",
        "/badges/good/uptime/30d.svg",
        "/nope",
    ] {
        let answer = https(addr, &pki.ca_der, &tls13, &get_request(path, None)).await.unwrap();
        assert_eq!(status_of(&answer), 401, "{path}: {answer}");
        assert!(answer.contains("www-authenticate: Basic"), "{path}: {answer}");
        let answer = https(addr, &pki.ca_der, &tls13, &get_request(path, Some(("prometheus", "wrong")))).await.unwrap();
        assert_eq!(status_of(&answer), 401, "{path} with a wrong password");
        let answer = https(addr, &pki.ca_der, &tls13, &get_request(path, Some(("nobody", SCRAPE_PW)))).await.unwrap();
        assert_eq!(status_of(&answer), 401, "{path} as an unknown user");
    }
    let answer =
        https(addr, &pki.ca_der, &tls13, &get_request("/metrics", Some(("prometheus", SCRAPE_PW)))).await.unwrap();
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("x-frame-options: deny"), "configured headers are added");
    assert!(answer.contains("authprobe_build_info{"), "{answer}");

    // A broken edit keeps the running settings and says where the problem is.
    write(dir.path(), "web.yml", "basic_auth_users:\n  prometheus: Plain-Text-Pw-Yw61\n");
    let answer =
        https(addr, &pki.ca_der, &tls13, &get_request("/metrics", Some(("prometheus", SCRAPE_PW)))).await.unwrap();
    assert_eq!(status_of(&answer), 200, "the previous settings stay: {answer}");
    let log = svc.stderr();
    assert!(log.contains("web.yml:2:") && log.contains("basic_auth_users.prometheus: not a bcrypt hash"), "{log}");

    // A valid edit applies to the next connection.
    write(dir.path(), "web.yml", &web("prometheus", ROTATED_PW));
    let answer =
        https(addr, &pki.ca_der, &tls13, &get_request("/metrics", Some(("prometheus", SCRAPE_PW)))).await.unwrap();
    assert_eq!(status_of(&answer), 401, "the old password no longer works");
    let answer =
        https(addr, &pki.ca_der, &tls13, &get_request("/metrics", Some(("prometheus", ROTATED_PW)))).await.unwrap();
    assert_eq!(status_of(&answer), 200, "{answer}");

    let log = svc.stderr();
    for secret in [SCRAPE_PW, ROTATED_PW, "Plain-Text-Pw-Yw61", "Probe-Pw-Web-Lk33"] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

#[tokio::test]
async fn an_invalid_web_config_stops_the_start_with_the_place_of_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(vec![Account::new("good", "pw")]).await;
    let file = one_probe_config(dir.path(), &sim, "pw");
    let web = write(dir.path(), "web.yml", "tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authprobe"))
        .args(["run", "--web.listen-address", "127.0.0.1:0", "--config.file"])
        .arg(&file)
        .arg("--web.config.file")
        .arg(&web)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid web configuration") && stderr.contains("web.yml:2:"), "{stderr}");
    assert!(stderr.contains("tls_server_config.cert_file: cannot read"), "{stderr}");
}

#[tokio::test]
async fn lifecycle_and_on_demand_endpoints_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(vec![Account::new("good", "pw")]).await;
    let file = one_probe_config(dir.path(), &sim, "pw");
    let config = file.to_str().unwrap();

    // Defaults, as Prometheus's: no /-/reload; /probe on.
    let svc = Service::start(dir.path(), &[], &["--config.file", config]).await;
    let r = http().post(svc.url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("--web.enable-lifecycle"));
    assert_eq!(get(&svc.url("/probe?probe=good")).await.0, 200);
    drop(svc);

    let args = ["--config.file", config, "--web.enable-lifecycle", "--web.enable-on-demand=false"];
    let svc = Service::start(dir.path(), &[], &args).await;
    assert_eq!(http().post(svc.url("/-/reload")).send().await.unwrap().status(), 200);
    let (status, body) = get(&svc.url("/probe?probe=good")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--web.enable-on-demand"), "{body}");
    let (status, body) = get(&svc.url("/probe?probe=good&debug=true")).await;
    assert_eq!(status, 403, "{body}");
}

/// Writes `head` to a new connection, then one byte of a header every `every` until the server
/// closes; returns how long the connection lived, or `None` if it still lived after `limit`.
async fn slow_loris(addr: SocketAddr, every: Duration, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    while started.elapsed() < limit {
        let mut buf = [0u8; 512];
        tokio::select! {
            n = s.read(&mut buf) => {
                // Closed (0 bytes or reset), possibly after a 408 answer: either way, let go.
                match n { Ok(0) | Err(_) => return Some(started.elapsed()), Ok(_) => {} }
            }
            () = tokio::time::sleep(every) => {
                if s.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test]
async fn bad_requests_are_refused_and_slow_clients_cannot_hold_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(vec![Account::new("good", "pw")]).await;
    let file = one_probe_config(dir.path(), &sim, "pw");
    let args =
        ["--config.file", file.to_str().unwrap(), "--web.read-header-timeout", "1s", "--web.max-connections", "6"];
    let svc = Service::start(dir.path(), &[], &args).await;
    let addr = address(&svc);

    for path in
        ["/nope", "/metrics/extra", "/api/v2/probes", "/probes/", "/probes/no-such-probe", "/api/v1/probes/none"]
    {
        assert_eq!(get(&svc.url(path)).await.0, 404, "{path}");
    }
    let long = "x".repeat(5000);
    for path in [format!("/metrics?q={long}"), format!("/probe?probe={long}"), format!("/?{long}")] {
        let (status, body) = get(&svc.url(&path)).await;
        assert_eq!((status, body.as_str()), (400, "query string longer than 4096 bytes\n"));
    }
    for query in ["probe=good&probe=good", "probe=good&debug=maybe", "probe=", "debug=true"] {
        assert_eq!(get(&svc.url(&format!("/probe?{query}"))).await.0, 400, "{query}");
    }

    // Four clients dribble a header a byte at a time; each is cut off after the 1 s header
    // deadline (generously: within 3 s), and meanwhile everyone else is served at once.
    let loris: Vec<_> =
        (0..4).map(|_| tokio::spawn(slow_loris(addr, Duration::from_millis(200), Duration::from_secs(8)))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert_eq!(get(&svc.url("/metrics")).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "served in {:?} beside slow clients", started.elapsed());
    for l in loris {
        let lived = l.await.unwrap().expect("a slow client is dropped");
        assert!(lived < Duration::from_secs(3), "a slow client lived {lived:?}");
    }

    // Six silent connections fill the limit: the seventh client waits until the deadline frees
    // them, then is served.
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let waited = tokio::time::timeout(Duration::from_millis(500), get(&svc.url("/-/healthy"))).await;
    assert!(waited.is_err(), "served beyond --web.max-connections");
    let (status, _) = get(&svc.url("/-/healthy")).await;
    assert_eq!(status, 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "served {took:?} after the limit was reached");
    for mut s in silent {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "a silent connection is closed: {closed:?}");
    }
}

/// Every server behaviour the prober must survive, and the result class each must produce.
/// Accounts of the plain simulator carry a [`Fault`]; the rest are targets that cannot work.
const MATRIX: &[(&str, Option<Fault>, &str)] = &[
    ("stall", Some(Fault::Stall), "timeout"),
    ("slow_drip", Some(Fault::SlowDrip), "timeout"),
    ("headers_then_stall", Some(Fault::HeadersThenStall), "timeout"),
    ("close_without_response", Some(Fault::CloseWithoutResponse), "connect_error"),
    ("reset_mid_body", Some(Fault::ResetMidBody), "connect_error"),
    ("oversized", Some(Fault::Oversized), "invalid_response"),
    ("truncated_json", Some(Fault::TruncatedJson), "invalid_response"),
    ("json_array", Some(Fault::WrongShape), "invalid_response"),
    ("json_string", Some(Fault::JsonString), "invalid_response"),
    ("empty_object", Some(Fault::EmptyObject), "invalid_response"),
    ("html", Some(Fault::Html), "invalid_response"),
    ("redirect_loop", Some(Fault::RedirectLoop), "http_error"),
    ("not_found", Some(Fault::NotFound), "http_error"),
    ("server_error", Some(Fault::ServerError), "http_error"),
    ("server_error_model", Some(Fault::ServerErrorModel), "http_error"),
    ("unavailable", Some(Fault::Unavailable), "http_error"),
    ("unknown_step", Some(Fault::UnknownStep), "unexpected_step"),
    ("endless_202", Some(Fault::Endless202), "step_limit"),
    ("random_reason", Some(Fault::RandomReason), "auth_failed"),
    ("non_utf8", Some(Fault::NonUtf8), "invalid_response"),
    ("refused", None, "connect_error"),
    ("unresolvable", None, "connect_error"),
    ("tls_to_plain", None, "tls_error"),
    ("wrong_name", None, "tls_error"),
    ("healthy", None, "success"),
];

/// The matrix's probe timeout; each run must end within it plus 1 s.
const MATRIX_TIMEOUT: f64 = 1.5;

#[tokio::test]
async fn every_server_fault_gets_its_class_in_bounded_time_while_metrics_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut accounts: Vec<Account> =
        MATRIX.iter().filter_map(|(name, fault, _)| fault.map(|f| fault_account(name, f))).collect();
    accounts.push(Account::new("healthy", "pw"));
    let sim = simulator(accounts).await;
    let pki = pki(&["some-other-host.example"]);
    let wrong_name = tls_simulator(vec![Account::new("wrong_name", "pw")], &pki).await;
    write(dir.path(), "ca.pem", &pki.ca_pem);
    let plain = sim.addr();
    let targets = format!(
        "targets:\n\
         \x20 - {{name: sim, base_url: {sim}, app_key: {APP_KEY}}}\n\
         \x20 - {{name: refused, base_url: 'http://127.0.0.1:{closed}/api', app_key: {APP_KEY}}}\n\
         \x20 - {{name: unresolvable, base_url: 'http://authprobe-matrix.invalid:{port}/api', app_key: {APP_KEY}}}\n\
         \x20 - {{name: tls_to_plain, base_url: 'https://127.0.0.1:{port}/api', app_key: {APP_KEY}}}\n\
         \x20 - {{name: wrong_name, base_url: 'https://localhost:{tls_port}/api', app_key: {APP_KEY}, tls: {{ca_file: ca.pem}}}}\n",
        sim = sim.base_url(),
        closed = closed_port(),
        port = plain.port(),
        tls_port = wrong_name.addr().port(),
    );
    let probes: String = MATRIX
        .iter()
        .map(|(name, fault, _)| {
            let target = if fault.is_some() || *name == "healthy" { "sim" } else { name };
            // Endless 202 alternates both steps: a probe that can answer both meets its step limit.
            let steps = if *name == "endless_202" { ", pin: '1111', verification_code: '2222'" } else { "" };
            format!("  - {{name: {name}, target: {target}, username: {name}, password: pw{steps}}}\n")
        })
        .collect();
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "defaults: {{interval: 2s, timeout: 1500ms, max_steps: 4, lockout_guard: {{max_failures: 0}}}}\n\
             {targets}probes:\n{probes}"
        ),
    );
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap()]).await;

    // For 9 s, /metrics answers every 250 ms, each within 1 s, whatever the probes are going through.
    let until = Instant::now() + Duration::from_secs(9);
    let mut scrapes = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(1), http().get(svc.url("/metrics")).send()).await;
        let r = r.unwrap_or_else(|_| panic!("a scrape took over 1 s after {scrapes} scrapes"));
        assert_eq!(r.unwrap().status(), 200);
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(250).saturating_sub(started.elapsed())).await;
    }

    let mut wrong = Vec::new();
    for (name, _, expected) in MATRIX {
        let (status, body) = get(&svc.url(&format!("/api/v1/probes/{name}"))).await;
        assert_eq!(status, 200, "{name}");
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        let runs = view["runs"].as_object().unwrap();
        let total: u64 = runs.values().map(|v| v.as_u64().unwrap()).sum();
        let of_class = runs[*expected].as_u64().unwrap();
        if total < 2 || of_class != total {
            let got: Vec<_> = runs.iter().filter(|(_, v)| v.as_u64() != Some(0)).collect();
            wrong.push(format!("{name}: expected {total} × {expected}, got {got:?}; last: {}", view["last"]));
        }
        for run in view["history"].as_array().unwrap() {
            let took = run["duration_seconds"].as_f64().unwrap();
            assert!(took <= MATRIX_TIMEOUT + 1.0, "{name}: a run took {took} s");
        }
    }
    assert!(wrong.is_empty(), "wrong classes:\n{}", wrong.join("\n"));

    // Bounded afterwards: no series per server text, memory well short of the 20 MiB bodies
    // having been kept.
    let text = svc.metrics_text().await;
    let series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    assert!(series <= 70 * MATRIX.len() + 100, "{series} series");
    for line in text.lines().filter(|l| l.contains("reason=\"")) {
        let reason = line.split("reason=\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(reason.len() <= 40, "an unbounded reason label: {reason}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", svc.pid())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss_kb < 96 * 1024, "RSS {rss_kb} kB after the matrix");
    println!("matrix: {scrapes} scrapes, {series} series, RSS {} MB", rss_kb / 1024);
}

/// Distinctive secrets: none may appear in anything authprobe emits.
const S_APP_KEY: &str = "App-Key-Secret-Jd93Lw";
const S_PW: &str = "Pw-Secret-Hq47";
const S_PIN_PW: &str = "Pin-Pw-Secret-Ma18";
const S_PIN: &str = "Pin-Secret-6402";
const S_CODE_PW: &str = "Code-Pw-Secret-Xe55";
const S_CODE: &str = "Code-Secret-918273";
const S_VALIDATE_PW: &str = "Validate-Pw-Secret-Rk02";
const S_WRONG_PW: &str = "Wrong-Pw-Secret-Ny64";
const S_PANIC_PW: &str = "Panic-Pw-Secret-Ub39";
const S_PANIC_PIN: &str = "Panic-Pin-Secret-5550";
const S_RELOAD_PW: &str = "Reload-Pw-Secret-Gv21";
const S_CLIENT_SECRET: &str = "Client-Secret-Oauth-Jq48";
const S_POST_SECRET: &str = "Post-Secret-Oauth-Zt73";
const S_WRONG_CLIENT_SECRET: &str = "Wrong-Client-Secret-Hx19";
const S_OIDC_PW: &str = "Oidc-User-Pw-Secret-Lm66";
const S_WEB_SECRET: &str = "Web-Client-Secret-Pq27";
const S_PEOPLE_PW: &str = "People-Pw-Secret-Vb90";
/// A wrong password of a directory's account.
const S_LDAP_WRONG_PW: &str = "Ldap-Wrong-Pw-Secret-Wt35";
/// Base32 TOTP secrets (distinctive, as every secret here): the account's, and a wrong one.
const S_TOTP: &str = "KRUGKIDQMVXXA3DFEBWG6Z3JNYQHGZLDOJSXI";
const S_WRONG_TOTP: &str = "MJQWIIDUN52HAIDTMVRXEZLUEB2GQYLUEBTGC2LM";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_anything_authprobe_emits() {
    let dir = tempfile::tempdir().unwrap();
    let settings = authprobe::simulator::Settings::new(
        &[S_APP_KEY],
        vec![
            Account::new("plain", S_PW),
            pin_account("pinned", S_PIN_PW, S_PIN),
            code_account("coded", S_CODE_PW, S_CODE),
            Account::new("validated", S_VALIDATE_PW),
            Account::new("victim", "the-real-password"),
            pin_account("panicky", S_PANIC_PW, S_PANIC_PIN),
        ],
    );
    let mut settings = settings;
    settings.accounts.push(Account::new("oidc-user", S_OIDC_PW));
    // People logging in through the login pages, with a one-time code of a 1 s period (a probe
    // every second never waits for a step).
    let mut people = Account::new("people", S_PEOPLE_PW);
    people.totp_secret = Some(format!("otpauth://totp/sim:people?secret={S_TOTP}&period=1").into());
    settings.accounts.push(people);
    // The OAuth 2.0 side: a client_secret_basic service, a client_secret_post app for the password
    // grant, and a private_key_jwt client whose private key sits in a file next to probes.yaml.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_pem = key.serialize_pem();
    write(dir.path(), "client.key", &key_pem);
    write(dir.path(), "client.pub", &key.public_key_pem());
    let mut keyed = SimClient::new("keyed", "unused", &["client_credentials"]);
    keyed.client_secret = None;
    keyed.public_key_file = Some(dir.path().join("client.pub"));
    let clients = vec![
        SimClient::new("svc", S_CLIENT_SECRET, &["client_credentials"]),
        SimClient::new("app", S_POST_SECRET, &["password", "refresh_token"]),
        keyed,
        {
            let mut web = SimClient::new("web", S_WEB_SECRET, &["authorization_code", "refresh_token"]);
            web.redirect_uris = vec!["https://app.test/cb".into()];
            web.consent = true;
            web
        },
    ];
    let file = authprobe::simulator::oauth2::OAuth2File { clients, ..Default::default() };
    settings.oauth2 = Some(authprobe::simulator::oauth2::OAuth2Settings::from_file(file, dir.path()).unwrap());
    let sim = simulator_with(settings).await;
    // A real directory: binds by search through a service account, and a wrong password.
    let slapd = common::slapd::Slapd::start(Default::default()).await;
    write(dir.path(), "pinned.pin", &format!("{S_PIN}\n"));
    let good = format!(
        "defaults: {{interval: 1s, timeout: 900ms, lockout_guard: {{max_failures: 0}}}}\n\
         targets:\n\
         \x20 - {{name: sim, base_url: {}, app_key: {S_APP_KEY}}}\n\
         \x20 - {{name: idp, protocol: oauth2, issuer: {issuer}, client_id: svc, client_secret: {S_CLIENT_SECRET}}}\n\
         \x20 - {{name: idp-app, protocol: oauth2, issuer: {issuer}, client_id: app, client_secret: {S_POST_SECRET}, client_auth: client_secret_post}}\n\
         \x20 - {{name: idp-keyed, protocol: oauth2, issuer: {issuer}, client_id: keyed, client_auth: private_key_jwt, client_key_file: client.key, client_key_id: k1}}\n\
         \x20 - {{name: idp-wrong, protocol: oauth2, issuer: {issuer}, client_id: svc, client_secret: {S_WRONG_CLIENT_SECRET}}}\n\
         \x20 - {{name: idp-web, protocol: oauth2, issuer: {issuer}, client_id: web, client_secret: {S_WEB_SECRET}}}\n\
         \x20 - {{name: dir, protocol: ldap, url: '{ldap}', start_tls: true, tls: {{ca_file: '{ca}'}}, bind_dn: '{svc_dn}', password: {svc_pw}}}\n\
         probes:\n\
         \x20 - {{name: plain, target: sim, username: plain, password: {S_PW}}}\n\
         \x20 - {{name: pinned, target: sim, username: pinned, password: {S_PIN_PW}, pin_file: pinned.pin}}\n\
         \x20 - {{name: coded, target: sim, username: coded, password: {S_CODE_PW}, verification_code: {S_CODE}}}\n\
         \x20 - {{name: validated, target: sim, username: validated, password: {S_VALIDATE_PW}, validate: true, logout: true}}\n\
         \x20 - {{name: wrong, target: sim, username: victim, password: {S_WRONG_PW}}}\n\
         \x20 - {{name: panicky, target: sim, username: panicky, password: {S_PANIC_PW}, pin: {S_PANIC_PIN}}}\n\
         \x20 - {{name: oidc-svc, target: idp, grant: client_credentials, validate: jwt}}\n\
         \x20 - {{name: oidc-user, target: idp-app, grant: password, username: oidc-user, password: {S_OIDC_PW}, scope: openid, refresh: true, validate: introspection, revoke: true}}\n\
         \x20 - {{name: oidc-keyed, target: idp-keyed, grant: client_credentials, validate: jwt}}\n\
         \x20 - {{name: oidc-wrong, target: idp-wrong, grant: client_credentials}}\n\
         \x20 - {{name: people, target: idp-web, grant: authorization_code, redirect_uri: 'https://app.test/cb', scope: openid, username: people, password: {S_PEOPLE_PW}, totp_secret: 'otpauth://totp/x?secret={S_TOTP}&period=1', consent: approve, validate: jwt, refresh: true, revoke: true, logout: true}}\n\
         \x20 - {{name: people-wrong-otp, target: idp-web, grant: authorization_code, redirect_uri: 'https://app.test/cb', username: people, password: {S_PEOPLE_PW}, totp_secret: {S_WRONG_TOTP}}}\n\
         \x20 - {{name: directory, target: dir, username: probe-user, password: {user_pw}, user_search: {{base: '{people_base}', filter: '(uid={{username}})'}}, whoami: true}}\n\
         \x20 - {{name: directory-wrong, target: dir, bind_dn: '{user_dn}', password: {S_LDAP_WRONG_PW}}}\n",
        sim.base_url(),
        issuer = sim.issuer().unwrap(),
        ldap = slapd.ldap_url(),
        ca = slapd.ca_pem.display(),
        svc_dn = common::slapd::SERVICE_DN,
        svc_pw = common::slapd::SERVICE_PASSWORD,
        user_pw = common::slapd::USER_PASSWORD,
        user_dn = common::slapd::USER_DN,
        people_base = common::slapd::PEOPLE_BASE,
    );
    let file = write(dir.path(), "probes.yaml", &good);
    let cfg = file.to_str().unwrap();
    let names = [
        "plain",
        "pinned",
        "coded",
        "validated",
        "wrong",
        "panicky",
        "oidc-svc",
        "oidc-user",
        "oidc-keyed",
        "oidc-wrong",
        "people",
        "people-wrong-otp",
        "directory",
        "directory-wrong",
    ];
    // Broken files whose problems sit next to secrets: a syntax error, an unknown field, a wrong type.
    let broken = [
        good.replace(&format!("password: {S_PW}}}"), &format!("password: \"{S_RELOAD_PW}}}")),
        good.replace(&format!("password: {S_PW}"), &format!("passwrd: {S_RELOAD_PW}")),
        good.replace(&format!("password: {S_PW}"), &format!("password: [{S_RELOAD_PW}]")),
    ];
    let mut emitted = String::new();

    for format in ["logfmt", "json"] {
        let global = ["--log.level", "trace", "--log.format", format];
        let args = ["--config.file", cfg, "--web.enable-lifecycle", "--probe.on-demand-min-interval", "1ms"];
        let argv: Vec<&str> =
            global.iter().chain(&["run", "--web.listen-address", "127.0.0.1:0"]).chain(&args).copied().collect();
        let svc = Service::spawn_with_env(dir.path(), &argv, &[("AUTHPROBE_TEST_PANIC", "panicky")]).await;
        svc.metrics_until(Duration::from_secs(15), |m| {
            names.iter().all(|n| {
                m.series("authprobe_probe_runs_total", &[("probe", n)]).iter().map(|s| s.value).sum::<f64>() >= 2.0
            })
        })
        .await;
        let mut paths: Vec<String> =
            ["/metrics", "/", "/api/v1/probes", "/-/healthy", "/-/ready", "/nope"].map(String::from).into();
        for n in names {
            paths.extend([
                format!("/probes/{n}"),
                format!("/api/v1/probes/{n}"),
                format!("/probe?probe={n}&debug=true"),
                format!("/probe?probe={n}"),
            ]);
        }
        for p in &paths {
            let (_, body) = get(&svc.url(p)).await;
            emitted += &body;
        }
        // Every kept run's page, and the traces the failures keep, as page and JSON.
        let mut traces = 0;
        for n in names {
            let (_, api) = get(&svc.url(&format!("/api/v1/probes/{n}"))).await;
            let api: serde_json::Value = serde_json::from_str(&api).unwrap();
            for run in api["history"].as_array().unwrap().iter().chain(api["failures"].as_array().unwrap()) {
                let id = run["run_id"].as_str().unwrap();
                let number = id.rsplit('-').next().unwrap();
                emitted += &get(&svc.url(&format!("/probes/{n}/runs/{number}"))).await.1;
                if run["trace"] == "kept" {
                    traces += 1;
                    emitted += &get(&svc.url(&format!("/api/v1/runs/{id}"))).await.1;
                }
            }
        }
        assert!(traces >= 4, "the failing probes' traces were read: {traces}");
        // The OpenMetrics exposition, exemplars and all, and where their run ids lead.
        let om = svc.metrics_openmetrics().await;
        let ids: std::collections::BTreeSet<&str> =
            om.split("# {run_id=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
        assert!(ids.len() >= names.len(), "exemplars name runs: {ids:?}");
        for id in ids {
            for path in [format!("/runs/{id}"), format!("/api/v1/runs/{id}")] {
                emitted += &get(&svc.url(&path)).await.1;
            }
        }
        emitted += &om;
        for bad in &broken {
            write(dir.path(), "probes.yaml", bad);
            let r = http().post(svc.url("/-/reload")).send().await.unwrap();
            assert_eq!(r.status(), 500);
            emitted += &r.text().await.unwrap();
        }
        write(dir.path(), "probes.yaml", &good);
        assert_eq!(http().post(svc.url("/-/reload")).send().await.unwrap().status(), 200);
        let metrics = svc.metrics().await;
        assert!(
            metrics.value("authprobe_probe_runs_total", &[("probe", "panicky"), ("result", "internal_error")]) >= 1.0,
            "the injected panic is counted"
        );
        let (_, log) = svc.terminate_with_log().await;
        assert!(log.contains("panicked") && log.contains("injected panic: secrets <redacted>"), "{log}");
        assert!(log.contains("invalid configuration"), "reload errors are logged");
        emitted += &log;

        // The one-shot commands, on the good file and on each broken one.
        for bad in &broken {
            write(dir.path(), "probes.yaml", bad);
            let out = cli(dir.path(), &[&global[..], &["check-config", "--config.file", cfg]].concat());
            assert_eq!(out.0, Some(2), "{}", out.1);
            emitted += &out.1;
        }
        write(dir.path(), "probes.yaml", &good);
        emitted += &cli(dir.path(), &[&global[..], &["check-config", "--config.file", cfg]].concat()).1;
        for output in ["text", "json", "trace"] {
            let argv = [&global[..], &["probe", "--all", "--config.file", cfg, "--output", output]].concat();
            emitted += &cli(dir.path(), &argv).1;
        }
    }
    // What the state store kept on disk (the service ran in `dir`, with the default data/).
    let mut stored = String::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        stored += &String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(stored.contains("invalid_credentials") && stored.contains("oidc-user"), "the store holds the state");
    emitted += &stored;
    // Debug output of the loaded configuration.
    let config = authprobe::config::Config::load(&file).unwrap();
    emitted += &format!("{config:?}");

    // Enough was emitted for the search to mean something.
    for expected in [
        "authprobe_probe_success",
        "SecutityPin",
        "VerificationCode",
        "<redacted>",
        "auth_failed",
        "probes.yaml:",
        "client_rejected",
        "Revocation",
        "client_secret=<redacted>",
        "client_assertion=<redacted>",
        "authprobe_target_jwks_keys",
        "invalid_otp",
        "step=\"OTP\"",
        "code=<redacted>&state=<redacted>",
        "LDAP BindRequest (simple)",
        "ldap_result_code=\"49\"",
        "UserSearch",
        "# {run_id=\"",
        "\"run\":{",
    ] {
        assert!(emitted.contains(expected), "{expected} not in the outputs");
    }
    let mut needles: Vec<String> = [
        S_APP_KEY,
        S_PW,
        S_PIN_PW,
        S_PIN,
        S_CODE_PW,
        S_CODE,
        S_VALIDATE_PW,
        S_WRONG_PW,
        S_PANIC_PW,
        S_PANIC_PIN,
        S_RELOAD_PW,
        S_CLIENT_SECRET,
        S_POST_SECRET,
        S_WRONG_CLIENT_SECRET,
        S_OIDC_PW,
        S_WEB_SECRET,
        S_PEOPLE_PW,
        S_TOTP,
        S_WRONG_TOTP,
        S_LDAP_WRONG_PW,
        common::slapd::USER_PASSWORD,
        common::slapd::SERVICE_PASSWORD,
    ]
    .map(String::from)
    .into();
    // The private key: each line of its PEM body.
    needles.extend(key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).map(String::from));
    let oauth2_secrets = sim.oauth2_secrets_seen();
    assert!(oauth2_secrets.len() > 20, "OAuth 2.0 tokens and assertions: {}", oauth2_secrets.len());
    needles.extend(oauth2_secrets);
    for user in ["plain", "pinned", "coded", "validated", "victim", "panicky"] {
        needles.extend(sim.issued_tokens(user));
        let bearers = sim.requests(user).into_iter().filter_map(|r| r.header("authorization").map(str::to_owned));
        needles.extend(bearers.map(|b| b.trim_start_matches("Bearer ").to_owned()));
    }
    assert!(needles.len() > 40, "tokens were issued: {}", needles.len());
    let leaked: Vec<&String> = needles.iter().filter(|n| emitted.contains(n.as_str())).collect();
    assert!(leaked.is_empty(), "leaked {leaked:?}");
}

/// Runs the binary to the end in `dir`: exit code and stdout + stderr.
fn cli(dir: &Path, argv: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authprobe")).args(argv).current_dir(dir).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A process's peak resident memory (VmHWM), in kB.
fn peak_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `--web.max-concurrent-scrapes`: while the bound is taken by a scraper that does not read, the
/// next scrape waits (other endpoints do not) and is served once that scraper goes; and many
/// scrapers at once are all served, one bound's worth at a time, without memory growing with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_beyond_the_bound_wait_their_turn() {
    let dir = tempfile::tempdir().unwrap();
    let probes: String = (0..4000)
        .map(|i| {
            format!(
                "  - {{name: p{i:04}, target: nowhere, username: u{i}, password: pw, labels: {{team: t{}}}}}\n",
                i % 7
            )
        })
        .collect();
    let file = write(
        dir.path(),
        "probes.yaml",
        &format!(
            "defaults: {{interval: 1h, timeout: 1s}}\n\
             targets: [{{name: nowhere, base_url: 'http://127.0.0.1:{}/api', app_key: k}}]\nprobes:\n{probes}",
            closed_port()
        ),
    );
    let args = ["--config.file", file.to_str().unwrap(), "--web.max-concurrent-scrapes", "1"];
    let svc = Service::start(dir.path(), &[], &args).await;
    let addr = address(&svc);
    let (status, whole) = get(&svc.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(whole.len() > 8 << 20, "an exposition larger than the socket buffers: {} bytes", whole.len());

    // A scraper that asks and stops reading holds the one place.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"GET /metrics HTTP/1.1\r\nHost: authprobe\r\n\r\n").await.unwrap();
    let mut head = [0u8; 512];
    let n = stalled.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waited = tokio::time::timeout(Duration::from_secs(1), get(&svc.url("/metrics"))).await;
    assert!(waited.is_err(), "a second scrape is served beyond the bound");
    let started = Instant::now();
    assert_eq!(get(&svc.url("/-/healthy")).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "other endpoints do not wait");
    drop(stalled);
    let started = Instant::now();
    let (status, body) = get(&svc.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.len() > 8 << 20);
    assert!(started.elapsed() < Duration::from_secs(5), "served {:?} after the place was freed", started.elapsed());

    // 50 scrapers at once: every one served whole, memory bounded by the one in flight.
    let before = peak_rss_kb(svc.pid());
    let scrapes = futures_util::future::join_all((0..50).map(|_| get_bytes(svc.url("/metrics")))).await;
    for (status, len) in scrapes {
        assert_eq!(status, 200);
        assert!(len > 8 << 20, "{len} bytes");
    }
    let after = peak_rss_kb(svc.pid());
    println!("50 scrapes of {} MB: peak RSS {} -> {} MB", whole.len() >> 20, before / 1024, after / 1024);
    assert!(after < before + 24 * 1024, "peak RSS grew from {before} to {after} kB with 50 scrapers");
}

/// GET `url`: the status and the body's length, the body read and dropped as it comes.
async fn get_bytes(url: String) -> (u16, usize) {
    let mut r = http().get(&url).send().await.unwrap();
    let status = r.status().as_u16();
    let mut len = 0;
    while let Some(chunk) = r.chunk().await.unwrap() {
        len += chunk.len();
    }
    (status, len)
}
