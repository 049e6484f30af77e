//! The OAuth 2.0 / OpenID Connect family: a token request at the authorization server's
//! `token_endpoint` by the probe's grant (client credentials or resource owner password), the
//! client authenticated as its target says; optionally the refresh token redeemed once, the
//! token checked (JWT against the JWKS, userinfo or introspection), and what was issued revoked.
//!
//! The endpoints come from the target or from discovery (`{issuer}/.well-known/openid-configuration`),
//! fetched with the JWKS per target, cached, refreshed every `discovery_refresh` and on an
//! unknown `kid` ([`discovery`]). [`config`] holds its fields and their validation; [`classify`]
//! and [`jwt`] are pure; [`flow`] makes the requests; [`names`] lists its steps and reasons.

pub mod classify;
pub mod config;
pub mod crypto;
pub mod discovery;
mod flow;
pub mod interactive;
pub mod jwt;
pub mod names;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use secrecy::SecretString;
use url::Url;

use super::family::{self, Family};
use super::outcome::{Finished, Scheme};
use super::run::Attempt;
use super::Step;

/// The OAuth 2.0 / OpenID Connect family, as registered.
pub struct OAuth2;

impl Family for OAuth2 {
    const NAME: &'static str = "oauth2";
    const STEPS: &'static [&'static str] = names::STEPS;
    const REASONS: &'static [&'static str] = names::REASONS;
    const STATUS: &'static Scheme = &super::http::STATUS;
    type Target = config::TargetFields;
    type Probe = config::ProbeFields;
}

/// How the client proves who it is (RFC 6749 §2.3, OpenID Connect Core §9).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form.
    ClientSecretPost,
    /// A JWT assertion signed with the client's private key (RFC 7523).
    PrivateKeyJwt(SigningKey),
    /// A public client: `client_id` only.
    None,
}

impl ClientAuth {
    /// The configuration's name of the method.
    pub fn name(&self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
            ClientAuth::None => "none",
        }
    }
}

/// The private key of a `private_key_jwt` client. Prints its algorithm and key id, never the key.
#[derive(Clone)]
pub struct SigningKey {
    key: EncodingKey,
    /// RS256 or ES256, from the key's type.
    pub algorithm: Algorithm,
    /// The `kid` of the assertions' header.
    pub key_id: Option<String>,
    /// The PEM it was read from: what tells two keys apart, and a secret to redact.
    pem: SecretString,
}

impl SigningKey {
    /// Reads a PEM private key: RSA (RS256) or P-256 (ES256). The error never quotes the key.
    pub fn from_pem(pem: &str, key_id: Option<String>) -> Result<SigningKey, String> {
        let (key, algorithm) = if let Ok(k) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
            (k, Algorithm::RS256)
        } else if let Ok(k) = EncodingKey::from_ec_pem(pem.as_bytes()) {
            (k, Algorithm::ES256)
        } else {
            return Err("not a PEM RSA or P-256 private key".to_owned());
        };
        Ok(SigningKey { key, algorithm, key_id, pem: SecretString::from(pem.to_owned()) })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The endpoints a target names itself; discovery fills in the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// `token_endpoint`: with it, no discovery document is fetched.
    pub token: Option<Url>,
    /// `jwks_uri`.
    pub jwks: Option<Url>,
    /// `userinfo_endpoint`.
    pub userinfo: Option<Url>,
    /// `introspection_endpoint`.
    pub introspection: Option<Url>,
    /// `revocation_endpoint`.
    pub revocation: Option<Url>,
    /// `authorization_endpoint`: where an interactive login starts.
    pub authorization: Option<Url>,
    /// `end_session_endpoint`: where an interactive login's session ends.
    pub end_session: Option<Url>,
}

/// An authorization server and the client authprobe is at it. Shared by the probes of one
/// target, with what discovery learnt of it.
#[derive(Debug)]
pub struct OAuth2Target {
    /// The issuer: where discovery starts, and the `iss` tokens must carry.
    pub issuer: Option<Url>,
    /// Endpoints set in the configuration.
    pub endpoints: Endpoints,
    /// `client_id`.
    pub client_id: String,
    /// The client secret, for `client_secret_basic` and `client_secret_post`.
    pub client_secret: Option<SecretString>,
    /// How the client authenticates.
    pub client_auth: ClientAuth,
    /// How long a fetched discovery document and JWKS are used before being fetched again.
    pub discovery_refresh: Duration,
    /// Clock skew tolerated in `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Where a login starts: the issuer, else the token endpoint.
    start: Url,
    /// What discovery learnt (runtime state, not configuration).
    pub(crate) discovered: discovery::Cache,
}

/// An OAuth 2.0 target with neither an issuer nor a token endpoint.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("an OAuth 2.0 target needs an issuer or a token endpoint")]
pub struct NoEndpoint;

