//! The monitor app, served by the master on `mon_host:mon_port`: the ECV, `/workers`,
//! `/statuses`, `/caches`, `/deps`, `/metrics`, `/events`, plus whatever `#[configure_monitor]`
//! adds. It reads the master's board and journal and never changes them; changes go through
//! the operator controls (`crate::master::pause` …), like any code in the master.
//!
//! Every field of every answer is documented in `docs/monitor-api.md` (the crate docs'
//! `monitor_api`); a test compares it with what a cluster serves, so a field added here without
//! its row there fails.

mod dashboard; // the debug page and its live feed
mod debug_logs; // a process's live log lines and its log filter
pub(crate) mod debug_profile; // /debug/workers/{pid}/profile and /stacks
mod debug_session; // taking a worker out of traffic to inspect it
pub(crate) mod deps; // /deps, from the embedded Cargo.lock
mod errors; // every error as JSON of one shape
mod events; // /events: the lifecycle journal as server-sent events
pub(crate) mod guard; // who may use the monitor: token, cross-site requests, Host
mod metrics; // /metrics in OpenMetrics text
pub(crate) mod scale; // POST /workers/scale: the number of workers, changed at run time
pub(crate) mod server;
mod workers; // /workers, and the shape of one worker's entry // the accept loop: request-head deadline, connection cap

use std::net::TcpListener;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, rejection::JsonRejection};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use errors::error;
use errors::from_error;

use crate::cluster::ConfigureMonitor;
use crate::ecv::Ecv;
use crate::master::Board;

/// The largest request body the monitor accepts: its inputs are small JSON values.
const BODY_LIMIT: usize = 64 * 1024;

/// What the monitor's routes read.
#[derive(Clone)]
pub(crate) struct Monitor {
    pub(crate) board: Arc<Board>,
    pub(crate) ecv: Ecv,
    pub(crate) dependencies: deps::Dependencies,
    /// How often the debug page's state is refreshed: the heartbeat interval.
    pub(crate) refresh: std::time::Duration,
    /// The longest CPU profile taken (`mon.max_profile`), in whole seconds.
    pub(crate) max_profile_secs: u32,
    /// The request duration histograms' bucket bounds (`metrics.buckets`), in seconds.
    pub(crate) buckets: Arc<[f64]>,
}

pub(crate) fn router(monitor: Monitor) -> Router {
    let Monitor {
        board,
        ecv,
        dependencies,
        refresh,
        max_profile_secs,
        buckets,
    } = monitor;
    let dashboard = dashboard::Dashboard::new(board.clone(), ecv.clone(), refresh);
    let workers_board = board.clone();
    let metrics_board = board.clone();
    let metrics_ecv = ecv.clone();
    let index_deps = dependencies.clone();
    Router::new()
        .route("/", get(move || index(index_deps.clone())))
        .route(
            "/workers",
            get(move || workers::serve(workers_board.clone())),
        )
        .route("/workers/restart", post(rolling_restart))
        .route("/workers/scale", post(scale::serve))
        .route("/workers/{pid}/{action}", post(worker_action))
        .route("/statuses", get(all_statuses))
        .route("/statuses/{name}", get(get_status).post(set_status))
        .route(
            "/deps",
            get(move |query| deps::serve(dependencies.clone(), query)),
        )
        .route("/caches", get(caches))
        .route("/debug", get(dashboard::page))
        .route("/debug/assets/page.js", get(dashboard::script))
        .route("/debug/assets/page.css", get(dashboard::style))
        .route("/debug/stream", get(move || dashboard.clone().stream()))
        .merge(debug_session::routes())
        .route("/events", get(events::stream))
        .route("/events/recent", get(events::recent))
        // Liveness for Kubernetes and the like: answered by the master's event loop, which is
        // all it depends on (readiness is the ECV's).
        .route(guard::LIVEZ, get(|| async { "alive" }))
        .route(
            "/metrics",
            get(move || {
                metrics::render(metrics_board.clone(), metrics_ecv.clone(), buckets.clone())
            }),
        )
        .merge(debug_logs::routes())
        .merge(ecv.routes())
        .merge(debug_profile::routes(max_profile_secs))
}

/// The built-in routes, as `GET /` lists them (every one is in `docs/monitor-api.md`).
const ROUTES: &[&str] = &[
    "GET /workers",
    "POST /workers/{pid}/pause",
    "POST /workers/{pid}/resume",
    "POST /workers/{pid}/replace",
    "POST /workers/restart",
    "POST /workers/scale",
    "GET /statuses",
    "GET /statuses/{name}",
    "POST /statuses/{name}",
    "GET /caches",
    "GET /deps",
    "GET /metrics",
    "GET /events",
    "GET /events/recent",
    "GET /debug",
    "GET /debug/stream",
    "POST /debug/workers/{pid}/session",
    "POST /debug/workers/{pid}/session/end",
    "POST /debug/workers/new",
    "POST /debug/workers/{pid}/release",
    "POST /debug/workers/{pid}/dismiss",
    "GET /debug/workers/{pid}/logs",
    "POST /debug/workers/{pid}/log-level",
    "GET /debug/workers/{pid}/profile",
    "GET /debug/workers/{pid}/stacks",
    "GET <ecv.root>",
    "GET /livez",
];

