//! A record of what one login sent and received, for people debugging a probe
//! (`GET /probe?debug=true`, `authprobe probe --output trace`).
//!
//! Redaction is the point of this module. Credentials are never recorded: a request header whose
//! value is a secret is recorded as `<redacted>`. Server input is recorded as read, bounded, and
//! redacted when shown: the value of every JSON member whose name looks like a token or a
//! credential (`Token`, `ConfirmationToken`, …) is replaced, and every such value, together with
//! the probe's own secrets, is then replaced wherever else it appears (a header echoing it, say).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use super::text::redact;

/// How much of each response body a trace shows.
pub const BODY_SHOWN_BYTES: usize = 4096;
/// How many headers of one response a trace shows.
const HEADERS_SHOWN: usize = 64;
/// How long a shown header value may be, in characters.
const HEADER_VALUE_CHARS: usize = 200;
/// What replaces a secret.
const REDACTED: &str = "<redacted>";

/// What one login sent and received, with timings. Its [`Debug`](std::fmt::Debug) shows nothing
/// read from the server; [`Trace::render`] is the only way to show it.
pub struct Trace {
    started: Instant,
    requests: Vec<Request>,
    /// The login's own secrets and the values of token-like JSON members seen in any body:
    /// redacted wherever they appear.
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("requests", &self.requests.len()).finish_non_exhaustive()
    }
}

struct Request {
    label: String,
    /// `POST http://…`.
    line: String,
    sent_at: Duration,
    headers: Vec<(String, String)>,
    /// The form body, secret values already replaced.
    body: Option<String>,
    response: Option<Response>,
    /// Why no complete answer arrived.
    failure: Option<String>,
    /// Remarks after it.
    notes: Vec<String>,
}

struct Response {
    headers_at: Duration,
    /// `HTTP/1.1 200 OK`.
    line: String,
    headers: Vec<(String, String)>,
    omitted_headers: usize,
    /// The first [`BODY_SHOWN_BYTES`] of the body.
    body: Vec<u8>,
    body_len: usize,
    body_at: Option<Duration>,
    /// False when the body was abandoned at the size cap.
    complete: bool,
}

impl Trace {
    /// An empty trace of a login with these `secrets` that started at `started`.
    pub(crate) fn new(started: Instant, secrets: &[&SecretString]) -> Self {
        Trace { started, requests: Vec::new(), secrets: secrets.iter().map(|s| (*s).clone()).collect() }
    }

    /// Records a request about to be sent: its first line (`POST http://…`), the host it goes
    /// to, and its headers, `None` for a value the family marked secret (never copied).
    pub(crate) fn request(&mut self, label: &str, line: &str, host: String, headers: Vec<(String, Option<Vec<u8>>)>) {
        let mut shown = vec![("host".to_owned(), host)];
        for (name, value) in headers {
            let value = value.map_or_else(|| REDACTED.to_owned(), |v| header_text(&v));
            shown.push((name, value));
        }
        shown.push(("user-agent".to_owned(), super::http::USER_AGENT.to_owned()));
        self.requests.push(Request {
            label: label.to_owned(),
            line: line.to_owned(),
            sent_at: self.started.elapsed(),
            headers: shown,
            body: None,
            response: None,
            failure: None,
            notes: Vec::new(),
        });
    }

    /// Records an operation of a protocol without HTTP (an LDAP bind): its line, the server it
    /// goes to and its fields, `None` for a secret's value (never copied).
    pub(crate) fn operation(&mut self, label: &str, line: &str, host: String, fields: Vec<(String, Option<Vec<u8>>)>) {
        self.request(label, line, host, fields);
        if let Some(r) = self.requests.last_mut() {
            // No user agent crosses: it is HTTP's.
            r.headers.retain(|(name, _)| name != "user-agent");
        }
    }

    /// Adds a value of the run's own (a state, a code, a cookie) to the values redacted.
    pub(crate) fn add_secret(&mut self, secret: &SecretString) {
        if !self.secrets.iter().any(|s| s.expose_secret() == secret.expose_secret()) {
            self.secrets.push(secret.clone());
        }
    }

    /// Records the form body of the last request, as the caller shows it (secret values
    /// replaced by the caller, who alone knows which fields are secrets).
    pub(crate) fn request_body(&mut self, shown: &str) {
        if let Some(request) = self.requests.last_mut() {
            request.body = Some(shown.to_owned());
        }
    }

