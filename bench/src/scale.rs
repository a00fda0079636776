//! `scale`: how the master's costs grow with the number of workers. For each worker count
//! (1, 4, 16, 32 by default), several runs of `hello --heartbeat-interval=1s`, each measuring
//! the time from exec to "ready", the master's CPU while idle, the monitor's `/workers` and
//! `/metrics` response times and the master's VmRSS; then runs of `fanout-bench`, whose master
//! emits to every worker at a fixed rate, for the master's CPU under a fan-out. Every run is
//! reported, not only the medians. With `--against DIR`, an older build's `hello` and
//! `fanout-bench` (copied to DIR) are measured alternately with this one's in the same
//! minutes, and compared by ratio.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Config;
use crate::cpu;
use crate::ipc::json_line;
use crate::proc::Proc;
use crate::report::{load_average, ms};
use crate::retry::Disturbance;
use crate::servers::{Bins, Server};
use crate::stats::{max, median, min};

/// How long the machine is watched for other work around each start.
const PROBE: Duration = Duration::from_millis(200);
/// Monitor requests per endpoint and run; the run's figure is their median.
const REQUESTS: usize = 20;
/// From "ready" to the idle measurement: every worker's first heartbeat has arrived.
const SETTLE: Duration = Duration::from_millis(1500);
/// The target for the time to ready with 32 workers.
const TARGET_READY_32_MS: f64 = 60.0;

/// One run of `hello` with some number of workers.
#[derive(Debug, Clone, Copy)]
struct HelloRun {
    ready_ms: f64,
    /// Other processes' CPUs around the start (the disturbance probe).
    others: f64,
    /// The master's CPU while idle, percent of one CPU.
    idle_cpu: f64,
    workers_ms: f64,
    metrics_ms: f64,
    /// The master's VmRSS, KiB.
    rss_kib: f64,
    load: f64,
}

/// One run of `fanout-bench`.
#[derive(Debug, Clone, Copy)]
struct FanoutRun {
    /// The master's CPU during the fan-out, percent of one CPU.
    cpu: f64,
    /// The master's CPU per message delivered to one worker, in µs.
    per_message_us: f64,
    broadcasts: u64,
    delivered: u64,
    expected: u64,
    load: f64,
}

