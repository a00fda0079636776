//! How a child process (a worker or the standalone cache manager) starts: it claims the fds the
//! master handed it and reads the master's hello, before it has a runtime.
//!
//! The hello is read with a blocking read because the child needs its options (thread count,
//! log level) to build its runtime in the first place. Errors are one line each, for the child
//! to print before it exits.
//!
//! Every child also starts the thread that ends it once its master is gone, whatever its
//! runtime is doing (`orphan.rs`).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::fd::{CHANNEL_FD, MAX_LISTENERS, listener_fd, take_inherited_socket};
use super::frame;
use super::message::{Hello, ToWorker};
use crate::listen::Listener;
use crate::role::{LISTENERS_ENV, MASTER_PID_ENV};

/// What every child gets from the master.
#[derive(Debug)]
pub(crate) struct Inherited {
    /// The master's hello.
    pub(crate) hello: Hello,
    /// The child's end of its channel with the master, still blocking.
    pub(crate) channel: UnixStream,
}

/// How long after its master a child is gone at the latest: a worker's orderly way out gives
/// in-flight requests a second and its runtime a tenth more.
const ORPHAN_GRACE: Duration = Duration::from_millis(1500);

/// The standalone cache manager's start: its channel, and the hello on it.
pub(crate) fn start() -> Result<Inherited, String> {
    let channel = claim(CHANNEL_FD)?;
    watch_master()?;
    hello(channel)
}

/// A worker's start: the application listeners too (one per address of the host, or a Unix
/// socket, or what the service manager passed), and a check that its master is still there.
pub(crate) fn start_worker() -> Result<(Inherited, Vec<Listener>), String> {
    let count = match std::env::var(LISTENERS_ENV) {
        // A master from before several listeners hands over one.
        Err(_) => 1,
        Ok(count) => count
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LISTENERS).contains(n))
            .ok_or_else(|| format!("{LISTENERS_ENV}={count} is not a number of listeners"))?,
    };
    // Claim the inherited sockets before anything else can open a file descriptor.
    let listeners = (0..count)
        .map(|i| {
            let fd = claim(listener_fd(i))?;
            Listener::from_fd(fd).map_err(|e| format!("inherited listener {i}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let channel = claim(CHANNEL_FD)?;
    watch_master()?;
    Ok((hello(channel)?, listeners))
}

/// Ties this process to its master: the parent-death signal (SIGTERM when the master dies),
/// armed here because the master runs no code of its own in a child before exec
/// (`master::spawn`); a check by hand that the master had not died even earlier, when the
/// signal can no longer fire; and the thread that ends this process once the master is gone,
/// whatever its runtime is doing.
fn watch_master() -> Result<(), String> {
    let master_pid: i32 = std::env::var(MASTER_PID_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or("started without a master")?;
    tie_to(master_pid)?;
    super::orphan::watch(master_pid, ORPHAN_GRACE)
}

fn tie_to(master_pid: i32) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| format!("cannot arm the parent-death signal: {e}"))?;
    if nix::unistd::getppid().as_raw() != master_pid {
        return Err("the master exited before this process started".to_owned());
    }
    Ok(())
}

fn claim(fd: std::os::fd::RawFd) -> Result<OwnedFd, String> {
    take_inherited_socket(fd).map_err(|e| e.to_string())
}

/// Reads the master's first frame, which must be the hello.
fn hello(channel: OwnedFd) -> Result<Inherited, String> {
    let mut channel = UnixStream::from(channel);
    let hello = match frame::read_blocking(&mut channel) {
        Ok(ToWorker::Hello(hello)) => *hello,
        Ok(other) => return Err(format!("expected a hello from the master, got {other:?}")),
        Err(e) => return Err(format!("no hello from the master: {e}")),
    };
    Ok(Inherited { hello, channel })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn the_parent_death_signal_is_armed_and_a_gone_master_is_seen() {
        // This test process's parent plays the master.
        let parent = nix::unistd::getppid().as_raw();
        assert_eq!(tie_to(parent), Ok(()));
        assert_eq!(nix::sys::prctl::get_pdeathsig(), Ok(Some(Signal::SIGTERM)));
        // Another pid as the master: it is not this process's parent, so it is gone.
        let error = tie_to(parent.wrapping_add(1).max(2)).unwrap_err();
        assert!(error.contains("the master exited"), "{error}");
    }
}
