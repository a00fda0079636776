//! The debug page (`GET /debug`, its script and styles) and its live feed
//! (`GET /debug/stream`, server-sent events).
//!
//! The feed sends, first, every live worker's recent history (`history`: the board's last ten
//! minutes of heartbeats) and then, once per heartbeat interval, the whole state of the
//! cluster (`state`: workers as `/workers` shows them, totals, ECV, death queue, caches,
//! statuses). One task computes
//! the state for every open page and only while at least one is open, so a page costs the
//! master nothing when nobody looks and the same whether one or ten are open. Lifecycle
//! events have their own stream (`/events`), which the page opens beside this one.
//!
//! With `mon.token`, a browser opening `/debug` without the token gets the page as a 401
//! (`guard.rs`); the script asks for the token and sends it as `Authorization: Bearer` on
//! every request, streams included; the assets need none.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::ecv::Ecv;
use crate::master::Board;

const PAGE: &str = include_str!("debug_page/page.html");
const SCRIPT: &str = include_str!("debug_page/page.js");
const STYLE: &str = include_str!("debug_page/page.css");

/// How long the feed waits for the cache manager's and the workers' figures before it sends
/// the state without them.
const GATHER_TIMEOUT: Duration = Duration::from_millis(500);

/// The page's answers, with headers that keep it to itself: its own script and styles only,
/// never framed, nothing cached.
pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

pub(super) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        SCRIPT,
    )
        .into_response()
}

pub(super) async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        STYLE,
    )
        .into_response()
}

/// The state of the cluster for every open page, computed by one task.
#[derive(Clone)]
pub(super) struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    board: Arc<Board>,
    ecv: Ecv,
    interval: Duration,
    latest: watch::Sender<Option<Arc<str>>>,
    /// Whether the task that computes the state runs.
    ticking: AtomicBool,
}

impl Dashboard {
    pub(super) fn new(board: Arc<Board>, ecv: Ecv, interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                board,
                ecv,
                interval,
                latest: watch::Sender::new(None),
                ticking: AtomicBool::new(false),
            }),
        }
    }

    /// A receiver of the state; starts the computing task if none runs.
    fn subscribe(&self) -> watch::Receiver<Option<Arc<str>>> {
        // Subscribe first: the task stops only when it sees no receiver.
        let receiver = self.inner.latest.subscribe();
        if !self.inner.ticking.swap(true, Ordering::SeqCst) {
            tokio::spawn(tick(self.inner.clone()));
        }
        receiver
    }

    pub(super) async fn stream(self) -> Response {
        let history =
            serde_json::to_string(&self.inner.board.history()).expect("samples serialize to JSON");
        let mut receiver = self.subscribe();
        // A page that opens between two ticks gets the latest state at once.
        receiver.mark_changed();
        let first = SseEvent::default().event("history").data(history);
        let states = futures_util::stream::unfold(receiver, |mut receiver| async move {
            loop {
                receiver.changed().await.ok()?;
                // `None` until the first tick has computed a state.
                let state = receiver.borrow_and_update().clone();
                if let Some(state) = state {
                    let event = SseEvent::default().event("state").data(&*state);
                    return Some((event, receiver));
                }
            }
        });
        let events = futures_util::StreamExt::map(
            futures_util::StreamExt::chain(futures_util::stream::iter([first]), states),
            Ok::<_, Infallible>,
        );
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response()
    }
}

/// Computes and sends the state once per interval while any page listens.
async fn tick(inner: Arc<Inner>) {
    loop {
        if inner.latest.receiver_count() == 0 {
            inner.ticking.store(false, Ordering::SeqCst);
            // A page that subscribed between the count and the store found the flag still set
            // and started no task: take the work back.
            if inner.latest.receiver_count() == 0 || inner.ticking.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        let state = state(&inner).await.to_string();
        inner.latest.send_replace(Some(state.into()));
        tokio::time::sleep(inner.interval).await;
    }
}

/// Everything the page shows besides the history and the timeline.
async fn state(inner: &Inner) -> Value {
    // One moment for every age in this state, and the same in Unix time: the page places each
    // worker's heartbeat at `at_unix_secs - heartbeat.age_secs`.
    let now = Instant::now();
    let at_unix_secs = crate::lifecycle::unix_now();
    let snapshot = inner.board.snapshot();
    let totals = inner.board.totals();
    let workers: Vec<Value> = snapshot
        .workers
        .iter()
        .map(|w| super::workers::entry(w, now))
        .collect();
    let live_requests: u64 = snapshot
        .workers
        .iter()
        .filter_map(|w| w.heartbeat.as_ref().map(|(b, _)| b.requests_total))
        .sum();
    let requests_per_second: f64 = snapshot
        .workers
        .iter()
        .filter_map(|w| w.heartbeat.as_ref().map(|(b, _)| b.requests_per_second))
        .sum();
    let ecv = match tokio::time::timeout(GATHER_TIMEOUT * 4, inner.ecv.check()).await {
        Ok(Ok(())) => json!({ "up": true, "reason": null }),
        Ok(Err(reason)) => json!({ "up": false, "reason": reason }),
        Err(_) => json!({ "up": false, "reason": "the ECV check did not answer in time" }),
    };
    let caches = super::caches_state(GATHER_TIMEOUT)
        .await
        .unwrap_or_else(|| {
            json!({
                "backend": null,
                "url": null,
                "connected": false,
                "error": "this cluster has no cache (cache.enable = false)",
                "namespaces": [],
            })
        });
    json!({
        "at_unix_secs": at_unix_secs,
        "pid": std::process::id(),
        "phase": inner.board.phase().name(),
        "ecv": ecv,
        "ecv_paths": {
            "mark_up": inner.ecv.options().mark_up,
            "mark_down": inner.ecv.options().mark_down,
        },
        "expected": inner.board.expected(),
        "workers": workers,
        "death_queue": snapshot.death_queue,
        "totals": {
            "requests": totals.requests + live_requests,
            "requests_per_second": requests_per_second,
            "restarts": totals.restarts,
            "replacements": totals.replacements,
        },
        "caches": caches,
        "statuses": super::statuses(GATHER_TIMEOUT).await,
    })
}