/// A build under test (its `hello` and `fanout-bench`) and its runs, per worker count.
struct Candidate {
    name: String,
    hello: PathBuf,
    fanout: PathBuf,
    runs: Vec<Vec<HelloRun>>,
    fanout_runs: Vec<Vec<FanoutRun>>,
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let counts = &config.scale_workers;
    let mut candidates = vec![Candidate {
        name: "this build".to_owned(),
        hello: bins.hello.clone(),
        fanout: bins.fanout_bench.clone(),
        runs: vec![Vec::new(); counts.len()],
        fanout_runs: vec![Vec::new(); counts.len()],
    }];
    if let Some(dir) = &config.against {
        let (hello, fanout) = (dir.join("hello"), dir.join("fanout-bench"));
        if !hello.is_file() || !fanout.is_file() {
            return Err(format!(
                "--against: {} must hold an older build's `hello` and `fanout-bench`",
                dir.display()
            ));
        }
        // Named after the directory (a commit, say), not its whole path.
        let name = dir.file_name().unwrap_or(dir.as_os_str()).to_string_lossy();
        candidates.push(Candidate {
            name: format!("the build in `{name}`"),
            hello,
            fanout,
            runs: vec![Vec::new(); counts.len()],
            fanout_runs: vec![Vec::new(); counts.len()],
        });
    }
    let mut disturbance = Disturbance::default();
    eprintln!(
        "scale: workers {counts:?}, {} runs each, CPU windows of {:?}",
        config.scale_runs, config.window
    );
    for (i, &workers) in counts.iter().enumerate() {
        for run in 0..config.scale_runs {
            // Which build goes first alternates, so neither always starts on a quieter machine.
            let mut order: Vec<usize> = (0..candidates.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for c in order {
                let candidate = &mut candidates[c];
                let server = Server {
                    label: format!("{} --workers={workers}", candidate.name),
                    program: candidate.hello.clone(),
                    args: vec![
                        format!("--workers={workers}"),
                        // 32 workers on a small machine is past the default bound per CPU.
                        "--force-workers".to_owned(),
                        "--port=0".to_owned(),
                        "--mon-port=0".to_owned(),
                        "--heartbeat-interval=1s".to_owned(),
                    ],
                    cpus: None,
                    wrk_cpus: None,
                };
                let measured = hello_run(config, &server, &mut disturbance).await?;
                eprintln!(
                    "  {workers:>2} workers, run {}/{}, {}: ready {:.1} ms, idle master {:.2} %, \
                     /workers {:.2} ms, /metrics {:.2} ms, master VmRSS {:.1} MiB (load {:.2})",
                    run + 1,
                    config.scale_runs,
                    candidate.name,
                    measured.ready_ms,
                    measured.idle_cpu,
                    measured.workers_ms,
                    measured.metrics_ms,
                    measured.rss_kib / 1024.0,
                    measured.load,
                );
                candidate.runs[i].push(measured);
            }
            if config.fanout_rate > 0.0 {
                let mut order: Vec<usize> = (0..candidates.len()).collect();
                if run % 2 == 1 {
                    order.reverse();
                }
                for c in order {
                    let candidate = &mut candidates[c];
                    let measured = fanout_run(config, &candidate.fanout, workers).await?;
                    eprintln!(
                        "  {workers:>2} workers, run {}/{}, {}, fan-out: master {:.1} % at {} \
                         broadcasts/s ({:.2} µs per message; delivered {} of {}) (load {:.2})",
                        run + 1,
                        config.scale_runs,
                        candidate.name,
                        measured.cpu,
                        config.fanout_rate,
                        measured.per_message_us,
                        measured.delivered,
                        measured.expected,
                        measured.load,
                    );
                    candidate.fanout_runs[i].push(measured);
                }
            }
        }
    }
    Ok(report(config, &candidates, disturbance))
}

/// Starts `server`, waits for "ready" (measured again when other work disturbed the start),
/// lets it settle, measures, stops it.
async fn hello_run(
    config: &Config,
    server: &Server,
    disturbance: &mut Disturbance,
) -> Result<HelloRun, String> {
    let mut attempt = 0;
    let (running, others) = loop {
        let before = cpu::others_busy(PROBE).await;
        let running = server.start(config.timeout).await?;
        let others = before;
        let noisy = others > config.max_other;
        if disturbance
            .measure_again(noisy, &mut attempt, config.retries)
            .await
        {
            running.proc.stop(config.timeout).await?;
            continue;
        }
        break (running, others);
    };
    let ready_ms = running.startup.as_secs_f64() * 1000.0;
    let master = running.proc.pid();
    let monitor = running
        .ready
        .monitor
        .ok_or_else(|| format!("{}: no monitor address in the ready line", server.label))?;
    let measured = async {
        tokio::time::sleep(SETTLE).await;
        let idle_cpu = if config.window.is_zero() {
            f64::NAN
        } else {
            let before = ThreadClocks::read(master)?;
            let t = Instant::now();
            tokio::time::sleep(config.window).await;
            let used = ThreadClocks::read(master)?.since(&before);
            used / t.elapsed().as_secs_f64() * 100.0
        };
        let workers_ms = timed_gets(monitor, "/workers").await?;
        let metrics_ms = timed_gets(monitor, "/metrics").await?;
        let rss_kib = vm_rss(master)?;
        Ok::<_, String>(HelloRun {
            ready_ms,
            others,
            idle_cpu,
            workers_ms,
            metrics_ms,
            rss_kib,
            load: load_1min(),
        })
    }
    .await;
    running.proc.stop(config.timeout).await?;
    measured
}

async fn fanout_run(config: &Config, program: &Path, workers: usize) -> Result<FanoutRun, String> {
    let seconds = config.window.as_secs_f64().max(1.0);
    let args = [
        format!("--workers={workers}"),
        "--force-workers".to_owned(),
        "--log.level=warn".to_owned(),
        "--".to_owned(),
        config.fanout_rate.to_string(),
        seconds.to_string(),
    ];
    let p = Proc::spawn("fanout-bench", program, &args)?;
    let out = p.output(config.timeout + config.window * 2).await?;
    let v = json_line(&out)?;
    let get = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {v}"));
    let cpu_secs = get("master_cpu_secs")?;
    let delivered = get("delivered")? as u64;
    Ok(FanoutRun {
        cpu: cpu_secs / get("seconds")? * 100.0,
        per_message_us: cpu_secs * 1e6 / (delivered.max(1) as f64),
        broadcasts: get("broadcasts")? as u64,
        delivered,
        expected: get("expected")? as u64,
        load: load_1min(),
    })
}

/// CPU time of every thread of a process, in nanoseconds, from `/proc/PID/task/*/schedstat`
/// (exact, where `/proc/PID/stat` counts in 10 ms ticks: too coarse for a master that idles
/// at a fraction of a percent). Threads are keyed by id so that one started during the
/// window counts from zero.
struct ThreadClocks(std::collections::BTreeMap<u32, u64>);

impl ThreadClocks {
    fn read(pid: u32) -> Result<Self, String> {
        let dir = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| format!("cannot read /proc/{pid}/task: {e}"))?;
        let mut clocks = std::collections::BTreeMap::new();
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = text.split_whitespace().next().and_then(|n| n.parse().ok()) {
                clocks.insert(tid, ns);
            }
        }
        Ok(Self(clocks))
    }

    /// Seconds of CPU used between `before` and `self`.
    fn since(&self, before: &Self) -> f64 {
        let ns: u64 = self
            .0
            .iter()
            .map(|(tid, now)| now.saturating_sub(before.0.get(tid).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e9
    }
}

/// The median time of [`REQUESTS`] sequential GETs of `path` on the monitor, each on a new
/// connection (after one unmeasured), in ms.
async fn timed_gets(monitor: SocketAddr, path: &str) -> Result<f64, String> {
    get(monitor, path).await?;
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let t = Instant::now();
        get(monitor, path).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&times))
}

