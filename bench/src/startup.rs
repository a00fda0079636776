//! `startup`: from exec to the "ready" line, cluster2 vs node's cluster module.

use std::fmt::Write as _;
use std::time::Duration;

use crate::retry::Disturbance;

use crate::cli::Config;
use crate::cpu;
use crate::report::{met, ms};
use crate::servers::{Bins, Server};
use crate::stats::{max, median, min, percentile};

/// How long the machine is watched for other work before and after each run.
const PROBE: Duration = Duration::from_millis(200);

/// The target of the issue: cluster2 ready within this many milliseconds with 4 workers.
const TARGET_MS: f64 = 60.0;

struct Samples {
    server: Server,
    startup_ms: Vec<f64>,
    stop_ms: Vec<f64>,
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let mut peers = [
        Samples {
            server: bins.hello(config.workers, &[]),
            startup_ms: Vec::new(),
            stop_ms: Vec::new(),
        },
        Samples {
            server: bins.node(config.workers),
            startup_ms: Vec::new(),
            stop_ms: Vec::new(),
        },
    ];
    eprintln!(
        "startup: {} runs of each, alternating which goes first",
        config.runs
    );
    let mut disturbance = Disturbance::default();
    for run in 0..config.runs {
        let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let peer = &mut peers[i];
            let mut attempt = 0;
            loop {
                // Other work on the machine, measured while nothing of the benchmark runs,
                // just before and just after the run.
                let before = cpu::others_busy(PROBE).await;
                let running = peer.server.start(config.timeout).await?;
                let stopped = running.proc.stop(config.timeout).await?;
                let after = cpu::others_busy(PROBE).await;
                let others = before.max(after);
                let startup = as_ms(running.startup);
                let noisy = others > config.max_other;
                eprintln!(
                    "  run {:>2}/{}: {:<32} ready in {:>7.1} ms, stopped in {:>6.1} ms{}",
                    run + 1,
                    config.runs,
                    peer.server.label,
                    startup,
                    as_ms(stopped.took),
                    if noisy {
                        format!(" (other processes busy: {others:.2} CPUs)")
                    } else {
                        String::new()
                    }
                );
                if disturbance
                    .measure_again(noisy, &mut attempt, config.retries)
                    .await
                {
                    continue;
                }
                peer.startup_ms.push(startup);
                peer.stop_ms.push(as_ms(stopped.took));
                break;
            }
        }
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### startup: exec → \"ready\", {} workers ({} runs each, alternating)\n",
        config.workers, config.runs
    );
    let _ = writeln!(
        md,
        "| server | median | p90 | min | max | stop (SIGTERM → exit), median |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|");
    for peer in &peers {
        let s = &peer.startup_ms;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            peer.server.label,
            ms(median(s)),
            ms(percentile(s, 90.0)),
            ms(min(s)),
            ms(max(s)),
            ms(median(&peer.stop_ms)),
        );
    }
    let hello = median(&peers[0].startup_ms);
    let node = median(&peers[1].startup_ms);
    let _ = writeln!(
        md,
        "\nnode / cluster2 (medians): **{:.1}×** (cluster2 starts {:.1}× faster).  ",
        node / hello,
        node / hello
    );
    let Disturbance {
        redone,
        kept: disturbed,
    } = disturbance;
    let _ = writeln!(
        md,
        "Runs measured again because other processes kept more than {} CPUs busy around them: \
         {redone}; kept although disturbed: {disturbed}.  ",
        config.max_other
    );
    let target = if config.workers == 4 {
        met(hello <= TARGET_MS)
    } else {
        "not comparable (the target is for 4 workers)"
    };
    let _ = writeln!(
        md,
        "Target: cluster2 ≤ {TARGET_MS:.0} ms with 4 workers (median {}): **{target}**.",
        ms(hello)
    );
    Ok(md)
}

fn as_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
