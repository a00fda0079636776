//! `emitter`: cluster2's emitter against node's cluster IPC (`process.send`), both one worker:
//! round trips master → worker → master, and one-way messages per second to the worker.

use std::time::Duration;

use crate::cli::Config;
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::median;

const TARGET_P50_US: f64 = 25.0;
const TARGET_P99_US: f64 = 100.0;
const TARGET_ONE_WAY: f64 = 200_000.0;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    p50: f64,
    p99: f64,
    one_way: f64,
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
    let (o50, o99, ow) = (
        pick(&ours, |f| f.p50),
        pick(&ours, |f| f.p99),
        pick(&ours, |f| f.one_way),
    );
    let (n50, n99, nw) = (
        pick(&node, |f| f.p50),
        pick(&node, |f| f.p99),
        pick(&node, |f| f.one_way),
    );
    Ok(format!(
        "## Emitter: master → worker → master\n\n\
         `cluster2-bench emitter`: {trips} round trips and {messages} one-way messages to one worker, \
         per round; medians of {} rounds. Peer: node's cluster IPC (`process.send`), same shape \
         (`bench/node/ipc-rtt.js`).\n\n\
         | | cluster2 emitter | node cluster IPC | ratio | target | met |\n|---|---|---|---|---|---|\n\
         | round trip p50 | {o50:.1} µs | {n50:.1} µs | {:.2}× faster | ≤ {TARGET_P50_US} µs | {} |\n\
         | round trip p99 | {o99:.1} µs | {n99:.1} µs | {:.2}× faster | ≤ {TARGET_P99_US} µs | {} |\n\
         | one-way messages/s | {ow:.0} | {nw:.0} | {:.2}× | ≥ {TARGET_ONE_WAY:.0} | {} |\n",
        config.rounds.max(1),
        n50 / o50,
        met(o50 <= TARGET_P50_US),
        n99 / o99,
        met(o99 <= TARGET_P99_US),
        ow / nw,
        met(ow >= TARGET_ONE_WAY),
    ))
}
