//! Command line of `cluster2-bench`.

use std::path::PathBuf;
use std::time::Duration;

pub(crate) const USAGE: &str = "\
usage: cluster2-bench <startup|rss|http|https|emitter|cache|cache-evict|redis|rolling|profile|layer|logs|scale|access-log|all> [OPTIONS]

Benchmarks cluster2's `hello` example against peers measured in the same run, and prints a
Markdown section for BENCHMARKS.md on standard output (progress goes to standard error).

  startup   exec -> \"ready\" line of `hello --workers=W` vs node's cluster module (W workers)
  rss       idle VmRSS of each worker process, same two peers (plus bare-hyper for reference)
  http      wrk throughput: hello (2 workers) vs bare-hyper (1 process) vs node cluster (2 workers)
  https     wrk throughput over TLS: hello (2 workers, tls.cert/tls.key) vs bare-hyper with
            rustls (1 process), the same certificate; every round listed
  emitter   emitter round trips and one-way throughput vs node's cluster IPC (one worker)
  cache     cache get/set from a worker vs redis-benchmark on a Unix socket (1 and 16 clients)
  cache-evict
            cache get/set with a namespace at its bound (every set evicts) vs an unbounded
            namespace, same run, order alternating (1 and 16 clients)
  redis     the cache on a Redis backend: get from a worker vs redis-benchmark on the same
            server (1 and 16 clients); single flight, 2 hosts x 2 workers x 16 callers over
            1,000 missing keys
  rolling   SIGHUP rolling restart of hello (2 workers) under wrk: failures, p99 during/before
  profile   wrk throughput of hello (1 worker) without and with a CPU profile of its worker
            (the monitor's /debug/workers/{pid}/profile, 99 Hz) running, alternately
  layer     cost of the request-counting layer per request, as a share of hello's throughput
  logs      hello (2 workers) under wrk with no log stream open vs one worker's live log
            stream open (filter info, then debug): same cluster, rotating order
  scale     the master's costs by number of workers (1, 4, 16, 32): exec -> \"ready\", its
            CPU while idle (heartbeats every second) and during an emit fan-out to every
            worker, /workers and /metrics response times, its VmRSS; every run listed
  access-log
            hello (2 workers) under wrk with the access log off and on (a file), and with
            --against an older build (off), three clusters measured in rotating order
            (at least 5 rounds); every round listed
  all       every one, in that order

Options:
  --runs N            startup: runs per peer [default: 20]
  --rss-runs N        rss: runs per peer [default: 3]
  --settle DURATION   rss: idle time between \"ready\" and reading /proc [default: 1s]
  --workers N         startup, rss: workers of hello and of the node cluster [default: 4]
  --http-workers N    http, https, logs: workers of hello and of the node cluster [default: 2]
  --rounds N          http, https, logs, profile, cache-evict, redis: rounds; each round runs every
                      server (or mode, or case) once [default: 2]
  --duration DURATION http, https, logs, profile: length of each measured wrk run (profile: and of
                      the profile, whole seconds up to 60) [default: 10s]
  --warmup DURATION   http, https: unmeasured wrk run before each measured one; logs, profile: before
                      the first (0 to skip) [default: 2s]
  --connections N     http, https, logs, profile: wrk -c [default: 64]
  --wrk-threads N     http, https, logs, profile: wrk -t [default: 2]
  --variants          http: also measure hello --workers=1, hello --threads=2, bare-hyper
                      --threads=1, and bare-hyper with, one at a time, what a cluster2 worker
                      adds (an axum Router, hyper-util's auto builder, the header read
                      timer), to see where hello's time goes; and, on a machine of 2 CPUs or
                      more, one hello worker, one bare hyper thread, and one with the Router
                      and the auto builder, each on the last CPU with wrk on the others (the
                      server's cost per CPU, apart from where the scheduler puts it)
  --max-other CPUS    http, profile: a run during which other processes kept more than this
                      many CPUs busy is disturbed, and measured again [default: 0.25]
  --retries N         http, profile: how many times a disturbed run is measured again before
                      it is kept, and counted as disturbed in the report [default: 3]
  --hello-rps N       layer: hello's requests/s to relate the cost to [default: measured]
  --scale-workers LIST
                      scale: worker counts, comma-separated [default: 1,4,16,32]
  --scale-runs N      scale: runs per worker count [default: 5]
  --window DURATION   scale: how long the master's CPU is measured, idle and during the
                      fan-out (0: skip the idle measurement) [default: 5s]
  --fanout-rate N     scale: broadcasts per second of the fan-out (0: skip it) [default: 1000]
  --against DIR       scale, access-log: a directory holding an older build's hello (and, for
                      scale, fanout-bench), measured alternately with this build's and
                      compared by ratio
  --server-cpus LIST  http, https: run every server on these CPUs only (taskset -c: 1, 0,2,
                      2-3); with --wrk-cpus, keeps the load generator off the servers' CPUs
  --wrk-cpus LIST     http, https: run wrk on these CPUs only
  --cache-baseline PATH
                      cache-evict: also run this `cache-bench` (another build's) unbounded in
                      each round, as the figure of before a change
  --timeout DURATION  longest wait for a \"ready\" line or for a stop [default: 30s]
  --node PATH         node.js binary [default: node]
  --node-script PATH  the node peer [default: bench/node/cluster-hello.js of this source tree]
  --wrk PATH          wrk binary [default: wrk]
  -h, --help          print this help

DURATION: 10s, 500ms, 1.5s, 2m (a bare number is seconds).
Build first: cargo build --release -p example-hello -p cluster2-bench
";

/// Which benchmarks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Startup,
    Rss,
    Http,
    Https,
    Emitter,
    Cache,
    CacheEvict,
    Redis,
    Rolling,
    Profile,
    Layer,
    Logs,
    Scale,
    AccessLog,
    All,
}

impl Which {
    pub(crate) fn startup(self) -> bool {
        matches!(self, Self::Startup | Self::All)
    }
    pub(crate) fn rss(self) -> bool {
        matches!(self, Self::Rss | Self::All)
    }
    pub(crate) fn http(self) -> bool {
        matches!(self, Self::Http | Self::All)
    }
    pub(crate) fn https(self) -> bool {
        matches!(self, Self::Https | Self::All)
    }
    pub(crate) fn emitter(self) -> bool {
        matches!(self, Self::Emitter | Self::All)
    }
    pub(crate) fn cache(self) -> bool {
        matches!(self, Self::Cache | Self::All)
    }
    pub(crate) fn cache_evict(self) -> bool {
        matches!(self, Self::CacheEvict | Self::All)
    }
    pub(crate) fn redis(self) -> bool {
        matches!(self, Self::Redis | Self::All)
    }
    pub(crate) fn rolling(self) -> bool {
        matches!(self, Self::Rolling | Self::All)
    }
    pub(crate) fn profile(self) -> bool {
        matches!(self, Self::Profile | Self::All)
    }
    pub(crate) fn layer(self) -> bool {
        matches!(self, Self::Layer | Self::All)
    }
    pub(crate) fn logs(self) -> bool {
        matches!(self, Self::Logs | Self::All)
    }
    pub(crate) fn scale(self) -> bool {
        matches!(self, Self::Scale | Self::All)
    }
    pub(crate) fn access_log(self) -> bool {
        matches!(self, Self::AccessLog | Self::All)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) which: Which,
    pub(crate) runs: usize,
    pub(crate) rss_runs: usize,
    pub(crate) settle: Duration,
    pub(crate) workers: usize,
    pub(crate) http_workers: usize,
    pub(crate) rounds: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) connections: usize,
    pub(crate) wrk_threads: usize,
    pub(crate) variants: bool,
    pub(crate) max_other: f64,
    pub(crate) retries: usize,
    pub(crate) timeout: Duration,
    pub(crate) node: PathBuf,
    pub(crate) node_script: PathBuf,
    pub(crate) wrk: PathBuf,
    /// `layer`: hello's requests per second; 0: measure it.
    pub(crate) hello_rps: f64,
    /// `scale`: the worker counts.
    pub(crate) scale_workers: Vec<usize>,
    pub(crate) scale_runs: usize,
    /// `scale`: how long the master's CPU is measured.
    pub(crate) window: Duration,
    /// `scale`: broadcasts per second; 0: no fan-out.
    pub(crate) fanout_rate: f64,
    /// `scale`: where an older build's `hello` and `fanout-bench` are, to compare with.
    pub(crate) against: Option<PathBuf>,
    /// `cache-evict`: another build's `cache-bench`, run unbounded beside this one's.
    pub(crate) cache_baseline: Option<PathBuf>,
    /// `http`, `https`: the CPUs the servers run on (a `taskset -c` list); none: any.
    pub(crate) server_cpus: Option<String>,
    /// `http`, `https`: the CPUs wrk runs on; none: any.
    pub(crate) wrk_cpus: Option<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Parsed {
    Run(Box<Config>),
    Help,
}

pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut which = None;
    let mut config = Config {
        which: Which::All,
        runs: 20,
        rss_runs: 3,
        settle: Duration::from_secs(1),
        workers: 4,
        http_workers: 2,
        rounds: 2,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        connections: 64,
        wrk_threads: 2,
        variants: false,
        max_other: 0.25,
        retries: 3,
        timeout: Duration::from_secs(30),
        node: PathBuf::from("node"),
        node_script: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/node/cluster-hello.js"
        )),
        wrk: PathBuf::from("wrk"),
        hello_rps: 0.0,
        scale_workers: vec![1, 4, 16, 32],
        scale_runs: 5,
        window: Duration::from_secs(5),
        fanout_rate: 1000.0,
        against: None,
        cache_baseline: None,
        server_cpus: None,
        wrk_cpus: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with('-') {
            if which.is_some() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            which = Some(match arg.as_str() {
                "startup" => Which::Startup,
                "rss" => Which::Rss,
                "http" => Which::Http,
                "https" => Which::Https,
                "emitter" => Which::Emitter,
                "cache" => Which::Cache,
                "cache-evict" => Which::CacheEvict,
                "redis" => Which::Redis,
                "rolling" => Which::Rolling,
                "profile" => Which::Profile,
                "layer" => Which::Layer,
                "logs" => Which::Logs,
                "scale" => Which::Scale,
                "access-log" => Which::AccessLog,
                "all" => Which::All,
                _ => {
                    return Err(format!(
                        "unknown benchmark {arg:?} (startup, rss, http, https, emitter, cache, \
                         cache-evict, redis, rolling, profile, layer, logs, scale, access-log \
                         or all)"
                    ));
                }
            });
            continue;
        }
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        match key.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--variants" => {
                config.variants = true;
                continue;
            }
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{key} needs a value"))?,
        };
        let count = |min: usize| -> Result<usize, String> {
            match value.parse::<usize>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(format!(
                    "{key}: expected a whole number ≥ {min}, got {value:?}"
                )),
            }
        };
        match key.as_str() {
            "--runs" => config.runs = count(1)?,
            "--rss-runs" => config.rss_runs = count(1)?,
            "--settle" => config.settle = duration(&key, &value)?,
            "--workers" => config.workers = count(1)?,
            "--http-workers" => config.http_workers = count(1)?,
            "--rounds" => config.rounds = count(1)?,
            "--duration" => {
                config.duration = duration(&key, &value)?;
                if config.duration < Duration::from_secs(1) {
                    return Err(format!("{key}: wrk needs at least 1s, got {value:?}"));
                }
            }
            "--warmup" => config.warmup = duration(&key, &value)?,
            "--connections" => config.connections = count(1)?,
            "--wrk-threads" => config.wrk_threads = count(1)?,
            "--max-other" => {
                config.max_other = match value.parse::<f64>() {
                    Ok(v) if v >= 0.0 => v,
                    _ => return Err(format!("{key}: expected a number of CPUs, got {value:?}")),
                };
            }
            "--retries" => config.retries = count(0)?,
            "--timeout" => config.timeout = duration(&key, &value)?,
            "--node" => config.node = PathBuf::from(value),
            "--node-script" => config.node_script = PathBuf::from(value),
            "--wrk" => config.wrk = PathBuf::from(value),
            "--cache-baseline" => config.cache_baseline = Some(PathBuf::from(value)),
            "--hello-rps" => {
                config.hello_rps = match value.parse::<f64>() {
                    Ok(v) if v > 0.0 => v,
                    _ => {
                        return Err(format!(
                            "{key}: expected requests per second, got {value:?}"
                        ));
                    }
                };
            }
            "--scale-workers" => {
                config.scale_workers = value
                    .split(',')
                    .map(|n| match n.trim().parse::<usize>() {
                        Ok(n) if n >= 1 => Ok(n),
                        _ => Err(format!(
                            "{key}: expected worker counts ≥ 1 separated by commas, like \
                             1,4,16,32; got {value:?}"
                        )),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--scale-runs" => config.scale_runs = count(1)?,
            "--window" => config.window = duration(&key, &value)?,
            "--fanout-rate" => {
                config.fanout_rate = match value.parse::<f64>() {
                    Ok(v) if v >= 0.0 && v.is_finite() => v,
                    _ => {
                        return Err(format!(
                            "{key}: expected broadcasts per second (0 to skip), got {value:?}"
                        ));
                    }
                };
            }
            "--against" => config.against = Some(PathBuf::from(value)),
            "--server-cpus" => config.server_cpus = Some(cpu_list(&key, &value)?),
            "--wrk-cpus" => config.wrk_cpus = Some(cpu_list(&key, &value)?),
            _ => return Err(format!("unknown option {key}")),
        }
    }
    config.which = which.ok_or(
        "which benchmark? startup, rss, http, emitter, cache, cache-evict, redis, rolling, profile, \
         layer, logs, scale or all",
    )?;
    if config.connections < config.wrk_threads {
        return Err("--connections must be at least --wrk-threads".to_owned());
    }
    Ok(Parsed::Run(Box::new(config)))
}

/// A list of CPUs as `taskset -c` takes it (`1`, `0,2`, `2-3`), of CPUs this machine has.
fn cpu_list(key: &str, value: &str) -> Result<String, String> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let bad = || {
        format!(
            "{key}: expected CPUs as taskset -c takes them (e.g. 1, 0,2 or 2-3) below {cpus}, \
             got {value:?}"
        )
    };
    for part in value.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        match (first.parse::<usize>(), last.parse::<usize>()) {
            (Ok(a), Ok(b)) if a <= b && b < cpus => {}
            _ => return Err(bad()),
        }
    }
    Ok(value.to_owned())
}

