//! The simulator's OAuth 2.0 / OpenID Connect authorization server, under `/oauth2` beside the
//! ETNA API: discovery, a JWKS of ES256 keys made at start (rotatable), the token endpoint with
//! the client_credentials, password and refresh_token grants and RFC 6749 error bodies,
//! userinfo, introspection (RFC 7662) and revocation (RFC 7009). Users are the simulator's
//! accounts. Per-client [`ClientFault`]s and server-wide [`ServerFaults`] produce every
//! misbehaviour the prober classifies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Account;

mod login;
use crate::duration::serde_prom;

/// Tokens remembered at most; the oldest are forgotten first.
const MAX_TOKENS: usize = 100_000;

/// How the simulator misbehaves for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientFault {
    /// Behave as a real server.
    #[default]
    None,
    /// Token requests are accepted and never answered.
    Stall,
    /// 200 with an HTML login page.
    Html,
    /// 503 with an RFC 6749 error body.
    ServerError,
    /// 400 `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// Access tokens signed with a key the JWKS never publishes.
    WrongKid,
    /// Access tokens that expired an hour ago.
    ExpiredToken,
    /// Access tokens for another audience.
    WrongAudience,
    /// Introspection says every token of the client is inactive.
    Inactive,
    /// `expires_in` as a numeric string ("3600"), as some servers send it.
    StringExpiresIn,
    /// Login pages: the login form posts to another origin.
    ForeignForm,
    /// Login pages: the login page has no login form (a redesign the prober does not know).
    PageChanged,
    /// Login pages: the login page redirects to itself, forever.
    RedirectLoop,
    /// Login pages: the login times out once the password is taken (the page starts over).
    SessionTimeout,
    /// Login pages: a refused password re-renders the login page with 401, as dex does.
    RefusalWith401,
    /// Login pages: a form posted without an Origin header is refused with 403, as Django's
    /// CSRF check does over HTTPS.
    RequireOrigin,
    /// The authorization response is a page whose form posts it to the redirect URI
    /// (response_mode=form_post), not a redirect.
    FormPost,
    /// Login pages: the login page drops the login's cookie (a proxy that strips it), so the
    /// form posted next finds no login: 400 "Cookie not found".
    LostCookie,
    /// Authorization responses carry another `state`.
    StateMismatch,
    /// Authorization responses carry another issuer's `iss`.
    WrongIss,
    /// ID tokens carry another `nonce`.
    WrongNonce,
    /// Token requests refused with a bare 401, no OAuth 2.0 error body.
    BareRefusal,
    /// Token requests answered 429 with `error: slow_down`.
    SlowDown,
}

/// How the simulator's login pages ask for the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginStyle {
    /// Username and password on one page.
    #[default]
    OnePage,
    /// The username, then the password on a page of its own.
    IdentifierFirst,
}

/// Server-wide faults, settable while serving.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFaults {
    /// The discovery document names another issuer.
    #[serde(default)]
    pub issuer_mismatch: bool,
    /// The JWKS answers this late.
    #[serde(default, with = "serde_prom::option")]
    pub jwks_delay: Option<Duration>,
    /// The discovery document answers 500.
    #[serde(default)]
    pub discovery_error: bool,
}

/// One client of the simulated authorization server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimClient {
    /// `client_id`.
    pub client_id: String,
    /// Its secret (for client_secret_basic and client_secret_post, both accepted); none for a
    /// public or private_key_jwt client.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// The public key (PEM) its private_key_jwt assertions verify with.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Grants it may use (default: client_credentials).
    #[serde(default)]
    pub grants: Option<Vec<String>>,
    /// Access tokens as JWTs (default) or opaque strings.
    #[serde(default)]
    pub opaque_access_tokens: bool,
    /// Lifetime of its access tokens (default 1h).
    #[serde(default, with = "serde_prom::option")]
    pub token_lifetime: Option<Duration>,
    /// Misbehaviour.
    #[serde(default)]
    pub fault: ClientFault,
    /// Redirect URIs registered for the authorization code grant.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// How its login pages ask for the credentials.
    #[serde(default)]
    pub login: LoginStyle,
    /// Whether its users are asked to consent (each login: nothing is remembered).
    #[serde(default)]
    pub consent: bool,
    /// An `error` every authorization request is answered with (`login_required`,
    /// `server_error`…), right after the login.
    #[serde(default)]
    pub authorize_error: Option<String>,
}

