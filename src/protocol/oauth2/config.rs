//! An OAuth 2.0 target's and probe's fields as written in probes.yaml, their defaults, and
//! their validation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::interactive::page::{self, Hints};
use super::interactive::totp::Totp;
use super::interactive::{Consent, Interactive};
use super::{ClientAuth, Endpoints, Grant, OAuth2Login, OAuth2Target, SigningKey, Validate};
use crate::duration::serde_prom;
use crate::protocol::family::{self, FlagOrWord, Secret, Validator};
use crate::protocol::http;

/// Age at which a target's discovery document and JWKS are fetched again, unless told otherwise.
pub const DEFAULT_DISCOVERY_REFRESH: Duration = Duration::from_secs(300);
/// Clock skew tolerated when checking a JWT's times, unless told otherwise.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);

/// An OAuth 2.0 target's own fields: the authorization server and the client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFields {
    issuer: Option<String>,
    token_endpoint: Option<String>,
    jwks_uri: Option<String>,
    userinfo_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    authorization_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    client_secret_file: Option<PathBuf>,
    client_auth: Option<String>,
    client_key_file: Option<PathBuf>,
    client_key_id: Option<String>,
    #[serde(default, with = "serde_prom::option")]
    discovery_refresh: Option<Duration>,
    #[serde(default, with = "serde_prom::option")]
    jwt_leeway: Option<Duration>,
}

/// An OAuth 2.0 probe's own fields: the grant and what to do with the token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFields {
    grant: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    password_file: Option<PathBuf>,
    scope: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    validate: Option<FlagOrWord>,
    refresh: Option<bool>,
    revoke: Option<bool>,
    redirect_uri: Option<String>,
    totp_secret: Option<SecretString>,
    totp_secret_file: Option<PathBuf>,
    consent: Option<String>,
    logout: Option<bool>,
    login: Option<LoginFields>,
}

/// `login:` of an interactive probe: where a login page defeats the defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFields {
    form: Option<String>,
    username_field: Option<String>,
    password_field: Option<String>,
    otp_field: Option<String>,
    allowed_origins: Option<Vec<String>>,
}

/// The OAuth 2.0 fields of `defaults:`: none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultFields {}

