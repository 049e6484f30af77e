//! `${VAR}` expansion and secrets that come inline or from `*_file` paths.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

/// Expands `${NAME}` from the environment. `$$` stands for a literal `$`; any other `$` is kept.
/// The error names the missing variable, never the text around it (which may be a secret).
pub fn expand_env(text: &str) -> Result<String, String> {
    expand_with(text, |name| std::env::var(name).ok())
}

fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err("unterminated ${ in value".to_owned());
            };
            let name = &body[..end];
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err("invalid environment variable name in ${…}".to_owned());
            }
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves a secret given inline (`field`) or as a file (`field_file`). `required` secrets must
/// have exactly one source, optional ones at most one. Returns the problem as a message about the
/// field (never the value).
pub fn resolve(
    field: &str,
    inline: Option<&SecretString>,
    file: Option<&Path>,
    base_dir: &Path,
    required: bool,
) -> Result<Option<SecretString>, (String, String)> {
    let file_field = format!("{field}_file");
    let value = match (inline, file) {
        (Some(_), Some(_)) => return Err((field.to_owned(), format!("set either {field} or {file_field}, not both"))),
        (None, None) if required => return Err((field.to_owned(), format!("missing: set {field} or {file_field}"))),
        (None, None) => return Ok(None),
        (Some(v), None) => expand_env(v.expose_secret()).map_err(|m| (field.to_owned(), m))?,
        (None, Some(path)) => {
            let full = base_dir.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| (file_field.clone(), format!("cannot read {}: {}", full.display(), io_reason(&e))))?;
            // Files written by `echo` or editors end in a newline that is not part of the secret.
            text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned()
        }
    };
    let (where_, origin) = match file {
        Some(_) => (file_field, "the file"),
        None => (field.to_owned(), "the value"),
    };
    if value.is_empty() {
        return Err((where_, format!("{origin} is empty")));
    }
    if reqwest::header::HeaderValue::from_str(&value).is_err() {
        return Err((where_, format!("{origin} contains characters that cannot be sent in an HTTP header")));
    }
    Ok(Some(SecretString::from(value)))
}

/// The OS error without the path or contents (the path is printed by the caller).
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_escapes() {
        assert_eq!(expand_with("${PW}", env).unwrap(), "s3cret");
        assert_eq!(expand_with("a-${PW}-b", env).unwrap(), "a-s3cret-b");
        assert_eq!(expand_with("$$", env).unwrap(), "$");
        assert_eq!(expand_with("$${PW}", env).unwrap(), "${PW}");
        assert_eq!(expand_with("pa$s", env).unwrap(), "pa$s");
        assert_eq!(expand_with("${EMPTY}", env).unwrap(), "");
    }

    #[test]
    fn expansion_errors_name_the_variable_only() {
        assert_eq!(expand_with("x${NOPE}y", env).unwrap_err(), "environment variable NOPE is not set");
        assert!(expand_with("${PW", env).is_err());
        assert!(expand_with("${1A}", env).is_err());
    }

    #[test]
    fn secrets_from_files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
        let got = resolve("password", None, Some(Path::new("pw")), dir.path(), true).unwrap().unwrap();
        assert_eq!(got.expose_secret(), "hunter2");
        let err = resolve("password", None, Some(Path::new("missing")), dir.path(), true).unwrap_err();
        assert_eq!(err.0, "password_file");
        assert!(err.1.contains("no such file"), "{}", err.1);
        let err = resolve("password", Some(&"a".into()), Some(Path::new("pw")), dir.path(), true).unwrap_err();
        assert_eq!(err.1, "set either password or password_file, not both");
        let err = resolve("pin", Some(&"12\n34".into()), None, dir.path(), false).unwrap_err();
        assert!(err.1.contains("cannot be sent") && !err.1.contains("12"), "{}", err.1);
    }
}
