//! The expansions are clean under clippy's pedantic lints, in a crate that denies them.
//!
//! trybuild only compiles its cases with rustc, so this one is an ordinary test target, which
//! `cargo clippy --all-targets` lints like user code.
#![deny(clippy::all, clippy::pedantic)]

use axum::{Router, routing::get};

#[cluster2::configure_app]
async fn app() -> Router {
    let greeting = std::future::ready("hello world").await;
    Router::new().route("/", get(move || async move { greeting }))
}

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    w.get("/").await?;
    Ok(())
}

#[cluster2::configure_monitor]
async fn monitor(router: Router) -> Router {
    router.route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
}

#[cluster2::ecv_validator]
fn validate(status: u16, body: &[u8]) -> bool {
    status == 200 && body.starts_with(b"ok")
}

#[cluster2::should_kill]
fn should_kill(heartbeat: &cluster2::Heartbeat) -> bool {
    heartbeat.panics > 0
}

static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cluster2::status("connections")]
fn connections() -> u64 {
    CONNECTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

#[cluster2::status("limit", update = set_limit)]
fn limit() -> u64 {
    CONNECTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

fn set_limit(limit: u64) -> u64 {
    CONNECTIONS.store(limit, std::sync::atomic::Ordering::Relaxed);
    limit
}

mod cluster {
    #[cluster2::main(
        port = 9090,
        workers = 4,
        restart(delay = "200ms"),
        server = "http1",
        ecv(mode = "monitor", expect_status = 200),
        max_age = "never",
        nanny(enable = true),
        cache(max_value = 1024)
    )]
    pub(crate) async fn main(started: cluster2::Started) -> Result<(), String> {
        tracing::info!(role = ?started.role(), addr = %started.addr(), "up");
        Ok(())
    }
}

// This binary never starts a cluster, so a second registration does no harm.
mod sync_app {
    #[cluster2::configure_app]
    fn app() -> Result<axum::Router, std::env::VarError> {
        let root = std::env::var("APP_ROOT")?;
        Ok(axum::Router::new().route(&root, axum::routing::get(|| async { "hello" })))
    }
}

mod no_argument {
    #[cluster2::main]
    pub(crate) async fn main() {}
}

#[test]
fn main_expands_to_an_entry_point() {
    let _: fn() -> std::process::ExitCode = cluster::main;
    let _: fn() -> std::process::ExitCode = no_argument::main;
}
