//! Every exit status a cluster2 process ends with, in one place: what the master, a worker and
//! the cache manager return, and how the master explains a child's status in its log.
//!
//! Statuses 1 and 2 are what an operator or a process manager sees from the master; 3 and 4
//! come from children and are read by the master; 5 to 7 are the control commands' (`status`,
//! `reload`, `scale`), which also use 1 (what was asked failed: a successor, a refused scale)
//! and 2 (a bad argument).

use std::process::ExitCode;

/// The master could not start (a port, the runtime, a child, start-up timed out), or it was
/// stopped by force; also a child whose own set-up failed before it could report. From
/// `stop`: nothing to stop (no pid file, or a stale one), a pid file it will not trust (it
/// signals nothing then), or processes it had to kill.
pub(crate) const FAILURE: u8 = 1;
/// A mistake in the command line, an option, a config file or the registered functions.
pub(crate) const USAGE: u8 = 2;
/// A worker's start-up failed (`configure_app` or the warm-up); it reported why first.
pub(crate) const START_FAILED: u8 = 3;
/// A worker's `main` body failed.
pub(crate) const MAIN_FAILED: u8 = 4;

/// From a command for the running cluster (`status`, `reload`, `scale`): no master found,
/// neither from `--pids` (no pid file, or a stale one) nor anywhere else to look.
pub(crate) const NO_MASTER: u8 = 5;
/// From a command for the running cluster: its monitor cannot be reached (connection
/// refused, no answer in time) or what answers is not a cluster2 monitor.
pub(crate) const UNREACHABLE: u8 = 6;
/// From a command for the running cluster: the monitor refused it, for want of the right
/// token (`mon.token`) or from where it came.
pub(crate) const DENIED: u8 = 7;

/// The status as an [`ExitCode`].
pub(crate) fn code(status: u8) -> ExitCode {
    ExitCode::from(status)
}

/// What a child's exit status means, for the master's log line; `None` for statuses cluster2
/// does not use (the application's own).
pub(crate) fn meaning(status: i32) -> Option<&'static str> {
    match status {
        0 => Some("stopped"),
        s if s == i32::from(FAILURE) => Some("could not set itself up"),
        s if s == i32::from(USAGE) => Some("bad options"),
        s if s == i32::from(START_FAILED) => Some("start-up failed"),
        s if s == i32::from(MAIN_FAILED) => Some("main failed"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_distinct_and_explained() {
        let all = [FAILURE, USAGE, START_FAILED, MAIN_FAILED];
        for (i, a) in all.iter().enumerate() {
            assert!(meaning(i32::from(*a)).is_some());
            assert!(all[i + 1..].iter().all(|b| b != a), "{a} used twice");
        }
        // The control commands' own are none of the above, and never a child's.
        let control = [NO_MASTER, UNREACHABLE, DENIED];
        for (i, a) in control.iter().enumerate() {
            assert!(
                !all.contains(a) && !control[i + 1..].contains(a),
                "{a} used twice"
            );
            assert_eq!(meaning(i32::from(*a)), None);
        }
        assert_eq!(meaning(42), None);
    }
}
