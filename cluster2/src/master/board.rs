//! What the master publishes about the cluster for the monitor to read: each worker's state
//! and latest heartbeat, the death queue, the cluster's phase, and the totals of workers that
//! are gone.
//!
//! The supervisor is the only writer (through the `pub(super)` methods); readers get copies
//! through typed methods and never see a lock. Nothing here decides anything.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::heartbeat::Heartbeat;
use crate::lifecycle::ReplaceReason;

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub(crate) enum WorkerState {
    /// Spawned; building its app.
    Starting,
    /// Serving its warm-up listener and running the warm-up.
    Warming,
    /// Accepting on the shared port.
    Listening,
    /// Not accepting new connections, on request; keeps its state.
    Paused,
    /// Told to stop; finishing in-flight requests.
    Stopping,
}

impl WorkerState {
    /// Every state, for views that list them all (a gauge per state).
    pub(crate) const ALL: [WorkerState; 5] = [
        WorkerState::Starting,
        WorkerState::Warming,
        WorkerState::Listening,
        WorkerState::Paused,
        WorkerState::Stopping,
    ];

    /// The name used in JSON and metrics labels.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Warming => "warming",
            WorkerState::Listening => "listening",
            WorkerState::Paused => "paused",
            WorkerState::Stopping => "stopping",
        }
    }
}

/// What the monitor shows about one worker process; ages are computed when it is read.
#[derive(Clone, Debug)]
pub(crate) struct WorkerInfo {
    pub(crate) id: usize,
    pub(crate) pid: u32,
    pub(crate) state: WorkerState,
    pub(crate) spawned_at: Instant,
    pub(crate) warm_up_addr: Option<SocketAddr>,
    pub(crate) restarts: u64,
    pub(crate) crash_streak: u32,
    pub(crate) successor_of: Option<u32>,
    pub(crate) heartbeat: Option<(Heartbeat, Instant)>,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
    /// Kept out of traffic for debugging, and why.
    pub(crate) debugging: Option<Debugging>,
    /// Why it cannot take new connections, while it cannot.
    pub(crate) cannot_accept: Option<String>,
}

/// Why a worker is out of traffic for debugging (`"debugging"` in `/workers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Debugging {
    /// A debug session: replaced by a successor, kept alive to be inspected until it ends.
    Session,
    /// "Debug new": an extra worker held out of traffic from its start, until released into
    /// traffic or dismissed.
    New,
}

/// Where the cluster as a whole is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the initial workers.
    #[default]
    Starting,
    /// Every initial worker was listening once.
    Running,
    /// Stopping.
    ShuttingDown,
}

impl Phase {
    /// The name the monitor shows.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::ShuttingDown => "shutting_down",
        }
    }
}

/// Counters that never go backwards: what workers that are gone had reported, and how many
/// restarts and replacements the cluster has seen.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) requests: u64,
    pub(crate) request_seconds: f64,
    /// Requests by time to the response head, as `Heartbeat::request_duration_buckets` (the
    /// cluster's `metrics.buckets`, then `+Inf`; zeros beyond).
    pub(crate) request_buckets: Vec<u64>,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
    /// Access log lines the workers dropped.
    pub(crate) access_log_dropped: u64,
    pub(crate) restarts: u64,
    pub(crate) replacements: u64,
    /// Worker exits the master did not ask for.
    pub(crate) crashes: u64,
}

/// One entry of the death queue, as shown (`/workers`, the `death_queue` status).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct QueuedReplacement {
    /// The worker id.
    pub(crate) worker: usize,
    /// The process to replace.
    pub(crate) pid: u32,
    /// Why, as the lifecycle events say it.
    pub(crate) reason: ReplaceReason,
    /// Whether this one is in progress (the head of the queue).
    pub(crate) in_progress: bool,
    /// The successor being started, while in progress.
    pub(crate) successor: Option<u32>,
    /// Which try the successor is (from 1; 0 while waiting), of `death_queue.retries`.
    pub(crate) attempt: u32,
}

/// How far back the history of each worker's figures goes (the debug page's charts).
pub(crate) const HISTORY_SPAN: Duration = Duration::from_secs(600);
/// The most samples kept per worker, whatever the heartbeat interval: a bound on memory.
const HISTORY_SAMPLES: usize = 1200;

/// One heartbeat's figures, as charted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Sample {
    pub(crate) at_unix_secs: f64,
    pub(crate) requests_per_second: f64,
    pub(crate) cpu_percent: f64,
    pub(crate) memory_bytes: u64,
    pub(crate) open_connections: u64,
    pub(crate) event_loop_lag_secs: f64,
}