impl family::TargetFields for TargetFields {
    type Target = OAuth2Target;
    const SECRETS: &'static [&'static str] = &["client_secret"];

    fn validate(self, v: &mut dyn Validator) -> Option<OAuth2Target> {
        let before = v.errors();
        let mut url =
            |field: &str, raw: &Option<String>| raw.as_deref().and_then(|r| v.url(field, r, &["http", "https"]));
        let issuer = url("issuer", &self.issuer);
        let endpoints = Endpoints {
            token: url("token_endpoint", &self.token_endpoint),
            jwks: url("jwks_uri", &self.jwks_uri),
            userinfo: url("userinfo_endpoint", &self.userinfo_endpoint),
            introspection: url("introspection_endpoint", &self.introspection_endpoint),
            revocation: url("revocation_endpoint", &self.revocation_endpoint),
            authorization: url("authorization_endpoint", &self.authorization_endpoint),
            end_session: url("end_session_endpoint", &self.end_session_endpoint),
        };
        if self.issuer.is_none() && self.token_endpoint.is_none() {
            v.error("issuer", "missing: set issuer (for discovery) or token_endpoint".to_owned());
        }
        let client_id = v.required_text("client_id", self.client_id.as_deref(), "an oauth2 target needs client_id");
        let method = self.client_auth.as_deref().map(str::trim).unwrap_or("client_secret_basic");
        let has_secret = self.client_secret.is_some() || self.client_secret_file.is_some();
        let auth = match method {
            "client_secret_basic" | "client_secret_post" => {
                if self.client_key_file.is_some() {
                    v.error("client_key_file", format!("not used with client_auth: {method}"));
                }
                Some(if method == "client_secret_basic" {
                    ClientAuth::ClientSecretBasic
                } else {
                    ClientAuth::ClientSecretPost
                })
            }
            "none" | "private_key_jwt" => {
                if has_secret {
                    let field = if self.client_secret.is_some() { "client_secret" } else { "client_secret_file" };
                    v.error(field, format!("not used with client_auth: {method}"));
                }
                if method == "none" {
                    if self.client_key_file.is_some() {
                        v.error("client_key_file", "not used with client_auth: none".to_owned());
                    }
                    Some(ClientAuth::None)
                } else {
                    match &self.client_key_file {
                        None => {
                            v.error("client_key_file", "missing: private_key_jwt needs client_key_file".to_owned());
                            None
                        }
                        Some(file) => {
                            let full = v.path(file);
                            let key = v.read_file("client_key_file", file).and_then(|pem| {
                                SigningKey::from_pem(&pem, self.client_key_id.clone())
                                    .map_err(|e| v.error("client_key_file", format!("{}: {e}", full.display())))
                                    .ok()
                            });
                            key.map(ClientAuth::PrivateKeyJwt)
                        }
                    }
                }
            }
            other => {
                v.error(
                    "client_auth",
                    format!(
                        "unknown method {other:?}: use client_secret_basic, client_secret_post, private_key_jwt or none"
                    ),
                );
                None
            }
        };
        let needs_secret = matches!(auth, Some(ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost));
        let client_secret = if needs_secret {
            v.secret("client_secret", Secret::required(self.client_secret.as_ref(), self.client_secret_file.as_deref()))
        } else {
            None
        };
        if self.client_key_id.is_some() && method != "private_key_jwt" {
            v.error("client_key_id", "only with client_auth: private_key_jwt".to_owned());
        }
        let discovery_refresh = self.discovery_refresh.unwrap_or(DEFAULT_DISCOVERY_REFRESH);
        if discovery_refresh.is_zero() {
            v.error("discovery_refresh", "must be greater than 0s".to_owned());
        }
        let leeway = self.jwt_leeway.unwrap_or(DEFAULT_JWT_LEEWAY);
        if v.errors() != before {
            return None;
        }
        let target = OAuth2Target::new(issuer, endpoints, client_id?, client_secret, auth?, discovery_refresh, leeway);
        // Without an issuer or a token endpoint it was refused above, with its place.
        let target = target.ok()?;
        let field = if target.issuer.is_some() { "issuer" } else { "token_endpoint" };
        http::no_tls_to_plain(v, field, target.endpoint());
        Some(target)
    }
}

