//! What the user asked for: every option, its default, and the checks that involve two options.
//! What each option is (its kind, range, help) is the shared schema, `cluster2-options-schema`;
//! this module holds the typed result of reading it.
//!
//! Options come from these layers, each overriding the one before:
//! built-in defaults < `#[cluster2::main(...)]` (or [`Builder::option`](crate::Builder::option))
//! < `RUST_LOG` (for `log.level` only) < config file (`--config FILE.toml`) < environment
//! (`CLUSTER2_PORT`, `CLUSTER2_CACHE__ENABLE`) < command line (`--port=8080`,
//! `--cache.enable=false`). The master resolves them once and sends the result to every
//! worker, so master and workers can never disagree.

mod cli;
mod duration;
mod host;
mod memory;
mod resolve;
#[cfg(test)]
mod schema_tests;
mod size;
mod value;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use cluster2_options_schema as schema;
use serde::{Deserialize, Serialize};

pub(crate) use cli::{Action, Command, parse_command_line};
pub use host::Host;
pub(crate) use host::MAX_ADDRESSES;
pub use resolve::OptionValue;
pub(crate) use resolve::resolve;
#[cfg(test)]
pub(crate) use resolve::{CommandLine, resolve_with};

/// The resolved options of a cluster.
///
/// Every field has a documented default; see `--help` of any cluster2 binary for the full list
/// with the defaults in force on this machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Options {
    /// TCP port of the application, shared by every worker. `0` picks any free port.
    pub port: u16,
    /// Address the application port binds to. A host name is looked up once, when the master
    /// starts, and the port is bound on every address it resolves to (`localhost`: 127.0.0.1
    /// and ::1, where the machine has IPv6).
    pub host: Host,
    /// `unix:PATH`: serve the application on a Unix socket at `PATH` instead of
    /// [`Options::host`] and [`Options::port`] (gunicorn's `--bind unix:…`), for an application
    /// behind a proxy on the same host. A socket file left by a killed run is replaced when
    /// nothing answers on it; the master removes the file when it stops.
    pub bind: Option<String>,
    /// Permission bits of the Unix socket of [`Options::bind`], in octal (`660`): connecting
    /// needs write permission, so `660` lets the owner and its group in (put the proxy's user
    /// in the group), `666` everyone on the host.
    pub bind_mode: String,
    /// TCP port of the monitor app served by the master. `0` picks any free port.
    pub mon_port: u16,
    /// Address the monitor app binds to, read as [`Options::host`] is. Loopback by default: its
    /// control endpoints are not meant for the network. Any other address needs
    /// [`MonitorOptions::token`] (or the explicit opt-out [`MonitorOptions::unsafe_no_token`]).
    pub mon_host: Host,
    /// Who may use the monitor app.
    pub mon: MonitorOptions,
    /// Number of worker processes: at most 8 per CPU unless [`Options::force_workers`], and
    /// at most 1024.
    pub workers: usize,
    /// Run more than 8 workers per CPU (up to 1024 in all).
    pub force_workers: bool,
    /// Runtime threads per worker; `0` divides the CPUs among the workers (at least one each).
    pub threads: usize,
    /// First port tried for the per-worker warm-up listeners on 127.0.0.1; unset: any free port.
    pub warm_up_port: Option<u16>,
    /// How often workers report to the master.
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    /// How long the master waits for every initial worker to be listening.
    #[serde(with = "duration")]
    pub startup_timeout: Duration,
    /// How long in-flight requests may take to finish when a worker stops gracefully.
    #[serde(with = "duration")]
    pub stop_timeout: Duration,
    /// HTTP protocols the application port speaks.
    pub server: ServerProtocol,
    /// TLS on the application port.
    pub tls: TlsOptions,
    /// How new connections spread over the workers.
    pub balance: Balance,
    /// Length of the accept queue of the application port.
    pub backlog: u32,
    /// How long a connection may wait for a complete request head, on the application port
    /// and the monitor's: a new connection for its first, a kept-alive one for its next. A
    /// connection that sends nothing, or too little, is closed after it.
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// Connections each worker keeps open at most; `0` takes three quarters of the open-files
    /// limit, leaving the rest to the application. At the cap, the connection idle the longest
    /// is closed to make room for a new one; a new one is closed at once when none is idle.
    pub max_connections: u32,
    /// Restarting workers that crash.
    pub restart: RestartOptions,
    /// Logging.
    pub log: LogOptions,
    /// What `/metrics` reports.
    pub metrics: MetricsOptions,
    /// The health endpoint load balancers poll.
    pub ecv: EcvOptions,
    /// Replace a worker once it has been up this long; `None` (written `never`): never.
    #[serde(with = "duration::or_never")]
    pub max_age: Option<Duration>,
    /// Replace a worker once it has answered this many requests plus its jitter; 0: never
    /// (gunicorn's `max_requests`). See [`robustness::max_requests`](crate::robustness::max_requests).
    pub max_requests: u64,
    /// The most each worker's `max_requests` is raised by: a number from 0 to this, drawn once
    /// per worker, so that workers started together are not replaced together.
    pub max_requests_jitter: u64,
    /// Replace a worker whose resident memory reaches this many bytes; `None`: never (PM2's
    /// `max_memory_restart`). See [`robustness::max_memory`](crate::robustness::max_memory).
    #[serde(with = "size::or_none")]
    pub max_memory: Option<u64>,
    /// Watching for workers that stopped sending heartbeats.
    pub nanny: NannyOptions,
    /// Replacing workers one at a time.
    pub death_queue: DeathQueueOptions,
    /// Directory for the pid files that `stop` reads; unset: none are written.
    pub pids: Option<String>,
    /// The cluster's name in a shared backend (Redis): it prefixes every key and channel, so
    /// that several services can share one server. Every host of one service uses the same.
    pub cluster_name: String,
    /// The shared cache.
    pub cache: CacheSettings,
    /// Events between processes.
    pub emitter: EmitterOptions,
}

