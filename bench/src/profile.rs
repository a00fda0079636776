//! `profile`: what a CPU profile costs the worker it samples. `hello --workers=1` under wrk,
//! with and without a profile of its worker (the monitor's `/debug/workers/{pid}/profile`, at
//! the default 99 Hz, as long as the wrk run) running, alternately in the same process.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::retry::Disturbance;

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
    /// Over the wrk run only: not the rendering of the profile, which follows its sampling.
    cpu: CpuUse,
    profile: Option<Profiled>,
}

impl Run {
    /// CPU time the server's processes used per request, in microseconds.
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu.server * self.cpu.wall * 1e6 / self.wrk.requests.max(1) as f64
    }
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
    let path = format!("/debug/workers/{worker}/profile?seconds={seconds}");
    eprintln!(
        "profile: {} rounds of wrk -t{} -c{} -d{seconds}s against {}, without and with a \
         {seconds} s profile of worker {worker}",
        config.rounds, config.wrk_threads, config.connections, server.label
    );
    if !config.warmup.is_zero() {
        wrk(config, &url, config.warmup).await?;
    }
    let (mut plain, mut profiled) = (Vec::new(), Vec::new());
    let mut disturbance = Disturbance::default();
    for round in 0..config.rounds {
        // Alternate which goes first, so that a drift of the machine favours neither.
        for with_profile in [round % 2 == 1, round % 2 == 0] {
            let mut attempt = 0;
            let run = loop {
                let profile = with_profile.then_some((monitor, path.as_str()));
                let run = measure(config, &url, &group, duration, profile).await?;
                let noisy = run.cpu.other + run.cpu.steal > config.max_other;
                eprintln!(
                    "  round {}/{}: {:<8} {:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} µs \
                     CPU/req, CPUs server {:.2} other {:.2}{}{}",
                    round + 1,
                    config.rounds,
                    if with_profile { "profiled" } else { "plain" },
                    run.wrk.requests_per_sec,
                    run.wrk.latency_ms[0],
                    run.wrk.latency_ms[3],
                    run.cpu_us_per_request(),
                    run.cpu.server,
                    run.cpu.other + run.cpu.steal,
                    run.profile.as_ref().map_or_else(String::new, |p| format!(
                        ", profile: HTTP {}, {} bytes in {:.2} s",
                        p.status,
                        p.bytes,
                        p.took.as_secs_f64()
                    )),
                    if noisy { " (disturbed)" } else { "" }
                );
                if let Some(p) = run.profile.as_ref().filter(|p| p.status != 200) {
                    return Err(format!("the profile request failed with HTTP {}", p.status));
                }
                if disturbance
                    .measure_again(noisy, &mut attempt, config.retries)
                    .await
                {
                    continue;
                }
                break run;
            };
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
        "| worker | requests/s | rounds (min – max) | latency p50 | p99 | server CPU per request \
         | CPUs busy: server / other |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|");
    for (label, runs) in [("not profiled", &plain), ("profiled", &profiled)] {
        let pick = |f: fn(&Run) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
        let r = pick(|m| m.wrk.requests_per_sec);
        let _ = writeln!(
            md,
            "| {label} | {:.0} | {:.0} – {:.0} | {:.2} ms | {:.2} ms | {:.1} µs | {:.2} / {:.2} |",
            median(&r),
            min(&r),
            max(&r),
            median(&pick(|m| m.wrk.latency_ms[0])),
            median(&pick(|m| m.wrk.latency_ms[3])),
            median(&pick(Run::cpu_us_per_request)),
            median(&pick(|m| m.cpu.server)),
            median(&pick(|m| m.cpu.other + m.cpu.steal)),
        );
    }
    let of = |f: fn(&Run) -> f64| {
        let pick = |runs: &[Run]| median(&runs.iter().map(f).collect::<Vec<_>>());
        100.0 * pick(&profiled) / pick(&plain)
    };
    let answers: Vec<&Profiled> = profiled.iter().filter_map(|m| m.profile.as_ref()).collect();
    let _ = writeln!(
        md,
        "\nWhile profiled: requests/s **{:.1} %** of the unprofiled figure, server CPU per \
         request **{:.1} %** of it. The SVG answers were {:.0} bytes (median) and came {:.2} s \
         (median) after the {seconds} s of sampling.  ",
        of(|m| m.wrk.requests_per_sec),
        of(Run::cpu_us_per_request),
        median(&answers.iter().map(|p| p.bytes as f64).collect::<Vec<_>>()),
        median(
            &answers
                .iter()
                .map(|p| p.took.as_secs_f64() - seconds as f64)
                .collect::<Vec<_>>()
        ),
    );
    let _ = writeln!(md, "{}", disturbance.summary(config.max_other));
    Ok(md)
}

/// One wrk run of `duration`; with `profile` (the monitor and the path), a profile requested
/// at the same moment.
async fn measure(
    config: &Config,
    url: &str,
    group: &[i32],
    duration: Duration,
    profile: Option<(SocketAddr, &str)>,
) -> Result<Run, String> {
    let before = CpuClocks::read(group);
    let traffic = async {
        let measured = wrk(config, url, duration).await;
        (measured, CpuClocks::read(group).since(&before))
    };
    let Some((monitor, path)) = profile else {
        let (measured, cpu) = traffic.await;
        return Ok(Run {
            wrk: measured?,
            cpu,
            profile: None,
        });
    };
    let ((measured, cpu), answer) =
        tokio::join!(traffic, get(monitor, path, duration + config.timeout));
    let (status, bytes, took) = answer?;
    Ok(Run {
        wrk: measured?,
        cpu,
        profile: Some(Profiled {
            status,
            bytes,
            took,
        }),
    })
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