impl family::ProbeFields for ProbeFields {
    type Target = OAuth2Target;
    type Defaults = DefaultFields;
    type Login = OAuth2Login;
    const SECRETS: &'static [&'static str] = &["password", "totp_secret"];
    const HINTS: &'static [(&'static str, &'static str)] = &[
        ("pin", "an oauth2 login's one-time codes come from totp_secret"),
        ("verification_code", "an oauth2 login's one-time codes come from totp_secret"),
    ];

    fn validate(self, _: &DefaultFields, server: &Arc<OAuth2Target>, v: &mut dyn Validator) -> Option<OAuth2Login> {
        let before = v.errors();
        let interactive_field = self.has_interactive_fields();
        let grant = match (self.grant.as_deref().map(str::trim), interactive_field) {
            (Some(g @ ("client_credentials" | "password")), Some(field)) => {
                v.error(field, format!("only with grant: authorization_code, not grant: {g}"));
                None
            }
            (Some("authorization_code"), _) => {
                self.interactive(server, v).map(|i| Grant::AuthorizationCode(Box::new(i)))
            }
            (Some("client_credentials"), _) => {
                for (field, set) in [
                    ("username", self.username.is_some()),
                    ("password", self.password.is_some()),
                    ("password_file", self.password_file.is_some()),
                ] {
                    if set {
                        v.error(
                            field,
                            "not used with grant: client_credentials (the client logs in for itself)".to_owned(),
                        );
                    }
                }
                if self.refresh == Some(true) {
                    v.error(
                        "refresh",
                        "grant: client_credentials issues no refresh token (RFC 6749 §4.4.3); set refresh: false"
                            .to_owned(),
                    );
                }
                Some(Grant::ClientCredentials)
            }
            (Some("password"), _) => {
                let username = v.required_text("username", self.username.as_deref(), "grant: password needs username");
                let password =
                    v.secret("password", Secret::required(self.password.as_ref(), self.password_file.as_deref()));
                match (username, password) {
                    (Some(username), Some(password)) => Some(Grant::Password { username, password }),
                    _ => None,
                }
            }
            (Some(other), _) => {
                v.error(
                    "grant",
                    format!("unknown grant {other:?}: use client_credentials, password or authorization_code"),
                );
                None
            }
            (None, _) => {
                v.error(
                    "grant",
                    "missing: an oauth2 probe needs grant (client_credentials, password or authorization_code)"
                        .to_owned(),
                );
                None
            }
        };
        let scope = v.text("scope", self.scope.as_deref());
        let audience = v.text("audience", self.audience.as_deref());
        let resource = v.text("resource", self.resource.as_deref());
        if let Some(r) = &resource {
            // RFC 8707 §2: an absolute URI without a fragment.
            if Url::parse(r).map_or(true, |u| u.fragment().is_some()) {
                v.error("resource", "must be an absolute URI without a fragment (RFC 8707)".to_owned());
            }
        }
        let validate = match &self.validate {
            None | Some(FlagOrWord::Flag(false)) => Validate::No,
            Some(FlagOrWord::Word(m)) if m.trim() == "jwt" => Validate::Jwt,
            Some(FlagOrWord::Word(m)) if m.trim() == "userinfo" => Validate::Userinfo,
            Some(FlagOrWord::Word(m)) if m.trim() == "introspection" => Validate::Introspection,
            Some(FlagOrWord::Word(m)) if m.trim() == "false" => Validate::No,
            Some(other) => {
                let shown = match other {
                    FlagOrWord::Flag(f) => f.to_string(),
                    FlagOrWord::Word(m) => format!("{m:?}"),
                };
                v.error("validate", format!("{shown} is not a method: use jwt, userinfo, introspection or false"));
                Validate::No
            }
        };
        let discovers = server.discovers();
        let openid = scope.as_deref().is_some_and(|s| s.split_whitespace().any(|w| w == "openid"));
        let missing = |own: &Option<Url>| own.is_none() && !discovers;
        let problem = match validate {
            Validate::Userinfo if !openid => Some("validate: userinfo needs the openid scope: add openid to scope"),
            Validate::Userinfo if missing(&server.endpoints.userinfo) => {
                Some("validate: userinfo, but the target has neither issuer discovery nor userinfo_endpoint")
            }
            Validate::Introspection if missing(&server.endpoints.introspection) => {
                Some("validate: introspection, but the target has neither issuer discovery nor introspection_endpoint")
            }
            Validate::Jwt if server.issuer.is_none() => {
                Some("validate: jwt needs the target's issuer (the iss every token must carry)")
            }
            Validate::Jwt if missing(&server.endpoints.jwks) => {
                Some("validate: jwt, but the target has neither issuer discovery nor jwks_uri")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            v.error("validate", problem.to_owned());
        }
        let refresh = self.refresh.unwrap_or(false);
        let revoke = self.revoke.unwrap_or(false);
        if revoke && missing(&server.endpoints.revocation) {
            v.error("revoke", "the target has neither issuer discovery nor revocation_endpoint".to_owned());
        }
        if v.errors() != before {
            return None;
        }
        Some(OAuth2Login {
            target: server.clone(),
            grant: grant?,
            scope,
            audience,
            resource,
            validate,
            refresh,
            revoke,
        })
    }
}

