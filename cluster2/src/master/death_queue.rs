//! The death queue: workers to replace, one at a time, each successor warm before its
//! predecessor stops — and the nanny, which queues workers whose heartbeats stopped.
//!
//! The queue's own state (`DeathQueue`) is plain data; the steps that start, stop and signal
//! processes are methods of the supervisor below, since they need its processes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::board::{QueuedReplacement, WorkerState};
use super::supervisor::{Spawn, Supervisor};
use crate::lifecycle::{self, Event, Exit, ReplaceReason};
use crate::log::human;

/// How long an old worker gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long a runaway gets after its successor is ready before it is killed.
const RUNAWAY_GRACE: Duration = Duration::from_secs(2);

/// After every successor of a worker failed, how long before its heartbeats may queue it for
/// replacement again (it keeps serving meanwhile): long enough for an operator to fix a broken
/// deploy, short enough that a recycling policy still applies within minutes.
const JUDGED_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// What becomes of the old worker once its successor serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retire {
    /// It stops accepting, finishes its requests and exits.
    Drain,
    /// It is killed shortly after: a runaway cannot drain.
    Kill,
    /// It stops accepting and stays, out of traffic, for a debug session; it is stopped when
    /// the session ends.
    KeepForDebugging,
}

/// A queued replacement.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) slot: usize,
    pub(super) pid: u32,
    pub(super) reason: ReplaceReason,
    pub(super) retire: Retire,
}

/// The replacement in progress.
struct Replacing {
    entry: Entry,
    started: Instant,
    tries: u32,
    successor: Option<u32>,
    stage: Stage,
    deadline: tokio::time::Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the successor to listen.
    Successor,
    /// The old process was told to stop; waiting for its exit.
    Draining,
    /// The old process got SIGTERM; waiting for its exit before SIGKILL.
    Terminated,
}

/// Workers waiting to be replaced, and the one being replaced.
#[derive(Default)]
pub(super) struct DeathQueue {
    queue: VecDeque<Entry>,
    replacing: Option<Replacing>,
}

impl DeathQueue {
    /// When the replacement in progress needs attention (a successor late, an old worker slow
    /// to exit).
    pub(super) fn deadline(&self) -> Option<tokio::time::Instant> {
        self.replacing.as_ref().map(|r| r.deadline)
    }

    /// Whether `pid` is the worker being replaced now.
    pub(super) fn is_replacing(&self, pid: u32) -> bool {
        self.replacing.as_ref().is_some_and(|r| r.entry.pid == pid)
    }

    /// Whether `pid` is the successor being started now.
    pub(super) fn is_successor(&self, pid: u32) -> bool {
        self.replacing
            .as_ref()
            .is_some_and(|r| r.successor == Some(pid))
    }

    /// Whether a successor is on its way for `slot`.
    pub(super) fn successor_coming_for(&self, slot: usize) -> bool {
        self.replacing
            .as_ref()
            .is_some_and(|r| r.entry.slot == slot && r.successor.is_some())
    }

    /// Whether `pid` is queued for replacement or being replaced.
    pub(super) fn holds(&self, pid: u32) -> bool {
        self.is_replacing(pid) || self.queue.iter().any(|e| e.pid == pid)
    }

    /// Drops a waiting entry for `pid` (it exited).
    pub(super) fn forget(&mut self, pid: u32) {
        self.queue.retain(|e| e.pid != pid);
    }

    /// Nothing more is replaced: the cluster stops.
    pub(super) fn clear(&mut self) {
        self.queue.clear();
        self.replacing = None;
    }

    /// Whether no replacement is queued or in progress.
    pub(super) fn is_empty(&self) -> bool {
        self.replacing.is_none() && self.queue.is_empty()
    }

    /// The queue as the monitor shows it, the replacement in progress first.
    pub(super) fn shown(&self) -> Vec<QueuedReplacement> {
        let mut shown = Vec::with_capacity(self.queue.len() + 1);
        if let Some(r) = &self.replacing {
            shown.push(QueuedReplacement {
                worker: r.entry.slot,
                pid: r.entry.pid,
                reason: r.entry.reason.clone(),
                in_progress: true,
                successor: r.successor,
                attempt: r.tries,
            });
        }
        shown.extend(self.queue.iter().map(|e| QueuedReplacement {
            worker: e.slot,
            pid: e.pid,
            reason: e.reason.clone(),
            in_progress: false,
            successor: None,
            attempt: 0,
        }));
        shown
    }
}

impl Supervisor {
    /// Queues a worker for replacement; a worker already queued or being replaced is not
    /// queued twice.
    pub(super) async fn enqueue(&mut self, entry: Entry) -> bool {
        if self.stopping || self.deaths.holds(entry.pid) {
            return false;
        }
        tracing::info!(
            "queued worker {} (pid {}) for replacement: {}",
            entry.slot,
            entry.pid,
            entry.reason
        );
        lifecycle::publish(Event::Queued {
            worker: entry.slot,
            pid: entry.pid,
            reason: entry.reason.clone(),
        });
        self.deaths.queue.push_back(entry);
        self.advance().await;
        true
    }

