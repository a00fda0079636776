//! Recycle decisions, as building blocks users can combine in their own `should_kill`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::heartbeat::Heartbeat;

/// `true` once a worker has been up for `max_age`; never with `None` (`max_age = "never"`).
pub fn assert_old(max_age: Option<Duration>) -> impl Fn(&Heartbeat) -> bool + Send + Sync {
    move |hb| max_age.is_some_and(|max| hb.uptime >= max)
}

/// `true` once a worker has answered `limit` requests plus its jitter (gunicorn's
/// `max_requests` and `max_requests_jitter`); never with a `limit` of 0.
///
/// Each worker's jitter is a number from 0 to `jitter` drawn once for it: it is derived from
/// the worker's pid, so it is the same on every heartbeat of that worker and differs from one
/// worker to the next, and the function keeps no state (building it afresh on every call is
/// fine). Workers started together, as at a deploy, are then not all replaced together.
///
/// The count is the worker's own [`Heartbeat::requests_total`], since it started (warm-up
/// requests are not in it), and it is judged at each heartbeat: a worker may answer a few more
/// requests before its heartbeat says so. With the `max_requests` option the worker itself
/// sends a heartbeat as soon as it reaches its limit.
///
/// ```
/// use cluster2::Heartbeat;
/// use cluster2::robustness::{max_memory, max_requests};
///
/// /// Replaced after 10 000 to 10 500 requests, or at 1 GiB of resident memory.
/// #[cluster2::should_kill]
/// fn should_kill(heartbeat: &Heartbeat) -> bool {
///     max_requests(10_000, 500)(heartbeat) || max_memory(Some(1 << 30))(heartbeat)
/// }
/// # fn main() {}
/// ```
pub fn max_requests(limit: u64, jitter: u64) -> impl Fn(&Heartbeat) -> bool + Send + Sync {
    move |hb| request_limit(limit, jitter, hb.pid).is_some_and(|max| hb.requests_total >= max)
}

/// The number of requests after which worker `pid` is replaced: `limit` plus its jitter;
/// `None` with a `limit` of 0. The worker computes the same number to report at once when it
/// reaches it.
pub(crate) fn request_limit(limit: u64, jitter: u64, pid: u32) -> Option<u64> {
    if limit == 0 {
        return None;
    }
    // splitmix64 of the pid: consecutive pids (workers started one after another) land far
    // apart. The modulo's bias is at most jitter / 2^64.
    let mut x = u64::from(pid).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let drawn = jitter.checked_add(1).map_or(x, |span| x % span);
    Some(limit.saturating_add(drawn))
}

/// `true` once a worker's resident memory ([`Heartbeat::memory_bytes`]) reaches `limit` bytes
/// (PM2's `max_memory_restart`); never with `None`.
///
/// ```
/// use cluster2::Heartbeat;
/// use cluster2::robustness::{assert_old, max_memory};
///
/// /// Replaced at 512 MiB of resident memory, or after a day.
/// #[cluster2::should_kill]
/// fn should_kill(heartbeat: &Heartbeat) -> bool {
///     let day = std::time::Duration::from_secs(86_400);
///     max_memory(Some(512 << 20))(heartbeat) || assert_old(Some(day))(heartbeat)
/// }
/// # fn main() {}
/// ```
pub fn max_memory(limit: Option<u64>) -> impl Fn(&Heartbeat) -> bool + Send + Sync {
    move |hb| limit.is_some_and(|max| hb.memory_bytes >= max)
}

/// The best figures a worker showed while its throughput was rising.
#[derive(Clone, Copy, Debug)]
struct Peak {
    tps: f64,
    cpu: f64,
    memory: u64,
    lag: Duration,
}

/// Fires when a worker got slower while working harder: its requests per second fell more than
/// 10 % below its peak while CPU, memory and event-loop lag are all above their peaks.
///
/// Per worker it remembers the peak of each figure, raised while throughput rises. Samples
/// with 2 requests per second or fewer are ignored (too little load to judge), and so are
/// those in which clients broke the protocol on at least one connection per hundred requests
/// answered: a flood of bad frames (an HTTP/2 rapid-reset attack) costs CPU and lag without
/// counting as requests, and replacing the worker would not end it.
#[derive(Debug, Default)]
pub struct AssertDegraded {
    peaks: Mutex<HashMap<u32, Peak>>,
}

/// How far below its peak a worker's throughput may fall before it counts as degraded.
const TOLERANCE: f64 = 0.9;

/// Samples at or below this many requests per second say nothing about degradation.
const MIN_TPS: f64 = 2.0;

impl AssertDegraded {
    /// A fresh tracker with no peaks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges one heartbeat and updates the worker's peaks.
    pub fn check(&self, hb: &Heartbeat) -> bool {
        let tps = if hb.requests_per_second > 0.0 {
            hb.requests_per_second
        } else if !hb.interval.is_zero() {
            hb.requests as f64 / hb.interval.as_secs_f64()
        } else {
            0.0
        };
        if tps <= MIN_TPS || under_attack(hb) {
            return false;
        }
        let mut peaks = self.peaks.lock().expect("peaks lock");
        let peak = peaks.entry(hb.pid).or_insert(Peak {
            tps,
            cpu: hb.cpu_percent,
            memory: hb.memory_bytes,
            lag: hb.event_loop_lag,
        });
        if tps >= peak.tps {
            peak.tps = tps;
            peak.cpu = peak.cpu.max(hb.cpu_percent);
            peak.memory = peak.memory.max(hb.memory_bytes);
            peak.lag = peak.lag.max(hb.event_loop_lag);
            return false;
        }
        tps < peak.tps * TOLERANCE
            && hb.cpu_percent > peak.cpu
            && hb.memory_bytes > peak.memory
            && hb.event_loop_lag > peak.lag
    }

