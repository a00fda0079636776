//! A one-worker cluster whose master measures the emitter: round trips master → worker →
//! master, and one-way throughput to the worker. Prints one JSON line on stdout, then stops.
//! Run by `cluster2-bench emitter`.
//!
//! Arguments after `--`: round trips (default 20000) and one-way messages (default 500000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use cluster2::ErrorKind;
use cluster2::emitter::{self, Target};

static FLOOD: AtomicU64 = AtomicU64::new(0);

#[cluster2::configure_app]
fn app() -> Router {
    // The worker's side: answer pings, count the flood.
    emitter::on("ping", |ev| {
        let seq: u64 = ev.args()?;
        emitter::emit_to(&[Target::Master], "pong", seq)?;
        Ok(())
    });
    emitter::on("flood", |_| {
        FLOOD.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    emitter::on("flood-end", |_| {
        emitter::emit_to(
            &[Target::Master],
            "flood-count",
            FLOOD.load(Ordering::Relaxed),
        )?;
        Ok(())
    });
    Router::new()
}

fn arg(started: &cluster2::Started, i: usize, default: u64) -> u64 {
    started
        .args()
        .get(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Emits, waiting while the worker's queue is full (the emitter's overflow policy is to refuse).
async fn emit_waiting(worker: u32, event: &str) -> cluster2::Result<()> {
    loop {
        match emitter::emit_to(&[Target::Pid(worker)], event, ()) {
            Err(e) if e.kind() == ErrorKind::Overflow => tokio::task::yield_now().await,
            other => return other,
        }
    }
}

#[cluster2::main(workers = 1, port = 0, mon_port = 0, cache(enable = false))]
async fn main(started: cluster2::Started) -> Result<(), String> {
    if started.role() != cluster2::Role::Master {
        return Ok(());
    }
    let worker = started.worker_pids()[0];
    let (pongs, mut pong) = tokio::sync::mpsc::unbounded_channel::<u64>();
    emitter::on("pong", move |ev| {
        let _ = pongs.send(ev.args()?);
        Ok(())
    });
    let (counts, mut count) = tokio::sync::mpsc::unbounded_channel::<u64>();
    emitter::on("flood-count", move |ev| {
        let _ = counts.send(ev.args()?);
        Ok(())
    });

    let round_trips = arg(&started, 0, 20_000);
    let mut latencies = Vec::with_capacity(round_trips as usize);
    for i in 0..(round_trips + 2_000) {
        let t = Instant::now();
        emitter::emit_to(&[Target::Pid(worker)], "ping", i).map_err(|e| e.to_string())?;
        let got = tokio::time::timeout(Duration::from_secs(5), pong.recv())
            .await
            .map_err(|_| "no pong within 5s".to_owned())?;
        assert_eq!(got, Some(i), "pongs come back in order");
        // The first 2000 warm up the path.
        if i >= 2_000 {
            latencies.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let (p50, p99) = (pick(0.5), pick(0.99));

    let messages = arg(&started, 1, 500_000);
    let t = Instant::now();
    for _ in 0..messages {
        emit_waiting(worker, "flood")
            .await
            .map_err(|e| e.to_string())?;
    }
    emit_waiting(worker, "flood-end")
        .await
        .map_err(|e| e.to_string())?;
    let delivered = tokio::time::timeout(Duration::from_secs(60), count.recv())
        .await
        .map_err(|_| "no count within 60s".to_owned())?
        .unwrap_or(0);
    let rate = delivered as f64 / t.elapsed().as_secs_f64();
    println!(
        "{{\"rtt_p50_us\":{p50:.1},\"rtt_p99_us\":{p99:.1},\"one_way_per_sec\":{rate:.0},\"delivered\":{delivered},\"sent\":{messages}}}"
    );
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
    Ok(())
}
