//! `rolling`: a rolling restart (SIGHUP) of `hello` with 2 workers under `wrk` load: failed
//! requests during it, and p99 latency during versus before.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::Config;
use crate::http::{Wrk, parse_wrk};
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;

const TARGET_P99_RATIO: f64 = 2.0;

async fn wrk(config: &Config, port: u16, secs: u64) -> Result<Proc, String> {
    Proc::spawn(
        "wrk",
        &config.wrk,
        &[
            format!("-t{}", config.wrk_threads),
            format!("-c{}", config.connections),
            format!("-d{secs}s"),
            "--latency".to_owned(),
            "--timeout=5s".to_owned(),
            format!("http://127.0.0.1:{port}/"),
        ],
    )
}

async fn report(p: Proc, secs: u64) -> Result<Wrk, String> {
    let out = p.output(Duration::from_secs(secs + 20)).await?;
    parse_wrk(&out).ok_or_else(|| format!("cannot read wrk's report:\n{out}"))
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let secs = config.duration.as_secs().max(5);
    let mut rows = Vec::new();
    for round in 0..config.rounds.max(1) {
        eprintln!("rolling: round {} of {}", round + 1, config.rounds.max(1));
        let server = bins.hello(2, &[]);
        let mut running = server.start(config.timeout).await?;
        let port = running.ready.port;
        let old = running.ready.workers.clone();
        let before = report(wrk(config, port, secs).await?, secs).await?;
        let during = wrk(config, port, secs).await?;
        // Let the load settle, then roll every worker.
        tokio::time::sleep(Duration::from_secs(secs / 4)).await;
        let _ = kill(Pid::from_raw(running.proc.pid() as i32), Signal::SIGHUP);
        for _ in 0..old.len() {
            running
                .proc
                .wait_line(|l| l.contains("replaced worker"), Duration::from_secs(secs))
                .await?;
        }
        let during = report(during, secs).await?;
        running.proc.stop(config.timeout).await?;
        rows.push((before, during));
    }
    let mut md = format!(
        "## Rolling restart under load\n\n\
         `cluster2-bench rolling`: `hello` with 2 workers; wrk -t{} -c{} for {secs} s before, \
         then again for {secs} s while SIGHUP replaces both workers one at a time (both \
         replacements finish inside the run). Failed requests are wrk's socket errors plus \
         non-2xx answers.\n\n\
         | round | requests during | failed during | p99 before | p99 during | ratio | target |\n\
         |---|---|---|---|---|---|---|\n",
        config.wrk_threads, config.connections
    );
    let mut all_ok = true;
    for (i, (before, during)) in rows.iter().enumerate() {
        let ratio = during.latency_ms[3] / before.latency_ms[3];
        let ok = during.errors == 0 && ratio <= TARGET_P99_RATIO;
        all_ok &= ok;
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {ratio:.2}× | 0 failed, ≤ {TARGET_P99_RATIO}× ({}) |\n",
            i + 1,
            during.requests,
            during.errors,
            before.latency_ms[3],
            during.latency_ms[3],
            met(ok)
        ));
    }
    md.push_str(&format!("\nAll rounds within target: {}.\n", met(all_ok)));
    Ok(md)
}
