//! Keeping workers healthy: deciding from heartbeats that a worker should be replaced.
//!
//! The master checks every heartbeat of a serving worker: first against the `max_memory` and
//! `max_requests` options when they are set ([`max_memory`], [`max_requests`]), then with the
//! cluster's `should_kill` (by default [`assert_old`] or [`AssertDegraded`]); a worker that
//! should go is queued for replacement, one at a time, its successor warm before it stops. A
//! worker whose heartbeats stop for `nanny.tolerance` is queued too. Debug workers and workers
//! in a debug session are never judged.
//!
//! The options apply whatever `should_kill` is: they are off by default, so one that is set is
//! an operator's explicit choice, which an application's own `should_kill` must not silently
//! defeat. `max_age` and the degradation heuristic are the default `should_kill`, which the
//! application's replaces; the functions here are its building blocks:
//!
//! ```
//! use std::time::Duration;
//!
//! use cluster2::Heartbeat;
//! use cluster2::robustness::{assert_old, max_memory, max_requests};
//!
//! #[cluster2::should_kill]
//! fn should_kill(heartbeat: &Heartbeat) -> bool {
//!     assert_old(Some(Duration::from_secs(12 * 3600)))(heartbeat)
//!         || max_requests(50_000, 5_000)(heartbeat)
//!         || max_memory(Some(2 << 30))(heartbeat)
//! }
//! # fn main() {}
//! ```

mod policy;

pub(crate) use policy::request_limit;
pub use policy::{AssertDegraded, assert_old, max_memory, max_requests};

use std::sync::Arc;

use crate::heartbeat::Heartbeat;
use crate::lifecycle::ReplaceReason;
use crate::options::Options;

/// The cluster's decision, from each heartbeat, that a worker should be replaced: why, if it
/// should.
type Verdict = Box<dyn Fn(&Heartbeat) -> Option<ReplaceReason> + Send + Sync>;

pub(crate) struct ShouldKill {
    limits: Limits,
    decide: Verdict,
    degraded: Option<Arc<AssertDegraded>>,
}

/// The recycling options, applied before any `should_kill`.
struct Limits {
    max_requests: u64,
    max_requests_jitter: u64,
    max_memory: Option<u64>,
}

impl Limits {
    fn check(&self, hb: &Heartbeat) -> Option<ReplaceReason> {
        if let Some(limit_bytes) = self.max_memory.filter(|&max| hb.memory_bytes >= max) {
            return Some(ReplaceReason::MaxMemory {
                memory_bytes: hb.memory_bytes,
                limit_bytes,
            });
        }
        request_limit(self.max_requests, self.max_requests_jitter, hb.pid)
            .filter(|&limit| hb.requests_total >= limit)
            .map(|limit| ReplaceReason::MaxRequests {
                requests_total: hb.requests_total,
                limit,
            })
    }
}

impl ShouldKill {
    fn limits(options: &Options) -> Limits {
        Limits {
            max_requests: options.max_requests,
            max_requests_jitter: options.max_requests_jitter,
            max_memory: options.max_memory,
        }
    }

    /// The options' limits, then `assert_old(max_age)` or `AssertDegraded`.
    pub(crate) fn default_for(options: &Options) -> Self {
        let max_age = options.max_age;
        let degraded = Arc::new(AssertDegraded::new());
        let judge = degraded.clone();
        let old = assert_old(max_age);
        Self {
            limits: Self::limits(options),
            decide: Box::new(move |hb| {
                if old(hb) {
                    Some(ReplaceReason::OldAge {
                        uptime_secs: hb.uptime.as_secs_f64(),
                        max_age_secs: max_age.map_or(f64::INFINITY, |m| m.as_secs_f64()),
                    })
                } else if judge.check(hb) {
                    Some(ReplaceReason::Degraded {
                        requests_per_second: hb.requests_per_second,
                    })
                } else {
                    None
                }
            }),
            degraded: Some(degraded),
        }
    }

    /// The options' limits, then the user's own decision.
    pub(crate) fn custom(
        f: Arc<dyn Fn(&Heartbeat) -> bool + Send + Sync>,
        options: &Options,
    ) -> Self {
        Self {
            limits: Self::limits(options),
            decide: Box::new(move |hb| f(hb).then_some(ReplaceReason::ShouldKill)),
            degraded: None,
        }
    }

    pub(crate) fn check(&self, hb: &Heartbeat) -> Option<ReplaceReason> {
        self.limits.check(hb).or_else(|| (self.decide)(hb))
    }

    pub(crate) fn forget(&self, pid: u32) {
        if let Some(d) = &self.degraded {
            d.forget(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn beat(requests_total: u64, memory_bytes: u64) -> Heartbeat {
        Heartbeat {
            pid: 42,
            worker: 0,
            uptime: Duration::from_secs(10),
            cpu_percent: 1.0,
            memory_bytes,
            open_connections: 0,
            connections_total: 0,
            requests: 0,
            request_duration: Duration::ZERO,
            requests_per_second: 0.0,
            requests_total,
            request_duration_total: Duration::ZERO,
            request_duration_buckets: Vec::new(),
            errors: 0,
            panics: 0,
            protocol_errors: 0,
            access_log_dropped_total: 0,
            event_loop_lag: Duration::ZERO,
            interval: Duration::from_secs(5),
        }
    }

    fn options(max_requests: u64, max_memory: Option<u64>) -> Options {
        Options {
            max_requests,
            max_memory,
            ..Options::default()
        }
    }

    #[test]
    fn the_options_are_judged_first_memory_then_requests_then_should_kill() {
        let never = Arc::new(|_: &Heartbeat| false);
        let always = Arc::new(|_: &Heartbeat| true);
        let custom = ShouldKill::custom(never, &options(100, Some(1 << 20)));
        assert_eq!(custom.check(&beat(99, (1 << 20) - 1)), None);
        assert_eq!(
            custom.check(&beat(100, 0)),
            Some(ReplaceReason::MaxRequests {
                requests_total: 100,
                limit: 100
            })
        );
        assert_eq!(
            custom.check(&beat(100, 1 << 20)),
            Some(ReplaceReason::MaxMemory {
                memory_bytes: 1 << 20,
                limit_bytes: 1 << 20
            })
        );
        // The application's own decision comes after them.
        let custom = ShouldKill::custom(always, &options(100, None));
        assert_eq!(custom.check(&beat(0, 0)), Some(ReplaceReason::ShouldKill));
        // Off by default: the default decision alone.
        let default = ShouldKill::default_for(&Options::default());
        assert_eq!(default.check(&beat(u64::MAX, u64::MAX)), None);
    }
}
