//! Scaling at run time, both halves: the public [`scale`] and [`scale_by`] (the monitor's
//! `POST /workers/scale`, the command line's `scale`), SIGTTIN and SIGTTOU (one more, one
//! fewer, as gunicorn), and their handling on the supervisor's loop.
//!
//! Worker ids stay `0..workers`. Growing adds the next ids, each started as at start: it
//! builds its app and warms up, and takes traffic only once it listens. Shrinking retires the
//! highest ids, the newest: each one's process is told to stop and drains like any stopping
//! worker (its in-flight requests finish within `stop_timeout`; the master kills it if it
//! outlives that by two seconds). A retired id keeps its record (`Slot`), so a process of it
//! still draining is accounted for, and is started afresh if the cluster grows again.
//!
//! The bounds are the `workers` option's: from 1 to 8 per CPU (1024 with `force_workers`).
//! Growing is allowed whenever the cluster runs, a rolling restart included (new workers run
//! the program file as it is now, which is what the restart deploys). Shrinking is refused
//! (409) while the death queue holds a replacement: the worker being replaced could be one to
//! retire; the refusal says to wait until the queue is empty. Both are refused while the
//! cluster starts (409) or stops (503).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::control::{Control, Refusal, Refused, ask, refused};
use super::shutdown::STOP_SLACK;
use super::spawn::Kind;
use super::supervisor::{Input, Spawn, Supervisor};
use super::workers::Slot;
use crate::error::Result;
use crate::lifecycle::{self, Event};

/// What is asked: a number of workers, or a change of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Exactly this many.
    To(usize),
    /// This many more (or fewer, when negative).
    By(i64),
}

/// A change of the number of workers: what it was and what it is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scaled {
    /// The number of workers before.
    pub from: usize,
    /// The number of workers now (the worker ids are `0..to`).
    pub to: usize,
}

/// The supervisor's answer to a scale request.
pub(crate) type ScaleReply = oneshot::Sender<std::result::Result<Scaled, Refusal>>;

/// Runs `workers` worker processes from now on: new ones warm up before they take traffic,
/// the highest worker ids drain and stop. Answers at once, with the numbers before and after;
/// the lifecycle events (`scaled`, then each worker's) tell when it is done.
///
/// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) for a number outside the
/// `workers` option's bounds, [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) while the
/// cluster starts or, for a shrink, while a replacement is queued, and
/// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) outside a running cluster's
/// master or while it shuts down.
pub async fn scale(workers: usize) -> Result<Scaled> {
    ask(|r| Control::Scale(Target::To(workers), r))
        .await?
        .map_err(refused)
}

/// Runs `delta` more workers (fewer, when negative), as [`scale`] does.
pub async fn scale_by(delta: i64) -> Result<Scaled> {
    ask(|r| Control::Scale(Target::By(delta), r))
        .await?
        .map_err(refused)
}

impl Supervisor {
    /// SIGTTIN (`+1`) or SIGTTOU (`-1`): a refusal is logged, since nobody else would see it.
    pub(super) async fn scale_signal(&mut self, delta: i64) {
        let name = if delta > 0 { "SIGTTIN" } else { "SIGTTOU" };
        if let Err(refusal) = self.scale(Target::By(delta), name).await {
            tracing::warn!("{name}: {}", refusal.message);
        }
    }

