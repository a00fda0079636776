#[cluster2::configure_app(crate = cluster2)]
async fn app() -> axum::Router {
    axum::Router::new()
}

fn main() {}