/// TLS on the application port: both files or neither. The master reads them at start and on
/// SIGHUP, and hands the bytes to its workers; the monitor port stays plain HTTP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the certificate chain, the server's own certificate first.
    pub cert: Option<String>,
    /// PEM file of the certificate's private key: PKCS#8, RSA (PKCS#1) or EC (SEC1).
    pub key: Option<String>,
}

/// What `--check` and `--help` print instead of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// A credential among the options, such as [`MonitorOptions::token`]. `Debug` leaves its value
/// out, and so do `--help`, `--check` and every error message; read it with
/// [`Secret::expose`]. The master sends it to its own workers with the rest of the options.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

/// Who may use the monitor app, and how many connections it keeps. The ECV paths stay open to
/// load balancers whatever is set here; see the README's "Who may use the monitor".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MonitorOptions {
    /// When set, every monitor route except the ECV's requires `Authorization: Bearer <token>`.
    /// Required when [`Options::mon_host`] is not a loopback address.
    pub token: Option<Secret>,
    /// The longest CPU profile `GET /debug/workers/{pid}/profile` takes: its `seconds` is capped
    /// by it (a profile slows the worker it samples).
    #[serde(with = "duration")]
    pub max_profile: Duration,
    /// Serve a monitor bound beyond loopback without a token: anyone who can reach it can read
    /// the cluster and act on it. Logged as a warning at start.
    pub unsafe_no_token: bool,
    /// Connections the monitor keeps open at most, fewer when the master's open-files limit
    /// leaves less after what it keeps for its workers. At the cap, the connection idle the
    /// longest is closed to make room, so that the ECV stays reachable.
    pub max_connections: u32,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        Self {
            token: None,
            max_profile: Duration::from_secs(60),
            unsafe_no_token: false,
            max_connections: 256,
        }
    }
}

/// Where the cache manager runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CacheMode {
    /// Its own process, spawned, supervised and restarted by the master.
    Standalone,
    /// Inside the master process.
    Master,
}

