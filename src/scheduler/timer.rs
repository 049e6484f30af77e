//! The timer wheel: interval probes at their phase, and the cron watchdog.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

use super::cron::{self, Source};
use super::dispatch::{Dispatcher, Entry};
use crate::config::Schedule;
use crate::results::{Results, SkipReason};

/// Where in each interval a probe runs: a deterministic hash of its name, so that many probes
/// with the same interval spread over it, and a restarted process keeps every probe's phase.
pub fn phase_offset(name: &str, interval: Duration) -> Duration {
    // FNV-1a is stable across Rust releases and platforms (std's hasher is not); the final
    // mix spreads names that differ only in their last characters over the whole period.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    let period = period_ms(interval);
    Duration::from_millis(h % period)
}

fn period_ms(interval: Duration) -> u64 {
    u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Time from `now` (since the Unix epoch) to the probe's next phase point: phases are anchored
/// to wall-clock time, not to the process start.
pub(super) fn until_first_tick(name: &str, interval: Duration, now: Duration) -> Duration {
    let period = period_ms(interval);
    let offset = phase_offset(name, interval).as_millis() as u64;
    let position = (now.as_millis() % u128::from(period)) as u64;
    Duration::from_millis((offset + period - position) % period)
}

/// Runs the wheel until `stop` fires.
pub(super) async fn run(
    entries: Vec<Arc<Entry>>,
    dispatcher: Arc<Dispatcher>,
    results: Arc<Results>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut queue = DelayQueue::with_capacity(entries.len());
    let now = Instant::now();
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for (i, e) in entries.iter().enumerate() {
        match &e.probe.schedule {
            Schedule::Interval(every) => queue.insert_at(i, now + until_first_tick(&e.probe.name, *every, wall)),
            Schedule::Cron(_) => queue.insert_at(i, cron::watchdog_deadline(e)),
        };
    }
    loop {
        if queue.is_empty() {
            let _ = (&mut stop).await;
            return;
        }
        let expired = tokio::select! {
            _ = &mut stop => return,
            expired = poll_fn(|cx| queue.poll_expired(cx)) => expired,
        };
        let Some(expired) = expired else { continue };
        let i = *expired.get_ref();
        let entry = &entries[i];
        match &entry.probe.schedule {
            Schedule::Interval(every) => {
                let planned = expired.deadline();
                dispatcher.dispatch(entry, planned);
                queue.insert_at(i, next_tick(entry, planned, *every, Instant::now()));
            }
            Schedule::Cron(_) => {
                cron::activate(entry, &dispatcher, &results, Source::Watchdog);
                queue.insert_at(i, cron::watchdog_deadline(entry));
            }
        }
    }
}

/// The tick after `planned`; ticks already in the past (the process was suspended or starved)
/// are skipped and counted rather than run in a burst.
fn next_tick(entry: &Entry, planned: Instant, every: Duration, now: Instant) -> Instant {
    let next = planned + every;
    if next > now {
        return next;
    }
    let behind = now - next;
    let missed = (behind.as_nanos() / every.as_nanos().max(1)) as u64 + 1;
    entry.results.record_skip(SkipReason::Missed, missed);
    tracing::warn!(probe = %entry.probe.name, missed, "scheduler fell behind; ticks skipped");
    next + Duration::from_nanos(u64::try_from(every.as_nanos() * u128::from(missed)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_stable_and_spread() {
        let minute = Duration::from_secs(60);
        assert_eq!(phase_offset("alice", minute), phase_offset("alice", minute));
        let mut per_second = [0u32; 60];
        for i in 0..6000 {
            let off = phase_offset(&format!("probe-{i:05}"), minute);
            assert!(off < minute);
            per_second[off.as_secs() as usize] += 1;
        }
        // 100 per second on average; a clustered hash would leave seconds empty or crowded.
        let (min, max) = (per_second.iter().min().unwrap(), per_second.iter().max().unwrap());
        assert!(*min >= 60 && *max <= 140, "uneven spread: min {min}, max {max}");
    }

    #[test]
    fn first_tick_lands_on_the_phase_in_wall_clock_time() {
        let every = Duration::from_secs(30);
        let offset = phase_offset("bob", every);
        for now_ms in [0u64, 1, 29_999, 1_763_880_000_123] {
            let now = Duration::from_millis(now_ms);
            let wait = until_first_tick("bob", every, now);
            assert!(wait < every);
            assert_eq!(((now + wait).as_millis() % 30_000) as u64, offset.as_millis() as u64);
        }
    }
}
