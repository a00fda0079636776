#[cluster2::configure_app]
async fn app<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
}

fn main() {}
