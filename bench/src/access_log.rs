//! `access-log`: what the access log costs `hello` (2 workers) under wrk with keep-alive.
//! Three clusters run side by side for the whole benchmark, and each round measures every one
//! once, in an order that rotates from round to round: this build with the access log off
//! (the default), this build with `--log.access` writing to a file (emptied after each run, so
//! that the disk is not filled), and, with `--against DIR`, another build's `hello` (found in
//! DIR: the build before the access log existed) with its defaults, for the cost of the
//! feature while off.
//! Every round is reported, then the medians and their ratios.

use std::fmt::Write as _;

use crate::cli::Config;
use crate::cpu::{CpuClocks, CpuUse};
use crate::http::{Wrk, wrk};
use crate::proc::group_members;
use crate::retry::Disturbance;
use crate::servers::{Bins, Running, Server};
use crate::stats::{max, median, min};

/// The fewest rounds this benchmark runs: the difference it looks for is a few percent.
const MIN_ROUNDS: usize = 5;
/// The targets: on, at most 5 % fewer requests/s than off; off, no cost at all.
const TARGET_ON: f64 = 0.95;

/// One configuration under test.
struct Mode {
    name: String,
    server: Server,
    runs: Vec<Run>,
}

struct Run {
    wrk: Wrk,
    cpu: CpuUse,
}

impl Run {
    /// CPU time the server's processes used per request, in microseconds.
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu.server * self.cpu.wall * 1e6 / self.wrk.requests.max(1) as f64
    }
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let workers = config.http_workers;
    let rounds = config.rounds.max(MIN_ROUNDS);
    let file =
        std::env::temp_dir().join(format!("cluster2-bench-access-{}.log", std::process::id()));
    let log_flag = format!("--log.access={}", file.display());
    let mut modes = vec![
        Mode {
            name: "off".to_owned(),
            server: bins.hello(workers, &[]),
            runs: Vec::new(),
        },
        Mode {
            name: "on (file)".to_owned(),
            server: bins.hello(workers, &[&log_flag]),
            runs: Vec::new(),
        },
    ];
    if let Some(dir) = &config.against {
        let path = &dir.join("hello");
        if !path.is_file() {
            return Err(format!("--against: {} is not a file", path.display()));
        }
        let mut server = bins.hello(workers, &[]);
        server.label = format!("{} (--against)", path.display());
        server.program = path.clone();
        modes.push(Mode {
            name: "before (--against)".to_owned(),
            server,
            runs: Vec::new(),
        });
    }
    let mut running: Vec<Running> = Vec::new();
    for mode in &modes {
        running.push(mode.server.start(config.timeout).await?);
    }
    let outcome = measure_all(config, &mut modes, &running, rounds, &file).await;
    for r in running {
        r.proc.stop(config.timeout).await?;
    }
    let _ = std::fs::remove_file(&file);
    let disturbance = outcome?;
    Ok(report(config, &modes, rounds, disturbance))
}

