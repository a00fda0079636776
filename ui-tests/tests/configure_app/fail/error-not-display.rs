#[derive(Debug)]
struct SetupError;

#[cluster2::configure_app]
async fn app() -> Result<axum::Router, SetupError> {
    Err(SetupError)
}

fn main() {}
