//! The login client against the simulator over real HTTP on 127.0.0.1: every result class and
//! every reason, the headers the server received, and the bounds (deadline, body cap, steps).

mod common;

use std::time::{Duration, Instant};

use authprobe::protocol::{etna, Expect, Outcome, Prober, Reason, ResultClass, State, Step};
use authprobe::simulator::{Account, Fault, RateLimit, Settings, WrongSecret};
use common::*;

async fn login(spec: &authprobe::protocol::LoginSpec) -> Outcome {
    Prober::new().unwrap().login(spec).await
}

/// Asserts the bounded fields of an outcome at once, so a failure shows all of them.
#[track_caller]
fn check(o: &Outcome, result: ResultClass, state: Option<State>, step: Step, reason: Reason, status: u16) {
    assert_eq!(
        (o.summary.result, o.summary.state, o.summary.step, o.summary.reason, o.summary.status),
        (result, state, step, reason, status),
        "unexpected outcome; detail: {}",
        o.detail
    );
}

#[tokio::test]
async fn password_login_succeeds_with_documented_headers() {
    let sim = simulator(vec![Account::new("alice", "pw-alice-7Hq")]).await;
    let o = login(&spec(&sim, "alice", "pw-alice-7Hq")).await;
    check(&o, ResultClass::Success, Some(SUCCEEDED), etna::BASE_AUTHENTICATION, Reason::NONE, 200);
    assert_eq!(o.steps.len(), 1);
    assert_eq!(o.steps[0].status, 200);
    assert!(o.duration >= o.steps[0].duration);

    let reqs = sim.requests("alice");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/token"));
    assert_eq!(r.header("et-app-key"), Some(APP_KEY));
    assert_eq!(r.header("username"), Some("alice"));
    assert_eq!(r.header("password"), Some("pw-alice-7Hq"));
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("user-agent"), Some(concat!("authprobe/", env!("CARGO_PKG_VERSION"))));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("pincode"), None);
}

#[tokio::test]
async fn trailing_slash_in_base_url_and_extra_fields() {
    let mut a = Account::new("alice", "pw");
    a.extra_fields = true;
    let sim = simulator(vec![a]).await;
    let mut s = spec(&sim, "alice", "pw");
    etna_target(&mut s).base_url = format!("{}/", sim.base_url()).parse().unwrap();
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::Success, "{}", o.detail);
    assert_eq!(sim.requests("alice")[0].path, "/api/token");
}

#[tokio::test]
async fn pin_step_continues_with_interim_token_and_repeated_credentials() {
    let sim = simulator(vec![pin_account("bob", "pw-bob", "4321")]).await;
    let mut s = spec(&sim, "bob", "pw-bob");
    etna(&mut s).pin = Some("4321".into());
    let o = login(&s).await;
    check(&o, ResultClass::Success, Some(SUCCEEDED), etna::SECUTITY_PIN, Reason::NONE, 200);
    let steps: Vec<_> = o.steps.iter().map(|r| (r.step, r.status, r.state)).collect();
    assert_eq!(steps, [(etna::BASE_AUTHENTICATION, 202, Some(EXPECTING)), (etna::SECUTITY_PIN, 200, Some(SUCCEEDED))]);

    let reqs = sim.requests("bob");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("authorization"), None);
    assert_eq!(reqs[0].header("pincode"), None);
    let second = &reqs[1];
    for (name, value) in [("et-app-key", APP_KEY), ("username", "bob"), ("password", "pw-bob"), ("pincode", "4321")] {
        assert_eq!(second.header(name), Some(value), "{name}");
    }
    let bearer = second.header("authorization").unwrap();
    let interim = bearer.strip_prefix("Bearer ").expect("Bearer scheme");
    // The interim token is not the final token the server issued.
    assert_eq!(sim.issued_tokens("bob").len(), 1);
    assert_ne!(interim, sim.issued_tokens("bob")[0]);
    assert_eq!(second.header("verificationcode"), None);
}

#[tokio::test]
async fn verification_code_step_and_pin_then_code() {
    let mut both = pin_account("dora", "pw", "1111");
    both.verification_code = Some("909090".into());
    let sim = simulator(vec![code_account("carol", "pw", "735190"), both]).await;

    let mut s = spec(&sim, "carol", "pw");
    etna(&mut s).verification_code = Some("735190".into());
    let o = login(&s).await;
    check(&o, ResultClass::Success, Some(SUCCEEDED), etna::VERIFICATION_CODE, Reason::NONE, 200);
    assert_eq!(sim.requests("carol")[1].header("verificationcode"), Some("735190"));
    assert!(sim.requests("carol")[1].header("authorization").unwrap().starts_with("Bearer "));

    let mut s = spec(&sim, "dora", "pw");
    etna(&mut s).pin = Some("1111".into());
    etna(&mut s).verification_code = Some("909090".into());
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::Success, "{}", o.detail);
    let order: Vec<Step> = o.steps.iter().map(|r| r.step).collect();
    assert_eq!(order, [etna::BASE_AUTHENTICATION, etna::SECUTITY_PIN, etna::VERIFICATION_CODE]);
    let third = &sim.requests("dora")[2];
    assert_eq!((third.header("verificationcode"), third.header("password")), (Some("909090"), Some("pw")));
}

