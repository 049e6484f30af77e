//! The OAuth 2.0 / OpenID Connect family against the simulator's authorization server over real
//! HTTP on 127.0.0.1: every grant and client authentication, every error and validation
//! failure with its class and reason, discovery and key rotation, and the secrets of the new
//! protocol kept out of every output.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use authprobe::protocol::oauth2::{ClientAuth, Grant, SigningKey, Validate};
use authprobe::protocol::{etna, oauth2, Outcome, Prober, Reason, ResultClass, Step};
use authprobe::simulator::oauth2::{ClientFault, ServerFaults, SimClient};
use authprobe::simulator::{Account, Simulator};
use common::*;

async fn login(spec: &authprobe::protocol::LoginSpec) -> Outcome {
    Prober::new().unwrap().login(spec).await
}

#[track_caller]
fn check(o: &Outcome, result: ResultClass, step: Step, reason: Reason) {
    assert_eq!((o.summary.result, o.summary.step, o.summary.reason), (result, step, reason), "detail: {}", o.detail);
    assert_eq!(o.summary.state, None, "OAuth 2.0 has no State");
}

fn steps(o: &Outcome) -> Vec<Step> {
    o.steps.iter().map(|s| s.step).collect()
}

fn client(id: &str, grants: &[&str]) -> SimClient {
    SimClient::new(id, CLIENT_SECRET, grants)
}

async fn world() -> Simulator {
    let mut opaque = client("opaque", &["client_credentials", "password", "refresh_token"]);
    opaque.opaque_access_tokens = true;
    oauth2_simulator(
        vec![client("svc", &["client_credentials"]), client("app", &["password", "refresh_token"]), opaque],
        vec![Account::new("probe-user", "pw-User-Distinct-61")],
    )
    .await
}

fn password_spec(sim: &Simulator, client_id: &str) -> authprobe::protocol::LoginSpec {
    let mut s = oauth2_spec(oauth2_target(&sim.issuer().unwrap(), client_id));
    oauth2(&mut s).grant = Grant::Password { username: "probe-user".into(), password: "pw-User-Distinct-61".into() };
    s
}

#[tokio::test]
async fn client_credentials_with_jwt_validation_discovers_once() {
    let sim = world().await;
    let mut s = oauth2_spec(oauth2_target(&sim.issuer().unwrap(), "svc"));
    oauth2(&mut s).validate = Validate::Jwt;
    let prober = Prober::new().unwrap();
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(
        steps(&o),
        [oauth2::names::DISCOVERY, oauth2::names::JWKS, oauth2::names::TOKEN],
        "a JWT is checked without a request"
    );
    assert_eq!(o.summary.status, 200);
    assert_eq!(o.token_expires_in, Some(Duration::from_secs(3600)));
    let d = o.discovery.expect("discovery facts");
    assert!(d.ok && d.jwks_keys == Some(1) && d.jwks_changed_unix.is_some(), "{d:?}");
    // The second run uses the cached document and keys.
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(steps(&o), [oauth2::names::TOKEN]);
    let stats = sim.oauth2_stats();
    assert_eq!((stats.discovery, stats.jwks, stats.tokens_issued), (1, 1, 2));
}

#[tokio::test]
async fn password_refresh_validate_and_revoke() {
    let sim = world().await;
    let mut s = password_spec(&sim, "app");
    let o2 = oauth2(&mut s);
    o2.scope = Some("openid api".into());
    o2.refresh = true;
    o2.validate = Validate::Jwt;
    o2.revoke = true;
    let o = login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(
        steps(&o),
        [
            oauth2::names::DISCOVERY,
            oauth2::names::JWKS,
            oauth2::names::TOKEN,
            oauth2::names::REFRESH,
            // Each pair the run received, the refresh token then the access token, each its step.
            oauth2::names::REFRESH_REVOCATION,
            oauth2::names::REVOCATION,
            oauth2::names::REFRESH_REVOCATION,
            oauth2::names::REVOCATION
        ]
    );
    let logout = o.logout.as_ref().expect("revocation recorded");
    assert!(logout.ok, "{}", logout.detail);
    let stats = sim.oauth2_stats();
    // The first refresh token ended with its rotation; the first access token with it here.
    assert_eq!((stats.refreshes, stats.revocations, stats.tokens_issued), (1, 3, 2));
}

