//! Re-executes this binary as a worker, handing it the shared listeners (one per address of the
//! host), its end of a fresh socketpair and the connection-balance table at fixed fd numbers,
//! with its title as argv\[0\] and without the service manager's variables.
//!
//! Every spawn happens on dedicated threads that live as long as the master (one per CPU, up
//! to four). The parent-death signal that makes a worker stop when the master dies is tied by
//! Linux to the *thread* that started the child, not to the process: spawning from a runtime
//! thread that later exits would kill the worker by accident. The child arms that signal
//! itself, first thing after exec (`ipc::child`), then checks that its parent is still the
//! master, which covers a master that died even earlier.
//!
//! Children start with `posix_spawn`, which glibc runs as a `vfork` and an exec: the master's
//! memory map is not copied for each child, only for the child to throw the copy away at its
//! exec. Running no code of ours in the child before exec (no `pre_exec`) is what allows it:
//! the fds are placed by the spawn's file actions, and the signal is armed after exec. With
//! 32 workers, a fork took 0.28 ms of the spawner's CPU, a `posix_spawn` takes 0.08 ms, and
//! the children have no copy to tear down (BENCHMARKS.md, "Scale").

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigSet, Signal};
use tokio::sync::oneshot;

use super::process::Process;
use crate::ipc::fd::{BALANCE_FD, CHANNEL_FD, MAX_LISTENERS, dup_above, listener_fd};
use crate::role::{CACHE_ENV, LISTENERS_ENV, MASTER_PID_ENV, ProcessRole, WORKER_ENV};

/// The fds a child is handed are duplicated to this number or above first, past every fixed
/// number it gets them at, so that no mapping of a spawn can overwrite the source of another.
const SOURCES_FROM: RawFd = listener_fd(MAX_LISTENERS - 1) + 1;
const _: () = assert!(SOURCES_FROM > BALANCE_FD && SOURCES_FROM > CHANNEL_FD);

/// What the master's environment has that its children must not inherit: the roles' markers,
/// set per child, and the service manager's variables, for the master alone.
fn inherited(key: &std::ffi::OsStr) -> bool {
    let key = key.to_string_lossy();
    ![MASTER_PID_ENV, WORKER_ENV, CACHE_ENV, LISTENERS_ENV].contains(&&*key)
        && !super::systemd::VARIABLES.contains(&&*key)
}

/// A started worker process and the master's end of its channel.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) child: Process,
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

/// Handle to the spawner threads.
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    requests: std_mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the spawner threads. `exe` is the path this binary was started from: successors
    /// run whatever is at that path now, so replacing the file deploys new code.
    /// `balance`: the connection-balance table every worker maps, when there is one.
    pub(crate) fn start(
        listeners: Vec<OwnedFd>,
        balance: Option<OwnedFd>,
        exe: PathBuf,
    ) -> io::Result<Self> {
        let handle = tokio::runtime::Handle::current();
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let fds = Fds {
            listeners: listeners
                .iter()
                .map(|fd| dup_above(fd.as_fd(), SOURCES_FROM))
                .collect::<io::Result<_>>()?,
            balance: match balance {
                Some(fd) => Some(dup_above(fd.as_fd(), SOURCES_FROM)?),
                None => None,
            },
            null: dup_above(std::fs::File::open("/dev/null")?.as_fd(), SOURCES_FROM)?,
        };
        let program = c_string(exe.as_os_str())?;
        // The arguments after argv[0], which is each child's title.
        let args = args
            .iter()
            .map(|arg| c_string(arg))
            .collect::<io::Result<Vec<CString>>>()?;
        let (requests, incoming) = std_mpsc::channel::<Request>();
        let incoming = Arc::new(Mutex::new(incoming));
        let shared = Arc::new((program, args, fds));
        // A spawn waits for its child to reach exec, which under load means waiting for a
        // CPU: several threads keep the CPUs busy starting children meanwhile.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for _ in 0..threads {
            let incoming = incoming.clone();
            let shared = shared.clone();
            let handle = handle.clone();
            std::thread::Builder::new()
                .name("cluster2-spawner".to_owned())
                .spawn(move || {
                    // Children's exits are awaited on the master's reactor.
                    let _runtime = handle.enter();
                    loop {
                        let next = incoming
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                        let Ok(request) = next else {
                            return;
                        };
                        if request.reply.is_closed() {
                            // The supervisor stopped waiting for it (a signal during
                            // start-up): not started at all.
                            continue;
                        }
                        let (program, args, fds) = &*shared;
                        let result = spawn_process(program, args, fds, request.kind);
                        if let Err(Ok(unwanted)) = request.reply.send(result) {
                            // It stopped waiting while this child started.
                            unwanted.child.kill_and_reap();
                        }
                    }
                })?;
        }
        Ok(Self { requests })
    }

    /// Asks for a child of `kind` now; the spawner threads start the children asked for in
    /// order, back to back, while the caller gets on with each as it is started.
    pub(crate) fn request(&self, kind: Kind) -> Pending {
        let (reply, result) = oneshot::channel();
        let sent = self.requests.send(Request { kind, reply });
        Pending(sent.ok().map(|()| result))
    }
}