impl SimClient {
    /// A confidential client allowed `grants`.
    pub fn new(client_id: &str, client_secret: &str, grants: &[&str]) -> SimClient {
        SimClient {
            client_id: client_id.to_owned(),
            client_secret: Some(client_secret.into()),
            public_key_file: None,
            grants: Some(grants.iter().map(|g| (*g).to_owned()).collect()),
            opaque_access_tokens: false,
            token_lifetime: None,
            fault: ClientFault::None,
            redirect_uris: Vec::new(),
            login: LoginStyle::OnePage,
            consent: false,
            authorize_error: None,
        }
    }

    fn allows(&self, grant: &str) -> bool {
        match &self.grants {
            Some(g) => g.iter().any(|x| x == grant),
            None => grant == "client_credentials",
        }
    }
}

/// `simulator.oauth2` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2File {
    /// Path prefix (default `/oauth2`): the issuer is `{scheme}://{host}{path}`.
    #[serde(default)]
    pub path: Option<String>,
    /// The clients.
    #[serde(default)]
    pub clients: Vec<SimClient>,
    /// Server-wide faults.
    #[serde(default)]
    pub faults: ServerFaults,
}

/// Requests the simulated server received, by kind (for tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OAuth2Stats {
    /// Discovery documents served.
    pub discovery: u64,
    /// JWKS served.
    pub jwks: u64,
    /// Token requests, by client id (unknown clients under `?`).
    pub token_requests: HashMap<String, u64>,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Refresh tokens redeemed.
    pub refreshes: u64,
    /// Userinfo answers with a subject.
    pub userinfo: u64,
    /// Introspections.
    pub introspections: u64,
    /// Tokens revoked.
    pub revocations: u64,
    /// Interactive logins that reached the redirect URI with a code.
    pub logins: u64,
    /// Sessions ended by RP-initiated logout.
    pub logouts: u64,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> SigningKey {
        use base64::Engine as _;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ring makes P-256 keys");
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("a fresh P-256 key reads");
        let raw = pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let kid = format!("sim-{}", Alphanumeric.sample_string(&mut rand::rng(), 8));
        let jwk = json!({"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":kid,"x":b64(&raw[1..33]),"y":b64(&raw[33..65])});
        SigningKey { kid, encoding, jwk }
    }
}

struct Issued {
    client_id: String,
    sub: String,
    scope: String,
    exp: u64,
    revoked: bool,
    /// For an access token, the refresh token it came with.
    refresh: Option<String>,
    is_refresh: bool,
}

struct Inner {
    /// Newest first; the first signs.
    keys: Vec<SigningKey>,
    /// A key never published, for [`ClientFault::WrongKid`].
    hidden: SigningKey,
    tokens: HashMap<String, Issued>,
    order: VecDeque<String>,
    stats: OAuth2Stats,
    faults: ServerFaults,
    clients: HashMap<String, SimClient>,
    seen_assertions: HashSet<String>,
    /// Every token issued (access, refresh, ID) and client assertion received, newest last: for
    /// tests that search outputs for them.
    secrets_seen: VecDeque<String>,
    /// Interactive logins, codes and sessions.
    logins: login::Logins,
}

/// Tokens and assertions kept for [`Server::secrets_seen`].
const KEEP_SECRETS: usize = 1000;

