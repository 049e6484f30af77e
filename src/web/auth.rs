//! HTTP basic authentication against the bcrypt hashes of `--web.config.file`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::config::WebConfig;

/// Checked for unknown users so that their answer takes as long as a known user's (the hash of
/// a password nobody knows, cost 10 like the hashes `htpasswd -B` makes).
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
/// Attempts remembered as good before the memory is cleared.
const CACHE_LIMIT: usize = 4096;
/// bcrypt checks at once: each takes tens of milliseconds of a core, and a flood of wrong
/// passwords must not starve the probes.
const CONCURRENT_CHECKS: usize = 2;

/// Checks credentials, remembering those that passed (as digests: never the password) so a
/// scraper that sends the same header every 15 s pays for bcrypt once.
pub struct Authenticator {
    passed: Mutex<HashSet<[u8; 32]>>,
    checks: Arc<Semaphore>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator { passed: Mutex::new(HashSet::new()), checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)) }
    }
}

impl Authenticator {
    /// Whether `authorization` (the request's header) passes `config`: always when no users are
    /// configured.
    pub async fn allows(&self, config: &WebConfig, authorization: Option<&HeaderValue>) -> bool {
        if config.users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return false };
        let known = config.users.get(&user);
        let hash = known.map_or(DUMMY_HASH, String::as_str).to_owned();
        let digest: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if known.is_some() && self.passed.lock().unwrap_or_else(PoisonError::into_inner).contains(&digest) {
            return true;
        }
        let Ok(_permit) = self.checks.clone().acquire_owned().await else { return false };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if verified && known.is_some() {
            let mut passed = self.passed.lock().unwrap_or_else(PoisonError::into_inner);
            if passed.len() >= CACHE_LIMIT {
                passed.clear();
            }
            passed.insert(digest);
            return true;
        }
        false
    }
}

/// User and password of a `Basic` authorization header. The password is zeroised when dropped.
fn basic_credentials(header: &HeaderValue) -> Option<(String, zeroize::Zeroizing<String>)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), zeroize::Zeroizing::new(password.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test]
    async fn only_the_right_password_of_a_known_user_passes() {
        let mut config = WebConfig::default();
        let auth = Authenticator::default();
        assert!(auth.allows(&config, None).await, "no users: open");
        config.users.insert("prom".into(), bcrypt::hash("s3cret", 4).unwrap());
        assert!(auth.allows(&config, Some(&header("prom", "s3cret"))).await);
        assert!(auth.allows(&config, Some(&header("prom", "s3cret"))).await, "from the cache");
        assert!(!auth.allows(&config, Some(&header("prom", "wrong"))).await);
        assert!(!auth.allows(&config, Some(&header("other", "s3cret"))).await);
        assert!(!auth.allows(&config, None).await);
        assert!(!auth.allows(&config, Some(&HeaderValue::from_static("Bearer x"))).await);
        assert!(!auth.allows(&config, Some(&HeaderValue::from_static("Basic !!!"))).await);
        // A changed hash is checked afresh, not served from the cache.
        config.users.insert("prom".into(), bcrypt::hash("rotated", 4).unwrap());
        assert!(!auth.allows(&config, Some(&header("prom", "s3cret"))).await);
        assert!(auth.allows(&config, Some(&header("prom", "rotated"))).await);
    }
}
