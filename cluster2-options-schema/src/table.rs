//! The table itself, in the order of the runtime's `Options` struct, which `--help` follows.

use std::time::Duration;

use crate::{I64, Kind, Spec, U32};

/// A duration that may be `0s`.
const DURATION: Kind = Kind::Duration {
    positive: false,
    max: None,
    never: false,
};
const ANY_DURATION: &str = "a duration like 500ms, 5s or 3d";

/// A duration that must be more than `0s`: an interval or a deadline that would otherwise fire
/// at once, forever.
const POSITIVE_DURATION: Kind = Kind::Duration {
    positive: true,
    max: None,
    never: false,
};
const POSITIVE: &str = "a duration of more than 0s, like 500ms, 5s or 3d";

const PORT: Kind = Kind::Port { min: 0 };
const ANY_PORT: &str = "a port number (0-65535)";

const PATH: Kind = Kind::UrlPath { or_url: false };

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
        Kind::Ip,
        "an IP address",
        "address the application port binds to",
    ),
    option(
        "mon_port",
        PORT,
        ANY_PORT,
        "TCP port of the monitor app in the master (0: any free port)",
    ),
    option(
        "mon_host",
        Kind::Ip,
        "an IP address",
        "address the monitor app binds to",
    ),
    optional(
        "mon.token",
        Kind::Secret,
        "a token of visible ASCII characters without spaces, or none",
        "token every monitor route but the ECV requires (Authorization: Bearer); required when \
         mon_host is not loopback",
    ),
    option(
        "mon.unsafe_no_token",
        Kind::Bool,
        "true or false",
        "serve a monitor bound beyond loopback without a token: open to anyone who reaches it",
    ),
    option(
        "workers",
        Kind::Count { min: 1, max: I64 },
        "a whole number of at least 1",
        "number of worker processes (built in: one per CPU)",
    ),
    option(
        "threads",
        Kind::Count { min: 0, max: I64 },
        "a whole number (0: automatic)",
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
        POSITIVE_DURATION,
        POSITIVE,
        "how often workers report to the master",
    ),
    option(
        "startup_timeout",
        POSITIVE_DURATION,
        POSITIVE,
        "how long the master waits for every initial worker to be listening",
    ),
    option(
        "stop_timeout",
        DURATION,
        ANY_DURATION,
        "how long in-flight requests may take to finish on a graceful stop",
    ),
    option(
        "server",
        Kind::OneOf(&["auto", "http1", "http2"]),
        "auto, http1 or http2",
        "protocols of the application port: auto (HTTP/1.1 and h2c), http1 or http2",
    ),
    option(
        "backlog",
        Kind::Count { min: 1, max: U32 },
        "a whole number of at least 1",
        "length of the accept queue of the application port",
    ),
    option(
        "restart.delay",
        DURATION,
        ANY_DURATION,
        "delay before restarting a crashed worker; doubles with each crash in a row",
    ),
    option(
        "restart.max_delay",
        DURATION,
        ANY_DURATION,
        "longest delay between restarts; a worker up this long ends its crash streak",
    ),
    option(
        "log.level",
        Kind::LogFilter,
        "a log filter like info or warn,my_app=debug: a level or target=level, comma-separated",
        "log filter for every process, like info or warn,my_app=debug; RUST_LOG sets it too, \
         over #[cluster2::main] and under the config file",
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
        DURATION,
        ANY_DURATION,
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
        DURATION,
        ANY_DURATION,
        "on shutdown, how long the ECV is down before the workers stop",
    ),
    option(
        "max_age",
        Kind::Duration {
            positive: false,
            max: None,
            never: true,
        },
        "a duration like 500ms, 5s or 3d, or never",
        "replace a worker once it has been up this long (never: keep it)",
    ),
    option(
        "nanny.enable",
        Kind::Bool,
        "true or false",
        "replace workers whose heartbeats stop",
    ),
    option(
        "nanny.tolerance",
        POSITIVE_DURATION,
        POSITIVE,
        "a worker silent this long is a runaway and is replaced",
    ),
    option(
        "death_queue.timeout",
        POSITIVE_DURATION,
        POSITIVE,
        "how long a successor may take to be ready, and an old worker to exit",
    ),
    option(
        "death_queue.retries",
        Kind::Count { min: 1, max: U32 },
        "a whole number of at least 1",
        "successors tried before a replacement is given up",
    ),
    optional(
        "pids",
        Kind::Directory,
        "a directory, or none",
        "directory for the pid files that `stop` reads (unset: none written)",
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
        "a whole number (1 to 65536)",
        "the most clients the cache manager serves at once; it refuses more",
    ),
    option(
        "cache.timeout",
        POSITIVE_DURATION,
        POSITIVE,
        "default timeout of every cache operation, and a loader's lease",
    ),
    option(
        "cache.max_lease",
        Kind::Duration {
            positive: true,
            max: Some(MAX_CACHE_LEASE),
            never: false,
        },
        "a duration of more than 0s, up to 1day, like 30s or 5m",
        "the longest a loader holds a key's lock, whatever its call's timeout: then a waiter \
         loads instead",
    ),
    option(
        "cache.spin",
        Kind::Duration {
            positive: false,
            max: Some(MAX_CACHE_SPIN),
            never: false,
        },
        "a duration from 0s to 1ms, like 50us",
        "how long the standalone cache manager looks for the next request before it sleeps",
    ),
];