/// The authorization server's state, shared by the HTTP and HTTPS listeners.
pub(crate) struct Server {
    path: String,
    public_keys: HashMap<String, DecodingKey>,
    accounts: Users,
    inner: Mutex<Inner>,
}

/// Looks a user up by name: the simulator's accounts.
pub(crate) type Users = Arc<dyn Fn(&str) -> Option<Account> + Send + Sync>;

/// A validated `simulator.oauth2` block.
#[derive(Debug, Clone)]
pub struct OAuth2Settings {
    /// Path prefix, starting with `/`.
    pub path: String,
    /// The clients.
    pub clients: Vec<SimClient>,
    /// Their private_key_jwt public keys (PEM), by client id.
    pub public_keys: HashMap<String, String>,
    /// Server-wide faults at start.
    pub faults: ServerFaults,
}

impl OAuth2Settings {
    /// These clients at `/oauth2`, no faults.
    pub fn new(clients: Vec<SimClient>) -> Self {
        OAuth2Settings {
            path: "/oauth2".to_owned(),
            clients,
            public_keys: HashMap::new(),
            faults: ServerFaults::default(),
        }
    }

    /// Validates a block read from `base_dir`'s file; problems are (field, message) pairs.
    pub fn from_file(file: OAuth2File, base_dir: &std::path::Path) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let path = file.path.unwrap_or_else(|| "/oauth2".to_owned());
        if !path.starts_with('/') {
            errors.push(("path".to_owned(), "must start with /".to_owned()));
        }
        let mut public_keys = HashMap::new();
        let mut ids = HashSet::new();
        for (i, c) in file.clients.iter().enumerate() {
            if !ids.insert(c.client_id.clone()) {
                errors.push((format!("clients[{i}].client_id"), format!("duplicate client {:?}", c.client_id)));
            }
            for g in c.grants.iter().flatten() {
                if !matches!(g.as_str(), "client_credentials" | "password" | "refresh_token" | "authorization_code") {
                    errors.push((format!("clients[{i}].grants"), format!("unknown grant {g:?}")));
                }
            }
            if let Some(f) = &c.public_key_file {
                let full = base_dir.join(f);
                match std::fs::read_to_string(&full) {
                    Ok(pem)
                        if DecodingKey::from_ec_pem(pem.as_bytes()).is_ok()
                            || DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok() =>
                    {
                        public_keys.insert(c.client_id.clone(), pem);
                    }
                    Ok(_) => errors.push((
                        format!("clients[{i}].public_key_file"),
                        format!("{}: not a PEM public key", full.display()),
                    )),
                    Err(e) => errors.push((
                        format!("clients[{i}].public_key_file"),
                        format!("cannot read {}: {e}", full.display()),
                    )),
                }
            }
        }
        if errors.is_empty() {
            Ok(OAuth2Settings {
                path: path.trim_end_matches('/').to_owned(),
                clients: file.clients,
                public_keys,
                faults: file.faults,
            })
        } else {
            Err(errors)
        }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Server {
    pub(crate) fn new(settings: &OAuth2Settings, accounts: Users) -> Self {
        crate::protocol::oauth2::crypto::install();
        let public_keys = settings
            .public_keys
            .iter()
            .filter_map(|(id, pem)| {
                let key =
                    DecodingKey::from_ec_pem(pem.as_bytes()).or_else(|_| DecodingKey::from_rsa_pem(pem.as_bytes()));
                Some((id.clone(), key.ok()?))
            })
            .collect();
        Server {
            path: settings.path.clone(),
            public_keys,
            accounts,
            inner: Mutex::new(Inner {
                keys: vec![SigningKey::generate()],
                hidden: SigningKey::generate(),
                tokens: HashMap::new(),
                order: VecDeque::new(),
                stats: OAuth2Stats::default(),
                faults: settings.faults,
                clients: settings.clients.iter().map(|c| (c.client_id.clone(), c.clone())).collect(),
                seen_assertions: HashSet::new(),
                secrets_seen: VecDeque::new(),
                logins: login::Logins::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new signing key, published beside the old ones (at most three kept).
    pub(crate) fn rotate_key(&self) {
        let mut inner = self.lock();
        inner.keys.insert(0, SigningKey::generate());
        inner.keys.truncate(3);
    }

    pub(crate) fn set_faults(&self, faults: ServerFaults) {
        self.lock().faults = faults;
    }

    pub(crate) fn update_client(&self, client_id: &str, change: impl FnOnce(&mut SimClient)) -> bool {
        self.lock().clients.get_mut(client_id).map(change).is_some()
    }

    /// The tokens issued and the client assertions received (the last thousand).
    pub(crate) fn secrets_seen(&self) -> Vec<String> {
        self.lock().secrets_seen.iter().cloned().collect()
    }

    fn keep_secret(inner: &mut Inner, secret: &str) {
        inner.secrets_seen.push_back(secret.to_owned());
        while inner.secrets_seen.len() > KEEP_SECRETS {
            inner.secrets_seen.pop_front();
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn stats(&self) -> OAuth2Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn router(self: &Arc<Self>, scheme: &'static str) -> Router {
        let p = &self.path;
        Router::new()
            .route(&format!("{p}/.well-known/openid-configuration"), get(discovery))
            .route(&format!("{p}/jwks"), get(jwks))
            .route(&format!("{p}/token"), post(token))
            .route(&format!("{p}/userinfo"), get(userinfo))
            .route(&format!("{p}/introspect"), post(introspect))
            .route(&format!("{p}/revoke"), post(revoke))
            .route(&format!("{p}/authorize"), get(login::authorize))
            .route(&format!("{p}/login-actions/authenticate"), get(login::show).post(login::submit))
            .route(&format!("{p}/logout"), get(login::logout))
            .route(&format!("{p}/logout/confirm"), post(login::confirm_logout))
            .with_state((self.clone(), scheme))
    }

    fn issuer(&self, scheme: &str, headers: &HeaderMap) -> String {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        format!("{scheme}://{host}{}", self.path)
    }

    /// Who the request's client is, if it authenticates: by Basic, by form secret, by a
    /// private_key_jwt assertion, or as a public client.
    fn authenticate(
        &self,
        issuer: &str,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<SimClient, &'static str> {
        use base64::Engine as _;
        let refused = |why: &'static str| Err(why);
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|pair| {
                let (id, secret) = pair.split_once(':')?;
                let dec = |s: &str| {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned())
                };
                Some((dec(id)?, dec(secret)?))
            });
        let (id, secret) = match basic {
            Some((id, secret)) => (id, Some(secret)),
            None => match form.get("client_id") {
                Some(id) => (id.clone(), form.get("client_secret").cloned()),
                None => return refused("no client authentication"),
            },
        };
        let inner = self.lock();
        let Some(client) = inner.clients.get(&id).cloned() else { return refused("unknown client") };
        drop(inner);
        if let Some(assertion) = form.get("client_assertion") {
            Self::keep_secret(&mut self.lock(), assertion);
            let Some(key) = self.public_keys.get(&id) else { return refused("the client has no key") };
            let alg = jsonwebtoken::decode_header(assertion).map(|h| h.alg).unwrap_or(Algorithm::ES256);
            let mut v = Validation::new(alg);
            let token_url = format!("{issuer}/token");
            v.set_audience(&[issuer, token_url.as_str()]);
            v.set_issuer(&[&id]);
            let Ok(data) = jsonwebtoken::decode::<Value>(assertion, key, &v) else {
                return refused("the client assertion does not verify");
            };
            let jti = data.claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned();
            if jti.is_empty() || !self.lock().seen_assertions.insert(jti) {
                return refused("the client assertion has no jti or was used before");
            }
            return Ok(client);
        }
        match (&client.client_secret, secret) {
            (Some(want), Some(got)) if want.expose_secret() == got => Ok(client),
            (None, None) if !self.public_keys.contains_key(&id) => Ok(client),
            _ => refused("client authentication failed"),
        }
    }

    /// The issuer a request reached, and its authenticated client or the 401 to answer.
    fn client_of(
        &self,
        scheme: &str,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<(String, SimClient), Box<Response>> {
        let issuer = self.issuer(scheme, headers);
        match self.authenticate(&issuer, headers, form) {
            Ok(client) => Ok((issuer, client)),
            Err(why) => Err(Box::new(invalid_client(why))),
        }
    }

    fn remember(&self, inner: &mut Inner, token: String, issued: Issued) {
        inner.tokens.insert(token.clone(), issued);
        inner.order.push_back(token);
        while inner.order.len() > MAX_TOKENS {
            if let Some(old) = inner.order.pop_front() {
                inner.tokens.remove(&old);
            }
        }
    }

    /// Issues tokens to `client` for `sub`.
    fn grant(
        &self,
        issuer: &str,
        client: &SimClient,
        sub: &str,
        form: &HashMap<String, String>,
        with_refresh: bool,
    ) -> Value {
        let scope = form.get("scope").cloned().unwrap_or_default();
        let lifetime = client.token_lifetime.unwrap_or(Duration::from_secs(3600)).as_secs();
        let t = now();
        let aud =
            form.get("audience").or_else(|| form.get("resource")).cloned().unwrap_or_else(|| client.client_id.clone());
        let mut inner = self.lock();
        let (exp, aud) = match client.fault {
            ClientFault::ExpiredToken => (t.saturating_sub(3600), aud),
            ClientFault::WrongAudience => (t + lifetime, "someone-else".to_owned()),
            _ => (t + lifetime, aud),
        };
        let jti = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let sign = |key: &SigningKey, claims: &Value| {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(key.kid.clone());
            jsonwebtoken::encode(&h, claims, &key.encoding).expect("the simulator signs its tokens")
        };
        let key = if client.fault == ClientFault::WrongKid { &inner.hidden } else { &inner.keys[0] };
        let access = if client.opaque_access_tokens {
            format!("simat-{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
        } else {
            let claims = json!({"iss":issuer,"sub":sub,"aud":aud,"client_id":client.client_id,"scope":scope,"iat":t,"exp":exp,"jti":jti});
            sign(key, &claims)
        };
        let id_token = scope.split_whitespace().any(|s| s == "openid").then(|| {
            let mut claims =
                json!({"iss":issuer,"sub":sub,"aud":client.client_id,"iat":t,"exp":t + lifetime,"auth_time":t});
            if let Some(n) = form.get("nonce") {
                claims["nonce"] = json!(n);
            }
            sign(&inner.keys[0], &claims)
        });
        let refresh = (with_refresh && client.allows("refresh_token"))
            .then(|| format!("simrt-{}", Alphanumeric.sample_string(&mut rand::rng(), 40)));
        let record = |is_refresh, refresh: Option<String>| Issued {
            client_id: client.client_id.clone(),
            sub: sub.to_owned(),
            scope: scope.clone(),
            exp: if is_refresh { t + 86_400 } else { exp },
            revoked: false,
            refresh,
            is_refresh,
        };
        self.remember(&mut inner, access.clone(), record(false, refresh.clone()));
        if let Some(r) = &refresh {
            self.remember(&mut inner, r.clone(), record(true, None));
        }
        inner.stats.tokens_issued += 1;
        for t in [Some(&access), refresh.as_ref(), id_token.as_ref()].into_iter().flatten() {
            Self::keep_secret(&mut inner, t);
        }
        let expires_in =
            if client.fault == ClientFault::StringExpiresIn { json!(lifetime.to_string()) } else { json!(lifetime) };
        let mut body = json!({"access_token":access,"token_type":"Bearer","expires_in":expires_in});
        if !scope.is_empty() {
            body["scope"] = json!(scope);
        }
        if let Some(r) = refresh {
            body["refresh_token"] = json!(r);
        }
        if let Some(id) = id_token {
            body["id_token"] = json!(id);
        }
        body
    }

    /// The record of an active access token.
    fn active(&self, token: &str) -> Option<(String, String, String)> {
        let inner = self.lock();
        let i = inner.tokens.get(token).filter(|i| !i.is_refresh && !i.revoked && i.exp > now())?;
        Some((i.client_id.clone(), i.sub.clone(), i.scope.clone()))
    }
}

type Ctx = State<(Arc<Server>, &'static str)>;

/// 401 `invalid_client`, as RFC 6749 §5.2 answers a client that failed to authenticate.
fn invalid_client(why: &str) -> Response {
    let body = json!({"error":"invalid_client","error_description":why});
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"sim\"")], Json(body)).into_response()
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, Json(json!({"error":code,"error_description":description}))).into_response()
}

async fn discovery(State((server, scheme)): Ctx, headers: HeaderMap) -> Response {
    let issuer = server.issuer(scheme, &headers);
    let faults = {
        let mut inner = server.lock();
        inner.stats.discovery += 1;
        inner.faults
    };
    if faults.discovery_error {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "discovery is down");
    }
    let said = if faults.issuer_mismatch { "https://elsewhere.example/oauth2".to_owned() } else { issuer.clone() };
    Json(json!({
        "issuer": said,
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "authorization_response_iss_parameter_supported": true,
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["client_credentials", "password", "refresh_token", "authorization_code"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access", "api"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }))
    .into_response()
}

async fn jwks(State((server, _)): Ctx) -> Response {
    let (delay, keys) = {
        let mut inner = server.lock();
        inner.stats.jwks += 1;
        (inner.faults.jwks_delay, inner.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>())
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    Json(json!({ "keys": keys })).into_response()
}

async fn token(
    State((server, scheme)): Ctx,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let issuer = server.issuer(scheme, &headers);
    let client = match server.authenticate(&issuer, &headers, &form) {
        Ok(c) => c,
        Err(why) => {
            *server.lock().stats.token_requests.entry("?".to_owned()).or_default() += 1;
            return invalid_client(why);
        }
    };
    *server.lock().stats.token_requests.entry(client.client_id.clone()).or_default() += 1;
    match client.fault {
        ClientFault::Stall => return std::future::pending().await,
        ClientFault::Html => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html><body>Sign in</body></html>")
                .into_response()
        }
        ClientFault::ServerError => return error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "try later"),
        ClientFault::TemporarilyUnavailable => {
            return error(StatusCode::BAD_REQUEST, "temporarily_unavailable", "the server is overloaded")
        }
        ClientFault::BareRefusal => return StatusCode::UNAUTHORIZED.into_response(),
        ClientFault::SlowDown => return error(StatusCode::TOO_MANY_REQUESTS, "slow_down", "too many requests"),
        _ => {}
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or_default();
    if grant.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "missing grant_type");
    }
    if !matches!(grant, "client_credentials" | "password" | "refresh_token" | "authorization_code") {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "unsupported grant_type");
    }
    if !client.allows(grant) {
        return error(StatusCode::BAD_REQUEST, "unauthorized_client", "the client may not use this grant");
    }
    if let Some(scope) = form.get("scope") {
        let known = ["openid", "profile", "email", "offline_access", "api"];
        if scope.split_whitespace().any(|s| !known.contains(&s)) {
            return error(StatusCode::BAD_REQUEST, "invalid_scope", "a requested scope is unknown");
        }
    }
    let body = match grant {
        "client_credentials" => server.grant(&issuer, &client, &client.client_id, &form, false),
        "authorization_code" => match login::redeem(&server, &client, &form) {
            Ok((sub, scope, nonce)) => {
                let mut form = form.clone();
                form.insert("scope".to_owned(), scope);
                form.extend(nonce.map(|n| ("nonce".to_owned(), n)));
                let mut body = server.grant(&issuer, &client, &sub, &form, true);
                if body.get("scope").is_some_and(|s| s == "") {
                    body.as_object_mut().map(|o| o.remove("scope"));
                }
                body
            }
            Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_grant", why),
        },
        "password" => {
            let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
                return error(StatusCode::BAD_REQUEST, "invalid_request", "username and password are required");
            };
            match (server.accounts)(username) {
                Some(a) if a.password.expose_secret() == password => {
                    if let Some(d) = a.delay {
                        tokio::time::sleep(d).await;
                    }
                    server.grant(&issuer, &client, username, &form, true)
                }
                _ => return error(StatusCode::BAD_REQUEST, "invalid_grant", "invalid resource owner credentials"),
            }
        }
        _ => {
            let Some(refresh) = form.get("refresh_token") else {
                return error(StatusCode::BAD_REQUEST, "invalid_request", "missing refresh_token");
            };
            let (sub, scope) = {
                let mut inner = server.lock();
                let Some(r) = inner
                    .tokens
                    .get_mut(refresh)
                    .filter(|r| r.is_refresh && !r.revoked && r.client_id == client.client_id)
                else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "the refresh token is invalid, expired or revoked",
                    );
                };
                // Rotation: a refresh token is good once.
                r.revoked = true;
                let found = (r.sub.clone(), r.scope.clone());
                inner.stats.refreshes += 1;
                found
            };
            let mut form = form.clone();
            form.insert("scope".to_owned(), scope);
            let mut body = server.grant(&issuer, &client, &sub, &form, true);
            if body.get("scope").is_some_and(|s| s == "") {
                body.as_object_mut().map(|o| o.remove("scope"));
            }
            body
        }
    };
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn userinfo(State((server, _)): Ctx, headers: HeaderMap) -> Response {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim().to_owned())
    });
    match token.and_then(|t| server.active(&t)) {
        Some((_, sub, scope)) if scope.split_whitespace().any(|s| s == "openid") => {
            server.lock().stats.userinfo += 1;
            Json(json!({"sub": sub})).into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            Json(json!({"error":"invalid_token"})),
        )
            .into_response(),
    }
}

