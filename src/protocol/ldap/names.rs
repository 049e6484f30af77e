//! The LDAP family's steps and reasons, and what a refused bind means to the run and to the
//! lockout guard.

use super::classify::Refusal;
use crate::protocol::{Lockout, Reason, ResultClass, Step};

/// TCP, and TLS on an `ldaps://` target.
pub const CONNECT: Step = Step::named("Connect");
/// The StartTLS extended operation and the TLS handshake after it.
pub const START_TLS: Step = Step::named("StartTLS");
/// The target's service account's bind, before a search for the user (search-then-bind).
pub const SERVICE_BIND: Step = Step::named("ServiceBind");
/// The search for the user's DN (search-then-bind).
pub const USER_SEARCH: Step = Step::named("UserSearch");
/// The probe account's bind.
pub const BIND: Step = Step::named("Bind");
/// The probe's search after its bind (`search:`), or the read of the account's password
/// expiry (`password_expiry: true`).
pub const SEARCH: Step = Step::named("Search");
/// RFC 4532 "Who am I?".
pub const WHO_AM_I: Step = Step::named("WhoAmI");
/// The unbind that ends the session (no answer is sent to it: its status is 0 once written).
pub const UNBIND: Step = Step::named("Unbind");
/// An anonymous read of the root entry, while the lockout guard holds the credentials back.
pub const ROOT_DSE: Step = Step::named("RootDSE");

/// Every step, in the order a probe's step series are written.
pub(super) const STEPS: &[&str] =
    &["Connect", "StartTLS", "ServiceBind", "UserSearch", "Bind", "Search", "WhoAmI", "Unbind", "RootDSE"];

/// 49 (AD 52e), or ppolicy's plain refusal: a wrong password.
pub const INVALID_CREDENTIALS: Reason = Reason::named("invalid_credentials");
/// AD 525; or a user search that found nobody.
pub const UNKNOWN_USER: Reason = Reason::named("unknown_user");
/// AD 775, ppolicy `accountLocked`.
pub const ACCOUNT_LOCKED: Reason = Reason::named("account_locked");
/// AD 533.
pub const ACCOUNT_DISABLED: Reason = Reason::named("account_disabled");
/// AD 701.
pub const ACCOUNT_EXPIRED: Reason = Reason::named("account_expired");
/// AD 532, ppolicy `passwordExpired`.
pub const PASSWORD_EXPIRED: Reason = Reason::named("password_expired");
/// AD 773, ppolicy `changeAfterReset`.
pub const PASSWORD_MUST_CHANGE: Reason = Reason::named("password_must_change");
/// AD 530 and 531: not at this time, not from this workstation.
pub const LOGON_RESTRICTED: Reason = Reason::named("logon_restricted");
/// 8 strongerAuthRequired, 13 confidentialityRequired.
pub const TLS_REQUIRED: Reason = Reason::named("tls_required");
/// 51 busy.
pub const BUSY: Reason = Reason::named("busy");
/// 52 unavailable, or the server's notice of disconnection.
pub const UNAVAILABLE: Reason = Reason::named("unavailable");
/// 53 unwillingToPerform.
pub const UNWILLING_TO_PERFORM: Reason = Reason::named("unwilling_to_perform");
/// 32 noSuchObject: the search base does not exist.
pub const NO_SUCH_OBJECT: Reason = Reason::named("no_such_object");
/// 10 referral: the server sends the client elsewhere.
pub const REFERRAL: Reason = Reason::named("referral");
/// A search found more or fewer entries than expected (or a user search more than one).
pub const ENTRY_COUNT: Reason = Reason::named("entry_count");
/// "Who am I?" named another identity than the one bound.
pub const WRONG_IDENTITY: Reason = Reason::named("wrong_identity");
/// StartTLS refused by the server.
pub const START_TLS_REFUSED: Reason = Reason::named("start_tls_refused");

/// Every reason.
pub(super) const REASONS: &[&str] = &[
    "invalid_credentials",
    "unknown_user",
    "account_locked",
    "account_disabled",
    "account_expired",
    "password_expired",
    "password_must_change",
    "logon_restricted",
    "tls_required",
    "busy",
    "unavailable",
    "unwilling_to_perform",
    "no_such_object",
    "referral",
    "entry_count",
    "wrong_identity",
    "start_tls_refused",
];

/// A refused bind's reason, result class and meaning to the lockout guard. `service`: the
/// target's service account was refused (a search-then-bind probe's first bind), which is the
/// application's own credential, the twin of OAuth 2.0's client: `client_rejected`.
///
/// Only a wrong password, an unknown user and a locked account are held back by the guard (an
/// AD lockout answers 775 even to a wrong password, and each such bind counts): a disabled or
/// expired account, or a password to change, are not made worse by trying again.
pub fn refusal(r: Refusal, service: bool) -> (ResultClass, Reason, Lockout) {
    let credentials = if service { ResultClass::ClientRejected } else { ResultClass::AuthFailed };
    match r {
        Refusal::InvalidCredentials => (credentials, INVALID_CREDENTIALS, Lockout::Hold),
        Refusal::UnknownUser => (credentials, UNKNOWN_USER, Lockout::Hold),
        Refusal::AccountLocked => (credentials, ACCOUNT_LOCKED, Lockout::Hold),
        Refusal::AccountDisabled => (credentials, ACCOUNT_DISABLED, Lockout::Neutral),
        Refusal::AccountExpired => (credentials, ACCOUNT_EXPIRED, Lockout::Neutral),
        Refusal::LogonRestricted => (credentials, LOGON_RESTRICTED, Lockout::Neutral),
        Refusal::PasswordExpired => (ResultClass::PasswordExpired, PASSWORD_EXPIRED, Lockout::Neutral),
        Refusal::PasswordMustChange => (ResultClass::PasswordExpired, PASSWORD_MUST_CHANGE, Lockout::Neutral),
        Refusal::TlsRequired => (ResultClass::ClientRejected, TLS_REQUIRED, Lockout::Neutral),
        Refusal::Busy => (ResultClass::RateLimited, BUSY, Lockout::Throttle),
        Refusal::Unavailable => (ResultClass::HttpError, UNAVAILABLE, Lockout::Neutral),
        Refusal::Unwilling => (ResultClass::HttpError, UNWILLING_TO_PERFORM, Lockout::Neutral),
        Refusal::Referral => (ResultClass::HttpError, REFERRAL, Lockout::Neutral),
        Refusal::Other => (ResultClass::HttpError, Reason::OTHER, Lockout::Neutral),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credential_refusals_hold_and_the_service_account_is_the_client() {
        assert_eq!(
            refusal(Refusal::InvalidCredentials, false),
            (ResultClass::AuthFailed, INVALID_CREDENTIALS, Lockout::Hold)
        );
        assert_eq!(refusal(Refusal::AccountLocked, true).0, ResultClass::ClientRejected);
        assert_eq!(refusal(Refusal::UnknownUser, false).2, Lockout::Hold);
        assert_eq!(refusal(Refusal::AccountDisabled, false).2, Lockout::Neutral);
        assert_eq!(refusal(Refusal::PasswordMustChange, false).0, ResultClass::PasswordExpired);
        assert_eq!(refusal(Refusal::Busy, false), (ResultClass::RateLimited, BUSY, Lockout::Throttle));
        assert_eq!(refusal(Refusal::Unavailable, false).0, ResultClass::HttpError);
        for r in REASONS {
            assert!(crate::protocol::Reason::from_name(r).is_some(), "{r} is registered");
        }
    }
}
