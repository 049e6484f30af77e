//! Availability — successful runs ÷ runs — over the last hour, day, week and month, from
//! compact per-interval counts: 12 five-minute buckets, 168 hourly ones (also the per-hour view
//! of the last 7 days) and 30 daily ones. A bucket holds two counters of a byte each while they
//! fit (a probe every 15 s or less often fills at most 240 an hour) and widens to 32 bits the
//! first time one would not: the three rings in one allocation, about 460 bytes a probe (420
//! of counters), 4.6 MB at 10,000 probes.
//!
//! A window ends now and is made of whole buckets, the current one included: "1h" is the last
//! 12 five-minute buckets (55 to 60 minutes), "24h" the last 24 hourly ones, and so on.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The windows availability is given over: name, bucket length and bucket count, in seconds.
pub const WINDOWS: [Window; 4] = [
    Window { name: "1h", ring: Ring::FiveMinutes, buckets: 12 },
    Window { name: "24h", ring: Ring::Hourly, buckets: 24 },
    Window { name: "7d", ring: Ring::Hourly, buckets: 168 },
    Window { name: "30d", ring: Ring::Daily, buckets: 30 },
];

/// One window of [`WINDOWS`].
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// `1h`, `24h`, `7d` or `30d`.
    pub name: &'static str,
    ring: Ring,
    buckets: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ring {
    FiveMinutes,
    Hourly,
    Daily,
}

impl Ring {
    fn seconds(self) -> u64 {
        match self {
            Ring::FiveMinutes => 300,
            Ring::Hourly => 3600,
            Ring::Daily => 86_400,
        }
    }
}

/// Runs and successful runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Runs.
    pub runs: u64,
    /// Of which successful.
    pub successes: u64,
}

impl Counts {
    /// Successes ÷ runs; `None` without runs.
    pub fn ratio(self) -> Option<f64> {
        (self.runs > 0).then(|| self.successes as f64 / self.runs as f64)
    }

    fn add(&mut self, other: Counts) {
        self.runs += other.runs;
        self.successes += other.successes;
    }
}

/// Bucket counters: a byte each while they fit, 32 bits after.
#[derive(Debug, Clone)]
enum Cells {
    Narrow(Box<[[u8; 2]]>),
    Wide(Box<[[u32; 2]]>),
}

/// Where each ring's buckets sit in the one allocation: offset and length.
const RINGS: [(Ring, usize, u64); 3] = [(Ring::FiveMinutes, 0, 12), (Ring::Hourly, 12, 168), (Ring::Daily, 180, 30)];
const CELLS: usize = 210;

/// The availability record of one probe: the three rings in one allocation, each with the
/// number of its newest bucket (seconds since the epoch ÷ its bucket length).
#[derive(Debug, Clone)]
pub struct Availability {
    cells: Cells,
    newest: [u32; 3],
}

impl Default for Availability {
    fn default() -> Self {
        Availability { cells: Cells::Narrow(vec![[0; 2]; CELLS].into_boxed_slice()), newest: [0; 3] }
    }
}

impl Availability {
    fn ring_index(ring: Ring) -> usize {
        RINGS.iter().position(|(r, ..)| *r == ring).expect("every ring is listed")
    }

    fn clear(&mut self, i: usize) {
        match &mut self.cells {
            Cells::Narrow(c) => c[i] = [0; 2],
            Cells::Wide(c) => c[i] = [0; 2],
        }
    }

    /// Counts a run in bucket number `bucket` of ring `r` (an index into [`RINGS`]).
    fn add(&mut self, r: usize, bucket: u64, ok: bool) {
        let (_, offset, len) = RINGS[r];
        let newest = u64::from(self.newest[r]);
        if bucket > newest {
            // Clear the buckets passed over, at most the whole ring.
            for b in bucket + 1 - (bucket - newest).min(len)..=bucket {
                self.clear(offset + (b % len) as usize);
            }
            self.newest[r] = u32::try_from(bucket).unwrap_or(u32::MAX);
        } else if bucket + len <= newest {
            return; // Older than the ring (a clock stepped back): nowhere to count it.
        }
        let i = offset + (bucket % len) as usize;
        if let Cells::Narrow(c) = &self.cells {
            if c[i][0] == u8::MAX {
                let wide: Vec<[u32; 2]> = c.iter().map(|[r, s]| [u32::from(*r), u32::from(*s)]).collect();
                self.cells = Cells::Wide(wide.into_boxed_slice());
            }
        }
        match &mut self.cells {
            Cells::Narrow(c) => {
                c[i][0] += 1;
                c[i][1] += u8::from(ok);
            }
            Cells::Wide(c) => {
                c[i][0] = c[i][0].saturating_add(1);
                c[i][1] = c[i][1].saturating_add(u32::from(ok));
            }
        }
    }

