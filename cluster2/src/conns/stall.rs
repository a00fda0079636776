//! When a server cannot take new connections: accept failing (out of descriptors or memory),
//! or every allowed connection busy. Said once per burst, not once per failure: a failing
//! accept is retried every 50 ms, and a refused client may come straight back. A burst ends
//! once a second has passed without a failure; its end is said too, with how many connections
//! it cost. The application port also reports both moments to the master, which takes the ECV
//! down while no worker can accept.
//!
//! Making room at the cap (closing idle connections) is not a stall, but is said once per
//! burst too.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// How long a burst outlives its last failure.
const QUIET: Duration = Duration::from_secs(1);

/// How long the accept loop waits before trying again after a failure that is not one
/// connection's: the connection stays queued in the kernel meanwhile.
pub(crate) const RETRY: Duration = Duration::from_millis(50);

/// Waits until `deadline` ([`Stall::deadline`]), or for ever without one.
pub(crate) async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Accept errors that concern one connection only, which the next accept is unaffected by.
pub(crate) fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Told when a burst starts (why) and ends (`None`).
pub(crate) type Report = Box<dyn Fn(Option<String>) + Send>;

/// The stalls of one server's accept loop.
pub(crate) struct Stall {
    /// The port, for people: `the application port`.
    port: &'static str,
    report: Option<Report>,
    burst: Option<Burst>,
    /// When room was last made at the cap, while that goes on.
    making_room: Option<Instant>,
}

impl std::fmt::Debug for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stall")
            .field("port", &self.port)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Burst {
    started: Instant,
    last: Instant,
    /// Connections not taken: failed accepts and refused connections.
    lost: u64,
}

impl Stall {
    pub(crate) fn new(port: &'static str, report: Option<Report>) -> Self {
        Self {
            port,
            report,
            burst: None,
            making_room: None,
        }
    }

    /// An accept failed for a reason that is not one connection's (out of descriptors, out of
    /// memory).
    pub(crate) fn accept_failed(&mut self, error: &io::Error) {
        let port = self.port;
        self.lost(|| {
            let why = format!("accept failed: {error}");
            tracing::warn!(
                "cannot accept on {port}: {error}; trying again every {} until it works \
                 (said once)",
                humantime::format_duration(RETRY)
            );
            why
        });
    }

    /// A new connection was closed at once: `max` are open and every one has a request in
    /// flight.
    pub(crate) fn refused(&mut self, max: usize) {
        let port = self.port;
        self.lost(|| {
            tracing::warn!(
                "{port}: {max} connections open, the most allowed, all busy: closing new ones \
                 until some end (said once)"
            );
            format!("{max} connections open, the most allowed, all busy")
        });
    }

    /// Room was made at the cap by closing `closed` idle connections.
    pub(crate) fn made_room(&mut self, closed: usize, max: usize) {
        let now = Instant::now();
        if self.making_room.is_none_or(|last| now > last + QUIET) {
            tracing::warn!(
                "{}: {max} connections open, the most allowed: closing the ones idle the \
                 longest for new ones ({closed} now; said once while it goes on)",
                self.port
            );
        }
        self.making_room = Some(now);
    }

    /// When the current burst ends if nothing else fails.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.burst.as_ref().map(|b| b.last + QUIET)
    }

    /// The deadline passed: the burst is over.
    pub(crate) fn quiet(&mut self) {
        let Some(burst) = self.burst.take() else {
            return;
        };
        tracing::info!(
            "accepting on {} again, after {} connection(s) not taken over {:.1}s",
            self.port,
            burst.lost,
            (burst.last - burst.started).as_secs_f64()
        );
        if let Some(report) = &self.report {
            report(None);
        }
    }

    fn lost(&mut self, starting: impl FnOnce() -> String) {
        let now = Instant::now();
        match &mut self.burst {
            Some(burst) => {
                burst.last = now;
                burst.lost += 1;
            }
            None => {
                let why = starting();
                self.burst = Some(Burst {
                    started: now,
                    last: now,
                    lost: 1,
                });
                if let Some(report) = &self.report {
                    report(Some(why));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_reported_once_and_ends_a_second_after_its_last_failure() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut stall = Stall::new(
            "the test port",
            Some(Box::new(move |why| log.lock().unwrap().push(why))),
        );
        assert_eq!(stall.deadline(), None);
        let emfile = io::Error::from_raw_os_error(24);
        for _ in 0..100 {
            stall.accept_failed(&emfile);
            tokio::time::advance(RETRY).await;
        }
        stall.refused(10);
        let deadline = stall.deadline().unwrap();
        assert_eq!(deadline, Instant::now() + QUIET);
        stall.quiet();
        assert_eq!(stall.deadline(), None);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen[0].as_deref().unwrap().contains("os error 24"),
            "{seen:?}"
        );
        assert_eq!(seen[1], None);
    }
}
