//! Operator controls of a running cluster, both halves: the public functions, callable from the
//! master process (for example from the `main` body or a monitor route; the monitor app exposes
//! them as `POST /workers/{pid}/pause`, `/resume`, `/replace` and `POST /workers/restart`;
//! scaling, in `scale.rs`, is `POST /workers/scale`), and
//! the supervisor's handling of each request on its loop.
//!
//! A refusal carries its kind ([`Refused`]) beside the words, so that callers (the monitor's
//! status codes, the public [`ErrorKind`]) decide on the kind and never on the text.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::board::WorkerState;
use super::death_queue::{Entry, Retire};
use super::debugging::DebugRequest;
use super::scale::{ScaleReply, Target};
use super::supervisor::Supervisor;
use crate::error::{Error, ErrorKind, Result};
use crate::ipc::message::ToWorker;
use crate::lifecycle::ReplaceReason;

/// Why the supervisor did not do what was asked of one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No worker of this cluster has the pid (or it exited before it confirmed).
    NoSuchWorker,
    /// The worker's state does not allow it now: not serving, already being replaced, in a
    /// debug session or not in one.
    Conflict,
    /// The cluster is shutting down.
    Stopping,
    /// A value out of its bounds (a number of workers).
    Invalid,
}

/// A refusal: its kind, and the words for people (naming the pid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) kind: Refused,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(kind: Refused, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The supervisor's answer to a request about one worker.
pub(crate) type Reply = oneshot::Sender<std::result::Result<(), Refusal>>;

/// A request to the supervisor.
pub(crate) enum Control {
    Pause(u32, Reply),
    Resume(u32, Reply),
    Replace(u32, Reply),
    RollingRestart(oneshot::Sender<usize>),
    /// Scaling at run time (`scale.rs`).
    Scale(Target, ScaleReply),
    /// Debug sessions and debug workers (`debugging.rs`).
    Debug(DebugRequest),
}

impl Control {
    /// Answers a request the supervisor will not handle: the cluster is shutting down.
    pub(crate) fn refuse_stopping(self) {
        match self {
            Control::Pause(_, r) | Control::Resume(_, r) | Control::Replace(_, r) => {
                let _ = r.send(Err(stopping()));
            }
            Control::RollingRestart(r) => drop(r),
            Control::Scale(_, r) => drop(r.send(Err(stopping()))),
            Control::Debug(request) => request.refuse(stopping()),
        }
    }
}

fn stopping() -> Refusal {
    Refusal::new(Refused::Stopping, "the cluster is shutting down")
}

static CONTROL: OnceLock<mpsc::UnboundedSender<Control>> = OnceLock::new();

/// Called once by the supervisor; returns its end of the control channel.
pub(crate) fn install() -> mpsc::UnboundedReceiver<Control> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = CONTROL.set(tx);
    rx
}

/// How long a worker may take to confirm a pause or resume.
const CONFIRM: Duration = Duration::from_secs(5);

pub(super) async fn ask<T>(make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Result<T> {
    let control = CONTROL.get().ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "not the master of a running cluster: operator controls work in the master only",
        )
    })?;
    let stopping = || Error::new(ErrorKind::Unavailable, "the cluster is shutting down");
    let (reply, answer) = oneshot::channel();
    control.send(make(reply)).map_err(|_| stopping())?;
    tokio::time::timeout(CONFIRM, answer)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "the worker did not confirm within {}",
                    crate::log::human(CONFIRM)
                ),
            )
        })?
        .map_err(|_| stopping())
}

/// A refusal as the public error: its kind decides the [`ErrorKind`].
pub(super) fn refused(refusal: Refusal) -> Error {
    let kind = match refusal.kind {
        Refused::NoSuchWorker => ErrorKind::NotFound,
        Refused::Conflict => ErrorKind::Conflict,
        Refused::Stopping => ErrorKind::Unavailable,
        Refused::Invalid => ErrorKind::Config,
    };
    Error::new(kind, refusal.message)
}

/// Stops worker `pid` from accepting new connections. It keeps its open connections and all
/// its state; the other workers take the new connections.
///
/// Fails with [`ErrorKind::NotFound`] when no worker has this pid, [`ErrorKind::Conflict`] when
/// the worker is not serving, [`ErrorKind::Timeout`] when it does not confirm in time, and
/// [`ErrorKind::Unavailable`] outside a running cluster's master or while it shuts down; the
/// other controls fail the same ways.
pub async fn pause(pid: u32) -> Result<()> {
    ask(|r| Control::Pause(pid, r)).await?.map_err(refused)
}

