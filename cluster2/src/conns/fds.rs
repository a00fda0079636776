//! The open-files limit, and what it leaves for connections.
//!
//! Every connection is a descriptor, and so is every file, socket and pipe the process needs
//! for anything else. Servers raise the soft limit to the hard one at start (the soft one is
//! often 1024, a default from the days of `select`); the master does, and its children inherit
//! it. Then connections get a share, not all of it: a worker keeps a quarter for the
//! application's own files and connections, and the master keeps what it needs to start and
//! talk to its children before the monitor gets the rest.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// What is assumed when the limit cannot be read: the usual soft limit.
const USUAL: u64 = 1024;

/// Raises this process's soft limit on open files to its hard limit; returns the limit now in
/// force. Children started afterwards inherit it.
pub(crate) fn raise_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::debug!("open-files limit raised from {soft} to {hard}");
                hard
            }
            Err(e) => {
                tracing::debug!("cannot raise the open-files limit from {soft} to {hard}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => USUAL,
    }
}

/// This process's open-files limit.
pub(crate) fn limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(USUAL, |(soft, _)| soft)
}

/// The connections a worker keeps open at most: `configured` (`max_connections`), or with
/// `0` three quarters of `limit`, leaving the application at least 64 descriptors.
pub(crate) fn worker_cap(configured: u32, limit: u64) -> usize {
    if configured > 0 {
        return configured as usize;
    }
    let kept = (limit / 4).max(64);
    to_usize(limit.saturating_sub(kept).max(1))
}

/// The descriptors the master keeps for itself: its listeners, runtime, log and pid files, a
/// thread-stack dump in progress, and for each worker (a successor besides), and the cache
/// manager, a channel and a process handle, plus what starting one takes for a moment.
pub(crate) fn master_reserve(workers: usize) -> u64 {
    64 + 4 * (workers as u64 + 2)
}

/// The connections the monitor keeps open at most: `configured` (`mon.max_connections`), or
/// fewer when the master's `limit` leaves less after its reserve for `workers`; then also
/// `true`, for a warning. Never below 1.
pub(crate) fn monitor_cap(configured: u32, limit: u64, workers: usize) -> (usize, bool) {
    let room = limit.saturating_sub(master_reserve(workers)).max(1);
    let configured = u64::from(configured);
    (to_usize(configured.min(room)), room < configured)
}

/// The most workers whose share of the master's reserve fits in `limit` beside the monitor's
/// `monitor` connections (what the cluster may grow to at run time); at least 1.
pub(crate) fn most_workers(limit: u64, monitor: usize) -> usize {
    let room = limit.saturating_sub(monitor as u64 + master_reserve(0));
    to_usize((room / 4).max(1))
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_a_limit_holds_beside_the_monitor_are_those_whose_reserve_fits() {
        for (limit, monitor) in [(300, 220), (1024, 256), (65_536, 256), (4000, 3000)] {
            let most = most_workers(limit, monitor);
            assert!(
                master_reserve(most) + monitor as u64 <= limit,
                "{limit} {monitor}"
            );
            assert!(
                master_reserve(most + 1) + monitor as u64 > limit,
                "{limit} {monitor}"
            );
        }
        // What a start with 2 workers clamps the monitor to fits those 2.
        let (monitor, _) = monitor_cap(256, 300, 2);
        assert!(most_workers(300, monitor) >= 2);
        assert_eq!(most_workers(10, 256), 1);
    }

    #[test]
    fn a_worker_leaves_a_quarter_of_the_limit_and_at_least_64() {
        assert_eq!(worker_cap(0, 1024), 768);
        assert_eq!(worker_cap(0, 65_536), 49_152);
        assert_eq!(worker_cap(0, 200), 136);
        assert_eq!(worker_cap(0, 50), 1);
        assert_eq!(worker_cap(0, u64::MAX), to_usize(u64::MAX - u64::MAX / 4));
        // Set: taken as it is.
        assert_eq!(worker_cap(10, 1024), 10);
    }

    #[test]
    fn the_monitor_gets_what_the_master_does_not_keep() {
        assert_eq!(monitor_cap(256, 20_000, 4), (256, false));
        // 1024 - (64 + 4 * 10) = 920.
        assert_eq!(monitor_cap(5000, 1024, 8), (920, true));
        assert_eq!(monitor_cap(256, 128, 2), (48, true));
        assert_eq!(monitor_cap(256, 10, 2), (1, true));
    }

    #[test]
    fn raising_keeps_the_limit_within_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let now = raise_limit();
        assert!(now <= hard);
        assert_eq!(now, limit());
    }
}
