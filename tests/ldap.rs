//! The LDAP family against real directories on 127.0.0.1: Debian's slapd with the ppolicy
//! overlay (over ldap://, StartTLS and ldaps:// with a CA of its own), Samba's Active Directory
//! DC, and hostile servers of the test's own that stall, send garbage, refer elsewhere or stop
//! mid-message. Probes are written as probes.yaml and loaded as the service loads them.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use authprobe::config::Config;
use authprobe::protocol::ldap::names::*;
use authprobe::protocol::{LoginSpec, Outcome, Prober, Reason, ResultClass, Step};
use common::slapd::{self, Slapd};
use common::{promtool_check_metrics, write};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The probes of `yaml`, loaded from a file as the service loads them, by name.
fn load(yaml: &str) -> HashMap<String, LoginSpec> {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "probes.yaml", yaml);
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    config.probes.iter().map(|p| (p.name.to_string(), p.login.clone())).collect()
}

/// The probes of a file and a prober to run them.
struct Probes {
    specs: HashMap<String, LoginSpec>,
    prober: Prober,
}

impl Probes {
    fn load(yaml: &str) -> Probes {
        Probes { specs: load(yaml), prober: Prober::new().unwrap() }
    }

    /// One run of the probe `name`.
    async fn login(&self, name: &str) -> Outcome {
        self.prober.login(&self.specs[name]).await
    }
}

#[track_caller]
fn check(o: &Outcome, result: ResultClass, step: Step, reason: Reason, code: u16) {
    assert_eq!(
        (o.summary.result, o.summary.step, o.summary.reason, o.summary.status),
        (result, step, reason, code),
        "detail: {} / reason_text: {}",
        o.detail,
        o.reason_text
    );
}

fn steps(o: &Outcome) -> Vec<&'static str> {
    o.steps.iter().map(|s| s.step.as_str()).collect()
}

/// A slapd target block in each of the three securities, and the service account.
fn slapd_targets(s: &Slapd) -> String {
    format!(
        "targets:
  - {{name: plain, protocol: ldap, url: '{ldap}'}}
  - name: starttls
    protocol: ldap
    url: '{ldap}'
    start_tls: true
    tls: {{ca_file: '{ca}'}}
    bind_dn: '{svc}'
    password: '{svc_pw}'
  - {{name: ldaps, protocol: ldap, url: '{ldaps}', tls: {{ca_file: '{ca}'}}}}
  - {{name: wrong-service, protocol: ldap, url: '{ldaps}', tls: {{ca_file: '{ca}'}}, bind_dn: '{svc}', password: not-the-service-password}}
  - {{name: untrusted, protocol: ldap, url: '{ldap}', start_tls: true}}
",
        ldap = s.ldap_url(),
        ldaps = s.ldaps_url(),
        ca = s.ca_pem.display(),
        svc = slapd::SERVICE_DN,
        svc_pw = slapd::SERVICE_PASSWORD,
    )
}

fn bind(name: &str, target: &str, dn: &str, password: &str, extra: &str) -> String {
    format!("  - {{name: {name}, target: {target}, bind_dn: '{dn}', password: '{password}'{extra}}}\n")
}

