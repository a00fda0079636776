use axum::{Router, extract::State, routing::get};

#[derive(Clone)]
struct AppState {
    greeting: &'static str,
}

#[cluster2::configure_app]
async fn app() -> Result<Router<AppState>, std::io::Error> {
    Ok(Router::new().route("/", get(|State(s): State<AppState>| async move { s.greeting })))
}

fn main() {}