/// The shared cache of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CacheSettings {
    /// Whether the cluster runs a cache manager.
    pub enable: bool,
    /// `standalone` or `master`.
    pub mode: CacheMode,
    /// Directory of the persistent namespaces.
    pub persist_path: String,
    /// The largest value, in bytes.
    pub max_value: u64,
    /// The most memory the entries of every namespace together may take, in bytes: keys,
    /// values and a fixed estimate of the manager's own cost per entry. Past it the least
    /// recently used entries are evicted. By default a quarter of the memory of the machine,
    /// or of its control group if that is less.
    #[serde(with = "size")]
    pub max_memory: u64,
    /// The most client connections the manager serves at once; it refuses more. Each process
    /// of the cluster holds one.
    pub max_connections: u32,
    /// Default timeout of every cache operation (and lease of a loader).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// The longest lease a loader is given on a key's lock, whatever timeout its call has:
    /// past it a waiter loads instead.
    #[serde(with = "duration")]
    pub max_lease: Duration,
    /// How long the standalone manager keeps looking for the next request before it sleeps:
    /// lower latency for calls made one after another, for a little CPU after activity.
    #[serde(with = "duration")]
    pub spin: Duration,
    /// `local` (the cache manager of this host, above) or the URL of a Redis server that every
    /// host of the cluster shares: `redis://host:port/db`, `rediss://…` (TLS),
    /// `redis+unix:///path/to.sock`.
    pub backend: String,
}

/// Events between processes, and between hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EmitterOptions {
    /// `local`, or the URL of a Redis server that carries events to every host of the cluster
    /// ([`Target::AllHosts`](crate::emitter::Target::AllHosts)).
    pub backend: String,
}

impl Default for EmitterOptions {
    fn default() -> Self {
        Self {
            backend: "local".to_owned(),
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enable: true,
            mode: CacheMode::Standalone,
            persist_path: "cluster2-cache".to_owned(),
            max_value: 16 * 1024 * 1024,
            max_memory: memory::default_cache_memory(),
            max_connections: 1024,
            timeout: Duration::from_secs(5),
            max_lease: Duration::from_secs(60),
            spin: Duration::from_micros(50),
            backend: "local".to_owned(),
        }
    }
}

/// The nanny: workers whose heartbeats stopped are replaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NannyOptions {
    /// Whether the nanny runs.
    pub enable: bool,
    /// A worker silent for this long is a runaway and is replaced.
    #[serde(with = "duration")]
    pub tolerance: Duration,
}

impl Default for NannyOptions {
    fn default() -> Self {
        Self {
            enable: true,
            tolerance: Duration::from_secs(30),
        }
    }
}

/// The queue of workers to replace, one at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DeathQueueOptions {
    /// How long a successor may take to be ready, and an old worker to exit once told to.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// How many successors are tried before a replacement is given up.
    pub retries: u32,
}

impl Default for DeathQueueOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            retries: 3,
        }
    }
}

/// How the ECV decides whether the cluster takes traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EcvMode {
    /// Up once every initial worker is ready; then switched by `markUp`/`markDown`.
    Control,
    /// Each ECV request probes an application URL and validates the answer.
    Monitor,
}

/// The ECV endpoint of the monitor app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EcvOptions {
    /// `control` or `monitor`.
    pub mode: EcvMode,
    /// Path of the ECV.
    pub root: String,
    /// Path that marks the cluster up (POST), in control mode.
    pub mark_up: String,
    /// Path that marks the cluster down (POST), in control mode.
    pub mark_down: String,
    /// What monitor mode probes: a path on the application port, or an absolute `http://` URL.
    pub monitor: String,
    /// How long a monitor-mode probe may take.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// The status a probe must answer with; unset: any 2xx.
    pub expect_status: Option<u16>,
    /// Text the probe's body must contain; unset: anything.
    pub expect_body: Option<String>,
    /// Body of the ECV's 200 answer.
    pub up_body: String,
    /// Start of the body of the ECV's 503 answer; the reason follows.
    pub down_body: String,
    /// On shutdown, how long the ECV is down before workers stop, so balancers stop sending.
    #[serde(with = "duration")]
    pub drain_delay: Duration,
    /// The ECV is down while fewer workers than this can take new connections (at most the
    /// workers expected), so that a host whose workers are crashing hands its share of the
    /// traffic to the others instead of piling it on its survivors.
    pub min_workers: usize,
}

impl Default for EcvOptions {
    fn default() -> Self {
        Self {
            mode: EcvMode::Control,
            root: "/ecv".to_owned(),
            mark_up: "/ecv/markUp".to_owned(),
            mark_down: "/ecv/markDown".to_owned(),
            monitor: "/".to_owned(),
            timeout: Duration::from_secs(2),
            expect_status: None,
            expect_body: None,
            up_body: "OK".to_owned(),
            down_body: "unavailable".to_owned(),
            drain_delay: Duration::ZERO,
            min_workers: 1,
        }
    }
}

