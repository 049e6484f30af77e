//! The lockout guard: a probe whose credentials keep failing runs less and less often, so that
//! authprobe does not lock the real account it logs in with.
//!
//! After `max_failures` consecutive credential failures the gap between runs doubles with each
//! further one (period × 2, × 4, …, at most `max_backoff`); a `rate_limited` answer backs off at
//! once; a credential failure of a family that asks to be held (a directory: [`Lockout::Hold`])
//! holds at once for `max_backoff`. Ticks that fall inside the gap are skipped and counted, or,
//! for a family that has something to do meanwhile that cannot lock anyone, run that instead.
//! A success resets it; so does a reload that changes the probe's credentials (the caller
//! starts a fresh [`Backoff`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::LockoutGuard;
use crate::protocol::{Lockout, Summary};
use crate::results::{from_unix_millis, unix_millis, GuardState};

/// One probe's guard state.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    /// Consecutive credential failures.
    strikes: u32,
    /// How many times the gap has doubled.
    level: u32,
    /// Ticks planned before this are skipped.
    until: Option<Instant>,
    /// What the run that made the guard hold came to: what the runs made meanwhile report.
    held: Option<Summary>,
}

/// The level whose gap is always `max_backoff`: 2^31 periods.
const HOLD_LEVEL: u32 = 31;

impl Backoff {
    /// The guard as published, its end in wall-clock time so that it survives a restart.
    pub fn state(&self) -> GuardState {
        // 0 means "none": an end at the epoch itself (a clock far off) still counts as one.
        let until_unix_ms = self.until.map_or(0, |u| unix_millis(super::wall(u)).max(1));
        GuardState { strikes: self.strikes, level: self.level, until_unix_ms }
    }

    /// The guard a saved state describes: strikes and level as they were, and the skipping
    /// of ticks until the saved end if it is still ahead.
    pub fn restored(state: GuardState) -> Self {
        let end = from_unix_millis(state.until_unix_ms);
        let left = end.duration_since(std::time::SystemTime::now()).ok().filter(|_| state.until_unix_ms != 0);
        Backoff { strikes: state.strikes, level: state.level, until: left.map(|l| Instant::now() + l), held: None }
    }

    /// What the run that made the guard hold came to, if it is holding and remembers.
    pub fn held(&self) -> Option<Summary> {
        self.held.filter(|_| self.until.is_some())
    }

    /// Whether a tick planned at `planned` must be skipped.
    pub fn holds(&self, planned: Instant) -> bool {
        self.until.is_some_and(|until| planned < until)
    }

    /// Takes in the result of a run that started at `started` (a tick of a schedule whose period
    /// is `period`) and returns the extra delay now in force: 0 when not backing off.
    #[cfg(test)]
    pub fn after_run(&mut self, signal: Lockout, guard: &LockoutGuard, period: Duration, started: Instant) -> Duration {
        self.after(signal, None, guard, period, started)
    }

    /// Like [`Backoff::after_run`], remembering the run's `summary` when the guard holds.
    pub fn after(
        &mut self,
        signal: Lockout,
        summary: Option<Summary>,
        guard: &LockoutGuard,
        period: Duration,
        started: Instant,
    ) -> Duration {
        if guard.max_failures == 0 || signal == Lockout::Clear {
            *self = Backoff::default();
            return Duration::ZERO;
        }
        match signal {
            Lockout::Hold => {
                self.strikes += 1;
                self.level = HOLD_LEVEL;
                self.held = summary;
            }
            Lockout::Strike => {
                self.strikes += 1;
                if self.strikes >= guard.max_failures {
                    self.level = self.strikes - guard.max_failures + 1;
                }
            }
            Lockout::Throttle => self.level += 1,
            // Other failures say nothing about the credentials: the guard stays as it is.
            Lockout::Clear | Lockout::Neutral => {}
        }
        if self.level == 0 {
            return Duration::ZERO;
        }
        let gap = gap(period, self.level, guard.max_backoff);
        // Half a period early, so that the tick the gap ends on is not lost to timer jitter.
        self.until = Some(started + gap - period / 2);
        gap.saturating_sub(period)
    }
}

