#[cluster2::configure_app]
async fn app() -> axum::Router {
    let routes = std::rc::Rc::new(axum::Router::new());
    tick().await;
    (*routes).clone()
}

async fn tick() {}

fn main() {}
