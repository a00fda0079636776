//! What each worker reports to the master every `heartbeat_interval`. It is measured in
//! `worker::counting` (the request path) and `worker::reporter` (the rest).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One report from a worker. The master keeps the latest of each worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Heartbeat {
    /// The worker's pid.
    pub pid: u32,
    /// The worker's id.
    pub worker: usize,
    /// Time since the worker process started.
    pub uptime: Duration,
    /// CPU used over the last interval, in percent of one core (may exceed 100 with several
    /// runtime threads).
    pub cpu: f64,
    /// Resident memory, in bytes.
    pub memory: u64,
    /// Connections open on the shared port right now.
    pub open_connections: u64,
    /// Connections accepted on the shared port since start.
    pub total_connections: u64,
    /// Requests answered since the last heartbeat.
    pub transactions: u64,
    /// Summed time to the response head of those requests.
    pub durations: Duration,
    /// Requests per second over the last interval.
    pub tps: f64,
    /// Requests answered since start.
    pub total_transactions: u64,
    /// Summed time to the response head of every request since start.
    pub total_durations: Duration,
    /// 5xx responses since the last heartbeat.
    pub errors: u64,
    /// Handler panics since the last heartbeat (each answered with a 500).
    pub panics: u64,
    /// How late a short timer fired, at worst, over the last interval: how long the runtime
    /// was kept from running ready tasks.
    pub event_loop_lag: Duration,
    /// The time this heartbeat covers.
    pub cycle: Duration,
}
