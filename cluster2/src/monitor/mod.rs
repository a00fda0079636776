//! The monitor app, served by the master on `mon_host:mon_port`: the ECV, `/workers`,
//! `/statuses`, `/caches`, `/deps`, `/metrics`, `/events`, plus whatever `#[configure_monitor]`
//! adds. It reads the master's board and journal and never changes them; changes go through
//! the operator controls (`crate::master::pause` …), like any code in the master.

mod dashboard; // the debug page and its live feed
mod debug_logs; // a process's live log lines and its log filter
pub(crate) mod debug_profile; // /debug/workers/{pid}/profile and /stacks
mod debug_session; // taking a worker out of traffic to inspect it
pub(crate) mod deps; // /deps, from the embedded Cargo.lock
mod events; // /events: the lifecycle journal as server-sent events
pub(crate) mod guard; // who may use the monitor: token, cross-site requests, Host
mod metrics; // /metrics in OpenMetrics text
pub(crate) mod server; // the accept loop: request-head deadline, connection cap

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
}

pub(crate) fn router(monitor: Monitor) -> Router {
    let Monitor {
        board,
        ecv,
        dependencies,
        refresh,
    } = monitor;
    let dashboard = dashboard::Dashboard::new(board.clone(), ecv.clone(), refresh);
    let workers_board = board.clone();
    let metrics_board = board.clone();
    let metrics_ecv = ecv.clone();
    let index_deps = dependencies.clone();
    Router::new()
        .route("/", get(move || index(index_deps.clone())))
        .route("/workers", get(move || workers(workers_board.clone())))
        .route("/workers/restart", post(rolling_restart))
        .route("/workers/{pid}/{action}", post(worker_action))
        .route("/statuses", get(all_statuses))
        .route("/statuses/{name}", get(get_status).post(set_status))
        .route("/deps", get(move || deps::serve(dependencies.clone())))
        .route("/caches", get(caches))
        .route("/debug", get(dashboard::page))
        .route("/debug/assets/page.js", get(dashboard::script))
        .route("/debug/assets/page.css", get(dashboard::style))
        .route("/debug/stream", get(move || dashboard.clone().stream()))
        .merge(debug_session::routes())
        .route("/events", get(events::stream))
        .route("/events/recent", get(events::recent))
        .route(
            "/metrics",
            get(move || metrics::render(metrics_board.clone(), metrics_ecv.clone())),
        )
        .merge(debug_logs::routes())
        .merge(ecv.routes())
        .merge(debug_profile::routes())
}

async fn index(deps: deps::Dependencies) -> Json<Value> {
    Json(json!({
        "name": deps.name,
        "version": deps.version,
        "pid": std::process::id(),
        "routes": ["/workers", "/statuses", "/statuses/{name}", "/caches", "/deps", "/metrics", "/events", "/events/recent", "/debug", "ECV (see --ecv.root)"],
    }))
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

async fn workers(board: Arc<Board>) -> Json<Value> {
    let snapshot = board.snapshot();
    let queue = snapshot.death_queue;
    let workers: Vec<Value> = snapshot
        .workers
        .into_iter()
        .map(|w| {
            json!({
                "id": w.id,
                "pid": w.pid,
                "state": w.state,
                "uptime_secs": w.spawned_at.elapsed().as_secs_f64(),
                "warm_up_addr": w.warm_up_addr,
                "restarts": w.restarts,
                "crash_streak": w.crash_streak,
                "next_restart_in_secs": w.next_restart_in.map(|d| d.as_secs_f64()),
                "successor_of": w.successor_of,
                "heartbeat": w.heartbeat.as_ref().map(|(hb, _)| hb),
                "heartbeat_age_secs": w.heartbeat.as_ref().map(|(_, at)| at.elapsed().as_secs_f64()),
                "debugging": w.debugging,
                "log_filter": crate::log::current_filter(w.pid),
            })
        })
        .collect();
    Json(json!({ "workers": workers, "death_queue": queue }))
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
        Err(e) if e.kind() == crate::ErrorKind::Timeout => {
            error(StatusCode::GATEWAY_TIMEOUT, e.to_string())
        }
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn rolling_restart() -> Response {
    match crate::master::rolling_restart().await {
        Ok(n) => Json(json!({ "queued": n })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn all_statuses() -> Json<Value> {
    let mut all = serde_json::Map::new();
    for name in crate::status::statuses() {
        let entries = match crate::status::get_status(&name).await {
            Ok(entries) => json!(entries),
            Err(e) => json!({ "error": e.to_string() }),
        };
        all.insert(name, entries);
    }
    Json(Value::Object(all))
}

async fn caches() -> Response {
    match crate::cache::manager_stats().await {
        Ok(all) => Json(all).into_response(),
        Err(e) if e.kind() == crate::ErrorKind::Unavailable => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_status(Path(name): Path<String>) -> Response {
    match crate::status::get_status(&name).await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
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
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// Serves the monitor until `stop`; the user's `configure_monitor` runs first.
pub(crate) async fn serve(
    listener: TcpListener,
    monitor: Monitor,
    configure: Option<ConfigureMonitor>,
    guard: guard::Guard,
    limits: server::Limits,
    stop: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut app = router(monitor);
    if let Some(configure) = configure {
        app = configure(app).await;
    }
    let app = app
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let app = app.layer(guard); // outermost: who may ask comes before anything is read
    Ok(tokio::spawn(server::serve(listener, app, limits, stop)))
}
