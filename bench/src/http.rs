//! `http`: wrk throughput on loopback; cluster2 vs a bare hyper server vs node's cluster module.

use std::fmt::Write as _;
use std::time::Duration;

use crate::retry::Disturbance;

use crate::cli::Config;
use crate::cpu::{CpuClocks, CpuUse};
use crate::proc::{Proc, group_members};
use crate::report::met;
use crate::servers::{Bins, Server};
use crate::stats::{max, median, min};

/// Targets of the issue, hello (2 workers) against bare hyper: in every round, and the median
/// of the rounds' ratios; hello's p99 no worse than hyper's; and against node's cluster.
const TARGET_EVERY_ROUND: f64 = 1.0;
const TARGET_MEDIAN: f64 = 1.05;
const TARGET_VS_NODE: f64 = 1.8;

/// What one wrk run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Wrk {
    pub(crate) requests_per_sec: f64,
    /// Requests completed in the run.
    pub(crate) requests: u64,
    /// Latency percentiles 50, 75, 90, 99, in milliseconds.
    pub(crate) latency_ms: [f64; 4],
    /// Socket errors and non-2xx/3xx responses.
    pub(crate) errors: u64,
}

/// One measured run of one server.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) wrk: Wrk,
    /// CPU time the server's processes used per request, in microseconds.
    pub(crate) cpu_us_per_request: f64,
    /// Where the CPUs went during the run.
    pub(crate) cpu: CpuUse,
    /// Established connections of each worker, halfway through the run.
    pub(crate) connections: Vec<usize>,
}

