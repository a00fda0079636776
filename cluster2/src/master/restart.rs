//! When a crashed process is started again: the crash streak and its back-off. Pure
//! arithmetic, shared by the workers' slots and the cache manager; the supervisor schedules
//! what this computes.
//!
//! Back-off is for crash loops, not for processes that did their work. A process that served
//! (a worker answered requests; the cache manager kept listening for `restart.delay`), or that
//! listened for `restart.max_delay`, is replaced at once whatever happened before: an operator
//! or a chaos test killing it again and again is not a loop. Failures before listening, and
//! crashes right after it before serving, extend the streak, and each one in a row after the
//! first waits `restart.delay`, doubling up to `restart.max_delay`.

use std::time::Duration;

use crate::options::RestartOptions;

/// Crashes in a row of one worker id (or of the cache manager).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct CrashStreak(u32);

/// What a process that crashed had got to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Life {
    /// How long it had been listening, if it got that far.
    pub(super) listened_for: Option<Duration>,
    /// Whether it did its work: for a worker, answered a request.
    pub(super) served: bool,
}

impl CrashStreak {
    /// Counts a crash of a process that had lived `life` and returns how long to wait before
    /// starting the next one. A process that served, or listened for `restart.max_delay`,
    /// starts a new streak, and is replaced at once.
    pub(super) fn crashed(&mut self, life: Life, policy: &RestartOptions) -> Duration {
        let did_its_work = life.served || life.listened_for.is_some_and(|l| l >= policy.max_delay);
        if did_its_work {
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

    const NEVER_LISTENED: Life = Life {
        listened_for: None,
        served: false,
    };

    fn served_for(ms: u64) -> Life {
        Life {
            listened_for: Some(Duration::from_millis(ms)),
            served: true,
        }
    }

    #[test]
    fn back_off_doubles_from_the_second_crash_and_is_capped() {
        let mut streak = CrashStreak::default();
        let delays: Vec<u128> = (1..=7)
            .map(|_| streak.crashed(NEVER_LISTENED, &policy()).as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(streak.count(), 7);
        let d = Duration::from_millis(100);
        assert_eq!(delay_for(u32::MAX, d, Duration::from_secs(1)), d * 10);
    }

    #[test]
    fn listening_without_serving_is_still_a_loop_until_max_delay() {
        let mut streak = CrashStreak::default();
        for _ in 0..4 {
            streak.crashed(NEVER_LISTENED, &policy());
        }
        // Listened, served nothing, and not for max_delay: crashing right after start-up.
        let listened = Life {
            listened_for: Some(Duration::from_millis(999)),
            served: false,
        };
        let short = streak.crashed(listened, &policy());
        assert_eq!((short, streak.count()), (Duration::from_millis(800), 5));
        // Listened for max_delay: a new streak, restarted at once.
        let long = Life {
            listened_for: Some(Duration::from_secs(1)),
            served: false,
        };
        assert_eq!(
            (streak.crashed(long, &policy()), streak.count()),
            (Duration::ZERO, 1)
        );
    }

    #[test]
    fn a_process_that_served_is_replaced_at_once_however_often_it_is_killed() {
        let mut streak = CrashStreak::default();
        // A worker killed again and again, each time soon after it served: never a delay.
        for _ in 0..20 {
            assert_eq!(streak.crashed(served_for(5), &policy()), Duration::ZERO);
            assert_eq!(streak.count(), 1);
        }
        // Even in the middle of a loop: serving ends it.
        for _ in 0..5 {
            streak.crashed(NEVER_LISTENED, &policy());
        }
        assert_eq!(streak.crashed(served_for(1), &policy()), Duration::ZERO);
    }

    #[test]
    fn after_a_served_crash_failures_to_start_back_off_again() {
        let mut streak = CrashStreak::default();
        streak.crashed(served_for(50), &policy());
        // The replacement cannot start (a broken binary on disk): a loop from here.
        let delays: Vec<u128> = (0..3)
            .map(|_| streak.crashed(NEVER_LISTENED, &policy()).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400]);
    }
}
