//! `GET /events`: the master's lifecycle journal as server-sent events, and
//! `GET /events/recent`: the events kept, as one JSON array.
//!
//! A stream starts after `?since=N` (or the standard `Last-Event-ID` header a reconnecting
//! browser sends), so a client that connects late or reconnects misses nothing the journal
//! still holds; each event's SSE `id` is its sequence number. The stream ends after the
//! `stopped` event. Each subscriber only holds a cursor into the bounded journal, so a slow or
//! idle client costs no memory beyond its connection.

use std::convert::Infallible;

use axum::Json;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::lifecycle::{Event, Journal};

#[derive(Debug, Deserialize)]
pub(super) struct Since {
    /// Start after this sequence number (0: from the oldest event kept).
    since: Option<u64>,
}

pub(super) async fn stream(Query(query): Query<Since>, headers: HeaderMap) -> Response {
    let Some(journal) = Journal::get() else {
        return super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no lifecycle journal in this process".to_owned(),
        );
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = resume.or(query.since).unwrap_or(0);
    let subscription = journal.subscribe_after(after);
    let events = futures_util::stream::unfold(
        (subscription, false),
        |(mut subscription, ended)| async move {
            if ended {
                return None;
            }
            let record = subscription.next().await?;
            let last = matches!(record.event, Event::Stopped);
            let event = SseEvent::default()
                .id(record.seq.to_string())
                .json_data(&*record)
                .unwrap_or_else(|e| SseEvent::default().comment(format!("unencodable: {e}")));
            Some((Ok::<_, Infallible>(event), (subscription, last)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

pub(super) async fn recent() -> Response {
    match Journal::get() {
        Some(journal) => Json(journal.recent()).into_response(),
        None => super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no lifecycle journal in this process".to_owned(),
        ),
    }
}
