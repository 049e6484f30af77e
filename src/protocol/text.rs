//! Making server-supplied text safe to show: no control characters, bounded length, no secrets.

use secrecy::{ExposeSecret, SecretString};

/// Longest text kept from the server, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// Strips control characters, collapses the result to at most [`MAX_TEXT_CHARS`] characters and
/// replaces any occurrence of one of `secrets` with `<redacted>` (a server echoing a password
/// back must not make authprobe print it).
pub fn sanitize(text: &str, secrets: &[&SecretString]) -> String {
    let mut clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    for secret in secrets {
        let s = secret.expose_secret();
        if !s.is_empty() && clean.contains(s) {
            clean = clean.replace(s, "<redacted>");
        }
    }
    let trimmed = clean.trim();
    if trimmed.chars().count() <= MAX_TEXT_CHARS {
        return trimmed.to_owned();
    }
    let mut out: String = trimmed.chars().take(MAX_TEXT_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_truncates_and_redacts() {
        assert_eq!(sanitize("a\nb\u{7}c", &[]), "a b c");
        let long = "x".repeat(5000);
        let out = sanitize(&long, &[]);
        assert_eq!(out.chars().count(), MAX_TEXT_CHARS);
        let secret = SecretString::from("hunter2");
        assert_eq!(sanitize("bad password hunter2!", &[&secret]), "bad password <redacted>!");
    }
}
