//! One HTTP answer as the classifiers see it, and the reading both protocol families share:
//! lenient JSON (a byte order mark skipped, keys in any case) and a short description of a body
//! that is not what was expected, for details.

use serde_json::{Map, Value};

/// One HTTP answer, as far as it was read.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// `Location`, if any (for redirects).
    pub location: Option<&'a str>,
    /// The body, at most the configured cap.
    pub body: &'a [u8],
    /// False when the body was longer than the cap and abandoned.
    pub body_complete: bool,
}

pub(crate) fn json_object(answer: &Answer) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(json_text(answer.body)) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The body without a UTF-8 byte order mark, which .NET servers may write before their JSON
/// and browsers skip. Nothing else is skipped: other leading bytes are not JSON.
pub(crate) fn json_text(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// Looks a key up regardless of case (the API is PascalCase, proxies and error pages are not);
/// `null` and non-strings count as absent.
pub(crate) fn get_str<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
        .and_then(Value::as_str)
}

/// A number, or a string holding one (some servers quote their numbers): `None` when absent or
/// null, `Some(Err(()))` when it is something else.
pub(crate) fn get_number(object: &Map<String, Value>, key: &str) -> Option<Result<f64, ()>> {
    let value = object.get(key).filter(|v| !v.is_null())?;
    Some(match value {
        Value::Number(n) => n.as_f64().ok_or(()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).ok_or(()),
        _ => Err(()),
    })
}

/// A short description of a body that is not the expected JSON, for details.
pub(crate) fn describe_body(answer: &Answer) -> String {
    let ct = answer.content_type.unwrap_or("").to_ascii_lowercase();
    let body = json_text(answer.body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let len = body.len();
    if body.is_empty() {
        "empty body".to_owned()
    } else if ct.contains("html") || first == Some(b'<') {
        format!("an HTML page of {len} bytes")
    } else if std::str::from_utf8(body).is_err() {
        format!("a body of {len} bytes that is not UTF-8")
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(_)) => format!("a JSON object of {len} bytes"),
            Ok(Value::Array(_)) => format!("a JSON array of {len} bytes"),
            Ok(_) => format!("a JSON scalar of {len} bytes"),
            Err(e) if e.is_eof() => format!("truncated JSON of {len} bytes"),
            Err(_) if ct.contains("json") => format!("malformed JSON of {len} bytes"),
            Err(_) => format!("a non-JSON body of {len} bytes"),
        }
    }
}
