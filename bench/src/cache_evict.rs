//! `cache-evict`: cluster2's cache with eviction active against the same cache without it, in
//! the same run. `cache-bench` runs once with an unbounded namespace (as every namespace was
//! before namespaces had bounds) and once with one held to its bound, filled to it first, so
//! that every set of a new key evicts an entry; rounds alternate which goes first. Optionally
//! a `cache-bench` of another build (`--cache-baseline`) runs unbounded too, as the figure of
//! before a change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Config;
use crate::ipc::json_line;
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::median;

/// Eviction may cost at most this share of the unbounded namespace's throughput.
const TARGET: f64 = 0.95;

/// The four figures compared, in the report's order.
const FIGURES: [(&str, &str); 4] = [
    ("get1", "get, 1 client"),
    ("set1", "set, 1 client"),
    ("get16", "get, 16 clients"),
    ("set16", "set, 16 clients"),
];

#[derive(Debug, Clone)]
struct Run {
    figures: [f64; 4],
    evictions: u64,
}

async fn run_one(bin: &Path, secs: &str, persist: &str, bounded: bool) -> Result<Run, String> {
    let mut args = vec!["--log.level=warn", persist, "--", secs];
    if bounded {
        args.push("bounded");
    }
    let p = Proc::spawn("cache-bench", bin, &args)?;
    let v = json_line(&p.output(Duration::from_secs(180)).await?)?;
    let mut figures = [0.0; 4];
    for (slot, (key, _)) in figures.iter_mut().zip(FIGURES) {
        *slot = v[key].as_f64().ok_or_else(|| format!("no {key} in {v}"))?;
    }
    Ok(Run {
        figures,
        evictions: v["evictions"].as_u64().unwrap_or(0),
    })
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("cluster2-bench-evict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let persist = format!("--cache.persist-path={}", dir.join("persist").display());
    let secs = "3";
    let rounds = config.rounds.max(1);
    let baseline: Option<&PathBuf> = config.cache_baseline.as_ref();
    let (mut unbounded, mut bounded, mut before) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("cache-evict: round {} of {rounds}", round + 1);
        // Alternate the order, so that neither always runs on a machine the other warmed.
        for bounded_first in [round % 2 == 1, round % 2 == 0] {
            if bounded_first {
                bounded.push(run_one(&bins.cache_bench, secs, &persist, true).await?);
            } else {
                unbounded.push(run_one(&bins.cache_bench, secs, &persist, false).await?);
            }
        }
        if let Some(bin) = baseline {
            before.push(run_one(bin, secs, &persist, false).await?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let mut md = format!(
        "## Cache: get and set with eviction active\n\n\
         `cluster2-bench cache-evict`: `cache-bench` (a worker's `get` of an existing key and \
         `set` of 3-byte values, to the standalone manager over its Unix socket, {secs} s per \
         phase) with an unbounded namespace, and with a namespace of `max_entries = 20000` \
         filled to its bound before the first phase, so that every set of a new key evicts one \
         (sampled LRU, 5 samples); {rounds} rounds, order alternating. Evictions per run are the \
         manager's own count.\n\n"
    );
    md.push_str("| round | namespace | get, 1 client | set, 1 client | get, 16 clients | set, 16 clients | evictions |\n|---|---|---|---|---|---|---|\n");
    let row = |round: usize, label: &str, r: &Run| {
        format!(
            "| {round} | {label} | {:.0} | {:.0} | {:.0} | {:.0} | {} |\n",
            r.figures[0], r.figures[1], r.figures[2], r.figures[3], r.evictions
        )
    };
    for i in 0..rounds {
        md.push_str(&row(i + 1, "unbounded", &unbounded[i]));
        md.push_str(&row(i + 1, "at its bound", &bounded[i]));
        if let Some(b) = before.get(i) {
            md.push_str(&row(i + 1, "unbounded, baseline build", b));
        }
    }
    let medians = |runs: &[Run]| -> [f64; 4] {
        std::array::from_fn(|f| median(&runs.iter().map(|r| r.figures[f]).collect::<Vec<_>>()))
    };
    let (u, b) = (medians(&unbounded), medians(&bounded));
    md.push_str(&format!(
        "\nMedians, and eviction's cost as the ratio of the bounded namespace's throughput to \
         the unbounded one's (target ≥ {TARGET}):\n\n\
         | | unbounded ops/s | at its bound ops/s | ratio | met |\n|---|---|---|---|---|\n"
    ));
    for (f, (_, label)) in FIGURES.iter().enumerate() {
        let ratio = b[f] / u[f];
        md.push_str(&format!(
            "| {label} | {:.0} | {:.0} | {ratio:.3}× | {} |\n",
            u[f],
            b[f],
            met(ratio >= TARGET)
        ));
    }
    if !before.is_empty() {
        let p = medians(&before);
        md.push_str(
            "\nThis build's unbounded namespace against the baseline build's (`--cache-baseline`), \
             medians:\n\n| | baseline ops/s | this build ops/s | ratio |\n|---|---|---|---|\n",
        );
        for (f, (_, label)) in FIGURES.iter().enumerate() {
            md.push_str(&format!(
                "| {label} | {:.0} | {:.0} | {:.3}× |\n",
                p[f],
                u[f],
                u[f] / p[f]
            ));
        }
    }
    Ok(md)
}
