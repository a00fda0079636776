//! The table itself, in the order of the runtime's `Options` struct, which `--help` follows.

use std::time::Duration;

use crate::{Kind, MORE_THAN_ZERO, Spec};

// Every number and duration has an upper bound: no setting needs more, and beyond them a typo
// (`--workers=100000`, `--threads=100000`) or a unit slip (`--stop-timeout=30000d`) takes the
// host down or overflows a clock. The README's options table states each range.

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A duration from `min` to `max`.
const fn duration(min: Duration, max: Duration) -> Kind {
    Kind::Duration {
        min,
        max,
        never: false,
    }
}

/// The most workers a cluster runs, even when `force_workers` lifts the per-CPU limit.
pub const MAX_WORKERS: u64 = 1024;

/// Workers per CPU beyond which `force_workers` must be set: more only share the same CPUs,
/// and a typo should not fork hundreds of processes.
pub const WORKERS_PER_CPU: u64 = 8;

/// The floor under `restart.delay`: with `0s` a worker that crashes at once is restarted
/// hundreds of times a second, since doubling nothing stays nothing.
const MIN_RESTART_DELAY: Duration = Duration::from_millis(10);

/// The floor under `restart.max_delay`: a worker that keeps crashing is restarted at most ten
/// times a second.
const MIN_RESTART_MAX_DELAY: Duration = Duration::from_millis(100);

/// The most requests `max_requests` and its jitter may name: a trillion is years of traffic
/// for one worker, and the sum of both still fits every counter.
const MAX_REQUESTS: u64 = 1_000_000_000_000;

const PORT: Kind = Kind::Port { min: 0 };
const ANY_PORT: &str = "a port number (0-65535)";

const BACKEND: &str = "local, or a Redis URL like redis://host:6379/0, rediss://host:6380/0 or \
                       redis+unix:///path/to/redis.sock";
const HOST: &str = "an IP address or a host name";

const PATH: Kind = Kind::UrlPath { or_url: false };

/// Beyond an hour a silent connection is not waiting for its request head, it is holding a
/// descriptor.
const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Beyond this a cache manager's wait before sleeping is only burnt CPU: a client that takes
/// longer than a millisecond between calls is not making them one after another.
const MAX_CACHE_SPIN: Duration = Duration::from_millis(1);

/// A loader's lock held longer than a day is a load that is not coming back.
const MAX_CACHE_LEASE: Duration = Duration::from_secs(86_400);

const fn option(key: &'static str, kind: Kind, expected: &'static str, help: &'static str) -> Spec {
    Spec {
        key,
        kind,
        optional: false,
        expected,
        help,
    }
}

/// An option that may be unset (`none`); its `expected` ends with "or none".
const fn optional(
    key: &'static str,
    kind: Kind,
    expected: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        key,
        kind,
        optional: true,
        expected,
        help,
    }
}

