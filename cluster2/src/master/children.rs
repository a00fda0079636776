//! Starting a child process — a worker or the standalone cache manager — and listening to it:
//! the channel, the hello, the reader that turns what it says into supervisor inputs, and the
//! exit watch that reaps it and is the only way to signal it.
//!
//! What a child's messages *mean* is the supervisor's business; this room only carries them.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::process::Process;
use super::spawn::{Pending, Spawned};
use super::supervisor::Input;
use crate::ipc::channel::{self, Sender};
use crate::ipc::message::{Hello, ToMaster, ToWorker};

/// The master's handle on a running child.
#[derive(Debug)]
pub(super) struct Child {
    pub(super) pid: u32,
    /// Messages to the child.
    pub(super) tx: Sender<ToWorker>,
    /// Signals to the child, delivered by the task that reaps it.
    pub(super) signals: mpsc::UnboundedSender<Signal>,
}

impl Child {
    /// Sends `signal` to the child unless it has been reaped already.
    pub(super) fn signal(&self, signal: Signal) {
        let _ = self.signals.send(signal);
    }
}

/// Once the child asked for (`spawning`) is started, sends it `hello`, and reports what it
/// says and its exit on `inputs`. An error says what failed; a child that was started but
/// cannot be talked to is still reaped (it sees its channel close and exits on its own).
pub(super) async fn start(
    spawning: Pending,
    hello: Hello,
    inputs: &mpsc::UnboundedSender<Input>,
) -> Result<Child, String> {
    let Spawned { child, channel } = spawning
        .started()
        .await
        .map_err(|e| format!("cannot start it: {e}"))?;
    let pid = child.id().unwrap_or_default();
    let channel = channel
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(channel));
    let (tx, rx, _writer) = match channel {
        Ok(c) => channel::channel::<ToWorker, ToMaster>(c),
        Err(e) => {
            watch_exit(pid, child, None, inputs.clone());
            return Err(format!("cannot talk to pid {pid}: {e}"));
        }
    };
    let debug_filter = hello.debug_new.clone();
    let _ = tx.send(&ToWorker::Hello(Box::new(hello))).await;
    crate::log::hub::child_started(pid, tx.clone(), debug_filter);
    let reader = tokio::spawn(read(pid, rx, inputs.clone()));
    let signals = watch_exit(pid, child, Some(reader), inputs.clone());
    Ok(Child { pid, tx, signals })
}

/// Forwards the child's messages until its channel closes. Events, status traffic, log lines
/// and profiles are routed here, off the supervisor's loop: they are many and need no
/// supervisor state.
async fn read(pid: u32, rx: channel::Receiver<ToMaster>, inputs: mpsc::UnboundedSender<Input>) {
    // Profiles still awaited from this child fail at once when it is gone.
    let _profiles = crate::monitor::debug_profile::ForgetOnDrop(pid);
    read_messages(pid, rx, inputs).await;
    // Its log watchers' streams end here.
    crate::log::hub::child_gone(pid);
}

async fn read_messages(
    pid: u32,
    mut rx: channel::Receiver<ToMaster>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    loop {
        match rx.recv().await {
            Ok(Some(ToMaster::Emit { event, targets })) => {
                crate::emitter::relay(event, &targets);
            }
            Ok(Some(ToMaster::StatusNames(names))) => {
                crate::status::worker_names(pid, names);
            }
            Ok(Some(ToMaster::StatusReply { id, result })) => {
                crate::status::complete(id, result);
            }
            Ok(Some(ToMaster::Logs { lines, dropped })) => {
                crate::log::hub::received(pid, lines, dropped);
            }
            Ok(Some(ToMaster::LogFilterSet { id, result })) => {
                crate::log::hub::filter_set(id, result);
            }
            Ok(Some(ToMaster::ProfileDone { id, result })) => {
                crate::monitor::debug_profile::complete(id, result);
            }
            Ok(Some(msg)) => {
                if inputs.send(Input::Message { pid, msg }).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = inputs.send(Input::ChannelBroken {
                    pid,
                    error: e.to_string(),
                });
                return;
            }
        }
    }
}

/// Waits for the child's exit in a task that also delivers signals to it: the task that
/// reaps a process is the only one that can signal it without risking a recycled pid.
fn watch_exit(
    pid: u32,
    mut child: Process,
    reader: Option<JoinHandle<()>>,
    inputs: mpsc::UnboundedSender<Input>,
) -> mpsc::UnboundedSender<Signal> {
    let (signals, mut incoming) = mpsc::unbounded_channel::<Signal>();
    tokio::spawn(async move {
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                Some(sig) = incoming.recv() => {
                    if let Some(raw) = child.id() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(raw as i32),
                            sig,
                        );
                    }
                }
            }
        };
        // Whatever the child said before it exited is handled before its exit: the reader
        // ends at the channel's EOF, which the exit causes.
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        let _ = inputs.send(Input::Exited { pid, status });
    });
    signals
}
