//! Am I the master or a worker? Decided from an environment marker before any runtime or
//! thread exists, because workers are this same binary re-executed by the master.

/// Set by the master on every worker it spawns: the worker id.
pub(crate) const WORKER_ENV: &str = "_CLUSTER2_WORKER";
/// Set by the master on every worker it spawns: the master's pid, to detect a lost parent.
pub(crate) const MASTER_PID_ENV: &str = "_CLUSTER2_MASTER_PID";

/// Set by the master on every worker it spawns: how many application listeners it inherits
/// (one per address of the host). A master that does not set it hands over one.
pub(crate) const LISTENERS_ENV: &str = "_CLUSTER2_LISTENERS";

/// Set by the master on the standalone cache manager process it spawns.
pub(crate) const CACHE_ENV: &str = "_CLUSTER2_CACHE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcessRole {
    Master,
    Worker(usize),
    CacheManager,
}

pub(crate) fn current() -> ProcessRole {
    if std::env::var_os(CACHE_ENV).is_some() {
        return ProcessRole::CacheManager;
    }
    match std::env::var(WORKER_ENV).ok().and_then(|v| v.parse().ok()) {
        Some(id) => ProcessRole::Worker(id),
        None => ProcessRole::Master,
    }
}
