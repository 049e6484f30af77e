//! Panics reported through the log with secrets removed. The default hook prints a panic's
//! message as it is, and a message may quote whatever the panicking code held: this hook
//! replaces every secret of the loaded configuration and the value of every token-, password-
//! or pin-like JSON member before anything is written.

use std::sync::{PoisonError, RwLock};

use secrecy::{ExposeSecret, SecretString};

/// Secrets of every configuration loaded so far (a rotated password may still be in memory).
static SECRETS: RwLock<Vec<SecretString>> = RwLock::new(Vec::new());
/// Secrets remembered at most; the oldest are forgotten first.
const MAX_SECRETS: usize = 100_000;

/// Replaces the process's panic hook with one that logs a redacted message at error level.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a payload that is not text)".to_owned());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(thread, location, payload = %redact(&message), "panicked");
    }));
}

/// Adds `secrets` to those removed from panic messages.
pub fn remember(secrets: impl IntoIterator<Item = SecretString>) {
    let mut known = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    for s in secrets {
        if !s.expose_secret().is_empty() && !known.iter().any(|k| k.expose_secret() == s.expose_secret()) {
            known.push(s);
        }
    }
    if known.len() > MAX_SECRETS {
        let excess = known.len() - MAX_SECRETS;
        known.drain(..excess);
    }
}

/// `text` with sensitive JSON members and every remembered secret replaced by `<redacted>`.
pub fn redact(text: &str) -> String {
    let known = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
    let secrets: Vec<&SecretString> = known.iter().collect();
    crate::protocol::redact(&crate::protocol::redact_sensitive_members(text), &secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_secrets_and_token_members_are_replaced() {
        remember([SecretString::from("Panic-Pw-Ur83"), SecretString::from("Panic-Pw")]);
        let text = r#"bad state for Panic-Pw-Ur83: {"Token":"tok-123","State":"Succeeded"}"#;
        assert_eq!(redact(text), r#"bad state for <redacted>: {"Token":"<redacted>","State":"Succeeded"}"#);
    }
}