struct Samples {
    server: Server,
    runs: Vec<Measured>,
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let mut servers = vec![
        bins.hello(config.http_workers, &[]),
        bins.bare_hyper(&[]),
        bins.node(config.http_workers),
    ];
    if config.variants {
        // One process with two runtime threads, like bare hyper; workers with a multi-thread
        // runtime each; then bare hyper with, one by one, what a cluster2 worker adds.
        servers.push(bins.hello(1, &[]));
        servers.push(bins.hello(config.http_workers, &["--threads=2"]));
        servers.push(bins.bare_hyper(&["--threads=1"]));
        servers.push(bins.bare_hyper(&["--axum"]));
        servers.push(bins.bare_hyper(&["--header-read-timeout=30"]));
        servers.push(bins.bare_hyper(&["--auto"]));
        servers.push(bins.bare_hyper(&["--axum", "--auto", "--header-read-timeout=30"]));
        // One server thread on a CPU of its own and wrk on the others: what each costs when
        // the scheduler cannot put the server beside wrk; bare hyper also with the example's
        // axum Router and the auto builder, which is what a cluster2 worker runs.
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        if cpus >= 2 {
            let server = (cpus - 1).to_string();
            let wrk = if cpus == 2 {
                "0".to_owned()
            } else {
                format!("0-{}", cpus - 2)
            };
            for mut pinned in [
                bins.hello(1, &[]),
                bins.bare_hyper(&["--threads=1"]),
                bins.bare_hyper(&["--threads=1", "--axum", "--auto"]),
            ] {
                pinned.label = format!("{} on CPU {server}, wrk on CPU {wrk}", pinned.label);
                pinned.cpus = Some(server.clone());
                pinned.wrk_cpus = Some(wrk.clone());
                servers.push(pinned);
            }
        }
    }
    let servers: Vec<Server> = servers
        .into_iter()
        .map(|s| s.placed(config.server_cpus.as_deref(), config.wrk_cpus.as_deref()))
        .collect();
    let mut peers: Vec<Samples> = servers
        .into_iter()
        .map(|server| Samples {
            server,
            runs: Vec::new(),
        })
        .collect();
    let warmup = if config.warmup.is_zero() {
        "no warm-up run".to_owned()
    } else {
        format!("after a {:?} warm-up run", config.warmup)
    };
    eprintln!(
        "http: {} rounds of wrk -t{} -c{} -d{:?} ({warmup}), rotating the order",
        config.rounds, config.wrk_threads, config.connections, config.duration
    );
    let mut disturbance = Disturbance::default();
    for round in 0..config.rounds {
        let n = peers.len();
        for k in 0..n {
            let peer = &mut peers[(round + k) % n];
            let mut attempt = 0;
            loop {
                let measured = measure(config, &peer.server, "http").await?;
                let others = measured.cpu.other + measured.cpu.steal;
                let noisy = others > config.max_other;
                eprintln!(
                    "  round {}/{}: {:<62} {:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, \
                     {:.1} µs CPU/req, CPUs server {:.2} wrk {:.2} other {:.2} steal {:.2}, \
                     connections {:?}, {} errors{}",
                    round + 1,
                    config.rounds,
                    peer.server.label,
                    measured.wrk.requests_per_sec,
                    measured.wrk.latency_ms[0],
                    measured.wrk.latency_ms[3],
                    measured.cpu_us_per_request,
                    measured.cpu.server,
                    measured.cpu.wrk,
                    measured.cpu.other,
                    measured.cpu.steal,
                    measured.connections,
                    measured.wrk.errors,
                    if noisy { " (disturbed)" } else { "" }
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                if disturbance
                    .measure_again(noisy, &mut attempt, config.retries)
                    .await
                {
                    continue;
                }
                peer.runs.push(measured);
                break;
            }
        }
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### http: `wrk -t{} -c{} -d{}s --latency` on loopback ({} rounds, medians)\n",
        config.wrk_threads,
        config.connections,
        config.duration.as_secs_f64(),
        config.rounds
    );
    let _ = writeln!(
        md,
        "| server | requests/s | rounds (min – max) | latency p50 | p90 | p99 | server CPU per \
         request | CPUs busy: server / wrk / other | connections per worker | errors |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut rps = Vec::new();
    let mut cpu = Vec::new();
    for peer in &peers {
        let pick = |f: fn(&Measured) -> f64| -> Vec<f64> { peer.runs.iter().map(f).collect() };
        let r = pick(|m| m.wrk.requests_per_sec);
        let errors: u64 = peer.runs.iter().map(|m| m.wrk.errors).sum();
        let connections: Vec<String> = peer
            .runs
            .iter()
            .filter(|m| m.connections.len() > 1)
            .map(|m| {
                let c: Vec<String> = m.connections.iter().map(usize::to_string).collect();
                c.join("/")
            })
            .collect();
        let connections = if connections.is_empty() {
            "–".to_owned()
        } else {
            connections.join(", ")
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} – {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} µs | {:.2} / {:.2} \
             / {:.2} | {} | {} |",
            peer.server.label,
            median(&r),
            min(&r),
            max(&r),
            median(&pick(|m| m.wrk.latency_ms[0])),
            median(&pick(|m| m.wrk.latency_ms[2])),
            median(&pick(|m| m.wrk.latency_ms[3])),
            median(&pick(|m| m.cpu_us_per_request)),
            median(&pick(|m| m.cpu.server)),
            median(&pick(|m| m.cpu.wrk)),
            median(&pick(|m| m.cpu.other + m.cpu.steal)),
            connections,
            errors
        );
        rps.push(median(&r));
        cpu.push(median(&pick(|m| m.cpu_us_per_request)));
    }
    let _ = writeln!(
        md,
        "{}",
        verdicts(&peers[0].runs, &peers[1].runs, &peers[2].runs)
    );
    let _ = writeln!(
        md,
        "Server CPU time per request, cluster2 / bare hyper: {:.2}×; node / cluster2: {:.2}×.  ",
        cpu[0] / cpu[1],
        cpu[2] / cpu[0]
    );
    let _ = writeln!(md, "{}", disturbance.summary(config.max_other));
    if config.variants {
        let _ = writeln!(
            md,
            "\nVariants, requests/s (and server CPU per request) relative to bare hyper:\n"
        );
        for ((peer, r), c) in peers.iter().zip(&rps).zip(&cpu).skip(3) {
            let _ = writeln!(
                md,
                "- {}: {:.2}× (server CPU per request {:.2}×)",
                peer.server.label,
                r / rps[1],
                c / cpu[1]
            );
        }
    }
    Ok(md)
}

/// Every round of hello, bare hyper and node side by side, and the targets judged on
/// them.
fn verdicts(hello: &[Measured], bare: &[Measured], node: &[Measured]) -> String {
    let mut md = String::new();
    let show = |m: &Measured| -> String {
        let c: Vec<String> = m.connections.iter().map(usize::to_string).collect();
        let c = if c.len() > 1 {
            format!("; {}", c.join("/"))
        } else {
            String::new()
        };
        format!(
            "{:.0} (p99 {:.2} ms{c})",
            m.wrk.requests_per_sec, m.wrk.latency_ms[3]
        )
    };
    let _ = writeln!(
        md,
        "\nEvery round (requests/s; p99; connections per worker):\n\n| round | cluster2 hello | bare \
         hyper | ratio | node cluster | cluster2 / node |\n|--:|--:|--:|--:|--:|--:|"
    );
    let mut ratios = Vec::new();
    for (round, ((h, b), n)) in hello.iter().zip(bare).zip(node).enumerate() {
        let ratio = h.wrk.requests_per_sec / b.wrk.requests_per_sec;
        ratios.push(ratio);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {ratio:.2}× | {} | {:.2}× |",
            round + 1,
            show(h),
            show(b),
            show(n),
            h.wrk.requests_per_sec / n.wrk.requests_per_sec
        );
    }
    let rps = |runs: &[Measured]| -> f64 {
        median(
            &runs
                .iter()
                .map(|m| m.wrk.requests_per_sec)
                .collect::<Vec<_>>(),
        )
    };
    let p99 = |runs: &[Measured]| -> f64 {
        median(&runs.iter().map(|m| m.wrk.latency_ms[3]).collect::<Vec<_>>())
    };
    let (lowest, middle) = (min(&ratios), median(&ratios));
    let vs_node = rps(hello) / rps(node);
    let _ = writeln!(
        md,
        "\ncluster2 / bare hyper: lowest round **{lowest:.2}×** (target ≥ {TARGET_EVERY_ROUND} in \
         every round: **{}**), median of the rounds **{middle:.2}×** (target ≥ {TARGET_MEDIAN}: \
         **{}**).  ",
        met(lowest >= TARGET_EVERY_ROUND),
        met(middle >= TARGET_MEDIAN)
    );
    let _ = writeln!(
        md,
        "p99, medians: cluster2 {:.2} ms, bare hyper {:.2} ms (target: no worse: **{}**).  ",
        p99(hello),
        p99(bare),
        met(p99(hello) <= p99(bare))
    );
    let _ = writeln!(
        md,
        "cluster2 / node cluster: **{vs_node:.2}×** (target ≥ {TARGET_VS_NODE}: **{}**).  ",
        met(vs_node >= TARGET_VS_NODE)
    );
    md
}