async fn index(deps: deps::Dependencies) -> Json<Value> {
    Json(json!({
        "name": deps.name,
        "version": deps.version,
        "pid": std::process::id(),
        "routes": ROUTES,
    }))
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

/// A pid from a path, or why it is not one (a 400).
fn pid_of(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("`{text}` is not a pid"))
}

async fn worker_action(Path((pid, action)): Path<(String, String)>) -> Response {
    let pid = match pid_of(&pid) {
        Ok(pid) => pid,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let result = match action.as_str() {
        "pause" => crate::master::pause(pid).await,
        "resume" => crate::master::resume(pid).await,
        "replace" => crate::master::replace(pid).await,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no action `{other}`: use pause, resume or replace"),
            );
        }
    };
    match result {
        Ok(()) => Json(json!({ "pid": pid, "done": action })).into_response(),
        Err(e) => from_error(&e),
    }
}

async fn rolling_restart() -> Response {
    match crate::master::rolling_restart().await {
        Ok(n) => Json(json!({ "queued": n })).into_response(),
        Err(e) => from_error(&e),
    }
}

async fn all_statuses() -> Json<Value> {
    Json(statuses(crate::status::DEFAULT_TIMEOUT).await)
}

/// Every status across the cluster, by name, each process bounded by `timeout`. A status that
/// was unregistered meanwhile is left out; a process that fails is an entry with its error.
async fn statuses(timeout: std::time::Duration) -> Value {
    let mut all = serde_json::Map::new();
    for name in crate::status::statuses() {
        if let Ok(entries) = crate::status::query(&name, None, timeout).await {
            all.insert(name, json!(entries));
        }
    }
    Value::Object(all)
}

async fn caches() -> Response {
    match caches_state(std::time::Duration::from_secs(2)).await {
        Some(state) => Json(state).into_response(),
        // No cache in this cluster: the error says so (503).
        None => match crate::cache::manager_stats().await {
            Err(e) => from_error(&e),
            Ok(all) => Json(caches_view(&all)).into_response(),
        },
    }
}

/// The cache as the monitor shows it: where it lives (`local`, or Redis with its URL without
/// the password), whether it answers now, and every namespace's figures (with Redis, the
/// whole fleet's). `None` when this cluster has no cache.
pub(super) async fn caches_state(timeout: std::time::Duration) -> Option<Value> {
    let backend = crate::cache::backend_state()?;
    let (namespaces, error) =
        match tokio::time::timeout(timeout, crate::cache::manager_stats()).await {
            Ok(Ok(all)) => (caches_view(&all), None),
            Ok(Err(e)) => (json!([]), Some(e.to_string())),
            Err(_) => (
                json!([]),
                Some(format!(
                    "the cache backend did not answer within {}",
                    humantime::format_duration(timeout)
                )),
            ),
        };
    // With Redis, the subscription connection's last ping counts too: the figures may have
    // come back over the command connection while watches are cut off.
    let connected = error.is_none() && backend.connected.unwrap_or(true);
    Some(json!({
        "backend": backend.kind,
        "url": backend.url,
        "connected": connected,
        "error": error,
        "namespaces": namespaces,
    }))
}

/// The cache manager's figures as the monitor shows them: with its expiry in seconds, as
/// every duration of the monitor.
fn caches_view(all: &[crate::cache::NsFigures]) -> Value {
    all.iter()
        .map(|ns| {
            json!({
                "namespace": ns.namespace,
                "persist": ns.persist,
                "expire_secs": ns.expire_ms.map(|ms| ms as f64 / 1000.0),
                "entries": ns.entries,
                "bytes": ns.bytes,
                "hits": ns.hits,
                "misses": ns.misses,
                "loads": ns.loads,
                "lock_waits": ns.lock_waits,
                "errors": ns.errors,
                "evictions": ns.evictions,
                "max_entries": ns.max_entries,
                "max_bytes": ns.max_bytes,
            })
        })
        .collect()
}

async fn get_status(Path(name): Path<String>) -> Response {
    match crate::status::get_status(&name).await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => from_error(&e),
    }
}

async fn set_status(
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Json(value) = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    match crate::status::set_status(&name, value).await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => from_error(&e),
    }
}

/// Serves the monitor until `stop`; the user's `configure_monitor` runs first.
pub(crate) async fn serve(
    listeners: Vec<TcpListener>,
    monitor: Monitor,
    configure: Option<ConfigureMonitor>,
    guard: guard::Guard,
    limits: server::Limits,
    stop: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    for listener in &listeners {
        listener.set_nonblocking(true)?;
    }
    // One per address of `mon_host`, served together.
    let listener = crate::listen::Listeners::new(
        listeners
            .into_iter()
            .map(crate::listen::Listener::Tcp)
            .collect(),
    )?;
    let ecv = monitor.ecv.options();
    let exempt = errors::Exempt(
        [&ecv.root, &ecv.mark_up, &ecv.mark_down]
            .map(String::clone)
            .into(),
    );
    let mut app = router(monitor);
    if let Some(configure) = configure {
        app = configure(app).await;
    }
    let app = app
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            exempt,
            errors::json_errors,
        ));
    let app = app.layer(guard); // outermost: who may ask comes before anything is read
    Ok(tokio::spawn(server::serve(listener, app, limits, stop)))
}
