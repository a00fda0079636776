//! What each worker reports to the master every `heartbeat_interval`, and how it is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ipc::message::ToMaster;

/// One report from a worker. The master keeps the latest of each worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Heartbeat {
    /// The worker's pid.
    pub pid: u32,
    /// The worker's id.
    pub worker: usize,
    /// Time since the worker process started.
    pub uptime: Duration,
    /// CPU used over the last interval, in percent of one core (may exceed 100 with several
    /// runtime threads).
    pub cpu: f64,
    /// Resident memory, in bytes.
    pub memory: u64,
    /// Connections open on the shared port right now.
    pub open_connections: u64,
    /// Connections accepted on the shared port since start.
    pub total_connections: u64,
    /// Requests answered since the last heartbeat.
    pub transactions: u64,
    /// Summed time to the response head of those requests.
    pub durations: Duration,
    /// Requests per second over the last interval.
    pub tps: f64,
    /// Requests answered since start.
    pub total_transactions: u64,
    /// Summed time to the response head of every request since start.
    pub total_durations: Duration,
    /// 5xx responses since the last heartbeat.
    pub errors: u64,
    /// Handler panics since the last heartbeat (each answered with a 500).
    pub panics: u64,
    /// How late a short timer fired, at worst, over the last interval: how long the runtime
    /// was kept from running ready tasks.
    pub event_loop_lag: Duration,
    /// The time this heartbeat covers.
    pub cycle: Duration,
}

/// Counters the request path updates; the reporter reads and resets the per-interval ones.
#[derive(Debug, Default)]
pub(crate) struct AppStats {
    transactions: AtomicU64,
    durations_us: AtomicU64,
    total_transactions: AtomicU64,
    total_durations_us: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
}

impl AppStats {
    pub(crate) fn record(&self, took: Duration, server_error: bool) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.durations_us.fetch_add(us, Ordering::Relaxed);
        self.total_transactions.fetch_add(1, Ordering::Relaxed);
        self.total_durations_us.fetch_add(us, Ordering::Relaxed);
        if server_error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }
}

/// The tower layer cluster2 puts in front of the application on the shared port: counts each
/// request and its time to the response head, counts 5xx answers, and turns a handler panic
/// into a 500 (the connection and the worker live on). Its figures feed the heartbeats.
#[derive(Clone, Debug, Default)]
pub struct CountLayer {
    stats: Arc<AppStats>,
}

impl CountLayer {
    /// A layer with fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_stats(stats: Arc<AppStats>) -> Self {
        Self { stats }
    }
}

impl<S> tower::Layer<S> for CountLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            stats: self.stats.clone(),
        }
    }
}

/// The service made by [`CountLayer`].
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    stats: Arc<AppStats>,
}

type Req = http::Request<axum::body::Body>;
type Resp = http::Response<axum::body::Body>;

impl<S> tower::Service<Req> for Counted<S>
where
    S: tower::Service<Req, Response = Resp, Error = std::convert::Infallible>,
{
    type Response = Resp;
    type Error = std::convert::Infallible;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        use futures_util::FutureExt;
        let started = Instant::now();
        CountedFuture {
            response: std::panic::AssertUnwindSafe(self.inner.call(request)).catch_unwind(),
            started,
            stats: self.stats.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Counted`]: the inner one, timed, with a panic turned into a 500.
    pub struct CountedFuture<F> {
        #[pin]
        response: futures_util::future::CatchUnwind<std::panic::AssertUnwindSafe<F>>,
        started: Instant,
        stats: Arc<AppStats>,
    }
}

impl<F> std::fmt::Debug for CountedFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedFuture")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl<F> std::future::Future for CountedFuture<F>
where
    F: std::future::Future<Output = Result<Resp, std::convert::Infallible>>,
{
    type Output = Result<Resp, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let response = match std::task::ready!(this.response.poll(cx)) {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                this.stats.panicked();
                let mut response = Resp::new(axum::body::Body::from("internal error"));
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        };
        this.stats
            .record(this.started.elapsed(), response.status().is_server_error());
        std::task::Poll::Ready(Ok(response))
    }
}

/// Connection counts of the shared port.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    pub(crate) open: AtomicU64,
    pub(crate) total: AtomicU64,
}

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
        loop {
            // The first tick completes at once: the master hears from a worker as soon as it
            // serves.
            let last_one = tokio::select! {
                _ = ticker.tick() => None,
                done = final_rx.recv() => Some(done),
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
            let transactions = app.transactions.swap(0, Ordering::Relaxed);
            let beat = Heartbeat {
                pid: std::process::id(),
                worker,
                uptime: started.map_or(Duration::ZERO, |t| t.elapsed()),
                cpu,
                memory: resident_memory(),
                open_connections: conns.open.load(Ordering::Relaxed),
                total_connections: conns.total.load(Ordering::Relaxed),
                transactions,
                durations: Duration::from_micros(app.durations_us.swap(0, Ordering::Relaxed)),
                tps: if cycle.is_zero() {
                    0.0
                } else {
                    transactions as f64 / cycle.as_secs_f64()
                },
                total_transactions: app.total_transactions.load(Ordering::Relaxed),
                total_durations: Duration::from_micros(
                    app.total_durations_us.load(Ordering::Relaxed),
                ),
                errors: app.errors.swap(0, Ordering::Relaxed),
                panics: app.panics.swap(0, Ordering::Relaxed),
                event_loop_lag: Duration::from_micros(lag.swap(0, Ordering::Relaxed)),
                cycle,
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
