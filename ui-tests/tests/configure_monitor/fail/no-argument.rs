#[cluster2::configure_monitor]
async fn monitor() -> axum::Router {
    axum::Router::new()
}

fn main() {}