/// A child asked of the spawner threads: [`Pending::started`] waits for it.
#[derive(Debug)]
pub(crate) struct Pending(Option<oneshot::Receiver<io::Result<Spawned>>>);

impl Pending {
    pub(crate) async fn started(self) -> io::Result<Spawned> {
        let gone = || io::Error::other("the spawner threads are gone");
        self.0.ok_or_else(gone)?.await.map_err(|_| gone())?
    }

    /// Gives the child up: the spawner threads will not start it, or, if one already has, it
    /// is killed and reaped (off this thread), so that neither a stray worker nor a zombie is
    /// left.
    pub(crate) fn cancel(self) {
        let Some(mut result) = self.0 else {
            return;
        };
        // From here on a spawner thread's reply fails, and it ends what it started itself.
        result.close();
        if let Ok(Ok(unwanted)) = result.try_recv() {
            tokio::task::spawn_blocking(move || unwanted.child.kill_and_reap());
        }
    }
}

/// What every child may be handed, each numbered [`SOURCES_FROM`] or above.
struct Fds {
    listeners: Vec<OwnedFd>,
    balance: Option<OwnedFd>,
    /// The child's standard input.
    null: OwnedFd,
}

fn spawn_process(
    program: &CString,
    args: &[CString],
    fds: &Fds,
    kind: Kind,
) -> io::Result<Spawned> {
    let role = match kind {
        Kind::Worker(id) => ProcessRole::Worker(id),
        Kind::CacheManager => ProcessRole::CacheManager,
    };
    // What `ps` shows first: `hello: worker 2`. Nothing reads argv[0] to find the program.
    let argv: Vec<CString> = std::iter::once(c_string(crate::title::of(role).as_ref()))
        .chain(args.iter().cloned().map(Ok))
        .collect::<io::Result<_>>()?;
    let (ours, pair_end) = UnixStream::pair()?;
    let theirs = dup_above(pair_end.as_fd(), SOURCES_FROM)?;
    drop(pair_end);
    let mut actions = PosixSpawnFileActions::init()?;
    // dup2 leaves the copy without close-on-exec: exactly these fds survive the exec.
    actions.add_dup2(fds.null.as_raw_fd(), 0)?;
    actions.add_dup2(theirs.as_raw_fd(), CHANNEL_FD)?;
    // Read now, not once: the master's code may change its environment between spawns.
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(key, _)| inherited(key))
        .map(|(key, value)| {
            let mut pair = key;
            pair.push("=");
            pair.push(value);
            c_string(&pair)
        })
        .collect::<io::Result<_>>()?;
    env.push(c_string(
        format!("{MASTER_PID_ENV}={}", std::process::id()).as_ref(),
    )?);
    match kind {
        Kind::Worker(id) => {
            env.push(c_string(format!("{WORKER_ENV}={id}").as_ref())?);
            env.push(c_string(
                format!("{LISTENERS_ENV}={}", fds.listeners.len()).as_ref(),
            )?);
            for (i, listener) in fds.listeners.iter().enumerate() {
                actions.add_dup2(listener.as_raw_fd(), listener_fd(i))?;
            }
            if let Some(balance) = &fds.balance {
                actions.add_dup2(balance.as_raw_fd(), BALANCE_FD)?;
            }
        }
        Kind::CacheManager => env.push(c_string(format!("{CACHE_ENV}=1").as_ref())?),
    }
    // As std does for its children: no blocked signals, and SIGPIPE (which the Rust runtime
    // ignores) back to its default.
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_sigdefault(&SigSet::from(Signal::SIGPIPE))?;
    let pid = posix_spawn(program.as_c_str(), &actions, &attr, &argv, &env)?;
    // The child has its copy; closing ours here lets the master see EOF on the channel when
    // the child exits.
    drop(theirs);
    Ok(Spawned {
        child: Process::adopt(pid.as_raw().unsigned_abs()),
        channel: ours,
    })
}

/// An argument or environment entry for exec, which cannot hold a NUL byte.
fn c_string(text: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(text.as_bytes())
        .map_err(|_| io::Error::other(format!("{} contains a NUL byte", text.to_string_lossy())))
}
