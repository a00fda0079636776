//! `cache`: cluster2's cache, from a worker process over the real transport (Unix socket to the
//! standalone manager process), against Redis on a Unix socket, `redis-benchmark` with the
//! same 3-byte values: 1 client, then 16 concurrent clients. cluster2 runs twice per round:
//! as configured by default, and with the manager's wait before sleeping off
//! (`--cache.spin=0s`), with what the manager's CPU pays per operation either way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Config;
use crate::ipc::json_line;
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::median;
use crate::ticks::{TICKS_PER_SEC, process_ticks};

const TARGET_VS_REDIS_1: f64 = 1.2;
const TARGET_VS_REDIS_16: f64 = 1.0;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    get1: f64,
    set1: f64,
    get16: f64,
    set16: f64,
    get1_p50_us: f64,
    /// Server CPU per operation with 1 client, in µs.
    server_cpu1_us: f64,
    /// Server CPU per get at 1000 gets a second (cluster2 only).
    paced_cpu_us: f64,
}

/// `GET: 42123.00 requests per second, p50=0.023 msec` (progress lines end in `\r`).
fn redis_rps(out: &str, test: &str) -> Option<(f64, f64)> {
    let line = out
        .split(['\n', '\r'])
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second"))?;
    let rps = line.split_whitespace().nth(1)?.parse().ok()?;
    let p50 = line
        .split("p50=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(0.0, |ms| ms * 1000.0);
    Some((rps, p50))
}

async fn redis_round(sock: &Path, server: i32) -> Result<Figures, String> {
    let mut f = Figures::default();
    for clients in ["1", "16"] {
        let requests = if clients == "1" { "100000" } else { "300000" };
        let cpu_before = process_ticks(&[server]);
        let out = Proc::spawn(
            "redis-benchmark",
            "redis-benchmark",
            &[
                "-s",
                &sock.display().to_string(),
                "-t",
                "get,set",
                "-n",
                requests,
                "-c",
                clients,
                "-q",
            ],
        )?
        .output(Duration::from_secs(120))
        .await?;
        let (get, get_p50) =
            redis_rps(&out, "GET").ok_or_else(|| format!("cannot read:\n{out}"))?;
        let (set, _) = redis_rps(&out, "SET").ok_or_else(|| format!("cannot read:\n{out}"))?;
        if clients == "1" {
            (f.get1, f.set1, f.get1_p50_us) = (get, set, get_p50);
            // redis-benchmark ran the sets, then the gets: 200 000 operations.
            f.server_cpu1_us =
                (process_ticks(&[server]) - cpu_before) as f64 / TICKS_PER_SEC * 1e6 / 200_000.0;
        } else {
            (f.get16, f.set16) = (get, set);
        }
    }
    Ok(f)
}

fn ours_from(v: &serde_json::Value) -> Result<Figures, String> {
    let get = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {v}"));
    Ok(Figures {
        get1: get("get1")?,
        set1: get("set1")?,
        get16: get("get16")?,
        set16: get("set16")?,
        get1_p50_us: get("get1_p50_us")?,
        server_cpu1_us: get("mgr1_cpu_us")?,
        paced_cpu_us: get("paced_cpu_us")?,
    })
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("cluster2-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let sock: PathBuf = dir.join("redis.sock");
    let redis = Proc::spawn(
        "redis-server",
        "redis-server",
        &[
            "--unixsocket",
            &sock.display().to_string(),
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    let mut redis = match redis {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("cache: no redis-server ({e}); cluster2 alone");
            None
        }
    };
    if redis.is_some() {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !sock.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut ours = Vec::new();
    let mut no_spin = Vec::new();
    let mut theirs = Vec::new();
    let secs = "3";
    let persist = format!("--cache.persist-path={}", dir.join("persist").display());
    let run_ours = |extra: Option<&'static str>| {
        let persist = persist.clone();
        async move {
            let mut args = vec!["--log.level=warn", &persist];
            args.extend(extra);
            args.extend(["--", secs]);
            let p = Proc::spawn("cache-bench", &bins.cache_bench, &args)?;
            ours_from(&json_line(&p.output(Duration::from_secs(120)).await?)?)
        }
    };
    for round in 0..config.rounds.max(1) {
        eprintln!("cache: round {} of {}", round + 1, config.rounds.max(1));
        ours.push(run_ours(None).await?);
        if let Some(r) = &redis {
            theirs.push(redis_round(&sock, r.pid() as i32).await?);
        }
        no_spin.push(run_ours(Some("--cache.spin=0s")).await?);
    }
    if let Some(r) = redis.take() {
        let _ = r.stop(Duration::from_secs(5)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let o = medians(&ours);
    let n = medians(&no_spin);
    let mut md = format!(
        "## Cache: get and set of a small value\n\n\
         `cluster2-bench cache`: cluster2's `get` (existing key) and `set` from a worker process \
         to the standalone manager process over its Unix socket, {secs} s per phase; Redis \
         through `redis-benchmark -s <unix socket> -t get,set -q` (`-c 1`, then `-c 16`), same \
         3-byte values; medians of {} rounds.\n\n",
        config.rounds.max(1)
    );
    if theirs.is_empty() {
        md.push_str(&format!(
            "redis-server was not available, so there is no comparison. cluster2: get {:.0}/s \
             (p50 {:.1} µs), set {:.0}/s with 1 client; get {:.0}/s, set {:.0}/s with 16.\n",
            o.get1, o.get1_p50_us, o.set1, o.get16, o.set16
        ));
        return Ok(md);
    }
    let r = medians(&theirs);
    md.push_str(
        "| | cluster2 ops/s | Redis ops/s | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    for (label, ours, redis, target) in [
        ("get, 1 client", o.get1, r.get1, TARGET_VS_REDIS_1),
        ("set, 1 client", o.set1, r.set1, TARGET_VS_REDIS_1),
        ("get, 16 clients", o.get16, r.get16, TARGET_VS_REDIS_16),
        ("set, 16 clients", o.set16, r.set16, TARGET_VS_REDIS_16),
    ] {
        md.push_str(&format!(
            "| {label} | {ours:.0} | {redis:.0} | {:.2}× | ≥ {target}× | {} |\n",
            ours / redis,
            met(ours / redis >= target)
        ));
    }
    md.push_str(&format!(
        "\nMedian latency of one get, 1 client: cluster2 {:.1} µs, Redis {:.1} µs (as \
         redis-benchmark reports it, to the millisecond's third decimal).\n",
        o.get1_p50_us, r.get1_p50_us
    ));
    let row = |label: &str, f: &Figures| {
        format!(
            "| {label} | {:.0} | {:.0} | {:.2}× / {:.2}× | {:.1} µs | {:.1} µs |\n",
            f.get1,
            f.set1,
            f.get1 / r.get1,
            f.set1 / r.set1,
            f.server_cpu1_us,
            f.paced_cpu_us
        )
    };
    md.push_str(&format!(
        "\nThe manager's wait before sleeping (`cache.spin`, 50 µs by default), and what it costs \
         (server CPU per operation, from /proc):\n\n\
         | | get, 1 client | set, 1 client | vs Redis (get / set) | server CPU per op, 1 client | \
         server CPU per get at 1000/s |\n|---|---|---|---|---|---|\n{}{}\
         | Redis | {:.0} | {:.0} | | {:.1} µs | |\n",
        row("cluster2, defaults", &o),
        row("cluster2, `cache.spin=0s`", &n),
        r.get1,
        r.set1,
        r.server_cpu1_us,
    ));
    Ok(md)
}

/// The median of each figure over the rounds.
fn medians(rounds: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    Figures {
        get1: pick(|f| f.get1),
        set1: pick(|f| f.set1),
        get16: pick(|f| f.get16),
        set16: pick(|f| f.set16),
        get1_p50_us: pick(|f| f.get1_p50_us),
        server_cpu1_us: pick(|f| f.server_cpu1_us),
        paced_cpu_us: pick(|f| f.paced_cpu_us),
    }
}
