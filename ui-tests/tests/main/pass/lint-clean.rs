//! Every macro's expansion compiles without a warning under strict lints, and in a crate that
//! forbids unsafe code.
#![forbid(unsafe_code)]
#![deny(
    warnings,
    unused,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    unused_qualifications,
    trivial_casts,
    trivial_numeric_casts,
    unused_results,
    single_use_lifetimes,
    let_underscore_drop
)]

use axum::{Router, routing::get};

#[cluster2::configure_app]
async fn app() -> Router {
    Router::new().route("/", get(|| async { "hello world" }))
}

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    let _response = w.get("/").await?;
    Ok(())
}

mod cluster {
    #[cluster2::main(port = 9090, workers = 4, restart(delay = "200ms"), server = "auto")]
    pub(crate) async fn main(started: cluster2::Started) -> Result<(), String> {
        tracing::info!(role = ?started.role(), addr = %started.addr(), "up");
        Ok(())
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