#[tokio::test]
async fn introspection_and_userinfo_validate_opaque_tokens() {
    let sim = world().await;
    let mut s = password_spec(&sim, "opaque");
    let o2 = oauth2(&mut s);
    o2.scope = Some("openid".into());
    o2.validate = Validate::Introspection;
    o2.revoke = true;
    let o = login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    let logout = o.logout.as_ref().unwrap();
    assert!(logout.ok && logout.detail.contains("introspection confirms"), "{}", logout.detail);
    assert_eq!(sim.oauth2_stats().introspections, 2, "active before, inactive after the revocation");

    oauth2(&mut s).validate = Validate::Userinfo;
    let o = login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(sim.oauth2_stats().userinfo, 1);

    // An opaque access token cannot be checked as a JWT without an ID token.
    oauth2(&mut s).scope = None;
    oauth2(&mut s).validate = Validate::Jwt;
    let o = login(&s).await;
    check(&o, ResultClass::ValidationFailed, etna::TOKEN_VALIDATION, Reason::NONE);
    assert!(o.detail.contains("opaque"), "{}", o.detail);
    // With openid, the ID token is checked instead.
    oauth2(&mut s).scope = Some("openid".into());
    check(&login(&s).await, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);

    sim.update_oauth2_client("opaque", |c| c.fault = ClientFault::Inactive);
    oauth2(&mut s).validate = Validate::Introspection;
    check(&login(&s).await, ResultClass::ValidationFailed, etna::TOKEN_VALIDATION, oauth2::names::INACTIVE);
}

#[tokio::test]
async fn each_error_has_its_class_and_reason() {
    let sim = world().await;
    let issuer = sim.issuer().unwrap();
    let mut bad_secret = oauth2_target(&issuer, "svc");
    bad_secret.client_secret = Some("wrong-secret".into());
    let o = login(&oauth2_spec(bad_secret)).await;
    check(&o, ResultClass::ClientRejected, oauth2::names::TOKEN, oauth2::names::INVALID_CLIENT);
    assert_eq!(o.summary.status, 401);

    let o = login(&oauth2_spec(oauth2_target(&issuer, "nobody"))).await;
    check(&o, ResultClass::ClientRejected, oauth2::names::TOKEN, oauth2::names::INVALID_CLIENT);

    // A client not allowed the grant.
    let o = login(&password_spec(&sim, "svc")).await;
    check(&o, ResultClass::ClientRejected, oauth2::names::TOKEN, oauth2::names::UNAUTHORIZED_CLIENT);

    let mut wrong_pw = password_spec(&sim, "app");
    oauth2(&mut wrong_pw).grant = Grant::Password { username: "probe-user".into(), password: "nope".into() };
    let o = login(&wrong_pw).await;
    check(&o, ResultClass::AuthFailed, oauth2::names::TOKEN, oauth2::names::INVALID_GRANT);
    assert_eq!(o.summary.status, 400);
    assert_eq!(o.reason_text, "invalid resource owner credentials", "error_description kept as text");

    let mut s = oauth2_spec(oauth2_target(&issuer, "svc"));
    oauth2(&mut s).scope = Some("admin".into());
    check(&login(&s).await, ResultClass::AuthFailed, oauth2::names::TOKEN, oauth2::names::INVALID_SCOPE);

    // Refresh asked of a grant without refresh tokens.
    let mut s = oauth2_spec(oauth2_target(&issuer, "svc"));
    oauth2(&mut s).refresh = true;
    let o = login(&s).await;
    check(&o, ResultClass::InvalidResponse, oauth2::names::REFRESH, Reason::NONE);
    assert!(o.detail.contains("no refresh_token"), "{}", o.detail);
}

