//! `profile`: what a CPU profile costs the worker it samples. `hello --workers=1` under wrk,
//! with and without a profile of its worker (the monitor's `/debug/workers/{pid}/profile`, at
//! the default 99 Hz, as long as the wrk run) running, alternately in the same process.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Config;
use crate::cpu::{CpuClocks, CpuUse};
use crate::http::{Wrk, wrk};
use crate::proc::group_members;
use crate::servers::Bins;
use crate::stats::{max, median, min};

/// The monitor's cap on `seconds`.
const MAX_SECONDS: u64 = 60;

/// One wrk run, and the profile that ran beside it if any.
struct Run {
    wrk: Wrk,
    cpu: CpuUse,
    profile: Option<Profiled>,
}

/// What the monitor answered.
struct Profiled {
    status: u16,
    bytes: usize,
    /// From the request to the whole answer: the sampling, then the rendering.
    took: Duration,
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let seconds = config.duration.as_secs().clamp(1, MAX_SECONDS);
    let duration = Duration::from_secs(seconds);
    let server = bins.hello(1, &[]);
    let running = server.start(config.timeout).await?;
    let monitor = running
        .ready
        .monitor
        .ok_or("hello's ready line names no monitor address")?;
    let worker = running.ready.workers[0];
    let url = format!("http://127.0.0.1:{}/", running.ready.port);
    let group = group_members(running.proc.pid() as i32);
    eprintln!(
        "profile: {} rounds of wrk -t{} -c{} -d{seconds}s against {}, without and with a \
         {seconds} s profile of worker {worker}",
        config.rounds, config.wrk_threads, config.connections, server.label
    );
    if !config.warmup.is_zero() {
        wrk(config, &url, config.warmup).await?;
    }
    let (mut plain, mut profiled) = (Vec::new(), Vec::new());
    for round in 0..config.rounds {
        // Alternate which goes first, so that a drift of the machine favours neither.
        for with_profile in [round % 2 == 1, round % 2 == 0] {
            let before = CpuClocks::read(&group);
            let run = if with_profile {
                let path = format!("/debug/workers/{worker}/profile?seconds={seconds}");
                let (measured, answer) = tokio::join!(
                    wrk(config, &url, duration),
                    get(monitor, &path, duration + config.timeout)
                );
                let (status, bytes, took) = answer?;
                Run {
                    wrk: measured?,
                    cpu: CpuClocks::read(&group).since(&before),
                    profile: Some(Profiled {
                        status,
                        bytes,
                        took,
                    }),
                }
            } else {
                Run {
                    wrk: wrk(config, &url, duration).await?,
                    cpu: CpuClocks::read(&group).since(&before),
                    profile: None,
                }
            };
            eprintln!(
                "  round {}/{}: {:<12} {:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, CPUs server \
                 {:.2} other {:.2}{}",
                round + 1,
                config.rounds,
                if with_profile {
                    "profiled"
                } else {
                    "no profile"
                },
                run.wrk.requests_per_sec,
                run.wrk.latency_ms[0],
                run.wrk.latency_ms[3],
                run.cpu.server,
                run.cpu.other + run.cpu.steal,
                run.profile.as_ref().map_or_else(String::new, |p| format!(
                    ", profile: HTTP {}, {} bytes in {:.1} s",
                    p.status,
                    p.bytes,
                    p.took.as_secs_f64()
                )),
            );
            if let Some(p) = run.profile.as_ref().filter(|p| p.status != 200) {
                return Err(format!("the profile request failed with HTTP {}", p.status));
            }
            if with_profile {
                profiled.push(run);
            } else {
                plain.push(run);
            }
        }
    }
    running.proc.stop(config.timeout).await?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### profile: `wrk -t{} -c{} -d{seconds}s` against `hello --workers=1`, without and with \
         a {seconds} s CPU profile of its worker at 99 Hz ({} rounds, medians)\n",
        config.wrk_threads, config.connections, config.rounds
    );
    let _ = writeln!(
        md,
        "| worker | requests/s | rounds (min – max) | latency p50 | p99 | CPUs busy: server / other |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|");
    for (label, runs) in [("not profiled", &plain), ("profiled", &profiled)] {
        let pick = |f: fn(&Run) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
        let r = pick(|m| m.wrk.requests_per_sec);
        let _ = writeln!(
            md,
            "| {label} | {:.0} | {:.0} – {:.0} | {:.2} ms | {:.2} ms | {:.2} / {:.2} |",
            median(&r),
            min(&r),
            max(&r),
            median(&pick(|m| m.wrk.latency_ms[0])),
            median(&pick(|m| m.wrk.latency_ms[3])),
            median(&pick(|m| m.cpu.server)),
            median(&pick(|m| m.cpu.other + m.cpu.steal)),
        );
    }
    let base = median(
        &plain
            .iter()
            .map(|m| m.wrk.requests_per_sec)
            .collect::<Vec<_>>(),
    );
    let with = median(
        &profiled
            .iter()
            .map(|m| m.wrk.requests_per_sec)
            .collect::<Vec<_>>(),
    );
    let answers: Vec<&Profiled> = profiled.iter().filter_map(|m| m.profile.as_ref()).collect();
    let _ = writeln!(
        md,
        "\nThroughput while profiled: **{:.1} %** of the unprofiled figure (a drop of {:.1} %). \
         The SVG answers were {} bytes (median) and came {:.1} s (median) after the request, \
         the sampling included.",
        100.0 * with / base,
        100.0 * (1.0 - with / base),
        median(&answers.iter().map(|p| p.bytes as f64).collect::<Vec<_>>()),
        median(
            &answers
                .iter()
                .map(|p| p.took.as_secs_f64())
                .collect::<Vec<_>>()
        ),
    );
    Ok(md)
}

/// `GET path` on the monitor: the status, the bytes of the whole response, and how long it
/// took.
async fn get(
    monitor: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, usize, Duration), String> {
    let start = Instant::now();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(monitor).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    let bytes = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from the monitor to {path} within {timeout:?}"))?
        .map_err(|e| format!("GET {path} on the monitor: {e}"))?;
    let status = std::str::from_utf8(&bytes[..bytes.len().min(32)])
        .ok()
        .and_then(|head| head.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
    Ok((status, bytes.len(), start.elapsed()))
}
