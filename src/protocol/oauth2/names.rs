//! The OAuth 2.0 family's steps and reasons, and what its results mean to the lockout guard.

use crate::protocol::{Lockout, Reason, ResultClass, Step};

/// Fetching the discovery document, in a run that needed it.
pub const DISCOVERY: Step = Step::named("Discovery");
/// Fetching the key set (JWKS) that a JWT's signature is checked against.
pub const JWKS: Step = Step::named("JWKS");
/// The token request of the probe's grant.
pub const TOKEN: Step = Step::named("Token");
/// Redeeming the refresh token once.
pub const REFRESH: Step = Step::named("Refresh");
/// authprobe's check of the token: JWT signature and claims, userinfo or introspection.
pub const TOKEN_VALIDATION: Step = Step::named("TokenValidation");
/// Revoking the access token (RFC 7009), like ETNA's logout.
pub const REVOCATION: Step = Step::named("Revocation");
/// Revoking the refresh token, when one was issued.
pub const REFRESH_REVOCATION: Step = Step::named("RefreshRevocation");
/// An interactive login's first request at the authorization endpoint, and its redirects.
pub const AUTHORIZE: Step = Step::named("Authorize");
/// Posting the username alone (an identifier-first login), and the redirects after it.
pub const USERNAME: Step = Step::named("Username");
/// Posting the password (with the username on one-page logins), and the redirects after it.
pub const PASSWORD: Step = Step::named("Password");
/// Posting a one-time code, and the redirects after it.
pub const OTP: Step = Step::named("OTP");
/// Approving the consent page, and the redirects after it.
pub const CONSENT: Step = Step::named("Consent");
/// Ending the identity provider's session (`end_session_endpoint`) after an interactive login.
pub const LOGOUT: Step = Step::named("Logout");

