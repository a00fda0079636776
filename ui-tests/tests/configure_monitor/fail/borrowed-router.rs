#[cluster2::configure_monitor]
fn monitor(router: &axum::Router) -> axum::Router {
    router.clone()
}

fn main() {}
