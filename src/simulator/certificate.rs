//! The certificate the embedded simulator serves HTTPS with, made at start when its files are
//! missing: self-signed for the names the demo's targets use, so that a target trusts it the way
//! a lab server is trusted, through `ca_file`.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a made certificate is valid: long enough for any demo, short enough to be clearly
/// not a production one.
const VALID_DAYS: u64 = 90;

/// A new key and a self-signed certificate for `names` (DNS names or IP addresses), as PEM:
/// `(certificate, private key)`.
pub fn make(names: &[String]) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| format!("invalid name: {e}"))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "authprobe simulator");
    let now = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(unix_now());
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(VALID_DAYS * 86_400);
    let cert = params.self_signed(&key).map_err(|e| format!("cannot sign the certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether every certificate of `chain` is valid for at least `days` more days.
pub fn valid_for(chain: &[CertificateDer<'_>], days: u64) -> bool {
    let until = unix_now() + days * 86_400;
    chain.iter().all(|der| {
        x509_parser::parse_x509_certificate(der)
            .is_ok_and(|(_, c)| c.validity().not_after.timestamp() > i64::try_from(until).unwrap_or(i64::MAX))
    })
}

/// A server configuration presenting `chain` with `key`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map(Arc::new)
        .map_err(|e| format!("the certificate and key cannot be used together: {e}"))
}
