//! The timer wheel: interval probes at their phase, and the cron watchdog.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::time::delay_queue::Key;
use tokio_util::time::DelayQueue;

use super::cron::{self, Source};
use super::dispatch::{Dispatcher, Entry};
use crate::config::Schedule;
use crate::results::{Results, SkipReason};

/// Where in each interval a probe runs: a deterministic hash of its name, so that many probes
/// with the same interval spread over it, and a restarted process keeps every probe's phase.
pub fn phase_offset(name: &str, interval: Duration) -> Duration {
    let h = crate::hash::stable_hash(name.as_bytes());
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

/// What the wheel is asked to do besides ticking.
pub(super) enum Command {
    /// Schedule exactly these entries from now on (a reload). An entry that is the same `Arc` as
    /// before keeps its place; a new entry under a known name with the same schedule takes over
    /// its predecessor's next tick; any other entry is placed at its phase.
    Replace(Vec<Arc<Entry>>, oneshot::Sender<()>),
    /// Stop ticking.
    Stop,
}

struct Slot {
    entry: Arc<Entry>,
    key: Key,
}

/// The wheel: entries in slots, the queue holding slot numbers.
struct Wheel {
    queue: DelayQueue<usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
}

impl Wheel {
    fn first_deadline(entry: &Entry) -> Instant {
        match &entry.probe.schedule {
            Schedule::Interval(every) => {
                let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                Instant::now() + until_first_tick(&entry.probe.name, *every, wall)
            }
            Schedule::Cron(_) => cron::watchdog_deadline(entry),
        }
    }

    fn add(&mut self, entry: Arc<Entry>) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let first = Self::first_deadline(&entry);
        publish_next(&entry, first);
        let key = self.queue.insert_at(slot, first);
        self.slots[slot] = Some(Slot { entry, key });
    }

    fn replace(&mut self, entries: Vec<Arc<Entry>>) {
        let mut by_name: HashMap<Arc<str>, usize> = HashMap::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(s) = slot {
                by_name.insert(s.entry.probe.name.clone(), i);
            }
        }
        for entry in entries {
            match by_name.remove(&*entry.probe.name) {
                Some(i) => {
                    let slot = self.slots[i].as_mut().expect("indexed slots are filled");
                    if Arc::ptr_eq(&slot.entry, &entry) {
                        continue;
                    }
                    if slot.entry.probe.schedule != entry.probe.schedule {
                        self.queue.reset_at(&slot.key, Self::first_deadline(&entry));
                    }
                    // The results may be new (the probe's labels changed): tell them too.
                    publish_next(&entry, self.queue.deadline(&slot.key));
                    slot.entry = entry;
                }
                None => self.add(entry),
            }
        }
        // Names left over were removed from the configuration.
        for (_, i) in by_name {
            if let Some(slot) = self.slots[i].take() {
                self.queue.remove(&slot.key);
                self.free.push(i);
            }
        }
    }
}

/// Runs the wheel until told to stop; entries arrive by [`Command::Replace`].
pub(super) async fn run(
    dispatcher: Arc<Dispatcher>,
    results: Arc<Results>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut wheel = Wheel { queue: DelayQueue::new(), slots: Vec::new(), free: Vec::new() };
    loop {
        let expired = tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Replace(entries, done)) => {
                    wheel.replace(entries);
                    let _ = done.send(());
                    continue;
                }
                Some(Command::Stop) | None => return,
            },
            // An empty queue answers Ready(None) at once: only poll it when it holds something.
            Some(expired) = poll_fn(|cx| wheel.queue.poll_expired(cx)), if !wheel.queue.is_empty() => expired,
        };
        let i = *expired.get_ref();
        let Some(slot) = wheel.slots[i].as_mut() else { continue };
        let entry = slot.entry.clone();
        let next = match &entry.probe.schedule {
            Schedule::Interval(every) => {
                let planned = expired.deadline();
                dispatcher.dispatch(&entry, planned);
                next_tick(&entry, planned, *every, Instant::now())
            }
            Schedule::Cron(_) => {
                cron::activate(&entry, &dispatcher, &results, Source::Watchdog);
                cron::watchdog_deadline(&entry)
            }
        };
        publish_next(&entry, next);
        slot.key = wheel.queue.insert_at(i, next);
    }
}

/// Tells an interval probe's results when its next start is planned, for people. A cron
/// probe's wheel deadline is its watchdog's; the cron clock tells its planned start instead.
fn publish_next(entry: &Entry, at: Instant) {
    if matches!(entry.probe.schedule, Schedule::Interval(_)) {
        entry.results.set_next_run(super::wall(at));
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
