//! A cluster whose master emits one event to every worker (`Target::AllWorkers`) at a fixed
//! rate, measuring its own CPU over that time: what a fan-out costs the master as the number
//! of workers grows. Every worker counts what it received; the master checks the counts add up.
//! Prints one JSON line on stdout, then stops. Run by `cluster2-bench scale`.
//!
//! ```text
//! fanout-bench --workers=32 --log.level=warn -- RATE SECONDS
//! ```
//!
//! RATE: broadcasts per second (default 1000); SECONDS: how long (default 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use cluster2::ErrorKind;
use cluster2::emitter::{self, Target};

/// Events this worker received.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Broadcasts are sent in batches, one batch per tick: tokio's timers have a millisecond's
/// grain, so a tick per broadcast would cap the rate.
const TICK: Duration = Duration::from_millis(10);

#[cluster2::configure_app]
fn app() -> Router {
    emitter::on("tick", |_| {
        RECEIVED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    emitter::on("report", |_| {
        emitter::emit_to(&[Target::Master], "count", RECEIVED.load(Ordering::Relaxed))?;
        Ok(())
    });
    Router::new()
}

/// User plus system CPU time of this process (every thread), in seconds.
fn own_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    getrusage(UsageWho::RUSAGE_SELF).map_or(f64::NAN, |u| {
        (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
    })
}

fn arg(started: &cluster2::Started, i: usize, default: f64) -> f64 {
    started
        .args()
        .get(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cluster2::main(workers = 4, port = 0, mon_port = 0, cache(enable = false))]
async fn main(started: cluster2::Started) -> Result<(), String> {
    if started.role() != cluster2::Role::Master {
        return Ok(());
    }
    let workers = started.worker_pids().len() as u64;
    let rate = arg(&started, 0, 1000.0).max(1.0);
    let seconds = arg(&started, 1, 3.0).max(0.1);
    let (counts, mut count) = tokio::sync::mpsc::unbounded_channel::<u64>();
    emitter::on("count", move |ev| {
        let _ = counts.send(ev.args()?);
        Ok(())
    });

    let per_tick = rate * TICK.as_secs_f64();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent, mut refused, mut owed) = (0u64, 0u64, 0.0f64);
    let cpu_before = own_cpu();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        ticker.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            match emitter::emit_to(&[Target::AllWorkers], "tick", sent) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Overflow => refused += 1,
                Err(e) => return Err(e.to_string()),
            }
            sent += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = own_cpu() - cpu_before;

    // Every worker answers with what it received once the queue ahead of `report` is drained.
    emitter::emit_to(&[Target::AllWorkers], "report", ()).map_err(|e| e.to_string())?;
    let mut delivered = 0u64;
    for _ in 0..workers {
        delivered += tokio::time::timeout(Duration::from_secs(30), count.recv())
            .await
            .map_err(|_| "a worker did not report its count within 30s".to_owned())?
            .unwrap_or(0);
    }
    println!(
        "{{\"workers\":{workers},\"broadcasts\":{sent},\"delivered\":{delivered},\"expected\":{},\
         \"refused\":{refused},\"seconds\":{wall:.3},\"master_cpu_secs\":{cpu:.4}}}",
        sent * workers
    );
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
    Ok(())
}
