//! The cluster's life as typed data: every lifecycle event the master sees, in order, kept in a
//! bounded journal and handed to whoever subscribes.
//!
//! The master is the only writer. The monitor's `/events` stream, the tests and the
//! application (in the master, through [`subscribe`]) read it; log lines are written for people
//! beside it and say the same thing.
//!
//! ```no_run
//! # async fn demo() -> cluster2::Result<()> {
//! use cluster2::lifecycle::{self, Event};
//!
//! let mut events = lifecycle::subscribe()?; // in the master, e.g. in `main`
//! while let Some(record) = events.next().await {
//!     if let Event::Exited { worker, pid, exit, expected: false } = &record.event {
//!         eprintln!("worker {worker} (pid {pid}) crashed: {exit}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The journal keeps the last [`JOURNAL_CAPACITY`] events. A subscriber that falls further
//! behind than that skips the oldest it has not read and can tell from the sequence numbers
//! ([`Record::seq`] is consecutive) and [`Subscription::missed`].

mod journal;

pub use journal::{JOURNAL_CAPACITY, Record, Subscription, subscribe};
pub(crate) use journal::{Journal, publish, unix_now};

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use serde::Serialize;

use crate::log::human_secs;

/// One thing that happened to the cluster.
///
/// Serialized (on the monitor's `/events`) as an object whose `event` field names the variant in
/// snake case, beside the variant's fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The master bound its ports and is starting the workers.
    Starting {
        /// The application's address (`0.0.0.0:0` on a Unix socket).
        app: SocketAddr,
        /// The monitor's address.
        monitor: SocketAddr,
        /// How many workers it starts.
        workers: usize,
    },
    /// Every initial worker is serving; the master's `main` runs next.
    Ready {
        /// The pids of the serving workers, by worker id.
        workers: Vec<u32>,
    },
    /// A worker process was started for worker id `worker`.
    Spawned {
        /// The worker id (its slot, `0..workers`).
        worker: usize,
        /// The new process.
        pid: u32,
        /// The process it will replace once it serves, in a replacement.
        successor_of: Option<u32>,
    },
    /// The worker built its app and runs its warm-up on a private listener.
    Warming {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
        /// Its private warm-up listener.
        addr: SocketAddr,
    },
    /// A worker's start-up failed (`configure_app` or the warm-up); it exits next.
    StartFailed {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
        /// Which step failed.
        stage: String,
        /// What it said.
        error: String,
    },
    /// A worker accepts on the shared port.
    Listening {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
    },
    /// A worker answered its first request: if it crashes from now on, it is replaced at once.
    Served {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
    },
    /// A worker cannot take new connections: accept fails (out of descriptors or memory), or
    /// its `max_connections` are open and busy. While no worker can, the ECV is down.
    CannotAccept {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
        /// Why, as the worker says it.
        why: String,
    },
    /// A worker that could not take new connections takes them again.
    Accepting {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
    },
    /// A worker stopped accepting new connections, on request.
    Paused {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
    },
    /// A paused worker accepts again.
    Resumed {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
    },
    /// A worker was told to stop and finishes its in-flight requests.
    Stopping {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
    },
    /// A worker process ended.
    Exited {
        /// The worker id.
        worker: usize,
        /// The process.
        pid: u32,
        /// How it ended.
        exit: Exit,
        /// Whether the master asked it to go (a replacement or a stop); otherwise a crash.
        expected: bool,
    },
    /// A crashed worker will be started again after a delay (its crash streak's back-off).
    RestartScheduled {
        /// The worker id.
        worker: usize,
        /// The back-off, in seconds (0: at once).
        delay_secs: f64,
        /// Crashes in a row of this worker id.
        crash_streak: u32,
    },
    /// A worker was queued for replacement (one replacement runs at a time).
    Queued {
        /// The worker id.
        worker: usize,
        /// The process to replace.
        pid: u32,
        /// Why.
        reason: ReplaceReason,
    },
    /// The replacement of a worker started: its successor is being started.
    Replacing {
        /// The worker id.
        worker: usize,
        /// The process to replace.
        pid: u32,
        /// Why.
        reason: ReplaceReason,
    },
    /// A successor failed (crashed, failed its warm-up, or was not ready in time); the old
    /// worker keeps serving and another successor is tried unless `tries` were used up.
    SuccessorFailed {
        /// The worker id.
        worker: usize,
        /// The process being replaced.
        pid: u32,
        /// Which try failed (from 1).
        attempt: u32,
        /// How many tries are allowed (`death_queue.retries`).
        tries: u32,
        /// What went wrong.
        why: String,
    },
    /// The successor serves; the old worker is told to stop.
    SuccessorReady {
        /// The worker id.
        worker: usize,
        /// The process being replaced.
        pid: u32,
        /// The successor.
        successor: u32,
    },
    /// A replacement finished: the old process is gone and its successor serves.
    Replaced {
        /// The worker id.
        worker: usize,
        /// The process that was replaced.
        pid: u32,
        /// The process that serves now.
        successor: Option<u32>,
        /// Why it was replaced.
        reason: ReplaceReason,
        /// How long the replacement took, in seconds.
        took_secs: f64,
    },
    /// A replacement was given up after every successor failed; the old worker keeps serving.
    ReplacementFailed {
        /// The worker id.
        worker: usize,
        /// The process that keeps serving.
        pid: u32,
        /// Why the last successor failed.
        why: String,
    },
    /// A worker's successor serves and the worker stays, out of traffic, for a debug session.
    DebugSessionStarted {
        /// The worker id it had.
        worker: usize,
        /// The process being debugged.
        pid: u32,
    },
    /// A debug session ended; its worker is stopped.
    DebugSessionEnded {
        /// The worker id it had.
        worker: usize,
        /// The process that was debugged.
        pid: u32,
    },
    /// An extra worker was started for debugging ("debug new"), held out of traffic; its log
    /// lines are kept from its very first one for whoever watches it.
    DebugWorkerStarted {
        /// The worker id whose place it takes if it is released.
        worker: usize,
        /// The extra process.
        pid: u32,
        /// The log filter it runs with.
        filter: String,
    },
    /// A debug worker was released into traffic: it serves as worker id `worker` and the
    /// process that served that id (if any) drains and stops.
    DebugWorkerReleased {
        /// The worker id it serves as now.
        worker: usize,
        /// The released process.
        pid: u32,
        /// The process it took over from, told to stop.
        replaced: Option<u32>,
    },
    /// A debug worker was dismissed without serving; it is stopped.
    DebugWorkerDismissed {
        /// The worker id it was held for.
        worker: usize,
        /// The dismissed process.
        pid: u32,
    },
    /// The number of workers changed at run time (`POST /workers/scale`, SIGTTIN, SIGTTOU):
    /// new worker ids start and warm up, or the highest ones drain and stop; each one's
    /// events follow.
    Scaled {
        /// The number of workers before.
        from: usize,
        /// The number now (the worker ids are `0..to`).
        to: usize,
    },
    /// The ECV changed between up and down.
    Ecv {
        /// Whether it is up now.
        up: bool,
        /// Why.
        reason: String,
    },
    /// The cache manager serves (`pid` is `None` when it runs inside the master).
    CacheManagerUp {
        /// Its process, when standalone.
        pid: Option<u32>,
        /// Its socket.
        socket: PathBuf,
    },
    /// The standalone cache manager process ended; it is restarted unless the cluster stops.
    CacheManagerDown {
        /// Its process.
        pid: u32,
        /// How it ended.
        exit: Exit,
        /// The delay before it is started again, in seconds; `None` while the cluster stops.
        restart_in_secs: Option<f64>,
    },
    /// The cluster is stopping.
    ShuttingDown {
        /// Why (the signal, or what failed).
        why: String,
    },
    /// Every process of the cluster is gone; the master exits next.
    Stopped,
}

