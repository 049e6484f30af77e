//! The OAuth 2.0 family's steps and reasons, and what its results mean to the lockout guard.

use crate::protocol::{Lockout, Reason, ResultClass, Step};

/// Fetching the discovery document and the JWKS, in a run that needed them.
pub const DISCOVERY: Step = Step::named("Discovery");
/// The token request of the probe's grant.
pub const TOKEN: Step = Step::named("Token");
/// Redeeming the refresh token once.
pub const REFRESH: Step = Step::named("Refresh");
/// authprobe's check of the token: JWT signature and claims, userinfo or introspection.
pub const TOKEN_VALIDATION: Step = Step::named("TokenValidation");
/// Revoking what was issued (RFC 7009), like ETNA's logout.
pub const REVOCATION: Step = Step::named("Revocation");

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

/// Every step, in the order a probe's step series are written.
pub(super) const STEPS: &[&str] = &["Discovery", "Token", "Refresh", "TokenValidation", "Revocation"];

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
];

/// What a result means to the lockout guard: `invalid_grant` and `invalid_client` strike like
/// a bad password; a malformed request or an unknown scope is the probe's configuration, not
/// its secret.
pub fn lockout(result: ResultClass, reason: Reason) -> Lockout {
    match result {
        ResultClass::AuthFailed if matches!(reason, INVALID_REQUEST | INVALID_SCOPE) => Lockout::Neutral,
        ResultClass::ClientRejected if reason == INVALID_CLIENT => Lockout::Strike,
        _ => Lockout::of(result),
    }
}
