//! What the request path counts for the heartbeats: the tower layer cluster2 puts in front of
//! the application on the shared port ([`CountLayer`]: requests, their time to the response
//! head, 5xx answers, and a handler panic turned into a 500), and the connection counts.
//!
//! Every request goes through here, so the counters are plain relaxed atomics and the layer
//! adds no allocation: the reporter (`worker::reporter`) reads and resets them once per
//! heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters the request path updates; the reporter reads and resets the per-interval ones.
#[derive(Debug)]
pub(crate) struct AppStats {
    transactions: AtomicU64,
    durations_us: AtomicU64,
    total_transactions: AtomicU64,
    total_durations_us: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    /// The buckets' upper bounds in microseconds, the unit the request path measures in
    /// (`metrics.buckets`).
    bounds_us: Box<[u64]>,
    /// Requests since start by time to the response head, one counter per bound and one for
    /// the requests beyond the last (never reset: the master's histograms are cumulative).
    buckets: Box<[AtomicU64]>,
    /// Notified once, when the first request is answered: the master then knows the worker
    /// served (a crash from then on is no crash loop).
    first_answered: tokio::sync::Notify,
    /// The request count at which the reporter sends a heartbeat at once (this worker's
    /// `max_requests` limit); 0: none. Exactly one request reaches it.
    report_at: u64,
    /// Notified once, when `report_at` requests were answered.
    limit_reached: tokio::sync::Notify,
}

impl Default for AppStats {
    fn default() -> Self {
        Self::new(&crate::heartbeat::REQUEST_DURATION_BUCKETS, None)
    }
}

impl AppStats {
    /// Counters for histograms of these bounds, in seconds, whose reporter sends a heartbeat
    /// as soon as `report_at` requests were answered (and otherwise every interval).
    pub(crate) fn new(bounds: &[f64], report_at: Option<u64>) -> Self {
        // Rounded up: a bound of 1.5 µs takes the requests of 1 µs, as `le` says.
        let bounds_us: Box<[u64]> = bounds.iter().map(|b| (b * 1e6).ceil() as u64).collect();
        Self {
            transactions: AtomicU64::default(),
            durations_us: AtomicU64::default(),
            total_transactions: AtomicU64::default(),
            total_durations_us: AtomicU64::default(),
            errors: AtomicU64::default(),
            panics: AtomicU64::default(),
            buckets: (0..=bounds_us.len())
                .map(|_| AtomicU64::default())
                .collect(),
            bounds_us,
            first_answered: tokio::sync::Notify::default(),
            report_at: report_at.unwrap_or(0),
            limit_reached: tokio::sync::Notify::default(),
        }
    }

    pub(crate) fn record(&self, took: Duration, server_error: bool) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.durations_us.fetch_add(us, Ordering::Relaxed);
        let before = self.total_transactions.fetch_add(1, Ordering::Relaxed);
        if before == 0 {
            self.first_answered.notify_one();
        }
        if before.wrapping_add(1) == self.report_at {
            self.limit_reached.notify_one();
        }
        self.total_durations_us.fetch_add(us, Ordering::Relaxed);
        // At most 32 bounds: five comparisons, and one more relaxed add.
        let bucket = self.bounds_us.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        if server_error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until the first request was answered (at once if it was).
    pub(crate) async fn first_answered(&self) {
        if self.total_transactions.load(Ordering::Relaxed) == 0 {
            self.first_answered.notified().await;
        }
    }

    /// Waits until `report_at` requests were answered; never without a limit.
    pub(crate) async fn limit_reached(&self) {
        if self.report_at == 0 {
            return std::future::pending().await;
        }
        self.limit_reached.notified().await;
    }

    pub(crate) fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters for a heartbeat: the per-interval ones are reset, the totals kept.
    pub(crate) fn take(&self) -> Taken {
        Taken {
            transactions: self.transactions.swap(0, Ordering::Relaxed),
            durations: Duration::from_micros(self.durations_us.swap(0, Ordering::Relaxed)),
            total_transactions: self.total_transactions.load(Ordering::Relaxed),
            total_durations: Duration::from_micros(self.total_durations_us.load(Ordering::Relaxed)),
            errors: self.errors.swap(0, Ordering::Relaxed),
            panics: self.panics.swap(0, Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The request counters as one heartbeat reports them.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) transactions: u64,
    pub(crate) durations: Duration,
    pub(crate) total_transactions: u64,
    pub(crate) total_durations: Duration,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
    pub(crate) buckets: Vec<u64>,
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
    /// Connections that ended because their client broke the protocol, since the last
    /// heartbeat took them.
    pub(crate) protocol_errors: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_resets_the_interval_counters_and_keeps_the_totals() {
        let stats = AppStats::default();
        stats.record(Duration::from_millis(3), false);
        stats.record(Duration::from_millis(5), true);
        stats.panicked();
        let first = stats.take();
        assert_eq!(
            (
                first.transactions,
                first.durations,
                first.errors,
                first.panics
            ),
            (2, Duration::from_millis(8), 1, 1)
        );
        stats.record(Duration::from_millis(1), false);
        let second = stats.take();
        assert_eq!(
            (
                second.transactions,
                second.durations,
                second.errors,
                second.panics
            ),
            (1, Duration::from_millis(1), 0, 0)
        );
        assert_eq!(
            (second.total_transactions, second.total_durations),
            (3, Duration::from_millis(9))
        );
    }

    /// Whether a future is still waiting, polled once.
    fn waiting<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut cx).is_pending()
    }

    #[tokio::test]
    async fn the_limit_wakes_the_reporter_once_when_reached_and_never_without_one() {
        let stats = AppStats::new(&crate::heartbeat::REQUEST_DURATION_BUCKETS, Some(3));
        for _ in 0..2 {
            stats.record(Duration::from_millis(1), false);
        }
        let mut reached = std::pin::pin!(stats.limit_reached());
        assert!(waiting(reached.as_mut()), "2 of 3");
        stats.record(Duration::from_millis(1), false);
        reached.await;
        // Past it, no second wake.
        stats.record(Duration::from_millis(1), false);
        let mut again = std::pin::pin!(stats.limit_reached());
        assert!(waiting(again.as_mut()));

        let unlimited = AppStats::new(&crate::heartbeat::REQUEST_DURATION_BUCKETS, None);
        for _ in 0..5 {
            unlimited.record(Duration::from_millis(1), false);
        }
        let mut never = std::pin::pin!(unlimited.limit_reached());
        assert!(waiting(never.as_mut()));
    }
}
