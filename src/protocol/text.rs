//! Making server-supplied text safe to show: no control characters, bounded length, no secrets.

use secrecy::{ExposeSecret, SecretString};

/// Longest text kept from the server, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// Strips control characters, collapses the result to at most [`MAX_TEXT_CHARS`] characters and
/// replaces any occurrence of one of `secrets` with `<redacted>` (a server echoing a password
/// back must not make authprobe print it).
pub fn sanitize(text: &str, secrets: &[&SecretString]) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = redact(&clean, secrets);
    let trimmed = clean.trim();
    if trimmed.chars().count() <= MAX_TEXT_CHARS {
        return trimmed.to_owned();
    }
    let mut out: String = trimmed.chars().take(MAX_TEXT_CHARS - 1).collect();
    out.push('…');
    out
}

/// `text` with every occurrence of one of `secrets` replaced by `<redacted>`.
pub(crate) fn redact(text: &str, secrets: &[&SecretString]) -> String {
    // Longest first: a secret inside another must not leave the rest of the longer one shown.
    let mut ordered: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in ordered {
        if !s.is_empty() && out.contains(s) {
            out = out.replace(s, "<redacted>");
        }
    }
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
