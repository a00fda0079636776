use axum::{Router, routing::get};

#[cluster2::configure_app]
fn app() -> Router {
    Router::new().route("/", get(|| async { "hello world" }))
}

fn main() {}