/// Every result slapd can give a bind probe, over each security: success with its search and
/// Who am I?, search-then-bind, the password policy's expiry warning and grace logins as facts,
/// expired, must-change and locked accounts, wrong passwords, a refused service account, a
/// missing search base, wrong entry counts, and TLS that is not trusted.
#[tokio::test]
async fn slapd_binds_searches_and_every_refusal_it_can_give() {
    let s = Slapd::start(slapd::Options { use_lockout: true, ..Default::default() }).await;
    let people = slapd::PEOPLE_BASE;
    let mut yaml = slapd_targets(&s) + "probes:\n";
    let search =
        format!(", search: {{base: '{people}', filter: '{}', expect_entries: 1}}, whoami: true", slapd::USER_FILTER);
    for target in ["plain", "starttls", "ldaps"] {
        yaml += &bind(&format!("good-{target}"), target, slapd::USER_DN, slapd::USER_PASSWORD, &search);
    }
    yaml += &format!(
        "  - {{name: search-then-bind, target: starttls, username: '{}', password: '{}', user_search: {{base: '{people}', filter: '(uid={{username}})'}}, whoami: true}}\n",
        slapd::USER_UID,
        slapd::USER_PASSWORD
    );
    yaml += &format!(
        "  - {{name: nobody-found, target: starttls, username: 'no*body)(uid=*', password: x-pw, user_search: {{base: '{people}', filter: '(uid={{username}})'}}}}\n"
    );
    yaml += &format!(
        "  - {{name: ambiguous, target: starttls, username: twin, password: x-pw, user_search: {{base: '{people}', filter: '(description={{username}})'}}}}\n"
    );
    yaml += &format!(
        "  - {{name: service-refused, target: wrong-service, username: '{}', password: x-pw, user_search: {{base: '{people}', filter: '(uid={{username}})'}}}}\n",
        slapd::USER_UID
    );
    yaml += &bind("expiring", "ldaps", slapd::EXPIRING_DN, slapd::EXPIRING_PASSWORD, "");
    yaml += &bind("grace", "ldaps", slapd::GRACE_DN, slapd::GRACE_PASSWORD, "");
    yaml += &bind("expired", "ldaps", slapd::EXPIRED_DN, slapd::EXPIRED_PASSWORD, "");
    yaml += &bind("reset", "ldaps", slapd::RESET_DN, slapd::RESET_PASSWORD, "");
    yaml += &bind("locked", "ldaps", slapd::LOCKED_DN, slapd::LOCKED_PASSWORD, "");
    yaml += &bind("wrong", "ldaps", slapd::USER_DN, "wrong-Password-Q1", "");
    yaml += &bind("unknown", "ldaps", slapd::UNKNOWN_DN, "some-Password-Q2", "");
    let missing = format!(", search: {{base: '{}', filter: '(objectClass=*)'}}", slapd::MISSING_BASE);
    yaml += &bind("missing-base", "ldaps", slapd::USER_DN, slapd::USER_PASSWORD, &missing);
    let twins = format!(", search: {{base: '{people}', filter: '{}', expect_entries: 1}}", slapd::TWO_MATCHES_FILTER);
    yaml += &bind("two-not-one", "ldaps", slapd::USER_DN, slapd::USER_PASSWORD, &twins);
    let many = format!(", search: {{base: '{people}', filter: '{}', min_entries: 2}}", slapd::ALL_PEOPLE_FILTER);
    yaml += &bind("at-least-two", "ldaps", slapd::USER_DN, slapd::USER_PASSWORD, &many);
    let one = format!(", search: {{base: '{people}', filter: '{}', expect_entries: 1}}", slapd::ALL_PEOPLE_FILTER);
    yaml += &bind("three-not-one", "ldaps", slapd::USER_DN, slapd::USER_PASSWORD, &one);
    yaml += &bind("untrusted", "untrusted", slapd::USER_DN, slapd::USER_PASSWORD, "");
    let probes = Probes::load(&yaml);

    for (target, connect) in [("plain", vec![]), ("starttls", vec!["StartTLS"]), ("ldaps", vec![])] {
        let o = probes.login(&format!("good-{target}")).await;
        check(&o, ResultClass::Success, WHO_AM_I, Reason::NONE, 0);
        let want: Vec<&str> =
            ["Connect"].into_iter().chain(connect).chain(["Bind", "Search", "WhoAmI", "Unbind"]).collect();
        assert_eq!(steps(&o), want);
        assert!(o.detail.contains("1 entry matches") && o.detail.contains("dn:uid=probe-user"), "{}", o.detail);
        assert!(o.logout.as_ref().is_some_and(|l| l.ok));
        assert!(o.answered(), "every step answered: the login histogram counts it");
        // TLS facts for ldaps and StartTLS exactly as for HTTPS targets.
        match target {
            "plain" => assert!(o.tls.is_none()),
            _ => {
                let tls = o.tls.expect("TLS facts");
                assert_eq!(tls.version, Some("TLS 1.3"));
                // tests/slapd/start.sh makes certificates for 30 days.
                let now = authprobe::results::unix_seconds(std::time::SystemTime::now()) as i64;
                let in_days = tls.cert_not_after_unix.map(|t| (t - now) / 86_400);
                assert!(in_days.is_some_and(|d| (29..=30).contains(&d)), "{tls:?}");
            }
        }
        if target == "ldaps" {
            assert!(o.phases.is_some_and(|p| p.tls > Duration::ZERO), "{:?}", o.phases);
        }
    }

    let o = probes.login("search-then-bind").await;
    check(&o, ResultClass::Success, WHO_AM_I, Reason::NONE, 0);
    assert_eq!(steps(&o), ["Connect", "StartTLS", "ServiceBind", "UserSearch", "Bind", "WhoAmI", "Unbind"]);
    assert!(o.detail.contains(&format!("bound as {}", slapd::USER_DN)), "{}", o.detail);

    // The username is escaped into the filter: it matches no one, whatever it holds.
    let o = probes.login("nobody-found").await;
    check(&o, ResultClass::AuthFailed, USER_SEARCH, UNKNOWN_USER, 0);
    assert_eq!(o.lockout, authprobe::protocol::Lockout::Neutral, "no bind was tried");
    check(&probes.login("ambiguous").await, ResultClass::ValidationFailed, USER_SEARCH, ENTRY_COUNT, 0);
    let o = probes.login("service-refused").await;
    check(&o, ResultClass::ClientRejected, SERVICE_BIND, INVALID_CREDENTIALS, 49);
    assert_eq!(o.lockout, authprobe::protocol::Lockout::Hold);

    // The password policy's warnings become facts even on a successful bind.
    let o = probes.login("expiring").await;
    check(&o, ResultClass::Success, BIND, Reason::NONE, 0);
    let left = o.account.and_then(|a| a.password_expires_in_seconds).expect("expiry warning");
    assert!((slapd::EXPIRING_SECONDS as i64 - 120..=slapd::EXPIRING_SECONDS as i64).contains(&left), "{left}");
    let o = probes.login("grace").await;
    check(&o, ResultClass::Success, BIND, Reason::NONE, 0);
    let grace = o.account.and_then(|a| a.grace_logins_remaining).expect("grace logins");
    assert!(grace < u64::from(slapd::GRACE_LOGINS), "one was used: {grace}");

    let o = probes.login("expired").await;
    check(&o, ResultClass::PasswordExpired, BIND, PASSWORD_EXPIRED, 49);
    assert_eq!(o.lockout, authprobe::protocol::Lockout::Neutral);
    // slapd binds a must-change account with 0 and says so only in the control.
    check(&probes.login("reset").await, ResultClass::PasswordExpired, BIND, PASSWORD_MUST_CHANGE, 0);
    check(&probes.login("locked").await, ResultClass::AuthFailed, BIND, ACCOUNT_LOCKED, 49);
    let o = probes.login("wrong").await;
    check(&o, ResultClass::AuthFailed, BIND, INVALID_CREDENTIALS, 49);
    assert_eq!(o.lockout, authprobe::protocol::Lockout::Hold);
    assert_eq!(steps(&o), ["Connect", "Bind", "Unbind"], "nothing after a refused bind but the unbind");
    check(&probes.login("unknown").await, ResultClass::AuthFailed, BIND, INVALID_CREDENTIALS, 49);

    let o = probes.login("missing-base").await;
    check(&o, ResultClass::ValidationFailed, SEARCH, NO_SUCH_OBJECT, 32);
    let o = probes.login("two-not-one").await;
    check(&o, ResultClass::ValidationFailed, SEARCH, ENTRY_COUNT, 0);
    assert!(o.detail.contains("2 where exactly 1"), "{}", o.detail);
    // Three people, asked for at least two: the server stops at two (sizeLimitExceeded, 4).
    check(&probes.login("at-least-two").await, ResultClass::Success, SEARCH, Reason::NONE, 4);
    let o = probes.login("three-not-one").await;
    check(&o, ResultClass::ValidationFailed, SEARCH, ENTRY_COUNT, 4);
    assert!(o.detail.contains("more than 1 where exactly 1"), "{}", o.detail);

    // StartTLS against a certificate nobody trusts: a TLS failure at StartTLS, nothing sent.
    let o = probes.login("untrusted").await;
    check(&o, ResultClass::TlsError, START_TLS, Reason::NONE, 0);
    assert_eq!(steps(&o), ["Connect", "StartTLS"]);
    assert!(o.detail.contains("certificate"), "{}", o.detail);
}

