//! `logs`: what watching a worker's live log lines costs hello's throughput. One cluster of
//! `hello` serves every run: wrk with no log stream open, then with a client reading one
//! worker's `/debug/workers/{pid}/logs` while that worker's filter is `info` (the default),
//! then `debug`; several rounds, rotating the order, medians compared.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::retry::Disturbance;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::cli::Config;
use crate::cpu::{CpuClocks, CpuUse};
use crate::http::{Wrk, sample_connections, wrk};
use crate::proc::group_members;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::{max, median, min};

/// Streaming a worker's lines may cost at most this share of the throughput.
const TARGET: f64 = 0.97;

/// What one run measures against.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// No stream open; the worker's filter is `info`.
    Closed,
    /// A client reads the worker's lines; the worker's filter is this one.
    Streaming(&'static str),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Self::Closed => "no log stream open".to_owned(),
            Self::Streaming(filter) => format!("one worker's logs streaming, filter `{filter}`"),
        }
    }
}

struct Run {
    wrk: Wrk,
    cpu: CpuUse,
    cpu_us_per_request: f64,
    /// Lines and drop counts the stream brought during the run.
    lines: u64,
    dropped: u64,
    /// Established connections of each worker, halfway through the run: wrk's connections
    /// are shared out anew in each run, and an uneven share moves the throughput more than
    /// anything measured here.
    connections: Vec<usize>,
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let mon_port = free_port()?;
    let server = bins.hello(config.http_workers, &[&format!("--mon-port={mon_port}")]);
    let running = server.start(config.timeout).await?;
    let monitor = SocketAddr::from(([127, 0, 0, 1], mon_port));
    let url = format!("http://127.0.0.1:{}/", running.ready.port);
    let workers = running.ready.workers.clone();
    let watched = workers[0];
    let modes = [
        Mode::Closed,
        Mode::Streaming("info"),
        Mode::Streaming("debug"),
    ];
    eprintln!(
        "logs: {} rounds of wrk -t{} -c{} -d{:?} against one hello cluster, worker {watched} \
         watched or not, rotating the order",
        config.rounds, config.wrk_threads, config.connections, config.duration
    );
    if !config.warmup.is_zero() {
        wrk(config, &url, config.warmup).await?;
    }
    let group = group_members(running.proc.pid() as i32);
    let target = Target {
        url: &url,
        port: running.ready.port,
        monitor,
        workers: &workers,
        group: &group,
    };
    let mut runs: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    let mut disturbance = Disturbance::default();
    for round in 0..config.rounds {
        for k in 0..modes.len() {
            let i = (round + k) % modes.len();
            let mut attempt = 0;
            loop {
                let run = measure(config, &target, modes[i]).await?;
                let noisy = run.cpu.other + run.cpu.steal > config.max_other;
                eprintln!(
                    "  round {}/{}: {:<48} {:>7.0} req/s, p99 {:.2} ms, {:.1} µs CPU/req, \
                     CPUs server {:.2} wrk {:.2} other {:.2}, connections {:?}, {} lines \
                     streamed, {} dropped{}",
                    round + 1,
                    config.rounds,
                    modes[i].label(),
                    run.wrk.requests_per_sec,
                    run.wrk.latency_ms[3],
                    run.cpu_us_per_request,
                    run.cpu.server,
                    run.cpu.wrk,
                    run.cpu.other + run.cpu.steal,
                    run.connections,
                    run.lines,
                    run.dropped,
                    if noisy { " (disturbed)" } else { "" }
                );
                if disturbance
                    .measure_again(noisy, &mut attempt, config.retries)
                    .await
                {
                    continue;
                }
                runs[i].push(run);
                break;
            }
        }
    }
    running.proc.stop(config.timeout).await?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### logs: hello (`--workers={}`) under `wrk -t{} -c{} -d{}s`, with and without one \
         worker's live log stream ({} rounds, medians)\n",
        config.http_workers,
        config.wrk_threads,
        config.connections,
        config.duration.as_secs_f64(),
        config.rounds
    );
    let _ = writeln!(
        md,
        "| run | requests/s | rounds (min – max) | vs no stream | latency p99 | server CPU per \
         request | connections per worker | lines streamed | dropped | errors |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let rps: Vec<f64> = runs
        .iter()
        .map(|r| median(&r.iter().map(|r| r.wrk.requests_per_sec).collect::<Vec<_>>()))
        .collect();
    for ((mode, samples), &r) in modes.iter().zip(&runs).zip(&rps) {
        let pick = |f: fn(&Run) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
        let all = pick(|r| r.wrk.requests_per_sec);
        let _ = writeln!(
            md,
            "| {} | {r:.0} | {:.0} – {:.0} | {:.3}× | {:.2} ms | {:.1} µs | {} | {} | {} | {} |",
            mode.label(),
            min(&all),
            max(&all),
            r / rps[0],
            median(&pick(|r| r.wrk.latency_ms[3])),
            median(&pick(|r| r.cpu_us_per_request)),
            samples
                .iter()
                .map(|r| {
                    let c: Vec<String> = r.connections.iter().map(usize::to_string).collect();
                    c.join("/")
                })
                .collect::<Vec<_>>()
                .join(", "),
            samples.iter().map(|r| r.lines).sum::<u64>(),
            samples.iter().map(|r| r.dropped).sum::<u64>(),
            samples.iter().map(|r| r.wrk.errors).sum::<u64>(),
        );
    }
    for (mode, &r) in modes.iter().zip(&rps).skip(1) {
        let ratio = r / rps[0];
        let _ = writeln!(
            md,
            "\n{} / no stream: **{ratio:.3}×** (target ≥ {TARGET}: **{}**).",
            mode.label(),
            met(ratio >= TARGET)
        );
    }
    if runs.iter().flatten().all(|r| r.lines == 0) {
        let _ = writeln!(
            md,
            "\nhello logs nothing per request, at `info` or `debug` (hyper has no tracing; axum \
             traces only rejected requests): the streaming runs measure a worker whose \
             forwarding is switched on, with a client connected to the master, and no line to \
             carry."
        );
    }
    let Disturbance {
        redone,
        kept: disturbed,
    } = disturbance;
    let _ = writeln!(
        md,
        "\nRuns measured again because other processes kept more than {} CPUs busy: {redone}; \
         kept although disturbed: {disturbed}.",
        config.max_other
    );
    Ok(md)
}