impl Sample {
    pub(crate) fn of(beat: &Heartbeat) -> Self {
        Self {
            at_unix_secs: crate::lifecycle::unix_now(),
            requests_per_second: beat.requests_per_second,
            cpu_percent: beat.cpu_percent,
            memory_bytes: beat.memory_bytes,
            open_connections: beat.open_connections,
            event_loop_lag_secs: beat.event_loop_lag.as_secs_f64(),
        }
    }
}

/// The workers and the death queue at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) workers: Vec<WorkerInfo>,
    pub(crate) death_queue: Vec<QueuedReplacement>,
}

/// The master's published state.
#[derive(Debug, Default)]
pub(crate) struct Board {
    current: RwLock<Snapshot>,
    /// How many workers the cluster runs: the `workers` option, changed by scaling.
    expected: std::sync::atomic::AtomicUsize,
    /// `ecv.min_workers`: fewer serving workers (of `established` at most) are a reason to be
    /// down.
    min_workers: std::sync::atomic::AtomicUsize,
    /// Worker ids of `0..expected` that have served since they were made: a growth's new ids
    /// count once they listen, so that a growth never takes the ECV down.
    established: std::sync::atomic::AtomicUsize,
    phase: RwLock<Phase>,
    /// An initial worker failed its warm-up.
    warm_up_failed: RwLock<bool>,
    totals: Mutex<Totals>,
    /// The last [`HISTORY_SPAN`] of each live worker's heartbeats, by pid.
    history: Mutex<BTreeMap<u32, VecDeque<Sample>>>,
    /// The end of the served TLS certificate's validity, in unix seconds.
    tls_not_after: RwLock<Option<i64>>,
}

