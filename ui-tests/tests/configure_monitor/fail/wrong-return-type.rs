#[cluster2::configure_monitor]
async fn monitor(router: axum::Router) -> Result<axum::Router, std::io::Error> {
    Ok(router)
}

fn main() {}