    /// Starts the next replacement if none is in progress.
    async fn advance(&mut self) {
        while self.deaths.replacing.is_none() && !self.stopping {
            let Some(entry) = self.deaths.queue.pop_front() else {
                break;
            };
            // The worker may have exited since it was queued.
            if !self.procs.contains_key(&entry.pid) {
                continue;
            }
            // Said once when queued and once when done; the steps between are for debugging.
            tracing::debug!(
                "replacing worker {} (pid {}): {}",
                entry.slot,
                entry.pid,
                entry.reason
            );
            lifecycle::publish(Event::Replacing {
                worker: entry.slot,
                pid: entry.pid,
                reason: entry.reason.clone(),
            });
            self.deaths.replacing = Some(Replacing {
                entry,
                started: Instant::now(),
                tries: 0,
                successor: None,
                stage: Stage::Successor,
                deadline: tokio::time::Instant::now(),
            });
            self.start_successor().await;
        }
        self.publish_queue();
    }

    async fn start_successor(&mut self) {
        let Some(r) = self.deaths.replacing.as_mut() else {
            return;
        };
        r.tries += 1;
        r.stage = Stage::Successor;
        r.deadline = tokio::time::Instant::now() + self.options.death_queue.timeout;
        let (slot, old) = (r.entry.slot, r.entry.pid);
        let successor = self.spawn(slot, Spawn::SuccessorOf(old)).await;
        if let Some(r) = self.deaths.replacing.as_mut() {
            r.successor = successor;
            if successor.is_none() {
                // Counted as a failed try when the deadline fires, right away.
                r.deadline = tokio::time::Instant::now();
            }
        }
        self.publish_queue();
    }

    /// The successor failed (crashed, failed its warm-up, or was not ready in time): one
    /// ERROR line says so, and whether another try follows.
    pub(super) async fn retry_successor(&mut self, why: String) {
        let Some(r) = self.deaths.replacing.as_mut() else {
            return;
        };
        if let Some(successor) = r.successor.take() {
            if let Some(p) = self.procs.get_mut(&successor) {
                p.expected_exit = true;
                p.child.signal(Signal::SIGKILL);
            }
        }
        let (slot, pid, tries) = (r.entry.slot, r.entry.pid, r.tries);
        let allowed = self.options.death_queue.retries;
        lifecycle::publish(Event::SuccessorFailed {
            worker: slot,
            pid,
            attempt: tries,
            tries: allowed,
            why: why.clone(),
        });
        if tries >= allowed {
            tracing::error!(
                "gave up replacing worker {slot} (pid {pid}) after {tries} tries: {why}; \
                 it keeps serving"
            );
            lifecycle::publish(Event::ReplacementFailed {
                worker: slot,
                pid,
                why,
            });
            if let Some(p) = self.procs.get_mut(&pid) {
                p.judged_again_at = Some(Instant::now() + JUDGED_AGAIN_AFTER);
            }
            self.deaths.replacing = None;
            self.advance().await;
            return;
        }
        // The old worker keeps serving meanwhile.
        if self.procs.contains_key(&pid) {
            tracing::error!(
                "replacing worker {slot} (pid {pid}), try {tries} of {allowed} failed: {why}; \
                 trying again"
            );
            self.start_successor().await;
        } else {
            tracing::error!(
                "replacing worker {slot} (pid {pid}), try {tries} of {allowed} failed: {why}; \
                 the worker is gone, so no other try"
            );
            self.deaths.replacing = None;
            self.advance().await;
        }
    }

    /// The successor listens: it becomes the slot's active process and the old one stops.
    pub(super) async fn successor_ready(&mut self, successor: u32) {
        let Some(r) = self.deaths.replacing.as_ref() else {
            return;
        };
        if r.successor != Some(successor) {
            return;
        }
        let (slot, old, retire) = (r.entry.slot, r.entry.pid, r.entry.retire);
        if let Some(p) = self.procs.get_mut(&successor) {
            p.successor_of = None;
        }
        self.slots[slot].active = Some(successor);
        lifecycle::publish(Event::SuccessorReady {
            worker: slot,
            pid: old,
            successor,
        });
        if !self.procs.contains_key(&old) {
            // The old worker is already gone.
            self.replacement_done(old, None).await;
            return;
        }
        if retire == Retire::KeepForDebugging {
            self.keep_for_debugging(old).await;
            self.replacement_done(old, None).await;
            return;
        }
        self.stop_worker(old).await;
        let grace = if retire == Retire::Kill {
            RUNAWAY_GRACE.min(self.options.death_queue.timeout)
        } else {
            self.options.death_queue.timeout
        };
        if let Some(r) = self.deaths.replacing.as_mut() {
            r.stage = Stage::Draining;
            r.deadline = tokio::time::Instant::now() + grace;
        }
        tracing::debug!("worker {slot}: successor (pid {successor}) ready; stopping pid {old}");
        self.publish_queue();
    }