    /// The counts of bucket number `bucket` of ring `r`, zero if outside the ring.
    fn get(&self, r: usize, bucket: u64) -> Counts {
        let (_, offset, len) = RINGS[r];
        let newest = u64::from(self.newest[r]);
        if bucket > newest || bucket + len <= newest {
            return Counts::default();
        }
        let i = offset + (bucket % len) as usize;
        let [runs, successes] = match &self.cells {
            Cells::Narrow(c) => [u32::from(c[i][0]), u32::from(c[i][1])],
            Cells::Wide(c) => c[i],
        };
        Counts { runs: u64::from(runs), successes: u64::from(successes) }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Availability {
    /// Counts a run that finished at `at`.
    pub fn record(&mut self, at: SystemTime, ok: bool) {
        let t = unix(at);
        for (r, (ring, ..)) in RINGS.iter().enumerate() {
            self.add(r, t / ring.seconds(), ok);
        }
    }

    /// Runs and successes in `window`, ending at `now`.
    pub fn counts(&self, window: Window, now: SystemTime) -> Counts {
        let current = unix(now) / window.ring.seconds();
        let r = Self::ring_index(window.ring);
        let mut sum = Counts::default();
        for b in current.saturating_sub(window.buckets - 1)..=current {
            sum.add(self.get(r, b));
        }
        sum
    }

    /// The last 168 hours, oldest first: each hour's start (Unix seconds) and counts.
    pub fn hours(&self, now: SystemTime) -> Vec<(u64, Counts)> {
        let current = unix(now) / 3600;
        let r = Self::ring_index(Ring::Hourly);
        (current.saturating_sub(167)..=current).map(|h| (h * 3600, self.get(r, h))).collect()
    }
}

/// Counts over every window summed per target, as probes are read one after the other: each
/// probe's buckets are read once, for its own figures and its target's.
#[derive(Debug, Default)]
pub struct TargetSums<'a>(std::collections::BTreeMap<&'a str, [Counts; 4]>);

impl<'a> TargetSums<'a> {
    /// Adds a probe of `target` whose counts are `counts`.
    pub fn add(&mut self, target: &'a str, counts: [Counts; 4]) {
        let sum = self.0.entry(target).or_default();
        for (s, c) in sum.iter_mut().zip(counts) {
            s.add(c);
        }
    }

    /// Each target's counts per window, targets by name.
    pub fn counts(&self) -> Vec<(String, [Counts; 4])> {
        self.0.iter().map(|(t, c)| ((*t).to_owned(), *c)).collect()
    }
}

/// Availability over every window of [`WINDOWS`], as pages and the API show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Figures {
    /// The last hour.
    #[serde(rename = "1h")]
    pub hour: Option<f64>,
    /// The last 24 hours.
    #[serde(rename = "24h")]
    pub day: Option<f64>,
    /// The last 7 days.
    #[serde(rename = "7d")]
    pub week: Option<f64>,
    /// The last 30 days.
    #[serde(rename = "30d")]
    pub month: Option<f64>,
}

impl Figures {
    /// The figures of summed `counts`, one per window of [`WINDOWS`].
    pub fn of(counts: [Counts; 4]) -> Self {
        Figures { hour: counts[0].ratio(), day: counts[1].ratio(), week: counts[2].ratio(), month: counts[3].ratio() }
    }

    /// The figure of the window called `name`.
    pub fn get(&self, name: &str) -> Option<Option<f64>> {
        match name {
            "1h" => Some(self.hour),
            "24h" => Some(self.day),
            "7d" => Some(self.week),
            "30d" => Some(self.month),
            _ => None,
        }
    }
}

