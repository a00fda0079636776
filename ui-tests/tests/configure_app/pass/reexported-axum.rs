// An application that depends on cluster2 alone builds its router with `cluster2::axum`, and
// that router is the one `#[configure_app]` takes.
use cluster2::axum::{Json, Router, extract::Query, routing::get};

#[derive(serde::Deserialize)]
struct Greeting {
    name: String,
}

#[cluster2::configure_app]
async fn app() -> Router {
    Router::new().route(
        "/",
        get(|Query(g): Query<Greeting>| async move { Json(format!("hello {}", g.name)) }),
    )
}

fn main() {}
