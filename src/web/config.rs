//! `--web.config.file`: TLS and basic authentication for every endpoint, in the format of the
//! Prometheus exporter-toolkit (so one file serves Prometheus, its exporters and authprobe).
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   min_version: TLS12            # TLS12 (default) or TLS13
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients.crt
//! http_server_config:
//!   headers: { Strict-Transport-Security: max-age=31536000 }
//! basic_auth_users:
//!   prometheus: $2y$10$…          # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! The file and the files it names are read again when any of them changes (checked on each
//! new connection), as exporter-toolkit does; a change that does not load is logged and the
//! previous settings stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::yaml::{self, FileErrors};

/// What the file configures, ready to serve with.
#[derive(Default)]
pub struct WebConfig {
    /// TLS for every connection, if configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash; empty means no authentication.
    pub users: BTreeMap<String, String>,
    /// Headers added to every answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    // Hashes are not secrets, but nothing gains from printing them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Accepted for compatibility; HTTP/2 is not served (every Prometheus scrapes over HTTP/1.1).
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
}

/// TLS versions by their exporter-toolkit names; rustls implements 1.2 and 1.3 only.
fn tls_version(name: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match name {
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS10" | "TLS11" => Err(format!("{name} is not supported (TLS12 and TLS13 are)")),
        _ => Err(format!("unknown TLS version {name:?} (expected TLS12 or TLS13)")),
    }
}

impl WebConfig {
    /// Reads and checks `path`: every problem, located.
    pub fn load(path: &Path) -> Result<WebConfig, FileErrors> {
        // An empty file configures nothing, as for exporter-toolkit.
        if std::fs::read_to_string(path)
            .is_ok_and(|t| t.lines().all(|l| l.trim().is_empty() || l.trim().starts_with('#')))
        {
            return Ok(WebConfig::default());
        }
        let doc = yaml::load_file::<Option<File>>(path)?;
        let file = doc.value.unwrap_or_default();
        let mut errors = Vec::new();
        let mut error = |field: &str, message: String| errors.push(doc.index.error(path, field, message));
        let base = path.parent().unwrap_or(Path::new("."));

        let mut users = BTreeMap::new();
        for (user, hash) in file.basic_auth_users.unwrap_or_default() {
            let field = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                error(&field, "a user name must be non-empty and without ':'".to_owned());
            } else if bcrypt_cost(&hash).is_none() {
                // The value may be a plain password by mistake: never echo it.
                error(&field, "not a bcrypt hash ($2a$, $2b$ or $2y$ with a cost of 4 to 31)".to_owned());
            } else {
                users.insert(user, hash);
            }
        }

        let mut headers = Vec::new();
        for (name, value) in file.http_server_config.map(|h| h.headers).unwrap_or_default() {
            let field = format!("http_server_config.headers.{name}");
            match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                (Err(_), _) => error(&field, "not a valid header name".to_owned()),
                (_, Err(_)) => error(&field, "not a valid header value".to_owned()),
            }
        }

        let tls = match file.tls_server_config {
            None => None,
            Some(t) => match tls_config(t, base) {
                Ok(c) => Some(Arc::new(c)),
                Err((field, message)) => {
                    error(&format!("tls_server_config.{field}"), message);
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(WebConfig { tls, users, headers })
        } else {
            Err(FileErrors(errors))
        }
    }
}

/// The cost of a bcrypt hash, if `hash` is one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = hash.strip_prefix("$2a$").or_else(|| hash.strip_prefix("$2b$")).or_else(|| hash.strip_prefix("$2y$"))?;
    let cost: u32 = rest.get(..2)?.parse().ok()?;
    ((4..=31).contains(&cost) && rest.len() == 2 + 1 + 53 && rest.as_bytes()[2] == b'$').then_some(cost)
}

