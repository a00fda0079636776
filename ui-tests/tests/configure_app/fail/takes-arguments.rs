#[cluster2::configure_app]
async fn app(prefix: &'static str) -> axum::Router {
    axum::Router::new().nest(prefix, axum::Router::new())
}

fn main() {}
