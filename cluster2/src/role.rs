//! Am I the master or a worker? Decided from an environment marker before any runtime or
//! thread exists, because workers are this same binary re-executed by the master.

/// Set by the master on every worker it spawns: the worker id.
pub(crate) const WORKER_ENV: &str = "_CLUSTER2_WORKER";
/// Set by the master on every worker it spawns: the master's pid, to detect a lost parent.
pub(crate) const MASTER_PID_ENV: &str = "_CLUSTER2_MASTER_PID";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcessRole {
    Master,
    Worker(usize),
}

pub(crate) fn current() -> ProcessRole {
    match std::env::var(WORKER_ENV).ok().and_then(|v| v.parse().ok()) {
        Some(id) => ProcessRole::Worker(id),
        None => ProcessRole::Master,
    }
}
