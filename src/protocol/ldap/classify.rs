//! Why a directory refused a bind, from what it says beyond the result code: the password policy
//! response control (draft-behera-ldap-password-policy, OpenLDAP's ppolicy, 389-ds and others)
//! and Active Directory's `data NNN` in the diagnostic message of a 49. Pure.

use super::ber::{self, BerError, Reader};

/// The password policy response control's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// `passwordExpired` (0).
    PasswordExpired,
    /// `accountLocked` (1).
    AccountLocked,
    /// `changeAfterReset` (2): the password was reset and must be changed first.
    ChangeAfterReset,
    /// Another error (password-change errors, 3 to 8, or beyond).
    Other(i64),
}

/// The password policy response control's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `timeBeforeExpiration`: seconds until the password expires.
    pub expires_in: Option<u64>,
    /// `graceAuthNsRemaining`: binds left with the expired password.
    pub grace_left: Option<u64>,
    /// `error`.
    pub error: Option<PolicyError>,
}

/// Reads the control's value: `SEQUENCE { warning [0] CHOICE { timeBeforeExpiration [0],
/// graceAuthNsRemaining [1] } OPTIONAL, error [1] ENUMERATED OPTIONAL }`, as BER (long-form
/// lengths included).
pub fn policy(value: &[u8]) -> Result<Policy, BerError> {
    let (outer, _) = ber::read(value)?;
    if outer.tag != 0x30 {
        return Err(BerError::Tag { found: outer.tag, expected: 0x30 });
    }
    let mut r = Reader::new(outer.value);
    let mut out = Policy::default();
    if let Some(warning) = r.optional(0xa0)? {
        let (choice, _) = ber::read(warning)?;
        let n = u64::try_from(ber::integer(choice.value)?).map_err(|_| BerError::Integer)?;
        match choice.tag {
            0x80 => out.expires_in = Some(n),
            0x81 => out.grace_left = Some(n),
            found => return Err(BerError::Tag { found, expected: 0x80 }),
        }
    }
    if let Some(error) = r.optional(0x81)? {
        out.error = Some(match ber::integer(error)? {
            0 => PolicyError::PasswordExpired,
            1 => PolicyError::AccountLocked,
            2 => PolicyError::ChangeAfterReset,
            n => PolicyError::Other(n),
        });
    }
    Ok(out)
}

/// Active Directory's sub-code in the diagnostic message of a 49:
/// `80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1`.
pub fn ad_data(message: &str) -> Option<u32> {
    let at = message.find(", data ")? + ", data ".len();
    let hex: String = message[at..].chars().take_while(char::is_ascii_hexdigit).take(8).collect();
    u32::from_str_radix(&hex, 16).ok()
}

/// Why a bind was refused, beyond "it was".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A wrong password (or, where the directory does not say, an unknown user).
    InvalidCredentials,
    /// No such user (AD 525).
    UnknownUser,
    /// The account is locked (AD 775, ppolicy accountLocked).
    AccountLocked,
    /// The account is disabled (AD 533).
    AccountDisabled,
    /// The account has expired (AD 701).
    AccountExpired,
    /// The password has expired (AD 532, ppolicy passwordExpired).
    PasswordExpired,
    /// The password must be changed first (AD 773, ppolicy changeAfterReset).
    PasswordMustChange,
    /// Logons are not allowed now or from here (AD 530, 531).
    LogonRestricted,
    /// Binds need TLS first (8 strongerAuthRequired, 13 confidentialityRequired).
    TlsRequired,
    /// The directory is busy (51).
    Busy,
    /// The directory is unavailable (52).
    Unavailable,
    /// The directory will not do it (53).
    Unwilling,
    /// The directory sends the client elsewhere (10).
    Referral,
    /// Another code.
    Other,
}

impl Refusal {
    /// Its reason's name.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::InvalidCredentials => "invalid_credentials",
            Refusal::UnknownUser => "unknown_user",
            Refusal::AccountLocked => "account_locked",
            Refusal::AccountDisabled => "account_disabled",
            Refusal::AccountExpired => "account_expired",
            Refusal::PasswordExpired => "password_expired",
            Refusal::PasswordMustChange => "password_must_change",
            Refusal::LogonRestricted => "logon_restricted",
            Refusal::TlsRequired => "tls_required",
            Refusal::Busy => "busy",
            Refusal::Unavailable => "unavailable",
            Refusal::Unwilling => "unwilling_to_perform",
            Refusal::Referral => "referral",
            Refusal::Other => "other",
        }
    }
}