impl OAuth2Target {
    /// A target with nothing discovered yet. It needs an issuer (for discovery) or a token
    /// endpoint: without either there is nowhere to log in.
    pub fn new(
        issuer: Option<Url>,
        endpoints: Endpoints,
        client_id: String,
        client_secret: Option<SecretString>,
        client_auth: ClientAuth,
        discovery_refresh: Duration,
        leeway: Duration,
    ) -> Result<Self, NoEndpoint> {
        let start = issuer.clone().or_else(|| endpoints.token.clone()).ok_or(NoEndpoint)?;
        Ok(OAuth2Target {
            issuer,
            endpoints,
            client_id,
            client_secret,
            client_auth,
            discovery_refresh,
            leeway,
            start,
            discovered: discovery::Cache::default(),
        })
    }

    /// Whether the token endpoint comes from discovery.
    pub fn discovers(&self) -> bool {
        self.endpoints.token.is_none() && self.issuer.is_some()
    }

    /// The URL a login starts at: the issuer, else the token endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.start
    }

    /// Whether `other` is the same server and client with the same secrets.
    pub fn same_as(&self, other: &OAuth2Target) -> bool {
        let key = |a: &ClientAuth| match a {
            ClientAuth::PrivateKeyJwt(k) => Some((k.pem.clone(), k.key_id.clone())),
            _ => None,
        };
        let keys_same = match (key(&self.client_auth), key(&other.client_auth)) {
            (None, None) => true,
            (Some((a, ka)), Some((b, kb))) => crate::protocol::same_secret(&a, &b) && ka == kb,
            _ => false,
        };
        let secrets_same = match (&self.client_secret, &other.client_secret) {
            (None, None) => true,
            (Some(a), Some(b)) => crate::protocol::same_secret(a, b),
            _ => false,
        };
        self.issuer == other.issuer
            && self.endpoints == other.endpoints
            && self.client_id == other.client_id
            && self.client_auth.name() == other.client_auth.name()
            && keys_same
            && secrets_same
            && self.discovery_refresh == other.discovery_refresh
            && self.leeway == other.leeway
    }
}

impl family::Target for OAuth2Target {
    fn secrets(&self) -> Vec<&SecretString> {
        let mut out: Vec<&SecretString> = self.client_secret.iter().collect();
        if let ClientAuth::PrivateKeyJwt(k) = &self.client_auth {
            out.push(&k.pem);
        }
        out
    }
}

/// The grant a probe logs in with.
#[derive(Debug, Clone)]
pub enum Grant {
    /// `client_credentials`: the client for itself.
    ClientCredentials,
    /// `password`: resource owner password credentials, for a user.
    Password {
        /// `username`.
        username: String,
        /// `password`.
        password: SecretString,
    },
    /// `authorization_code`: a person's login through the identity provider's pages.
    AuthorizationCode(Box<interactive::Interactive>),
}

impl Grant {
    /// The configuration's name of the grant.
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::Password { .. } => "password",
            Grant::AuthorizationCode(_) => "authorization_code",
        }
    }
}

/// How a probe checks the token it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validate {
    /// Not at all.
    No,
    /// Verify the access token (or the ID token, when the access token is opaque) against the JWKS.
    Jwt,
    /// `GET userinfo_endpoint` with the token must answer a `sub`.
    Userinfo,
    /// RFC 7662 introspection must say `active: true`.
    Introspection,
}

impl Validate {
    /// The configuration's name.
    pub fn name(self) -> &'static str {
        match self {
            Validate::No => "false",
            Validate::Jwt => "jwt",
            Validate::Userinfo => "userinfo",
            Validate::Introspection => "introspection",
        }
    }
}

/// An OAuth 2.0 login: at which server, by which grant, and what to do with the token.
#[derive(Debug, Clone)]
pub struct OAuth2Login {
    /// The server and client, shared with the other probes of the target.
    pub target: Arc<OAuth2Target>,
    /// The grant.
    pub grant: Grant,
    /// `scope`, space-separated.
    pub scope: Option<String>,
    /// `audience` (as Auth0 and others name the API a token is for).
    pub audience: Option<String>,
    /// `resource` (RFC 8707).
    pub resource: Option<String>,
    /// How the token is checked.
    pub validate: Validate,
    /// Redeem the refresh token once.
    pub refresh: bool,
    /// Revoke what was issued (RFC 7009).
    pub revoke: bool,
}

impl OAuth2Login {
    /// Whether `openid` is among the scopes asked.
    pub fn asks_openid(&self) -> bool {
        self.scope.as_deref().is_some_and(|s| s.split_whitespace().any(|w| w == "openid"))
    }

    /// The audience an access token must name: the probe's `audience` or `resource`, else the
    /// client id.
    pub fn expected_audience(&self) -> &str {
        self.audience.as_deref().or(self.resource.as_deref()).unwrap_or(&self.target.client_id)
    }
}

