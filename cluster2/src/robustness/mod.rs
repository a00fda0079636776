//! Keeping workers healthy: deciding from heartbeats that a worker should be replaced.
//!
//! The master checks every heartbeat of a serving worker with the cluster's `should_kill`
//! (by default [`assert_old`] or [`AssertDegraded`]); a worker that should go is queued for
//! replacement, one at a time, its successor warm before it stops. A worker whose heartbeats
//! stop for `nanny.tolerance` is queued too.

mod policy;

pub use policy::{AssertDegraded, assert_old};

use std::sync::Arc;

use crate::heartbeat::Heartbeat;
use crate::lifecycle::ReplaceReason;

/// The cluster's decision, from each heartbeat, that a worker should be replaced: why, if it
/// should.
type Verdict = Box<dyn Fn(&Heartbeat) -> Option<ReplaceReason> + Send + Sync>;

pub(crate) struct ShouldKill {
    decide: Verdict,
    degraded: Option<Arc<AssertDegraded>>,
}

impl ShouldKill {
    /// `assert_old(max_age)` or `AssertDegraded`.
    pub(crate) fn default_for(max_age: Option<std::time::Duration>) -> Self {
        let degraded = Arc::new(AssertDegraded::new());
        let judge = degraded.clone();
        let old = assert_old(max_age);
        Self {
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

    /// The user's own decision.
    pub(crate) fn custom(f: Arc<dyn Fn(&Heartbeat) -> bool + Send + Sync>) -> Self {
        Self {
            decide: Box::new(move |hb| f(hb).then_some(ReplaceReason::ShouldKill)),
            degraded: None,
        }
    }

    pub(crate) fn check(&self, hb: &Heartbeat) -> Option<ReplaceReason> {
        (self.decide)(hb)
    }

    pub(crate) fn forget(&self, pid: u32) {
        if let Some(d) = &self.degraded {
            d.forget(pid);
        }
    }
}
