#[cluster2::configure_monitor]
async fn monitor(router: &mut axum::Router) -> axum::Router {
    router.clone()
}

fn main() {}
