//! A child process the master started, from its spawn to its reaping: its pid while it can be
//! signalled, and its exit awaited on the reactor through a pidfd. Children are started with
//! `posix_spawn` (`spawn.rs`), not with `std::process`, so the master waits for them here.
//!
//! Exactly one owner waits (`children.rs`' exit watch, which is also the only one that
//! signals): once the child is reaped its pid may be reused, so [`Process::id`] stops
//! answering.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// A child of the master.
#[derive(Debug)]
pub(crate) struct Process {
    pid: u32,
    exit: ExitWatch,
    reaped: bool,
}

#[derive(Debug)]
enum ExitWatch {
    /// Readable once the child has exited.
    Pidfd(AsyncFd<OwnedFd>),
    /// Where pidfds are missing (Linux before 5.3), cannot be waited on (5.3: `waitid` takes
    /// a pidfd from 5.4) or are refused (some sandboxes): a thread blocked in `waitid` for
    /// this child alone, which says when it exited and leaves it unreaped (`WNOWAIT`): the
    /// owner reaps it, so that its pid is never given out once it may be another process's.
    Thread(oneshot::Receiver<io::Result<()>>),
}

impl Process {
    /// Takes charge of `pid`, a child of this process that nothing else waits for. Called
    /// within the master's runtime (the pidfd is registered with its reactor).
    pub(super) fn adopt(pid: u32) -> Self {
        let exit = match crate::ipc::fd::pidfd_open(pid) {
            Ok(fd) => ExitWatch::Pidfd(fd),
            Err(e) => {
                tracing::debug!("no pidfd for pid {pid} ({e}); a thread waits for it instead");
                ExitWatch::Thread(wait_on_thread(pid))
            }
        };
        Self {
            pid,
            exit,
            reaped: false,
        }
    }

    /// The pid, until the process has been reaped.
    pub(crate) fn id(&self) -> Option<u32> {
        (!self.reaped).then_some(self.pid)
    }

