#[cluster2::configure_app]
static APP: fn() -> axum::Router = axum::Router::new;

fn main() {}
