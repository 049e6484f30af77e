//! Durations in the Prometheus notation (`500ms`, `30s`, `1m30s`, `1h`, `1d`), as every
//! Prometheus user already writes them in scrape configs.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d, w), e.g. 30s or 1m30s")]
pub struct ParseDurationError {
    text: String,
}

/// Parses `1h30m`, `250ms`, `0s`… Units must appear from largest to smallest, each at most once,
/// as in Prometheus' `model.ParseDuration`, so that `1s1m` is a typo rather than 61 s.
pub fn parse(text: &str) -> Result<Duration, ParseDurationError> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let err = || ParseDurationError { text: text.chars().take(40).collect() };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total_ms: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (index, unit_ms, len) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .map(|(i, (u, ms))| (i, *ms, u.len()))
            .max_by_key(|&(_, _, len)| len)
            .ok_or_else(err)?;
        if index < next_unit {
            return Err(err());
        }
        next_unit = index + 1;
        rest = &rest[len..];
        total_ms = value.checked_mul(unit_ms).and_then(|ms| total_ms.checked_add(ms)).ok_or_else(err)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration back in the same notation (`90s` → `1m30s`), for messages and pages.
pub fn format(duration: Duration) -> String {
    struct D(u128);
    impl fmt::Display for D {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut ms = self.0;
            if ms == 0 {
                return f.write_str("0s");
            }
            for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
                if ms >= size {
                    write!(f, "{}{unit}", ms / size)?;
                    ms %= size;
                }
            }
            Ok(())
        }
    }
    D(duration.as_millis()).to_string()
}

/// Serde adapter so config structs can hold a [`Duration`] written as `30s`.
pub mod serde_prom {
    use serde::{de, Deserializer};
    use std::fmt;
    use std::time::Duration;

    /// Parsing inside the visitor (rather than after deserialising a `String`) lets the YAML
    /// deserialiser attach the scalar's own line and field path to the error.
    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 30s or 1m30s")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse(v).map_err(E::custom)
        }
    }

    /// Deserialises a Prometheus-style duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(Visitor)
    }

    /// The same for an optional field.
    pub mod option {
        use super::*;
        /// Deserialises `Option<Duration>`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1d2h"), Ok(Duration::from_secs(26 * 3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("1m500ms"), Ok(Duration::from_millis(60_500)));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "30", "s", "5x", "1s1m", "1m1m", "-1s", "1.5s", "30 s", "99999999999999999999y"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let msg = parse("5x").unwrap_err().to_string();
        assert!(msg.contains("\"5x\""), "{msg}");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0s", "30s", "1m30s", "250ms", "1h", "1d2h", "1m500ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
