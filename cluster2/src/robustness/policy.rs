//! Recycle decisions, as building blocks users can combine in their own `should_kill`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::heartbeat::Heartbeat;

/// `true` once a worker has been up for `max_age`; never with `None` (`max_age = "never"`).
pub fn assert_old(max_age: Option<Duration>) -> impl Fn(&Heartbeat) -> bool + Send + Sync {
    move |hb| max_age.is_some_and(|max| hb.uptime >= max)
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
