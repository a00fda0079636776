//! Re-executes this binary as a worker, handing it the shared listeners (one per address of the
//! host), its end of a fresh socketpair and the connection-balance table at fixed fd numbers.
//!
//! Every spawn happens on one dedicated, long-lived thread. The parent-death signal that makes
//! a worker stop when the master dies is tied by Linux to the *thread* that forked the child,
//! not to the process: spawning from a runtime thread that later exits would kill the worker
//! by accident. This is one of the two places where cluster2 needs `unsafe`.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc as std_mpsc;

use command_fds::{CommandFdExt, FdMapping};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::ipc::fd::{BALANCE_FD, CHANNEL_FD, listener_fd};
use crate::role::{CACHE_ENV, LISTENERS_ENV, MASTER_PID_ENV, ProcessRole, WORKER_ENV};

/// A started worker process and the master's end of its channel.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) channel: UnixStream,
}

/// What to start.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A worker with this id: gets the shared listeners.
    Worker(usize),
    /// The standalone cache manager: no listener.
    CacheManager,
}

struct Request {
    kind: Kind,
    reply: oneshot::Sender<io::Result<Spawned>>,
}

/// Handle to the spawner thread.
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    requests: std_mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the spawner thread. `exe` is the path this binary was started from: successors
    /// run whatever is at that path now, so replacing the file deploys new code.
    /// `balance`: the connection-balance table every worker maps, when there is one.
    pub(crate) fn start(
        listeners: Vec<OwnedFd>,
        balance: Option<OwnedFd>,
        exe: PathBuf,
    ) -> io::Result<Self> {
        let handle = tokio::runtime::Handle::current();
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let (requests, incoming) = std_mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("cluster2-spawner".to_owned())
            .spawn(move || {
                // Children spawned here are reaped by the runtime's process driver.
                let _runtime = handle.enter();
                for request in incoming {
                    let result =
                        spawn_process(&exe, &args, &listeners, balance.as_ref(), request.kind);
                    let _ = request.reply.send(result);
                }
            })?;
        Ok(Self { requests })
    }

    pub(crate) async fn spawn(&self, kind: Kind) -> io::Result<Spawned> {
        let (reply, result) = oneshot::channel();
        self.requests
            .send(Request { kind, reply })
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        result
            .await
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }
}

fn spawn_process(
    exe: &PathBuf,
    args: &[OsString],
    listeners: &[OwnedFd],
    balance: Option<&OwnedFd>,
    kind: Kind,
) -> io::Result<Spawned> {
    let (ours, theirs) = UnixStream::pair()?;
    let role = match kind {
        Kind::Worker(id) => ProcessRole::Worker(id),
        Kind::CacheManager => ProcessRole::CacheManager,
    };
    let mut command = Command::new(exe);
    // The service manager talks to the master alone.
    for variable in super::systemd::VARIABLES {
        command.env_remove(variable);
    }
    command
        // What `ps` shows first: `hello: worker 2`. Nothing reads argv[0] to find the program.
        .arg0(crate::title::of(role))
        .args(args)
        .env(MASTER_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .kill_on_drop(false);
    let mut fds = vec![FdMapping {
        parent_fd: theirs.into(),
        child_fd: CHANNEL_FD,
    }];
    match kind {
        Kind::Worker(id) => {
            command
                .env(WORKER_ENV, id.to_string())
                .env(LISTENERS_ENV, listeners.len().to_string());
            if let Some(balance) = balance {
                fds.push(FdMapping {
                    parent_fd: balance.try_clone()?,
                    child_fd: BALANCE_FD,
                });
            }
            for (i, listener) in listeners.iter().enumerate() {
                fds.push(FdMapping {
                    parent_fd: listener.try_clone()?,
                    child_fd: listener_fd(i),
                });
            }
        }
        Kind::CacheManager => {
            command.env(CACHE_ENV, "1");
        }
    }
    command
        .fd_mappings(fds)
        .map_err(|_| io::Error::other("colliding fd mappings"))?;
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed. It makes one prctl(2) system call and builds an io::Error from an
    // errno value on failure, neither of which allocates or takes a lock.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(io::Error::from)
        });
    }
    let child = command.spawn()?;
    // `command` owns the child's ends of the fds; dropping it closes them here, so that the
    // master sees EOF on the channel when the worker exits.
    drop(command);
    Ok(Spawned {
        child,
        channel: ours,
    })
}
