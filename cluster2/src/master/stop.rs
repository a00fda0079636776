//! `<app> stop` (or `--stop`): finds the running master through its pid file, proves that the
//! file names this cluster's live master (`pidfile::verify_master`), asks it to stop
//! gracefully, waits, kills what is left, and says so. A pid file it cannot trust is reported
//! and nothing is signalled.
//!
//! Every process is known by its pid and start time, so a pid that is reused while `stop`
//! waits is never taken for the process that had it.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::pidfile::{Identity, MASTER_FILE, NotMaster, identity, verify_master, worker_files};
use crate::exit;
use crate::options::Options;

pub(crate) fn run(options: &Options) -> ExitCode {
    let Some(dir) = options.pids.as_deref() else {
        eprintln!(
            "error: stop needs --pids=DIR, the directory where the running master wrote its pid file"
        );
        return exit::code(exit::USAGE);
    };
    let dir = Path::new(dir);
    let master_file = dir.join(MASTER_FILE);
    let master = match verify_master(&master_file) {
        Ok(master) => master,
        Err(NotMaster::Missing) => {
            eprintln!(
                "error: no {MASTER_FILE} in {}: no cluster runs from there",
                dir.display()
            );
            return exit::code(exit::FAILURE);
        }
        Err(NotMaster::Stale { pid }) => {
            let named = pid.map_or(String::new(), |pid| format!(" (it named pid {pid})"));
            eprintln!(
                "error: stale pid file {}{named}: no master holds it, so the master that wrote \
                 it is gone and the pid may be another process's now; nothing signalled, file \
                 removed",
                master_file.display()
            );
            return exit::code(exit::FAILURE);
        }
        Err(NotMaster::Refused(why)) => {
            eprintln!("error: not stopping anything: {why}; nothing signalled");
            return exit::code(exit::FAILURE);
        }
    };
    // The master's children, as they are now: a worker file naming anything else is stale.
    let workers: Vec<Identity> = worker_files(dir)
        .into_iter()
        .filter_map(|(pid, _)| identity(pid))
        .filter(|worker| worker.parent == master.pid)
        .collect();
    eprintln!(
        "stopping master pid {} ({} workers); waiting up to {}",
        master.pid,
        workers.len(),
        humantime::format_duration(options.stop_timeout)
    );
    signal(master, Signal::SIGTERM);
    // The master gives its workers `stop_timeout` plus 2 s; allow a little more than that.
    let deadline = Instant::now() + options.stop_timeout + Duration::from_secs(3);
    let everyone = || std::iter::once(master).chain(workers.iter().copied());
    while everyone().any(|p| p.alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<Identity> = everyone().filter(Identity::alive).collect();
    if left.is_empty() {
        eprintln!("stopped");
        return ExitCode::SUCCESS;
    }
    for &process in &left {
        signal(process, Signal::SIGKILL);
    }
    let list: Vec<String> = left.iter().map(|p| p.pid.to_string()).collect();
    eprintln!(
        "error: killed what did not stop in time: pids {}",
        list.join(", ")
    );
    exit::code(exit::FAILURE)
}

/// Signals `process` if it is still that process.
fn signal(process: Identity, signal: Signal) {
    if process.alive() {
        let _ = kill(Pid::from_raw(process.pid as i32), signal);
    }
}
