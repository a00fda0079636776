//! `cache`: cluster2's cache, from a worker process over the real transport (Unix socket to the
//! standalone manager process), against Redis on a Unix socket, `redis-benchmark` with the
//! same 3-byte values: 1 client, then 16 concurrent clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Config;
use crate::ipc::json_line;
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::median;

const TARGET_VS_REDIS_1: f64 = 1.2;
const TARGET_VS_REDIS_16: f64 = 1.0;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    get1: f64,
    set1: f64,
    get16: f64,
    set16: f64,
    get1_p50_us: f64,
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

async fn redis_round(sock: &Path) -> Result<Figures, String> {
    let mut f = Figures::default();
    for clients in ["1", "16"] {
        let requests = if clients == "1" { "100000" } else { "300000" };
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
    let mut theirs = Vec::new();
    let secs = "3";
    for round in 0..config.rounds.max(1) {
        eprintln!("cache: round {} of {}", round + 1, config.rounds.max(1));
        let persist = format!("--cache.persist-path={}", dir.join("persist").display());
        let p = Proc::spawn(
            "cache-bench",
            &bins.cache_bench,
            &["--log.level=warn", &persist, "--", secs],
        )?;
        ours.push(ours_from(&json_line(
            &p.output(Duration::from_secs(120)).await?,
        )?)?);
        if redis.is_some() {
            theirs.push(redis_round(&sock).await?);
        }
    }
    if let Some(r) = redis.take() {
        let _ = r.stop(Duration::from_secs(5)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let pick = |v: &[Figures], f: fn(&Figures) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let o = Figures {
        get1: pick(&ours, |f| f.get1),
        set1: pick(&ours, |f| f.set1),
        get16: pick(&ours, |f| f.get16),
        set16: pick(&ours, |f| f.set16),
        get1_p50_us: pick(&ours, |f| f.get1_p50_us),
    };
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
    let r = Figures {
        get1: pick(&theirs, |f| f.get1),
        set1: pick(&theirs, |f| f.set1),
        get16: pick(&theirs, |f| f.get16),
        set16: pick(&theirs, |f| f.set16),
        get1_p50_us: pick(&theirs, |f| f.get1_p50_us),
    };
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
    Ok(md)
}
