//! Debugging one worker, both halves (the functions the monitor calls, and their handling on
//! the supervisor's loop), as the original's debug page meant it:
//!
//! - a **debug session** takes a serving worker out of traffic: its successor warms up and
//!   takes its place first (the death queue, with [`Retire::KeepForDebugging`]), so the
//!   cluster keeps its capacity, and the worker stays alive to be inspected until the session
//!   ends and it is stopped;
//! - **debug new** starts an extra worker for a worker id, held out of traffic from its start,
//!   logging at a chosen level and forwarding its lines from the very first one (start-up
//!   problems are the hardest to see); the log hub keeps them until someone watches. An
//!   operator then releases it into traffic (it takes the worker id over and the process that
//!   served it drains) or dismisses it (it stops, and the worker id never noticed).
//!
//! Neither kind is judged by the nanny or the robustness heuristics, and neither's exit is a
//! crash of its worker id.
//!
//! [`Retire::KeepForDebugging`]: super::death_queue::Retire::KeepForDebugging

use tokio::sync::oneshot;

use super::board::{Debugging, WorkerState};
use super::control::{Control, Refusal, Refused, ask, refused};
use super::death_queue::Retire;
use super::supervisor::{Spawn, Supervisor};
use crate::error::Result;
use crate::ipc::message::ToWorker;
use crate::lifecycle::{self, Event, ReplaceReason};

type Reply<T> = oneshot::Sender<std::result::Result<T, Refusal>>;
type Answer<T> = std::result::Result<T, Refusal>;

/// A debugging request to the supervisor.
pub(crate) enum DebugRequest {
    Session(u32, Reply<()>),
    EndSession(u32, Reply<()>),
    New(String, Reply<NewDebugWorker>),
    Release(u32, Reply<Released>),
    Dismiss(u32, Reply<()>),
}

impl DebugRequest {
    pub(super) fn refuse(self, why: Refusal) {
        match self {
            DebugRequest::Session(_, r)
            | DebugRequest::EndSession(_, r)
            | DebugRequest::Dismiss(_, r) => drop(r.send(Err(why))),
            DebugRequest::New(_, r) => drop(r.send(Err(why))),
            DebugRequest::Release(_, r) => drop(r.send(Err(why))),
        }
    }
}

/// A debug worker just started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewDebugWorker {
    pub(crate) pid: u32,
    /// The worker id whose place it takes if released.
    pub(crate) worker: usize,
}

/// A debug worker released into traffic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Released {
    pub(crate) worker: usize,
    /// The process that served the worker id before, now draining.
    pub(crate) replaced: Option<u32>,
}

/// Starts a debug session on worker `pid`: a successor takes its place (warm first, so the
/// cluster keeps its capacity) and `pid` stays alive out of traffic until
/// [`end_debug_session`].
pub(crate) async fn debug_session(pid: u32) -> Result<()> {
    ask(|r| Control::Debug(DebugRequest::Session(pid, r)))
        .await?
        .map_err(refused)
}

/// Ends the debug session of `pid`: it is stopped gracefully.
pub(crate) async fn end_debug_session(pid: u32) -> Result<()> {
    ask(|r| Control::Debug(DebugRequest::EndSession(pid, r)))
        .await?
        .map_err(refused)
}

/// Starts an extra worker held out of traffic, logging with `filter` (already checked) from its
/// first line.
pub(crate) async fn debug_new(filter: String) -> Result<NewDebugWorker> {
    ask(|r| Control::Debug(DebugRequest::New(filter, r)))
        .await?
        .map_err(refused)
}

/// Releases debug worker `pid` into traffic in its worker id's place.
pub(crate) async fn release_debug_worker(pid: u32) -> Result<Released> {
    ask(|r| Control::Debug(DebugRequest::Release(pid, r)))
        .await?
        .map_err(refused)
}

/// Stops debug worker `pid` without it ever serving.
pub(crate) async fn dismiss_debug_worker(pid: u32) -> Result<()> {
    ask(|r| Control::Debug(DebugRequest::Dismiss(pid, r)))
        .await?
        .map_err(refused)
}

