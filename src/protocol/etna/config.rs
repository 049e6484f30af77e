//! An ETNA target's and probe's fields as written in probes.yaml, their defaults, and their
//! validation.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::{EtnaLogin, EtnaTarget, Expect};
use crate::protocol::family::{self, FlagOrWord, Secret, Validator};
use crate::protocol::http;

/// Requests one login may make unless told otherwise.
pub const DEFAULT_MAX_STEPS: u32 = 3;

/// An ETNA target's own fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFields {
    base_url: Option<String>,
    app_key: Option<SecretString>,
    app_key_file: Option<PathBuf>,
}

/// An ETNA probe's own fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFields {
    username: Option<String>,
    password: Option<SecretString>,
    password_file: Option<PathBuf>,
    pin: Option<SecretString>,
    pin_file: Option<PathBuf>,
    verification_code: Option<SecretString>,
    verification_code_file: Option<PathBuf>,
    expect: Option<String>,
    max_steps: Option<u32>,
    validate: Option<FlagOrWord>,
    logout: Option<bool>,
}

/// The ETNA fields of `defaults:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultFields {
    max_steps: Option<u32>,
    validate: Option<bool>,
    logout: Option<bool>,
}

impl family::TargetFields for TargetFields {
    type Target = EtnaTarget;
    const SECRETS: &'static [&'static str] = &["app_key"];

    fn validate(self, v: &mut dyn Validator) -> Option<EtnaTarget> {
        let base_url = match &self.base_url {
            Some(raw) => v.url("base_url", raw, &["http", "https"]),
            None => {
                v.error("base_url", "missing: an ETNA target needs base_url".to_owned());
                None
            }
        };
        if let Some(u) = &base_url {
            http::no_tls_to_plain(v, "base_url", u);
        }
        let app_key = v.secret("app_key", Secret::required(self.app_key.as_ref(), self.app_key_file.as_deref()));
        Some(EtnaTarget { base_url: base_url?, app_key: app_key? })
    }
}

impl family::ProbeFields for ProbeFields {
    type Target = EtnaTarget;
    type Defaults = DefaultFields;
    type Login = EtnaLogin;
    const SECRETS: &'static [&'static str] = &["password", "pin", "verification_code"];

    fn validate(self, d: &DefaultFields, target: &Arc<EtnaTarget>, v: &mut dyn Validator) -> Option<EtnaLogin> {
        // ETNA sends it in a header of its own.
        let username = v.required_text("username", self.username.as_deref(), "an ETNA probe needs username");
        let username = username.filter(|u| {
            let ok = http::header_safe(u);
            if !ok {
                v.error("username", "contains characters that cannot be sent in an HTTP header".to_owned());
            }
            ok
        });
        let password = v.secret("password", Secret::required(self.password.as_ref(), self.password_file.as_deref()));
        let pin = v.secret("pin", Secret::optional(self.pin.as_ref(), self.pin_file.as_deref()));
        let code = Secret::optional(self.verification_code.as_ref(), self.verification_code_file.as_deref());
        let verification_code = v.secret("verification_code", code);
        let expect = match self.expect.as_deref() {
            None => Some(Expect::Succeeded),
            Some(text) => {
                let e = Expect::parse(text);
                if e.is_none() {
                    v.error(
                        "expect",
                        format!("unknown value {text:?}: use Succeeded, SecutityPin or VerificationCode"),
                    );
                }
                e
            }
        };
        let max_steps = self.max_steps.or(d.max_steps).unwrap_or(DEFAULT_MAX_STEPS);
        if !(1..=10).contains(&max_steps) {
            v.error("max_steps", "must be between 1 and 10".to_owned());
        }
        let validate = match &self.validate {
            None => d.validate.unwrap_or(false),
            Some(FlagOrWord::Flag(on)) => *on,
            Some(FlagOrWord::Word(m)) => {
                v.error("validate", format!("{m:?} is for oauth2 targets: an ETNA probe validates with true or false"));
                false
            }
        };
        let logout = self.logout.or(d.logout).unwrap_or(false);
        if let Some(Expect::Step(step)) = expect {
            // Only a login that ends in Succeeded has a final token to check or log out.
            for (on, field, verb, set_here) in [
                (validate, "validate", "validate", self.validate.is_some()),
                (logout, "logout", "log out", self.logout.is_some()),
            ] {
                if on {
                    let message = format!(
                        "probe {:?} expects {step} and never gets a final token to {verb}; set {field}: false for it",
                        v.name()
                    );
                    if set_here {
                        v.error(field, message);
                    } else {
                        v.defaults_error(field, message);
                    }
                }
            }
        }
        Some(EtnaLogin {
            target: target.clone(),
            username: username?,
            password: password?,
            pin,
            verification_code,
            expect: expect?,
            max_steps,
            validate,
            logout,
        })
    }
}