/// After `delay`, how many established connections to `port` each of `pids` holds.
pub(crate) async fn sample_connections(port: u16, pids: &[u32], delay: Duration) -> Vec<usize> {
    tokio::time::sleep(delay).await;
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            let established = f.get(3) == Some(&"01");
            if let (Some(inode), true, true) = (f.get(9), local_port == Some(port), established) {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    pids.iter()
        .map(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return 0;
            };
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| inodes.contains(target.to_string_lossy().as_ref()))
                .count()
        })
        .collect()
}

/// Starts `server`, warms it up, measures it once with wrk (at `scheme`://, http or https)
/// and stops it.
pub(crate) async fn measure(
    config: &Config,
    server: &Server,
    scheme: &str,
) -> Result<Measured, String> {
    let running = server.start(config.timeout).await?;
    let url = format!("{scheme}://127.0.0.1:{}/", running.ready.port);
    let wrk_cpus = server.wrk_cpus.as_deref();
    if !config.warmup.is_zero() {
        wrk_on(config, &url, config.warmup, wrk_cpus).await?;
    }
    let group = group_members(running.proc.pid() as i32);
    let before = CpuClocks::read(&group);
    let (result, connections) = tokio::join!(
        wrk_on(config, &url, config.duration, wrk_cpus),
        sample_connections(
            running.ready.port,
            &running.ready.workers,
            config.duration / 2
        ),
    );
    let result = result?;
    let cpu = CpuClocks::read(&group).since(&before);
    running.proc.stop(config.timeout).await?;
    Ok(Measured {
        cpu_us_per_request: cpu.server * cpu.wall * 1e6 / result.requests.max(1) as f64,
        cpu,
        connections,
        wrk: result,
    })
}

