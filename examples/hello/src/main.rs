//! The smallest cluster: `hello world` on `/`, served by every worker.
//!
//! ```text
//! cargo run --release --bin hello -- --port=8080 --workers=2
//! curl http://127.0.0.1:8080/
//! ```

use cluster2::axum::{Router, routing::get};

#[cluster2::configure_app]
async fn app() -> Router {
    Router::new().route("/", get(|| async { "hello world" }))
}

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    // A real request to this worker's own warm-up listener, before it takes any traffic.
    w.get("/").await?;
    Ok(())
}

#[cluster2::main(port = 9090, workers = 4)]
async fn main(started: cluster2::Started) {
    tracing::info!(role = ?started.role(), addr = %started.addr(), "up");
}
