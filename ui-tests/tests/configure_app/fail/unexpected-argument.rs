#[cluster2::configure_app(port = 9090)]
async fn app() -> axum::Router {
    axum::Router::new()
}

fn main() {}
