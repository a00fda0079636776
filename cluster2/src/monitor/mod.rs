//! The monitor app, served by the master on `mon_host:mon_port`.

use std::net::TcpListener;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::master::supervisor::Board;

pub(crate) fn router(board: Arc<Board>) -> Router {
    Router::new().route(
        "/workers",
        get(move || {
            let board = board.clone();
            async move { Json(board.workers.read().expect("board lock").clone()) }
        }),
    )
}

pub(crate) fn serve(
    listener: TcpListener,
    board: Arc<Board>,
    stop: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = router(board);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("monitor stopped: {e}");
        }
    }))
}