async fn measure_all(
    config: &Config,
    modes: &mut [Mode],
    running: &[Running],
    rounds: usize,
    file: &std::path::Path,
) -> Result<Disturbance, String> {
    eprintln!(
        "access-log: {rounds} rounds of wrk -t{} -c{} -d{}s against {}",
        config.wrk_threads,
        config.connections,
        config.duration.as_secs(),
        modes
            .iter()
            .map(|m| m.server.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let urls: Vec<String> = running
        .iter()
        .map(|r| format!("http://127.0.0.1:{}/", r.ready.port))
        .collect();
    let groups: Vec<Vec<i32>> = running
        .iter()
        .map(|r| group_members(r.proc.pid() as i32))
        .collect();
    if !config.warmup.is_zero() {
        for url in &urls {
            wrk(config, url, config.warmup).await?;
        }
    }
    let mut disturbance = Disturbance::default();
    for round in 0..rounds {
        // Rotate who goes first, so that a drift of the machine favours none.
        let n = modes.len();
        for k in 0..n {
            let i = (round + k) % n;
            let mut attempt = 0;
            let run = loop {
                let before = CpuClocks::read(&groups[i]);
                let measured = wrk(config, &urls[i], config.duration).await?;
                let cpu = CpuClocks::read(&groups[i]).since(&before);
                let run = Run { wrk: measured, cpu };
                let noisy = run.cpu.other + run.cpu.steal > config.max_other;
                eprintln!(
                    "  round {}/{rounds}: {:<18} {:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, \
                     {:.1} µs CPU/req, CPUs server {:.2} other {:.2}, errors {}{}",
                    round + 1,
                    modes[i].name,
                    run.wrk.requests_per_sec,
                    run.wrk.latency_ms[0],
                    run.wrk.latency_ms[3],
                    run.cpu_us_per_request(),
                    run.cpu.server,
                    run.cpu.other + run.cpu.steal,
                    run.wrk.errors,
                    if noisy { " (disturbed)" } else { "" }
                );
                // The log file grows by tens of megabytes a run: emptied, so the disk is not
                // what the next run measures. The workers write with O_APPEND, at the new end.
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(file) {
                    let _ = f.set_len(0);
                }
                if disturbance
                    .measure_again(noisy, &mut attempt, config.retries)
                    .await
                {
                    continue;
                }
                break run;
            };
            modes[i].runs.push(run);
        }
    }
    Ok(disturbance)
}

fn report(config: &Config, modes: &[Mode], rounds: usize, disturbance: Disturbance) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### access-log: `wrk -t{} -c{} -d{}s` (keep-alive) against `hello --workers={}`, access \
         log off, on (a file), {}{rounds} rounds, order rotating\n",
        config.wrk_threads,
        config.connections,
        config.duration.as_secs(),
        config.http_workers,
        if modes.len() > 2 {
            "and the build before it (off), "
        } else {
            ""
        },
    );
    let _ = write!(md, "| round |");
    for mode in modes {
        let _ = write!(md, " {} req/s | CPU/req |", mode.name);
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "|---|{}", "--:|--:|".repeat(modes.len()));
    for round in 0..rounds {
        let _ = write!(md, "| {} |", round + 1);
        for mode in modes {
            let run = &mode.runs[round];
            let _ = write!(
                md,
                " {:.0} | {:.1} µs |",
                run.wrk.requests_per_sec,
                run.cpu_us_per_request()
            );
        }
        let _ = writeln!(md);
    }
    let rps = |m: &Mode| {
        median(
            &m.runs
                .iter()
                .map(|r| r.wrk.requests_per_sec)
                .collect::<Vec<_>>(),
        )
    };
    let cpu = |m: &Mode| {
        median(
            &m.runs
                .iter()
                .map(Run::cpu_us_per_request)
                .collect::<Vec<_>>(),
        )
    };
    let _ = write!(md, "| median |");
    for mode in modes {
        let _ = write!(md, " **{:.0}** | **{:.1} µs** |", rps(mode), cpu(mode));
    }
    let _ = writeln!(md);
    let _ = write!(md, "| min – max |");
    for mode in modes {
        let r: Vec<f64> = mode.runs.iter().map(|r| r.wrk.requests_per_sec).collect();
        let _ = write!(md, " {:.0} – {:.0} | |", min(&r), max(&r));
    }
    let _ = writeln!(md, "\n");
    let (off, on) = (&modes[0], &modes[1]);
    let ratio = rps(on) / rps(off);
    let _ = writeln!(
        md,
        "On: requests/s **{:.1} %** of off (target ≥ {:.0} %: {}), server CPU per request \
         **{:.1} %** of off's.  ",
        100.0 * ratio,
        100.0 * TARGET_ON,
        crate::report::met(ratio >= TARGET_ON),
        100.0 * cpu(on) / cpu(off),
    );
    if let Some(before) = modes.get(2) {
        let _ = writeln!(
            md,
            "Off against the build before the access log: requests/s **{:.1} %** of it, server \
             CPU per request **{:.1} %** of it (target: no cost; the rounds' spread says how \
             much of the difference is noise).  ",
            100.0 * rps(off) / rps(before),
            100.0 * cpu(off) / cpu(before),
        );
    }
    let errors: u64 = modes
        .iter()
        .flat_map(|m| &m.runs)
        .map(|r| r.wrk.errors)
        .sum();
    let _ = writeln!(
        md,
        "wrk errors or non-2xx answers: {errors}. Runs measured again because other processes \
         kept more than {} CPUs busy: {}; kept although disturbed: {}.",
        config.max_other, disturbance.redone, disturbance.kept
    );
    md
}