/// Lets a paused worker accept again.
pub async fn resume(pid: u32) -> Result<()> {
    ask(|r| Control::Resume(pid, r)).await?.map_err(refused)
}

/// Queues worker `pid` for replacement: a successor warms up, then `pid` drains and exits.
pub async fn replace(pid: u32) -> Result<()> {
    ask(|r| Control::Replace(pid, r)).await?.map_err(refused)
}

/// Queues every worker for replacement, one at a time (what SIGHUP does). Successors run the
/// program file as it is now, so replacing the file first deploys new code. Returns how many
/// workers were queued.
pub async fn rolling_restart() -> Result<usize> {
    ask(Control::RollingRestart).await
}

impl Supervisor {
    pub(super) async fn control(&mut self, request: Control) {
        match request {
            Control::Pause(pid, reply) => self.pause(pid, true, reply).await,
            Control::Resume(pid, reply) => self.pause(pid, false, reply).await,
            Control::Replace(pid, reply) => {
                let result = self
                    .replace(pid, ReplaceReason::Operator, Retire::Drain)
                    .await;
                let _ = reply.send(result);
            }
            Control::Debug(request) => self.debug(request).await,
            Control::RollingRestart(reply) => {
                let n = self.rolling_restart(false).await;
                let _ = reply.send(n);
            }
            Control::Scale(target, reply) => {
                let result = self.scale(target, "scale requested").await;
                let _ = reply.send(result);
            }
        }
        self.publish();
    }

    /// Queues `pid` for replacement for `reason`.
    pub(super) async fn replace(
        &mut self,
        pid: u32,
        reason: ReplaceReason,
        retire: Retire,
    ) -> std::result::Result<(), Refusal> {
        let conflict = |message: String| Err(Refusal::new(Refused::Conflict, message));
        match self.procs.get(&pid) {
            Some(p) if p.debugging.is_some() => conflict(debugging(pid)),
            Some(p) if p.successor_of.is_none() && !p.expected_exit => {
                let entry = Entry {
                    slot: p.slot,
                    pid,
                    reason,
                    retire,
                };
                if self.enqueue(entry).await {
                    Ok(())
                } else {
                    conflict(format!(
                        "worker pid {pid} is already queued for replacement"
                    ))
                }
            }
            Some(_) => conflict(format!("worker pid {pid} is already being replaced")),
            None => Err(self.no_such_worker(pid)),
        }
    }

    async fn pause(&mut self, pid: u32, pause: bool, reply: Reply) {
        let missing = self.no_such_worker(pid);
        let Some(proc) = self.procs.get_mut(&pid) else {
            let _ = reply.send(Err(missing));
            return;
        };
        let want = if pause {
            WorkerState::Paused
        } else {
            WorkerState::Listening
        };
        if proc.debugging.is_some() {
            let _ = reply.send(Err(Refusal::new(Refused::Conflict, debugging(pid))));
            return;
        }
        if proc.state == want {
            let _ = reply.send(Ok(()));
            return;
        }
        if !matches!(proc.state, WorkerState::Listening | WorkerState::Paused) {
            let _ = reply.send(Err(Refusal::new(
                Refused::Conflict,
                format!("worker pid {pid} is {}, not serving", proc.state.name()),
            )));
            return;
        }
        let msg = if pause {
            ToWorker::Pause
        } else {
            ToWorker::Resume
        };
        if proc.child.tx.send(&msg).await.is_err() {
            let _ = reply.send(Err(Refusal::new(
                Refused::NoSuchWorker,
                format!("worker pid {pid} is gone"),
            )));
            return;
        }
        // Answered when the worker confirms.
        proc.waiting = Some((pause, reply));
    }

    pub(super) fn no_such_worker(&self, pid: u32) -> Refusal {
        let pids: Vec<String> = self.procs.keys().map(u32::to_string).collect();
        Refusal::new(
            Refused::NoSuchWorker,
            format!("no worker with pid {pid}; workers: {}", pids.join(", ")),
        )
    }
}

/// Why a worker kept for debugging refuses the usual controls.
fn debugging(pid: u32) -> String {
    format!(
        "worker pid {pid} is out of traffic for debugging: end its session, or release or \
         dismiss it, from /debug"
    )
}
