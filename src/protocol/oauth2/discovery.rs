//! What a run learns of its authorization server before asking for a token: the discovery
//! document and the JWKS, fetched per target, kept for `discovery_refresh`, and fetched again
//! early when a token names a key the cached set lacks.
//!
//! A fetch is a step of the run that needed it (`Discovery`). When a refresh fails and an older
//! copy is at hand, the run goes on with it, as a client with a cache would: the target's
//! discovery series say that discovery is failing, the probe's result says whether logins work.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::Method;
use url::Url;

use super::classify::{self, FetchFailure, Metadata};
use super::names::{DISCOVERY, JWKS};
use super::OAuth2Target;
use crate::protocol::http::Request;
use crate::protocol::{Attempt, DiscoveryFacts, ResultClass};

/// What discovery learnt of one target, shared by its probes.
#[derive(Debug, Default)]
pub struct Cache(tokio::sync::Mutex<Learnt>);

#[derive(Debug, Default)]
struct Learnt {
    metadata: Option<(Arc<Metadata>, Instant)>,
    jwks: Option<(Arc<JwkSet>, Instant)>,
    fingerprint: Option<u64>,
    /// When the key set last changed, in Unix seconds (its first fetch counts as a change).
    changed_unix: Option<i64>,
    /// Whether the last fetch succeeded, and how long it took.
    last: Option<(bool, Duration)>,
}

impl Learnt {
    fn facts(&self) -> Option<DiscoveryFacts> {
        let (ok, duration) = self.last?;
        Some(DiscoveryFacts {
            ok,
            duration,
            jwks_keys: self.jwks.as_ref().map(|(k, _)| k.keys.len()),
            jwks_changed_unix: self.changed_unix,
        })
    }
}

/// The endpoints a run uses: the target's own, else the discovered ones.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) issuer: Option<String>,
    pub(crate) token: Url,
    pub(crate) jwks: Option<Url>,
    pub(crate) userinfo: Option<Url>,
    pub(crate) introspection: Option<Url>,
    pub(crate) revocation: Option<Url>,
    pub(crate) authorization: Option<Url>,
    pub(crate) end_session: Option<Url>,
    /// Whether authorization responses must carry `iss` (RFC 9207).
    pub(crate) iss_required: bool,
    /// The key set, when the run needs one.
    pub(crate) keys: Option<Arc<JwkSet>>,
}

/// Why a run could not learn what it needed: the verdict's class and detail.
pub(crate) type Unresolved = (ResultClass, String);

/// Resolves the endpoints of `target` (and its keys, when `need_keys`), fetching what is
/// missing or older than `discovery_refresh`; an `interactive` login reads the discovery
/// document whenever the target has an issuer (its authorization and logout endpoints, and
/// whether authorization responses carry `iss`). Returns what the target's discovery looks
/// like now either way.
pub(crate) async fn resolve(
    run: &mut Attempt<'_>,
    target: &OAuth2Target,
    need_keys: bool,
    interactive: bool,
) -> (Result<Resolved, Unresolved>, Option<DiscoveryFacts>) {
    let Ok(mut learnt) = tokio::time::timeout_at(run.deadline, target.discovered.0.lock()).await else {
        let detail = "deadline exceeded while waiting for another probe's discovery of this target".to_owned();
        return (Err((ResultClass::Timeout, detail)), None);
    };
    let fresh = |at: &Instant| at.elapsed() < target.discovery_refresh;
    let mut failure: Option<FetchFailure> = None;
    // The fetches of this run: whether all succeeded, and how long they took together.
    let mut fetched: Option<(bool, Duration)> = None;
    fn note(fetched: &mut Option<(bool, Duration)>, ok: bool, took: Duration) {
        let (all, sum) = fetched.unwrap_or((true, Duration::ZERO));
        *fetched = Some((all && ok, sum + took));
    }
    if let Some(issuer) = target.issuer.as_ref().filter(|_| target.discovers() || interactive) {
        if !learnt.metadata.as_ref().is_some_and(|(_, at)| fresh(at)) {
            let (result, took) = fetch_metadata(run, issuer, &mut learnt).await;
            note(&mut fetched, result.is_ok(), took);
            failure = result.err();
        }
    }
    let metadata = learnt.metadata.as_ref().map(|(m, _)| m.clone());
    let token = target.endpoints.token.clone().or_else(|| metadata.as_ref().map(|m| m.token_endpoint.clone()));
    if fetched.is_some() {
        learnt.last = fetched;
    }
    let Some(token) = token else {
        let (class, detail) = failure.unwrap_or((ResultClass::InvalidResponse, "no token endpoint".to_owned()));
        return (Err((class, detail)), learnt.facts());
    };
    let pick = |own: &Option<Url>, found: Option<&Option<Url>>| own.clone().or_else(|| found.cloned().flatten());
    let m = metadata.as_deref();
    let mut resolved = Resolved {
        issuer: m.map(|m| m.issuer.clone()).or_else(|| target.issuer.as_ref().map(|i| i.as_str().to_owned())),
        token,
        jwks: pick(&target.endpoints.jwks, m.map(|m| &m.jwks_uri)),
        userinfo: pick(&target.endpoints.userinfo, m.map(|m| &m.userinfo_endpoint)),
        introspection: pick(&target.endpoints.introspection, m.map(|m| &m.introspection_endpoint)),
        revocation: pick(&target.endpoints.revocation, m.map(|m| &m.revocation_endpoint)),
        authorization: pick(&target.endpoints.authorization, m.map(|m| &m.authorization_endpoint)),
        end_session: pick(&target.endpoints.end_session, m.map(|m| &m.end_session_endpoint)),
        iss_required: m.is_some_and(|m| m.iss_parameter_supported),
        keys: None,
    };
    if need_keys {
        let Some(jwks_uri) = resolved.jwks.clone() else {
            let detail = "validate: jwt, but the server names no jwks_uri".to_owned();
            return (Err((ResultClass::InvalidResponse, detail)), learnt.facts());
        };
        if !learnt.jwks.as_ref().is_some_and(|(_, at)| fresh(at)) {
            let (result, took) = fetch_jwks(run, &jwks_uri, &mut learnt).await;
            note(&mut fetched, result.is_ok(), took);
            if let Err(f) = result {
                failure.get_or_insert(f);
            }
        }
        if fetched.is_some() {
            learnt.last = fetched;
        }
        match &learnt.jwks {
            Some((keys, _)) => resolved.keys = Some(keys.clone()),
            None => {
                let f = failure.unwrap_or((ResultClass::InvalidResponse, "no JWKS".to_owned()));
                return (Err(f), learnt.facts());
            }
        }
    }
    (Ok(resolved), learnt.facts())
}