impl Supervisor {
    pub(super) async fn debug(&mut self, request: DebugRequest) {
        match request {
            DebugRequest::Session(pid, reply) => {
                let result = self
                    .replace(pid, ReplaceReason::DebugSession, Retire::KeepForDebugging)
                    .await;
                let _ = reply.send(result);
            }
            DebugRequest::EndSession(pid, reply) => {
                let result = match self.procs.get(&pid) {
                    Some(p) if p.debugging == Some(Debugging::Session) => {
                        let worker = p.slot;
                        self.stop_worker(pid).await;
                        lifecycle::publish(Event::DebugSessionEnded { worker, pid });
                        Ok(())
                    }
                    Some(_) => Err(conflict(format!(
                        "worker pid {pid} is not in a debug session"
                    ))),
                    None => Err(self.no_such_worker(pid)),
                };
                let _ = reply.send(result);
            }
            DebugRequest::New(filter, reply) => {
                let _ = reply.send(self.debug_new(&filter).await);
            }
            DebugRequest::Release(pid, reply) => {
                let _ = reply.send(self.release(pid).await);
            }
            DebugRequest::Dismiss(pid, reply) => {
                let result = match self.debug_worker(pid) {
                    Ok(worker) => {
                        tracing::info!("debug worker (pid {pid}) dismissed");
                        lifecycle::publish(Event::DebugWorkerDismissed { worker, pid });
                        self.stop_worker(pid).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// The successor of `pid` serves: `pid` stops accepting and stays for its debug session.
    pub(super) async fn keep_for_debugging(&mut self, pid: u32) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        // Its exit, whenever it comes, is no crash: its worker id has a successor already.
        proc.expected_exit = true;
        proc.debugging = Some(Debugging::Session);
        let worker = proc.slot;
        if proc.state == WorkerState::Listening {
            let _ = proc.child.tx.send(&ToWorker::Pause).await;
        }
        tracing::info!("worker {worker} (pid {pid}) is out of traffic for a debug session");
        lifecycle::publish(Event::DebugSessionStarted { worker, pid });
    }

    async fn debug_new(&mut self, filter: &str) -> Answer<NewDebugWorker> {
        if let Some(held) = self
            .procs
            .values()
            .find(|p| p.debugging == Some(Debugging::New))
        {
            return Err(conflict(format!(
                "debug worker pid {} is still held: release or dismiss it first",
                held.pid()
            )));
        }
        // It is meant to take the place of the worker that has served longest.
        let Some(worker) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| Some((slot, self.procs.get(&s.active?)?.spawned_at)))
            .min_by_key(|&(_, since)| since)
            .map(|(slot, _)| slot)
        else {
            return Err(conflict("no worker serves yet"));
        };
        let Some(pid) = self.spawn(worker, Spawn::DebugNew(filter)).await else {
            return Err(conflict(
                "the debug worker could not be started; see the master's log",
            ));
        };
        tracing::info!(
            "debug worker (pid {pid}) started for worker {worker}, logging at `{filter}`, \
             held out of traffic"
        );
        lifecycle::publish(Event::DebugWorkerStarted {
            worker,
            pid,
            filter: filter.to_owned(),
        });
        Ok(NewDebugWorker { pid, worker })
    }

    /// The worker id debug worker `pid` is held for, or why `pid` is not one.
    fn debug_worker(&self, pid: u32) -> Answer<usize> {
        match self.procs.get(&pid) {
            Some(p) if p.debugging == Some(Debugging::New) && !p.expected_exit => Ok(p.slot),
            Some(p) if p.debugging == Some(Debugging::New) => {
                Err(conflict(format!("debug worker pid {pid} is stopping")))
            }
            Some(_) => Err(conflict(format!(
                "worker pid {pid} is not a new debug worker (see POST /debug/workers/new)"
            ))),
            None => Err(self.no_such_worker(pid)),
        }
    }

    /// Debug worker `pid` takes its worker id over; the process that served it drains.
    async fn release(&mut self, pid: u32) -> Answer<Released> {
        let worker = self.debug_worker(pid)?;
        let state = self.procs[&pid].state;
        if state != WorkerState::Paused {
            return Err(conflict(format!(
                "debug worker pid {pid} is {}: it can be released once it is ready",
                state.name()
            )));
        }
        if !self.is_live(worker) {
            return Err(conflict(format!(
                "worker {worker}, which debug worker pid {pid} was held for, was retired by a \
                 scale-down: dismiss pid {pid}"
            )));
        }
        let replaced = self.slots[worker].active;
        if let Some(old) = replaced {
            if self.deaths.is_replacing(old) || self.deaths.successor_coming_for(worker) {
                return Err(conflict(format!(
                    "worker {worker} (pid {old}) is being replaced right now; release pid {pid} \
                     once that is done"
                )));
            }
        }
        let proc = self.procs.get_mut(&pid).expect("checked above");
        if proc.child.tx.send(&ToWorker::Resume).await.is_err() {
            return Err(Refusal::new(
                Refused::NoSuchWorker,
                format!("debug worker pid {pid} is gone"),
            ));
        }
        proc.debugging = None;
        crate::log::hub::stop_keeping(pid);
        let slot = &mut self.slots[worker];
        slot.active = Some(pid);
        slot.restart_at = None;
        // It serves now; the one it replaces stops (a queued replacement of it is moot).
        if let Some(old) = replaced {
            self.deaths.forget(old);
            self.stop_worker(old).await;
        }
        tracing::info!(
            "debug worker (pid {pid}) released: it serves as worker {worker}{}",
            match replaced {
                Some(old) => format!("; pid {old} stops"),
                None => String::new(),
            }
        );
        lifecycle::publish(Event::DebugWorkerReleased {
            worker,
            pid,
            replaced,
        });
        Ok(Released { worker, replaced })
    }
}

fn conflict(message: impl Into<String>) -> Refusal {
    Refusal::new(Refused::Conflict, message)
}