/// wrk against `url` for `duration`, on the CPUs of `--wrk-cpus` (any if none).
pub(crate) async fn wrk(config: &Config, url: &str, duration: Duration) -> Result<Wrk, String> {
    wrk_on(config, url, duration, config.wrk_cpus.as_deref()).await
}

/// wrk against `url` for `duration`, on `cpus` (a `taskset -c` list; any if none).
async fn wrk_on(
    config: &Config,
    url: &str,
    duration: Duration,
    cpus: Option<&str>,
) -> Result<Wrk, String> {
    let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpus) = cpus {
        args.extend([
            "-c".into(),
            cpus.into(),
            config.wrk.clone().into_os_string(),
        ]);
    }
    args.extend(
        [
            format!("-t{}", config.wrk_threads),
            format!("-c{}", config.connections),
            format!("-d{secs}s"),
            "--latency".to_owned(),
            "--timeout=5s".to_owned(),
            url.to_owned(),
        ]
        .map(Into::into),
    );
    let proc = match cpus {
        Some(_) => Proc::spawn("wrk", "taskset", &args)?,
        None => Proc::spawn("wrk", &config.wrk, &args)?,
    };
    let out = proc
        .output(Duration::from_secs(secs) + Duration::from_secs(20))
        .await?;
    parse_wrk(&out).ok_or_else(|| format!("cannot read wrk's report:\n{out}"))
}

/// Reads `Requests/sec:`, the `Latency Distribution` block, `Socket errors:` and `Non-2xx or
/// 3xx responses:` out of wrk's report.
pub(crate) fn parse_wrk(out: &str) -> Option<Wrk> {
    let mut result = Wrk::default();
    let mut found_rps = false;
    let mut found = [false; 4];
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            result.requests_per_sec = v.trim().parse().ok()?;
            found_rps = true;
        } else if line.contains(" requests in ") {
            // 1018312 requests in 10.00s, 126.25MB read
            result.requests = line.split_whitespace().next()?.parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // connect 0, read 0, write 0, timeout 0
            result.errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.errors += v.trim().parse::<u64>().ok()?;
        } else {
            let mut parts = line.split_whitespace();
            let (Some(p), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let slot = match p {
                "50%" => 0,
                "75%" => 1,
                "90%" => 2,
                "99%" => 3,
                _ => continue,
            };
            result.latency_ms[slot] = latency_ms(value)?;
            found[slot] = true;
        }
    }
    (found_rps && found.iter().all(|f| *f)).then_some(result)
}

/// `523.00us`, `1.23ms`, `1.00s`, `2.00m` → milliseconds.
fn latency_ms(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
Running 10s test @ http://127.0.0.1:40000/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   651.17us  520.29us  12.08ms   91.57%
    Req/Sec    51.16k     3.92k   59.20k    72.00%
  Latency Distribution
     50%  542.00us
     75%  764.00us
     90%    1.06ms
     99%    2.65ms
  1018312 requests in 10.00s, 126.25MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 101813.62
Transfer/sec:     12.62MB
";

    #[test]
    fn reads_a_wrk_report() {
        let w = parse_wrk(REPORT).expect("parses");
        assert_eq!(w.requests_per_sec, 101_813.62);
        assert_eq!(w.requests, 1_018_312);
        assert_eq!(w.latency_ms, [0.542, 0.764, 1.06, 2.65]);
        assert_eq!(w.errors, 7);
    }

    #[test]
    fn refuses_a_partial_report() {
        assert_eq!(parse_wrk("Requests/sec: 1.0\n"), None);
        assert_eq!(
            parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n"),
            None
        );
    }

    #[test]
    fn latency_units() {
        assert_eq!(latency_ms("2.00s"), Some(2000.0));
        assert_eq!(latency_ms("1.5m"), Some(90_000.0));
        assert_eq!(latency_ms("12"), None);
    }
}
