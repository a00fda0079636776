//! `GET /debug/workers/{pid}/logs`: one process's log lines, live, as server-sent events, and
//! `POST /debug/workers/{pid}/log-level`: its log filter, changed live. `{pid}` is a worker,
//! the cache manager or the master; for the log level it can also be `all`, every one of them.
//!
//! A stream sends one event per line, its data the line as JSON
//! (`{"level":"INFO","target":…,"message":…,"fields":{…},"at_unix_secs":…}`), and an event
//! named `dropped`, its data a count, where lines were lost: the process's buffer was full, or
//! this client fell behind the others. The process forwards its lines only while a stream is
//! open on it (`crate::log::hub`), and the stream ends when the process exits. The lines are
//! those the process's filter lets through, what its standard error shows; the filter is
//! checked as the `log.level` option is, and takes `RUST_LOG`'s syntax (`debug`,
//! `info,my_app=trace`), as the body, plain or as a JSON string.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::log::hub::{self, FilterError, Item, Watch};

/// A comment is sent after this long without a line, so that proxies keep the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events written to the client in one chunk, at most.
const CHUNK: usize = 256;

pub(super) fn routes() -> Router {
    Router::new()
        .route("/debug/workers/{pid}/logs", get(logs))
        .route("/debug/workers/{pid}/log-level", post(log_level))
}

async fn logs(Path(pid): Path<String>) -> Response {
    let Ok(pid) = pid.parse::<u32>() else {
        return super::error(StatusCode::BAD_REQUEST, format!("`{pid}` is not a pid"));
    };
    let Some(watch) = hub::watch(pid) else {
        return super::error(StatusCode::NOT_FOUND, no_process(pid));
    };
    let chunks = futures_util::stream::unfold(watch, |mut watch| async move {
        let chunk = next_chunk(&mut watch).await?;
        Some((Ok::<_, Infallible>(chunk), watch))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// The next events for the client, as SSE text: every line already waiting, up to [`CHUNK`],
/// in one write rather than one per line; a keep-alive comment after a quiet while; `None`
/// once the process is gone.
async fn next_chunk(watch: &mut Watch) -> Option<Bytes> {
    if !watch.backlog.is_empty() {
        let mut text = String::new();
        let n = watch.backlog.len().min(CHUNK);
        for item in watch.backlog.drain(..n) {
            write_event(&mut text, Ok(item));
        }
        return Some(Bytes::from(text));
    }
    let first = match tokio::time::timeout(KEEP_ALIVE, watch.lines.recv()).await {
        Err(_) => return Some(Bytes::from_static(b":\n\n")),
        Ok(Err(RecvError::Closed)) => return None,
        Ok(Ok(item)) => Ok(item),
        Ok(Err(RecvError::Lagged(n))) => Err(n),
    };
    let mut text = String::new();
    write_event(&mut text, first);
    for _ in 1..CHUNK {
        match watch.lines.try_recv() {
            Ok(item) => write_event(&mut text, Ok(item)),
            Err(TryRecvError::Lagged(n)) => write_event(&mut text, Err(n)),
            // The end, if closed, comes with the next call.
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    Some(Bytes::from(text))
}

/// One SSE event: a line, or how many lines were lost (`Err`: this client fell behind).
fn write_event(text: &mut String, item: Result<Item, u64>) {
    match item {
        Ok(Item::Line(json)) => {
            // JSON has no raw line breaks, so one `data:` field holds it.
            text.push_str("data: ");
            text.push_str(&json);
            text.push_str("\n\n");
        }
        Ok(Item::Dropped(n)) | Err(n) => {
            let _ = write!(text, "event: dropped\ndata: {n}\n\n");
        }
    }
}

async fn log_level(Path(target): Path<String>, body: String) -> Response {
    let filter = filter_text(&body);
    if let Err(why) = crate::options::log_filter(&filter) {
        return super::error(
            StatusCode::BAD_REQUEST,
            format!("invalid log filter `{filter}`: {why}"),
        );
    }
    if target == "all" {
        return everyone(&filter).await;
    }
    let Ok(pid) = target.parse::<u32>() else {
        return super::error(
            StatusCode::BAD_REQUEST,
            format!("`{target}` is not a pid (nor `all`)"),
        );
    };
    match hub::set_filter(pid, &filter).await {
        Ok(()) => Json(json!({ "pid": pid, "filter": filter })).into_response(),
        Err(e) => super::error(status(&e), explain(pid, &e)),
    }
}

/// Every process at once; the answer lists each one's outcome, and fails if any failed.
async fn everyone(filter: &str) -> Response {
    let pids = hub::pids();
    let outcomes =
        futures_util::future::join_all(pids.iter().map(|&pid| hub::set_filter(pid, filter))).await;
    let mut failures = Vec::new();
    let results: Vec<Value> = pids
        .iter()
        .zip(outcomes)
        .map(|(&pid, outcome)| match outcome {
            Ok(()) => json!({ "pid": pid, "filter": filter }),
            Err(e) => {
                let why = explain(pid, &e);
                failures.push(why.clone());
                json!({ "pid": pid, "error": why })
            }
        })
        .collect();
    if failures.is_empty() {
        return Json(results).into_response();
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": failures.join("; "), "results": results })),
    )
        .into_response()
}

/// The filter in a body: plain text, or a JSON string as a page that posts JSON sends it.
pub(super) fn filter_text(body: &str) -> String {
    let body = body.trim();
    if body.starts_with('"') {
        if let Ok(text) = serde_json::from_str::<String>(body) {
            return text.trim().to_owned();
        }
    }
    body.to_owned()
}

fn no_process(pid: u32) -> String {
    format!("no process with pid {pid} in this cluster (its master, workers and cache manager)")
}

fn status(e: &FilterError) -> StatusCode {
    match e {
        FilterError::NoProcess | FilterError::Exited => StatusCode::NOT_FOUND,
        FilterError::Refused(_) => StatusCode::CONFLICT,
        FilterError::NoAnswer => StatusCode::GATEWAY_TIMEOUT,
    }
}

fn explain(pid: u32, e: &FilterError) -> String {
    match e {
        FilterError::NoProcess => no_process(pid),
        FilterError::Exited => format!("pid {pid} exited before it changed its log filter"),
        FilterError::Refused(why) => format!("pid {pid} kept its log filter: {why}"),
        FilterError::NoAnswer => format!("pid {pid} did not confirm its new log filter in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_as_the_page_reads_them() {
        let mut text = String::new();
        write_event(&mut text, Ok(Item::Line(r#"{"message":"hi"}"#.into())));
        write_event(&mut text, Ok(Item::Dropped(3)));
        write_event(&mut text, Err(2));
        assert_eq!(
            text,
            "data: {\"message\":\"hi\"}\n\nevent: dropped\ndata: 3\n\nevent: dropped\ndata: 2\n\n"
        );
    }

    #[test]
    fn a_filter_plain_or_as_a_json_string() {
        assert_eq!(filter_text(" debug\n"), "debug");
        assert_eq!(filter_text("\"info,my_app=trace\""), "info,my_app=trace");
        // Not JSON after all: kept as written, for the check to name.
        assert_eq!(filter_text("\"debug"), "\"debug");
    }
}