    /// The replaced worker is gone (`exit`: how, when it exited now; `None` when it had
    /// exited before, or stays for a debug session): the one line that closes a replacement.
    pub(super) async fn replacement_done(&mut self, old: u32, exit: Option<&Exit>) {
        let Some(r) = self.deaths.replacing.take() else {
            return;
        };
        self.board.count_replacement();
        let slot = r.entry.slot;
        let successor = self.slots[slot].active;
        let took = r.started.elapsed();
        // A worker that drained and stopped needs no word; one that was killed does.
        let unusual = exit
            .filter(|e| e.status != Some(0))
            .map(|e| format!("; pid {old} {e}"))
            .unwrap_or_default();
        tracing::info!(
            "replaced worker {slot} (pid {old} → pid {}) in {}: {}{unusual}",
            successor.map_or("none".to_owned(), |p| p.to_string()),
            human(took),
            r.entry.reason
        );
        lifecycle::publish(Event::Replaced {
            worker: slot,
            pid: old,
            successor,
            reason: r.entry.reason,
            took_secs: took.as_secs_f64(),
        });
        self.advance().await;
    }

    pub(super) async fn replacement_deadline(&mut self) {
        let Some(r) = self.deaths.replacing.as_mut() else {
            return;
        };
        let (slot, pid) = (r.entry.slot, r.entry.pid);
        match r.stage {
            Stage::Successor => {
                let why = format!(
                    "not ready within {} (--death-queue.timeout)",
                    humantime::format_duration(self.options.death_queue.timeout)
                );
                self.retry_successor(why).await;
            }
            Stage::Draining => {
                let signal = if r.entry.retire == Retire::Kill {
                    Signal::SIGKILL
                } else {
                    Signal::SIGTERM
                };
                tracing::warn!("worker {slot} (pid {pid}) did not exit in time; sending {signal}");
                r.stage = Stage::Terminated;
                r.deadline = tokio::time::Instant::now() + TERM_GRACE;
                if let Some(p) = self.procs.get(&pid) {
                    p.child.signal(signal);
                }
            }
            Stage::Terminated => {
                tracing::warn!("worker {slot} (pid {pid}) ignored SIGTERM; sending SIGKILL");
                r.deadline = tokio::time::Instant::now() + TERM_GRACE;
                if let Some(p) = self.procs.get(&pid) {
                    p.child.signal(Signal::SIGKILL);
                }
            }
        }
        self.publish_queue();
    }

    /// Every active worker, queued for replacement one at a time. The summary line comes
    /// first, then each worker's.
    pub(super) async fn rolling_restart(&mut self, sighup: bool) -> usize {
        let targets: Vec<(usize, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| s.active.map(|pid| (slot, pid)))
            .filter(|&(_, pid)| !self.deaths.holds(pid))
            .collect();
        let asked = if sighup {
            "SIGHUP"
        } else {
            "rolling restart requested"
        };
        if self.stopping {
            tracing::info!("{asked}: ignored, the cluster is shutting down");
            return 0;
        }
        match targets.len() {
            0 => tracing::info!("{asked}: every worker is already queued for replacement"),
            1 => tracing::info!("{asked}: replacing 1 worker"),
            n => tracing::info!("{asked}: replacing {n} workers one at a time"),
        }
        let mut queued = 0;
        for (slot, pid) in targets {
            let entry = Entry {
                slot,
                pid,
                reason: ReplaceReason::RollingRestart { sighup },
                retire: Retire::Drain,
            };
            if self.enqueue(entry).await {
                queued += 1;
            }
        }
        queued
    }

    /// Workers whose heartbeats stopped are runaways.
    pub(super) async fn nanny(&mut self) {
        let tolerance = self.options.nanny.tolerance;
        let runaways: Vec<(usize, u32, Duration)> = self
            .procs
            .values()
            .filter(|p| {
                matches!(p.state, WorkerState::Listening | WorkerState::Paused)
                    && p.successor_of.is_none()
                    && !p.expected_exit
                    // A debug worker may be stopped in a debugger or be profiled: the operator
                    // decides what happens to it.
                    && p.debugging.is_none()
            })
            .filter_map(|p| {
                let last = p
                    .heartbeat
                    .as_ref()
                    .map(|(_, at)| *at)
                    .or(p.listening_since)?;
                let silent = last.elapsed();
                (silent > tolerance).then_some((p.slot, p.pid(), silent))
            })
            .collect();
        for (slot, pid, silent) in runaways {
            tracing::warn!(
                "worker {slot} (pid {pid}) sent no heartbeat for {} (--nanny.tolerance {}): runaway",
                human(silent),
                humantime::format_duration(tolerance)
            );
            self.enqueue(Entry {
                slot,
                pid,
                reason: ReplaceReason::Runaway {
                    silent_secs: silent.as_secs_f64(),
                },
                retire: Retire::Kill,
            })
            .await;
        }
    }
}