impl ProbeFields {
    /// The first field set that only an interactive login takes.
    fn has_interactive_fields(&self) -> Option<&'static str> {
        [
            ("redirect_uri", self.redirect_uri.is_some()),
            ("totp_secret", self.totp_secret.is_some()),
            ("totp_secret_file", self.totp_secret_file.is_some()),
            ("consent", self.consent.is_some()),
            ("logout", self.logout.is_some()),
            ("login", self.login.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }

    /// The fields of `grant: authorization_code`.
    fn interactive(&self, server: &OAuth2Target, v: &mut dyn Validator) -> Option<Interactive> {
        let before = v.errors();
        let username =
            v.required_text("username", self.username.as_deref(), "grant: authorization_code needs username");
        let password = v.secret("password", Secret::required(self.password.as_ref(), self.password_file.as_deref()));
        let redirect_uri = match self.redirect_uri.as_deref() {
            None => {
                v.error(
                    "redirect_uri",
                    "missing: grant: authorization_code needs the redirect_uri registered for the client".to_owned(),
                );
                None
            }
            Some(raw) => v.expand("redirect_uri", raw).and_then(|text| match Url::parse(text.trim()) {
                // RFC 6749 §3.1.2: absolute, without a fragment.
                Ok(u) if u.fragment().is_none() => Some(u),
                Ok(_) => {
                    v.error("redirect_uri", "must not have a fragment (RFC 6749 §3.1.2)".to_owned());
                    None
                }
                Err(e) => {
                    v.error("redirect_uri", format!("invalid URL: {e}"));
                    None
                }
            }),
        };
        let totp = v
            .secret("totp_secret", Secret::optional(self.totp_secret.as_ref(), self.totp_secret_file.as_deref()))
            .and_then(|secret| {
                use secrecy::ExposeSecret as _;
                let field = if self.totp_secret.is_some() { "totp_secret" } else { "totp_secret_file" };
                Totp::parse(secret.expose_secret()).map_err(|e| v.error(field, e.to_string())).ok()
            });
        let consent = match self.consent.as_deref().map(str::trim) {
            None | Some("fail") => Consent::Fail,
            Some("approve") => Consent::Approve,
            Some(other) => {
                let shown: String = other.chars().take(40).collect();
                v.error("consent", format!("{shown:?} is not a choice: use approve or fail"));
                Consent::Fail
            }
        };
        let logout = self.logout.unwrap_or(false);
        if logout && server.issuer.is_none() && server.endpoints.end_session.is_none() {
            v.error("logout", "the target has neither issuer discovery nor end_session_endpoint".to_owned());
        }
        if server.issuer.is_none() && server.endpoints.authorization.is_none() {
            v.error(
                "grant",
                "grant: authorization_code needs the target's issuer (discovery) or authorization_endpoint".to_owned(),
            );
        }
        let mut hints = Hints::default();
        let mut allowed_origins = Vec::new();
        if let Some(login) = &self.login {
            if let Some(form) = &login.form {
                if !page::valid_selector(form) {
                    v.error("login.form", "not a CSS selector".to_owned());
                }
                hints.form = Some(form.clone());
            }
            for (field, value, slot) in [
                ("login.username_field", &login.username_field, &mut hints.username_field),
                ("login.password_field", &login.password_field, &mut hints.password_field),
                ("login.otp_field", &login.otp_field, &mut hints.otp_field),
            ] {
                if let Some(name) = value {
                    if name.trim().is_empty() {
                        v.error(field, "must not be empty".to_owned());
                    }
                    *slot = Some(name.trim().to_owned());
                }
            }
            for (i, raw) in login.allowed_origins.iter().flatten().enumerate() {
                let field = format!("login.allowed_origins[{i}]");
                match Url::parse(raw.trim()) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        allowed_origins.push(u.origin())
                    }
                    _ => v.error(&field, "must be an http(s) origin such as https://login.example.com".to_owned()),
                }
            }
        }
        if v.errors() != before {
            return None;
        }
        Some(Interactive {
            username: username?,
            password: password?,
            totp,
            redirect_uri: redirect_uri?,
            consent,
            logout,
            hints,
            allowed_origins,
        })
    }
}
