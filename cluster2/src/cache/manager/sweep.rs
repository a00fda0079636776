//! The manager's periodic chores, on one task: every `SWEEP`, expired entries are removed (and
//! their watchers told) and loads whose lease has passed are handed over; every `SYNC`, the
//! logs of persistent namespaces are synced.
//!
//! Both take only what is due from a queue ordered by time (each namespace's expiry queue, the
//! lease map), so a big cache costs nothing here. What removing an entry or handing over a
//! load means is decided in `state` and `locks`.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Manager;
use super::state::State;

/// How often expired entries and leases are swept and logs synced.
const SWEEP: Duration = Duration::from_millis(100);
const SYNC: Duration = Duration::from_secs(1);

impl Manager {
    pub(super) async fn sweep(self, stop: CancellationToken) {
        let mut last_sync = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SWEEP) => {}
            }
            let mut state = self.state.lock().expect("cache lock");
            state.sweep_due(Instant::now());
            if last_sync.elapsed() >= SYNC {
                last_sync = Instant::now();
                for ns in state.namespaces.values_mut() {
                    if let Some(log) = &mut ns.log {
                        if let Err(e) = log.sync() {
                            tracing::error!(namespace = %ns.figures.namespace, "cannot sync the cache log: {e}");
                        }
                    }
                }
            }
        }
    }
}

impl State {
    /// Removes the entries that have expired and hands over the loads whose lease has
    /// passed: only what is due, so a big cache costs nothing here.
    fn sweep_due(&mut self, now: Instant) {
        let mut expired_keys = Vec::new();
        for (name, ns) in &mut self.namespaces {
            while let Some(first) = ns.expiries.first_entry() {
                if first.key().at > now {
                    break;
                }
                expired_keys.push((name.clone(), first.remove()));
            }
        }
        for (ns, key) in expired_keys {
            self.remove_expired(&ns, &key);
        }
        self.hand_over_late(now);
    }
}
