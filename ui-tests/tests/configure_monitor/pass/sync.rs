#[cluster2::configure_monitor]
fn monitor(router: axum::Router) -> axum::Router {
    router.route("/ping", axum::routing::get(|| async { "pong" }))
}

fn main() {}
