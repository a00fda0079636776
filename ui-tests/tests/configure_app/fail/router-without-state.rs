use axum::{extract::State, routing::get, Router};

#[derive(Clone)]
struct AppState {
    greeting: &'static str,
}

#[cluster2::configure_app]
async fn app() -> Router<AppState> {
    Router::new().route("/", get(|State(s): State<AppState>| async move { s.greeting }))
}

fn main() {}
