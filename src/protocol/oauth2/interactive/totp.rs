//! Time-based one-time passwords (RFC 6238): the code an authenticator app shows, computed from
//! the probe's `totp_secret`, and the guard that never sends a time step twice.
//!
//! Identity providers refuse a code of a time step already used by the same secret (RFC 6238
//! §5.2), as a wrong code: a probe that logged in twice within one period would fail the second
//! time. Every step sent is remembered per secret, process-wide (probes sharing an account share
//! the memory, and it survives a reload); a run that would reuse one waits for the next step,
//! within its deadline.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use zeroize::Zeroizing;

/// The HMAC of the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA-1, what authenticator apps assume.
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

/// A TOTP generator. Prints its parameters, never its key.
#[derive(Clone)]
pub struct Totp {
    key: Zeroizing<Vec<u8>>,
    /// The secret as written: what tells two apart, and what outputs redact.
    text: SecretString,
    /// What its steps are remembered by (see [`Totp::claim`]).
    id: u64,
    /// The HMAC.
    pub algorithm: Algorithm,
    /// Digits of a code, 6 to 8.
    pub digits: u32,
    /// Seconds of a time step.
    pub period: u64,
}

impl fmt::Debug for Totp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Totp")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// Why a `totp_secret` cannot be used. Never quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not base32.
    #[error("not a base32 secret (A-Z, 2-7) nor an otpauth://totp/ URI")]
    NotBase32,
    /// Decodes to nothing useful.
    #[error("the secret is shorter than 10 bytes (RFC 4226 asks for 16 or more)")]
    TooShort,
    /// An otpauth URI authprobe cannot use.
    #[error("otpauth URI: {0}")]
    Uri(&'static str),
}

impl Totp {
    /// Reads a base32 secret (spaces and padding allowed, any case) or an `otpauth://totp/` URI
    /// (its `secret`, `algorithm`, `digits` and `period`).
    pub fn parse(text: &str) -> Result<Totp, TotpError> {
        let text = text.trim();
        if !text.to_ascii_lowercase().starts_with("otpauth:") {
            return Ok(Totp::new(decode(text)?, SecretString::from(text.to_owned()), Algorithm::Sha1, 6, 30));
        }
        let url = url::Url::parse(text).map_err(|_| TotpError::Uri("not a URI"))?;
        if !url.host_str().is_some_and(|h| h.eq_ignore_ascii_case("totp")) {
            return Err(TotpError::Uri("only otpauth://totp/ (time-based) codes are supported"));
        }
        let (mut key, mut algorithm, mut digits, mut period) = (None, Algorithm::Sha1, 6, 30);
        for (name, value) in url.query_pairs() {
            match name.to_ascii_lowercase().as_str() {
                "secret" => key = Some(decode(&value)?),
                "algorithm" => {
                    algorithm = match value.to_ascii_uppercase().replace('-', "").as_str() {
                        "SHA1" => Algorithm::Sha1,
                        "SHA256" => Algorithm::Sha256,
                        "SHA512" => Algorithm::Sha512,
                        _ => return Err(TotpError::Uri("algorithm must be SHA1, SHA256 or SHA512")),
                    }
                }
                "digits" => {
                    digits = value
                        .parse()
                        .ok()
                        .filter(|d| (6..=8).contains(d))
                        .ok_or(TotpError::Uri("digits must be 6, 7 or 8"))?
                }
                "period" => {
                    period = value
                        .parse()
                        .ok()
                        .filter(|p| (1..=600).contains(p))
                        .ok_or(TotpError::Uri("period must be 1 to 600 seconds"))?
                }
                _ => {}
            }
        }
        let key = key.ok_or(TotpError::Uri("no secret parameter"))?;
        Ok(Totp::new(key, SecretString::from(text.to_owned()), algorithm, digits, period))
    }

    fn new(key: Zeroizing<Vec<u8>>, text: SecretString, algorithm: Algorithm, digits: u32, period: u64) -> Totp {
        // Steps of two periods are not comparable: the key and the period, hashed.
        let mut bytes = Zeroizing::new(key.to_vec());
        bytes.extend_from_slice(&period.to_be_bytes());
        let id = crate::hash::stable_hash(&bytes);
        Totp { key, text, id, algorithm, digits, period }
    }

    /// A generator of `key` (raw bytes), for tests against RFC 6238's vectors.
    pub fn from_key(key: &[u8], algorithm: Algorithm, digits: u32, period: u64) -> Totp {
        let text = SecretString::from(data_encoding::BASE32_NOPAD.encode(key));
        Totp::new(Zeroizing::new(key.to_vec()), text, algorithm, digits, period)
    }

    /// The time step of `unix` seconds.
    pub fn step_at(&self, unix: u64) -> u64 {
        unix / self.period
    }

    /// When `step` starts, in Unix seconds.
    pub fn step_start(&self, step: u64) -> u64 {
        step.saturating_mul(self.period)
    }

