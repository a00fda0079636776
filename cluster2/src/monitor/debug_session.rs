//! Debugging one worker out of traffic, the original's "debug this worker":
//!
//! - `POST /debug/workers/{pid}/session` takes a serving worker out of traffic (its successor
//!   warms up and takes its place first, so the cluster keeps its capacity) and keeps it alive
//!   to be inspected — its logs, its profile, its stacks — until
//!   `POST /debug/workers/{pid}/session/end` stops it;
//! - `POST /debug/workers/new` starts an extra worker held out of traffic, logging with the
//!   filter in the body (`RUST_LOG` syntax, `debug` when empty) and keeping its lines from the
//!   very first, so `GET /debug/workers/{pid}/logs` shows its start-up whenever it is opened;
//!   `POST /debug/workers/{pid}/release` puts it into traffic in the place of the worker that
//!   has served longest, `POST /debug/workers/{pid}/dismiss` stops it.
//!
//! An unknown pid is a 404; a worker in the wrong state for the request, a 409.

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub(super) fn routes() -> Router {
    Router::new()
        .route("/debug/workers/{pid}/session", post(start))
        .route("/debug/workers/{pid}/session/end", post(end))
        .route("/debug/workers/new", post(new))
        .route("/debug/workers/{pid}/release", post(release))
        .route("/debug/workers/{pid}/dismiss", post(dismiss))
}

async fn start(Path(pid): Path<String>) -> Response {
    with_pid(&pid, |pid| async move {
        crate::master::debug_session(pid)
            .await
            .map(|()| json!({ "pid": pid, "done": "session started" }))
    })
    .await
}

async fn end(Path(pid): Path<String>) -> Response {
    with_pid(&pid, |pid| async move {
        crate::master::end_debug_session(pid)
            .await
            .map(|()| json!({ "pid": pid, "done": "session ended" }))
    })
    .await
}

async fn new(body: String) -> Response {
    let mut filter = super::debug_logs::filter_text(&body);
    if filter.is_empty() {
        "debug".clone_into(&mut filter);
    }
    if let Err(why) = crate::options::log_filter(&filter) {
        return super::error(
            StatusCode::BAD_REQUEST,
            format!("invalid log filter `{filter}`: {why}"),
        );
    }
    match crate::master::debug_new(filter.clone()).await {
        Ok(started) => Json(json!({
            "pid": started.pid,
            "worker": started.worker,
            "filter": filter,
            "logs": format!("/debug/workers/{}/logs", started.pid),
        }))
        .into_response(),
        Err(e) => refusal(e),
    }
}

async fn release(Path(pid): Path<String>) -> Response {
    with_pid(&pid, |pid| async move {
        crate::master::release_debug_worker(pid)
            .await
            .map(|released| {
                json!({
                    "pid": pid,
                    "done": "released",
                    "worker": released.worker,
                    "replaced": released.replaced,
                })
            })
    })
    .await
}

async fn dismiss(Path(pid): Path<String>) -> Response {
    with_pid(&pid, |pid| async move {
        crate::master::dismiss_debug_worker(pid)
            .await
            .map(|()| json!({ "pid": pid, "done": "dismissed" }))
    })
    .await
}

async fn with_pid<F, Fut>(pid: &str, act: F) -> Response
where
    F: FnOnce(u32) -> Fut,
    Fut: Future<Output = crate::Result<Value>>,
{
    let pid = match super::pid_of(pid) {
        Ok(pid) => pid,
        Err(e) => return super::error(StatusCode::BAD_REQUEST, e),
    };
    match act(pid).await {
        Ok(done) => Json(done).into_response(),
        Err(e) => refusal(e),
    }
}

/// The control's kind decides: not found, conflict, timeout, shutting down.
fn refusal(e: crate::Error) -> Response {
    super::errors::from_error(&e)
}