/// `security simple_bind=128`: a bind in the clear is refused as tls_required, the same bind
/// over StartTLS passes.
#[tokio::test]
async fn a_directory_that_requires_tls_says_so() {
    let s = Slapd::start(slapd::Options { require_tls: true, ..Default::default() }).await;
    let yaml = slapd_targets(&s)
        + "probes:\n"
        + &bind("clear", "plain", slapd::USER_DN, slapd::USER_PASSWORD, "")
        + &bind("protected", "ldaps", slapd::USER_DN, slapd::USER_PASSWORD, "");
    let specs = load(&yaml);
    let prober = Prober::new().unwrap();
    let o = prober.login(&specs["clear"]).await;
    check(&o, ResultClass::ClientRejected, BIND, TLS_REQUIRED, 13);
    assert_eq!(o.reason_text, "confidentiality required");
    check(&prober.login(&specs["protected"]).await, ResultClass::Success, BIND, Reason::NONE, 0);
}

/// The trace shows the DN and the operation, never the password, the service account's either.
#[tokio::test]
async fn traces_show_the_dn_and_the_operation_never_the_password() {
    let s = Slapd::start(slapd::Options::default()).await;
    let people = slapd::PEOPLE_BASE;
    let yaml = slapd_targets(&s)
        + "probes:\n"
        + &format!(
            "  - {{name: sb, target: starttls, username: '{}', password: '{}', user_search: {{base: '{people}', filter: '(uid={{username}})'}}, whoami: true}}\n",
            slapd::USER_UID,
            slapd::USER_PASSWORD
        );
    let specs = load(&yaml);
    let (o, trace) = Prober::new().unwrap().login_traced(&specs["sb"]).await;
    check(&o, ResultClass::Success, WHO_AM_I, Reason::NONE, 0);
    let text = trace.render();
    for shown in [slapd::USER_DN, slapd::SERVICE_DN, "LDAP BindRequest (simple)", "password: <redacted>", "LDAP 0"] {
        assert!(text.contains(shown), "{shown} not in\n{text}");
    }
    for secret in [slapd::USER_PASSWORD, slapd::SERVICE_PASSWORD] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
        assert!(!format!("{o:?}").contains(secret));
    }
    assert!(!text.contains("user-agent"), "no HTTP header in an LDAP trace");
}

/// What a hostile server does with a request.
enum Reply {
    /// Sends these bytes and reads on.
    Send(Vec<u8>),
    /// Sends these bytes and closes the connection.
    Close(Vec<u8>),
    /// Keeps the connection and never answers.
    Stall,
}

