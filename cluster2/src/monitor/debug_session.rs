//! Debug sessions, the original's "debug this worker": `POST /debug/workers/{pid}/session`
//! takes a worker out of traffic (its successor warms up and takes its place first, so the
//! cluster keeps its capacity) and keeps it alive to be inspected — its logs, its profile, its
//! stacks — until `POST /debug/workers/{pid}/session/end` stops it.

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

pub(super) fn routes() -> Router {
    Router::new()
        .route("/debug/workers/{pid}/session", post(start))
        .route("/debug/workers/{pid}/session/end", post(end))
}

async fn start(Path(pid): Path<String>) -> Response {
    let pid = match super::pid_of(&pid) {
        Ok(pid) => pid,
        Err(e) => return super::error(StatusCode::BAD_REQUEST, e),
    };
    answer(
        pid,
        "session started",
        crate::master::debug_session(pid).await,
    )
}

async fn end(Path(pid): Path<String>) -> Response {
    let pid = match super::pid_of(&pid) {
        Ok(pid) => pid,
        Err(e) => return super::error(StatusCode::BAD_REQUEST, e),
    };
    answer(
        pid,
        "session ended",
        crate::master::end_debug_session(pid).await,
    )
}

fn answer(pid: u32, done: &str, result: crate::Result<()>) -> Response {
    match result {
        Ok(()) => Json(json!({ "pid": pid, "done": done })).into_response(),
        // The control's kind decides: not found, conflict, timeout, shutting down.
        Err(e) => super::errors::from_error(&e),
    }
}
