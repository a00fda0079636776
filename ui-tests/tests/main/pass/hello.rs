// The shape of examples/hello.
use axum::{Router, routing::get};

#[cluster2::configure_app]
async fn app() -> Router {
    Router::new().route("/", get(|| async { "hello world" }))
}

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    w.get("/").await?;
    Ok(())
}

mod cluster {
    #[cluster2::main(port = 9090, workers = 4)]
    pub(crate) async fn main(started: cluster2::Started) {
        tracing::info!(role = ?started.role(), addr = %started.addr(), "up");
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
