//! Interactive logins (the authorization code grant through the identity provider's own pages)
//! over real HTTP on 127.0.0.1: against the simulator's login pages, every reason with its class
//! and step, HTTPS with a self-signed CA, the one-time code's replay guard and the secrets kept
//! out of every output; against oidc-provider's interaction pages (one-page and identifier-first
//! login, OTP, consent, logout) and django-oauth-toolkit behind Django's own login view. Also the
//! OAuth 2.0 grants' refusals without an error body, `slow_down`, and revocation of every token
//! a run received whatever its outcome.

mod common;

use std::time::{Duration, Instant};

use authprobe::protocol::oauth2::interactive::page::Hints;
use authprobe::protocol::oauth2::interactive::totp::Totp;
use authprobe::protocol::oauth2::interactive::{Consent, Interactive};
use authprobe::protocol::oauth2::names::*;
use authprobe::protocol::oauth2::{Grant, Validate};
use authprobe::protocol::{Lockout, LoginSpec, Outcome, Prober, Reason, ResultClass, Step};
use authprobe::simulator::oauth2::{ClientFault, LoginStyle, SimClient};
use authprobe::simulator::{Account, Simulator};
use common::*;

/// The redirect URI every test client registers.
const REDIRECT: &str = "https://app.authprobe.test/callback";
/// Distinctive secrets, searched for in every output.
const USER_PW: &str = "pw-Interactive-Qx71";
const OTP_PASSWORD: &str = "pw-Otp-User-Wz38";
/// The simulator's OTP users' TOTP secrets (base32), distinctive too. One per test: the replay
/// guard is process-wide, and tests run side by side.
const TOTP_SECRET: &str = "KNSWG4TFOREW45DFOJQWG5DJOZSVIT2Q";
const HTTPS_TOTP: &str = "KNSWG4TFOREW45DFOJQWG5DJOZSVIT2R";
const LEAK_TOTP: &str = "KNSWG4TFOREW45DFOJQWG5DJOZSVIT2S";

fn sim_client(id: &str, login: LoginStyle, consent: bool, fault: ClientFault) -> SimClient {
    let mut c = SimClient::new(id, CLIENT_SECRET, &["authorization_code", "refresh_token"]);
    c.redirect_uris = vec![REDIRECT.to_owned()];
    c.login = login;
    c.consent = consent;
    c.fault = fault;
    c
}

fn accounts() -> Vec<Account> {
    let mut otp = Account::new("otp-user", OTP_PASSWORD);
    otp.totp_secret = Some(TOTP_SECRET.into());
    let mut fast = Account::new("fast-otp-user", OTP_PASSWORD);
    // A 2 s period, so that the replay guard's wait stays short.
    fast.totp_secret = Some(format!("otpauth://totp/sim:fast?secret={TOTP_SECRET}&period=2").into());
    let with = |name: &str, secret: &str| {
        let mut a = Account::new(name, OTP_PASSWORD);
        a.totp_secret = Some(secret.into());
        a
    };
    vec![Account::new("probe-user", USER_PW), otp, fast, with("otp-https", HTTPS_TOTP), with("otp-leak", LEAK_TOTP)]
}

async fn world(clients: Vec<SimClient>) -> Simulator {
    oauth2_simulator(clients, accounts()).await
}

/// An interactive login at `issuer` for `client_id`, consent approved, scope `openid`.
fn interactive(issuer: &str, client_id: &str, user: &str, password: &str, totp: Option<&str>) -> LoginSpec {
    let mut s = oauth2_spec(oauth2_target(issuer, client_id));
    let o = oauth2(&mut s);
    o.scope = Some("openid".into());
    o.grant = Grant::AuthorizationCode(Box::new(Interactive {
        username: user.to_owned(),
        password: password.into(),
        totp: totp.map(|t| Totp::parse(t).expect("a TOTP secret")),
        redirect_uri: REDIRECT.parse().unwrap(),
        consent: Consent::Approve,
        logout: false,
        hints: Hints::default(),
        allowed_origins: Vec::new(),
    }));
    s
}

fn login_of(spec: &mut LoginSpec) -> &mut Interactive {
    match &mut oauth2(spec).grant {
        Grant::AuthorizationCode(i) => i,
        _ => panic!("not interactive"),
    }
}

async fn run(spec: &LoginSpec) -> Outcome {
    Prober::new().unwrap().login(spec).await
}

#[track_caller]
fn check(o: &Outcome, result: ResultClass, step: Step, reason: Reason) {
    assert_eq!((o.summary.result, o.summary.step, o.summary.reason), (result, step, reason), "detail: {}", o.detail);
}

fn steps(o: &Outcome) -> Vec<&'static str> {
    o.steps.iter().map(|s| s.step.as_str()).collect()
}