/// Fetches the JWKS again, whatever its age: a token names a key the cached set lacks.
pub(crate) async fn refetch_keys(
    run: &mut Attempt<'_>,
    target: &OAuth2Target,
    jwks_uri: &Url,
) -> (Result<Arc<JwkSet>, Unresolved>, Option<DiscoveryFacts>) {
    let Ok(mut learnt) = tokio::time::timeout_at(run.deadline, target.discovered.0.lock()).await else {
        return (Err((ResultClass::Timeout, "deadline exceeded while waiting for the JWKS".to_owned())), None);
    };
    let (fetched, took) = fetch_jwks(run, jwks_uri, &mut learnt).await;
    learnt.last = Some((fetched.is_ok(), took));
    let facts = learnt.facts();
    match fetched {
        Ok(keys) => (Ok(keys), facts),
        Err(f) => (Err(f), facts),
    }
}

async fn fetch_metadata(
    run: &mut Attempt<'_>,
    issuer: &Url,
    learnt: &mut Learnt,
) -> (Result<(), FetchFailure>, Duration) {
    let mut url = issuer.clone();
    let path = format!("{}/.well-known/openid-configuration", url.path().trim_end_matches('/'));
    url.set_path(&path);
    let (result, took) = fetch(run, &url, DISCOVERY, "Discovery document", |a| classify::metadata(a, issuer)).await;
    let result = result.map(|metadata| learnt.metadata = Some((Arc::new(metadata), Instant::now())));
    (result, took)
}

async fn fetch_jwks(
    run: &mut Attempt<'_>,
    url: &Url,
    learnt: &mut Learnt,
) -> (Result<Arc<JwkSet>, FetchFailure>, Duration) {
    let (result, took) = fetch(run, url, JWKS, "JWKS", classify::jwks).await;
    let result = result.map(|(keys, fingerprint)| {
        if learnt.fingerprint != Some(fingerprint) {
            learnt.fingerprint = Some(fingerprint);
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            learnt.changed_unix = Some(now.as_secs() as i64);
        }
        let keys = Arc::new(keys);
        learnt.jwks = Some((keys.clone(), Instant::now()));
        keys
    });
    (result, took)
}

/// GETs `url` as `step` (`Discovery` or `JWKS`) and reads the answer with `read`.
async fn fetch<T>(
    run: &mut Attempt<'_>,
    url: &Url,
    step: crate::protocol::Step,
    label: &str,
    read: impl FnOnce(&crate::protocol::http::Answer) -> Result<T, FetchFailure>,
) -> (Result<T, FetchFailure>, Duration) {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let request = Request { method: Method::GET, url, label, headers, form: None };
    let received = run.exchange(request).await;
    run.record_http(step, &received, None);
    let took = Attempt::took(&received);
    let result = match received {
        Ok(r) => read(&r.answer()),
        Err(f) => Err((f.class, format!("{label}: {}", f.detail))),
    };
    (result, took)
}
