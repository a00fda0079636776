use axum::{Router, routing::get};

#[cluster2::configure_monitor]
async fn monitor(router: Router) -> Router {
    let version = std::future::ready(env!("CARGO_PKG_VERSION")).await;
    router.route("/version", get(move || async move { version }))
}

fn main() {
    assert_eq!(cluster2::__private::CONFIGURE_MONITOR.len(), 1);
    assert_eq!(cluster2::__private::CONFIGURE_MONITOR[0].name, "monitor");
}
