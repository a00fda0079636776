//! The worker's heartbeat reporter: a task that sends the master a [`Heartbeat`] right away,
//! then every `heartbeat_interval`, and one last one on a graceful stop. It measures what the
//! request path does not: CPU time, resident memory, uptime and event-loop lag. It also tells
//! the master, once, that the worker answered its first request (`ToMaster::Served`), and
//! sends a heartbeat at once when the worker reaches its `max_requests` limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::counting::{AppStats, ConnStats};
use crate::heartbeat::Heartbeat;
use crate::ipc::message::ToMaster;

/// How often the lag probe wakes up.
const LAG_PROBE: Duration = Duration::from_millis(50);

/// Asks the reporter for one last heartbeat, covering everything up to now.
#[derive(Debug)]
pub(crate) struct FinalBeat(tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>);

impl FinalBeat {
    /// Sends the last heartbeat and waits (briefly) until it is on its way to the master.
    pub(crate) async fn send(self) {
        let (done, sent) = tokio::sync::oneshot::channel();
        if self.0.send(done).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
        }
    }
}

/// Sends a heartbeat right away, then every `interval`, until the channel to the master closes
/// or the final beat is asked for.
pub(crate) fn spawn_reporter(
    worker: usize,
    interval: Duration,
    app: Arc<AppStats>,
    conns: Arc<ConnStats>,
) -> FinalBeat {
    let (final_tx, mut final_rx) =
        tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
    let lag = Arc::new(AtomicU64::new(0));
    let probe = lag.clone();
    tokio::spawn(async move {
        loop {
            let start = Instant::now();
            tokio::time::sleep(LAG_PROBE).await;
            let late = start.elapsed().saturating_sub(LAG_PROBE);
            probe.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
        }
    });
    tokio::spawn(async move {
        let Some(master) = crate::ipc::peers::master() else {
            return;
        };
        let started = process_start();
        let mut last = Instant::now();
        let mut last_cpu = cpu_time();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut served = false;
        let mut limit_told = false;
        loop {
            // The first tick completes at once: the master hears from a worker as soon as it
            // serves.
            let last_one = tokio::select! {
                _ = ticker.tick() => None,
                done = final_rx.recv() => Some(done),
                // At its `max_requests` limit: a heartbeat now, which the master judges.
                () = app.limit_reached(), if !limit_told => {
                    limit_told = true;
                    None
                }
                () = app.first_answered(), if !served => {
                    served = true;
                    let _ = master.send(&ToMaster::Served).await;
                    continue;
                }
            };
            let now = Instant::now();
            let cycle = now - last;
            let cpu_now = cpu_time();
            // The first beat comes right after start: its interval is too short to measure,
            // so it reports the average since the process started.
            let (cpu_span, cpu_used) = if cycle < Duration::from_millis(10) {
                (started.map_or(cycle, |t| t.elapsed()), cpu_now)
            } else {
                (cycle, cpu_now.saturating_sub(last_cpu))
            };
            let cpu = if cpu_span.is_zero() {
                0.0
            } else {
                cpu_used.as_secs_f64() / cpu_span.as_secs_f64() * 100.0
            };
            let taken = app.take();
            let beat = Heartbeat {
                pid: std::process::id(),
                worker,
                uptime: started.map_or(Duration::ZERO, |t| t.elapsed()),
                cpu_percent: cpu,
                memory_bytes: resident_memory(),
                open_connections: conns.open.load(Ordering::Relaxed),
                connections_total: conns.total.load(Ordering::Relaxed),
                requests: taken.transactions,
                request_duration: taken.durations,
                requests_per_second: if cycle.is_zero() {
                    0.0
                } else {
                    taken.transactions as f64 / cycle.as_secs_f64()
                },
                requests_total: taken.total_transactions,
                request_duration_total: taken.total_durations,
                request_duration_buckets: taken.buckets,
                errors: taken.errors,
                panics: taken.panics,
                protocol_errors: conns.protocol_errors.swap(0, Ordering::Relaxed),
                access_log_dropped_total: crate::log::access::dropped(),
                event_loop_lag: Duration::from_micros(lag.swap(0, Ordering::Relaxed)),
                interval: cycle,
            };
            last = now;
            last_cpu = cpu_now;
            let sent = master.send(&ToMaster::Heartbeat(Box::new(beat))).await;
            if let Some(done) = last_one {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            if sent.is_err() {
                return;
            }
        }
    });
    FinalBeat(final_tx)
}

/// When this process started, as an `Instant` (from its age in /proc).
fn process_start() -> Option<Instant> {
    static START: std::sync::OnceLock<Option<Instant>> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Field 22 (starttime, in clock ticks since boot), counted after the command name.
        let after = stat.rsplit_once(')')?.1;
        let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let age = uptime - ticks as f64 / hz as f64;
        Instant::now().checked_sub(Duration::from_secs_f64(age.max(0.0)))
    })
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
            };
            tv(usage.user_time()) + tv(usage.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Resident set size, from /proc/self/statm.
fn resident_memory() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    pages * page
}