/// The cluster under test.
struct Target<'a> {
    url: &'a str,
    port: u16,
    monitor: SocketAddr,
    /// The first one is watched.
    workers: &'a [u32],
    /// Every process of the cluster, for their CPU time.
    group: &'a [i32],
}

/// One wrk run in `mode`: the first worker's filter set, its stream opened (or not), wrk, the
/// stream closed.
async fn measure(config: &Config, target: &Target<'_>, mode: Mode) -> Result<Run, String> {
    let Target {
        url,
        port,
        monitor,
        workers,
        group,
    } = *target;
    let pid = workers[0];
    let filter = match mode {
        Mode::Closed => "info",
        Mode::Streaming(filter) => filter,
    };
    post(monitor, &format!("/debug/workers/{pid}/log-level"), filter).await?;
    let stream = match mode {
        Mode::Closed => None,
        Mode::Streaming(_) => Some(LogStream::open(monitor, pid).await?),
    };
    let before = CpuClocks::read(group);
    let (wrk, connections) = tokio::join!(
        wrk(config, url, config.duration),
        sample_connections(port, workers, config.duration / 2),
    );
    let wrk = wrk?;
    let cpu = CpuClocks::read(group).since(&before);
    let (lines, dropped) = stream.map_or((0, 0), LogStream::close);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Run {
        cpu_us_per_request: cpu.server * cpu.wall * 1e6 / wrk.requests.max(1) as f64,
        cpu,
        lines,
        dropped,
        connections,
        wrk,
    })
}

/// A client reading one process's log stream and counting what it brings.
struct LogStream {
    reader: JoinHandle<()>,
    lines: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl LogStream {
    async fn open(monitor: SocketAddr, pid: u32) -> Result<Self, String> {
        let mut stream = TcpStream::connect(monitor)
            .await
            .map_err(|e| format!("cannot connect to the monitor at {monitor}: {e}"))?;
        let request = format!(
            "GET /debug/workers/{pid}/logs HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot ask for the log stream: {e}"))?;
        let mut reader = BufReader::new(stream).lines();
        let status = reader
            .next_line()
            .await
            .map_err(|e| format!("no answer to the log stream request: {e}"))?
            .unwrap_or_default();
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("the log stream of pid {pid} was refused: {status}"));
        }
        let (lines, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (l, d) = (lines.clone(), dropped.clone());
        let reader = tokio::spawn(async move {
            let mut dropped_event = false;
            while let Ok(Some(line)) = reader.next_line().await {
                if line.starts_with("event: dropped") {
                    dropped_event = true;
                } else if let Some(data) = line.strip_prefix("data: ") {
                    if std::mem::take(&mut dropped_event) {
                        d.fetch_add(data.trim().parse().unwrap_or(0), Ordering::Relaxed);
                    } else {
                        l.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self {
            reader,
            lines,
            dropped,
        })
    }

    /// Closes the stream; the lines and drops it counted.
    fn close(self) -> (u64, u64) {
        self.reader.abort();
        (
            self.lines.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// `POST path` with `body` on the monitor; an error unless it answers 200.
async fn post(monitor: SocketAddr, path: &str, body: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(monitor)
        .await
        .map_err(|e| format!("cannot connect to the monitor at {monitor}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("POST {path} with {body:?}: {answer}"))
    }
}

/// A port nobody listens on right now, for the monitor.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}
