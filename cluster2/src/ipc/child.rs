//! How a child process (a worker or the standalone cache manager) starts: it claims the fds the
//! master handed it and reads the master's hello, before it has a runtime.
//!
//! The hello is read with a blocking read because the child needs its options (thread count,
//! log level) to build its runtime in the first place. Errors are one line each, for the child
//! to print before it exits.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use super::fd::{CHANNEL_FD, LISTENER_FD, take_inherited_socket};
use super::frame;
use super::message::{Hello, ToWorker};
use crate::role::MASTER_PID_ENV;

/// What every child gets from the master.
#[derive(Debug)]
pub(crate) struct Inherited {
    /// The master's hello.
    pub(crate) hello: Hello,
    /// The child's end of its channel with the master, still blocking.
    pub(crate) channel: UnixStream,
}

/// The standalone cache manager's start: its channel, and the hello on it.
pub(crate) fn start() -> Result<Inherited, String> {
    let channel = claim(CHANNEL_FD)?;
    tie_to_master()?;
    hello(channel)
}

/// A worker's start: the shared listener too, and a check that its master is still there.
pub(crate) fn start_worker() -> Result<(Inherited, TcpListener), String> {
    // Claim the inherited sockets before anything else can open a file descriptor.
    let listener = claim(LISTENER_FD)?;
    let channel = claim(CHANNEL_FD)?;
    tie_to_master()?;
    Ok((hello(channel)?, TcpListener::from(listener)))
}

/// Arms the parent-death signal: SIGTERM when the master dies. The master starts children
/// without running code of its own in them before exec (`master::spawn`), so each child
/// arms it here; if the master died even earlier, the signal will never fire, so the parent
/// is checked once by hand.
fn tie_to_master() -> Result<(), String> {
    let master_pid: i32 = std::env::var(MASTER_PID_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or("started without a master")?;
    tie_to(master_pid)
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
