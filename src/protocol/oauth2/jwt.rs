//! Verifies a JWT (an access token or an ID token) against the target's JWKS with the
//! `jsonwebtoken` crate: the signature (RS256/384/512, PS256/384/512, ES256/384, EdDSA; `none`
//! and HMAC refused, since a public JWKS cannot check them), `iss`, `aud`, `exp`, `nbf` and
//! `iat`, with a leeway for clock skew. Pure but for the clock.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::names::*;
use crate::protocol::Reason;

/// What a token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// One of the `aud` values.
    pub audience: &'a str,
    /// Tolerated clock skew, in seconds.
    pub leeway: u64,
    /// Now, in Unix seconds (for `iat`).
    pub now: u64,
    /// The `nonce` an ID token of an interactive login must carry.
    pub nonce: Option<&'a str>,
}

/// The result of checking one token.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Signature and claims hold.
    Valid,
    /// The token names a key (`kid`) the JWKS does not have: fetch it again, then decide.
    UnknownKey(String),
    /// The token is refused: the reason and a detail.
    Refused(Reason, String),
}

/// Whether `token` has the shape of a JWS compact serialisation whose header is JSON (an
/// opaque access token has not).
pub fn is_jwt(token: &str) -> bool {
    header_json(token).is_some()
}

fn header_json(token: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (header, _, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Checks `token` against `keys`.
pub fn verify(token: &str, keys: &JwkSet, expected: Expected) -> Check {
    super::crypto::install();
    let refused = |reason, detail: String| Check::Refused(reason, detail);
    let Some(header) = header_json(token) else {
        return refused(BAD_SIGNATURE, "not a JWT (no JSON header)".to_owned());
    };
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    let alg = match alg_name.parse::<Algorithm>() {
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
            let shown: String = alg_name.chars().take(20).collect();
            return refused(
                BAD_SIGNATURE,
                format!("signing algorithm {shown:?} refused: only public-key signatures verify against a JWKS"),
            );
        }
        Ok(alg) => alg,
    };
    let kid = header.get("kid").and_then(Value::as_str);
    let jwk = match kid {
        Some(kid) => keys.find(kid),
        // Without a kid, the only key that can verify this algorithm.
        None => {
            let mut fitting = keys.keys.iter().filter(|k| {
                DecodingKey::from_jwk(k).is_ok_and(|d| d.family() == alg.family())
                    && k.common.key_algorithm.is_none_or(|a| Algorithm::try_from(a).is_ok_and(|a| a == alg))
            });
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => Some(k),
                _ => None,
            }
        }
    };
    let Some(jwk) = jwk else {
        let kid: String = kid.unwrap_or("(none)").chars().take(64).collect();
        return Check::UnknownKey(kid);
    };
    if let Some(key_alg) = jwk.common.key_algorithm {
        if Algorithm::try_from(key_alg).ok() != Some(alg) {
            return refused(BAD_SIGNATURE, format!("the token's alg {alg:?} is not its key's {key_alg:?}"));
        }
    }
    let key = match DecodingKey::from_jwk(jwk) {
        Ok(k) if k.family() == alg.family() => k,
        Ok(_) => return refused(BAD_SIGNATURE, format!("the key named by the token cannot verify {alg:?}")),
        Err(e) => return refused(BAD_SIGNATURE, format!("the key named by the token is unusable: {e}")),
    };
    let mut validation = Validation::new(alg);
    validation.leeway = expected.leeway;
    validation.validate_nbf = true;
    // The issuer as configured may differ from the token's by a trailing slash alone (a URL with
    // no path is written both ways): the same issuer.
    let other_form = match expected.issuer.strip_suffix('/') {
        Some(bare) => bare.to_owned(),
        None => format!("{}/", expected.issuer),
    };
    validation.set_issuer(&[expected.issuer, other_form.as_str()]);
    validation.set_audience(&[expected.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            let (reason, detail) = match e.kind() {
                K::InvalidSignature | K::InvalidAlgorithm => {
                    (BAD_SIGNATURE, "the signature does not verify".to_owned())
                }
                K::ExpiredSignature => (EXPIRED, "the token has expired (exp)".to_owned()),
                K::ImmatureSignature => (NOT_YET_VALID, "the token is not valid yet (nbf)".to_owned()),
                K::InvalidIssuer => (WRONG_ISSUER, format!("iss is not {:?}", expected.issuer)),
                K::InvalidAudience => (WRONG_AUDIENCE, format!("aud does not name {:?}", expected.audience)),
                K::MissingRequiredClaim(c) => {
                    let reason = match c.as_str() {
                        "iss" => WRONG_ISSUER,
                        "aud" => WRONG_AUDIENCE,
                        _ => EXPIRED,
                    };
                    (reason, format!("the token has no {c} claim"))
                }
                other => (BAD_SIGNATURE, format!("the token cannot be read: {other:?}").chars().take(120).collect()),
            };
            return refused(reason, detail);
        }
    };
    if let Some(iat) = claims.get("iat").and_then(Value::as_f64) {
        if iat > (expected.now + expected.leeway) as f64 {
            return refused(NOT_YET_VALID, "the token was issued in the future (iat)".to_owned());
        }
    }
    if let Some(nonce) = expected.nonce {
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if n == nonce => {}
            Some(_) => return refused(NONCE_MISMATCH, "nonce is not the one the login sent".to_owned()),
            None => return refused(NONCE_MISMATCH, "the token has no nonce claim".to_owned()),
        }
    }
    Check::Valid
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A P-256 key pair made now: the PEM of its private key and its public JWK.
    fn key(kid: &str) -> (EncodingKey, JwkSet) {
        super::super::crypto::install();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let enc = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let raw = pair.public_key_raw();
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({"kty":"EC","crv":"P-256","kid":kid,"alg":"ES256","use":"sig","x":b64(&raw[1..33]),"y":b64(&raw[33..65])});
        (enc, serde_json::from_value(json!({"keys":[jwk]})).unwrap())
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn sign(enc: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, &claims, enc).unwrap()
    }

    const EXPECTED: fn() -> Expected<'static> =
        || Expected { issuer: "http://idp", audience: "api", leeway: 60, now: now(), nonce: None };

    #[test]
    fn valid_and_each_refusal() {
        let (enc, keys) = key("k1");
        let t = now();
        let good = json!({"iss":"http://idp","aud":"api","exp":t+300,"iat":t,"sub":"s"});
        assert_eq!(verify(&sign(&enc, Some("k1"), good.clone()), &keys, EXPECTED()), Check::Valid);
        assert_eq!(verify(&sign(&enc, None, good.clone()), &keys, EXPECTED()), Check::Valid, "sole key without kid");
        let aud_list = json!({"iss":"http://idp","aud":["other","api"],"exp":t+300});
        assert_eq!(verify(&sign(&enc, Some("k1"), aud_list), &keys, EXPECTED()), Check::Valid);
        assert_eq!(verify(&sign(&enc, Some("k9"), good.clone()), &keys, EXPECTED()), Check::UnknownKey("k9".into()));
        let (other, _) = key("k1");
        let reason = |c: Check| match c {
            Check::Refused(r, _) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(verify(&sign(&other, Some("k1"), good.clone()), &keys, EXPECTED())), BAD_SIGNATURE);
        let claims = |f: &dyn Fn(&mut Value)| {
            let mut c = good.clone();
            f(&mut c);
            sign(&enc, Some("k1"), c)
        };
        type Change<'a> = &'a dyn Fn(&mut Value);
        let cases: [(Change, Reason); 6] = [
            (&|c| c["exp"] = json!(t - 3600), EXPIRED),
            (&|c| c["nbf"] = json!(t + 3600), NOT_YET_VALID),
            (&|c| c["iat"] = json!(t + 3600), NOT_YET_VALID),
            (&|c| c["iss"] = json!("http://evil"), WRONG_ISSUER),
            (&|c| c["aud"] = json!("someone-else"), WRONG_AUDIENCE),
            (&|c| drop(c.as_object_mut().unwrap().remove("aud")), WRONG_AUDIENCE),
        ];
        for (change, want) in cases {
            assert_eq!(reason(verify(&claims(change), &keys, EXPECTED())), want);
        }
        // A trailing slash is the same issuer; another host is not.
        let slash = Expected { issuer: "http://idp/", ..EXPECTED() };
        assert_eq!(verify(&sign(&enc, Some("k1"), good.clone()), &keys, slash), Check::Valid);
        // Within the leeway: a minute of skew is tolerated.
        assert_eq!(verify(&claims(&|c| c["exp"] = json!(t - 30)), &keys, EXPECTED()), Check::Valid);
    }

    #[test]
    fn none_and_hmac_are_refused_and_opaque_tokens_recognised() {
        let (_, keys) = key("k1");
        use base64::Engine as _;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = b64(&json!({"iss":"http://idp","aud":"api","exp":now()+60}));
        for alg in ["none", "HS256"] {
            let token = format!("{}.{claims}.", b64(&json!({"alg":alg,"kid":"k1"})));
            assert!(is_jwt(&token));
            match verify(&token, &keys, EXPECTED()) {
                Check::Refused(BAD_SIGNATURE, d) => assert!(d.contains("refused"), "{d}"),
                other => panic!("{alg}: {other:?}"),
            }
        }
        assert!(!is_jwt("opaque-token-value"));
        assert!(!is_jwt("a.b.c"));
        assert!(matches!(verify("a.b.c", &keys, EXPECTED()), Check::Refused(BAD_SIGNATURE, _)));
    }
}
