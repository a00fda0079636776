struct Routes;

impl Routes {
    #[cluster2::configure_app]
    async fn app(&self) -> axum::Router {
        axum::Router::new()
    }
}

fn main() {}