/// Why a bind answered `code` with `message` and `policy` was refused; `None` for a bind that
/// holds. The policy's error refines whatever code it comes with (directories differ in that
/// code: slapd answers a must-change with 0 and the error); AD's sub-code refines a 49.
pub fn bind(code: i64, message: &str, policy: Option<&Policy>) -> Option<Refusal> {
    match policy.and_then(|p| p.error) {
        Some(PolicyError::PasswordExpired) => return Some(Refusal::PasswordExpired),
        Some(PolicyError::AccountLocked) => return Some(Refusal::AccountLocked),
        Some(PolicyError::ChangeAfterReset) => return Some(Refusal::PasswordMustChange),
        _ => {}
    }
    Some(match code {
        0 => return None,
        49 => match ad_data(message) {
            Some(0x525) => Refusal::UnknownUser,
            Some(0x530 | 0x531) => Refusal::LogonRestricted,
            Some(0x532) => Refusal::PasswordExpired,
            Some(0x533) => Refusal::AccountDisabled,
            Some(0x701) => Refusal::AccountExpired,
            Some(0x773) => Refusal::PasswordMustChange,
            Some(0x775) => Refusal::AccountLocked,
            _ => Refusal::InvalidCredentials,
        },
        8 | 13 => Refusal::TlsRequired,
        10 => Refusal::Referral,
        51 => Refusal::Busy,
        52 => Refusal::Unavailable,
        53 => Refusal::Unwilling,
        _ => Refusal::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::super::ber::hex;
    use super::*;
    use proptest::prelude::*;

    /// The control values slapd sends (tests/slapd/README.md).
    #[test]
    fn slapds_password_policy_values() {
        assert_eq!(policy(&hex("3000")), Ok(Policy::default()));
        assert_eq!(policy(&hex("3007a0058003069780")).unwrap().expires_in, Some(432_000));
        assert_eq!(policy(&hex("3005a003810102")).unwrap().grace_left, Some(2));
        assert_eq!(policy(&hex("3003810100")).unwrap().error, Some(PolicyError::PasswordExpired));
        assert_eq!(policy(&hex("3003810102")).unwrap().error, Some(PolicyError::ChangeAfterReset));
        assert_eq!(policy(&hex("3003810101")).unwrap().error, Some(PolicyError::AccountLocked));
        // The same in BER's long form, as DER would not write it.
        assert_eq!(policy(&hex("30840000000781840000000100")).unwrap().error, Some(PolicyError::PasswordExpired));
        assert!(policy(&hex("3007a005800306")).is_err(), "cut short");
        assert!(policy(&hex("0400")).is_err());
    }

    /// Samba's and Windows' words (tests/samba/README.md), and how each refines a 49.
    #[test]
    fn active_directory_sub_codes() {
        let ad = |data: &str| {
            format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {data}, v1db1")
        };
        for (data, want) in [
            ("52e", Refusal::InvalidCredentials),
            ("525", Refusal::UnknownUser),
            ("530", Refusal::LogonRestricted),
            ("531", Refusal::LogonRestricted),
            ("532", Refusal::PasswordExpired),
            ("533", Refusal::AccountDisabled),
            ("701", Refusal::AccountExpired),
            ("773", Refusal::PasswordMustChange),
            ("775", Refusal::AccountLocked),
        ] {
            assert_eq!(bind(49, &ad(data), None), Some(want), "{data}");
        }
        // Windows ends the message with a NUL.
        assert_eq!(ad_data(&format!("{}\0", ad("775"))), Some(0x775));
        assert_eq!(bind(49, "", None), Some(Refusal::InvalidCredentials));
        assert_eq!(bind(8, "BindSimple: Transport encryption required.", None), Some(Refusal::TlsRequired));
        assert_eq!(bind(13, "confidentiality required", None), Some(Refusal::TlsRequired));
        assert_eq!(bind(0, "", Some(&Policy::default())), None);
        // slapd: a must-change binds with 0 and says so in the control; an expired one with 49.
        let reset = Policy { error: Some(PolicyError::ChangeAfterReset), ..Policy::default() };
        assert_eq!(bind(0, "", Some(&reset)), Some(Refusal::PasswordMustChange));
        let expired = Policy { error: Some(PolicyError::PasswordExpired), ..Policy::default() };
        assert_eq!(bind(49, "", Some(&expired)), Some(Refusal::PasswordExpired));
        assert_eq!(bind(51, "", None).map(Refusal::name), Some("busy"));
        assert_eq!(bind(4096, "", None), Some(Refusal::Other));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_control_values_and_messages_are_read_safely(bytes in prop::collection::vec(any::<u8>(), 0..32), text in ".{0,80}") {
            let _ = policy(&bytes);
            let _ = ad_data(&text);
            let _ = ad_data(&format!(", data {text}"));
        }
    }
}
