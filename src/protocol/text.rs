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

/// Secrets shorter than this many bytes are replaced only where they stand as a whole word:
/// replaced everywhere, a one-character app key would turn that letter of every word into
/// `<redacted>` and leave nothing readable, while a whole word equal to it is still caught.
/// Longer ones are replaced wherever they appear, inside other words too.
const WHOLE_WORD_BELOW: usize = 4;

/// `text` with every occurrence of one of `secrets` replaced by `<redacted>` (for a short
/// secret, every occurrence that is a whole word).
pub(crate) fn redact(text: &str, secrets: &[&SecretString]) -> String {
    // Longest first: a secret inside another must not leave the rest of the longer one shown.
    let mut ordered: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in ordered {
        if s.is_empty() || !out.contains(s) {
            continue;
        }
        out = if s.len() >= WHOLE_WORD_BELOW { out.replace(s, "<redacted>") } else { replace_words(&out, s) };
    }
    out
}

/// `text` with each occurrence of `word` that no letter or digit touches replaced.
fn replace_words(text: &str, word: &str) -> String {
    let touches = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(word) {
        let end = at + word.len();
        if at < copied || touches(text[..at].chars().next_back()) || touches(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[copied..at]);
        out.push_str("<redacted>");
        copied = end;
    }
    out.push_str(&text[copied..]);
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
        assert_eq!(sanitize("xhunter2x", &[&secret]), "x<redacted>x", "long secrets inside words too");
    }

    #[test]
    fn short_secrets_are_redacted_as_whole_words_only() {
        let (k, pin) = (SecretString::from("k"), SecretString::from("12"));
        let text = "et-app-key: k, keep-alive; pin 12 of 123, k9, \"k\", (12)";
        assert_eq!(
            redact(text, &[&k, &pin]),
            "et-app-key: <redacted>, keep-alive; pin <redacted> of 123, k9, \"<redacted>\", (<redacted>)"
        );
        assert_eq!(redact("k", &[&k]), "<redacted>");
        assert_eq!(redact("ké k", &[&k]), "ké <redacted>", "letters beyond ASCII touch too");
    }
}