#[tokio::test]
async fn expected_verification_step_is_healthy() {
    let sim = simulator(vec![code_account("carol", "pw", "735190")]).await;
    let mut s = spec(&sim, "carol", "pw");
    etna(&mut s).expect = Expect::Step(etna::VERIFICATION_CODE);
    let o = login(&s).await;
    check(&o, ResultClass::Success, Some(EXPECTING), etna::VERIFICATION_CODE, etna::EXPECTING_CONFIRMATION_CODE, 202);
    assert_eq!(o.reason_text, "Expecting confirmation code");
    assert_eq!(sim.stats("carol").tokens_issued, 0);

    // The same expectation against an account without 2FA: the step never comes.
    let sim = simulator(vec![Account::new("alice", "pw")]).await;
    let mut s = spec(&sim, "alice", "pw");
    etna(&mut s).expect = Expect::Step(etna::VERIFICATION_CODE);
    check(&login(&s).await, ResultClass::UnexpectedStep, Some(SUCCEEDED), etna::BASE_AUTHENTICATION, Reason::NONE, 200);
}

#[tokio::test]
async fn credential_failures() {
    let mut reprompt = pin_account("rita", "pw", "2222");
    reprompt.wrong_secret = WrongSecret::Reprompt;
    let sim = simulator(vec![
        Account::new("alice", "right"),
        pin_account("bob", "pw", "4321"),
        code_account("carol", "pw", "735190"),
        reprompt,
    ])
    .await;

    let o = login(&spec(&sim, "alice", "wrong")).await;
    check(&o, ResultClass::AuthFailed, Some(FAILED), etna::BASE_AUTHENTICATION, etna::INVALID_CREDENTIALS, 401);
    assert_eq!(o.reason_text, "Invalid credentials");
    let o = login(&spec(&sim, "nobody", "x")).await;
    check(&o, ResultClass::AuthFailed, Some(FAILED), etna::BASE_AUTHENTICATION, etna::INVALID_CREDENTIALS, 401);

    let mut s = spec(&sim, "bob", "pw");
    etna(&mut s).pin = Some("0000".into());
    let o = login(&s).await;
    check(&o, ResultClass::AuthFailed, Some(FAILED), etna::SECUTITY_PIN, etna::INVALID_PIN, 401);

    // A server that asks for the pin again after a wrong one.
    let mut s = spec(&sim, "rita", "pw");
    etna(&mut s).pin = Some("0000".into());
    let o = login(&s).await;
    check(&o, ResultClass::AuthFailed, Some(EXPECTING), etna::SECUTITY_PIN, etna::INVALID_PIN, 202);
    assert_eq!(o.steps.len(), 2);

    let mut s = spec(&sim, "carol", "pw");
    etna(&mut s).verification_code = Some("000000".into());
    let o = login(&s).await;
    check(&o, ResultClass::AuthFailed, Some(FAILED), etna::VERIFICATION_CODE, etna::INVALID_VERIFICATION_CODE, 401);
}

#[tokio::test]
async fn lost_ticket_is_corrupted_ticket() {
    let mut a = pin_account("bob", "pw", "4321");
    a.fault = Fault::ForgetTickets;
    let sim = simulator(vec![a]).await;
    let mut s = spec(&sim, "bob", "pw");
    etna(&mut s).pin = Some("4321".into());
    let o = login(&s).await;
    check(&o, ResultClass::AuthFailed, Some(FAILED), etna::SECUTITY_PIN, etna::CORRUPTED_TICKET, 401);
}

#[tokio::test]
async fn rate_limited_after_max_logins() {
    let mut a = Account::new("alice", "pw");
    a.rate_limit = Some(RateLimit { max_logins: 2, window: Duration::from_secs(60) });
    let sim = simulator(vec![a]).await;
    let s = spec(&sim, "alice", "pw");
    for _ in 0..2 {
        assert_eq!(login(&s).await.summary.result, ResultClass::Success);
    }
    let o = login(&s).await;
    check(&o, ResultClass::RateLimited, Some(FAILED), etna::BASE_AUTHENTICATION, etna::TOO_MANY_REQUESTS, 401);
    assert_eq!(o.reason_text, "Too many login requests. Please try again later.");
    assert_eq!(sim.stats("alice").logins, 2);
    assert_eq!(sim.stats("alice").requests, 3);
}

#[tokio::test]
async fn password_expired_and_pin_not_initialised() {
    let mut expired = Account::new("dave", "pw");
    expired.password_expired = true;
    let mut uninit = Account::new("erin", "pw");
    uninit.pin_initialized = false;
    let sim = simulator(vec![expired, uninit]).await;

    let o = login(&spec(&sim, "dave", "pw")).await;
    check(&o, ResultClass::PasswordExpired, Some(FAILED), etna::BASE_AUTHENTICATION, etna::PASSWORD_EXPIRED, 401);

    let o = login(&spec(&sim, "erin", "pw")).await;
    check(&o, ResultClass::PinNotInitialized, Some(EXPECTING), etna::SECUTITY_PIN, etna::PIN_NOT_INITIALIZED, 202);
    let mut s = spec(&sim, "erin", "pw");
    etna(&mut s).expect = Expect::Step(etna::SECUTITY_PIN);
    assert_eq!(login(&s).await.summary.result, ResultClass::PinNotInitialized);
    // Even with a pin to send, the prompt itself says the PIN cannot be used.
    etna(&mut s).expect = Expect::Succeeded;
    etna(&mut s).pin = Some("1234".into());
    assert_eq!(login(&s).await.summary.result, ResultClass::PinNotInitialized);
}

#[tokio::test]
async fn app_key_rejected_with_either_status() {
    let sim = simulator(vec![Account::new("alice", "pw")]).await;
    let mut s = spec(&sim, "alice", "pw");
    etna_target(&mut s).app_key = "not-a-key".into();
    let o = login(&s).await;
    check(&o, ResultClass::AppKeyRejected, None, etna::BASE_AUTHENTICATION, etna::APP_KEY_NOT_DEFINED, 403);
    assert_eq!(o.reason_text, "Application key is not defined or does not exist");

    let mut settings = Settings::new(&[APP_KEY], vec![Account::new("alice", "pw")]);
    settings.app_key_error_status = 401;
    let sim = simulator_with(settings).await;
    let mut s = spec(&sim, "alice", "pw");
    etna_target(&mut s).app_key = "not-a-key".into();
    check(
        &login(&s).await,
        ResultClass::AppKeyRejected,
        None,
        etna::BASE_AUTHENTICATION,
        etna::APP_KEY_NOT_DEFINED,
        401,
    );
}