/// `error`: `invalid_request` (RFC 6749 §5.2).
pub const INVALID_REQUEST: Reason = Reason::named("invalid_request");
/// `error`: `invalid_client`.
pub const INVALID_CLIENT: Reason = Reason::named("invalid_client");
/// `error`: `invalid_grant` (wrong password, expired or revoked refresh token).
pub const INVALID_GRANT: Reason = Reason::named("invalid_grant");
/// `error`: `unauthorized_client`.
pub const UNAUTHORIZED_CLIENT: Reason = Reason::named("unauthorized_client");
/// `error`: `unsupported_grant_type`.
pub const UNSUPPORTED_GRANT_TYPE: Reason = Reason::named("unsupported_grant_type");
/// `error`: `invalid_scope`.
pub const INVALID_SCOPE: Reason = Reason::named("invalid_scope");
/// `error`: `temporarily_unavailable`.
pub const TEMPORARILY_UNAVAILABLE: Reason = Reason::named("temporarily_unavailable");
/// HTTP 429.
pub const TOO_MANY_REQUESTS: Reason = Reason::named("too_many_requests");
/// Token validation: the JWT's signature does not verify, or its algorithm is refused.
pub const BAD_SIGNATURE: Reason = Reason::named("bad_signature");
/// Token validation: the JWT names a key the JWKS does not have, even after a refresh.
pub const UNKNOWN_KEY: Reason = Reason::named("unknown_key");
/// Token validation: the JWT has expired (`exp`).
pub const EXPIRED: Reason = Reason::named("expired");
/// Token validation: the JWT is not valid yet (`nbf`, or `iat` in the future).
pub const NOT_YET_VALID: Reason = Reason::named("not_yet_valid");
/// Token validation: `iss` is not the target's issuer.
pub const WRONG_ISSUER: Reason = Reason::named("wrong_issuer");
/// Token validation: `aud` does not name the expected audience.
pub const WRONG_AUDIENCE: Reason = Reason::named("wrong_audience");
/// Token validation: introspection says the token is not active.
pub const INACTIVE: Reason = Reason::named("inactive");
/// Token validation: the userinfo endpoint refused the token or named no subject.
pub const USERINFO_DENIED: Reason = Reason::named("userinfo_denied");
/// The discovery document or the JWKS could not be fetched or read.
pub const DISCOVERY_FAILED: Reason = Reason::named("discovery_failed");
/// A token request refused with a bare 400, 401 or 403 and no OAuth 2.0 error: some servers
/// answer a wrong password or secret so.
pub const REFUSED: Reason = Reason::named("refused");
/// Interactive login: the identity provider asked again for a credential given in this run
/// (the password, or the username of an identifier-first login that starts over).
pub const INVALID_CREDENTIALS: Reason = Reason::named("invalid_credentials");
/// Interactive login: the one-time code form came back after a code was sent.
pub const INVALID_OTP: Reason = Reason::named("invalid_otp");
/// Interactive login: a consent page with `consent: fail`.
pub const CONSENT_REQUIRED: Reason = Reason::named("consent_required");
/// Interactive login: the identity provider restarted the login after the password was taken,
/// or refused a form of the login in progress (a timeout, a lost cookie).
pub const SESSION_EXPIRED: Reason = Reason::named("session_expired");
/// Interactive login: no form of the page asks for what the probe holds (the page changed).
pub const LOGIN_FORM_NOT_FOUND: Reason = Reason::named("login_form_not_found");
/// Interactive login: a form would send a credential to an origin other than the issuer's (or
/// from https to http); nothing was sent.
pub const FOREIGN_ORIGIN: Reason = Reason::named("foreign_origin");
/// Interactive login: the authorization response's `state` is not the run's.
pub const STATE_MISMATCH: Reason = Reason::named("state_mismatch");
/// `error` on the redirect: `access_denied`.
pub const ACCESS_DENIED: Reason = Reason::named("access_denied");
/// `error` on the redirect: `login_required`.
pub const LOGIN_REQUIRED: Reason = Reason::named("login_required");
/// `error` on the redirect: `interaction_required`.
pub const INTERACTION_REQUIRED: Reason = Reason::named("interaction_required");
/// `error` on the redirect: `server_error`.
pub const SERVER_ERROR: Reason = Reason::named("server_error");
/// Token validation: the ID token's `nonce` is not the one the interactive login sent.
pub const NONCE_MISMATCH: Reason = Reason::named("nonce_mismatch");
/// Interactive login: more pages or redirects than a login takes (a loop).
pub const TOO_MANY_PAGES: Reason = Reason::named("too_many_pages");

/// Every step, in the order a probe's step series are written.
pub(super) const STEPS: &[&str] = &[
    "Discovery",
    "JWKS",
    "Token",
    "Refresh",
    "TokenValidation",
    "Revocation",
    "RefreshRevocation",
    "Authorize",
    "Username",
    "Password",
    "OTP",
    "Consent",
    "Logout",
];

/// Every reason.
pub(super) const REASONS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "temporarily_unavailable",
    "too_many_requests",
    "bad_signature",
    "unknown_key",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "inactive",
    "userinfo_denied",
    "discovery_failed",
    "refused",
    "invalid_credentials",
    "invalid_otp",
    "consent_required",
    "session_expired",
    "login_form_not_found",
    "foreign_origin",
    "state_mismatch",
    "access_denied",
    "login_required",
    "interaction_required",
    "server_error",
    "too_many_pages",
    "nonce_mismatch",
];

/// What a result means to the lockout guard: `invalid_grant` and `invalid_client` strike like
/// a bad password; a malformed request or an unknown scope is the probe's configuration, not
/// its secret. Of an interactive login's refusals, a password or code asked again strikes; a
/// denied consent or a login the server wants done otherwise does not.
pub fn lockout(result: ResultClass, reason: Reason) -> Lockout {
    match result {
        ResultClass::AuthFailed
            if matches!(
                reason,
                INVALID_REQUEST | INVALID_SCOPE | ACCESS_DENIED | LOGIN_REQUIRED | INTERACTION_REQUIRED
            ) =>
        {
            Lockout::Neutral
        }
        ResultClass::ClientRejected if reason == INVALID_CLIENT => Lockout::Strike,
        _ => Lockout::of(result),
    }
}
