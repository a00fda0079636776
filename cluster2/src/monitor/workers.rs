//! `GET /workers`: every worker process and the death queue, and the shape of one worker's
//! entry, which the debug page's feed (`dashboard.rs`) sends too. Every field is in the
//! monitor API's documentation (`docs/monitor-api.md`), which a test compares with what is
//! served.
//!
//! Words and units are those of `/metrics`: `requests`, `cpu_percent`, `memory_bytes`,
//! durations as seconds in `…_secs` fields, counters since start in `…_total` fields. Each fact
//! appears once: the heartbeat's copy of the pid, worker id and uptime is left out of its
//! object, since the entry has them.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use serde_json::{Value, json};

use crate::master::{Board, WorkerInfo};

pub(super) async fn serve(board: Arc<Board>) -> Json<Value> {
    let snapshot = board.snapshot();
    let now = Instant::now();
    let workers: Vec<Value> = snapshot.workers.iter().map(|w| entry(w, now)).collect();
    Json(json!({
        "expected": board.expected(),
        "workers": workers,
        "death_queue": snapshot.death_queue,
    }))
}

/// One worker as the monitor shows it; ages are counted up to `now`.
pub(super) fn entry(w: &WorkerInfo, now: Instant) -> Value {
    json!({
        "worker": w.id,
        "pid": w.pid,
        "state": w.state,
        "uptime_secs": now.saturating_duration_since(w.spawned_at).as_secs_f64(),
        "warm_up_addr": w.warm_up_addr,
        "restarts": w.restarts,
        "crash_streak": w.crash_streak,
        "successor_of": w.successor_of,
        "debugging": w.debugging,
        "cannot_accept": w.cannot_accept,
        "log_filter": crate::log::current_filter(w.pid),
        "errors_total": w.errors,
        "panics_total": w.panics,
        "heartbeat": w.heartbeat.as_ref().map(|(beat, at)| {
            let mut shown = serde_json::to_value(beat).expect("a heartbeat encodes to JSON");
            if let Value::Object(fields) = &mut shown {
                // The entry has them.
                for duplicate in ["pid", "worker", "uptime_secs"] {
                    fields.remove(duplicate);
                }
                fields.insert(
                    "age_secs".to_owned(),
                    json!(now.saturating_duration_since(*at).as_secs_f64()),
                );
            }
            shown
        }),
    })
}