/// A server of the test's own: does what `answer` makes of each request it reads (its bytes),
/// on every connection.
async fn hostile(answer: fn(&[u8]) -> Reply) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let size = match authprobe::protocol::ldap::ber::frame(&buf) {
                        Ok(Some(size)) => size,
                        Ok(None) => match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                buf.extend_from_slice(&chunk[..n]);
                                continue;
                            }
                        },
                        Err(_) => return,
                    };
                    let request: Vec<u8> = buf.drain(..size).collect();
                    match answer(&request) {
                        Reply::Send(bytes) => {
                            if conn.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::Close(bytes) => {
                            let _ = conn.write_all(&bytes).await;
                            return;
                        }
                        Reply::Stall => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// The message ID of a request.
fn id_of(request: &[u8]) -> i64 {
    let (outer, _) = authprobe::protocol::ldap::ber::read(request).unwrap();
    let (id, _) = authprobe::protocol::ldap::ber::read(outer.value).unwrap();
    authprobe::protocol::ldap::ber::integer(id.value).unwrap()
}

/// An LDAPResult of operation `op` with `code` and `message` for `request`, and what follows
/// the result inside the operation (`extra`).
fn result(request: &[u8], op: u8, code: i64, message: &str, extra: &[u8]) -> Vec<u8> {
    use authprobe::protocol::ldap::ber;
    let mut r = ber::int(0x0a, code);
    r.extend(ber::tlv(0x04, b""));
    r.extend(ber::tlv(0x04, message.as_bytes()));
    r.extend_from_slice(extra);
    let mut body = ber::int(0x02, id_of(request));
    body.extend(ber::tlv(op, &r));
    ber::tlv(0x30, &body)
}

/// Servers that stall, send garbage, refer elsewhere, cut an answer short, announce their
/// disconnection or flood a search: each run gets a classified result within its deadline.
#[tokio::test]
async fn hostile_directories_get_a_classified_result_within_the_deadline() {
    use authprobe::protocol::ldap::ber;
    let stalls = hostile(|_| Reply::Stall).await;
    let garbage = hostile(|_| Reply::Send(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())).await;
    let referral = hostile(|r| {
        let referral = ber::tlv(0xa3, &ber::tlv(0x04, b"ldap://elsewhere.example/"));
        Reply::Send(result(r, 0x61, 10, "go elsewhere", &referral))
    })
    .await;
    // Half an answer, then the connection closes.
    let cut = hostile(|r| {
        let whole = result(r, 0x61, 0, "", &[]);
        Reply::Close(whole[..whole.len() / 2].to_vec())
    })
    .await;
    let notice = hostile(|_| {
        let mut r = ber::int(0x0a, 52);
        r.extend(ber::tlv(0x04, b""));
        r.extend(ber::tlv(0x04, b"server shutting down"));
        r.extend(ber::tlv(0x8a, b"1.3.6.1.4.1.1466.20036"));
        let mut body = ber::int(0x02, 0);
        body.extend(ber::tlv(0x78, &r));
        Reply::Close(ber::tlv(0x30, &body))
    })
    .await;
    // A length of 2 GiB announced.
    let huge = hostile(|_| Reply::Send(vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff])).await;
    let flood = hostile(|r| {
        let (outer, _) = ber::read(r).unwrap();
        let (_, after_id) = ber::read(outer.value).unwrap();
        match ber::read(after_id).map(|(t, _)| t.tag) {
            Ok(0x60) => Reply::Send(result(r, 0x61, 0, "", &[])),
            Ok(0x63) => {
                // Far more entries than asked for, and never a SearchResultDone.
                let mut entry = ber::tlv(0x04, b"cn=x");
                entry.extend(ber::tlv(0x30, &[]));
                let mut body = ber::int(0x02, id_of(r));
                body.extend(ber::tlv(0x64, &entry));
                Reply::Send(ber::tlv(0x30, &body).repeat(5000))
            }
            _ => Reply::Close(Vec::new()),
        }
    })
    .await;
    let mut yaml = String::from("defaults: {timeout: 2s}\ntargets:\n");
    for (name, port) in [
        ("stalls", stalls),
        ("garbage", garbage),
        ("referral", referral),
        ("cut", cut),
        ("notice", notice),
        ("huge", huge),
        ("flood", flood),
    ] {
        yaml += &format!("  - {{name: {name}, protocol: ldap, url: 'ldap://127.0.0.1:{port}'}}\n");
    }
    yaml += "probes:\n";
    for name in ["stalls", "garbage", "referral", "cut", "notice", "huge", "flood"] {
        let search = if name == "flood" { ", search: {base: 'dc=x', min_entries: 1}" } else { "" };
        yaml += &bind(name, name, "cn=probe,dc=x", "hostile-Pw-Zq9", search);
    }
    let specs = load(&yaml);
    let prober = Prober::new().unwrap();
    for (name, result, step, reason) in [
        ("stalls", ResultClass::Timeout, BIND, Reason::NONE),
        ("garbage", ResultClass::InvalidResponse, BIND, Reason::NONE),
        ("referral", ResultClass::HttpError, BIND, REFERRAL),
        ("cut", ResultClass::ConnectError, BIND, Reason::NONE),
        ("notice", ResultClass::HttpError, BIND, UNAVAILABLE),
        ("huge", ResultClass::InvalidResponse, BIND, Reason::NONE),
        ("flood", ResultClass::InvalidResponse, SEARCH, Reason::NONE),
    ] {
        let started = Instant::now();
        let o = prober.login(&specs[name]).await;
        assert!(started.elapsed() < Duration::from_secs(3), "{name}: {:?}", started.elapsed());
        assert_eq!(
            (o.summary.result, o.summary.step, o.summary.reason),
            (result, step, reason),
            "{name}: {}",
            o.detail
        );
        assert!(!o.detail.contains("hostile-Pw-Zq9"));
    }
}

/// The test of the guard: a directory that locks an account after 3 failures, a probe
/// with a wrong password every 2 s. The first refusal holds the credentials back (one bind per
/// max_backoff); the runs meanwhile read the root entry anonymously and still say why they are
/// held back. The account is never locked: slapd recorded one failure. The binary's /metrics
/// carries the LDAP series, the password expiry and grace logins, and passes promtool.
#[tokio::test]
async fn the_guard_keeps_the_probe_from_locking_its_own_account() {
    use common::service::Service;
    let s = Slapd::start(slapd::Options { use_lockout: true, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = "defaults: {timeout: 2s}\n".to_owned()
        + &slapd_targets(&s)
        + "probes:\n"
        + &bind("lockme", "ldaps", slapd::LOCKOUT_DN, "wrong-Lockme-Pw-Xy7", ", interval: 2s")
        + &bind("expiring", "ldaps", slapd::EXPIRING_DN, slapd::EXPIRING_PASSWORD, ", interval: 2s")
        + &bind("grace", "starttls", slapd::GRACE_DN, slapd::GRACE_PASSWORD, ", interval: 6s");
    let file = write(dir.path(), "probes.yaml", &yaml);
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap()]).await;
    let lockme = [("probe", "lockme")];
    let m = svc
        .metrics_until(Duration::from_secs(30), |m| {
            m.get("authprobe_probe_step_duration_seconds_count", &[("probe", "lockme"), ("step", "RootDSE")])
                .is_some_and(|n| n >= 4.0)
        })
        .await;
    // Five runs or more, one bind among them.
    assert_eq!(m.value("authprobe_probe_step_duration_seconds_count", &[("probe", "lockme"), ("step", "Bind")]), 1.0);
    let held = m.series("authprobe_probe_outcome", &lockme);
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].label("result"), held[0].label("step"), held[0].label("reason"), held[0].label("ldap_result_code")),
        ("auth_failed", "Bind", "invalid_credentials", "49"),
        "the last result still says why the probe is held back"
    );
    assert!(m.value("authprobe_probe_backoff_seconds", &lockme) > 3000.0);
    let state = s.password_state(slapd::LOCKOUT_DN).await;
    assert_eq!(state.failure_times.len(), 1, "{state:?}");
    assert_eq!(state.locked_time, None, "the account was locked: {state:?}");
    let (_, api) = common::get(&svc.url("/api/v1/probes/lockme")).await;
    assert!(api.contains("held back by the lockout guard"), "{api}");
    // The next run is the next tick (2 s away), not the guard's end an hour away: the reads go on.
    let (_, page) = common::get(&svc.url("/probes/lockme")).await;
    assert!(page.contains("credentials held back for "), "{page}");
    let next: serde_json::Value = serde_json::from_str(&api).unwrap();
    let next = next["next_run_unix"].as_f64().expect("a next run");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(next - now < 5.0, "next run {} s away while held", next - now);

    // The facts of a successful bind, and the LDAP status gauge.
    let expiring = [("probe", "expiring")];
    let left = m.value("authprobe_probe_password_expires_in_seconds", &expiring);
    assert!((slapd::EXPIRING_SECONDS as f64 - 300.0..=slapd::EXPIRING_SECONDS as f64).contains(&left), "{left}");
    // Each grace login uses one up: at 6 s, the first two or three runs had one left.
    assert!(m.value("authprobe_probe_grace_logins_remaining", &[("probe", "grace")]) < f64::from(slapd::GRACE_LOGINS));
    assert_eq!(m.value("authprobe_probe_ldap_result_code", &expiring), 0.0);
    assert_eq!(m.value("authprobe_probe_ldap_result_code", &lockme), 49.0);
    assert!(m.value("authprobe_probe_tls_cert_not_after_timestamp_seconds", &expiring) > 0.0);
    let (_, page) = common::get(&svc.url("/probes/expiring")).await;
    assert!(page.contains("the account's password expires in 5.0 days"), "{page}");
    let (_, page) = common::get(&svc.url("/probes/grace")).await;
    assert!(page.contains("grace login(s) left"), "{page}");
    let text = svc.metrics_text().await;
    let (code, report) = promtool_check_metrics(&text);
    assert_eq!(code, 0, "{report}");
    for secret in ["wrong-Lockme-Pw-Xy7", slapd::EXPIRING_PASSWORD, slapd::SERVICE_PASSWORD, slapd::GRACE_PASSWORD] {
        assert!(!text.contains(secret) && !api.contains(secret) && !svc.stderr().contains(secret));
    }
    svc.terminate().await;
}

