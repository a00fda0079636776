//! A binary with two `#[configure_app]` functions: start-up must refuse it by name.

use axum::Router;

#[cluster2::configure_app]
fn first() -> Router {
    Router::new()
}

#[cluster2::configure_app]
fn second() -> Router {
    Router::new()
}

#[cluster2::main(port = 0, mon_port = 0, workers = 1)]
async fn main() {}