/// Why a worker is replaced.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplaceReason {
    /// It has been up longer than `max_age`.
    OldAge {
        /// How long it was up, in seconds.
        uptime_secs: f64,
        /// The `max_age` option, in seconds.
        max_age_secs: f64,
    },
    /// It answered its `max_requests` plus its jitter
    /// ([`max_requests`](crate::robustness::max_requests)).
    MaxRequests {
        /// The requests it had answered since it started.
        requests_total: u64,
        /// Its limit: `max_requests` plus the jitter drawn for it.
        limit: u64,
    },
    /// Its resident memory reached `max_memory` ([`max_memory`](crate::robustness::max_memory)).
    MaxMemory {
        /// Its resident memory at the last heartbeat, in bytes.
        memory_bytes: u64,
        /// The `max_memory` option, in bytes.
        limit_bytes: u64,
    },
    /// The degradation heuristic ([`AssertDegraded`](crate::robustness::AssertDegraded)).
    Degraded {
        /// Its requests per second at the last heartbeat.
        requests_per_second: f64,
    },
    /// The application's own `#[should_kill]` decided.
    ShouldKill,
    /// It sent no heartbeat for longer than `nanny.tolerance` (a runaway).
    Runaway {
        /// How long it had been silent, in seconds.
        silent_secs: f64,
    },
    /// An operator asked (`POST /workers/{pid}/replace` or [`master::replace`](crate::master::replace)).
    Operator,
    /// An operator started a debug session on it (`POST /debug/workers/{pid}/session`): it is
    /// replaced and kept out of traffic until the session ends.
    DebugSession,
    /// A rolling restart (SIGHUP, `POST /workers/restart` or
    /// [`master::rolling_restart`](crate::master::rolling_restart)).
    RollingRestart {
        /// Whether SIGHUP asked for it.
        sighup: bool,
    },
}