type FieldError = (&'static str, String);

fn tls_config(t: TlsFile, base: &Path) -> Result<rustls::ServerConfig, FieldError> {
    use crate::protocol::{read_certificates, read_private_key};
    // Relative to the web configuration file; `join` keeps absolute paths as they are.
    let cert_file = t.cert_file.ok_or(("cert_file", "required with tls_server_config".to_owned()))?;
    let key_file = t.key_file.ok_or(("key_file", "required with tls_server_config".to_owned()))?;
    let chain = read_certificates(&base.join(cert_file)).map_err(|e| ("cert_file", e))?;
    let key = read_private_key(&base.join(key_file)).map_err(|e| ("key_file", e))?;

    let min = tls_version(t.min_version.as_deref().unwrap_or("TLS12")).map_err(|e| ("min_version", e))?;
    let max = tls_version(t.max_version.as_deref().unwrap_or("TLS13")).map_err(|e| ("max_version", e))?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| (u16::from(min.version)..=u16::from(max.version)).contains(&u16::from(v.version)))
        .collect();
    if versions.is_empty() {
        return Err(("max_version", "lower than min_version".to_owned()));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth_type {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let ca = t.client_ca_file.ok_or(("client_ca_file", format!("required with {auth_type}")))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certificates(&base.join(ca)).map_err(|e| ("client_ca_file", e))? {
                roots.add(c).map_err(|e| ("client_ca_file", format!("a CA certificate cannot be used: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth_type == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| ("client_ca_file", e.to_string()))?)
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(("client_auth_type", format!("{auth_type} (unverified client certificates) is not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert")))
        }
        other => {
            return Err((
                "client_auth_type",
                format!("unknown value {other:?} (NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"),
            ))
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ("key_file", format!("does not match cert_file or cannot be used: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The web configuration of a running server: none, or a file re-read when it changes.
pub struct WebConfigSource {
    path: Option<PathBuf>,
    state: Mutex<Watched>,
}

/// The settings in force and what they were read from.
struct Watched {
    /// The files the configuration names (certificate, key, CA), found when the file last changed.
    named: Vec<PathBuf>,
    /// Modification time and size of the file, then of each named file.
    fingerprint: Vec<Option<(SystemTime, u64)>>,
    config: Arc<WebConfig>,
}

impl WebConfigSource {
    /// No TLS, no authentication.
    pub fn none() -> WebConfigSource {
        let watched = Watched { named: Vec::new(), fingerprint: Vec::new(), config: Arc::default() };
        WebConfigSource { path: None, state: Mutex::new(watched) }
    }

    /// Loads `path`, which must be valid now.
    pub fn file(path: &Path) -> Result<WebConfigSource, FileErrors> {
        let config = Arc::new(WebConfig::load(path)?);
        let named = named_files(path);
        let fingerprint = fingerprint(path, &named);
        Ok(WebConfigSource { path: Some(path.to_owned()), state: Mutex::new(Watched { named, fingerprint, config }) })
    }

    /// The settings for a new connection: re-read first if a file changed. Costs a few `stat`s
    /// when nothing did.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(path) = &self.path else { return state.config.clone() };
        let now = fingerprint(path, &state.named);
        if now != state.fingerprint {
            state.named = named_files(path);
            state.fingerprint = fingerprint(path, &state.named);
            match WebConfig::load(path) {
                Ok(c) => {
                    tracing::info!(file = %path.display(), "web configuration reloaded");
                    state.config = Arc::new(c);
                }
                Err(e) => tracing::error!(error = %e, "web configuration invalid; the previous one stays"),
            }
        }
        state.config.clone()
    }
}

/// The certificate, key and CA files `path` names, read leniently: a file that does not parse
/// names none, and is watched alone until it is fixed.
fn named_files(path: &Path) -> Vec<PathBuf> {
    let named = yaml::load_file::<Option<File>>(path)
        .ok()
        .and_then(|d| d.value)
        .and_then(|f| f.tls_server_config)
        .map(|t| [t.cert_file, t.key_file, t.client_ca_file]);
    let base = path.parent().unwrap_or(Path::new("."));
    named.into_iter().flatten().flatten().map(|p| base.join(p)).collect()
}

fn fingerprint(path: &Path, named: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    let stat = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    std::iter::once(path).chain(named.iter().map(PathBuf::as_path)).map(stat).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        WebConfig::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_means_nothing_configured() {
        let c = load("").unwrap();
        assert!(c.tls.is_none() && c.users.is_empty());
    }

    #[test]
    fn a_plain_password_is_refused_without_being_echoed() {
        let err = load("basic_auth_users:\n  alice: Hunter2-Plain-Secret\n").unwrap_err();
        assert!(err.contains(":2:") && err.contains("basic_auth_users.alice: not a bcrypt hash"), "{err}");
        assert!(!err.contains("Hunter2-Plain-Secret"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = load("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n").unwrap_err();
        assert!(err.contains("tls_server_config.cert_file: cannot read"), "{err}");
        let err = load("tls_srever_config: {}\n").unwrap_err();
        assert!(err.contains("unknown field `tls_srever_config`"), "{err}");
        let err = load("http_server_config:\n  headers:\n    \"bad name\": x\n").unwrap_err();
        assert!(err.contains("http_server_config.headers.bad name: not a valid header name"), "{err}");
    }

    #[test]
    fn bcrypt_hashes_are_recognised() {
        let hash = bcrypt::hash("x", 4).unwrap();
        assert_eq!(bcrypt_cost(&hash), Some(4));
        assert_eq!(bcrypt_cost("$2y$10$short"), None);
        assert_eq!(bcrypt_cost("password"), None);
    }
}