/// Every option.
pub static OPTIONS: &[Spec] = &[
    option(
        "port",
        PORT,
        ANY_PORT,
        "TCP port of the application, shared by every worker (0: any free port)",
    ),
    option(
        "host",
        Kind::Host,
        HOST,
        "address the application port binds to; a host name binds every address it resolves to \
         at start (localhost: 127.0.0.1 and ::1)",
    ),
    optional(
        "bind",
        Kind::Bind,
        "unix: and the path of a socket, like unix:/run/app.sock, or none",
        "serve the application on this Unix socket instead of host and port (gunicorn's form); \
         a stale socket file nothing answers on is replaced, and it is removed at stop",
    ),
    option(
        "bind_mode",
        Kind::FileMode,
        "permission bits in octal, like 660 or 600 (at most 777)",
        "permissions of the Unix socket of bind: who may connect (660: the owner and its group)",
    ),
    option(
        "mon_port",
        PORT,
        ANY_PORT,
        "TCP port of the monitor app in the master (0: any free port)",
    ),
    option(
        "mon_host",
        Kind::Host,
        HOST,
        "address the monitor app binds to; a host name binds every address it resolves to",
    ),
    optional(
        "mon.token",
        Kind::Secret,
        "a token of visible ASCII characters without spaces, or none",
        "token every monitor route but the ECV requires (Authorization: Bearer); required when \
         mon_host is not loopback",
    ),
    option(
        "mon.max_profile",
        duration(Duration::from_secs(1), HOUR),
        "a duration from 1s to 1h, like 30s or 5m",
        "longest CPU profile the debug routes take (their seconds parameter is capped by it)",
    ),
    option(
        "mon.unsafe_no_token",
        Kind::Bool,
        "true or false",
        "serve a monitor bound beyond loopback without a token: open to anyone who reaches it",
    ),
    option(
        "mon.max_connections",
        Kind::Count {
            min: 1,
            max: 1_000_000,
        },
        "a whole number from 1 to 1000000",
        "connections the monitor keeps open at most (fewer if the open-files limit leaves less); \
         at the cap the one idle the longest is closed for a new one",
    ),
    option(
        "workers",
        Kind::Count {
            min: 1,
            max: MAX_WORKERS,
        },
        "a whole number from 1 to 1024",
        "number of worker processes (built in: one per CPU); more than 8 per CPU needs \
         --force-workers",
    ),
    option(
        "force_workers",
        Kind::Bool,
        "true or false",
        "run more than 8 workers per CPU (up to 1024 in all), which a typo would otherwise do",
    ),
    option(
        "threads",
        Kind::Count { min: 0, max: 1024 },
        "a whole number from 0 to 1024 (0: automatic)",
        "runtime threads per worker (0: the CPUs divided among the workers)",
    ),
    // Workers bind `warm_up_port + id`: from 0, worker 1 would try port 1.
    optional(
        "warm_up_port",
        Kind::Port { min: 1 },
        "a port number (1-65535), or none",
        "first port tried for the per-worker warm-up listeners on 127.0.0.1 (unset: any free port)",
    ),
    option(
        "heartbeat_interval",
        duration(Duration::from_millis(10), HOUR),
        "a duration from 10ms to 1h, like 500ms or 5s",
        "how often workers report to the master",
    ),
    option(
        "startup_timeout",
        duration(MORE_THAN_ZERO, DAY),
        "a duration of more than 0s, up to 1day, like 30s or 5m",
        "how long the master waits for every initial worker to be listening",
    ),
    option(
        "stop_timeout",
        duration(Duration::ZERO, Duration::from_secs(7 * 86_400)),
        "a duration from 0s to 7days, like 500ms, 5s or 3d",
        "how long in-flight requests may take to finish on a graceful stop",
    ),
    option(
        "server",
        Kind::OneOf(&["auto", "http1", "http2"]),
        "auto, http1 or http2",
        "protocols of the application port: auto (HTTP/1.1 and h2c), http1 or http2",
    ),
    optional(
        "tls.cert",
        Kind::File,
        "the path of a PEM file, or none",
        "certificate chain (PEM) the application port serves TLS with, the server's own first; \
         needs tls.key; read by the master at start and on SIGHUP",
    ),
    optional(
        "tls.key",
        Kind::File,
        "the path of a PEM file, or none",
        "private key (PEM: PKCS#8, RSA or EC) of tls.cert",
    ),
    option(
        "balance",
        Kind::OneOf(&["even", "kernel"]),
        "even or kernel",
        "how connections spread over the workers: even (each takes its turn, as node's round \
         robin) or kernel (the first to wake takes what it can)",
    ),
    option(
        "backlog",
        Kind::Count {
            min: 1,
            max: 65_535,
        },
        "a whole number from 1 to 65535",
        "length of the accept queue of the application port",
    ),
    option(
        "header_timeout",
        duration(MORE_THAN_ZERO, MAX_HEADER_TIMEOUT),
        "a duration of more than 0s, up to 1h, like 10s",
        "how long a connection may wait for a complete request head, a new one for its first and \
         a kept-alive one for its next, on both ports; then it is closed",
    ),
    option(
        "max_connections",
        Kind::Count {
            min: 0,
            max: 1_000_000,
        },
        "a whole number from 0 to 1000000 (0: from the open-files limit)",
        "connections each worker keeps open at most (0: three quarters of the open-files limit); \
         at the cap the one idle the longest is closed for a new one",
    ),
    option(
        "restart.delay",
        duration(MIN_RESTART_DELAY, HOUR),
        "a duration from 10ms to 1h, like 100ms or 1s",
        "delay before restarting a crashed worker; doubles with each crash in a row (at least \
         10ms, so that a worker crashing at once cannot restart-storm)",
    ),
    option(
        "restart.max_delay",
        duration(MIN_RESTART_MAX_DELAY, DAY),
        "a duration from 100ms to 1day, like 30s or 5m",
        "longest delay between restarts (at least 100ms); a worker up this long ends its crash \
         streak",
    ),
    option(
        "log.level",
        Kind::LogFilter,
        "a log filter like info or warn,my_app=debug: a level or target=level, comma-separated",
        "log filter for every process, like info or warn,my_app=debug; RUST_LOG sets it too, \
         over #[cluster2::main] and under the config file",
    ),
    option(
        "log.format",
        Kind::OneOf(&["text", "json"]),
        "text or json",
        "log lines for people (text) or one JSON object per line, with role, pid and worker \
         id as fields (json); the access log follows it too",
    ),
    option(
        "log.access",
        Kind::LogDestination,
        "off, stdout, stderr, or a file path with a / in it, like ./access.log",
        "one line per request from every worker, and from the master for the monitor's \
         (combined format, or JSON with log.format = json): off, stdout, stderr or a file, \
         appended to and reopened on SIGUSR1",
    ),
    option(
        "metrics.buckets",
        Kind::Buckets,
        "upper bounds in seconds, comma-separated and strictly increasing, from 0.000001 to \
         3600, at most 32, like 0.005,0.01,0.1,1",
        "buckets of the request duration histograms of /metrics (the longer requests fall in \
         +Inf)",
    ),
    option(
        "ecv.mode",
        Kind::OneOf(&["control", "monitor"]),
        "control or monitor",
        "control: up once ready, then switched by markUp/markDown; monitor: probe the app",
    ),
    option(
        "ecv.root",
        PATH,
        "a path starting with /",
        "path of the ECV on the monitor app",
    ),
    option(
        "ecv.mark_up",
        PATH,
        "a path starting with /",
        "path that marks the cluster up (POST, control mode)",
    ),
    option(
        "ecv.mark_down",
        PATH,
        "a path starting with /",
        "path that marks the cluster down (POST, control mode)",
    ),
    option(
        "ecv.monitor",
        Kind::UrlPath { or_url: true },
        "a path starting with / or an http:// URL",
        "what monitor mode probes: a path on the application port, or a URL",
    ),
    option(
        "ecv.timeout",
        duration(Duration::ZERO, HOUR),
        "a duration from 0s to 1h, like 500ms or 2s",
        "how long a monitor-mode probe may take (a timeout means down)",
    ),
    optional(
        "ecv.expect_status",
        Kind::HttpStatus,
        "an HTTP status (100-599), or none",
        "status the probe must answer with (unset: any 2xx)",
    ),
    optional(
        "ecv.expect_body",
        Kind::Text,
        "text, or none",
        "text the probe's body must contain (unset: anything)",
    ),
    option(
        "ecv.up_body",
        Kind::Text,
        "text",
        "body of the ECV's 200 answer",
    ),
    option(
        "ecv.down_body",
        Kind::Text,
        "text",
        "start of the body of the ECV's 503 answer; the reason follows",
    ),
    option(
        "ecv.drain_delay",
        duration(Duration::ZERO, HOUR),
        "a duration from 0s to 1h, like 5s",
        "on shutdown, how long the ECV is down before the workers stop",
    ),
    option(
        "ecv.min_workers",
        Kind::Count {
            min: 1,
            max: MAX_WORKERS,
        },
        "a whole number from 1 to 1024",
        "the ECV is down while fewer workers than this can take new connections (at most the \
         workers expected: a scale-down never takes it down)",
    ),
    option(
        "max_age",
        Kind::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(30 * 86_400),
            never: true,
        },
        "a duration from 0s to 30days, like 12h or 3d, or never",
        "replace a worker once it has been up this long (never: keep it)",
    ),
    option(
        "max_requests",
        Kind::Count {
            min: 0,
            max: MAX_REQUESTS,
        },
        "a whole number from 0 to 1000000000000 (0: never)",
        "replace a worker once it has answered this many requests, plus its jitter (0: never)",
    ),
    option(
        "max_requests_jitter",
        Kind::Count {
            min: 0,
            max: MAX_REQUESTS,
        },
        "a whole number from 0 to 1000000000000",
        "each worker's max_requests is raised by a number from 0 to this, drawn once per \
         worker, so that workers started together are not replaced together",
    ),
    optional(
        "max_memory",
        Kind::Size {
            min: 1 << 20,
            max: 1 << 50,
        },
        "a size from 1MiB to 1PiB, like 512MiB or 4GiB, or none",
        "replace a worker whose resident memory reaches this size (unset: never)",
    ),
    option(
        "nanny.enable",
        Kind::Bool,
        "true or false",
        "replace workers whose heartbeats stop",
    ),
    option(
        "nanny.tolerance",
        duration(MORE_THAN_ZERO, DAY),
        "a duration of more than 0s, up to 1day, like 30s",
        "a worker silent this long is a runaway and is replaced",
    ),
    option(
        "death_queue.timeout",
        duration(MORE_THAN_ZERO, DAY),
        "a duration of more than 0s, up to 1day, like 60s",
        "how long a successor may take to be ready, and an old worker to exit",
    ),
    option(
        "death_queue.retries",
        Kind::Count { min: 1, max: 100 },
        "a whole number from 1 to 100",
        "successors tried before a replacement is given up",
    ),
    optional(
        "pids",
        Kind::Directory,
        "a directory, or none",
        "directory for the pid files that `stop` and the control commands read, writable by its owner alone (unset: none written)",
    ),
    option(
        "cluster_name",
        Kind::Name,
        "1 to 64 letters, digits, `-`, `_` or `.`",
        "the cluster's name in a shared backend: prefixes every Redis key and channel, so that \
         services can share one Redis (hosts of one service use the same)",
    ),
    option(
        "cache.enable",
        Kind::Bool,
        "true or false",
        "run the shared cache",
    ),
    option(
        "cache.mode",
        Kind::OneOf(&["standalone", "master"]),
        "standalone or master",
        "where the cache manager runs: its own supervised process, or the master",
    ),
    option(
        "cache.persist_path",
        Kind::Directory,
        "a directory",
        "directory of the persistent cache namespaces",
    ),
    option(
        "cache.max_value",
        Kind::Count {
            min: 1,
            max: 1 << 30,
        },
        "a number of bytes (1 to 1073741824)",
        "the largest cache value, in bytes",
    ),
    option(
        "cache.max_memory",
        Kind::Size {
            min: 1 << 20,
            max: 1 << 50,
        },
        "a size from 1MiB to 1PiB, like 512MiB or 4GiB",
        "the most memory the cache's entries may take: past it, the least recently used are \
         evicted (default: a quarter of the memory of the machine, or of its cgroup if less)",
    ),
    option(
        "cache.max_connections",
        Kind::Count {
            min: 1,
            max: 65_536,
        },
        "a whole number from 1 to 65536",
        "the most clients the cache manager serves at once; it refuses more",
    ),
    option(
        "cache.timeout",
        duration(MORE_THAN_ZERO, HOUR),
        "a duration of more than 0s, up to 1h, like 5s",
        "default timeout of every cache operation, and a loader's lease",
    ),
    option(
        "cache.max_lease",
        duration(MORE_THAN_ZERO, MAX_CACHE_LEASE),
        "a duration of more than 0s, up to 1day, like 30s or 5m",
        "the longest a loader holds a key's lock, whatever its call's timeout: then a waiter \
         loads instead",
    ),
    option(
        "cache.spin",
        duration(Duration::ZERO, MAX_CACHE_SPIN),
        "a duration from 0s to 1ms, like 50us",
        "how long the standalone cache manager looks for the next request before it sleeps",
    ),
    option(
        "cache.backend",
        Kind::Backend,
        BACKEND,
        "where the cache lives: local (the cache manager of this host) or a Redis server \
         that every host of the cluster shares",
    ),
    option(
        "emitter.backend",
        Kind::Backend,
        BACKEND,
        "a Redis server that carries events to every host of the cluster (Target::AllHosts); \
         local: events stay on this host",
    ),
];