/// One GET on its own connection, read to the end; an error unless the answer is a 200.
async fn get(monitor: SocketAddr, path: &str) -> Result<(), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(monitor).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::with_capacity(16 * 1024);
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET {path}: no answer within 10s"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
    if !response.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned();
        return Err(format!("GET {path}: {head}"));
    }
    Ok(())
}

fn vm_rss(pid: u32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for pid {pid}"))
}

fn load_1min() -> f64 {
    load_average()
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(f64::NAN)
}

fn report(config: &Config, candidates: &[Candidate], disturbance: Disturbance) -> String {
    let counts = &config.scale_workers;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### scale: the master's costs by number of workers ({} runs each, CPU windows of {:?})\n",
        config.scale_runs, config.window
    );
    let _ = writeln!(
        md,
        "`hello --workers=W --force-workers --port=0 --mon-port=0 --heartbeat-interval=1s`: exec → \"ready\"; \
         the master's CPU (all its threads, `/proc/PID/task/*/schedstat`) over the window, from \
         {:.1} s after \"ready\"; median of {REQUESTS} sequential GETs of `/workers` and of \
         `/metrics` (each on a new connection); the master's VmRSS. Per run, in run order; \
         `load` is the 1-minute load average after the run, `others` the CPUs other processes \
         kept busy just before the start.\n",
        SETTLE.as_secs_f64()
    );
    for candidate in candidates {
        let _ = writeln!(md, "#### {}\n", candidate.name);
        let _ = writeln!(
            md,
            "| workers | run | ready | idle master CPU | /workers | /metrics | master VmRSS | \
             others | load |"
        );
        let _ = writeln!(md, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for (i, runs) in candidate.runs.iter().enumerate() {
            for (r, run) in runs.iter().enumerate() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.1} MiB | {:.2} | {:.2} |",
                    counts[i],
                    r + 1,
                    ms(run.ready_ms),
                    percent(run.idle_cpu),
                    run.workers_ms,
                    run.metrics_ms,
                    run.rss_kib / 1024.0,
                    run.others,
                    run.load,
                );
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| workers | ready, median (min–max) | idle master CPU, median | /workers, median | \
             /metrics, median | master VmRSS, median |"
        );
        let _ = writeln!(md, "|--:|--:|--:|--:|--:|--:|");
        for (i, runs) in candidate.runs.iter().enumerate() {
            let pick = |f: fn(&HelloRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
            let ready = pick(|r| r.ready_ms);
            let _ = writeln!(
                md,
                "| {} | {} ({}–{}) | {} | {:.2} ms | {:.2} ms | {:.1} MiB |",
                counts[i],
                ms(median(&ready)),
                ms(min(&ready)),
                ms(max(&ready)),
                percent(median(&pick(|r| r.idle_cpu))),
                median(&pick(|r| r.workers_ms)),
                median(&pick(|r| r.metrics_ms)),
                median(&pick(|r| r.rss_kib)) / 1024.0,
            );
        }
        let _ = writeln!(md);
        growth(&mut md, counts, &candidate.runs);
    }
    if let [ours, theirs] = candidates {
        let _ = writeln!(
            md,
            "#### {} / {} (medians; below 1: this build is faster or smaller)\n",
            ours.name, theirs.name
        );
        let _ = writeln!(
            md,
            "| workers | ready | idle master CPU | /workers | /metrics | master VmRSS | master \
             CPU in the fan-out |"
        );
        let _ = writeln!(md, "|--:|--:|--:|--:|--:|--:|--:|");
        for (i, workers) in counts.iter().enumerate() {
            let (a, b) = (&ours.runs[i], &theirs.runs[i]);
            let ratio = |f: fn(&HelloRun) -> f64| {
                let m = |runs: &[HelloRun]| median(&runs.iter().map(f).collect::<Vec<_>>());
                times(m(a) / m(b))
            };
            let fanout =
                |c: &Candidate| median(&c.fanout_runs[i].iter().map(|r| r.cpu).collect::<Vec<_>>());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                workers,
                ratio(|r| r.ready_ms),
                ratio(|r| r.idle_cpu),
                ratio(|r| r.workers_ms),
                ratio(|r| r.metrics_ms),
                ratio(|r| r.rss_kib),
                times(fanout(ours) / fanout(theirs)),
            );
        }
        let _ = writeln!(md);
    }
    if config.fanout_rate > 0.0 {
        let seconds = config.window.as_secs_f64().max(1.0);
        let _ = writeln!(
            md,
            "#### emit fan-out: `fanout-bench --workers=W -- {} {seconds}`\n\n\
             The master emits to `Target::AllWorkers` {} times a second for {seconds:.0} s; its \
             CPU (`getrusage`, all threads) over that time, and per message delivered to one \
             worker. Per run, in run order.\n",
            config.fanout_rate, config.fanout_rate,
        );
        for candidate in candidates {
            fanout_table(&mut md, counts, candidate);
        }
    }
    let Disturbance { redone, kept } = disturbance;
    let _ = writeln!(
        md,
        "Starts measured again because other processes kept more than {} CPUs busy just before: \
         {redone}; kept although disturbed: {kept}.  ",
        config.max_other
    );
    if let Some(i) = counts.iter().position(|&w| w == 32) {
        let ready = median(
            &candidates[0].runs[i]
                .iter()
                .map(|r| r.ready_ms)
                .collect::<Vec<_>>(),
        );
        let _ = writeln!(
            md,
            "Target: ready ≤ {TARGET_READY_32_MS:.0} ms with 32 workers (median {}): **{}**.",
            ms(ready),
            crate::report::met(ready <= TARGET_READY_32_MS)
        );
    }
    md
}