async fn introspect(
    State((server, scheme)): Ctx,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (issuer, client) = match server.client_of(scheme, &headers, &form) {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    server.lock().stats.introspections += 1;
    let token = form.get("token").cloned().unwrap_or_default();
    match server.active(&token) {
        Some((owner, sub, scope)) if owner == client.client_id && client.fault != ClientFault::Inactive => {
            Json(json!({"active":true,"client_id":owner,"sub":sub,"scope":scope,"iss":issuer})).into_response()
        }
        _ => Json(json!({"active":false})).into_response(),
    }
}

async fn revoke(
    State((server, scheme)): Ctx,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, client) = match server.client_of(scheme, &headers, &form) {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let token = form.get("token").cloned().unwrap_or_default();
    let mut inner = server.lock();
    let mut revoked = Vec::new();
    if let Some(t) = inner.tokens.get_mut(&token).filter(|t| t.client_id == client.client_id && !t.revoked) {
        t.revoked = true;
        revoked.push(token.clone());
    }
    // Revoking a refresh token ends its grant: the access tokens issued with it go too.
    let children: Vec<String> = inner
        .tokens
        .iter()
        .filter(|(_, i)| i.refresh.as_deref() == Some(token.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    for c in children {
        if let Some(i) = inner.tokens.get_mut(&c).filter(|i| !i.revoked) {
            i.revoked = true;
            revoked.push(c);
        }
    }
    inner.stats.revocations += revoked.len() as u64;
    // RFC 7009 §2.2: 200 whether or not the token was known.
    StatusCode::OK.into_response()
}