impl fmt::Display for ReplaceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OldAge {
                uptime_secs,
                max_age_secs,
            } => write!(
                f,
                "old: up {}, max_age {}",
                human_secs(*uptime_secs),
                human_secs(*max_age_secs)
            ),
            Self::MaxRequests {
                requests_total,
                limit,
            } => write!(
                f,
                "max_requests: answered {requests_total} requests, its limit {limit}"
            ),
            Self::MaxMemory {
                memory_bytes,
                limit_bytes,
            } => write!(
                f,
                "max_memory: {:.1} MiB resident, max_memory {}",
                *memory_bytes as f64 / f64::from(1u32 << 20),
                cluster2_options_schema::format_size(*limit_bytes)
            ),
            Self::Degraded {
                requests_per_second,
            } => write!(
                f,
                "degraded: {requests_per_second:.1} requests/s, more than 10% below its peak, \
                 while CPU, memory and event-loop lag rose"
            ),
            Self::ShouldKill => f.write_str("should_kill decided"),
            Self::Runaway { silent_secs } => {
                write!(f, "runaway: no heartbeat for {}", human_secs(*silent_secs))
            }
            Self::Operator => f.write_str("replace requested"),
            Self::DebugSession => f.write_str("debug session"),
            Self::RollingRestart { sighup: true } => f.write_str("rolling restart (SIGHUP)"),
            Self::RollingRestart { sighup: false } => f.write_str("rolling restart requested"),
        }
    }
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Exit {
    /// Its exit status, if it exited.
    pub status: Option<i32>,
    /// The number of the signal that ended it, if one did.
    pub signal: Option<i32>,
    /// That signal's name (`SIGKILL`, …).
    pub signal_name: Option<String>,
    /// What the status means when cluster2 set it (`stopped`, `main failed`, …); for a
    /// worker whose start-up failed, what it reported (`warm-up failed: <its error>`).
    pub meaning: Option<String>,
}

impl Exit {
    pub(crate) fn from_wait(status: &std::io::Result<std::process::ExitStatus>) -> Self {
        match status {
            Err(e) => Self {
                status: None,
                signal: None,
                signal_name: None,
                meaning: Some(format!("could not be waited for ({e})")),
            },
            Ok(s) => Self {
                status: s.code(),
                signal: s.signal(),
                signal_name: s.signal().map(|sig| {
                    nix::sys::signal::Signal::try_from(sig)
                        .map_or("unknown", nix::sys::signal::Signal::as_str)
                        .to_owned()
                }),
                meaning: s.code().and_then(crate::exit::meaning).map(str::to_owned),
            },
        }
    }
}