/// How each figure grows from the smallest worker count to the largest, against the workers'
/// own growth: a ratio well above the workers' says the cost grows faster than linearly.
fn growth(md: &mut String, counts: &[usize], runs: &[Vec<HelloRun>]) {
    let (Some(first), Some(last)) = (counts.first(), counts.last()) else {
        return;
    };
    if counts.len() < 2 || runs.iter().any(Vec::is_empty) {
        return;
    }
    let m = |i: usize, f: fn(&HelloRun) -> f64| median(&runs[i].iter().map(f).collect::<Vec<_>>());
    let n = counts.len() - 1;
    let grow = |f: fn(&HelloRun) -> f64| {
        let g = m(n, f) / m(0, f);
        if g.is_finite() {
            format!("{g:.1}×")
        } else {
            "–".to_owned()
        }
    };
    let _ = writeln!(
        md,
        "From {first} to {last} workers ({:.0}× the workers): ready {}, idle master CPU {}, \
         /workers {}, /metrics {}, master VmRSS {}.\n",
        *last as f64 / *first as f64,
        grow(|r| r.ready_ms),
        grow(|r| r.idle_cpu),
        grow(|r| r.workers_ms),
        grow(|r| r.metrics_ms),
        grow(|r| r.rss_kib),
    );
}

fn fanout_table(md: &mut String, counts: &[usize], candidate: &Candidate) {
    let _ = writeln!(
        md,
        "{}:\n\n| workers | run | master CPU | per message | broadcasts | delivered / expected \
         | load |",
        candidate.name
    );
    let _ = writeln!(md, "|--:|--:|--:|--:|--:|--:|--:|");
    for (i, runs) in candidate.fanout_runs.iter().enumerate() {
        for (r, run) in runs.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} % | {:.2} µs | {} | {} / {} | {:.2} |",
                counts[i],
                r + 1,
                run.cpu,
                run.per_message_us,
                run.broadcasts,
                run.delivered,
                run.expected,
                run.load,
            );
        }
    }
    let _ = writeln!(
        md,
        "\n| workers | master CPU, median | per message, median |\n|--:|--:|--:|"
    );
    for (i, runs) in candidate.fanout_runs.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {:.1} % | {:.2} µs |",
            counts[i],
            median(&runs.iter().map(|r| r.cpu).collect::<Vec<_>>()),
            median(&runs.iter().map(|r| r.per_message_us).collect::<Vec<_>>()),
        );
    }
    let _ = writeln!(md);
}

/// A percentage, or a dash for a figure not measured (NaN).
fn percent(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else {
        format!("{v:.2} %")
    }
}

/// A ratio, or a dash where a figure was not measured.
fn times(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}×")
    } else {
        "–".to_owned()
    }
}
