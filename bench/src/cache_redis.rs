//! `redis`: the cache on a Redis backend, against the same `redis-server` in the same run.
//!
//! - **get**: cluster2's `get` of an existing 3-byte value from one worker
//!   (`cache-bench --cache.backend=redis+unix://… -- gets 3`), 1 caller then 16 concurrent
//!   callers, against `redis-benchmark -s <socket> -t set,get` with `-c 1` then `-c 16` (its
//!   GET figure), on the same server.
//! - **single flight under load**: 2 clusters ("hosts") of 2 workers each on the same server
//!   and cluster name, every worker running 16 concurrent callers over the same 1,000 missing
//!   keys, started together: the loads of all four workers must add up to exactly 1,000.
//!
//! Every round is reported, then the medians.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Config;
use crate::ipc::json_line;
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::median;

const TARGET_VS_REDIS_1: f64 = 0.8;
const TARGET_VS_REDIS_16: f64 = 1.0;

#[derive(Debug, Default, Clone, Copy)]
struct Round {
    ours1: f64,
    ours1_p50_us: f64,
    ours16: f64,
    ours16_own: f64,
    redis1: f64,
    redis1_p50_us: f64,
    redis16: f64,
    loads: u64,
    gets: u64,
    errors: u64,
    flight_secs: f64,
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

async fn redis_benchmark(sock: &Path, clients: &str, requests: &str) -> Result<(f64, f64), String> {
    let out = Proc::spawn(
        "redis-benchmark",
        "redis-benchmark",
        &[
            "-s",
            &sock.display().to_string(),
            "-t",
            "set,get",
            "-n",
            requests,
            "-c",
            clients,
            "-q",
        ],
    )?
    .output(Duration::from_secs(120))
    .await?;
    redis_rps(&out, "GET").ok_or_else(|| format!("cannot read:\n{out}"))
}

/// One worker's gets through the Redis backend.
async fn ours(bins: &Bins, url: &str) -> Result<serde_json::Value, String> {
    let backend = format!("--cache.backend={url}");
    let args = ["--log.level=warn", &backend, "--", "gets", "3"];
    let p = Proc::spawn("cache-bench", &bins.cache_bench, &args)?;
    json_line(&p.output(Duration::from_secs(120)).await?)
}

/// Two hosts × two workers × 16 callers over 1,000 missing keys: (loads, gets, errors, the
/// slowest worker's seconds).
async fn flight(
    bins: &Bins,
    url: &str,
    dir: &Path,
    round: usize,
) -> Result<(u64, u64, u64, f64), String> {
    let go = dir.join(format!("go-{round}"));
    let go_arg = go.display().to_string();
    let run = round.to_string();
    let backend = format!("--cache.backend={url}");
    let args = [
        "--log.level=warn",
        "--workers=2",
        "--cluster-name=bench-flight",
        &backend,
        "--",
        "flight",
        &go_arg,
        &run,
    ];
    let mut hosts = [
        Proc::spawn("cache-bench (host A)", &bins.cache_bench, &args)?,
        Proc::spawn("cache-bench (host B)", &bins.cache_bench, &args)?,
    ];
    for host in &mut hosts {
        for _ in 0..2 {
            host.wait_line(|l| l.starts_with("{\"waiting\""), Duration::from_secs(30))
                .await?;
        }
    }
    std::fs::write(&go, b"go").map_err(|e| format!("cannot write {}: {e}", go.display()))?;
    let (mut loads, mut gets, mut errors, mut secs) = (0, 0, 0, 0.0f64);
    for host in &mut hosts {
        for _ in 0..2 {
            let line = host
                .wait_line(
                    |l| l.starts_with("{\"flight_loads\""),
                    Duration::from_secs(120),
                )
                .await?;
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            let n = |k: &str| v[k].as_u64().ok_or_else(|| format!("no {k} in {v}"));
            loads += n("flight_loads")?;
            gets += n("flight_gets")?;
            errors += n("flight_errors")?;
            secs = secs.max(v["flight_secs"].as_f64().unwrap_or(0.0));
        }
    }
    for host in hosts {
        host.stop(Duration::from_secs(10)).await?;
    }
    let _ = std::fs::remove_file(&go);
    Ok((loads, gets, errors, secs))
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("cluster2-bench-redis-{}", std::process::id()));
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
    )
    .map_err(|e| {
        format!("{e}: this benchmark needs redis-server (apt-get install -y redis-server)")
    })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !sock.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = format!("redis+unix://{}", sock.display());
    let rounds = config.rounds.max(1);
    let mut all = Vec::new();
    for round in 0..rounds {
        eprintln!("redis: round {} of {rounds}", round + 1);
        let o = ours(bins, &url).await?;
        let get = |k: &str| o[k].as_f64().ok_or_else(|| format!("no {k} in {o}"));
        let (redis1, redis1_p50_us) = redis_benchmark(&sock, "1", "100000").await?;
        let (redis16, _) = redis_benchmark(&sock, "16", "300000").await?;
        let (loads, gets, errors, flight_secs) = flight(bins, &url, &dir, round).await?;
        all.push(Round {
            ours1: get("get1")?,
            ours1_p50_us: get("get1_p50_us")?,
            ours16: get("get16")?,
            ours16_own: get("get16_own_keys")?,
            redis1,
            redis1_p50_us,
            redis16,
            loads,
            gets,
            errors,
            flight_secs,
        });
    }
    redis.stop(Duration::from_secs(5)).await?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut md = format!(
        "## Cache on Redis: get, and single flight across hosts\n\n\
         `cluster2-bench redis`: one `redis-server` on a Unix socket for the whole run. \
         cluster2's `get` of an existing 3-byte value from one worker through the Redis backend \
         (`cache.backend=redis+unix://…`), 3 s with 1 caller then 3 s with 16 concurrent \
         callers, against `redis-benchmark -s <socket> -t set,get -q` (`-c 1 -n 100000`, then \
         `-c 16 -n 300000`; its GET figure) on the same server, in the same round. Then single \
         flight under load: 2 clusters (hosts) × 2 workers × 16 concurrent callers over the \
         same 1,000 missing keys (a loader takes 2 ms), started together. {rounds} rounds.\n\n\
         With 16 callers of one key, this process's concurrent reads share one `GET` (the \
         coalescing the cache does for every key); the last column has each caller on a key of \
         its own, so that only the client's multiplexing (one connection, pipelined) is left.\n\n\
         | round | cluster2 get, 1 caller | redis-benchmark GET, -c 1 | ratio | cluster2 get, 16 \
         callers | redis-benchmark GET, -c 16 | ratio | 16 callers, own keys (ratio) | loads for \
         1,000 keys (of gets) | errors | flight time |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (i, r) in all.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {:.0}/s | {:.0}/s | {:.2}× | {:.0}/s | {:.0}/s | {:.2}× | {:.0}/s ({:.2}×) | \
             {} (of {}) | {} | {:.2} s |\n",
            i + 1,
            r.ours1,
            r.redis1,
            r.ours1 / r.redis1,
            r.ours16,
            r.redis16,
            r.ours16 / r.redis16,
            r.ours16_own,
            r.ours16_own / r.redis16,
            r.loads,
            r.gets,
            r.errors,
            r.flight_secs
        ));
    }
    let pick = |f: fn(&Round) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
    let (r1, r16) = (pick(|r| r.ours1 / r.redis1), pick(|r| r.ours16 / r.redis16));
    let own = pick(|r| r.ours16_own / r.redis16);
    let exact = all.iter().all(|r| r.loads == 1000 && r.errors == 0);
    md.push_str(&format!(
        "\n| target | median | met |\n|---|---|---|\n\
         | get, 1 caller ≥ {TARGET_VS_REDIS_1}× redis-benchmark | {r1:.2}× | {} |\n\
         | get, 16 callers ≥ {TARGET_VS_REDIS_16}× redis-benchmark | {r16:.2}× | {} |\n\
         | (16 callers on keys of their own, for reference) | {own:.2}× | |\n\
         | exactly 1,000 loads, no error, every round | {} | {} |\n\
         \nMedian latency of one get, 1 caller: cluster2 {:.1} µs, redis-benchmark {:.1} µs \
         (as it reports it, to the millisecond's third decimal).\n",
        met(r1 >= TARGET_VS_REDIS_1),
        met(r16 >= TARGET_VS_REDIS_16),
        all.iter()
            .map(|r| r.loads.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        met(exact),
        pick(|r| r.ours1_p50_us),
        pick(|r| r.redis1_p50_us),
    ));
    Ok(md)
}
