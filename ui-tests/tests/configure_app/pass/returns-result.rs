use axum::{Router, routing::get};

#[cluster2::configure_app]
async fn app() -> Result<Router, String> {
    let greeting = std::env::var("GREETING").map_err(|e| format!("GREETING: {e}"))?;
    Ok(Router::new().route("/", get(move || async move { greeting })))
}

fn main() {}