#[tokio::test]
async fn unexpected_and_unknown_steps() {
    let unknown = fault_account("quinn", Fault::UnknownStep);
    let sim = simulator(vec![pin_account("bob", "pw", "4321"), unknown]).await;

    // The server asks for a pin the probe does not have.
    let o = login(&spec(&sim, "bob", "pw")).await;
    check(&o, ResultClass::UnexpectedStep, Some(EXPECTING), etna::SECUTITY_PIN, etna::INVALID_PIN, 202);
    assert_eq!(sim.requests("bob").len(), 1, "no second request without a pin");

    let o = login(&spec(&sim, "quinn", "pw")).await;
    check(&o, ResultClass::UnexpectedStep, Some(EXPECTING), Step::OTHER, Reason::OTHER, 202);
    assert!(o.detail.contains("SecretQuestion"), "{}", o.detail);
}

#[tokio::test]
async fn step_limit_bounds_the_number_of_requests() {
    let mut both = pin_account("dora", "pw", "1111");
    both.verification_code = Some("909090".into());
    let endless = fault_account("eve", Fault::Endless202);
    let sim = simulator(vec![both, endless]).await;

    let mut s = spec(&sim, "dora", "pw");
    etna(&mut s).pin = Some("1111".into());
    etna(&mut s).verification_code = Some("909090".into());
    etna(&mut s).max_steps = 2;
    let o = login(&s).await;
    check(&o, ResultClass::StepLimit, Some(EXPECTING), etna::VERIFICATION_CODE, etna::EXPECTING_CONFIRMATION_CODE, 202);
    assert_eq!(sim.requests("dora").len(), 2);

    let mut s = spec(&sim, "eve", "pw");
    etna(&mut s).pin = Some("1".into());
    etna(&mut s).verification_code = Some("2".into());
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::StepLimit, "{}", o.detail);
    assert_eq!(sim.requests("eve").len(), 3, "max_steps=3 requests, then stop");
}

#[tokio::test]
async fn http_errors() {
    let faults = [
        ("redir", Fault::Redirect, 302, Reason::NONE, ""),
        ("err500", Fault::ServerError, 500, Reason::OTHER, "Unexpected server error"),
        ("model500", Fault::ServerErrorModel, 500, Reason::OTHER, "Unexpected server error"),
        ("down503", Fault::Unavailable, 503, Reason::NONE, ""),
        ("gone404", Fault::NotFound, 404, Reason::OTHER, ""),
    ];
    let accounts = faults.iter().map(|(name, fault, ..)| fault_account(name, *fault)).collect();
    let sim = simulator(accounts).await;
    for (name, _, status, reason, text) in faults {
        let o = login(&spec(&sim, name, "pw")).await;
        check(&o, ResultClass::HttpError, None, etna::BASE_AUTHENTICATION, reason, status);
        if !text.is_empty() {
            assert_eq!(o.reason_text, text, "{name}");
        }
    }
    let before = sim.requests("redir").len();
    let o = login(&spec(&sim, "redir", "pw")).await;
    assert!(o.detail.contains("/User/LogOn"), "{}", o.detail);
    assert_eq!(sim.requests("redir").len(), before + 1, "redirect not followed");
}

#[tokio::test]
async fn invalid_responses() {
    let faults = [
        ("html", Fault::Html, "HTML page"),
        ("trunc", Fault::TruncatedJson, "truncated JSON"),
        ("shape", Fault::WrongShape, "JSON array"),
        ("bytes", Fault::NonUtf8, "not UTF-8"),
        ("big", Fault::Oversized, "exceeds"),
    ];
    let accounts = faults.iter().map(|(name, fault, _)| fault_account(name, *fault)).collect();
    let sim = simulator(accounts).await;
    for (name, _, detail) in faults {
        let o = login(&spec(&sim, name, "pw")).await;
        check(&o, ResultClass::InvalidResponse, None, etna::BASE_AUTHENTICATION, Reason::NONE, 200);
        assert!(o.detail.contains(detail), "{name}: {}", o.detail);
    }
}

#[tokio::test]
async fn random_reason_is_bounded() {
    let a = fault_account("rand", Fault::RandomReason);
    let sim = simulator(vec![a]).await;
    let o = login(&spec(&sim, "rand", "pw")).await;
    check(&o, ResultClass::AuthFailed, Some(FAILED), etna::BASE_AUTHENTICATION, Reason::OTHER, 401);
    assert_eq!(o.reason_text.chars().count(), 200);
}