    /// The code of `step` (RFC 4226 §5.3's dynamic truncation of the step's HMAC).
    pub fn code(&self, step: u64) -> SecretString {
        let algorithm = match self.algorithm {
            Algorithm::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => ring::hmac::HMAC_SHA256,
            Algorithm::Sha512 => ring::hmac::HMAC_SHA512,
        };
        let tag = ring::hmac::sign(&ring::hmac::Key::new(algorithm, &self.key), &step.to_be_bytes());
        let h = tag.as_ref();
        let at = usize::from(h[h.len() - 1] & 0x0f);
        let binary = u32::from_be_bytes([h[at] & 0x7f, h[at + 1], h[at + 2], h[at + 3]]);
        let code = Zeroizing::new(format!("{:0width$}", binary % 10u32.pow(self.digits), width = self.digits as usize));
        SecretString::from(code.as_str().to_owned())
    }

    /// Claims the time step to send now: the current one, or the next unused one and how long
    /// to wait for it to start. The step is remembered as used.
    pub fn claim(&self, now: SystemTime) -> (u64, Duration) {
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let current = self.step_at(unix.as_secs());
        let id = self.id;
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        let map = used.get_or_insert_with(HashMap::new);
        let step = match map.get(&id) {
            Some(&last) if last >= current => last + 1,
            _ => current,
        };
        map.insert(id, step);
        let starts = Duration::from_secs(self.step_start(step));
        (step, starts.saturating_sub(unix))
    }

    /// Forgets a claimed step that was never sent (the run ended before it could be).
    pub fn release(&self, step: u64) {
        let id = self.id;
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = used.as_mut() {
            if map.get(&id) == Some(&step) {
                map.insert(id, step - 1);
            }
        }
    }

    /// The secret as written.
    pub fn text(&self) -> &SecretString {
        &self.text
    }
}

/// The last time step sent per secret (keyed by a hash of the key, never the key).
static USED: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);

fn decode(text: &str) -> Result<Zeroizing<Vec<u8>>, TotpError> {
    let clean: Zeroizing<String> = Zeroizing::new(
        text.chars().filter(|c| !c.is_whitespace() && *c != '=' && *c != '-').map(|c| c.to_ascii_uppercase()).collect(),
    );
    let key = data_encoding::BASE32_NOPAD.decode(clean.as_bytes()).map_err(|_| TotpError::NotBase32)?;
    if key.len() < 10 {
        return Err(TotpError::TooShort);
    }
    Ok(Zeroizing::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    /// RFC 6238 appendix B: the seeds are the ASCII digits repeated to the hash's size.
    #[test]
    fn rfc_6238_appendix_b() {
        let seed = |n: usize| b"1234567890".iter().cycle().take(n).copied().collect::<Vec<u8>>();
        let sha1 = Totp::from_key(&seed(20), Algorithm::Sha1, 8, 30);
        let sha256 = Totp::from_key(&seed(32), Algorithm::Sha256, 8, 30);
        let sha512 = Totp::from_key(&seed(64), Algorithm::Sha512, 8, 30);
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, a, b, c) in table {
            assert_eq!(sha1.code(sha1.step_at(time)).expose_secret(), a, "SHA-1 at {time}");
            assert_eq!(sha256.code(sha256.step_at(time)).expose_secret(), b, "SHA-256 at {time}");
            assert_eq!(sha512.code(sha512.step_at(time)).expose_secret(), c, "SHA-512 at {time}");
        }
    }

    #[test]
    fn secrets_and_uris_are_read() {
        // "12345678901234567890" in base32, written as apps show it.
        let t = Totp::parse("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!((t.algorithm, t.digits, t.period), (Algorithm::Sha1, 6, 30));
        assert_eq!(t.code(t.step_at(59)).expose_secret(), "287082");
        let u = Totp::parse(
            "otpauth://totp/IdP:probe?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&period=60&issuer=IdP",
        )
        .unwrap();
        assert_eq!((u.algorithm, u.digits, u.period), (Algorithm::Sha256, 8, 60));
        for (bad, why) in [
            ("not base32!", TotpError::NotBase32),
            ("GEZDGNBV", TotpError::TooShort),
            (
                "otpauth://hotp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
                TotpError::Uri("only otpauth://totp/ (time-based) codes are supported"),
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=9",
                TotpError::Uri("digits must be 6, 7 or 8"),
            ),
            ("otpauth://totp/x?digits=6", TotpError::Uri("no secret parameter")),
        ] {
            assert_eq!(Totp::parse(bad).unwrap_err(), why, "{bad}");
        }
        let shown = format!("{:?} {}", u, TotpError::NotBase32);
        assert!(!shown.contains("GEZD"), "{shown}");
    }

    #[test]
    fn a_step_is_never_claimed_twice() {
        let t = Totp::from_key(b"claim-test-key-Zx81-unique", Algorithm::Sha1, 6, 30);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(30 * 1000 + 7);
        assert_eq!(t.claim(now), (1000, Duration::ZERO));
        // Within the same step: the next one, 23 s away.
        assert_eq!(t.claim(now + Duration::from_secs(1)), (1001, Duration::from_secs(22)));
        t.release(1001);
        assert_eq!(t.claim(now + Duration::from_secs(2)), (1001, Duration::from_secs(21)));
        assert_eq!(t.claim(now + Duration::from_secs(60)), (1002, Duration::ZERO));
    }
}