    /// Records the first line (`HTTP/1.1 200 OK`) and headers of the answer to the last
    /// request. Values of headers that carry credentials are not copied.
    pub(crate) fn response_head<'h>(&mut self, line: &str, headers: impl Iterator<Item = (&'h str, &'h [u8])>) {
        let at = self.started.elapsed();
        let Some(request) = self.requests.last_mut() else { return };
        let mut shown = Vec::new();
        let mut omitted_headers = 0;
        for (name, value) in headers {
            if shown.len() == HEADERS_SHOWN {
                omitted_headers += 1;
                continue;
            }
            let value = match name {
                "set-cookie" => cookie_names(value.split(|b| *b == b';').next().unwrap_or_default()),
                "location" => header_text(shown_url(&String::from_utf8_lossy(value)).as_bytes()),
                _ if is_credential_header(name) => REDACTED.to_owned(),
                _ => header_text(value),
            };
            shown.push((name.to_owned(), value));
        }
        request.response = Some(Response {
            headers_at: at,
            line: line.to_owned(),
            headers: shown,
            omitted_headers,
            body: Vec::new(),
            body_len: 0,
            body_at: None,
            complete: true,
        });
    }

    /// Records the body of the answer to the last request, as far as it was read.
    pub(crate) fn response_body(&mut self, body: &[u8], complete: bool) {
        let at = self.started.elapsed();
        // Every token in the whole body is found, not only in the part shown: a token cut off
        // at the shown limit must still be recognised elsewhere.
        collect_sensitive_values(&String::from_utf8_lossy(body), &mut self.secrets);
        let Some(response) = self.requests.last_mut().and_then(|r| r.response.as_mut()) else { return };
        response.body = body[..body.len().min(BODY_SHOWN_BYTES)].to_vec();
        response.body_len = body.len();
        response.body_at = Some(at);
        response.complete = complete;
    }

    /// Records a remark between requests (a retry, say).
    pub(crate) fn note(&mut self, text: &str) {
        if let Some(request) = self.requests.last_mut() {
            request.notes.push(text.to_owned());
        }
    }

    /// Records why the last request got no complete answer.
    pub(crate) fn failure(&mut self, detail: &str) {
        if let Some(request) = self.requests.last_mut() {
            request.failure = Some(detail.to_owned());
        }
    }

    /// The trace as plain text, one block per request, with every secret of the login and
    /// every token seen replaced by `<redacted>`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (i, r) in self.requests.iter().enumerate() {
            let _ = writeln!(s, "Request {} ({}) at +{}", i + 1, r.label, ms(r.sent_at));
            let _ = writeln!(s, "> {}", r.line);
            for (name, value) in &r.headers {
                let _ = writeln!(s, "> {name}: {value}");
            }
            if let Some(body) = &r.body {
                let _ = writeln!(s, "> (form) {}", escape_controls(body));
            }
            if let Some(a) = &r.response {
                let _ = writeln!(
                    s,
                    "Response {} headers at +{} ({} after sending)",
                    i + 1,
                    ms(a.headers_at),
                    ms(a.headers_at.saturating_sub(r.sent_at))
                );
                let _ = writeln!(s, "< {}", a.line);
                for (name, value) in &a.headers {
                    let _ = writeln!(s, "< {name}: {value}");
                }
                if a.omitted_headers > 0 {
                    let _ = writeln!(s, "< ({} more headers not shown)", a.omitted_headers);
                }
                if let Some(at) = a.body_at {
                    let read = match (a.complete, r.failure.is_some()) {
                        (true, _) => "complete",
                        (false, true) => "incomplete",
                        (false, false) => "abandoned at the size limit",
                    };
                    let _ = writeln!(s, "Body: {} bytes read ({read}) by +{}", a.body_len, ms(at));
                    if !a.body.is_empty() {
                        let text = redact_sensitive_members(&String::from_utf8_lossy(&a.body));
                        for line in escape_controls(&text).lines() {
                            let _ = writeln!(s, "| {line}");
                        }
                        if a.body_len > a.body.len() {
                            let _ = writeln!(s, "| … ({} more bytes not shown)", a.body_len - a.body.len());
                        }
                    }
                }
            }
            if let Some(why) = &r.failure {
                let _ = writeln!(s, "No complete answer: {why}");
            }
            for note in &r.notes {
                let _ = writeln!(s, "{note}");
            }
            s.push('\n');
        }
        if self.requests.is_empty() {
            s.push_str("No request was sent.\n\n");
        }
        redact(&s, &self.secrets.iter().collect::<Vec<_>>())
    }
}

/// OAuth 2.0's public parameters of an authorization request: the values a trace shows of a
/// URL's query. Every other value (`state`, `nonce`, `code`, a session code) is redacted.
const PUBLIC_PARAMETERS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "scope", "code_challenge_method", "response_mode", "prompt"];

