//! The bodies of the monitor's POST routes, sent as real requests through its router (no
//! network: `tower::ServiceExt::oneshot`): `POST /statuses/{name}` (JSON),
//! `POST /debug/workers/{pid}/log-level` and `POST /debug/workers/new` (a log filter, plain or
//! as a JSON string), `POST /workers/scale` (JSON).
//!
//! Whatever the body, the answer is JSON with a status that says why: 400 for a body that
//! does not parse, and otherwise what the route does next, here outside a running cluster (no
//! such status: 404; no such process: 404; not the master of a cluster: 503). Never a panic,
//! never a 500.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::bounded;
use crate::ecv::Ecv;
use crate::master::Board;
use crate::monitor::{Monitor, deps::Dependencies, router};
use crate::options::{EcvOptions, log_filter};

/// A pid no process has.
const NO_PID: &str = "4294967295";

fn app() -> axum::Router {
    router(Monitor {
        board: Arc::new(Board::default()),
        ecv: Ecv::new(EcvOptions::default()),
        dependencies: Dependencies {
            name: "fuzz".to_owned(),
            version: "0.0.0".to_owned(),
            cargo_lock: None,
        },
        refresh: std::time::Duration::from_secs(1),
        max_profile_secs: 60,
        buckets: crate::REQUEST_DURATION_BUCKETS.into(),
    })
}

/// One POST: its status, and its body as JSON (`Null` when it is not JSON).
async fn post(
    app: &axum::Router,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (StatusCode, serde_json::Value) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("routers never fail");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Every route's verdict on one body.
fn check_body(runtime: &tokio::runtime::Runtime, app: &axum::Router, body: &[u8]) {
    let answers = bounded("the monitor", body.len(), 256 * 1024, 64, || {
        runtime.block_on(async {
            [
                post(app, "/statuses/fuzz", "application/json", body).await,
                post(
                    app,
                    &format!("/debug/workers/{NO_PID}/log-level"),
                    "text/plain",
                    body,
                )
                .await,
                post(app, "/debug/workers/new", "text/plain", body).await,
                post(app, "/workers/scale", "application/json", body).await,
            ]
        })
    });
    let [
        (status, json),
        (level, level_json),
        (new, new_json),
        (scale, scale_json),
    ] = answers;

    // The scale route: a body of the right shape reaches the master's controls (none here);
    // any other is a 400.
    let want = if crate::monitor::scale::parse(body).is_ok() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    };
    assert_eq!(scale, want, "scale: {scale_json}");
    assert!(scale_json["error"].is_string(), "scale: {scale_json}");

    // The status route: JSON that parses reaches the registry (which has no such status).
    let parses = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    let want = if parses {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    assert_eq!(status, want, "{json}");
    assert!(json["error"].is_string(), "{status}: {json}");

    // The log filter routes: a filter that checks out reaches the hub (no such process), or
    // the master's controls (none here); one that does not is a 400 that names it.
    let text = std::str::from_utf8(body).ok();
    for (route, status, json) in [("log-level", level, &level_json), ("new", new, &new_json)] {
        let reached = match route {
            "log-level" => StatusCode::NOT_FOUND,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        assert!(
            status == reached || status == StatusCode::BAD_REQUEST,
            "{route}: {status} {json}"
        );
        let Some(text) = text else {
            // Not UTF-8: refused before the route runs (as text; the monitor's error layer,
            // outside the router, makes it JSON).
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route}");
            continue;
        };
        assert!(json["error"].is_string(), "{route}: {status}: {json}");
        // A plain filter (not a JSON string) is taken as it is, trimmed.
        let plain = text.trim();
        let json_string = plain.starts_with('"');
        let defaulted = route == "new" && plain.is_empty();
        if !json_string && !defaulted {
            let valid = log_filter(plain).is_ok();
            assert_eq!(status == reached, valid, "{route}: {plain:?}: {json}");
        }
    }
}

#[test]
fn monitor_bodies() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // A router is not `RefUnwindSafe` (its routes could be anything); this one holds no state
    // a failed case could leave half-changed.
    let app = std::panic::AssertUnwindSafe(app());
    bolero::check!(name = "monitor_bodies").for_each(|body| check_body(&runtime, &app, body));
}
