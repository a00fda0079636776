//! Operator controls of a running cluster, both halves: the public functions, callable from the
//! master process (for example from the `main` body or a monitor route; the monitor app exposes
//! them as `POST /workers/{pid}/pause`, `/resume`, `/replace` and `POST /workers/restart`), and
//! the supervisor's handling of each request on its loop.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::board::WorkerState;
use super::death_queue::{Entry, Retire};
use super::debugging::DebugRequest;
use super::supervisor::Supervisor;
use crate::error::{Error, ErrorKind, Result};
use crate::ipc::message::ToWorker;
use crate::lifecycle::ReplaceReason;

/// A request to the supervisor.
pub(crate) enum Control {
    Pause(u32, oneshot::Sender<std::result::Result<(), String>>),
    Resume(u32, oneshot::Sender<std::result::Result<(), String>>),
    Replace(u32, oneshot::Sender<std::result::Result<(), String>>),
    RollingRestart(oneshot::Sender<usize>),
    /// Debug sessions and debug workers (`debugging.rs`).
    Debug(DebugRequest),
}

impl Control {
    pub(crate) fn refuse(self, why: &str) {
        match self {
            Control::Pause(_, r) | Control::Resume(_, r) | Control::Replace(_, r) => {
                let _ = r.send(Err(why.to_owned()));
            }
            Control::RollingRestart(r) => drop(r),
            Control::Debug(request) => request.refuse(why),
        }
    }
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
            ErrorKind::NotFound,
            "not the master of a running cluster: operator controls work in the master only",
        )
    })?;
    let (reply, answer) = oneshot::channel();
    control
        .send(make(reply))
        .map_err(|_| Error::new(ErrorKind::Io, "the cluster is stopping"))?;
    tokio::time::timeout(CONFIRM, answer)
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "the worker did not confirm within 5s"))?
        .map_err(|_| Error::new(ErrorKind::Io, "the cluster is stopping"))
}

fn refused(e: String) -> Error {
    Error::new(ErrorKind::NotFound, e)
}

/// Stops worker `pid` from accepting new connections. It keeps its open connections and all
/// its state; the other workers take the new connections.
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
        }
        self.publish();
    }

    /// Queues `pid` for replacement for `reason`.
    pub(super) async fn replace(
        &mut self,
        pid: u32,
        reason: ReplaceReason,
        retire: Retire,
    ) -> std::result::Result<(), String> {
        match self.procs.get(&pid) {
            Some(p) if p.debugging.is_some() => Err(debugging(pid)),
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
                    Err(format!(
                        "worker pid {pid} is already queued for replacement"
                    ))
                }
            }
            Some(_) => Err(format!("worker pid {pid} is already being replaced")),
            None => Err(self.no_such_worker(pid)),
        }
    }

    async fn pause(&mut self, pid: u32, pause: bool, reply: oneshot::Sender<Result<(), String>>) {
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
            let _ = reply.send(Err(debugging(pid)));
            return;
        }
        if proc.state == want {
            let _ = reply.send(Ok(()));
            return;
        }
        if !matches!(proc.state, WorkerState::Listening | WorkerState::Paused) {
            let _ = reply.send(Err(format!(
                "worker pid {pid} is {}, not serving",
                proc.state.name()
            )));
            return;
        }
        let msg = if pause {
            ToWorker::Pause
        } else {
            ToWorker::Resume
        };
        if proc.child.tx.send(&msg).await.is_err() {
            let _ = reply.send(Err("the worker is gone".to_owned()));
            return;
        }
        // Answered when the worker confirms.
        proc.waiting = Some((pause, reply));
    }

    pub(super) fn no_such_worker(&self, pid: u32) -> String {
        let pids: Vec<String> = self.procs.keys().map(u32::to_string).collect();
        format!("no worker with pid {pid}; workers: {}", pids.join(", "))
    }
}

/// Why a worker kept for debugging refuses the usual controls.
fn debugging(pid: u32) -> String {
    format!(
        "worker pid {pid} is out of traffic for debugging: end its session, or release or \
         dismiss it, from /debug"
    )
}