/// `10s`, `500ms`, `1.5s`, `2m`; a bare number is seconds.
pub(crate) fn duration(key: &str, value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        _ => return Err(format!("{key}: unknown unit in {value:?} (ms, s or m)")),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!(
            "{key}: expected a duration like 10s, got {value:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("k", "10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("k", "500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("k", "2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("k", "3"), Ok(Duration::from_secs(3)));
        assert!(duration("k", "3h").is_err());
        assert!(duration("k", "s").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("k", "0"), Ok("0".to_owned()));
        assert!(cpu_list("k", "0-0,0").is_ok());
        for bad in ["", "a", "1-0", "0-", ",", "0;1", "100000"] {
            assert!(cpu_list("k", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn command_line() {
        let args = ["http", "--rounds=3", "--duration", "5s", "--variants"];
        let Ok(Parsed::Run(c)) = parse(args.map(String::from)) else {
            panic!("should parse");
        };
        assert_eq!(c.which, Which::Http);
        assert_eq!(c.rounds, 3);
        assert_eq!(c.duration, Duration::from_secs(5));
        assert!(c.variants);
        assert!(parse(["--runs=2".to_owned()]).is_err());
        assert!(parse(["startup".to_owned(), "--runs=0".to_owned()]).is_err());
        let args = [
            "scale",
            "--scale-workers=2,8",
            "--window=0",
            "--fanout-rate",
            "0",
        ];
        let Ok(Parsed::Run(c)) = parse(args.map(String::from)) else {
            panic!("should parse");
        };
        assert_eq!(c.which, Which::Scale);
        assert_eq!(c.scale_workers, [2, 8]);
        assert!(c.window.is_zero());
        assert_eq!(c.fanout_rate, 0.0);
        assert!(parse(["scale".to_owned(), "--scale-workers=4,0".to_owned()]).is_err());
        assert!(parse(["scale".to_owned(), "--scale-workers=".to_owned()]).is_err());
    }
}