/// Period × 2^level, at most `max` (but never less than one period).
fn gap(period: Duration, level: u32, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(level.min(31));
    period.saturating_mul(factor).min(max.max(period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ResultClass;

    const GUARD: LockoutGuard = LockoutGuard { max_failures: 3, max_backoff: Duration::from_secs(3600) };

    #[test]
    fn backs_off_after_max_failures_doubling_up_to_the_cap() {
        let period = Duration::from_secs(60);
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let extras: Vec<u64> = (0..9)
            .map(|i| b.after_run(Lockout::of(ResultClass::AuthFailed), &GUARD, period, t0 + period * i).as_secs())
            .collect();
        // Failures 1 and 2 change nothing; the 3rd doubles the gap, and so on up to an hour.
        assert_eq!(extras, [0, 0, 60, 180, 420, 900, 1860, 3540, 3540]);
        let last = t0 + period * 8;
        assert!(b.holds(last + Duration::from_secs(3000)) && !b.holds(last + Duration::from_secs(3600)));
        // A timeout keeps the guard as it is; a success lifts it.
        assert_eq!(b.after_run(Lockout::of(ResultClass::Timeout), &GUARD, period, last).as_secs(), 3540);
        assert_eq!(b.after_run(Lockout::of(ResultClass::Success), &GUARD, period, last), Duration::ZERO);
        assert!(!b.holds(last));
        assert_eq!(
            b.after_run(Lockout::of(ResultClass::AuthFailed), &GUARD, period, last),
            Duration::ZERO,
            "strikes start over"
        );
    }

    #[test]
    fn a_restored_guard_holds_until_the_same_wall_clock_time() {
        let period = Duration::from_secs(60);
        let mut b = Backoff::default();
        let t0 = Instant::now();
        for i in 0..4 {
            b.after_run(Lockout::of(ResultClass::AuthFailed), &GUARD, period, t0 + period * i);
        }
        let state = b.state();
        assert_eq!((state.strikes, state.level), (4, 2));
        let r = Backoff::restored(state);
        assert_eq!((r.strikes, r.level), (4, 2));
        let (a, b) = (b.until.unwrap(), r.until.unwrap());
        assert!(a.max(b) - a.min(b) < Duration::from_millis(50), "{a:?} vs {b:?}");
        // An end already passed holds nothing; the strikes stay.
        let past = GuardState { until_unix_ms: 1, ..state };
        let r = Backoff::restored(past);
        assert!(r.until.is_none() && r.strikes == 4);
        assert!(Backoff::restored(GuardState::default()).until.is_none());
    }

    #[test]
    fn rate_limited_backs_off_at_once_and_zero_turns_the_guard_off() {
        let period = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.after_run(Lockout::of(ResultClass::RateLimited), &GUARD, period, t0).as_secs(), 10);
        assert!(b.holds(t0 + period) && !b.holds(t0 + period * 2));
        let off = LockoutGuard { max_failures: 0, ..GUARD };
        let mut b = Backoff::default();
        for _ in 0..10 {
            assert_eq!(b.after_run(Lockout::of(ResultClass::AuthFailed), &off, period, t0), Duration::ZERO);
        }
        assert!(!b.holds(t0));
    }

    /// A directory's refusal holds the credentials back at once for max_backoff, remembering
    /// why; a run made while held (neutral) keeps the hold; a success lifts it.
    #[test]
    fn a_hold_is_max_backoff_at_the_first_failure_and_remembers_why() {
        use crate::protocol::{Step, Summary};
        let period = Duration::from_secs(2);
        let t0 = Instant::now();
        let why = Summary { status: 49, ..Summary::of(ResultClass::AuthFailed, Step::OTHER) };
        let mut b = Backoff::default();
        let extra = b.after(Lockout::Hold, Some(why), &GUARD, period, t0);
        assert_eq!(extra, GUARD.max_backoff - period);
        assert!(b.holds(t0 + period) && b.holds(t0 + Duration::from_secs(3500)));
        assert!(!b.holds(t0 + GUARD.max_backoff));
        assert_eq!(b.held(), Some(why));
        assert_eq!(b.state().strikes, 1);
        // Runs while held are not fed to the guard; a neutral one would change nothing either.
        b.after(Lockout::Neutral, None, &GUARD, period, t0 + period);
        assert_eq!(b.held(), Some(why));
        assert!(b.holds(t0 + Duration::from_secs(3500)));
        b.after(Lockout::Clear, None, &GUARD, period, t0 + GUARD.max_backoff);
        assert!(b.held().is_none() && !b.holds(t0 + GUARD.max_backoff));
        // With the guard off, a hold holds nothing.
        let off = LockoutGuard { max_failures: 0, ..GUARD };
        assert!(b.after(Lockout::Hold, Some(why), &off, period, t0).is_zero() && !b.holds(t0 + period));
    }

    #[test]
    fn oauth2_credential_refusals_strike_and_configuration_errors_do_not() {
        use crate::protocol::etna::INVALID_CREDENTIALS;
        use crate::protocol::oauth2::names::*;
        let strike = |r, reason| lockout(r, reason) == Lockout::Strike;
        assert!(strike(ResultClass::AuthFailed, INVALID_GRANT));
        assert!(strike(ResultClass::ClientRejected, INVALID_CLIENT));
        assert!(!strike(ResultClass::ClientRejected, UNAUTHORIZED_CLIENT));
        assert!(!strike(ResultClass::AuthFailed, INVALID_SCOPE));
        assert!(!strike(ResultClass::AuthFailed, INVALID_REQUEST));
        assert!(strike(ResultClass::AuthFailed, INVALID_CREDENTIALS));
        assert_eq!(lockout(ResultClass::RateLimited, TEMPORARILY_UNAVAILABLE), Lockout::Throttle);
        let mut b = Backoff::default();
        let (period, t0) = (Duration::from_secs(60), Instant::now());
        for _ in 0..2 {
            assert!(b.after_run(lockout(ResultClass::ClientRejected, INVALID_CLIENT), &GUARD, period, t0).is_zero());
        }
        assert!(!b.after_run(lockout(ResultClass::AuthFailed, INVALID_GRANT), &GUARD, period, t0).is_zero());
    }
}