impl family::Login for OAuth2Login {
    fn run<'a>(&'a self, attempt: &'a mut Attempt<'_>) -> impl std::future::Future<Output = Finished> + Send + 'a {
        flow::run(attempt, self)
    }

    fn endpoint(&self) -> &Url {
        self.target.endpoint()
    }

    /// Grant, user and password, the server, client id, how it authenticates and with which
    /// secret or key.
    fn credentials(&self) -> Vec<Option<&str>> {
        use secrecy::ExposeSecret as _;
        let t = &*self.target;
        let (grant, user, password) = match &self.grant {
            Grant::ClientCredentials => ("client_credentials", None, None),
            Grant::Password { username, password } => {
                ("password", Some(username.as_str()), Some(password.expose_secret()))
            }
            Grant::AuthorizationCode(i) => {
                ("authorization_code", Some(i.username.as_str()), Some(i.password.expose_secret()))
            }
        };
        let (pem, key_id) = match &t.client_auth {
            ClientAuth::PrivateKeyJwt(k) => (Some(k.pem.expose_secret()), k.key_id.as_deref()),
            _ => (None, None),
        };
        let mut out = vec![
            Some(grant),
            user,
            password,
            t.issuer.as_ref().map(Url::as_str),
            t.endpoints.token.as_ref().map(Url::as_str),
            Some(t.client_id.as_str()),
            Some(t.client_auth.name()),
            t.client_secret.as_ref().map(|s| s.expose_secret()),
            pem,
            key_id,
        ];
        // Appended, so that the other grants' digests stay those of earlier releases.
        if let Grant::AuthorizationCode(i) = &self.grant {
            out.push(i.totp.as_ref().map(|t| t.text().expose_secret()));
            out.push(t.endpoints.authorization.as_ref().map(Url::as_str));
        }
        out
    }

    fn same_settings(&self, other: &OAuth2Login) -> bool {
        self.credentials() == other.credentials()
            && self.target.same_as(&other.target)
            && self.scope == other.scope
            && self.audience == other.audience
            && self.resource == other.resource
            && self.validate == other.validate
            && self.refresh == other.refresh
            && self.revoke == other.revoke
            && match (&self.grant, &other.grant) {
                (Grant::AuthorizationCode(a), Grant::AuthorizationCode(b)) => a.same_settings(b),
                _ => true,
            }
    }

    fn secrets(&self) -> Vec<&SecretString> {
        let mut out = family::Target::secrets(&*self.target);
        match &self.grant {
            Grant::Password { password, .. } => out.push(password),
            Grant::AuthorizationCode(i) => {
                out.push(&i.password);
                out.extend(i.totp.as_ref().map(|t| t.text()));
            }
            Grant::ClientCredentials => {}
        }
        out
    }

    fn sends(&self, step: Step) -> bool {
        let interactive = match &self.grant {
            Grant::AuthorizationCode(i) => Some(i),
            _ => None,
        };
        match step {
            names::TOKEN => true,
            // Those a healthy run always meets; a username page, a consent page are the IdP's.
            names::AUTHORIZE | names::PASSWORD => interactive.is_some(),
            names::OTP => interactive.is_some_and(|i| i.totp.is_some()),
            names::LOGOUT => interactive.is_some_and(|i| i.logout),
            names::DISCOVERY => {
                let endpoints = &self.target.endpoints;
                let browser = interactive.is_some_and(|i| {
                    endpoints.authorization.is_none() || (i.logout && endpoints.end_session.is_none())
                });
                self.target.discovers() || (browser && self.target.issuer.is_some())
            }
            names::JWKS => self.validate == Validate::Jwt,
            names::REFRESH => self.refresh,
            // A JWT is checked without a request.
            names::TOKEN_VALIDATION => matches!(self.validate, Validate::Userinfo | Validate::Introspection),
            names::REVOCATION => self.revoke,
            // A refreshing probe holds a refresh token to revoke; another shows the step when
            // it first has one.
            names::REFRESH_REVOCATION => self.revoke && self.refresh,
            _ => false,
        }
    }

    fn ends_session(&self) -> bool {
        self.revoke || matches!(&self.grant, Grant::AuthorizationCode(i) if i.logout)
    }

    fn single_request(&self) -> bool {
        !self.target.discovers()
            && self.validate == Validate::No
            && !self.refresh
            && !self.revoke
            && !matches!(self.grant, Grant::AuthorizationCode(_))
    }

    fn summary(&self, timeout: &str) -> String {
        let interactive = match &self.grant {
            Grant::AuthorizationCode(i) => format!(
                " totp={} consent={} logout={}",
                i.totp.is_some(),
                if i.consent == interactive::Consent::Approve { "approve" } else { "fail" },
                i.logout
            ),
            _ => String::new(),
        };
        format!(
            "protocol=oauth2 grant={} client_auth={} validate={} refresh={} revoke={}{interactive} timeout={timeout}",
            self.grant.name(),
            self.target.client_auth.name(),
            self.validate.name(),
            self.refresh,
            self.revoke
        )
    }
}
