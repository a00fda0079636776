//! The backstop for a child whose master is gone: a plain thread, outside the async runtime,
//! that ends the process a bounded time after its parent changed.
//!
//! The orderly way out runs on the runtime: the parent-death signal (SIGTERM) and the EOF on
//! the channel make a worker stop accepting, give in-flight requests a second, and exit. But a
//! handler that blocks every runtime thread (a synchronous call, a busy loop) keeps that path
//! from ever running, and the orphan would go on serving, and holding the port, with nobody to
//! replace or stop it. This thread needs nothing from the runtime: it polls the parent pid and,
//! once the master is gone, waits out the orderly path's time and exits.

use std::time::Duration;

/// How often the parent is looked at: the process exits at most this much later than the
/// orderly path would.
const POLL: Duration = Duration::from_millis(100);

/// Starts the thread for a child of `master` that must be gone `grace` after its master.
pub(crate) fn watch(master: i32, grace: Duration) -> Result<(), String> {
    std::thread::Builder::new()
        .name("cluster2-orphan".to_owned())
        .spawn(move || {
            // Once reparented, never back: the master cannot come back to this process.
            while nix::unistd::getppid().as_raw() == master {
                std::thread::sleep(POLL);
            }
            std::thread::sleep(grace);
            tracing::error!(
                "the master is gone and this process did not stop within {}: exiting",
                humantime::format_duration(grace)
            );
            std::process::exit(i32::from(crate::exit::FAILURE));
        })
        .map(drop)
        .map_err(|e| format!("cannot start the thread that watches the master: {e}"))
}