impl Availability {
    /// The buckets as stored.
    pub(super) fn saved(&self) -> super::saved::SavedAvailability {
        let cells = match &self.cells {
            Cells::Narrow(c) => c.iter().map(|[r, s]| [u32::from(*r), u32::from(*s)]).collect(),
            Cells::Wide(c) => c.to_vec(),
        };
        super::saved::SavedAvailability { newest: self.newest, cells }
    }

    /// Stored buckets, narrow again where every count fits a byte.
    pub(super) fn from_saved(saved: &super::saved::SavedAvailability) -> Result<Self, super::saved::RestoreError> {
        if saved.cells.len() != CELLS {
            return Err(super::saved::RestoreError::Buckets(saved.cells.len()));
        }
        let narrow = saved.cells.iter().all(|[r, s]| *r < u32::from(u8::MAX) && s <= r);
        let cells = if narrow {
            Cells::Narrow(saved.cells.iter().map(|[r, s]| [*r as u8, *s as u8]).collect())
        } else {
            Cells::Wide(saved.cells.iter().map(|[r, s]| [*r, (*s).min(*r)]).collect())
        };
        Ok(Availability { cells, newest: saved.newest })
    }

    /// Counts over every window, ending at `now`.
    pub fn all_counts(&self, now: SystemTime) -> [Counts; 4] {
        WINDOWS.map(|w| self.counts(w, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn windows_count_what_falls_in_them() {
        let mut a = Availability::default();
        let start = 1_800_000_000 / 86_400 * 86_400; // midnight UTC
                                                     // A day of runs every minute, failing from 10:00 to 10:59.
        for m in 0..1440 {
            let t = start + m * 60;
            a.record(at(t), !(600..660).contains(&m));
        }
        let now = at(start + 1439 * 60);
        let [hour, day, week, month] = a.all_counts(now);
        assert_eq!(hour, Counts { runs: 60, successes: 60 }, "the last 12 five-minute buckets");
        assert_eq!(day, Counts { runs: 1440, successes: 1380 });
        assert_eq!(week, day);
        assert_eq!(month, day);
        let f = Figures::of([hour, day, week, month]);
        assert_eq!(f.hour, Some(1.0));
        assert!((f.day.unwrap() - 1380.0 / 1440.0).abs() < 1e-12);
        let hours = a.hours(now);
        assert_eq!(hours.len(), 168);
        assert_eq!(hours[167 - 13].1, Counts { runs: 60, successes: 0 }, "10:00 failed throughout");
        assert_eq!(hours[167].1, Counts { runs: 60, successes: 60 });
        // Two days later the day has left the 24h window but not the week.
        let later = at(start + 3 * 86_400);
        let [hour, day, week, month] = a.all_counts(later);
        assert_eq!((hour.runs, day.runs, week.runs, month.runs), (0, 0, 1440, 1440));
        assert_eq!(Figures::of([hour, day, week, month]).day, None, "no runs: no figure");
        // A new run far later clears what it passes over.
        a.record(at(start + 40 * 86_400), true);
        assert_eq!(a.counts(WINDOWS[3], at(start + 40 * 86_400)), Counts { runs: 1, successes: 1 });
    }

    #[test]
    fn buckets_widen_when_a_byte_is_not_enough() {
        let mut a = Availability::default();
        let t = 1_800_000_000;
        for i in 0..1000 {
            a.record(at(t + i % 200), i % 4 != 0);
        }
        let c = a.counts(WINDOWS[0], at(t + 200));
        assert_eq!(c, Counts { runs: 1000, successes: 750 });
        assert!(matches!(a.cells, Cells::Wide(_)));
        // A clock stepped back beyond the ring is ignored, not counted in the wrong bucket.
        a.record(at(t - 90 * 86_400), true);
        assert_eq!(a.counts(WINDOWS[3], at(t + 200)).runs, 1000);
    }

    #[test]
    fn a_narrow_probe_costs_under_460_bytes() {
        let a = Availability::default();
        let heap = CELLS * 2;
        assert!(std::mem::size_of_val(&a) + heap <= 460, "{} + {heap}", std::mem::size_of_val(&a));
    }
}
