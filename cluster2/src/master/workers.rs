//! The supervisor's record of each worker: the live processes (`Proc`) and the worker ids
//! with their restart history (`Slot`), and the views built from them — what the board shows,
//! which pids serve, what is not ready yet. Nothing here starts, stops or decides anything.

use std::net::SocketAddr;
use std::time::Instant;

use super::board::{Debugging, WorkerInfo, WorkerState};
use super::children::Child;
use super::control::Reply;
use super::restart::CrashStreak;
use super::supervisor::Supervisor;
use crate::heartbeat::Heartbeat;
use nix::sys::signal::Signal;

/// One live worker process.
pub(super) struct Proc {
    pub(super) child: Child,
    pub(super) slot: usize,
    pub(super) state: WorkerState,
    pub(super) spawned_at: Instant,
    pub(super) listening_since: Option<Instant>,
    /// It answered a request: a crash is no crash loop.
    pub(super) served: bool,
    /// Why it cannot take new connections, while it cannot.
    pub(super) cannot_accept: Option<String>,
    pub(super) warm_up_addr: Option<SocketAddr>,
    /// The latest heartbeat and when it arrived.
    pub(super) heartbeat: Option<(Heartbeat, Instant)>,
    /// 5xx answers and panics summed over this process's heartbeats.
    pub(super) errors: u64,
    pub(super) panics: u64,
    /// Set when this process replaces that one (death queue).
    pub(super) successor_of: Option<u32>,
    /// The master asked it to go: its exit is no crash.
    pub(super) expected_exit: bool,
    /// Kept out of traffic for debugging: a debug session, or a new worker held from its start.
    pub(super) debugging: Option<Debugging>,
    /// A caller waiting for a pause or resume to be confirmed.
    pub(super) waiting: Option<(bool, Reply)>,
    /// What it reported when its start-up failed (`warm-up failed: …`), to explain its exit.
    pub(super) start_failure: Option<String>,
    /// Its seat at the connection-balance table, freed when it exits.
    pub(super) seat: Option<u32>,
    /// Its replacement was given up (every successor failed): it is not judged again for
    /// replacement before then, so that a broken deploy is not tried again on every heartbeat.
    pub(super) judged_again_at: Option<Instant>,
}

impl Proc {
    pub(super) fn pid(&self) -> u32 {
        self.child.pid
    }
}

/// One worker id and its restart history.
#[derive(Default)]
pub(super) struct Slot {
    /// The process serving this slot (or starting to).
    pub(super) active: Option<u32>,
    pub(super) streak: CrashStreak,
    pub(super) restarts: u64,
    pub(super) restart_at: Option<Instant>,
    pub(super) last_failure: Option<String>,
    /// A process of this id has listened since the id was made (at start, or by a growth):
    /// from then on a missing process of it is capacity lost (`ecv.min_workers`).
    pub(super) established: bool,
}

impl Supervisor {
    /// The records of the cluster's worker ids now: those a scale-down retired are left out.
    pub(super) fn live_slots(&self) -> &[Slot] {
        &self.slots[..self.options.workers.min(self.slots.len())]
    }

    pub(super) fn all_listening(&self) -> bool {
        self.live_slots().iter().all(|s| {
            s.active
                .and_then(|pid| self.procs.get(&pid))
                .is_some_and(|p| p.state == WorkerState::Listening)
        })
    }

    pub(super) fn active_pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| s.active).collect()
    }

    pub(super) fn signal_all(&self, sig: Signal) {
        for proc in self.procs.values() {
            proc.child.signal(sig);
        }
    }

    pub(super) fn describe_unready(&self) -> String {
        let parts: Vec<String> = self
            .live_slots()
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let proc = s.active.and_then(|pid| self.procs.get(&pid));
                if proc.is_some_and(|p| p.state == WorkerState::Listening) {
                    return None;
                }
                let now = match proc {
                    Some(p) => format!("worker {slot} (pid {}) is {:?}", p.pid(), p.state),
                    None => format!("worker {slot} is waiting to restart"),
                };
                Some(
                    match &s.last_failure {
                        Some(f) => format!("{now}, last failure: {f}"),
                        None => now,
                    }
                    .to_lowercase(),
                )
            })
            .collect();
        parts.join("; ")
    }

    /// Publishes every worker and the death queue: after anything that may have changed
    /// more than one worker's figures.
    pub(super) fn publish(&self) {
        let infos = self.procs.values().map(|p| self.info(p)).collect();
        self.board.set_workers(infos);
        self.board
            .set_established(self.live_slots().iter().filter(|s| s.established).count());
        self.publish_queue();
    }

    /// Publishes one worker's entry alone: a heartbeat changes nothing else, and rebuilding
    /// every entry on each of them made the master's idle work grow with the square of the
    /// number of workers.
    pub(super) fn publish_worker(&self, pid: u32) {
        let updated = self
            .procs
            .get(&pid)
            .is_some_and(|p| self.board.set_worker(self.info(p)));
        if !updated {
            self.publish();
        }
    }

    fn info(&self, p: &Proc) -> WorkerInfo {
        let slot = &self.slots[p.slot];
        WorkerInfo {
            id: p.slot,
            pid: p.pid(),
            state: p.state,
            spawned_at: p.spawned_at,
            warm_up_addr: p.warm_up_addr,
            restarts: slot.restarts,
            crash_streak: slot.streak.count(),
            successor_of: p.successor_of,
            heartbeat: p.heartbeat.clone(),
            errors: p.errors,
            panics: p.panics,
            debugging: p.debugging,
            cannot_accept: p.cannot_accept.clone(),
        }
    }

    pub(super) fn publish_queue(&self) {
        self.board.set_death_queue(self.deaths.shown());
    }
}
