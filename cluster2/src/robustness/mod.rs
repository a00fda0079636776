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

/// The cluster's decision, from each heartbeat, that a worker should be replaced, with a
/// reason for the log.
/// From a heartbeat, why its worker should go, if it should.
type Verdict = Box<dyn Fn(&Heartbeat) -> Option<String> + Send + Sync>;

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
                    let max = max_age.map_or("never".to_owned(), |m| {
                        humantime::format_duration(m).to_string()
                    });
                    Some(format!("old: up {}s, max_age {max}", hb.uptime.as_secs()))
                } else if judge.check(hb) {
                    Some(format!(
                        "degraded: {:.1} requests/s, more than 10% below its peak, while CPU, \
                         memory and event-loop lag rose",
                        hb.tps
                    ))
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
            decide: Box::new(move |hb| f(hb).then(|| "should_kill decided".to_owned())),
            degraded: None,
        }
    }

    pub(crate) fn check(&self, hb: &Heartbeat) -> Option<String> {
        (self.decide)(hb)
    }

    pub(crate) fn forget(&self, pid: u32) {
        if let Some(d) = &self.degraded {
            d.forget(pid);
        }
    }
}