    /// Waits for the process to exit, and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = loop {
            let fd = match &mut self.exit {
                ExitWatch::Pidfd(fd) => fd,
                ExitWatch::Thread(done) => {
                    done.await.map_err(|_| {
                        io::Error::other("the thread waiting for the child is gone")
                    })??;
                    // It exited: reaped here, by the owner, with no await in between.
                    let pid = Pid::from_raw(self.pid as i32);
                    break loop {
                        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                            Err(Errno::EINTR) => continue,
                            Ok(WaitStatus::StillAlive) => {
                                return Err(io::Error::other(format!(
                                    "pid {pid} was said to have exited, and has not"
                                )));
                            }
                            Ok(status) => break exit_status(status)?,
                            Err(e) => return Err(e.into()),
                        }
                    };
                }
            };
            let mut ready = fd.readable().await?;
            match waitid(
                Id::PIDFd(fd.get_ref().as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            ) {
                Ok(WaitStatus::StillAlive) => ready.clear_ready(),
                Ok(status) => break exit_status(status)?,
                Err(Errno::EINTR) => {}
                Err(Errno::EINVAL) => {
                    // Linux 5.3: the pidfd opened, but `waitid` cannot take it.
                    drop(ready);
                    self.exit = ExitWatch::Thread(wait_on_thread(self.pid));
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.reaped = true;
        Ok(status)
    }

    /// Ends a child that nobody will wait for (started for a supervisor that stopped waiting
    /// for it, as it shuts down): SIGKILL, then reaped here, blocking, so that no zombie is
    /// left. For the spawner threads, which may block.
    pub(super) fn kill_and_reap(self) {
        let pid = Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        // Its thread, if it has one, only watches.
        while waitpid(pid, None) == Err(Errno::EINTR) {}
    }
}

/// A thread that says when `pid` exited, and leaves it for its owner to reap.
fn wait_on_thread(pid: u32) -> oneshot::Receiver<io::Result<()>> {
    let (tx, rx) = oneshot::channel();
    let waiting = std::thread::Builder::new()
        .name("cluster2-child-watch".to_owned())
        .spawn(move || {
            let exited = loop {
                match waitid(
                    Id::Pid(Pid::from_raw(pid as i32)),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
                ) {
                    Err(Errno::EINTR) => continue,
                    Ok(_) => break Ok(()),
                    Err(e) => break Err(e.into()),
                }
            };
            let _ = tx.send(exited);
        });
    if let Err(e) = waiting {
        // The receiver then reports the thread gone; the error is said here.
        tracing::error!("cannot start a thread to wait for pid {pid}: {e}");
    }
    rx
}

/// The status `wait(2)` would have given, as std represents it.
fn exit_status(status: WaitStatus) -> io::Result<ExitStatus> {
    match status {
        WaitStatus::Exited(_, code) => Ok(ExitStatus::from_raw((code & 0xff) << 8)),
        WaitStatus::Signaled(_, signal, core) => Ok(ExitStatus::from_raw(
            signal as i32 | if core { 0x80 } else { 0 },
        )),
        other => Err(io::Error::other(format!(
            "unexpected wait status {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn wait_statuses_read_as_std_reads_them() {
        let pid = Pid::from_raw(1);
        let exited = exit_status(WaitStatus::Exited(pid, 3)).unwrap();
        assert_eq!(exited.code(), Some(3));
        let killed = exit_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)).unwrap();
        assert_eq!(killed.signal(), Some(9));
        assert!(!killed.core_dumped());
        let dumped = exit_status(WaitStatus::Signaled(pid, Signal::SIGABRT, true)).unwrap();
        assert_eq!(dumped.signal(), Some(6));
        assert!(dumped.core_dumped());
    }

    /// A real child, started as the spawner starts them.
    fn adopt(script: &str) -> Process {
        use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, posix_spawn};
        let script = std::ffi::CString::new(script).unwrap();
        let pid = posix_spawn(
            c"/bin/sh",
            &PosixSpawnFileActions::init().unwrap(),
            &PosixSpawnAttr::init().unwrap(),
            &[c"sh", c"-c", script.as_c_str()],
            &[c"PATH=/usr/bin:/bin"],
        )
        .expect("sh starts");
        Process::adopt(pid.as_raw().unsigned_abs())
    }

    #[tokio::test]
    async fn an_exit_is_awaited_and_reaped_once() {
        let mut p = adopt("exit 3");
        let pid = p.id().expect("not reaped yet");
        assert_eq!(p.wait().await.unwrap().code(), Some(3));
        assert_eq!(
            p.id(),
            None,
            "a reaped pid may be reused: no longer given out"
        );
        // Reaped: the pid is no child of this process any more.
        assert_eq!(
            waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );
    }

    #[tokio::test]
    async fn without_a_pidfd_a_thread_waits_and_reaps() {
        let mut p = adopt("exit 7");
        // As on a kernel without pidfds.
        p.exit = ExitWatch::Thread(wait_on_thread(p.pid));
        assert_eq!(p.wait().await.unwrap().code(), Some(7));
        assert_eq!(p.id(), None);
    }

    #[tokio::test]
    async fn a_watching_thread_leaves_the_exited_child_for_its_owner_to_reap() {
        let mut p = adopt("exit 5");
        let pid = Pid::from_raw(p.pid as i32);
        wait_on_thread(p.pid).await.unwrap().unwrap();
        // Exited and not reaped: its pid is still this process's child, which no other
        // process can have, so signalling it until the owner reaps reaches nobody else.
        let status = waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        assert!(matches!(status, Ok(WaitStatus::Exited(_, 5))), "{status:?}");
        assert_eq!(p.id(), Some(p.pid));
        // A second watch finds it exited at once; the owner reaps.
        p.exit = ExitWatch::Thread(wait_on_thread(p.pid));
        assert_eq!(p.wait().await.unwrap().code(), Some(5));
        assert_eq!(p.id(), None);
        assert_eq!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Err(Errno::ECHILD));
    }

    #[tokio::test]
    async fn a_child_given_up_is_killed_and_reaped() {
        for pidfd in [true, false] {
            let mut p = adopt("sleep 30");
            let pid = p.id().unwrap();
            if !pidfd {
                p.exit = ExitWatch::Thread(wait_on_thread(p.pid));
            }
            tokio::task::spawn_blocking(move || p.kill_and_reap())
                .await
                .unwrap();
            // Gone and reaped.
            let reaped = || {
                waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) == Err(Errno::ECHILD)
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !reaped() {
                assert!(std::time::Instant::now() < deadline, "pid {pid} not reaped");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }

    #[tokio::test]
    async fn a_signal_is_reported_as_such() {
        let mut p = adopt("sleep 30");
        let pid = p.id().unwrap();
        nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        assert_eq!(p.wait().await.unwrap().signal(), Some(9));
    }
}