/// HTTP protocols spoken on the application port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ServerProtocol {
    /// HTTP/1.1 and HTTP/2 over cleartext (h2c), chosen per connection.
    Auto,
    /// HTTP/1.1 only, without protocol upgrades (use `Auto` for WebSocket).
    Http1,
    /// HTTP/2 only (prior knowledge).
    Http2,
}

/// How new connections spread over the workers, which all accept from the application port's
/// one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Balance {
    /// Each worker takes its turn: one holding more than an even share of the accepting
    /// workers' open connections leaves new ones to the others (for a bounded moment), so a
    /// burst spreads evenly and a resumed or new worker gets the next connections.
    Even,
    /// The kernel's way: whichever worker wakes first takes what it can.
    Kernel,
}

/// How crashed workers are restarted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RestartOptions {
    /// Delay before restarting a worker that crashed after a crash; doubles on each crash in a
    /// row.
    #[serde(with = "duration")]
    pub delay: Duration,
    /// The longest delay between restarts of a worker that keeps crashing. A worker that has
    /// been listening this long ends its crash streak.
    #[serde(with = "duration")]
    pub max_delay: Duration,
}

/// Logging of every process of the cluster (to standard error), and the access log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogOptions {
    /// Filter directives, as for `RUST_LOG`: `info`, `warn,my_app=debug`.
    pub level: String,
    /// How each line is written, the access log's included.
    pub format: LogFormat,
    /// Where the access log goes: one line per request of the application port.
    pub access: AccessLog,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// For people: time, level, the process, the message and its fields.
    Text,
    /// One JSON object per line, for log collectors: `timestamp`, `level`, `target`,
    /// `message`, `role`, `pid`, `worker` (workers only), and the event's other fields.
    Json,
}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
#[non_exhaustive]
pub enum AccessLog {
    /// No access log: the request path pays one branch.
    Off,
    /// The standard output of each worker (the terminal, or what the supervisor collects).
    Stdout,
    /// The standard error of each worker, among the other log lines.
    Stderr,
    /// A file every worker appends whole lines to, created if missing, reopened on SIGUSR1
    /// (after `logrotate` moved it).
    File(String),
}

impl From<AccessLog> for String {
    fn from(access: AccessLog) -> String {
        match access {
            AccessLog::Off => "off".to_owned(),
            AccessLog::Stdout => "stdout".to_owned(),
            AccessLog::Stderr => "stderr".to_owned(),
            AccessLog::File(path) => path,
        }
    }
}

impl TryFrom<String> for AccessLog {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let spec = schema::spec("log.access").expect("log.access is an option");
        if spec.kind.check_text(&text).is_err() {
            return Err(format!("expected {}, not {text:?}", spec.expected));
        }
        Ok(match text.as_str() {
            "off" => AccessLog::Off,
            "stdout" => AccessLog::Stdout,
            "stderr" => AccessLog::Stderr,
            _ => AccessLog::File(text),
        })
    }
}

/// What `/metrics` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsOptions {
    /// The buckets of the request duration histograms.
    pub buckets: Buckets,
}

/// The upper bounds, in seconds, of a histogram's buckets: strictly increasing, from a
/// microsecond to an hour, at most 32; the requests beyond the last bound fall in `+Inf`.
/// Written as text like `0.005,0.01,0.1,1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Buckets(Vec<f64>);

impl Buckets {
    /// The bounds, in seconds.
    pub fn bounds(&self) -> &[f64] {
        &self.0
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Self(crate::heartbeat::REQUEST_DURATION_BUCKETS.to_vec())
    }
}

impl From<Buckets> for String {
    fn from(buckets: Buckets) -> String {
        schema::format_buckets(&buckets.0)
    }
}

impl TryFrom<String> for Buckets {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        schema::parse_buckets(&text)
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 8080,
            host: Host::from(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            bind: None,
            bind_mode: "660".to_owned(),
            mon_port: 8081,
            mon_host: Host::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            mon: MonitorOptions::default(),
            workers: cpus(),
            force_workers: false,
            threads: 0,
            warm_up_port: None,
            heartbeat_interval: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(30),
            server: ServerProtocol::Auto,
            tls: TlsOptions::default(),
            balance: Balance::Even,
            backlog: 1024,
            header_timeout: Duration::from_secs(30),
            max_connections: 0,
            restart: RestartOptions::default(),
            log: LogOptions::default(),
            metrics: MetricsOptions::default(),
            ecv: EcvOptions::default(),
            max_age: Some(Duration::from_secs(3 * 86_400)),
            max_requests: 0,
            max_requests_jitter: 0,
            max_memory: None,
            nanny: NannyOptions::default(),
            death_queue: DeathQueueOptions::default(),
            pids: None,
            cluster_name: "cluster2".to_owned(),
            cache: CacheSettings::default(),
            emitter: EmitterOptions::default(),
        }
    }
}

