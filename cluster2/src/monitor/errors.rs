//! Every error the monitor answers is JSON of one shape: `{"error": "<what went wrong, naming
//! the thing>"}`, with a status that says what kind of error it is; a few answers add fields
//! beside `error` (documented with their route). Scripts read one shape whatever failed, and
//! the debug page shows `error` as it is.
//!
//! The routes word their own refusals with [`error`], and [`status_of`] maps the public
//! [`ErrorKind`] of an operation that failed. The layer ([`json_errors`], around every route,
//! `#[configure_monitor]`'s included) covers what no route words itself: axum's rejections
//! (a path or query that does not parse, a body too large, as text), a method a route does not
//! take (an empty 405), and a handler that panics (no answer at all otherwise: the connection
//! would just close). It leaves alone the ECV's plain-text answers, which load balancers read
//! as text by design, and error bodies of any type other than text (an application's HTML
//! page, say).

use std::panic::AssertUnwindSafe;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde_json::json;

use crate::ErrorKind;

/// The most of a text error body kept when it is turned into JSON: axum's rejections are one
/// line.
const MAX_TEXT: usize = 16 * 1024;

/// The paths whose answers are not the monitor's JSON: the ECV's.
#[derive(Clone, Debug)]
pub(super) struct Exempt(pub(super) std::sync::Arc<[String]>);

/// An error answer: `status` and `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The status for an operation that failed with `kind`.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Config | ErrorKind::Decode => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The failed operation as an answer: its kind's status, its message.
pub(crate) fn from_error(e: &crate::Error) -> Response {
    error(status_of(e.kind()), e.to_string())
}

/// The layer: an answer to every request, and every error in JSON.
pub(super) async fn json_errors(
    State(exempt): State<Exempt>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            tracing::error!("the monitor's handler for {method} {path} panicked: {what}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the monitor failed to answer {method} {path}: {what}"),
            );
        }
    };
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let convert = match content_type.as_deref() {
        // Nothing said: a bare 405, say.
        None => true,
        // The ECV's `unavailable: <reason>` is for load balancers, as text.
        Some(t) => t.starts_with("text/plain") && !exempt.0.contains(&path),
    };
    if !convert {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_TEXT)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let message = match body.trim() {
        "" if status == StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on {path}: the Allow header lists what is")
        }
        "" => format!(
            "{} ({method} {path})",
            status.canonical_reason().unwrap_or("error").to_lowercase()
        ),
        text => text.to_owned(),
    };
    let bytes = serde_json::to_vec(&json!({ "error": message })).expect("JSON values encode");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}