#[tokio::test]
async fn one_page_login_with_consent_jwt_revocation_and_logout() {
    let sim = world(vec![sim_client("web", LoginStyle::OnePage, true, ClientFault::None)]).await;
    let mut s = interactive(&sim.issuer().unwrap(), "web", "probe-user", USER_PW, None);
    oauth2(&mut s).validate = Validate::Jwt;
    oauth2(&mut s).revoke = true;
    login_of(&mut s).logout = true;
    let o = run(&s).await;
    check(&o, ResultClass::Success, TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(
        steps(&o),
        [
            "Discovery",
            "JWKS",
            "Authorize",
            "Authorize",
            "Password",
            "Consent",
            "Token",
            "RefreshRevocation",
            "Revocation",
            "Logout",
            "Logout"
        ],
        "{}",
        o.detail
    );
    let end = o.logout.as_ref().expect("the session's end is recorded");
    assert!(end.ok, "{}", end.detail);
    let stats = sim.oauth2_stats();
    assert_eq!((stats.logins, stats.logouts, stats.revocations), (1, 1, 2), "{stats:?}");
}

#[tokio::test]
async fn identifier_first_with_a_one_time_code() {
    let sim = world(vec![sim_client("idf", LoginStyle::IdentifierFirst, false, ClientFault::None)]).await;
    let s = interactive(&sim.issuer().unwrap(), "idf", "otp-user", OTP_PASSWORD, Some(TOTP_SECRET));
    let o = run(&s).await;
    check(&o, ResultClass::Success, TOKEN, Reason::NONE);
    assert_eq!(steps(&o), ["Discovery", "Authorize", "Authorize", "Username", "Password", "OTP", "Token"]);
    assert_eq!(o.summary.status, 200);
}

#[tokio::test]
async fn a_time_step_is_never_sent_twice() {
    let sim = world(vec![sim_client("web", LoginStyle::OnePage, false, ClientFault::None)]).await;
    let uri = format!("otpauth://totp/sim:fast?secret={TOTP_SECRET}&period=2");
    let s = interactive(&sim.issuer().unwrap(), "web", "fast-otp-user", OTP_PASSWORD, Some(&uri));
    let prober = Prober::new().unwrap();
    let started = Instant::now();
    for i in 0..3 {
        let o = prober.login(&s).await;
        check(&o, ResultClass::Success, TOKEN, Reason::NONE);
        assert!(i == 0 || o.detail.is_empty() || !o.detail.contains("refused"), "{}", o.detail);
    }
    // Three codes of three steps: the third needs at least the third step, 2 s on.
    assert!(started.elapsed() >= Duration::from_millis(2000) || started.elapsed() < Duration::from_secs(7));
    assert_eq!(sim.oauth2_stats().logins, 3, "each code accepted: none replayed");
}

#[tokio::test]
async fn each_refusal_has_its_class_step_and_reason() {
    let clients = vec![
        sim_client("web", LoginStyle::OnePage, true, ClientFault::None),
        sim_client("idf", LoginStyle::IdentifierFirst, false, ClientFault::None),
        sim_client("timeout", LoginStyle::OnePage, true, ClientFault::SessionTimeout),
        sim_client("changed", LoginStyle::OnePage, false, ClientFault::PageChanged),
        sim_client("foreign", LoginStyle::OnePage, false, ClientFault::ForeignForm),
        sim_client("state", LoginStyle::OnePage, false, ClientFault::StateMismatch),
        sim_client("iss", LoginStyle::OnePage, false, ClientFault::WrongIss),
        sim_client("loop", LoginStyle::OnePage, false, ClientFault::RedirectLoop),
        sim_client("nonce", LoginStyle::OnePage, false, ClientFault::WrongNonce),
        sim_client("cookie", LoginStyle::OnePage, false, ClientFault::LostCookie),
        sim_client("dex", LoginStyle::OnePage, false, ClientFault::RefusalWith401),
        {
            // Denied after the consent was approved.
            let mut c = sim_client("denied", LoginStyle::OnePage, true, ClientFault::None);
            c.authorize_error = Some("access_denied".into());
            c
        },
    ];
    let mut with_errors = clients;
    for code in [
        "access_denied",
        "login_required",
        "interaction_required",
        "server_error",
        "temporarily_unavailable",
        "invalid_scope",
        "weird_error",
    ] {
        let mut c = sim_client(code, LoginStyle::OnePage, false, ClientFault::None);
        c.authorize_error = Some(code.to_owned());
        with_errors.push(c);
    }
    let sim = world(with_errors).await;
    // The same world over HTTPS with a self-signed CA: every case runs on both.
    let pki = pki(&["127.0.0.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_sim = sim.serve_tls_too(listener, pki.server.clone());
    for scheme in ["http", "https"] {
        let (issuer, roots) = match scheme {
            "http" => (sim.issuer().unwrap(), None),
            _ => (tls_sim.issuer().unwrap(), Some(vec![pki.ca_der.clone()])),
        };
        // A wrong TOTP secret of its own per pass: the replay guard would hold the second.
        let wrong_totp =
            if scheme == "http" { "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" } else { "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43V" };
        refusals(&sim, &issuer, roots, wrong_totp).await;
    }
}

async fn refusals(
    sim: &Simulator,
    issuer: &str,
    roots: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
    wrong_totp: &str,
) {
    let at = |client: &str, user: &str, pw: &str, totp: Option<&str>| {
        let mut s = interactive(issuer, client, user, pw, totp);
        let mut tls = authprobe::protocol::TlsSettings::default();
        tls.roots = roots.clone();
        s.tls = std::sync::Arc::new(tls);
        s
    };
    use ResultClass::*;
    // (spec, class, step, reason, reason_text it shows)
    let mut consent_fail = at("web", "probe-user", USER_PW, None);
    login_of(&mut consent_fail).consent = Consent::Fail;
    let mut nonce = at("nonce", "probe-user", USER_PW, None);
    oauth2(&mut nonce).validate = Validate::Jwt;
    let cases: Vec<(LoginSpec, ResultClass, Step, Reason, &str)> = vec![
        (
            at("web", "probe-user", "wrong-Pw", None),
            AuthFailed,
            PASSWORD,
            INVALID_CREDENTIALS,
            "Invalid username or password.",
        ),
        (at("idf", "nobody", USER_PW, None), AuthFailed, USERNAME, INVALID_CREDENTIALS, "Invalid username."),
        (
            at("idf", "probe-user", "wrong-Pw", None),
            AuthFailed,
            PASSWORD,
            INVALID_CREDENTIALS,
            "Invalid username or password.",
        ),
        (
            at("web", "otp-user", OTP_PASSWORD, Some(wrong_totp)),
            AuthFailed,
            OTP,
            INVALID_OTP,
            "Invalid authenticator code.",
        ),
        (at("web", "otp-user", OTP_PASSWORD, None), UnexpectedStep, PASSWORD, LOGIN_FORM_NOT_FOUND, ""),
        (consent_fail, UnexpectedStep, PASSWORD, CONSENT_REQUIRED, ""),
        (
            at("timeout", "probe-user", USER_PW, None),
            UnexpectedStep,
            CONSENT,
            SESSION_EXPIRED,
            "Your login attempt timed out. Login will start from the beginning.",
        ),
        (at("changed", "probe-user", USER_PW, None), UnexpectedStep, AUTHORIZE, LOGIN_FORM_NOT_FOUND, ""),
        (
            at("cookie", "probe-user", USER_PW, None),
            UnexpectedStep,
            PASSWORD,
            SESSION_EXPIRED,
            "Cookie not found. Please make sure cookies are enabled in your browser.",
        ),
        (at("denied", "probe-user", USER_PW, None), UnexpectedStep, CONSENT, CONSENT_REQUIRED, "as configured"),
        (at("foreign", "probe-user", USER_PW, None), InvalidResponse, PASSWORD, FOREIGN_ORIGIN, ""),
        (at("state", "probe-user", USER_PW, None), InvalidResponse, PASSWORD, STATE_MISMATCH, ""),
        (at("iss", "probe-user", USER_PW, None), InvalidResponse, PASSWORD, WRONG_ISSUER, ""),
        (at("loop", "probe-user", USER_PW, None), StepLimit, AUTHORIZE, TOO_MANY_PAGES, ""),
        (nonce, ValidationFailed, TOKEN_VALIDATION, NONCE_MISMATCH, ""),
        (at("access_denied", "probe-user", USER_PW, None), AuthFailed, PASSWORD, ACCESS_DENIED, "as configured"),
        (at("login_required", "probe-user", USER_PW, None), AuthFailed, PASSWORD, LOGIN_REQUIRED, "as configured"),
        (
            at("interaction_required", "probe-user", USER_PW, None),
            AuthFailed,
            PASSWORD,
            INTERACTION_REQUIRED,
            "as configured",
        ),
        (at("server_error", "probe-user", USER_PW, None), HttpError, PASSWORD, SERVER_ERROR, "as configured"),
        (
            at("temporarily_unavailable", "probe-user", USER_PW, None),
            RateLimited,
            PASSWORD,
            TEMPORARILY_UNAVAILABLE,
            "as configured",
        ),
        (at("invalid_scope", "probe-user", USER_PW, None), ClientRejected, PASSWORD, INVALID_SCOPE, "as configured"),
        (at("weird_error", "probe-user", USER_PW, None), ClientRejected, PASSWORD, Reason::OTHER, "as configured"),
    ];
    let logins_before = sim.oauth2_stats().logins;
    for (spec, class, step, reason, text) in cases {
        let o = run(&spec).await;
        check(&o, class, step, reason);
        assert_eq!(o.reason_text, text, "{reason:?}: {}", o.detail);
        // The guard counts a refused password or code, nothing else.
        let strikes = matches!(reason, INVALID_CREDENTIALS | INVALID_OTP);
        assert_eq!(o.lockout == Lockout::Strike, strikes, "{reason:?}");
    }
    // state, iss and nonce: the configured errors are answered before a code is made.
    assert_eq!(sim.oauth2_stats().logins - logins_before, 3, "the logins that reached the redirect URI ({issuer})");
    // A form bound elsewhere sent nothing there (it could not have: the origin does not exist),
    // and said so.
    let o = run(&at("foreign", "probe-user", USER_PW, None)).await;
    assert!(o.detail.contains("https://login.elsewhere.test") && o.detail.contains("nothing was sent"), "{}", o.detail);
}

#[tokio::test]
async fn over_https_with_a_self_signed_ca() {
    let pki = pki(&["127.0.0.1"]);
    let mut settings = authprobe::simulator::Settings::new(&[APP_KEY], accounts());
    settings.oauth2 = Some(authprobe::simulator::oauth2::OAuth2Settings::new(vec![sim_client(
        "web",
        LoginStyle::IdentifierFirst,
        true,
        ClientFault::None,
    )]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::serve_tls(settings, listener, pki.server.clone());
    let issuer = sim.issuer().unwrap();
    assert!(issuer.starts_with("https://"), "{issuer}");
    let mut s = interactive(&issuer, "web", "otp-https", OTP_PASSWORD, Some(HTTPS_TOTP));
    let mut tls = authprobe::protocol::TlsSettings::default();
    tls.roots = Some(vec![pki.ca_der.clone()]);
    s.tls = std::sync::Arc::new(tls);
    oauth2(&mut s).validate = Validate::Jwt;
    let o = run(&s).await;
    check(&o, ResultClass::Success, TOKEN_VALIDATION, Reason::NONE);
    // Without the CA, the first request fails on the certificate (discovery is cached by now).
    s.tls = Default::default();
    check(&run(&s).await, ResultClass::TlsError, AUTHORIZE, Reason::NONE);
}

#[tokio::test]
async fn no_secret_cookie_or_code_in_outcome_trace_or_debug() {
    let sim = world(vec![sim_client("web", LoginStyle::OnePage, true, ClientFault::None)]).await;
    let mut s = interactive(&sim.issuer().unwrap(), "web", "otp-leak", OTP_PASSWORD, Some(LEAK_TOTP));
    oauth2(&mut s).validate = Validate::Jwt;
    login_of(&mut s).logout = true;
    let (o, trace) = Prober::new().unwrap().login_traced(&s).await;
    check(&o, ResultClass::Success, TOKEN_VALIDATION, Reason::NONE);
    let text = format!("{}\n{}\n{:?}\n{:?}", serde_json::to_string(&o).unwrap(), trace.render(), o, s);
    for secret in [CLIENT_SECRET, OTP_PASSWORD, LEAK_TOTP] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    // Every token, code and assertion the server issued.
    for issued in sim.oauth2_secrets_seen() {
        assert!(!text.contains(&issued), "an issued value leaked:\n{text}");
    }
    // The code sent: this step's and its neighbours'.
    let totp = Totp::parse(LEAK_TOTP).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for step in totp.step_at(now).saturating_sub(2)..=totp.step_at(now) + 1 {
        use secrecy::ExposeSecret as _;
        let code = totp.code(step);
        assert!(!text.contains(&format!("otp={}", code.expose_secret())), "a code leaked:\n{text}");
    }
    let rendered = trace.render();
    // Query values redacted but OAuth's public parameters; cookies by name; form values redacted.
    assert!(rendered.contains("response_type=code&client_id=web&redirect_uri="), "{rendered}");
    assert!(rendered.contains("state=<redacted>") && rendered.contains("nonce=<redacted>"), "{rendered}");
    assert!(rendered.contains("code_challenge=<redacted>&code_challenge_method=S256"), "{rendered}");
    assert!(rendered.contains("> cookie: SIM_LOGIN=<redacted>"), "{rendered}");
    assert!(rendered.contains("< set-cookie: SIM_SESSION=<redacted>"), "{rendered}");
    assert!(rendered.contains("> (form) username=<redacted>&password=<redacted>"), "{rendered}");
    assert!(rendered.contains("callback?code=<redacted>&state=<redacted>&iss="), "{rendered}");
    // What is not secret stays readable: the steps, the client id, the scope.
    for shown in ["(Authorize)", "(Consent)", "client_id=web", "scope=openid"] {
        assert!(rendered.contains(shown), "{shown} redacted:\n{rendered}");
    }
    assert!(!rendered.contains("session_code=") || rendered.contains("session_code=<redacted>"), "{rendered}");
}

// ------------------------------------------------------------------------------------------
// The OAuth 2.0 grants against servers that refuse without an error body, throttle with one,
// and a run's tokens revoked whatever its outcome.

#[tokio::test]
async fn bare_refusals_and_slow_down_for_every_grant() {
    let mut clients = Vec::new();
    for (id, fault) in [("bare", ClientFault::BareRefusal), ("slow", ClientFault::SlowDown)] {
        let mut c = sim_client(id, LoginStyle::OnePage, false, fault);
        c.grants = Some(vec!["client_credentials".into(), "password".into(), "authorization_code".into()]);
        clients.push(c);
    }
    let sim = world(clients).await;
    let issuer = sim.issuer().unwrap();
    for id in ["bare", "slow"] {
        let credentials = oauth2_spec(oauth2_target(&issuer, id));
        let mut password = oauth2_spec(oauth2_target(&issuer, id));
        oauth2(&mut password).grant = Grant::Password { username: "probe-user".into(), password: USER_PW.into() };
        let code = interactive(&issuer, id, "probe-user", USER_PW, None);
        // The guard counts a refusal of the credentials a token request sends; an interactive
        // login's password went to the pages, and its token request holds a code.
        for (spec, strike) in [(credentials, Lockout::Strike), (password, Lockout::Strike), (code, Lockout::Neutral)] {
            let o = run(&spec).await;
            if id == "bare" {
                check(&o, ResultClass::AuthFailed, TOKEN, REFUSED);
                assert_eq!((o.summary.status, o.lockout), (401, strike), "{}", o.detail);
            } else {
                check(&o, ResultClass::RateLimited, TOKEN, Reason::OTHER);
                assert_eq!(o.reason_text, "too many requests");
                assert_eq!((o.summary.status, o.lockout), (429, Lockout::Throttle), "{}", o.detail);
            }
        }
    }
}

/// Whether the simulator still takes `token`: a refresh token is redeemed, an access token
/// introspected.
async fn still_active(issuer: &str, client: &str, token: &str) -> bool {
    let http = http();
    let (url, form) = if token.starts_with("simrt-") {
        (format!("{issuer}/token"), vec![("grant_type", "refresh_token"), ("refresh_token", token)])
    } else {
        (format!("{issuer}/introspect"), vec![("token", token)])
    };
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let answer = http
        .post(url)
        .basic_auth(client, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap_or_default();
    status == 200 && (body.get("access_token").is_some() || body["active"] == true)
}

#[tokio::test]
async fn revoke_ends_every_token_a_run_received_whatever_its_outcome() {
    let mut app = SimClient::new("app", CLIENT_SECRET, &["password", "refresh_token", "authorization_code"]);
    app.redirect_uris = vec![REDIRECT.to_owned()];
    let mut audience = app.clone();
    audience.grants = Some(vec!["password".into(), "refresh_token".into(), "client_credentials".into()]);
    audience.client_id = "aud".into();
    audience.fault = ClientFault::WrongAudience;
    let mut nonce = app.clone();
    nonce.client_id = "nonce".into();
    nonce.fault = ClientFault::WrongNonce;
    let sim = world(vec![app, audience, nonce]).await;
    let issuer = sim.issuer().unwrap();
    let password = |client: &str| {
        let mut s = oauth2_spec(oauth2_target(&issuer, client));
        let o = oauth2(&mut s);
        o.grant = Grant::Password { username: "probe-user".into(), password: USER_PW.into() };
        o.scope = Some("openid".into());
        o.refresh = true;
        o.revoke = true;
        s
    };
    let mut jwt_audience = password("aud");
    oauth2(&mut jwt_audience).validate = Validate::Jwt;
    let mut code_nonce = interactive(&issuer, "nonce", "probe-user", USER_PW, None);
    oauth2(&mut code_nonce).validate = Validate::Jwt;
    oauth2(&mut code_nonce).revoke = true;
    let mut code_ok = interactive(&issuer, "app", "probe-user", USER_PW, None);
    oauth2(&mut code_ok).refresh = true;
    oauth2(&mut code_ok).revoke = true;
    // client_credentials, its token for another audience: validation fails, the token goes.
    let mut service = oauth2_spec(oauth2_target(&issuer, "aud"));
    oauth2(&mut service).validate = Validate::Jwt;
    oauth2(&mut service).revoke = true;
    // (the run, its client, its result, tokens received: access, refresh and ID token, twice
    // with a refresh)
    let cases = [
        (password("app"), "app", ResultClass::Success, 6),
        (jwt_audience, "aud", ResultClass::ValidationFailed, 6),
        (code_nonce, "nonce", ResultClass::ValidationFailed, 3),
        (code_ok, "app", ResultClass::Success, 6),
        (service, "aud", ResultClass::ValidationFailed, 1),
    ];
    for (spec, client, class, expected) in cases {
        let before = sim.oauth2_secrets_seen().len();
        let o = run(&spec).await;
        assert_eq!(o.summary.result, class, "{}", o.detail);
        let end = o.logout.as_ref().expect("revocation ran");
        assert!(end.ok, "{}", end.detail);
        let received: Vec<String> = sim.oauth2_secrets_seen()[before..]
            .iter()
            .filter(|t| t.starts_with("simrt-") || t.starts_with("eyJ"))
            .cloned()
            .collect();
        assert_eq!(received.len(), expected, "{received:?}");
        for token in received {
            assert!(!still_active(&issuer, client, &token).await, "a token of a {class:?} run is still active");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Against oidc-provider's interaction pages (tests/oidc-provider/server.mjs).

use common::oidc::{self, OidcProvider, Options};

fn at_idp(p: &OidcProvider, client: &str, user: &str, password: &str, totp: Option<&str>) -> LoginSpec {
    let mut target = oauth2_target(&p.issuer, client);
    target.client_secret = Some(oidc::SECRET.into());
    if client == oidc::PUBLIC_CLIENT {
        target.client_secret = None;
        target.client_auth = authprobe::protocol::oauth2::ClientAuth::None;
    }
    let mut s = oauth2_spec(target);
    s.timeout = Duration::from_secs(10);
    let o = oauth2(&mut s);
    o.scope = Some("openid api".into());
    o.grant = Grant::AuthorizationCode(Box::new(Interactive {
        username: user.to_owned(),
        password: password.into(),
        totp: totp.map(|t| Totp::parse(t).unwrap()),
        redirect_uri: oidc::REDIRECT_URI.parse().unwrap(),
        consent: Consent::Approve,
        logout: false,
        hints: Hints::default(),
        allowed_origins: Vec::new(),
    }));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_interaction_pages() {
    let p = OidcProvider::start(Options::default()).await;
    use ResultClass::*;
    // One page, consent, the ID token checked, logout through its confirmation page.
    let mut s = at_idp(&p, oidc::WEB_CLIENT, oidc::USER, oidc::USER_PASSWORD, None);
    oauth2(&mut s).validate = Validate::Jwt;
    login_of(&mut s).logout = true;
    let o = run(&s).await;
    check(&o, Success, TOKEN_VALIDATION, Reason::NONE);
    assert!(steps(&o).contains(&"Consent") && steps(&o).contains(&"Logout"), "{:?}", steps(&o));
    let end = o.logout.as_ref().unwrap();
    assert!(end.ok, "{}", end.detail);
    // Identifier-first with a one-time code of its own TOTP implementation. Its interaction ids
    // sit in the pages' paths and in a cookie: the trace shows neither.
    let s = at_idp(&p, oidc::IDFIRST_CLIENT, oidc::OTP_USER, oidc::OTP_PASSWORD, Some(oidc::TOTP_SECRET));
    let (o, trace) = Prober::new().unwrap().login_traced(&s).await;
    let rendered = trace.render();
    assert!(rendered.contains("/interaction/<redacted>/password"), "{rendered}");
    assert!(rendered.contains("> cookie: _interaction=<redacted>"), "{rendered}");
    for (i, _) in rendered.match_indices("/interaction/") {
        assert!(
            rendered[i..].starts_with("/interaction/<redacted>"),
            "an interaction id shown: {}",
            &rendered[i..i + 40]
        );
    }
    check(&o, Success, TOKEN, Reason::NONE);
    let seen = steps(&o);
    for step in ["Authorize", "Username", "Password", "OTP", "Consent", "Token"] {
        assert!(seen.contains(&step), "{step} missing from {seen:?}");
    }
    // A public client, no consent page.
    let o = run(&at_idp(&p, oidc::PUBLIC_CLIENT, oidc::USER, oidc::USER_PASSWORD, None)).await;
    check(&o, Success, TOKEN, Reason::NONE);
    assert!(!steps(&o).contains(&"Consent"), "{:?}", steps(&o));
    // Refusals, re-rendered with 200.
    let o = run(&at_idp(&p, oidc::WEB_CLIENT, oidc::USER, "wrong-Pw", None)).await;
    check(&o, AuthFailed, PASSWORD, INVALID_CREDENTIALS);
    assert_eq!(o.reason_text, "Invalid username or password.");
    let o = run(&at_idp(&p, oidc::IDFIRST_CLIENT, "nobody", "x", None)).await;
    check(&o, AuthFailed, USERNAME, INVALID_CREDENTIALS);
    assert_eq!(o.reason_text, "We could not find that account.");
    let o = run(&at_idp(
        &p,
        oidc::IDFIRST_CLIENT,
        oidc::OTP_USER,
        oidc::OTP_PASSWORD,
        Some("MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"),
    ))
    .await;
    check(&o, AuthFailed, OTP, INVALID_OTP);
    assert_eq!(o.reason_text, "Invalid authenticator code.");
    let mut fail = at_idp(&p, oidc::WEB_CLIENT, oidc::USER, oidc::USER_PASSWORD, None);
    login_of(&mut fail).consent = Consent::Fail;
    check(&run(&fail).await, UnexpectedStep, PASSWORD, CONSENT_REQUIRED);
    p.stop().await;
}

// ------------------------------------------------------------------------------------------
// Against django-oauth-toolkit behind Django's own login view (tests/django-oauth).

use common::django::{self, DjangoOauth};

fn at_django(d: &DjangoOauth, client: &str, password: &str) -> LoginSpec {
    let mut target = oauth2_target(&d.issuer, client);
    target.client_secret = Some(django::CLIENT_SECRET.into());
    let mut s = oauth2_spec(target);
    s.timeout = Duration::from_secs(15);
    let o = oauth2(&mut s);
    o.scope = Some(django::SCOPES.into());
    o.grant = Grant::AuthorizationCode(Box::new(Interactive {
        username: django::USER.to_owned(),
        password: password.into(),
        totp: None,
        redirect_uri: django::REDIRECT_URI.parse().unwrap(),
        consent: Consent::Approve,
        logout: false,
        hints: Hints::default(),
        allowed_origins: Vec::new(),
    }));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_oauth_toolkit_behind_djangos_login_view() {
    let d = DjangoOauth::start().await;
    use ResultClass::*;
    let mut s = at_django(&d, django::CLIENT_ID, django::USER_PASSWORD);
    oauth2(&mut s).validate = Validate::Jwt;
    login_of(&mut s).logout = true;
    let o = run(&s).await;
    check(&o, Success, TOKEN_VALIDATION, Reason::NONE);
    let seen = steps(&o);
    for step in ["Authorize", "Password", "Consent", "Token", "Logout"] {
        assert!(seen.contains(&step), "{step} missing from {seen:?}");
    }
    let end = o.logout.as_ref().unwrap();
    assert!(end.ok, "{}", end.detail);
    // The trusted client skips the consent page; userinfo checks its token.
    let mut s = at_django(&d, django::TRUSTED_CLIENT_ID, django::USER_PASSWORD);
    oauth2(&mut s).validate = Validate::Userinfo;
    let o = run(&s).await;
    check(&o, Success, TOKEN_VALIDATION, Reason::NONE);
    assert!(!steps(&o).contains(&"Consent"));
    let o = run(&at_django(&d, django::CLIENT_ID, "wrong-Pw")).await;
    check(&o, AuthFailed, PASSWORD, INVALID_CREDENTIALS);
    assert!(o.reason_text.contains("username and password didn't match"), "{}", o.reason_text);
    d.stop().await;
}

/// authprobe's codes are those of an independent implementation, Debian's oathtool, for every
/// algorithm, length and period, at times in and out of the RFC's range.
#[test]
fn totp_codes_match_oathtool() {
    use authprobe::protocol::oauth2::interactive::totp::Algorithm;
    use secrecy::ExposeSecret as _;
    let key_b32 = ["GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "KNSWG4TFOREW45DFOJQWG5DJOZSVIT2QMFRGGZDFMZTWQ2LKNNWG23TP"];
    for (i, key) in key_b32.iter().enumerate() {
        for (algorithm, mode) in
            [(Algorithm::Sha1, "sha1"), (Algorithm::Sha256, "sha256"), (Algorithm::Sha512, "sha512")]
        {
            for (digits, period) in [(6, 30), (8, 60), (7, 15)] {
                let uri = format!("otpauth://totp/t?secret={key}&algorithm={mode}&digits={digits}&period={period}");
                let ours = Totp::parse(&uri).unwrap();
                assert_eq!(ours.algorithm, algorithm);
                for time in [59u64, 1_111_111_109, 1_796_000_000 + i as u64 * 7, 4_102_444_799] {
                    let out = std::process::Command::new("oathtool")
                        .args([&format!("--totp={mode}"), "--base32", "-d", &digits.to_string()])
                        .args(["-s", &format!("{period}s"), "-N", &format!("@{time}"), key])
                        .output()
                        .expect("oathtool (Debian's package, installed by tests/run.sh)");
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    let theirs = String::from_utf8(out.stdout).unwrap();
                    let code = ours.code(ours.step_at(time));
                    assert_eq!(code.expose_secret(), theirs.trim(), "{mode} {digits} digits {period}s at {time}");
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// A hostile identity provider: the bounds hold.

/// Serves `/{kind}/…` as an identity provider built to cost: pages that submit themselves
/// forever, redirects forever, pages over every cap, nesting a tree builder chokes on, forms by
/// the thousand pointing anywhere. Counts the requests it got.
async fn hostile() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::{Path, State};
    use axum::response::{Html, IntoResponse, Redirect};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let discovery = {
        let base = base.clone();
        move |Path(kind): Path<String>| async move {
            axum::Json(serde_json::json!({
                "issuer": format!("{base}/{kind}"),
                "authorization_endpoint": format!("{base}/{kind}/auth"),
                "token_endpoint": format!("{base}/{kind}/token"),
            }))
        }
    };
    let page = |State(hits): State<std::sync::Arc<AtomicUsize>>, Path(kind): Path<String>| async move {
        let n = hits.fetch_add(1, Ordering::SeqCst);
        match kind.as_str() {
            "autoloop" => Html(format!(
                "<body onload='document.forms[0].submit()'><form method=post action='/autoloop/auth?n={n}'>\
                 <input type=hidden name=SAMLResponse value=x></form></body>"
            ))
            .into_response(),
            "pingpong" => Redirect::to(&format!("/pingpong/auth?n={n}")).into_response(),
            "huge" => Html("<p>padding ".repeat(200_000)).into_response(),
            "deep" => Html("<div>".repeat(200_000)).into_response(),
            _ => {
                let mut html = String::new();
                for i in 0..8_000 {
                    let action =
                        ["ftp://x/", "javascript:alert(1)", "//evil.test/p", "data:text/html,x", "http://127.0.0.2:9/"]
                            [i % 5];
                    html.push_str(&format!(
                        "<form method=post action='{action}'><input name=username><input type=password name=password></form>"
                    ));
                }
                Html(html).into_response()
            }
        }
    };
    let app = axum::Router::new()
        .route("/{kind}/.well-known/openid-configuration", axum::routing::get(discovery))
        .route("/{kind}/auth", axum::routing::get(page).post(page))
        .with_state(hits.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_identity_provider_is_left_within_every_bound() {
    use std::sync::atomic::Ordering;
    let (base, hits) = hostile().await;
    use ResultClass::*;
    for (kind, max_body, class, step, reason, said) in [
        ("autoloop", 64 * 1024, StepLimit, AUTHORIZE, TOO_MANY_PAGES, "more than 12 pages"),
        ("pingpong", 64 * 1024, StepLimit, AUTHORIZE, TOO_MANY_PAGES, "more than 24 redirects"),
        ("huge", 64 * 1024, InvalidResponse, AUTHORIZE, Reason::NONE, "exceeds max_body_bytes"),
        ("huge", 16 << 20, InvalidResponse, AUTHORIZE, Reason::NONE, "bytes: not read"),
        ("deep", 16 << 20, InvalidResponse, AUTHORIZE, Reason::NONE, "nests elements over 1024 deep"),
        ("forms", 16 << 20, InvalidResponse, PASSWORD, FOREIGN_ORIGIN, "nothing was sent"),
    ] {
        let mut s = interactive(&format!("{base}/{kind}"), "web", "probe-user", USER_PW, None);
        s.max_body_bytes = max_body;
        s.timeout = Duration::from_secs(3);
        let before = hits.load(Ordering::SeqCst);
        let started = Instant::now();
        let o = run(&s).await;
        assert!(started.elapsed() < s.timeout + Duration::from_secs(1), "{kind}: {:?}", started.elapsed());
        check(&o, class, step, reason);
        assert!(o.detail.contains(said), "{kind}: {}", o.detail);
        let requests = hits.load(Ordering::SeqCst) - before;
        assert!(requests <= 25, "{kind}: {requests} requests");
    }
}

/// The form finder on pages rendered from real identity providers' templates (Keycloak's two
/// themes, dex, Django's admin, django-oauth-toolkit, Ory Hydra's and Kratos' reference UIs,
/// Spring Security and Spring Authorization Server; tests/fixtures/login-pages/README.md says
/// from where): the form it fills, the fields, where it posts, the button it presses, the hidden
/// fields it keeps and the error a person sees.
#[test]
fn the_form_finder_reads_real_identity_providers_pages() {
    use authprobe::protocol::oauth2::interactive::page::{Asks, Kind, Page};
    use secrecy::ExposeSecret as _;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/login-pages");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    assert!(expected.len() >= 30, "{} fixtures", expected.len());
    let mut failures = Vec::new();
    for (file, want) in expected {
        let html = std::fs::read_to_string(dir.join(file)).unwrap();
        let url: url::Url = want["url"].as_str().unwrap().parse().unwrap();
        let page = Page::parse(&html, &url, &Hints::default());
        let mut fail = |what: String| failures.push(format!("{file}: {what}"));
        let depth = authprobe::protocol::oauth2::interactive::page::nesting(&html);
        if depth > authprobe::protocol::oauth2::interactive::page::MAX_NESTING {
            fail(format!("refused as nesting {depth} deep"));
        }
        let error = want["error"].as_str().map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "));
        // Ory Hydra's reference app shows its error in a bare <p>: nothing marks it as one, and
        // the verdict's text stays empty there (its reason does not depend on it).
        let unmarked = file.starts_with("hydra-node-login-error");
        if page.error != error && !unmarked {
            fail(format!("error {:?}, expected {error:?}", page.error));
        }
        let kind = want["asks"].as_str().unwrap();
        let chosen = match kind {
            "none" => {
                if let Some(c) = page.choose(&Hints::default()) {
                    fail(format!("chose {c:?} on a page that asks nothing"));
                }
                continue;
            }
            "logout" => page.logout_confirmation().map(|(i, b)| (i, b, None)),
            _ => page.choose(&Hints::default()).map(|(i, asks)| {
                let button = match asks {
                    Asks::Consent(b) => Some(b),
                    _ => page.forms[i].submit_button(),
                };
                (i, button, Some(asks))
            }),
        };
        let Some((index, button, asks)) = chosen else {
            fail(format!("no form chosen, expected {kind}"));
            continue;
        };
        let form = &page.forms[index];
        let name_of = |at: Option<usize>| at.map(|i| form.controls[i].name.clone());
        let (asked, user_field, password_field, otp_field) = match asks {
            Some(Asks::Password { username, password }) => {
                ("password", name_of(username), name_of(Some(password)), None)
            }
            Some(Asks::Username(u)) => ("username", name_of(Some(u)), None, None),
            Some(Asks::Otp(o)) => ("otp", None, None, name_of(Some(o))),
            Some(Asks::Consent(_)) => ("consent", None, None, None),
            Some(Asks::AutoSubmit) => ("auto-submit", None, None, None),
            None => ("logout", None, None, None),
        };
        if asked != kind {
            fail(format!("asks {asked}, expected {kind}"));
        }
        if want["form_index"].as_u64() != Some(index as u64) {
            fail(format!("form {index}, expected {}", want["form_index"]));
        }
        let (action, _) = form.target(button);
        if action.as_ref().map(url::Url::as_str) != want["action"].as_str() {
            fail(format!("action {:?}, expected {}", action.map(String::from), want["action"]));
        }
        for (what, got, field) in [
            ("username", user_field, "username_field"),
            ("password", password_field, "password_field"),
            ("otp", otp_field, "otp_field"),
        ] {
            if got.as_deref() != want[field].as_str() {
                fail(format!("{what} field {got:?}, expected {}", want[field]));
            }
        }
        // The button pressed, as sent: (name, value), or nothing for a nameless one.
        let pressed = button.map(|b| &form.controls[b]).filter(|c| !c.name.is_empty());
        let pressed = pressed.map(|c| (c.name.clone(), c.value.clone()));
        let expected_button = want["submit"]
            .as_array()
            .map(|a| (a[0].as_str().unwrap_or_default().to_owned(), a[1].as_str().unwrap_or_default().to_owned()));
        let expected_button = expected_button.or_else(|| {
            want["approve"]["name"]
                .as_str()
                .map(|n| (n.to_owned(), want["approve"]["value"].as_str().unwrap_or_default().to_owned()))
        });
        if pressed != expected_button {
            fail(format!("presses {pressed:?}, expected {expected_button:?}"));
        }
        let mut hidden: Vec<&str> = form
            .controls
            .iter()
            .filter(|c| c.kind == Kind::Hidden && !c.name.is_empty())
            .map(|c| c.name.as_str())
            .collect();
        let mut want_hidden: Vec<&str> =
            want["hidden"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        hidden.sort_unstable();
        want_hidden.sort_unstable();
        if hidden != want_hidden {
            fail(format!("hidden {hidden:?}, expected {want_hidden:?}"));
        }
        // What approving sends: the approving hidden values, the scopes' boxes ticked.
        if let (Some(Asks::Consent(b)), true) = (asks, kind == "consent") {
            let sent: Vec<(String, String)> =
                form.consent_entries(b).into_iter().map(|(n, v)| (n, v.expose_secret().to_owned())).collect();
            for (name, value) in want["approve"]["fields"].as_object().into_iter().flatten() {
                if !sent.iter().any(|(n, v)| n == name && Some(v.as_str()) == value.as_str()) {
                    fail(format!("approving does not send {name}={value}: {sent:?}"));
                }
            }
            for (name, values) in want["check"].as_object().into_iter().flatten() {
                for value in values.as_array().unwrap() {
                    if !sent.iter().any(|(n, v)| n == name && Some(v.as_str()) == value.as_str()) {
                        fail(format!("approving does not tick {name}={value}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} pages read wrong:\n{}", failures.len(), expected.len(), failures.join("\n"));
}

/// What real identity providers do beyond the simulator's defaults: an authorization response
/// posted by a self-submitting form (response_mode=form_post), a CSRF check that wants the form's
/// Origin (Django over HTTPS), an ID token refreshed without the nonce, and a session left by a
/// failed login, ended all the same.
#[tokio::test]
async fn form_post_origin_checks_refreshed_id_tokens_and_logout_after_a_failure() {
    let sim = world(vec![
        sim_client("form-post", LoginStyle::OnePage, false, ClientFault::FormPost),
        sim_client("origin", LoginStyle::OnePage, true, ClientFault::RequireOrigin),
        sim_client("web", LoginStyle::OnePage, true, ClientFault::None),
    ])
    .await;
    let issuer = sim.issuer().unwrap();
    // The form that carries the code is read, never posted to the app (which does not exist).
    let o = run(&interactive(&issuer, "form-post", "probe-user", USER_PW, None)).await;
    check(&o, ResultClass::Success, TOKEN, Reason::NONE);
    let o = run(&interactive(&issuer, "origin", "probe-user", USER_PW, None)).await;
    check(&o, ResultClass::Success, TOKEN, Reason::NONE);
    // The nonce is the code exchange's ID token's; the refreshed one (without it) still verifies.
    let mut refreshed = interactive(&issuer, "web", "probe-user", USER_PW, None);
    oauth2(&mut refreshed).refresh = true;
    oauth2(&mut refreshed).validate = Validate::Jwt;
    check(&run(&refreshed).await, ResultClass::Success, TOKEN_VALIDATION, Reason::NONE);
    // consent: fail ends the run at the consent page, after the password: the session goes too.
    let mut fail = interactive(&issuer, "web", "probe-user", USER_PW, None);
    login_of(&mut fail).consent = Consent::Fail;
    login_of(&mut fail).logout = true;
    let before = sim.oauth2_stats().logouts;
    let o = run(&fail).await;
    check(&o, ResultClass::UnexpectedStep, PASSWORD, CONSENT_REQUIRED);
    let end = o.logout.as_ref().expect("the session is ended after the failure");
    assert!(end.ok, "{}", end.detail);
    assert!(steps(&o).ends_with(&["Logout"]), "{:?}", steps(&o));
    // The simulator opens a session only for a finished login: nothing to end here, and it says so.
    assert_eq!(sim.oauth2_stats().logouts, before);
}