impl Default for RestartOptions {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
            access: AccessLog::Off,
        }
    }
}

/// The CPUs this process may use, asked once: the answer reads cgroup files, and a worker
/// needs it twice at start (its options' defaults while the hello is decoded, then its thread
/// count), a measurable share of its start-up.
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Options {
    /// Runtime threads each worker should run.
    pub(crate) fn worker_threads(&self) -> usize {
        match self.threads {
            0 => (cpus() / self.workers.max(1)).max(1),
            n => n,
        }
    }

    /// The most workers this cluster may run, at start or scaled at run time: 8 per CPU of
    /// this machine unless `force_workers`, and never more than the schema's 1024.
    pub(crate) fn max_workers(&self) -> usize {
        let most = if self.force_workers {
            schema::MAX_WORKERS
        } else {
            (cpus() as u64)
                .saturating_mul(schema::WORKERS_PER_CPU)
                .min(schema::MAX_WORKERS)
        };
        usize::try_from(most).unwrap_or(usize::MAX)
    }

    /// Why `workers` is more than this cluster may run, in the words the `workers` option's
    /// error uses; `None` when it may.
    pub(crate) fn too_many_workers(&self, workers: usize) -> Option<String> {
        if workers <= self.max_workers() {
            return None;
        }
        let cpus = cpus() as u64;
        Some(
            if self.force_workers || workers as u64 > schema::MAX_WORKERS {
                format!("more than {} workers", schema::MAX_WORKERS)
            } else {
                format!(
                    "more than {} workers per CPU (this machine has {cpus}, so at most {}); \
                 set --force-workers to run them anyway (at most {})",
                    schema::WORKERS_PER_CPU,
                    cpus.saturating_mul(schema::WORKERS_PER_CPU),
                    schema::MAX_WORKERS
                )
            },
        )
    }

    /// The options as `--check` prints them: secrets replaced by a placeholder, and the
    /// passwords in backend URLs too.
    pub(crate) fn redacted(&self) -> serde_json::Value {
        let mut tree = serde_json::to_value(self).expect("options serialize to JSON");
        for spec in cluster2_options_schema::OPTIONS {
            let pointer = format!("/{}", spec.key.replace('.', "/"));
            let Some(value) = tree.pointer_mut(&pointer).filter(|v| !v.is_null()) else {
                continue;
            };
            match spec.kind {
                cluster2_options_schema::Kind::Secret => *value = REDACTED.into(),
                cluster2_options_schema::Kind::Backend => {
                    if let Some(url) = value.as_str() {
                        *value = cluster2_options_schema::redact_url(url).into();
                    }
                }
                _ => {}
            }
        }
        tree
    }

    /// Checks that involve more than one option or this machine (workers per CPU), and what
    /// only tracing can tell about a log filter. Each value on its own has already been
    /// checked against the schema.
    fn validate(&self) -> Result<(), Problem> {
        if self.port != 0 && self.port == self.mon_port {
            return Err(Problem::conflict(
                "port",
                "mon_port",
                format!(
                    "are both {}: the application and the monitor need different ports",
                    self.port
                ),
            ));
        }
        if let Some(why) = self.too_many_workers(self.workers) {
            return Err(Problem::value("workers", why));
        }
        if self.restart.delay > self.restart.max_delay {
            return Err(Problem::conflict(
                "restart.delay",
                "restart.max_delay",
                "conflict: the first delay is longer than the longest".to_owned(),
            ));
        }
        if self.ecv.root == self.ecv.mark_up || self.ecv.root == self.ecv.mark_down {
            return Err(Problem::conflict(
                "ecv.root",
                "ecv.mark_up",
                "conflict: the ECV and its controls need different paths".to_owned(),
            ));
        }
        // A host name other than localhost is checked once it is looked up (`addresses`).
        if let Some(loopback) = self.mon_host.is_loopback() {
            self.monitor_exposure(loopback)?;
        }
        if let Err(message) = log_filter(&self.log.level) {
            return Err(Problem::value("log.level", message));
        }
        // The schema checked the scheme; the client reads the rest (host, port, database).
        for (key, url) in [
            ("cache.backend", &self.cache.backend),
            ("emitter.backend", &self.emitter.backend),
        ] {
            if url != "local" {
                if let Err(message) = crate::backend::check_url(url) {
                    return Err(Problem::value(key, message));
                }
            }
        }
        Ok(())
    }
}