/// Samba's Active Directory DC (Debian's samba, needs root: tests/run.sh and CI run as root):
/// AD's sub-codes read from its own words for every account state it can give, binds by UPN,
/// DN and `DOMAIN\user`, search-then-bind through a service account, the password's expiry from
/// `msDS-UserPasswordExpiryTimeComputed`, and its refusal of simple binds in the clear.
#[tokio::test]
async fn samba_active_directory_account_states_by_their_sub_codes() {
    use common::samba::{self, Samba};
    let pki = common::pki(&["127.0.0.1", "localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let chain = write(dir.path(), "dc.pem", &pki.server_pem.0);
    let key = write(dir.path(), "dc.key", &pki.server_pem.1);
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let dc =
        Samba::start(samba::Options { require_strong_auth: true, tls: Some((chain, key)), ..Default::default() }).await;
    let users = samba::USERS_DN;
    let mut yaml = format!(
        "targets:
  - {{name: clear, protocol: ldap, url: '{ldap}'}}
  - {{name: ad, protocol: ldap, url: '{ldaps}', tls: {{ca_file: '{ca}'}}, bind_dn: '{svc}', password: '{svc_pw}'}}
  - {{name: ad-starttls, protocol: ldap, url: '{ldap}', start_tls: true, tls: {{ca_file: '{ca}'}}}}
probes:
",
        ldap = dc.ldap_url(),
        ldaps = dc.ldaps_url(),
        ca = ca.display(),
        svc = samba::SERVICE_DN,
        svc_pw = samba::SERVICE_PASSWORD,
    );
    let expiry = format!(
        ", password_expiry: true, search: {{base: '{users}', filter: '(sAMAccountName={})', expect_entries: 1}}",
        samba::USER
    );
    yaml += &bind("upn", "ad", samba::USER_UPN, samba::USER_PASSWORD, &expiry);
    yaml += &bind("dn", "ad-starttls", samba::USER_DN, samba::USER_PASSWORD, ", password_expiry: true");
    yaml += &bind("netbios", "ad", &format!("{}\\{}", samba::NETBIOS_DOMAIN, samba::USER), samba::USER_PASSWORD, "");
    yaml += &format!(
        "  - {{name: search-then-bind, target: ad, username: '{}', password: '{}', user_search: {{base: '{}', filter: '(&(objectClass=user)(sAMAccountName={{username}}))'}}}}\n",
        samba::USER,
        samba::USER_PASSWORD,
        samba::BASE_DN,
    );
    yaml += &bind("wrong", "ad", samba::USER_UPN, samba::WRONG_PASSWORD, "");
    yaml += &bind("unknown", "ad", &samba::upn(samba::UNKNOWN_USER), samba::WRONG_PASSWORD, "");
    yaml += &bind("must-change", "ad", &samba::upn(samba::MUST_CHANGE_USER), samba::MUST_CHANGE_PASSWORD, "");
    yaml += &bind("expired", "ad", &samba::upn(samba::EXPIRED_USER), samba::EXPIRED_PASSWORD, "");
    yaml += &bind("disabled", "ad", &samba::upn(samba::DISABLED_USER), samba::DISABLED_PASSWORD, "");
    yaml +=
        &bind("account-expired", "ad", &samba::upn(samba::ACCOUNT_EXPIRED_USER), samba::ACCOUNT_EXPIRED_PASSWORD, "");
    yaml += &bind("locked", "ad", &samba::upn(samba::LOCKED_USER), samba::LOCKED_PASSWORD, "");
    yaml += &bind("clear", "clear", samba::USER_UPN, samba::USER_PASSWORD, "");
    yaml += &bind("whoami", "ad", samba::USER_UPN, samba::USER_PASSWORD, ", whoami: true");
    let probes = Probes::load(&yaml);

    let max_age = samba::MAX_PASSWORD_AGE.as_secs() as i64;
    for name in ["upn", "dn"] {
        let o = probes.login(name).await;
        check(&o, ResultClass::Success, SEARCH, Reason::NONE, 0);
        let left = o.account.and_then(|a| a.password_expires_in_seconds).expect("msDS-UserPasswordExpiryTimeComputed");
        assert!(left > 0 && left <= max_age, "{name}: {left}");
        assert!(o.tls.is_some_and(|t| t.version.is_some()), "{name}");
    }
    check(&probes.login("netbios").await, ResultClass::Success, BIND, Reason::NONE, 0);
    // From the domain's root: AD adds continuation references (its DNS partitions), which are
    // not entries.
    let o = probes.login("search-then-bind").await;
    check(&o, ResultClass::Success, BIND, Reason::NONE, 0);
    assert!(o.detail.contains(&format!("bound as {}", samba::USER_DN)), "{}", o.detail);

    for (name, result, reason, data) in [
        ("wrong", ResultClass::AuthFailed, INVALID_CREDENTIALS, samba::DATA_BAD_CREDENTIALS),
        // Samba answers an unknown user as a wrong password (Windows says 525).
        ("unknown", ResultClass::AuthFailed, INVALID_CREDENTIALS, samba::DATA_BAD_CREDENTIALS),
        ("must-change", ResultClass::PasswordExpired, PASSWORD_MUST_CHANGE, samba::DATA_MUST_CHANGE),
        ("expired", ResultClass::PasswordExpired, PASSWORD_EXPIRED, samba::DATA_PASSWORD_EXPIRED),
        ("disabled", ResultClass::AuthFailed, ACCOUNT_DISABLED, samba::DATA_DISABLED),
        ("account-expired", ResultClass::AuthFailed, ACCOUNT_EXPIRED, samba::DATA_ACCOUNT_EXPIRED),
        ("locked", ResultClass::AuthFailed, ACCOUNT_LOCKED, samba::DATA_LOCKED),
    ] {
        let o = probes.login(name).await;
        check(&o, result, BIND, reason, 49);
        assert_eq!(o.reason_text, samba::diagnostic(data), "{name}: the diagnostic message is the reason text");
        assert!(o.detail.contains(&format!("AD data {data}")), "{name}: {}", o.detail);
    }
    let o = probes.login("clear").await;
    check(&o, ResultClass::ClientRejected, BIND, TLS_REQUIRED, 8);
    assert_eq!(o.reason_text, samba::STRONG_AUTH_MESSAGE);
    // Samba does not implement "Who am I?": the probe says so rather than pass unchecked.
    let o = probes.login("whoami").await;
    assert_eq!((o.summary.result, o.summary.step), (ResultClass::ValidationFailed, WHO_AM_I), "{}", o.detail);
    dc.stop().await;
}

/// Every mistake in an LDAP block is an error naming its file, probe or target and field, and
/// never quoting a password; the binary's check-config exits 2 on them, and warns (exit 0) of a
/// password that would cross in the clear.
#[test]
fn ldap_configuration_mistakes_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "targets:
  - {name: no-url, protocol: ldap}
  - {name: http, protocol: ldap, url: 'http://dir.example'}
  - {name: path, protocol: ldap, url: 'ldap://dir.example/dc=x'}
  - {name: both-tls, protocol: ldap, url: 'ldaps://dir.example', start_tls: true}
  - {name: tls-plain, protocol: ldap, url: 'ldap://dir.example', tls: {insecure_skip_verify: true}}
  - {name: svc-no-dn, protocol: ldap, url: 'ldap://dir.example', password: svc-Secret-Pw-Kk1}
  - {name: ok, protocol: ldap, url: 'ldaps://dir.example'}
  - {name: proxied, protocol: ldap, url: 'ldaps://dir.example', proxy_url: 'http://proxy.example:3128'}
probes:
  - {name: neither, target: ok, password: p-Secret-Pw-Kk2}
  - {name: both, target: ok, bind_dn: cn=x, password: p-Secret-Pw-Kk2, username: u, user_search: {base: dc=x, filter: '(uid={username})'}}
  - {name: no-placeholder, target: ok, username: u, password: p-Secret-Pw-Kk2, user_search: {base: dc=x, filter: '(uid=u)'}}
  - {name: bad-filter, target: ok, bind_dn: cn=x, password: p-Secret-Pw-Kk2, search: {base: dc=x, filter: '(uid=a'}}
  - {name: bad-scope, target: ok, bind_dn: cn=x, password: p-Secret-Pw-Kk2, search: {base: dc=x, scope: subtree}}
  - {name: two-counts, target: ok, bind_dn: cn=x, password: p-Secret-Pw-Kk2, search: {base: dc=x, expect_entries: 1, min_entries: 1}}
  - {name: empty-password, target: ok, bind_dn: cn=x, password: ''}
  - {name: no-password, target: ok, bind_dn: cn=x}
  - {name: pin, target: ok, bind_dn: cn=x, password: p-Secret-Pw-Kk2, pin: '1234'}
";
    let file = write(dir.path(), "probes.yaml", yaml);
    let errors = Config::load(&file).unwrap_err().to_string();
    for expected in [
        "probes.yaml:2:6: targets[0].url: missing",
        "probes.yaml:3:34: targets[1].url: scheme must be ldap or ldaps",
        "targets[2].url: must not have a path",
        "targets[3].start_tls: not with ldaps://",
        "targets[4].tls: set for an ldap:// target without start_tls",
        "targets[5].password: the service account's password needs its bind_dn",
        "targets[7].proxy_url: not for an ldap target",
        "probes.yaml:11:6: probes[0].bind_dn: missing",
        "probes[1].user_search: not with bind_dn",
        "probes[2].user_search.filter: must contain {username}",
        "probes[3].search.filter: invalid filter: the filter ends inside a value at character 6",
        "probes[4].search.scope: unknown scope \"subtree\"",
        "probes[5].search.min_entries: not with expect_entries",
        "probes[6].password: the value is empty",
        "probes[7].password: missing",
        "probes[8].pin: only for probes of protocol: etna targets (an ldap login is a bind",
    ] {
        assert!(errors.contains(expected), "{expected:?} not in:\n{errors}");
    }
    for secret in ["svc-Secret-Pw-Kk1", "p-Secret-Pw-Kk2"] {
        assert!(!errors.contains(secret), "{secret} quoted:\n{errors}");
    }

    // check-config: exit 2 on the mistakes; a password in the clear is a warning, exit 0.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authprobe"))
        .args(["check-config", "--config.file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let clear = write(
        dir.path(),
        "clear.yaml",
        "targets: [{name: d, protocol: ldap, url: 'ldap://127.0.0.1:389'}]\nprobes:\n  - {name: p, target: d, bind_dn: cn=x, password: p-Secret-Pw-Kk3}\n  - {name: q, target: d, bind_dn: cn=y, password: p-Secret-Pw-Kk3}\n  - {name: r, target: d, bind_dn: cn=z, password: p-Secret-Pw-Kk3}\n  - {name: s, target: d, bind_dn: cn=w, password: p-Secret-Pw-Kk3}\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authprobe"))
        .args(["check-config", "--config.file", clear.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: ldap://127.0.0.1:389 is ldap:// without start_tls: the password crosses the network in the clear (probes p, q, r and 1 more)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("warning:").count(), 1, "one warning for the target's four probes: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bind=dn security=plain"));
}

/// Our filters' BER is OpenLDAP's: each filter given to the real `ldapsearch` arrives at a server
/// of the test's own as the bytes `filter::encode` makes of it (every kind of item, escapes,
/// AD's extensible bit rule, nesting).
#[tokio::test]
async fn filters_encode_as_openldaps_ldapsearch_sends_them() {
    use authprobe::protocol::ldap::{ber, filter};
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(Some(size)) = ber::frame(&buf) else {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let request: Vec<u8> = buf.drain(..size).collect();
                    let (outer, _) = ber::read(&request).unwrap();
                    let (_, rest) = ber::read(outer.value).unwrap();
                    let (op, _) = ber::read(rest).unwrap();
                    let reply = match op.tag {
                        0x60 => result(&request, 0x61, 0, "", &[]),
                        0x63 => {
                            // base, scope, deref, size, time, typesOnly, then the filter.
                            let mut r = ber::Reader::new(op.value);
                            for _ in 0..6 {
                                r.element().unwrap();
                            }
                            let f = r.element().unwrap();
                            record.lock().unwrap().push(ber::tlv(f.tag, f.value));
                            result(&request, 0x65, 0, "", &[])
                        }
                        _ => return,
                    };
                    if conn.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let filters = [
        "(uid=probe-user)",
        "(objectClass=*)",
        "(&(objectClass=user)(sAMAccountName=probe))",
        "(|(cn=a*)(cn=*b)(cn=a*b*c)(!(mail=*)))",
        "(userAccountControl:1.2.840.113556.1.4.803:=2)",
        "(cn:dn:caseExactMatch:=Fred)",
        "(:dn:2.5.13.5:=x)",
        "(cn=a\\2ab\\28c\\29\\5c)",
        "(n>=5)",
        "(n<=5)",
        "(sn~=smith)",
        "(description=ümlaut ✓)",
    ];
    for f in filters {
        let out = tokio::process::Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H", &format!("ldap://127.0.0.1:{port}"), "-b", "dc=x", f])
            .env("LDAPNOINIT", "1")
            .output()
            .await
            .expect("ldapsearch (ldap-utils)");
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
        let sent = seen.lock().unwrap().pop().expect("a search arrived");
        assert_eq!(sent, filter::encode(f).unwrap(), "{f}");
    }
}

/// The simulator's directory, modelled on Active Directory (a lockout after 3 wrong passwords,
/// answered 775 whatever the password): the binary's probe with a wrong password every second
/// binds once, then reads the root entry while held; the simulator counted one refused bind, the
/// account is not locked (its right password still binds), and the demo's kind of probes get
/// their results over StartTLS.
#[tokio::test]
async fn the_simulators_directory_and_the_guard_through_the_binary() {
    use authprobe::simulator::ldap::{LdapSettings, LockoutPolicy};
    use authprobe::simulator::{Account, Settings};
    use common::service::Service;
    let mut expired = Account::new("irene", "irene-Sim-Pw-Jk2");
    expired.password_expired = true;
    let mut settings = Settings::new(&[common::APP_KEY], vec![Account::new("henry", "henry-Sim-Pw-Jk1"), expired]);
    let mut ldap = LdapSettings::new("DC=sim,DC=test", "127.0.0.1:0".parse().unwrap()).unwrap();
    ldap.lockout = Some(LockoutPolicy { threshold: 3, duration: Duration::from_secs(1800) });
    settings.ldap = Some(ldap);
    let sim = common::simulator_with(settings).await;
    let addr = sim.ldap_addr().expect("the directory listens");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "defaults: {{interval: 1s, timeout: 900ms}}
targets: [{{name: ad, protocol: ldap, url: 'ldap://{addr}'}}]
probes:
  - {{name: wrong, target: ad, bind_dn: henry@sim.test, password: wrong-Sim-Pw-Jk9}}
  - {{name: expired, target: ad, bind_dn: 'SIM\\irene', password: irene-Sim-Pw-Jk2, interval: 1h}}
"
    );
    let file = write(dir.path(), "probes.yaml", &yaml);
    let svc = Service::start(dir.path(), &[], &["--config.file", file.to_str().unwrap()]).await;
    let m = svc
        .metrics_until(Duration::from_secs(20), |m| {
            m.get("authprobe_probe_step_duration_seconds_count", &[("probe", "wrong"), ("step", "RootDSE")])
                .is_some_and(|n| n >= 4.0)
        })
        .await;
    let held = &m.series("authprobe_probe_outcome", &[("probe", "wrong")])[0];
    assert_eq!((held.label("result"), held.label("reason")), ("auth_failed", "invalid_credentials"));
    svc.terminate().await;
    let stats = sim.ldap_stats("henry");
    assert_eq!((stats.binds, stats.failed_binds), (1, 1), "{stats:?}");
    // Not locked: the right password binds.
    let specs = load(&yaml.replace("wrong-Sim-Pw-Jk9", "henry-Sim-Pw-Jk1"));
    let o = Prober::new().unwrap().login(&specs["wrong"]).await;
    check(&o, ResultClass::Success, BIND, Reason::NONE, 0);
    let o = Prober::new().unwrap().login(&specs["expired"]).await;
    check(&o, ResultClass::PasswordExpired, BIND, PASSWORD_EXPIRED, 49);
    assert!(o.reason_text.contains("data 532"), "{}", o.reason_text);
}