#[tokio::test]
async fn faults_of_the_token_endpoint() {
    let sim = world().await;
    let issuer = sim.issuer().unwrap();
    let cases = [
        (ClientFault::Html, ResultClass::InvalidResponse, Reason::NONE),
        (ClientFault::ServerError, ResultClass::HttpError, Reason::OTHER),
        (ClientFault::TemporarilyUnavailable, ResultClass::RateLimited, oauth2::names::TEMPORARILY_UNAVAILABLE),
    ];
    for (fault, class, reason) in cases {
        sim.update_oauth2_client("svc", |c| c.fault = fault);
        let o = login(&oauth2_spec(oauth2_target(&issuer, "svc"))).await;
        check(&o, class, oauth2::names::TOKEN, reason);
    }
    sim.update_oauth2_client("svc", |c| c.fault = ClientFault::StringExpiresIn);
    let o = login(&oauth2_spec(oauth2_target(&issuer, "svc"))).await;
    check(&o, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
    assert_eq!(o.token_expires_in, Some(Duration::from_secs(3600)), "a numeric string is accepted");

    sim.update_oauth2_client("svc", |c| c.fault = ClientFault::Stall);
    let mut s = oauth2_spec(oauth2_target(&issuer, "svc"));
    s.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let o = login(&s).await;
    check(&o, ResultClass::Timeout, oauth2::names::TOKEN, Reason::NONE);
    assert!(started.elapsed() < Duration::from_secs(2), "abandoned within timeout + 1 s");
}

#[tokio::test]
async fn faults_of_the_token_itself_fail_validation() {
    let sim = world().await;
    let issuer = sim.issuer().unwrap();
    let cases = [
        (ClientFault::ExpiredToken, oauth2::names::EXPIRED),
        (ClientFault::WrongAudience, oauth2::names::WRONG_AUDIENCE),
        (ClientFault::WrongKid, oauth2::names::UNKNOWN_KEY),
    ];
    for (fault, reason) in cases {
        sim.update_oauth2_client("svc", |c| c.fault = fault);
        let mut s = oauth2_spec(oauth2_target(&issuer, "svc"));
        oauth2(&mut s).validate = Validate::Jwt;
        let o = login(&s).await;
        check(&o, ResultClass::ValidationFailed, etna::TOKEN_VALIDATION, reason);
    }
    // The unknown kid made the prober fetch the keys again before giving up.
    assert!(sim.oauth2_stats().jwks >= 4, "{:?}", sim.oauth2_stats());
}

#[tokio::test]
async fn key_rotation_is_picked_up_through_the_unknown_kid() {
    let sim = world().await;
    let mut s = oauth2_spec(oauth2_target(&sim.issuer().unwrap(), "svc"));
    oauth2(&mut s).validate = Validate::Jwt;
    let prober = Prober::new().unwrap();
    let first = prober.login(&s).await;
    check(&first, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    sim.rotate_oauth2_key();
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(steps(&o), [oauth2::names::TOKEN, oauth2::names::JWKS], "the JWKS fetched again");
    let d = o.discovery.unwrap();
    assert_eq!(d.jwks_keys, Some(2));
    assert!(d.jwks_changed_unix >= first.discovery.unwrap().jwks_changed_unix);
    assert_eq!(sim.oauth2_stats().jwks, 2);
}

#[tokio::test]
async fn discovery_failures() {
    let sim = world().await;
    let issuer = sim.issuer().unwrap();
    sim.set_oauth2_faults(ServerFaults { issuer_mismatch: true, ..Default::default() });
    let o = login(&oauth2_spec(oauth2_target(&issuer, "svc"))).await;
    check(&o, ResultClass::InvalidResponse, oauth2::names::DISCOVERY, oauth2::names::DISCOVERY_FAILED);
    assert!(o.detail.contains("issuer mismatch"), "{}", o.detail);
    assert!(!o.discovery.unwrap().ok);

    sim.set_oauth2_faults(ServerFaults { discovery_error: true, ..Default::default() });
    let o = login(&oauth2_spec(oauth2_target(&issuer, "svc"))).await;
    check(&o, ResultClass::HttpError, oauth2::names::DISCOVERY, oauth2::names::DISCOVERY_FAILED);

    sim.set_oauth2_faults(ServerFaults { jwks_delay: Some(Duration::from_secs(5)), ..Default::default() });
    let mut s = oauth2_spec(oauth2_target(&issuer, "svc"));
    oauth2(&mut s).validate = Validate::Jwt;
    s.timeout = Duration::from_secs(1);
    let o = login(&s).await;
    check(&o, ResultClass::Timeout, oauth2::names::JWKS, oauth2::names::DISCOVERY_FAILED);

    // A target without discovery (token_endpoint set) makes no discovery request at all.
    sim.set_oauth2_faults(ServerFaults::default());
    let mut t = oauth2_target(&issuer, "svc");
    t.endpoints.token = Some(format!("{issuer}/token").parse().unwrap());
    let before = sim.oauth2_stats().discovery;
    let o = login(&oauth2_spec(t)).await;
    check(&o, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
    assert_eq!(steps(&o), [oauth2::names::TOKEN]);
    assert!(o.discovery.is_none());
    assert_eq!(sim.oauth2_stats().discovery, before);

    // The server gone: connect_error at the first request.
    let issuer_gone = issuer.clone();
    sim.shutdown().await;
    let o = login(&oauth2_spec(oauth2_target(&issuer_gone, "svc"))).await;
    check(&o, ResultClass::ConnectError, oauth2::names::DISCOVERY, oauth2::names::DISCOVERY_FAILED);
}

#[tokio::test]
async fn client_authentication_methods() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(dir.path().join("client.pub.pem"), pair.public_key_pem()).unwrap();
    let mut keyed = SimClient::new("keyed", "unused", &["client_credentials"]);
    keyed.client_secret = None;
    keyed.public_key_file = Some(dir.path().join("client.pub.pem"));
    let mut public = SimClient::new("public", "unused", &["password"]);
    public.client_secret = None;
    let mut settings = authprobe::simulator::Settings::new(&[APP_KEY], vec![Account::new("u", "pw-u")]);
    let file = authprobe::simulator::oauth2::OAuth2File {
        clients: vec![client("svc", &["client_credentials"]), keyed, public],
        ..Default::default()
    };
    settings.oauth2 = Some(authprobe::simulator::oauth2::OAuth2Settings::from_file(file, dir.path()).unwrap());
    let sim = simulator_with(settings).await;
    let issuer = sim.issuer().unwrap();

    let mut post = oauth2_target(&issuer, "svc");
    post.client_auth = ClientAuth::ClientSecretPost;
    check(&login(&oauth2_spec(post)).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);

    let mut jwt = oauth2_target(&issuer, "keyed");
    jwt.client_secret = None;
    jwt.client_auth =
        ClientAuth::PrivateKeyJwt(SigningKey::from_pem(&pair.serialize_pem(), Some("k1".into())).unwrap());
    let jwt = Arc::new(jwt);
    let mut s = oauth2_spec(oauth2_target(&issuer, "x"));
    oauth2(&mut s).target = jwt.clone();
    check(&login(&s).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
    // Each run signs a new assertion (a replayed jti would be refused).
    check(&login(&s).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut wrong = oauth2_target(&issuer, "keyed");
    wrong.client_secret = None;
    wrong.client_auth = ClientAuth::PrivateKeyJwt(SigningKey::from_pem(&other.serialize_pem(), None).unwrap());
    check(
        &login(&oauth2_spec(wrong)).await,
        ResultClass::ClientRejected,
        oauth2::names::TOKEN,
        oauth2::names::INVALID_CLIENT,
    );

    let mut none = oauth2_target(&issuer, "public");
    none.client_secret = None;
    none.client_auth = ClientAuth::None;
    let mut s = oauth2_spec(none);
    oauth2(&mut s).grant = Grant::Password { username: "u".into(), password: "pw-u".into() };
    check(&login(&s).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
}

#[tokio::test]
async fn no_secret_or_token_in_outcome_trace_or_debug() {
    let sim = world().await;
    let mut s = password_spec(&sim, "app");
    let o2 = oauth2(&mut s);
    o2.scope = Some("openid".into());
    o2.refresh = true;
    o2.validate = Validate::Jwt;
    o2.revoke = true;
    let (o, trace) = Prober::new().unwrap().login_traced(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    let text = format!("{}\n{}\n{:?}\n{:?}", serde_json::to_string(&o).unwrap(), trace.render(), o, s);
    for secret in [CLIENT_SECRET, "pw-User-Distinct-61"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    // Tokens: JWTs start with eyJ, the simulator's refresh tokens with simrt-.
    assert!(!text.contains("eyJ") && !text.contains("simrt-"), "a token leaked:\n{text}");
    assert!(text.contains("> (form) grant_type=password&username=probe-user&password=<redacted>"), "{text}");
    assert!(text.contains("> POST http://127.0.0.1:") && text.contains("\"token_type\":\"Bearer\""), "{text}");
}

// ------------------------------------------------------------------------------------------
// Against oidc-provider, a certified OpenID Connect implementation from the npm registry.

use common::oidc::{self, OidcProvider, Options};

fn idp_target(p: &OidcProvider, client_id: &str) -> authprobe::protocol::oauth2::OAuth2Target {
    let mut t = oauth2_target(&p.issuer, client_id);
    t.client_secret = Some(oidc::SECRET.into());
    t
}

fn idp_user(p: &OidcProvider, scope: &str) -> authprobe::protocol::LoginSpec {
    let mut s = oauth2_spec(idp_target(p, "app"));
    let o = oauth2(&mut s);
    o.grant = Grant::Password { username: oidc::USER.into(), password: oidc::USER_PASSWORD.into() };
    o.scope = Some(scope.into());
    s
}

/// A P-256 key for the `keyed` client: its private PEM, and its public JWK written to a file.
fn client_key(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    use base64::Engine as _;
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = serde_json::json!({"kty":"EC","crv":"P-256","alg":"ES256","kid":"keyed-1","use":"sig","x":b64(&raw[1..33]),"y":b64(&raw[33..65])});
    let file = dir.join("client.jwk.json");
    std::fs::write(&file, jwk.to_string()).unwrap();
    (pair.serialize_pem(), file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_grants_client_authentication_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (key_pem, jwk_file) = client_key(dir.path());
    // An RSA client key, as `openssl genpkey` makes one (PKCS#8), and its public half.
    let rsa_key = dir.path().join("rsa.key");
    let rsa_pub = dir.path().join("rsa.pub");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa_key.to_str().unwrap()]);
    openssl(&["pkey", "-in", rsa_key.to_str().unwrap(), "-pubout", "-out", rsa_pub.to_str().unwrap()]);
    let idp = OidcProvider::start(Options {
        client_key: Some(jwk_file),
        client_rsa_key: Some(rsa_pub),
        ..Default::default()
    })
    .await;
    let prober = Prober::new().unwrap();

    // client_credentials with client_secret_basic: an opaque token of its configured lifetime.
    let o = prober.login(&oauth2_spec(idp_target(&idp, "svc"))).await;
    check(&o, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
    assert_eq!(o.token_expires_in, Some(Duration::from_secs(600)));
    assert_eq!(steps(&o), [oauth2::names::DISCOVERY, oauth2::names::TOKEN]);

    // client_secret_post.
    let mut post = idp_target(&idp, "svc-post");
    post.client_auth = ClientAuth::ClientSecretPost;
    check(&prober.login(&oauth2_spec(post)).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);

    // A JWT access token for a resource (RFC 8707), verified against its JWKS: RS256, iss, aud.
    let mut s = oauth2_spec(idp_target(&idp, "svc"));
    oauth2(&mut s).resource = Some(oidc::API.into());
    oauth2(&mut s).scope = Some("api".into());
    oauth2(&mut s).validate = Validate::Jwt;
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(o.discovery.unwrap().jwks_keys, Some(1));

    // private_key_jwt, an ES256 assertion per run.
    let mut keyed = oauth2_target(&idp.issuer, "keyed");
    keyed.client_secret = None;
    keyed.client_auth = ClientAuth::PrivateKeyJwt(SigningKey::from_pem(&key_pem, Some("keyed-1".into())).unwrap());
    let keyed = oauth2_spec(keyed);
    for _ in 0..2 {
        check(&prober.login(&keyed).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
    }
    // private_key_jwt with RS256, from the PEM openssl wrote.
    let mut keyed_rsa = oauth2_target(&idp.issuer, "keyed-rsa");
    keyed_rsa.client_secret = None;
    let pem = std::fs::read_to_string(&rsa_key).unwrap();
    let signing = SigningKey::from_pem(&pem, Some("rsa-1".into())).unwrap();
    assert_eq!(signing.algorithm, jsonwebtoken::Algorithm::RS256);
    keyed_rsa.client_auth = ClientAuth::PrivateKeyJwt(signing);
    check(&prober.login(&oauth2_spec(keyed_rsa)).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);

    // The password grant (registered in server.mjs), refreshed, its ID token verified, revoked.
    let mut s = idp_user(&idp, "openid offline_access");
    let o2 = oauth2(&mut s);
    o2.refresh = true;
    o2.validate = Validate::Jwt;
    o2.revoke = true;
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(o.token_expires_in, Some(Duration::from_secs(3600)));
    let logout = o.logout.as_ref().expect("revoked");
    assert!(logout.ok, "{}", logout.detail);

    // A public client (client_auth: none).
    let mut public = oauth2_target(&idp.issuer, "public-app");
    public.client_secret = None;
    public.client_auth = ClientAuth::None;
    let mut s = oauth2_spec(public);
    oauth2(&mut s).grant = Grant::Password { username: oidc::USER.into(), password: oidc::USER_PASSWORD.into() };
    oauth2(&mut s).scope = Some("openid".into());
    check(&prober.login(&s).await, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);

    // userinfo with the opaque access token.
    let mut s = idp_user(&idp, "openid");
    oauth2(&mut s).validate = Validate::Userinfo;
    check(&prober.login(&s).await, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);

    // Introspection: active, then inactive once revoked.
    let mut s = idp_user(&idp, "openid offline_access");
    oauth2(&mut s).validate = Validate::Introspection;
    oauth2(&mut s).revoke = true;
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    let logout = o.logout.as_ref().unwrap();
    assert!(logout.ok && logout.detail.contains("introspection confirms"), "{}", logout.detail);
    idp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_errors_and_a_stopped_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_, jwk_file) = client_key(dir.path());
    let idp = OidcProvider::start(Options { client_key: Some(jwk_file), ..Default::default() }).await;

    let mut bad = idp_target(&idp, "svc");
    bad.client_secret = Some("not-the-secret".into());
    let o = login(&oauth2_spec(bad)).await;
    check(&o, ResultClass::ClientRejected, oauth2::names::TOKEN, oauth2::names::INVALID_CLIENT);
    assert_eq!(o.summary.status, 401);
    check(
        &login(&oauth2_spec(idp_target(&idp, "nobody"))).await,
        ResultClass::ClientRejected,
        oauth2::names::TOKEN,
        oauth2::names::INVALID_CLIENT,
    );
    // An assertion signed with another key.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut keyed = oauth2_target(&idp.issuer, "keyed");
    keyed.client_secret = None;
    keyed.client_auth =
        ClientAuth::PrivateKeyJwt(SigningKey::from_pem(&other.serialize_pem(), Some("keyed-1".into())).unwrap());
    check(
        &login(&oauth2_spec(keyed)).await,
        ResultClass::ClientRejected,
        oauth2::names::TOKEN,
        oauth2::names::INVALID_CLIENT,
    );

    let mut s = idp_user(&idp, "openid");
    oauth2(&mut s).grant = Grant::Password { username: oidc::USER.into(), password: "wrong-password".into() };
    let o = login(&s).await;
    check(&o, ResultClass::AuthFailed, oauth2::names::TOKEN, oauth2::names::INVALID_GRANT);
    assert_eq!(o.summary.status, 400);

    // A grant the client may not use: oidc-provider answers invalid_request, not the RFC's
    // unauthorized_client; authprobe reports what the server said.
    let mut s = idp_user(&idp, "openid");
    oauth2(&mut s).target = Arc::new(idp_target(&idp, "svc"));
    let o = login(&s).await;
    check(&o, ResultClass::AuthFailed, oauth2::names::TOKEN, oauth2::names::INVALID_REQUEST);
    assert!(o.reason_text.contains("not allowed for this client"), "{}", o.reason_text);

    let mut s = oauth2_spec(idp_target(&idp, "svc"));
    oauth2(&mut s).scope = Some("admin".into());
    check(&login(&s).await, ResultClass::AuthFailed, oauth2::names::TOKEN, oauth2::names::INVALID_SCOPE);

    // An opaque access token and no openid: nothing to verify as a JWT.
    let mut s = oauth2_spec(idp_target(&idp, "svc"));
    oauth2(&mut s).validate = Validate::Jwt;
    check(&login(&s).await, ResultClass::ValidationFailed, etna::TOKEN_VALIDATION, Reason::NONE);

    // A JWT for another resource than the probe expects.
    let mut s = oauth2_spec(idp_target(&idp, "svc"));
    oauth2(&mut s).resource = Some(oidc::API.into());
    oauth2(&mut s).audience = Some("https://other.authprobe.test".into());
    oauth2(&mut s).validate = Validate::Jwt;
    // (audience is sent too; oidc-provider ignores it and issues the token for the resource)
    check(&login(&s).await, ResultClass::ValidationFailed, etna::TOKEN_VALIDATION, oauth2::names::WRONG_AUDIENCE);

    let issuer = idp.issuer.clone();
    idp.stop().await;
    let o = login(&oauth2_spec(oauth2_target(&issuer, "svc"))).await;
    check(&o, ResultClass::ConnectError, oauth2::names::DISCOVERY, oauth2::names::DISCOVERY_FAILED);

    // A server without the password grant.
    let idp = OidcProvider::start(Options { no_password_grant: true, ..Default::default() }).await;
    check(
        &login(&idp_user(&idp, "openid")).await,
        ResultClass::ClientRejected,
        oauth2::names::TOKEN,
        oauth2::names::UNSUPPORTED_GRANT_TYPE,
    );
    idp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_key_rotation_is_picked_up_through_the_unknown_kid() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let idp = OidcProvider::start(Options { keys_file: Some(keys.clone()), ..Default::default() }).await;
    let port = idp.port;
    let mut s = oauth2_spec(idp_target(&idp, "svc"));
    oauth2(&mut s).resource = Some(oidc::API.into());
    oauth2(&mut s).validate = Validate::Jwt;
    let prober = Prober::new().unwrap();
    let first = prober.login(&s).await;
    check(&first, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    idp.stop().await;
    // The same server restarted with a new signing key first, the old one still published.
    let idp =
        OidcProvider::start(Options { port: Some(port), keys_file: Some(keys), rotate: true, ..Default::default() })
            .await;
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(
        steps(&o),
        [oauth2::names::TOKEN, oauth2::names::JWKS],
        "the cached JWKS lacked the new kid: fetched again"
    );
    assert_eq!(o.discovery.unwrap().jwks_keys, Some(2));
    idp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_over_https_trusted_through_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = authprobe::simulator::certificate::make(&["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("idp.crt"), dir.path().join("idp.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let idp = OidcProvider::start(Options { tls: Some((cert.clone(), key)), ..Default::default() }).await;
    let mut s = oauth2_spec(idp_target(&idp, "svc"));
    oauth2(&mut s).resource = Some(oidc::API.into());
    oauth2(&mut s).validate = Validate::Jwt;
    // Without trusting its certificate: tls_error at discovery.
    let o = login(&s).await;
    check(&o, ResultClass::TlsError, oauth2::names::DISCOVERY, oauth2::names::DISCOVERY_FAILED);
    let mut tls = authprobe::protocol::TlsSettings::default();
    tls.roots = Some(common::openssl::certs(&cert));
    s.tls = Arc::new(tls);
    let o = login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    let facts = o.tls.expect("TLS facts");
    assert!(facts.version.is_some() && facts.cert_not_after_unix.is_some(), "{facts:?}");
    idp.stop().await;
}

/// Tokens signed the ways identity providers sign them — RS256 and PS256 by openssl, EdDSA by
/// ring, ES256 by the simulator above — verify against their JWKS; a changed signature does not.
#[test]
fn jwt_algorithms_the_providers_sign_with_verify() {
    use authprobe::protocol::oauth2::jwt::{self, Check, Expected};
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims =
        b64(serde_json::json!({"iss":"http://idp","aud":"api","exp":now + 300,"iat":now}).to_string().as_bytes());
    let expected = Expected { issuer: "http://idp", audience: "api", leeway: 60, now, nonce: None };
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str], input: Option<&[u8]>| -> Vec<u8> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl");
        child.stdin.take().unwrap().write_all(input.unwrap_or_default()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    };
    let key = dir.path().join("rsa.pem");
    let key = key.to_str().unwrap();
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key], None);
    let modulus = String::from_utf8(openssl(&["rsa", "-in", key, "-noout", "-modulus"], None)).unwrap();
    let n: Vec<u8> = (0..modulus.trim().len() - 8)
        .step_by(2)
        .map(|i| u8::from_str_radix(&modulus.trim()["Modulus=".len()..][i..i + 2], 16).unwrap())
        .collect();
    let rsa_jwk = serde_json::json!({"kty":"RSA","kid":"r1","n":b64(&n),"e":"AQAB"});
    let ed = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let ed = ring::signature::Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
    use ring::signature::KeyPair as _;
    let ed_jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":"e1","x":b64(ed.public_key().as_ref())});
    let keys: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(serde_json::json!({"keys":[rsa_jwk, ed_jwk]})).unwrap();

    let signed = |alg: &str, kid: &str| -> (String, Vec<u8>) {
        let input =
            format!("{}.{claims}", b64(serde_json::json!({"alg":alg,"kid":kid,"typ":"JWT"}).to_string().as_bytes()));
        let signature = match alg {
            "RS256" => openssl(&["dgst", "-sha256", "-sign", key], Some(input.as_bytes())),
            "PS256" => openssl(
                &["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-sign", key],
                Some(input.as_bytes()),
            ),
            "EdDSA" => ed.sign(input.as_bytes()).as_ref().to_vec(),
            _ => unreachable!(),
        };
        (input, signature)
    };
    for (alg, kid) in [("RS256", "r1"), ("PS256", "r1"), ("EdDSA", "e1")] {
        let (input, mut signature) = signed(alg, kid);
        assert_eq!(jwt::verify(&format!("{input}.{}", b64(&signature)), &keys, expected), Check::Valid, "{alg}");
        signature[10] ^= 1;
        let tampered = jwt::verify(&format!("{input}.{}", b64(&signature)), &keys, expected);
        assert!(matches!(tampered, Check::Refused(oauth2::names::BAD_SIGNATURE, _)), "{alg}: {tampered:?}");
    }
}

/// The discovery document and keys are fetched again once `discovery_refresh` has passed, and a
/// revocation the server refuses is counted without failing the run.
#[tokio::test]
async fn discovery_refresh_and_a_refused_revocation() {
    let sim = world().await;
    let issuer = sim.issuer().unwrap();
    let mut t = oauth2_target(&issuer, "svc");
    t.discovery_refresh = Duration::from_millis(300);
    let mut s = oauth2_spec(t);
    oauth2(&mut s).validate = Validate::Jwt;
    let prober = Prober::new().unwrap();
    assert_eq!(steps(&prober.login(&s).await), [oauth2::names::DISCOVERY, oauth2::names::JWKS, oauth2::names::TOKEN]);
    assert_eq!(steps(&prober.login(&s).await), [oauth2::names::TOKEN], "fresh: cached");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, etna::TOKEN_VALIDATION, Reason::NONE);
    assert_eq!(
        steps(&o),
        [oauth2::names::DISCOVERY, oauth2::names::JWKS, oauth2::names::TOKEN],
        "stale: fetched again"
    );
    assert_eq!((sim.oauth2_stats().discovery, sim.oauth2_stats().jwks), (2, 2));

    // A revocation endpoint that answers 404: the login succeeds, the revocation failed.
    let mut t = oauth2_target(&issuer, "app");
    t.endpoints.revocation = Some(format!("{issuer}/no-such-endpoint").parse().unwrap());
    let mut s = oauth2_spec(t);
    oauth2(&mut s).grant = Grant::Password { username: "probe-user".into(), password: "pw-User-Distinct-61".into() };
    oauth2(&mut s).revoke = true;
    let o = prober.login(&s).await;
    check(&o, ResultClass::Success, oauth2::names::TOKEN, Reason::NONE);
    let logout = o.logout.expect("the revocation is reported");
    assert!(!logout.ok && logout.status == 404 && logout.detail.contains("HTTP 404"), "{logout:?}");
}
