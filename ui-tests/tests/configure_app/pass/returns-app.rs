use axum::Router;
use cluster2::App;

#[cluster2::configure_app]
async fn app() -> Result<App, std::io::Error> {
    Ok(App::from(Router::new()))
}

fn main() {}
