#[cluster2::configure_monitor]
async fn monitor(router: axum::Router, prefix: &'static str) -> axum::Router {
    router.route(prefix, axum::routing::get(|| async { "ok" }))
}

fn main() {}
