//! The application most integration tests run. Its behaviour is chosen by `FIXTURE_*`
//! environment variables, which every worker inherits from the master:
//!
//! - `FIXTURE_CRASH_AT_START=1`: every worker exits with status 9 while configuring the app.
//! - `FIXTURE_CONFIGURE_FAIL=1`: `configure_app` returns an error.
//! - `FIXTURE_WARM_UP_FAIL=1`: the warm-up returns an error.
//! - `FIXTURE_WARM_UP_GATE=path`: the warm-up waits until `path` exists.
//! - `FIXTURE_MAIN_FAIL=1`: `main` returns an error in the master.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Extension, Query};
use axum::{Router, routing::get};
use serde::Deserialize;

/// Requests this worker has answered, across all routes: orders warm-up against real traffic.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

#[cluster2::configure_app]
async fn app() -> Result<Router, String> {
    if flag("FIXTURE_CRASH_AT_START") {
        std::process::exit(9);
    }
    if flag("FIXTURE_CONFIGURE_FAIL") {
        return Err("database unreachable".to_owned());
    }
    Ok(Router::new()
        .route("/", get(|| async { "hello world" }))
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route(
            "/seq",
            get(
                |Extension(conn): Extension<cluster2::ConnInfo>| async move {
                    let n = SEQUENCE.fetch_add(1, Ordering::SeqCst) + 1;
                    format!("{n} {}", conn.local)
                },
            ),
        )
        .route(
            "/slow",
            get(|Query(slow): Query<Slow>| async move {
                tracing::info!(pid = std::process::id(), "slow request started");
                tokio::time::sleep(Duration::from_millis(slow.ms)).await;
                "done"
            }),
        )
        .route(
            "/crash",
            get(|| async {
                std::process::exit(42);
                #[allow(unreachable_code)]
                ""
            }),
        ))
}

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    tracing::info!(addr = %w.addr(), "warm-up started");
    if let Some(gate) = std::env::var_os("FIXTURE_WARM_UP_GATE") {
        // Waiting for the test to open the gate: this is what the test observes, not a delay.
        while !std::path::Path::new(&gate).exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let response = w.get("/seq").await?;
    let body = String::from_utf8_lossy(response.body()).into_owned();
    let (seq, local) = body.split_once(' ').unwrap_or((&body, ""));
    tracing::info!(seq = %seq, local = %local, "warm-up request answered");
    if flag("FIXTURE_WARM_UP_FAIL") {
        return Err("cache not primed".into());
    }
    Ok(())
}

#[cluster2::main(port = 7001, workers = 2, stop_timeout = "10s")]
async fn main(started: cluster2::Started) -> Result<(), String> {
    tracing::info!(
        role = ?started.role(),
        args = %started.args().join(","),
        "main started"
    );
    if started.role() == cluster2::Role::Master && flag("FIXTURE_MAIN_FAIL") {
        return Err("the master's main gave up".to_owned());
    }
    Ok(())
}