impl Options {
    /// Outside loopback the monitor's actions are open to the network: not without a token,
    /// unless the user says, in so many words, that this is unsafe.
    fn monitor_exposure(&self, loopback: bool) -> Result<(), Problem> {
        if loopback || self.mon.token.is_some() || self.mon.unsafe_no_token {
            return Ok(());
        }
        Err(Problem::value(
            "mon_host",
            "the monitor would let anyone who reaches it act on the cluster: set a token with \
             --mon.token (CLUSTER2_MON__TOKEN), or accept an open monitor with \
             --mon.unsafe-no-token",
        ))
    }
}

/// Reads a log filter as `log.level` is read, for the option and for a filter changed live:
/// the schema's check (each directive a level or `target=level`), then tracing's own parse,
/// which alone knows span filters (`app[request]=debug`). The error says what was expected and
/// what is wrong: `expected a log filter like … ; `verbose` is not a level …`.
pub(crate) fn log_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let spec = cluster2_options_schema::spec("log.level").expect("log.level is an option");
    if let Err(invalid) = spec.kind.check_text(text) {
        let detail = value::detail(&invalid).map_or(String::new(), |d| format!("; {d}"));
        return Err(format!("expected {}{detail}", spec.expected));
    }
    tracing_filter(text).map_err(|e| format!("expected {} ({e})", spec.expected))
}

/// tracing's own parse of a filter the schema accepted, minus what makes tracing panic or stall:
///
/// - each directive trimmed: its parser walks a trimmed directive but slices the untrimmed one
///   at the same offsets, which panics next to a multi-byte character (and reads `info, debug`
///   as a target named ` debug`);
/// - a span field's value matched as text, never compiled as a regular expression: ten
///   characters of pattern can take minutes and gigabytes to compile (tracing's own advice for
///   filters from outside the program);
/// - one directive per target, span and fields, the last given (the one tracing keeps): two of
///   them trip a debug assertion of tracing's that a value matched as text never passes.
fn tracing_filter(
    text: &str,
) -> Result<tracing_subscriber::EnvFilter, tracing_subscriber::filter::ParseError> {
    let builder = || tracing_subscriber::EnvFilter::builder().with_regex(false);
    let mut directives: Vec<Option<&str>> = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // Alone, tracing writes it back in one form: what precedes its level is its key.
        let written = builder().parse(directive)?.to_string();
        let key = written
            .rsplit_once('=')
            .map_or(String::new(), |(key, _)| key.to_owned());
        if let Some(earlier) = seen.insert(key, directives.len()) {
            directives[earlier] = None;
        }
        directives.push(Some(directive));
    }
    let kept: Vec<&str> = directives.into_iter().flatten().collect();
    builder().parse(kept.join(","))
}

/// A semantic problem with one option or a pair of options.
#[derive(Debug)]
struct Problem {
    key: &'static str,
    other: Option<&'static str>,
    message: String,
}

