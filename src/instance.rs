//! Which probes this instance runs and how it labels them, when several instances share one
//! configuration: its shard of the probes (`--shard.index`/`--shard.count`, or the ordinal of a
//! StatefulSet pod name) and its `location` label (`--location`).

use std::fmt;

use crate::config::Probe;

/// The label every probe series carries when a location is set.
pub const LOCATION_LABEL: &str = "location";

/// Longest location name, in characters.
pub const MAX_LOCATION_CHARS: usize = 128;

/// Why the instance settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    /// `--shard.count` is 0, or the index is not below it.
    #[error("shard index {index} is out of range for {count} shard(s): use 0 to {last}", last = count.saturating_sub(1))]
    ShardOutOfRange {
        /// The index asked for.
        index: u32,
        /// The number of shards.
        count: u32,
    },
    /// `--shard.count` is 0.
    #[error("--shard.count must be at least 1")]
    NoShards,
    /// The host name does not end in `-N`.
    #[error("cannot take the shard index from host name {0:?}: it does not end in -N (as StatefulSet pods do, e.g. authprobe-2)")]
    HostName(String),
    /// The location is empty or too long.
    #[error("--location must be 1 to {MAX_LOCATION_CHARS} characters")]
    Location,
}

/// This instance's part of the probes: those whose name hashes to `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, InstanceError> {
        if count == 0 {
            return Err(InstanceError::NoShards);
        }
        if index >= count {
            return Err(InstanceError::ShardOutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// The shard named by a StatefulSet pod's host name, `NAME-ORDINAL`.
    pub fn from_hostname(hostname: &str, count: u32) -> Result<Shard, InstanceError> {
        let ordinal = hostname
            .rsplit_once('-')
            .map(|(_, n)| n)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| InstanceError::HostName(hostname.chars().take(253).collect()))?;
        Shard::new(ordinal, count)
    }

    /// Whether the probe called `name` belongs to this shard. Stable: the same name is in the
    /// same shard on every instance, release and restart.
    pub fn owns(&self, name: &str) -> bool {
        let h = crate::hash::stable_hash(format!("shard/{name}").as_bytes());
        h % u64::from(self.count) == u64::from(self.index)
    }

    /// The shard's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The number of shards.
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)
    }
}

/// What an instance runs and how it labels it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    /// `None`: every probe.
    pub shard: Option<Shard>,
    /// Added to every probe series as `location`.
    pub location: Option<String>,
}

impl Instance {
    /// An instance with these settings, checked.
    pub fn new(shard: Option<Shard>, location: Option<String>) -> Result<Instance, InstanceError> {
        if location.as_ref().is_some_and(|l| l.is_empty() || l.chars().count() > MAX_LOCATION_CHARS) {
            return Err(InstanceError::Location);
        }
        Ok(Instance { shard, location })
    }

    /// The probes of a configuration this instance runs, with its location label added.
    pub fn select(&self, probes: Vec<Probe>) -> Vec<Probe> {
        probes
            .into_iter()
            .filter(|p| self.shard.is_none_or(|s| s.owns(&p.name)))
            .map(|mut p| {
                if let Some(location) = &self.location {
                    // The configuration reserves the label name, so it is not there already.
                    let mut labels = p.labels.to_vec();
                    labels.push((LOCATION_LABEL.to_owned(), location.clone()));
                    labels.sort();
                    p.labels = labels.into();
                }
                p
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_name_exactly_once_and_evenly() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let mut sizes = [0usize; 3];
        for n in 0..3000 {
            let name = format!("probe-{n}");
            let owners: Vec<usize> = (0..3).filter(|i| shards[*i].owns(&name)).collect();
            assert_eq!(owners.len(), 1, "{name}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|s| (900..=1100).contains(s)), "{sizes:?}");
        assert!(Shard::new(0, 1).unwrap().owns("anything"));
    }

    #[test]
    fn bad_settings_are_refused_clearly() {
        assert_eq!(Shard::new(3, 3), Err(InstanceError::ShardOutOfRange { index: 3, count: 3 }));
        assert_eq!(Shard::new(0, 0), Err(InstanceError::NoShards));
        assert_eq!(Shard::from_hostname("authprobe-2", 3), Shard::new(2, 3));
        assert_eq!(Shard::from_hostname("my-authprobe-0", 2), Shard::new(0, 2));
        for bad in ["authprobe", "authprobe-", "authprobe-x1", "authprobe-+1"] {
            assert!(matches!(Shard::from_hostname(bad, 3), Err(InstanceError::HostName(_))), "{bad}");
        }
        assert_eq!(Instance::new(None, Some(String::new())), Err(InstanceError::Location));
        assert_eq!(
            Shard::new(5, 3).unwrap_err().to_string(),
            "shard index 5 is out of range for 3 shard(s): use 0 to 2"
        );
    }
}
