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

mod cluster {
    #[cluster2::main(port = 9090, workers = 4, restart(delay = "200ms"), server = "http1")]
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
