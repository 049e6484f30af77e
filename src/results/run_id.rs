//! Run ids: what names one run of one probe wherever it shows (an exemplar on a latency bucket,
//! a row of the probe's page, the JSON API, a log line), so that a spike on a graph leads to the
//! exact run.
//!
//! An id is the probe's key (48 bits of a stable hash of its name) and the run's number among
//! the probe's runs, `5f0c9a3e17d2-4182`: short enough for an exemplar's 128-character label
//! budget whatever the probe is called, and enough on its own for `/runs/ID` to find the probe.
//! Numbers continue across restarts (the store keeps the last one), so an id seen yesterday
//! still names the same run while the probe's history holds it.

use std::fmt;

/// The bits of the name's hash an id keeps: 12 hex digits, so that two of 10,000 probes share a
/// key with a chance of about 1 in 5 million.
const KEY_BITS: u32 = 48;

/// The key of the probe called `name`.
pub fn probe_key(name: &str) -> u64 {
    crate::hash::stable_hash(name.as_bytes()) >> (64 - KEY_BITS)
}

/// One run of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId {
    /// The probe's [`probe_key`].
    pub probe: u64,
    /// The run's number among the probe's runs, from 1.
    pub run: u32,
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012x}-{}", self.probe, self.run)
    }
}

impl std::str::FromStr for RunId {
    type Err = BadRunId;

    fn from_str(s: &str) -> Result<Self, BadRunId> {
        let (key, run) = s.split_once('-').ok_or(BadRunId)?;
        if key.len() != 12 || !key.bytes().all(|b| b.is_ascii_hexdigit()) || run.starts_with('+') {
            return Err(BadRunId);
        }
        let probe = u64::from_str_radix(key, 16).map_err(|_| BadRunId)?;
        let run: u32 = run.parse().map_err(|_| BadRunId)?;
        if run == 0 {
            return Err(BadRunId);
        }
        Ok(RunId { probe, run })
    }
}

impl serde::Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A string that is not a run id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a run id (12 hex digits, a dash and the run's number, as 5f0c9a3e17d2-4182)")]
pub struct BadRunId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_and_keys_are_stable() {
        let id = RunId { probe: probe_key("alice"), run: 4182 };
        let text = id.to_string();
        assert_eq!(text.len(), 12 + 1 + 4);
        assert_eq!(text.parse::<RunId>(), Ok(id));
        // The key is part of what users keep (links, tickets): it must never change.
        assert_eq!(probe_key("alice"), crate::hash::stable_hash(b"alice") >> 16);
        assert_ne!(probe_key("alice"), probe_key("alicf"));
        for bad in [
            "",
            "abc",
            "5f0c9a3e17d2",
            "5f0c9a3e17d2-",
            "5f0c9a3e17d2-0",
            "5f0c9a3e17dz-1",
            "5f0c9a3e17d-1",
            "5f0c9a3e17d2-+1",
            "5f0c9a3e17d2-99999999999",
        ] {
            assert_eq!(bad.parse::<RunId>(), Err(BadRunId), "{bad}");
        }
    }
}
