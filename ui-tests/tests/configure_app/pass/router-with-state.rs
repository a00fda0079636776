use axum::{Router, extract::State, routing::get};

#[derive(Clone)]
struct AppState {
    greeting: &'static str,
}

// A router with state is served once `.with_state` has given it: `Router<AppState>` becomes
// `Router`, written here in full as `Router<()>`.
#[cluster2::configure_app]
async fn app() -> Result<Router<()>, std::io::Error> {
    let state = AppState { greeting: "hello" };
    Ok(Router::new()
        .route("/", get(|State(s): State<AppState>| async move { s.greeting }))
        .with_state(state))
}

fn main() {}
