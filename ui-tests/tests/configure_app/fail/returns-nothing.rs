#[cluster2::configure_app]
async fn app() {
    let _ = axum::Router::<()>::new();
}

fn main() {}
