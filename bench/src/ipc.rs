//! `emitter`: cluster2's emitter against node's cluster IPC (`process.send`): round trips
//! master → worker → master, one-way messages per second to a worker, and round trips
//! worker → master → worker started by the worker (in cluster2, from a request handler of a
//! two-worker cluster).

use std::time::Duration;

use crate::cli::Config;
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::median;

const TARGET_P50_US: f64 = 25.0;
const TARGET_P99_US: f64 = 100.0;
const TARGET_ONE_WAY: f64 = 200_000.0;
const TARGET_WORKER_P50_US: f64 = 25.0;
const TARGET_WORKER_P99_US: f64 = 100.0;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    p50: f64,
    p99: f64,
    one_way: f64,
    worker_p50: f64,
    worker_p99: f64,
}

/// The JSON line a benchmark program printed.
pub(crate) fn json_line(out: &str) -> Result<serde_json::Value, String> {
    out.lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l.trim())
                .ok()
                .filter(|v| v.is_object())
        })
        .ok_or_else(|| format!("no JSON result in:\n{out}"))
}

fn figures(v: &serde_json::Value) -> Result<Figures, String> {
    let get = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {v}"));
    Ok(Figures {
        p50: get("rtt_p50_us")?,
        p99: get("rtt_p99_us")?,
        one_way: get("one_way_per_sec")?,
        worker_p50: get("worker_rtt_p50_us")?,
        worker_p99: get("worker_rtt_p99_us")?,
    })
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let (trips, messages) = ("20000", "500000");
    let mut ours = Vec::new();
    let mut node = Vec::new();
    for round in 0..config.rounds.max(1) {
        eprintln!("emitter: round {} of {}", round + 1, config.rounds.max(1));
        let p = Proc::spawn(
            "emitter-bench",
            &bins.emitter_bench,
            &["--log.level=warn", "--", trips, messages],
        )?;
        ours.push(figures(&json_line(
            &p.output(Duration::from_secs(120)).await?,
        )?)?);
        let script = bins.node_ipc_script.display().to_string();
        let mut args = vec![script];
        args.extend([trips.to_owned(), messages.to_owned()]);
        let p = Proc::spawn("node ipc", &bins.node, &args)?;
        node.push(figures(&json_line(
            &p.output(Duration::from_secs(120)).await?,
        )?)?);
    }
    let pick = |v: &[Figures], f: fn(&Figures) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let every = |v: &[Figures], f: fn(&Figures) -> f64| {
        v.iter()
            .map(|x| format!("{:.1}", f(x)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    type Row = (&'static str, fn(&Figures) -> f64, &'static str, f64, bool);
    let rows: [Row; 5] = [
        (
            "master → worker → master, p50",
            |f| f.p50,
            "≤",
            TARGET_P50_US,
            true,
        ),
        (
            "master → worker → master, p99",
            |f| f.p99,
            "≤",
            TARGET_P99_US,
            true,
        ),
        (
            "one-way messages/s",
            |f| f.one_way,
            "≥",
            TARGET_ONE_WAY,
            false,
        ),
        (
            "worker → master → worker, p50",
            |f| f.worker_p50,
            "≤",
            TARGET_WORKER_P50_US,
            true,
        ),
        (
            "worker → master → worker, p99",
            |f| f.worker_p99,
            "≤",
            TARGET_WORKER_P99_US,
            true,
        ),
    ];
    let mut out = format!(
        "## Emitter\n\n\
         `cluster2-bench emitter`: {trips} round trips each way and {messages} one-way messages to \
         one worker, per round; medians of {} rounds, every round listed. cluster2: a two-worker \
         cluster; the worker-originated round trips run inside a request handler. Peer: node's \
         cluster IPC (`process.send`), same shape (`bench/node/ipc-rtt.js`).\n\n\
         | | cluster2 (median) | rounds | node (median) | rounds | ratio | target | met |\n\
         |---|--:|--:|--:|--:|--:|---|---|\n",
        config.rounds.max(1),
    );
    for (name, f, sign, target, lower_is_better) in rows {
        let (o, n) = (pick(&ours, f), pick(&node, f));
        let (ratio, met_it) = if lower_is_better {
            (format!("{:.2}× faster", n / o), o <= target)
        } else {
            (format!("{:.2}×", o / n), o >= target)
        };
        let unit = if lower_is_better { " µs" } else { "" };
        out.push_str(&format!(
            "| {name} | {o:.1}{unit} | {} | {n:.1}{unit} | {} | {ratio} | {sign} {target}{unit} | {} |\n",
            every(&ours, f),
            every(&node, f),
            met(met_it),
        ));
    }
    Ok(out)
}