impl Problem {
    fn value(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            other: None,
            message: message.into(),
        }
    }

    fn conflict(key: &'static str, other: &'static str, message: String) -> Self {
        Self {
            key,
            other: Some(other),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Options::default().validate().unwrap();
    }

    /// Found by fuzzing: tracing's parser panicked on a directive with a space before it and a
    /// multi-byte character in its span (`info, x[é]=debug`), and read `info, debug` as a target
    /// named ` debug`.
    #[test]
    fn directives_are_trimmed_before_tracing_reads_them() {
        for text in [" x[é]", "info, x[é]=debug", "info,\tapp[ü{k=v}]=trace "] {
            assert!(log_filter(text).is_ok(), "{text:?}");
        }
        let filter = log_filter("info, debug").unwrap();
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing_subscriber::filter::LevelFilter::DEBUG)
        );
    }

    /// Found by fuzzing (libFuzzer): with field values matched as text, two directives for the
    /// same target, span and fields tripped a debug assertion in tracing. The last one counts,
    /// as tracing keeps it.
    #[test]
    fn a_repeated_directive_counts_once_the_last() {
        let filter = log_filter("app[req{id=x}]=info, app[req{id=x}]=trace").unwrap();
        assert_eq!(filter.to_string(), "app[req{id=x}]=trace");
        let filter = log_filter("warn,app=debug,info,app=error").unwrap();
        assert_eq!(filter.to_string(), "app=error,info");
    }

    #[test]
    fn a_log_filter_is_read_as_log_level_is() {
        assert!(log_filter("info,my_app=trace").is_ok());
        assert!(log_filter("my_app[request]=debug").is_ok());
        let e = log_filter("infoo").unwrap_err();
        assert!(e.starts_with("expected a log filter like info"), "{e}");
        assert!(
            e.ends_with("`infoo` is not a level; did you mean `info`?"),
            "{e}"
        );
        // Past the schema, tracing's own grammar: a span filter it cannot read.
        let e = log_filter("my_app[{=]=debug").unwrap_err();
        assert!(e.starts_with("expected a log filter like info"), "{e}");
    }

    #[test]
    fn defaults_round_trip_through_the_wire_format() {
        let options = Options::default();
        let bytes = postcard::to_stdvec(&options).unwrap();
        let back: Options = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, options);
    }

    #[test]
    fn a_monitor_beyond_loopback_needs_a_token_or_the_opt_out() {
        let open = Options {
            mon_host: "0.0.0.0".parse::<IpAddr>().unwrap().into(),
            ..Options::default()
        };
        let problem = open.validate().unwrap_err();
        assert_eq!(problem.key, "mon_host");
        assert!(
            problem.message.contains("--mon.token"),
            "{}",
            problem.message
        );
        let with_token = Options {
            mon: MonitorOptions {
                token: Some(Secret("t".to_owned())),
                ..MonitorOptions::default()
            },
            ..open.clone()
        };
        with_token.validate().unwrap();
        let opted_out = Options {
            mon: MonitorOptions {
                unsafe_no_token: true,
                ..MonitorOptions::default()
            },
            ..open
        };
        opted_out.validate().unwrap();
        for loopback in ["127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            let options = Options {
                mon_host: loopback.parse::<IpAddr>().unwrap().into(),
                ..Options::default()
            };
            options.validate().unwrap();
        }
    }

    #[test]
    fn secrets_are_left_out_of_debug_and_check() {
        let options = Options {
            mon: MonitorOptions {
                token: Some(Secret("hunter2".to_owned())),
                ..MonitorOptions::default()
            },
            ..Options::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
        let shown = options.redacted();
        assert_eq!(shown["mon"]["token"], REDACTED);
        assert!(!shown.to_string().contains("hunter2"));
        // Workers get the real thing.
        let bytes = postcard::to_stdvec(&options).unwrap();
        let back: Options = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.mon.token.unwrap().expose(), "hunter2");
        // Unset stays unset.
        assert!(Options::default().redacted()["mon"]["token"].is_null());
    }

    #[test]
    fn more_than_8_workers_per_cpu_need_force_workers() {
        let most = cpus() * 8;
        let at_most = Options {
            workers: most,
            ..Options::default()
        };
        at_most.validate().unwrap();
        let over = Options {
            workers: most + 1,
            ..Options::default()
        };
        let problem = over.validate().unwrap_err();
        assert_eq!(problem.key, "workers");
        assert!(
            problem.message.contains("--force-workers"),
            "{}",
            problem.message
        );
        let forced = Options {
            force_workers: true,
            ..over
        };
        forced.validate().unwrap();
    }

    #[test]
    fn conflicting_ports_are_a_problem() {
        let options = Options {
            port: 9000,
            mon_port: 9000,
            ..Options::default()
        };
        let problem = options.validate().unwrap_err();
        assert_eq!((problem.key, problem.other), ("port", Some("mon_port")));
        // Port 0 means "any free port" for both, which cannot collide.
        let options = Options {
            port: 0,
            mon_port: 0,
            ..Options::default()
        };
        options.validate().unwrap();
    }
}