impl Exit {
    /// The exit of a worker that reported why its start-up failed, explained by that report
    /// (`warm-up failed: cache not primed`) rather than by the status alone (`start-up
    /// failed`); any other exit as it is.
    pub(crate) fn explained_by(mut self, start_failure: Option<&str>) -> Self {
        if let (Some(failure), Some(status)) = (start_failure, self.status) {
            if status == i32::from(crate::exit::START_FAILED) {
                self.meaning = Some(failure.to_owned());
            }
        }
        self
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.status, &self.signal, &self.meaning) {
            (Some(code), _, Some(meaning)) => write!(f, "exited with status {code} ({meaning})"),
            (Some(code), _, None) => write!(f, "exited with status {code}"),
            (None, Some(signal), _) => write!(
                f,
                "was killed by signal {signal} ({})",
                self.signal_name.as_deref().unwrap_or("unknown")
            ),
            (None, None, Some(meaning)) => f.write_str(meaning),
            (None, None, None) => f.write_str("exited"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_name_and_fields() {
        let record = Record {
            seq: 7,
            at_unix_secs: 1.5,
            event: Event::Queued {
                worker: 1,
                pid: 42,
                reason: ReplaceReason::Runaway { silent_secs: 3.0 },
            },
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "seq": 7, "at_unix_secs": 1.5, "event": "queued", "worker": 1, "pid": 42,
                "reason": { "kind": "runaway", "silent_secs": 3.0 }
            })
        );
    }