    /// Changes the number of workers to `target`; `asked` says who asked, for the log line.
    pub(super) async fn scale(
        &mut self,
        target: Target,
        asked: &str,
    ) -> std::result::Result<Scaled, Refusal> {
        if self.stopping {
            return Err(Refusal::new(
                Refused::Stopping,
                "the cluster is shutting down",
            ));
        }
        if self.board.phase() != super::board::Phase::Running {
            return Err(Refusal::new(
                Refused::Conflict,
                "the cluster is starting: scale it once it is ready",
            ));
        }
        let from = self.options.workers;
        let to = match target {
            Target::To(n) => n,
            Target::By(delta) => {
                let to = i64::try_from(from)
                    .unwrap_or(i64::MAX)
                    .saturating_add(delta);
                usize::try_from(to.max(0)).unwrap_or(usize::MAX)
            }
        };
        let most = self.options.max_workers();
        let bounds = || format!("workers must be from 1 to {most}");
        if to == 0 {
            let said = match target {
                Target::By(delta) => format!("{from} {delta:+} would leave none"),
                Target::To(_) => "0 asked".to_owned(),
            };
            return Err(Refusal::new(
                Refused::Invalid,
                format!("{}: {said}, and a cluster needs at least one", bounds()),
            ));
        }
        if let Some(why) = self.options.too_many_workers(to) {
            return Err(Refusal::new(
                Refused::Invalid,
                format!("{}: {to} is {why}", bounds()),
            ));
        }
        let fit = crate::conns::fds::most_workers(
            self.descriptors.open_files,
            self.descriptors.monitor_connections,
        );
        if to > from && to > fit {
            // The master keeps descriptors for each worker beside the monitor's connections,
            // so that monitor clients can never keep a crashed worker from being replaced.
            return Err(Refusal::new(
                Refused::Invalid,
                format!(
                    "workers must be from 1 to {fit} here: the master's open-files limit ({}) \
                     holds no more beside the monitor's {} connections; raise it (`ulimit -n`, \
                     systemd's LimitNOFILE=) or lower --mon.max-connections",
                    self.descriptors.open_files, self.descriptors.monitor_connections
                ),
            ));
        }
        if to == from {
            tracing::info!("{asked}: already {to} workers");
            return Ok(Scaled { from, to });
        }
        if to < from && !self.deaths.is_empty() {
            return Err(Refusal::new(
                Refused::Conflict,
                "a replacement is queued or in progress (a rolling restart?): scale down once \
                 the death queue is empty (GET /workers shows it)",
            ));
        }
        let mut options = (*self.options).clone();
        options.workers = to;
        self.options = Arc::new(options);
        self.board.set_expected(to);
        tracing::info!(
            "{asked}: {} from {from} to {to} workers",
            if to > from { "growing" } else { "shrinking" }
        );
        lifecycle::publish(Event::Scaled { from, to });
        if to > from {
            if self.slots.len() < to {
                self.slots.resize_with(to, Slot::default);
            }
            // Every new worker asked for at once, as at start: the spawner threads start them
            // back to back while each is handed its hello here.
            let asked: Vec<_> = (from..to)
                .map(|slot| {
                    // A fresh worker id, whatever an earlier one of that number went through.
                    self.slots[slot] = Slot::default();
                    (slot, self.spawner.request(Kind::Worker(slot)))
                })
                .collect();
            for (slot, pending) in asked {
                self.spawned(slot, Spawn::Active, pending).await;
            }
        } else {
            // The newest first.
            for slot in (to..from).rev() {
                let s = &mut self.slots[slot];
                // A crashed one waiting to restart stays down.
                s.restart_at = None;
                if let Some(pid) = s.active.take() {
                    self.retire(pid).await;
                }
            }
        }
        self.publish();
        Ok(Scaled { from, to })
    }

    /// Stops a worker whose id was retired: it drains like any stopping worker, and is
    /// killed if it outlives `stop_timeout`.
    async fn retire(&mut self, pid: u32) {
        self.stop_worker(pid).await;
        let inputs = self.inputs.clone();
        let grace = self.options.stop_timeout + STOP_SLACK;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = inputs.send(Input::StopOverdue { pid, grace });
        });
    }

    /// A retired worker's time to drain is up: if it is still there, it is killed.
    pub(super) fn stop_overdue(&mut self, pid: u32, grace: Duration) {
        if let Some(proc) = self.procs.get(&pid) {
            if proc.expected_exit && !self.deaths.holds(pid) {
                tracing::warn!(
                    "worker {} (pid {pid}) did not stop within {} of being told to; killing it",
                    proc.slot,
                    crate::log::human(grace)
                );
                proc.child.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// Whether worker id `slot` is one of the cluster's now (not retired by a shrink).
    pub(super) fn is_live(&self, slot: usize) -> bool {
        slot < self.options.workers
    }
}