impl Board {
    /// The workers and the death queue, as last published.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.current.read().expect("board lock").clone()
    }

    /// Counters that include the workers that are gone.
    pub(crate) fn totals(&self) -> Totals {
        self.totals.lock().expect("board lock").clone()
    }

    /// How many workers the cluster runs now (worker ids `0..expected`).
    pub(crate) fn expected(&self) -> usize {
        self.expected.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn set_min_workers(&self, workers: usize) {
        self.min_workers
            .store(workers, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn set_established(&self, workers: usize) {
        self.established
            .store(workers, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn set_expected(&self, workers: usize) {
        self.expected
            .store(workers, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the TLS certificate served now expires (unix seconds); `None` without TLS.
    pub(crate) fn tls_not_after(&self) -> Option<i64> {
        *self.tls_not_after.read().expect("board lock")
    }

    pub(super) fn set_tls_not_after(&self, not_after: Option<i64>) {
        *self.tls_not_after.write().expect("board lock") = not_after;
    }

    pub(crate) fn phase(&self) -> Phase {
        *self.phase.read().expect("board lock")
    }

    /// Why the cluster should not take traffic, whatever the ECV mode says: among the
    /// reasons, fewer than `ecv.min_workers` can take new connections (of the worker ids that
    /// served since they were made, at most: a growth or a shrink never takes it down, a crash
    /// can).
    pub(crate) fn gate(&self) -> Option<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let needed = self
            .min_workers
            .load(Relaxed)
            .min(self.established.load(Relaxed));
        // Listening workers, those of them that can take a connection, and why one cannot.
        let (mut serving, mut accepting, mut stalled) = (0, 0, None);
        for w in &self.current.read().expect("board lock").workers {
            if w.state == WorkerState::Listening {
                serving += 1;
                match &w.cannot_accept {
                    None => accepting += 1,
                    Some(why) => stalled = stalled.or_else(|| Some(why.clone())),
                }
            }
        }
        match self.phase() {
            Phase::ShuttingDown => Some("shutting down".to_owned()),
            Phase::Starting if *self.warm_up_failed.read().expect("board lock") => {
                Some("warm-up failed".to_owned())
            }
            Phase::Starting => Some("starting".to_owned()),
            Phase::Running if serving == 0 => Some("no worker alive".to_owned()),
            Phase::Running if accepting == 0 => Some(format!(
                "no worker can take new connections: {}",
                stalled.unwrap_or_default()
            )),
            Phase::Running if accepting < needed => Some(format!(
                "{accepting} of {} workers can take new connections (ecv.min_workers = {})",
                self.expected(),
                self.min_workers.load(Relaxed)
            )),
            Phase::Running => None,
        }
    }

    /// Every worker, in pid order.
    pub(super) fn set_workers(&self, workers: Vec<WorkerInfo>) {
        self.current.write().expect("board lock").workers = workers;
    }

    /// Replaces the entry of `worker.pid`; `false` if there is none (nothing is changed).
    pub(super) fn set_worker(&self, worker: WorkerInfo) -> bool {
        let mut current = self.current.write().expect("board lock");
        match current.workers.binary_search_by_key(&worker.pid, |w| w.pid) {
            Ok(i) => {
                current.workers[i] = worker;
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn set_death_queue(&self, queue: Vec<QueuedReplacement>) {
        self.current.write().expect("board lock").death_queue = queue;
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        *self.phase.write().expect("board lock") = phase;
    }

    pub(super) fn note_warm_up_failed(&self) {
        *self.warm_up_failed.write().expect("board lock") = true;
    }

    pub(super) fn warm_up_failed(&self) -> bool {
        *self.warm_up_failed.read().expect("board lock")
    }

    /// Adds what a worker that is gone had counted.
    pub(super) fn retire(&self, heartbeat: Option<&Heartbeat>, errors: u64, panics: u64) {
        let mut totals = self.totals.lock().expect("board lock");
        if let Some(beat) = heartbeat {
            totals.requests += beat.requests_total;
            totals.request_seconds += beat.request_duration_total.as_secs_f64();
            // Every worker of a cluster counts the same buckets (`metrics.buckets`, at most
            // 32 and `+Inf`): the totals take the first heartbeat's length.
            let buckets = &beat.request_duration_buckets;
            if totals.request_buckets.len() < buckets.len() {
                totals.request_buckets.resize(buckets.len(), 0);
            }
            for (total, n) in totals.request_buckets.iter_mut().zip(buckets) {
                *total += n;
            }
            totals.access_log_dropped += beat.access_log_dropped_total;
        }
        totals.errors += errors;
        totals.panics += panics;
    }

    /// Every live worker's recent figures, oldest first.
    pub(crate) fn history(&self) -> BTreeMap<u32, Vec<Sample>> {
        let history = self.history.lock().expect("board lock");
        history
            .iter()
            .map(|(pid, samples)| (*pid, samples.iter().copied().collect()))
            .collect()
    }

    /// Records a heartbeat's figures, forgetting what is older than the span.
    pub(super) fn record(&self, pid: u32, sample: Sample) {
        let mut history = self.history.lock().expect("board lock");
        let samples = history.entry(pid).or_default();
        let oldest = sample.at_unix_secs - HISTORY_SPAN.as_secs_f64();
        while samples
            .front()
            .is_some_and(|s| s.at_unix_secs < oldest || samples.len() >= HISTORY_SAMPLES)
        {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Forgets a worker that is gone.
    pub(super) fn forget(&self, pid: u32) {
        self.history.lock().expect("board lock").remove(&pid);
    }

    pub(super) fn count_restart(&self) {
        self.totals.lock().expect("board lock").restarts += 1;
    }

    pub(super) fn count_crash(&self) {
        self.totals.lock().expect("board lock").crashes += 1;
    }

    pub(super) fn count_replacement(&self) {
        self.totals.lock().expect("board lock").replacements += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64) -> Sample {
        Sample {
            at_unix_secs: at,
            requests_per_second: 1.0,
            cpu_percent: 0.0,
            memory_bytes: 0,
            open_connections: 0,
            event_loop_lag_secs: 0.0,
        }
    }

    fn worker(pid: u32, errors: u64) -> WorkerInfo {
        WorkerInfo {
            id: 0,
            pid,
            state: WorkerState::Listening,
            spawned_at: Instant::now(),
            warm_up_addr: None,
            restarts: 0,
            crash_streak: 0,
            successor_of: None,
            heartbeat: None,
            errors,
            panics: 0,
            debugging: None,
            cannot_accept: None,
        }
    }

    #[test]
    fn one_worker_is_replaced_in_place_and_an_unknown_one_changes_nothing() {
        let board = Board::default();
        board.set_workers(vec![worker(5, 0), worker(9, 0), worker(12, 0)]);
        assert!(board.set_worker(worker(9, 3)));
        assert!(!board.set_worker(worker(7, 1)));
        let shown: Vec<(u32, u64)> = board
            .snapshot()
            .workers
            .iter()
            .map(|w| (w.pid, w.errors))
            .collect();
        assert_eq!(shown, [(5, 0), (9, 3), (12, 0)]);
    }

    #[test]
    fn history_keeps_the_span_and_a_bounded_count() {
        let board = Board::default();
        let span = HISTORY_SPAN.as_secs_f64();
        board.record(7, sample(1000.0));
        board.record(7, sample(1000.0 + span / 2.0));
        board.record(7, sample(1000.0 + span + 1.0));
        // The first sample is older than the span at the third.
        assert_eq!(board.history()[&7].len(), 2);
        for i in 0..HISTORY_SAMPLES * 2 {
            board.record(8, sample(5000.0 + i as f64 * 0.001));
        }
        assert_eq!(board.history()[&8].len(), HISTORY_SAMPLES);
        board.forget(7);
        assert!(!board.history().contains_key(&7));
    }
}