/// A URL (absolute or relative) as a trace shows it: the values of its query redacted but for
/// OAuth 2.0's public parameters, its fragment redacted.
pub(crate) fn shown_url(url: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((r, _)) => (r, Some(REDACTED)),
        None => (url, None),
    };
    let mut out = match rest.split_once('?') {
        None => rest.to_owned(),
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if PUBLIC_PARAMETERS.contains(&k) => format!("{k}={v}"),
                    Some((k, _)) => format!("{k}={REDACTED}"),
                    None if pair.is_empty() => String::new(),
                    // A bare value (`?sessionid`) is a value too.
                    None => REDACTED.to_owned(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
    };
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A `Cookie` header (or a `Set-Cookie` header's first part) shown by names alone:
/// `a=<redacted>; b=<redacted>`.
pub(crate) fn cookie_names(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let names: Vec<String> = text
        .split(';')
        .filter_map(|pair| pair.split_once('=').map(|(n, _)| n.trim()))
        .filter(|n| !n.is_empty())
        .map(|n| format!("{}={REDACTED}", header_text(n.as_bytes())))
        .collect();
    if names.is_empty() {
        REDACTED.to_owned()
    } else {
        names.join("; ")
    }
}

/// Header names whose values are credentials whatever the server meant by them.
fn is_credential_header(name: &str) -> bool {
    matches!(name, "set-cookie" | "authorization" | "proxy-authorization" | "www-authenticate" | "cookie")
        || is_sensitive_name(name)
}

/// Whether a JSON member or header called `name` holds a token or a credential.
fn is_sensitive_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    // OAuth 2.0 names about tokens that hold none: token_type, token_endpoint, jwks_uri,
    // token_endpoint_auth_methods_supported, token_type_hint.
    if ["_type", "_endpoint", "_uri", "_hint"].iter().any(|s| n.ends_with(s)) || n.contains("_supported") {
        return false;
    }
    ["token", "password", "secret", "pincode", "verificationcode", "phrase", "app-key", "appkey", "assertion"]
        .iter()
        .any(|k| n.contains(k))
}

fn header_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(HEADER_VALUE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > HEADER_VALUE_CHARS {
        out.push('…');
    }
    out
}

/// Shows control characters other than newline and tab as `\u{…}`, so a body cannot rewrite
/// the terminal or the page it is shown in.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A JSON-ish member found by [`scan_members`]: where its value lies in the text.
struct Member {
    sensitive: bool,
    /// Byte range of the value; for a string, of its content without the quotes.
    value: std::ops::Range<usize>,
}

/// Finds `"name": value` members in `text`, which may be truncated or not JSON at all: a
/// textual scan, so a body cut off at the size limit is redacted as well as a whole one.
fn scan_members(text: &str) -> Vec<Member> {
    let bytes = text.as_bytes();
    let mut members = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let key_end = string_end(bytes, i + 1);
        let key = &text[i + 1..key_end.min(bytes.len())];
        let mut j = skip_space(bytes, key_end + 1);
        if j >= bytes.len() || bytes[j] != b':' {
            // A string that is not a member name: go on after it.
            i = key_end + 1;
            continue;
        }
        j = skip_space(bytes, j + 1);
        let (value, next) = if j < bytes.len() && bytes[j] == b'"' {
            let end = string_end(bytes, j + 1);
            (j + 1..end.min(bytes.len()), end + 1)
        } else {
            let end = bytes[j.min(bytes.len())..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b'\n'))
                .map_or(bytes.len(), |p| j + p);
            // Objects and arrays are scanned member by member, not as one value.
            let end = if j < bytes.len() && matches!(bytes[j], b'{' | b'[') { j } else { end };
            (j.min(bytes.len())..end, end)
        };
        members.push(Member { sensitive: is_sensitive_name(key), value });
        i = next;
    }
    members
}

/// Index of the closing quote of the string whose content starts at `from`, or `bytes.len()`.
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut k = from;
    while k < bytes.len() {
        match bytes[k] {
            b'\\' => k += 2,
            b'"' => return k,
            _ => k += 1,
        }
    }
    bytes.len()
}

fn skip_space(bytes: &[u8], mut k: usize) -> usize {
    while k < bytes.len() && bytes[k].is_ascii_whitespace() {
        k += 1;
    }
    k
}

/// Adds the values of sensitive members of `text` to `found`.
fn collect_sensitive_values(text: &str, found: &mut Vec<SecretString>) {
    for m in scan_members(text).into_iter().filter(|m| m.sensitive) {
        let value = text[m.value].trim();
        if !value.is_empty() && value != "null" && !found.iter().any(|f| f.expose_secret() == value) {
            found.push(SecretString::from(value.to_owned()));
        }
    }
}