#[tokio::test]
async fn deadline_covers_stalls_and_slow_bodies() {
    let stall = fault_account("stall", Fault::Stall);
    let headers_only = fault_account("hdr", Fault::HeadersThenStall);
    let drip = fault_account("drip", Fault::SlowDrip);
    let mut slow_pin = pin_account("slowpin", "pw", "1");
    slow_pin.delay = Some(Duration::from_millis(700));
    let sim = simulator(vec![stall, headers_only, drip, slow_pin]).await;

    for (name, status) in [("stall", 0), ("hdr", 200), ("drip", 200)] {
        let mut s = spec(&sim, name, "pw");
        s.timeout = Duration::from_secs(1);
        let started = Instant::now();
        let o = login(&s).await;
        let took = started.elapsed();
        check(&o, ResultClass::Timeout, None, etna::BASE_AUTHENTICATION, Reason::NONE, status);
        assert!(took < Duration::from_secs(2), "{name}: abandoned after {took:?}, deadline 1s");
        assert!(took >= Duration::from_millis(990), "{name}: gave up early after {took:?}");
    }

    // One deadline for the whole login: two 700 ms steps do not fit in 1 s.
    let mut s = spec(&sim, "slowpin", "pw");
    etna(&mut s).pin = Some("1".into());
    s.timeout = Duration::from_secs(1);
    let o = login(&s).await;
    check(&o, ResultClass::Timeout, None, etna::SECUTITY_PIN, Reason::NONE, 0);
    assert_eq!(o.steps.len(), 2);
    assert!(o.duration < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_and_tls_failures() {
    let sim = simulator(vec![Account::new("alice", "pw")]).await;
    let mut s = spec(&sim, "alice", "pw");
    etna_target(&mut s).base_url = format!("http://127.0.0.1:{}/api", closed_port()).parse().unwrap();
    let o = login(&s).await;
    check(&o, ResultClass::ConnectError, None, etna::BASE_AUTHENTICATION, Reason::NONE, 0);
    assert!(o.detail.to_lowercase().contains("refused"), "{}", o.detail);

    // TLS spoken to a plain-HTTP port.
    etna_target(&mut s).base_url = format!("https://{}/api", sim.addr()).parse().unwrap();
    let o = login(&s).await;
    check(&o, ResultClass::TlsError, None, etna::BASE_AUTHENTICATION, Reason::NONE, 0);
}

#[tokio::test]
async fn body_cap_abandons_oversized_bodies_quickly() {
    let a = fault_account("big", Fault::Oversized);
    let sim = simulator(vec![a]).await;
    let started = Instant::now();
    let o = login(&spec(&sim, "big", "pw")).await;
    assert_eq!(o.summary.result, ResultClass::InvalidResponse);
    assert!(o.detail.contains("65536 byte limit"), "{}", o.detail);
    // Reading 20 MiB would take far longer than abandoning after 64 KiB.
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn outcome_never_contains_secrets_or_tokens() {
    let mut echo = Account::new("echo", "pw-9XqZ-distinct");
    echo.fault = Fault::RandomReason;
    let sim = simulator(vec![pin_account("bob", "pw-Vb83-distinct", "pin-5518-distinct"), echo]).await;
    let mut s = spec(&sim, "bob", "pw-Vb83-distinct");
    etna(&mut s).pin = Some("pin-5518-distinct".into());
    let o = login(&s).await;
    assert!(o.is_success());
    let text = format!("{o:?} {} {s:?}", serde_json::to_string(&o).unwrap());
    for needle in ["pw-Vb83-distinct", "pin-5518-distinct", APP_KEY] {
        assert!(!text.contains(needle), "{needle} leaked");
    }
    for token in sim.issued_tokens("bob") {
        assert!(!text.contains(&token), "token leaked");
    }
    let interims: Vec<String> = sim
        .requests("bob")
        .iter()
        .filter_map(|r| r.header("authorization"))
        .map(|b| b.replace("Bearer ", ""))
        .collect();
    assert_eq!(interims.len(), 1);
    for interim in interims {
        assert!(!text.contains(&interim), "interim token leaked");
    }
}

#[tokio::test]
async fn each_run_opens_a_new_connection_and_steps_reuse_it() {
    let sim = simulator(vec![pin_account("bob", "pw", "4321")]).await;
    let mut s = spec(&sim, "bob", "pw");
    etna(&mut s).pin = Some("4321".into());
    let prober = Prober::new().unwrap();
    for _ in 0..3 {
        assert!(prober.login(&s).await.is_success());
    }
    let peers: Vec<_> = sim.requests("bob").iter().map(|r| r.peer.unwrap()).collect();
    assert_eq!(peers.len(), 6);
    for run in peers.chunks(2) {
        assert_eq!(run[0], run[1], "the PIN step reuses the run's connection");
    }
    let distinct: std::collections::HashSet<_> = peers.iter().collect();
    assert_eq!(distinct.len(), 3, "one connection per run, none pooled across runs: {peers:?}");

    // Password-only logins share their target's client: still a connection of its own for
    // every run, one after another or ten at once, each run timing its own connection.
    let sim = simulator(vec![Account::new("alice", "pw")]).await;
    let s = spec(&sim, "alice", "pw");
    assert!(s.login.single_request());
    for _ in 0..3 {
        assert!(prober.login(&s).await.is_success());
    }
    let runs = futures_util::future::join_all((0..10).map(|_| prober.login(&s))).await;
    for o in &runs {
        assert!(o.is_success(), "{}", o.detail);
        let phases = o.phases.expect("each run times its own connection");
        assert!(phases.connect > Duration::ZERO && phases.processing.is_some(), "{phases:?}");
    }
    let peers: std::collections::HashSet<_> = sim.requests("alice").iter().map(|r| r.peer.unwrap()).collect();
    assert_eq!(peers.len(), 13, "a new connection for each of 13 runs");
}

/// `validate` and `logout` on a PIN login: the final token (not the interim one) is checked
/// against /users/@me/info, timed as the TokenValidation step, then its session is ended.
#[tokio::test]
async fn validation_checks_the_new_token_and_logout_revokes_it() {
    let sim = simulator(vec![pin_account("bob", "bob-pw", "4321")]).await;
    let mut s = spec(&sim, "bob", "bob-pw");
    etna(&mut s).pin = Some("4321".into());
    etna(&mut s).validate = true;
    etna(&mut s).logout = true;
    let o = login(&s).await;
    check(&o, ResultClass::Success, Some(SUCCEEDED), etna::SECUTITY_PIN, Reason::NONE, 200);
    let steps: Vec<(Step, u16)> = o.steps.iter().map(|r| (r.step, r.status)).collect();
    assert_eq!(steps, [(etna::BASE_AUTHENTICATION, 202), (etna::SECUTITY_PIN, 200), (etna::TOKEN_VALIDATION, 200)]);
    assert!(o.duration >= o.steps.iter().map(|r| r.duration).sum::<Duration>());
    let logout = o.logout.as_ref().expect("logged out");
    assert!(logout.ok && logout.status == 200, "{logout:?}");

    let issued = sim.issued_tokens("bob");
    assert_eq!(issued.len(), 1);
    assert_eq!(sim.validated_tokens("bob"), issued, "the token validated is the one just issued");
    assert_eq!(sim.revoked_tokens("bob"), issued, "and its session was ended");
    let calls: Vec<(String, String)> = sim.requests("bob").iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    assert_eq!(
        calls[2..],
        [("GET".to_owned(), "/api/v1.0/users/@me/info".to_owned()), ("POST".to_owned(), "/api/logout".to_owned())]
    );
    let info = &sim.requests("bob")[2];
    assert_eq!(info.header("authorization"), Some(format!("Bearer {}", issued[0]).as_str()));
    assert_eq!(info.header("et-app-key"), Some(APP_KEY));

    // The revoked token no longer works.
    let r = http()
        .get(format!("{}/v1.0/users/@me/info", sim.base_url()))
        .header("et-app-key", APP_KEY)
        .bearer_auth(&issued[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), r#"{"Message":"Authorization has been denied for this request."}"#);
}

#[tokio::test]
async fn a_refused_token_fails_validation_and_a_failed_logout_does_not_fail_the_login() {
    let sim = simulator(vec![
        fault_account("refused", Fault::RejectTokens),
        fault_account("sticky", Fault::LogoutError),
        Account::new("slow", "pw"),
    ])
    .await;
    sim.update_account("slow", |a| a.delay = Some(Duration::from_millis(300)));

    let mut s = spec(&sim, "refused", "pw");
    etna(&mut s).validate = true;
    let o = login(&s).await;
    check(&o, ResultClass::ValidationFailed, Some(SUCCEEDED), etna::TOKEN_VALIDATION, etna::AUTHORIZATION_DENIED, 401);
    assert_eq!(o.reason_text, "Authorization has been denied for this request.");
    assert!(o.detail.contains("HTTP 401, the new token was refused"), "{}", o.detail);
    assert!(sim.validated_tokens("refused").is_empty());

    let mut s = spec(&sim, "sticky", "pw");
    etna(&mut s).validate = true;
    etna(&mut s).logout = true;
    let o = login(&s).await;
    check(&o, ResultClass::Success, Some(SUCCEEDED), etna::BASE_AUTHENTICATION, Reason::NONE, 200);
    let logout = o.logout.expect("logout attempted");
    assert!(!logout.ok && logout.status == 500, "{logout:?}");
    assert!(sim.revoked_tokens("sticky").is_empty());

    // The whole run shares one deadline: a login of 300 ms leaves too little for validation.
    let mut s = spec(&sim, "slow", "pw");
    etna(&mut s).validate = true;
    s.timeout = Duration::from_millis(450);
    let started = Instant::now();
    let o = login(&s).await;
    assert!(started.elapsed() < Duration::from_millis(450) + Duration::from_secs(1));
    check(&o, ResultClass::ValidationFailed, Some(SUCCEEDED), etna::TOKEN_VALIDATION, Reason::NONE, 0);
    assert!(o.detail.contains("deadline exceeded"), "{}", o.detail);

    // Without validate or logout, nothing but /token is called.
    let o = login(&spec(&sim, "sticky", "pw")).await;
    assert_eq!((o.summary.result, o.logout.is_none()), (ResultClass::Success, true));
    assert!(
        sim.requests("sticky").iter().filter(|r| r.path != "/api/token").count() == 2,
        "only the first run's calls"
    );
}

/// A TCP front for `target` that closes its first `drop_first` connections at once (a node
/// restarting behind a load balancer) and relays the others. Stops when dropped.
struct FlakyFront {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyFront {
    async fn start(target: std::net::SocketAddr, drop_first: usize) -> FlakyFront {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if n < drop_first {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        FlakyFront { addr, task }
    }
}

impl Drop for FlakyFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn retries_cover_connections_that_fail_before_any_answer_and_nothing_else() {
    let sim = simulator(vec![Account::new("alice", "pw"), fault_account("stall", Fault::Stall)]).await;
    let through = |front: &FlakyFront, user: &str, pw: &str, retries: u32| {
        let mut s = spec(&sim, user, pw);
        etna_target(&mut s).base_url = format!("http://{}/api", front.addr).parse().unwrap();
        s.retries = retries;
        s
    };

    // Two connections closed at once, two retries: the third attempt logs in.
    let front = FlakyFront::start(sim.addr(), 2).await;
    let o = login(&through(&front, "alice", "pw", 2)).await;
    check(&o, ResultClass::Success, Some(SUCCEEDED), etna::BASE_AUTHENTICATION, Reason::NONE, 200);
    assert_eq!(o.retries, 2);
    assert_eq!(o.steps.iter().map(|s| s.status).collect::<Vec<_>>(), [0, 0, 200]);
    assert_eq!(sim.stats("alice").logins, 1);

    // One retry is not enough for two closed connections.
    let front = FlakyFront::start(sim.addr(), 2).await;
    let o = login(&through(&front, "alice", "pw", 1)).await;
    assert_eq!((o.summary.result, o.retries), (ResultClass::ConnectError, 1), "{}", o.detail);

    // What the server said is never retried: a wrong password is one request.
    let front = FlakyFront::start(sim.addr(), 0).await;
    let before = sim.stats("alice").requests;
    let o = login(&through(&front, "alice", "wrong", 3)).await;
    assert_eq!((o.summary.result, o.retries), (ResultClass::AuthFailed, 0));
    assert_eq!(sim.stats("alice").requests, before + 1);

    // A refused port is retried, quickly, and still fails.
    let mut s = spec(&sim, "alice", "pw");
    etna_target(&mut s).base_url = format!("http://127.0.0.1:{}/api", closed_port()).parse().unwrap();
    s.retries = 2;
    let o = login(&s).await;
    assert_eq!((o.summary.result, o.retries), (ResultClass::ConnectError, 2), "{}", o.detail);
    assert!(o.duration < Duration::from_secs(1));

    // A server that accepts and never answers uses up the deadline: nothing is left to retry.
    let mut s = spec(&sim, "stall", "pw");
    s.timeout = Duration::from_millis(600);
    s.retries = 2;
    let started = Instant::now();
    let o = login(&s).await;
    assert_eq!((o.summary.result, o.retries), (ResultClass::Timeout, 0), "{}", o.detail);
    assert!(started.elapsed() < Duration::from_millis(600) + Duration::from_secs(1));
}

fn trusting(ca: &rustls::pki_types::CertificateDer<'static>) -> std::sync::Arc<authprobe::protocol::TlsSettings> {
    let mut tls = authprobe::protocol::TlsSettings::default();
    tls.roots = Some(vec![ca.clone()]);
    std::sync::Arc::new(tls)
}

/// HTTPS against the TLS simulator: the chain's earliest expiry and the version are reported,
/// the handshake is timed as its own phase, and every way trust can fail is a `tls_error`.
#[tokio::test]
async fn https_targets_report_expiry_version_and_phases_and_fail_on_untrusted_certificates() {
    let good = pki(&["127.0.0.1", "localhost"]);
    let sim = tls_simulator(vec![Account::new("alice", "pw")], &good).await;
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let mut s = spec(&sim, "alice", "pw");
    s.tls = trusting(&good.ca_der);
    let o = login(&s).await;
    check(&o, ResultClass::Success, Some(SUCCEEDED), etna::BASE_AUTHENTICATION, Reason::NONE, 200);
    let tls = o.tls.expect("TLS facts for an https target");
    assert_eq!(tls.version, Some("TLS 1.3"));
    assert_eq!(tls.cert_not_after_unix, Some(good.chain_not_after), "the CA in the chain expires first");
    let phases = o.phases.expect("phases");
    assert!(phases.tls > Duration::ZERO && phases.connect > Duration::ZERO, "{phases:?}");
    assert!(phases.processing.is_some() && phases.transfer.is_some(), "{phases:?}");
    assert_eq!(phases.resolve, Duration::ZERO, "an IP address needs no resolving");
    let total: Duration = phases.named().map(|(_, d)| d).sum();
    assert!(total <= o.duration, "{total:?} > {:?}", o.duration);

    // Through a name: resolving is timed too.
    etna_target(&mut s).base_url =
        etna_target(&mut s).base_url.as_str().replace("127.0.0.1", "localhost").parse().unwrap();
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::Success, "{}", o.detail);
    assert!(o.phases.unwrap().resolve > Duration::ZERO);

    // A CA we do not trust (the system's roots, or another CA).
    let other = pki(&["127.0.0.1"]);
    let mut s = spec(&sim, "alice", "pw");
    for tls in [std::sync::Arc::default(), trusting(&other.ca_der)] {
        s.tls = tls;
        let o = login(&s).await;
        assert_eq!(o.summary.result, ResultClass::TlsError, "{}", o.detail);
        assert_eq!(o.tls.unwrap().cert_not_after_unix, Some(good.chain_not_after), "expiry noted even so");
    }
    // insecure_skip_verify accepts it.
    let mut insecure = authprobe::protocol::TlsSettings::default();
    insecure.insecure_skip_verify = true;
    s.tls = std::sync::Arc::new(insecure);
    assert_eq!(login(&s).await.summary.result, ResultClass::Success);

    // A certificate for another name: refused, unless server_name says that name is expected.
    let wrong_name = pki(&["api.other.example"]);
    let sim2 = tls_simulator(vec![Account::new("alice", "pw")], &wrong_name).await;
    let mut s = spec(&sim2, "alice", "pw");
    s.tls = trusting(&wrong_name.ca_der);
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::TlsError, "{}", o.detail);
    assert!(o.detail.contains("certificate"), "{}", o.detail);
    let mut named = authprobe::protocol::TlsSettings::default();
    named.roots = Some(vec![wrong_name.ca_der.clone()]);
    named.server_name = Some("api.other.example".try_into().unwrap());
    s.tls = std::sync::Arc::new(named);
    assert_eq!(login(&s).await.summary.result, ResultClass::Success);

    // TLS to a plain-HTTP port.
    let plain = simulator(vec![Account::new("alice", "pw")]).await;
    let mut s = spec(&plain, "alice", "pw");
    etna_target(&mut s).base_url = plain.base_url().replace("http://", "https://").parse().unwrap();
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::TlsError, "{}", o.detail);
    assert!(o.detail.contains("is the port plain HTTP?"), "{}", o.detail);
}

/// A server that demands a client certificate: refused without one, served with the one the
/// target's cert_file/key_file give.
#[tokio::test]
async fn client_certificates_are_presented_when_configured() {
    use rustls::pki_types::pem::PemObject as _;
    let pki = pki(&["127.0.0.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = authprobe::simulator::Simulator::serve_tls(
        Settings::new(&[APP_KEY], vec![Account::new("alice", "pw")]),
        listener,
        pki.server_with_client_auth.clone(),
    );
    let mut s = spec(&sim, "alice", "pw");
    s.tls = trusting(&pki.ca_der);
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::TlsError, "{}", o.detail);

    let mut tls = authprobe::protocol::TlsSettings::default();
    tls.roots = Some(vec![pki.ca_der.clone()]);
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(pki.client_pem.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.client_pem.1.as_bytes()).unwrap();
    tls.client_auth = Some((chain, key));
    s.tls = std::sync::Arc::new(tls);
    let o = login(&s).await;
    assert_eq!(o.summary.result, ResultClass::Success, "{}", o.detail);
}

/// The simulator over HTTPS presenting `chain` (leaf first) with `key`, limited to `versions`.
async fn sim_presenting(
    chain: &std::path::Path,
    key: &std::path::Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> authprobe::simulator::Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = Settings::new(&[APP_KEY], vec![Account::new("alice", "pw")]);
    authprobe::simulator::Simulator::serve_tls(settings, listener, common::openssl::server(chain, key, versions))
}

/// Certificates made by the openssl CLI the ways people make them, each presented by the
/// simulator and judged twice: by curl (`--cacert`), the reference, and by a login trusting
/// the same file through `ca_file`. The two agree on every one, and every refusal names its
/// cause. A self-signed certificate with openssl's default `CA:TRUE` is trusted when it is in
/// ca_file itself, while its name, validity and key usage are still checked.
#[tokio::test]
async fn openssl_made_certificates_get_the_result_curl_gives() {
    use common::openssl::{certs, curl_exit, Openssl};
    let o = Openssl::new();
    let here = "IP:127.0.0.1";
    let lab_default = o.self_signed("lab-default", "lab.example", here, &[]);
    let lab_leaf = o.self_signed("lab-leaf", "lab.example", here, &["-addext", "basicConstraints=critical,CA:FALSE"]);
    let client_only = o.self_signed("client-only", "lab.example", here, &["-addext", "extendedKeyUsage=clientAuth"]);
    let other_name = o.self_signed("other-name", "other.example", "DNS:other.example", &[]);
    let expired = o.expired("expired", "lab.example", here);
    let root = o.self_signed("root", "Lab Root CA", "DNS:ca.lab.example", &[]);
    let leaf = o.issued("leaf", "api.lab.example", here, &root, false);
    let issuing = o.issued("issuing", "Lab Issuing CA", "", &root, true);
    let deep_leaf = o.issued("deep-leaf", "api.lab.example", here, &issuing, false);
    let full_chain = o.bundle("deep-chain.pem", &[&deep_leaf.cert, &issuing.cert]);
    let several = o.bundle("several.pem", &[&root.cert, &lab_default.cert]);

    // (what, chain served, its key, ca_file, None for trusted or a word the refusal must have)
    let cases: Vec<(&str, &std::path::Path, &common::openssl::Made, &std::path::Path, Option<&str>)> = vec![
        ("self-signed, openssl's default CA:TRUE", &lab_default.cert, &lab_default, &lab_default.cert, None),
        ("self-signed, CA:FALSE", &lab_leaf.cert, &lab_leaf, &lab_leaf.cert, None),
        ("self-signed CA:TRUE among several CAs", &lab_default.cert, &lab_default, &several, None),
        ("a private CA's leaf", &leaf.cert, &leaf, &root.cert, None),
        ("a leaf with its intermediate", &full_chain, &deep_leaf, &root.cert, None),
        (
            "a leaf without its intermediate",
            &deep_leaf.cert,
            &deep_leaf,
            &root.cert,
            Some("an intermediate CA missing"),
        ),
        ("self-signed, expired", &expired.cert, &expired, &expired.cert, Some("expired")),
        ("self-signed for another name", &other_name.cert, &other_name, &other_name.cert, Some("not valid for name")),
        (
            "self-signed for clients only",
            &client_only.cert,
            &client_only,
            &client_only.cert,
            Some("does not allow a TLS server"),
        ),
        ("self-signed, not in ca_file", &lab_default.cert, &lab_default, &lab_leaf.cert, Some("self-signed")),
        (
            "a leaf of a CA not in ca_file",
            &leaf.cert,
            &leaf,
            &lab_default.cert,
            Some("neither in the target's ca_file"),
        ),
    ];
    for (what, chain, made, ca_file, refusal) in cases {
        let sim = sim_presenting(chain, &made.key, rustls::ALL_VERSIONS).await;
        let headers = [("Et-App-Key", APP_KEY), ("Username", "alice"), ("Password", "pw")];
        let curl = curl_exit(&sim.base_url(), ca_file, &headers).await;
        assert_eq!(curl == 0, refusal.is_none(), "{what}: curl exits {curl}");
        let mut tls = authprobe::protocol::TlsSettings::default();
        tls.roots = Some(certs(ca_file));
        let mut s = spec(&sim, "alice", "pw");
        s.tls = std::sync::Arc::new(tls);
        let o = login(&s).await;
        match refusal {
            None => assert_eq!(o.summary.result, ResultClass::Success, "{what}: {}", o.detail),
            Some(word) => {
                assert_eq!(o.summary.result, ResultClass::TlsError, "{what}: {}", o.detail);
                assert!(o.detail.contains(word), "{what}: {word:?} not in {:?}", o.detail);
            }
        }
    }
}

/// A server offering only TLS 1.2 or only TLS 1.3 is served in that version; one that shares no
/// version, or no cipher suite and key exchange, with rustls fails with a detail saying which.
#[tokio::test]
async fn tls_versions_and_key_exchanges_servers_offer() {
    use common::openssl::{certs, Openssl, SServer};
    let o = Openssl::new();
    let lab = o.self_signed("lab", "lab.example", "IP:127.0.0.1", &[]);
    for (versions, name) in [(&[&rustls::version::TLS12][..], "TLS 1.2"), (&[&rustls::version::TLS13][..], "TLS 1.3")] {
        let sim = sim_presenting(&lab.cert, &lab.key, versions).await;
        let mut tls = authprobe::protocol::TlsSettings::default();
        tls.roots = Some(certs(&lab.cert));
        let mut s = spec(&sim, "alice", "pw");
        s.tls = std::sync::Arc::new(tls);
        let o = login(&s).await;
        assert_eq!(o.summary.result, ResultClass::Success, "{name}: {}", o.detail);
        assert_eq!(o.tls.unwrap().version, Some(name));
    }

    let rsa = o.self_signed_rsa("rsa", "lab.example", "IP:127.0.0.1");
    let cases: [(&str, &common::openssl::Made, &[&str], &str); 4] = [
        ("TLS 1.1 only", &lab, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], "neither TLS 1.3 nor TLS 1.2"),
        ("RSA key exchange only", &rsa, &["-tls1_2", "-cipher", "AES128-GCM-SHA256"], "RSA or finite-field DHE"),
        ("finite-field DHE only", &rsa, &["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"], "finite-field DHE"),
        ("CBC ciphers only", &lab, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"], "no CBC"),
    ];
    for (what, made, args, word) in cases {
        let server = SServer::start(made, args);
        let mut tls = authprobe::protocol::TlsSettings::default();
        tls.roots = Some(certs(&made.cert));
        let mut s = spec_at(&format!("https://127.0.0.1:{}/api", server.port), "alice", "pw");
        s.tls = std::sync::Arc::new(tls);
        let o = login(&s).await;
        assert_eq!(o.summary.result, ResultClass::TlsError, "{what}: {}", o.detail);
        assert!(o.detail.contains(word), "{what}: {word:?} not in {:?}", o.detail);
    }
}

/// A server that answers every connection with `raw` (whatever the request) and then closes it:
/// for framings the simulator does not produce. Stops when the returned task is dropped.
async fn canned(raw: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    let raw = std::sync::Arc::new(raw);
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let raw = raw.clone();
            tokio::spawn(async move {
                // Read the request head (bodiless POST), then answer and close.
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(&raw).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (base, task)
}

/// Framings and bodies real servers send, over real sockets: chunked bodies (split anywhere),
/// HTTP/1.0 answers closed without a length, JSON under another Content-Type, a byte order mark,
/// camelCase keys. A body cut short by the connection is a connection failure, not an answer.
#[tokio::test]
async fn framings_and_bodies_real_servers_send() {
    use ResultClass::*;
    let ok = r#"{"State":"Succeeded","Token":"t"}"#;
    let chunked = |parts: &[&str], end: bool| {
        let mut raw =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
        for p in parts {
            raw.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
        }
        if end {
            raw.push_str("0\r\n\r\n");
        }
        raw.into_bytes()
    };
    let head =
        |first: &str, headers: &str, body: &[u8]| [format!("{first}\r\n{headers}\r\n").as_bytes(), body].concat();
    let cases: Vec<(&str, Vec<u8>, ResultClass, u16)> = vec![
        ("chunked, one chunk", chunked(&[ok], true), Success, 200),
        (
            "chunked, split inside a key",
            chunked(&[r#"{"Sta"#, r#"te":"Succeeded","#, r#""Token":"t"}"#], true),
            Success,
            200,
        ),
        (
            "chunked, one byte a chunk",
            chunked(&ok.split("").filter(|s| !s.is_empty()).collect::<Vec<_>>(), true),
            Success,
            200,
        ),
        ("chunked, cut before the last chunk", chunked(&[r#"{"State":"#], false), ConnectError, 200),
        (
            "HTTP/1.0, closed without a length",
            head("HTTP/1.0 200 OK", "Content-Type: application/json\r\n", ok.as_bytes()),
            Success,
            200,
        ),
        (
            "HTTP/1.1, Connection: close without a length",
            head("HTTP/1.1 200 OK", "Connection: close\r\n", ok.as_bytes()),
            Success,
            200,
        ),
        (
            "HTTP/1.0 failure, closed without a length",
            head("HTTP/1.0 401 Unauthorized", "", br#"{"State":"Failed","Reason":"Invalid credentials"}"#),
            AuthFailed,
            401,
        ),
        (
            "Content-Length longer than the body",
            head("HTTP/1.1 200 OK", "Content-Length: 500\r\n", ok.as_bytes()),
            ConnectError,
            200,
        ),
        (
            "text/plain JSON",
            head(
                "HTTP/1.1 200 OK",
                &format!("Content-Type: text/plain\r\nContent-Length: {}\r\n", ok.len()),
                ok.as_bytes(),
            ),
            Success,
            200,
        ),
        ("byte order mark, chunked", chunked(&[std::str::from_utf8(b"\xEF\xBB\xBF").unwrap(), ok], true), Success, 200),
        (
            "camelCase keys",
            head(
                "HTTP/1.1 200 OK",
                "Content-Type: application/json; charset=utf-8\r\n",
                br#"{"state":"Succeeded","token":"t"}"#,
            ),
            Success,
            200,
        ),
        (
            "garbage before the JSON",
            head("HTTP/1.0 200 OK", "", format!("while(1);{ok}").as_bytes()),
            InvalidResponse,
            200,
        ),
    ];
    for (what, raw, want, status) in cases {
        let (base, task) = canned(raw).await;
        let o = login(&spec_at(&base, "alice", "pw")).await;
        task.abort();
        assert_eq!((o.summary.result, o.summary.status), (want, status), "{what}: {}", o.detail);
    }
}
