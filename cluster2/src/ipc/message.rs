//! One message enum per direction. Every frame carries the protocol version
//! ([`PROTOCOL_VERSION`](super::frame::PROTOCOL_VERSION)), so a worker built from another
//! version of cluster2 is refused instead of misread: bump it whenever a message here changes
//! shape.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::options::Options;

/// From the master to one worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Always the first frame: everything a worker needs to start.
    Hello(Box<Hello>),
    /// Stop accepting, finish in-flight requests within `stop_timeout`, exit.
    Stop,
    /// Stop accepting new connections; keep serving the open ones and keep all state.
    Pause,
    /// Accept again after a pause.
    Resume,
    /// A user event for this worker.
    Event(WireEvent),
    /// Read (or, with `set`, update) a status registered in this worker.
    StatusQuery {
        id: u64,
        name: String,
        /// The new value, as JSON.
        set: Option<Vec<u8>>,
    },
    /// About this process's log lines.
    Logs(LogControl),
    /// Sample this process's CPU for `seconds`, then answer with `ProfileDone`.
    Profile {
        id: u64,
        seconds: u32,
        format: ProfileFormat,
    },
    /// The certificate and key the master read again (SIGHUP): new TLS handshakes use them.
    Tls(Box<crate::tls::Pem>),
}

/// What the master asks of a child's logging.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum LogControl {
    /// Start (`true`) or stop forwarding log lines to the master: someone started watching,
    /// or the last watcher left.
    Forward(bool),
    /// Replace the log filter (`RUST_LOG` syntax, already validated by the master); answered
    /// by `ToMaster::LogFilterSet` with the same `id`.
    SetFilter { id: u64, filter: String },
    /// Reopen the access log file (the master got SIGUSR1: `logrotate` moved it).
    ReopenAccessLog,
}

/// One log line, as a process forwards it while someone watches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogLine {
    pub(crate) level: LogLevel,
    pub(crate) target: String,
    pub(crate) message: String,
    /// The event's other fields, in the order they were written, each formatted as text.
    pub(crate) fields: Vec<(String, String)>,
    /// When the line was logged, in seconds since the Unix epoch.
    pub(crate) at_unix_secs: f64,
}

/// The level of a [`LogLine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// How a CPU profile is rendered, by the process that recorded it (only it can resolve its
/// own symbols).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ProfileFormat {
    /// An SVG flame graph.
    Svg,
    /// A pprof `Profile` message, uncompressed protobuf.
    Pprof,
}

/// Why a process has no profile to give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ProfileFailure {
    /// A profile of this process is already being recorded.
    Busy,
    /// Anything else, said for people.
    Failed(String),
}

/// A user event in transit. Its payload is JSON, self-describing, so that a listener decoding
/// into the wrong type gets an error rather than a plausible wrong value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireEvent {
    pub(crate) name: String,
    /// Pid of the process that emitted it.
    pub(crate) from: u32,
    pub(crate) payload: Vec<u8>,
}

/// Where a worker asks the master to deliver an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireTarget {
    Master,
    Pid(u32),
    AllWorkers,
}

/// What the master tells a new worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) worker_id: usize,
    pub(crate) options: Options,
    pub(crate) app_args: Vec<String>,
    /// Where the cache manager listens, when the cache is enabled.
    pub(crate) cache_socket: Option<std::path::PathBuf>,
    /// An extra worker started for debugging ("debug new"): it logs with this filter and
    /// forwards its lines from its very first one, and it does not accept on the shared port
    /// until the master releases it.
    pub(crate) debug_new: Option<String>,
    /// This worker's seat at the connection-balance table (`crate::balance`), inherited at
    /// `BALANCE_FD`; `None` when the worker accepts without taking turns.
    pub(crate) balance_seat: Option<u32>,
    /// The certificate and key the application port serves TLS with, as the master read and
    /// checked them; `None` without TLS.
    pub(crate) tls: Option<crate::tls::Pem>,
}

/// From a worker to the master.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToMaster {
    /// The warm-up listener is up on this address.
    Warming { addr: SocketAddr },
    /// Start-up failed; the worker exits next.
    StartFailed { stage: StartStage, error: String },
    /// The worker is accepting on the shared application port.
    Listening,
    /// The worker answered its first request on the shared port.
    Served,
    /// The worker cannot take new connections on the shared port (accept fails, or every
    /// allowed connection is busy), and why; it says `Accepting` once it can again.
    CannotAccept { why: String },
    /// The worker takes new connections again.
    Accepting,
    /// A user event to deliver to `targets`.
    Emit {
        event: WireEvent,
        targets: Vec<WireTarget>,
    },
    /// Every status name registered in the worker (sent whenever the set changes).
    StatusNames(Vec<String>),
    /// The answer to a `StatusQuery`: the view as JSON, or why there is none.
    StatusReply {
        id: u64,
        result: Result<Vec<u8>, String>,
    },
    /// The answer to `Profile`: the rendered profile, at most a frame's worth of bytes.
    ProfileDone {
        id: u64,
        result: Result<Vec<u8>, ProfileFailure>,
    },
    /// The worker's periodic report.
    Heartbeat(Box<crate::heartbeat::Heartbeat>),
    /// The worker stopped accepting (answer to `Pause`).
    Paused,
    /// The worker accepts again (answer to `Resume`).
    Resumed,
    /// Log lines, while the master asked for them, and how many were dropped since the last
    /// batch because the buffer was full.
    Logs { lines: Vec<LogLine>, dropped: u64 },
    /// The answer to `LogControl::SetFilter`: done, or why not.
    LogFilterSet { id: u64, result: Result<(), String> },
}

/// The step of a worker's start-up that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StartStage {
    ConfigureApp,
    WarmUpListener,
    WarmUp,
}

impl std::fmt::Display for StartStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ConfigureApp => "configure_app",
            Self::WarmUpListener => "warm-up listener",
            Self::WarmUp => "warm-up",
        })
    }
}