/// `text` with the value of every sensitive member replaced by `<redacted>`.
pub fn redact_sensitive_members(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for m in scan_members(text).into_iter().filter(|m| m.sensitive && !m.value.is_empty()) {
        if text[m.value.clone()].trim() == "null" {
            continue;
        }
        out.push_str(&text[copied..m.value.start]);
        out.push_str(REDACTED);
        copied = m.value.end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_members_are_redacted_in_whole_and_cut_bodies() {
        let body = r#"{"State":"Expecting","Step":"SecutityPin","Token":"tok-Zq9\"x","ConfirmationToken":null,"Reason":"","PinCode":1234}"#;
        let shown = redact_sensitive_members(body);
        assert_eq!(
            shown,
            r#"{"State":"Expecting","Step":"SecutityPin","Token":"<redacted>","ConfirmationToken":null,"Reason":"","PinCode":<redacted>}"#
        );
        let cut = &body[..body.find("Zq9").unwrap() + 2];
        assert_eq!(redact_sensitive_members(cut), r#"{"State":"Expecting","Step":"SecutityPin","Token":"<redacted>"#);
        let mut found = Vec::new();
        collect_sensitive_values(body, &mut found);
        let found: Vec<&str> = found.iter().map(|s| s.expose_secret()).collect();
        assert_eq!(found, [r#"tok-Zq9\"x"#, "1234"]);
    }

    #[test]
    fn oauth2_names_about_tokens_are_not_secrets_but_tokens_are() {
        let body = r#"{"access_token":"at-Q1","token_type":"Bearer","refresh_token":"rt-Q2","id_token":"id-Q3","client_secret":"cs","token_endpoint":"http://h/token","jwks_uri":"http://h/jwks","client_assertion":"as"}"#;
        let shown = redact_sensitive_members(body);
        assert_eq!(
            shown,
            r#"{"access_token":"<redacted>","token_type":"Bearer","refresh_token":"<redacted>","id_token":"<redacted>","client_secret":"<redacted>","token_endpoint":"http://h/token","jwks_uri":"http://h/jwks","client_assertion":"<redacted>"}"#
        );
    }

    #[test]
    fn non_json_and_nested_bodies_are_scanned_safely() {
        for text in
            ["", "\"", "\"a\":", "<html>\"Token\" : \"t\"</html>", "[1,2", "{\"a\":{\"token\":\"t\"}}", "\\\"\"\\"]
        {
            let _ = scan_members(text);
            assert!(!redact_sensitive_members(text).contains("\"t\""), "{text}");
        }
        assert_eq!(redact_sensitive_members("{\"x\": {\"Token\": \"t\"}}"), "{\"x\": {\"Token\": \"<redacted>\"}}");
    }

    #[test]
    fn urls_show_public_parameters_only() {
        let url = "https://idp/auth?response_type=code&client_id=web&state=st-Q1&nonce=n-Q2&code_challenge=cc-Q3&scope=openid%20api#frag-Q4";
        let shown = shown_url(url);
        assert_eq!(
            shown,
            "https://idp/auth?response_type=code&client_id=web&state=<redacted>&nonce=<redacted>&code_challenge=<redacted>&scope=openid%20api#<redacted>"
        );
        assert_eq!(shown_url("/login?session_code=sc-Q5&x"), "/login?session_code=<redacted>&<redacted>");
        assert_eq!(shown_url("/plain/path"), "/plain/path");
        assert_eq!(cookie_names(b"a=1; KC_RESTART=secret-Q6; ;b"), "a=<redacted>; KC_RESTART=<redacted>");
    }

    #[test]
    fn render_redacts_echoed_tokens_and_secrets() {
        let secret = SecretString::from("pw-SECRET");
        let mut t = Trace::new(Instant::now(), &[&secret]);
        let h = vec![("password".to_owned(), None), ("username".to_owned(), Some(b"alice".to_vec()))];
        t.request("BaseAuthentication", "POST http://127.0.0.1:1/api/token", "127.0.0.1:1".to_owned(), h);
        let rh: [(&str, &[u8]); 2] = [("x-echo", b"tok-ABC and pw-SECRET"), ("set-cookie", b"session=s3cr3t")];
        t.response_head("HTTP/1.1 200 OK", rh.into_iter());
        t.response_body(br#"{"State":"Succeeded","Token":"tok-ABC","Note":"\u0007bell"}"#, true);
        let text = t.render();
        for leak in ["tok-ABC", "pw-SECRET", "s3cr3t"] {
            assert!(!text.contains(leak), "{leak} in\n{text}");
        }
        assert!(text.contains("> username: alice") && text.contains("> password: <redacted>"), "{text}");
        assert!(text.contains("< x-echo: <redacted> and <redacted>"), "{text}");
        assert!(text.contains("< set-cookie: session=<redacted>"), "{text}");
        assert!(text.contains("\"Token\":\"<redacted>\""), "{text}");
        assert!(format!("{t:?}").len() < 60);
    }
}
