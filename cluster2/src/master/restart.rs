//! When a crashed process is started again: the crash streak and its back-off. Pure
//! arithmetic, shared by the workers' slots and the cache manager; the supervisor schedules
//! what this computes.

use std::time::Duration;

use crate::options::RestartOptions;

/// Crashes in a row of one worker id (or of the cache manager).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct CrashStreak(u32);

impl CrashStreak {
    /// Counts a crash of a process that had served for `served` (`None`: it never served) and
    /// returns how long to wait before starting the next one. A process that served at least
    /// `restart.max_delay` ends the streak first: its crash is news, not a loop.
    pub(super) fn crashed(
        &mut self,
        served: Option<Duration>,
        policy: &RestartOptions,
    ) -> Duration {
        if served.is_some_and(|s| s >= policy.max_delay) {
            self.0 = 0;
        }
        self.0 = self.0.saturating_add(1);
        delay_for(self.0, policy.delay, policy.max_delay)
    }

    /// How many crashes in a row.
    pub(super) fn count(self) -> u32 {
        self.0
    }
}

/// No delay for the first crash in a row (keep capacity), then `delay`, doubling up to `max`.
fn delay_for(streak: u32, delay: Duration, max: Duration) -> Duration {
    if streak <= 1 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(streak - 2);
    delay.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartOptions {
        RestartOptions {
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn back_off_doubles_from_the_second_crash_and_is_capped() {
        let mut streak = CrashStreak::default();
        let delays: Vec<u128> = (1..=7)
            .map(|_| streak.crashed(None, &policy()).as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(streak.count(), 7);
        let d = Duration::from_millis(100);
        assert_eq!(delay_for(u32::MAX, d, Duration::from_secs(1)), d * 10);
    }

    #[test]
    fn serving_long_enough_ends_the_streak() {
        let mut streak = CrashStreak::default();
        for _ in 0..4 {
            streak.crashed(None, &policy());
        }
        // Served, but not for max_delay: still a loop.
        let short = streak.crashed(Some(Duration::from_millis(999)), &policy());
        assert_eq!((short, streak.count()), (Duration::from_millis(800), 5));
        // Served for max_delay: a new streak, restarted at once.
        let long = streak.crashed(Some(Duration::from_secs(1)), &policy());
        assert_eq!((long, streak.count()), (Duration::ZERO, 1));
    }
}
