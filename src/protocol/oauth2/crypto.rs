//! The cryptography jsonwebtoken calls for, done by ring: the library rustls already verifies
//! every certificate and handshake of authprobe with. jsonwebtoken's own backends are RustCrypto
//! (whose P-256 verification took a quarter of a millisecond a run here, and whose rsa crate
//! carries a timing advisory for signing) and aws-lc-rs (a C build of minutes). This module is
//! glue between the two crates' types, not cryptography: every signature is made and checked by
//! ring.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey};

/// The process's jsonwebtoken provider.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(new_error(ErrorKind::UnsupportedAlgorithm)),
        rsa_pub_components_from_public_key: |_| Err(new_error(ErrorKind::UnsupportedAlgorithm)),
        ec_pub_components_from_private_key: |_, _| Err(new_error(ErrorKind::UnsupportedAlgorithm)),
        ed_pub_components_from_private_key: |_, _: &EllipticCurve| Err(new_error(ErrorKind::UnsupportedAlgorithm)),
        compute_digest,
    },
};

/// Makes ring jsonwebtoken's provider for this process. Idempotent; called before every use.
pub fn install() {
    // Err means a provider is installed already: this one, installed by an earlier call.
    let _ = PROVIDER.install_default();
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

/// A public key and how to check signatures with it.
enum Check {
    /// A SEC1 point, an Ed25519 key or an RSA key in PKCS#1 DER.
    Encoded(&'static dyn sig::VerificationAlgorithm, Vec<u8>),
    /// An RSA key as modulus and exponent (from a JWK).
    Components(&'static sig::RsaParameters, Vec<u8>, Vec<u8>),
}

struct RingVerifier {
    algorithm: Algorithm,
    check: Check,
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    use Algorithm as A;
    let family =
        |f: AlgorithmFamily| if key.family() == f { Ok(()) } else { Err(new_error(ErrorKind::InvalidKeyFormat)) };
    let rsa: Option<&'static sig::RsaParameters> = match algorithm {
        A::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        A::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        A::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        A::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        A::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        A::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    };
    let check = if let Some(params) = rsa {
        family(AlgorithmFamily::Rsa)?;
        match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => Check::Components(params, n.clone(), e.clone()),
            DecodingKeyKind::SecretOrDer(der) => Check::Encoded(params, der.clone()),
        }
    } else {
        let params: &'static dyn sig::VerificationAlgorithm = match algorithm {
            A::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            A::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            A::EdDSA => &sig::ED25519,
            // HMAC has no place in checking a token against a public key set.
            _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
        };
        family(if *algorithm == A::EdDSA { AlgorithmFamily::Ed } else { AlgorithmFamily::Ec })?;
        Check::Encoded(params, key.try_get_as_bytes()?.to_vec())
    };
    Ok(Box::new(RingVerifier { algorithm: *algorithm, check }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        let checked = match &self.check {
            Check::Encoded(params, key) => UnparsedPublicKey::new(*params, key).verify(message, signature),
            Check::Components(params, n, e) => RsaPublicKeyComponents { n, e }.verify(params, message, signature),
        };
        checked.map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// A private key: ES256 (PKCS#8) or RS256 (PKCS#1), the two a `private_key_jwt` client signs with.
enum Key {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct RingSigner {
    algorithm: Algorithm,
    key: Key,
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let key = match (algorithm, key.family()) {
        (Algorithm::ES256, AlgorithmFamily::Ec) => Key::Ecdsa(
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, key.as_bytes(), &SystemRandom::new())
                .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))?,
        ),
        (Algorithm::RS256, AlgorithmFamily::Rsa) => Key::Rsa(
            RsaKeyPair::from_der(key.as_bytes()).map_err(|e| new_error(ErrorKind::InvalidRsaKey(e.to_string())))?,
        ),
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(Box::new(RingSigner { algorithm: *algorithm, key }))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        let rng = SystemRandom::new();
        match &self.key {
            Key::Ecdsa(k) => k.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| SignatureError::new()),
            Key::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out).map_err(|_| SignatureError::new())?;
                Ok(out)
            }
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};

    /// ES256 and RS256 keys made by rcgen and by ring itself sign and verify; a token signed
    /// by one key fails against another; HMAC is refused.
    #[test]
    fn signs_and_verifies_with_ring() {
        install();
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let enc = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
        let dec = DecodingKey::from_ec_pem(ec.public_key_pem().as_bytes()).unwrap();
        let claims = serde_json::json!({"sub": "s", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &enc).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_aud = false;
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &dec, &v).is_ok());
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let wrong = DecodingKey::from_ec_pem(other.public_key_pem().as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &wrong, &v).is_err());
        assert!(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"k").unwrap()
        )
        .is_err());
    }
}