    /// Forgets a worker that is gone.
    pub fn forget(&self, pid: u32) {
        self.peaks.lock().expect("peaks lock").remove(&pid);
    }
}

/// Whether clients broke the protocol on at least one connection per hundred requests
/// answered over the heartbeat's interval.
fn under_attack(hb: &Heartbeat) -> bool {
    hb.protocol_errors > 0 && hb.protocol_errors.saturating_mul(100) >= hb.requests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(tps: f64, cpu: f64, memory: f64, lag_ms: u64) -> Heartbeat {
        Heartbeat {
            pid: 42,
            worker: 0,
            uptime: Duration::from_secs(10),
            cpu_percent: cpu,
            memory_bytes: memory as u64,
            open_connections: 0,
            connections_total: 0,
            requests: 0,
            request_duration: Duration::ZERO,
            requests_per_second: tps,
            requests_total: 0,
            request_duration_total: Duration::ZERO,
            request_duration_buckets: Vec::new(),
            errors: 0,
            panics: 0,
            protocol_errors: 0,
            access_log_dropped_total: 0,
            event_loop_lag: Duration::from_millis(lag_ms),
            interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn steadily_rising_samples_never_fire() {
        let degraded = AssertDegraded::new();
        for i in 0..1000 {
            let f = f64::from(i);
            assert!(!degraded.check(&beat(
                10.0 + f,
                10.0 + f / 10.0,
                1e8 + f * 1e5,
                10 + i as u64
            )));
        }
    }

    #[test]
    fn a_fall_of_more_than_ten_percent_with_everything_else_up_fires() {
        let degraded = AssertDegraded::new();
        assert!(!degraded.check(&beat(50.0, 50.0, 1e9, 100)));
        assert!(degraded.check(&beat(40.0, 55.0, 1.1e9, 110)));
    }

    #[test]
    fn a_fall_within_ten_percent_does_not_fire() {
        let degraded = AssertDegraded::new();
        assert!(!degraded.check(&beat(50.0, 50.0, 1e9, 100)));
        assert!(!degraded.check(&beat(48.0, 55.0, 1.1e9, 110)));
    }

    #[test]
    fn low_load_is_ignored_and_forgetting_resets_the_peak() {
        let degraded = AssertDegraded::new();
        assert!(!degraded.check(&beat(50.0, 50.0, 1e9, 100)));
        assert!(
            !degraded.check(&beat(2.0, 99.0, 2e9, 500)),
            "tps ≤ 2 says nothing"
        );
        degraded.forget(42);
        assert!(
            !degraded.check(&beat(40.0, 55.0, 1.1e9, 110)),
            "a new peak after forgetting"
        );
    }

    #[test]
    fn an_interval_full_of_protocol_errors_says_nothing() {
        let degraded = AssertDegraded::new();
        assert!(!degraded.check(&beat(50.0, 50.0, 1e9, 100)));
        // A rapid-reset flood: fewer requests answered, more CPU, memory and lag, and the
        // flooding connections closed for breaking the protocol.
        let mut flood = beat(40.0, 95.0, 1.2e9, 300);
        flood.requests = 200;
        flood.protocol_errors = 2;
        assert!(!degraded.check(&flood));
        // The flood did not become the peak either: the same figures without it still fire.
        flood.protocol_errors = 0;
        assert!(degraded.check(&flood));
        // A stray bad client among many requests does not hide a real degradation.
        flood.protocol_errors = 1;
        assert!(degraded.check(&flood));
    }

    #[test]
    fn max_requests_fires_within_the_jitter_drawn_once_per_worker() {
        let mut hb = beat(1.0, 1.0, 1.0, 1);
        let mut drawn = std::collections::BTreeSet::new();
        for pid in 1000..1200 {
            let limit = request_limit(100, 10, pid).unwrap();
            assert!((100..=110).contains(&limit), "{limit}");
            assert_eq!(request_limit(100, 10, pid), Some(limit), "drawn once");
            drawn.insert(limit);
            hb.pid = pid;
            hb.requests_total = limit - 1;
            assert!(!max_requests(100, 10)(&hb));
            hb.requests_total = limit;
            assert!(max_requests(100, 10)(&hb));
        }
        // Consecutive pids spread over the whole range.
        assert_eq!(drawn.len(), 11, "{drawn:?}");
        assert_eq!(request_limit(100, 0, 7), Some(100));
        assert_eq!(request_limit(0, 10, 7), None);
        hb.requests_total = u64::MAX;
        assert!(!max_requests(0, 10)(&hb), "0: never");
        // No overflow at the extremes.
        assert!(request_limit(u64::MAX, u64::MAX, 7).is_some());
    }

    #[test]
    fn max_memory_compares_the_resident_memory() {
        let hb = beat(1.0, 1.0, 512.0 * 1024.0 * 1024.0, 1);
        assert!(max_memory(Some(512 << 20))(&hb));
        assert!(!max_memory(Some((512 << 20) + 1))(&hb));
        assert!(!max_memory(None)(&hb));
    }

    #[test]
    fn old_age() {
        let old = assert_old(Some(Duration::from_secs(10)));
        assert!(old(&beat(1.0, 1.0, 1.0, 1)));
        let young = assert_old(Some(Duration::from_secs(11)));
        assert!(!young(&beat(1.0, 1.0, 1.0, 1)));
        let never = assert_old(None);
        let mut hb = beat(1.0, 1.0, 1.0, 1);
        hb.uptime = Duration::from_secs(u64::MAX / 4);
        assert!(!never(&hb));
    }
}