    /// The rows of the table after `<!-- marker -->` in the monitor API's documentation: the
    /// first column, and the names in backticks in the second.
    fn documented(marker: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        let doc = include_str!("../../docs/monitor-api.md");
        let start = doc
            .find(&format!("<!-- {marker} -->"))
            .unwrap_or_else(|| panic!("no `{marker}` table in docs/monitor-api.md"));
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        doc[start..]
            .lines()
            .skip(3) // the marker, the head and the rule
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                (ticked(cells[1]).remove(0), ticked(cells[2]))
            })
            .collect()
    }

    /// The JSON keys of `value` but the ones every record or reason has.
    fn own_keys(value: &serde_json::Value, but: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !but.contains(&k.as_str()))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// One of each event, and the documentation's table of events lists exactly those kinds
    /// with exactly their fields.
    #[test]
    fn the_documented_events_are_the_ones_served() {
        let exit = Exit {
            status: Some(0),
            signal: None,
            signal_name: None,
            meaning: Some("stopped".into()),
        };
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let reason = ReplaceReason::Operator;
        let (worker, pid) = (0, 1);
        let all = [
            Event::Starting {
                app: addr,
                monitor: addr,
                workers: 1,
            },
            Event::Ready { workers: vec![1] },
            Event::Spawned {
                worker,
                pid,
                successor_of: None,
            },
            Event::Warming { worker, pid, addr },
            Event::StartFailed {
                worker,
                pid,
                stage: "warm-up".into(),
                error: "x".into(),
            },
            Event::Listening { worker, pid },
            Event::Paused { worker, pid },
            Event::Resumed { worker, pid },
            Event::Stopping { worker, pid },
            Event::Exited {
                worker,
                pid,
                exit: exit.clone(),
                expected: true,
            },
            Event::RestartScheduled {
                worker,
                delay_secs: 0.0,
                crash_streak: 1,
            },
            Event::Queued {
                worker,
                pid,
                reason: reason.clone(),
            },
            Event::Replacing {
                worker,
                pid,
                reason: reason.clone(),
            },
            Event::SuccessorFailed {
                worker,
                pid,
                attempt: 1,
                tries: 1,
                why: "x".into(),
            },
            Event::SuccessorReady {
                worker,
                pid,
                successor: 2,
            },
            Event::Replaced {
                worker,
                pid,
                successor: Some(2),
                reason,
                took_secs: 0.1,
            },
            Event::ReplacementFailed {
                worker,
                pid,
                why: "x".into(),
            },
            Event::DebugSessionStarted { worker, pid },
            Event::DebugSessionEnded { worker, pid },
            Event::Served { worker, pid },
            Event::CannotAccept {
                worker,
                pid,
                why: "x".into(),
            },
            Event::Accepting { worker, pid },
            Event::DebugWorkerStarted {
                worker,
                pid,
                filter: "debug".into(),
            },
            Event::DebugWorkerReleased {
                worker,
                pid,
                replaced: Some(pid),
            },
            Event::DebugWorkerDismissed { worker, pid },
            Event::Scaled { from: 2, to: 3 },
            Event::Ecv {
                up: true,
                reason: "x".into(),
            },
            Event::CacheManagerUp {
                pid: None,
                socket: "/x".into(),
            },
            Event::CacheManagerDown {
                pid,
                exit: exit.clone(),
                restart_in_secs: None,
            },
            Event::ShuttingDown { why: "x".into() },
            Event::Stopped,
        ];
        // A new variant does not compile here until it is added above (and documented).
        for event in &all {
            match event {
                Event::Starting { .. }
                | Event::Ready { .. }
                | Event::Spawned { .. }
                | Event::Warming { .. }
                | Event::StartFailed { .. }
                | Event::Listening { .. }
                | Event::Paused { .. }
                | Event::Resumed { .. }
                | Event::Stopping { .. }
                | Event::Exited { .. }
                | Event::RestartScheduled { .. }
                | Event::Queued { .. }
                | Event::Replacing { .. }
                | Event::SuccessorFailed { .. }
                | Event::SuccessorReady { .. }
                | Event::Replaced { .. }
                | Event::ReplacementFailed { .. }
                | Event::DebugSessionStarted { .. }
                | Event::DebugSessionEnded { .. }
                | Event::Served { .. }
                | Event::CannotAccept { .. }
                | Event::Accepting { .. }
                | Event::DebugWorkerStarted { .. }
                | Event::DebugWorkerReleased { .. }
                | Event::DebugWorkerDismissed { .. }
                | Event::Scaled { .. }
                | Event::Ecv { .. }
                | Event::CacheManagerUp { .. }
                | Event::CacheManagerDown { .. }
                | Event::ShuttingDown { .. }
                | Event::Stopped => {}
            }
        }
        let served: std::collections::BTreeMap<String, Vec<String>> = all
            .iter()
            .map(|event| {
                let json = serde_json::to_value(event).unwrap();
                let kind = json["event"].as_str().unwrap().to_owned();
                let mut fields = own_keys(&json, &["event"]);
                fields.sort();
                (kind, fields)
            })
            .collect();
        let mut doc = documented("events");
        doc.values_mut().for_each(|fields| fields.sort());
        assert_eq!(doc, served);

        let reasons = [
            ReplaceReason::OldAge {
                uptime_secs: 1.0,
                max_age_secs: 1.0,
            },
            ReplaceReason::MaxRequests {
                requests_total: 1,
                limit: 1,
            },
            ReplaceReason::MaxMemory {
                memory_bytes: 1,
                limit_bytes: 1,
            },
            ReplaceReason::Degraded {
                requests_per_second: 1.0,
            },
            ReplaceReason::ShouldKill,
            ReplaceReason::Runaway { silent_secs: 1.0 },
            ReplaceReason::Operator,
            ReplaceReason::DebugSession,
            ReplaceReason::RollingRestart { sighup: true },
        ];
        for reason in &reasons {
            match reason {
                ReplaceReason::OldAge { .. }
                | ReplaceReason::MaxRequests { .. }
                | ReplaceReason::MaxMemory { .. }
                | ReplaceReason::Degraded { .. }
                | ReplaceReason::ShouldKill
                | ReplaceReason::Runaway { .. }
                | ReplaceReason::Operator
                | ReplaceReason::DebugSession
                | ReplaceReason::RollingRestart { .. } => {}
            }
        }
        let served: std::collections::BTreeMap<String, Vec<String>> = reasons
            .iter()
            .map(|reason| {
                let json = serde_json::to_value(reason).unwrap();
                let kind = json["kind"].as_str().unwrap().to_owned();
                (kind, own_keys(&json, &["kind"]))
            })
            .collect();
        let mut doc = documented("reasons");
        doc.values_mut().for_each(|fields| fields.sort());
        assert_eq!(doc, served);

        let doc: Vec<String> = documented("fields: exit").into_keys().collect();
        assert_eq!(doc, own_keys(&serde_json::to_value(&exit).unwrap(), &[]));
    }

    #[test]
    fn exits_read_as_people_write_them() {
        let killed = Exit {
            status: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
            meaning: None,
        };
        assert_eq!(killed.to_string(), "was killed by signal 9 (SIGKILL)");
        let failed = Exit {
            status: Some(3),
            signal: None,
            signal_name: None,
            meaning: crate::exit::meaning(3).map(str::to_owned),
        };
        assert_eq!(failed.to_string(), "exited with status 3 (start-up failed)");
    }
}
