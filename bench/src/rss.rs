//! `rss`: idle memory of each worker process, cluster2 vs node's cluster module.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::Config;
use crate::report::{met, mib};
use crate::servers::{Bins, Server};
use crate::stats::{max, mean};

/// The target of the issue: each cluster2 worker at most this many KiB of VmRSS.
const TARGET_KIB: f64 = 8.0 * 1024.0;

/// Memory of one process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: f64,
    anon: f64,
    file: f64,
    pss: f64,
}

fn memory(pid: u32) -> Result<Memory, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let field = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let rss = field(&status, "VmRSS:").ok_or_else(|| format!("no VmRSS for pid {pid}"))?;
    // Pss splits pages shared between processes (the binary's text, libraries) among them.
    let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| field(&t, "Pss:"))
        .unwrap_or(f64::NAN);
    Ok(Memory {
        rss,
        anon: field(&status, "RssAnon:").unwrap_or(f64::NAN),
        file: field(&status, "RssFile:").unwrap_or(f64::NAN),
        pss,
    })
}

struct Samples {
    server: Server,
    workers: Vec<Memory>,
    leader: Vec<Memory>,
    separate_leader: bool,
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let mut peers: Vec<Samples> = [
        bins.hello(config.workers, &[]),
        bins.node(config.workers),
        bins.bare_hyper(&[]),
    ]
    .into_iter()
    .map(|server| Samples {
        server,
        workers: Vec::new(),
        leader: Vec::new(),
        separate_leader: true,
    })
    .collect();
    eprintln!(
        "rss: {} runs of each, reading /proc {:?} after \"ready\"",
        config.rss_runs, config.settle
    );
    for run in 0..config.rss_runs {
        for peer in &mut peers {
            let running = peer.server.start(config.timeout).await?;
            tokio::time::sleep(config.settle).await;
            let mut read = || -> Result<(), String> {
                for &pid in &running.ready.workers {
                    peer.workers.push(memory(pid)?);
                }
                let leader = running.proc.pid();
                if running.ready.workers == [leader] {
                    peer.separate_leader = false;
                } else {
                    peer.leader.push(memory(leader)?);
                }
                Ok(())
            };
            let outcome = read();
            running.proc.stop(config.timeout).await?;
            outcome?;
            let n = running.ready.workers.len();
            let last = &peer.workers[peer.workers.len() - n..];
            let rss: Vec<String> = last.iter().map(|m| mib(m.rss)).collect();
            eprintln!(
                "  run {}/{}: {:<32} VmRSS per worker: {}",
                run + 1,
                config.rss_runs,
                peer.server.label,
                rss.join(", ")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### rss: idle memory per worker process, {} workers ({} runs each, read {:?} after \
         \"ready\")\n",
        config.workers, config.rss_runs, config.settle
    );
    let _ = writeln!(
        md,
        "| server | VmRSS per worker, mean | max | RssAnon | RssFile | Pss | master / primary \
         VmRSS |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|");
    for peer in &peers {
        let pick = |f: fn(&Memory) -> f64| -> Vec<f64> { peer.workers.iter().map(f).collect() };
        let leader = if peer.separate_leader {
            let rss: Vec<f64> = peer.leader.iter().map(|m| m.rss).collect();
            mib(mean(&rss))
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            peer.server.label,
            mib(mean(&pick(|m| m.rss))),
            mib(max(&pick(|m| m.rss))),
            mib(mean(&pick(|m| m.anon))),
            mib(mean(&pick(|m| m.file))),
            mib(mean(&pick(|m| m.pss))),
            leader,
        );
    }
    let rss = |i: usize| -> f64 {
        let v: Vec<f64> = peers[i].workers.iter().map(|m| m.rss).collect();
        mean(&v)
    };
    let worst: Vec<f64> = peers[0].workers.iter().map(|m| m.rss).collect();
    let _ = writeln!(
        md,
        "\nnode / cluster2 (VmRSS per worker, means): **{:.1}×**.  ",
        rss(1) / rss(0)
    );
    let _ = writeln!(
        md,
        "Target: ≤ {} per cluster2 worker (largest seen: {}): **{}**.",
        mib(TARGET_KIB),
        mib(max(&worst)),
        met(max(&worst) <= TARGET_KIB)
    );
    Ok(md)
}
