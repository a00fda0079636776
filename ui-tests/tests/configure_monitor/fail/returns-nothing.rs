#[cluster2::configure_monitor]
async fn monitor(router: axum::Router) {
    let _ = router.route("/ping", axum::routing::get(|| async { "pong" }));
}

fn main() {}
