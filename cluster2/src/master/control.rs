//! Operator controls of a running cluster, callable from the master process (for example from
//! the `main` body or a monitor route). The monitor app exposes them as
//! `POST /workers/{pid}/pause`, `/resume`, `/replace` and `POST /workers/restart`.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, ErrorKind, Result};

/// A request to the supervisor.
pub(crate) enum Control {
    Pause(u32, oneshot::Sender<std::result::Result<(), String>>),
    Resume(u32, oneshot::Sender<std::result::Result<(), String>>),
    Replace(u32, oneshot::Sender<std::result::Result<(), String>>),
    RollingRestart(oneshot::Sender<usize>),
}

impl Control {
    pub(crate) fn refuse(self, why: &str) {
        match self {
            Control::Pause(_, r) | Control::Resume(_, r) | Control::Replace(_, r) => {
                let _ = r.send(Err(why.to_owned()));
            }
            Control::RollingRestart(r) => drop(r),
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

async fn ask<T>(make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Result<T> {
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
