//! `<app> stop` (or `--stop`): finds the running master through its pid file, asks it to stop
//! gracefully, waits, kills what is left, and says so.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::pidfile::{MASTER_FILE, alive, read_pid, worker_files};
use crate::options::Options;

pub(crate) fn run(options: &Options) -> ExitCode {
    let Some(dir) = options.pids.as_deref() else {
        eprintln!(
            "error: stop needs --pids=DIR, the directory where the running master wrote its pid file"
        );
        return crate::exit::code(crate::exit::USAGE);
    };
    let dir = Path::new(dir);
    let master_file = dir.join(MASTER_FILE);
    let Some(master) = read_pid(&master_file) else {
        eprintln!(
            "error: no {} in {}: no cluster runs from there",
            MASTER_FILE,
            dir.display()
        );
        return ExitCode::FAILURE;
    };
    if !alive(master) {
        let _ = std::fs::remove_file(&master_file);
        eprintln!("error: stale pid file: master pid {master} is not running (file removed)");
        return ExitCode::FAILURE;
    }
    let workers: Vec<u32> = worker_files(dir).into_iter().map(|(pid, _)| pid).collect();
    eprintln!(
        "stopping master pid {master} ({} workers); waiting up to {}",
        workers.len(),
        humantime::format_duration(options.stop_timeout)
    );
    let _ = kill(Pid::from_raw(master as i32), Signal::SIGTERM);
    // The master gives its workers `stop_timeout` plus 2 s; allow a little more than that.
    let deadline = Instant::now() + options.stop_timeout + Duration::from_secs(3);
    let everyone = || std::iter::once(master).chain(workers.iter().copied());
    while everyone().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<u32> = everyone().filter(|&p| alive(p)).collect();
    if left.is_empty() {
        eprintln!("stopped");
        return ExitCode::SUCCESS;
    }
    for &pid in &left {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let list: Vec<String> = left.iter().map(u32::to_string).collect();
    eprintln!(
        "error: killed what did not stop in time: pids {}",
        list.join(", ")
    );
    ExitCode::FAILURE
}
