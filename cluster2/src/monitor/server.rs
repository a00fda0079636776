//! The monitor's HTTP server: an accept loop of its own, so that the monitor's connections are
//! held to account like the application's (`conns`). Load balancers must reach the ECV
//! whatever other clients hold open: a connection that sends no request head within
//! `header_timeout` is closed, at most `mon.max_connections` are open (fewer when the master's
//! open-files limit leaves less after what it keeps for its workers), and at the cap the ones
//! idle the longest are closed to make room for the new one. Accept failures are logged once
//! per burst.
//!
//! With `log.access` on, every request is logged as the application's are (worker `monitor`).
//!
//! HTTP/1.1 only: the monitor's clients (load balancers, curl, Prometheus, browsers) speak it,
//! and hyper's HTTP/1 server also bounds each request head's size.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio_util::sync::CancellationToken;

use crate::conns::stall::{self, Stall};
use crate::conns::{Conns, Tracked};

/// How the monitor takes its connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// How long a connection may wait for a request head.
    pub(crate) header_timeout: Duration,
    /// The most connections open at once.
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until `stop`, then lets open requests finish while the master
/// allows (it waits a moment, not for streams that never end).
pub(crate) async fn serve(
    mut listener: crate::listen::Listeners,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    let conns = Conns::new(limits.max_connections, limits.header_timeout);
    let mut stalls = Stall::new("the monitor port", None);
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = stall::until(stalls.deadline()) => {
                stalls.quiet();
                continue;
            }
            accepted = listener.accept_any() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok((stream, remote, _)) => (stream, remote),
            Err(e) if stall::is_per_connection(&e) => continue,
            Err(e) => {
                stalls.accept_failed(&e);
                tokio::time::sleep(stall::RETRY).await;
                continue;
            }
        };
        let Some(ticket) = conns.admit_or_refuse(&mut stalls).await else {
            drop(stream);
            continue;
        };
        stream.set_nodelay();
        let conn = ticket.conn();
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let in_flight = conn.request();
            let mut access = crate::log::access::Pending::new(&request, remote);
            let response = tower::ServiceExt::oneshot(app.clone(), request.map(Body::new));
            async move {
                let Ok(response) = response.await;
                if let Some(access) = access.as_mut() {
                    access.answered(response.status());
                }
                Ok::<_, Infallible>(response.map(|body| Tracked::logged(body, in_flight, access)))
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // The client's errors (bad requests, resets) end its connection and nothing else;
            // a request head hyper refused is logged.
            if let Some(Err(error)) = ticket.serve(connection).await {
                drop(crate::log::access::Pending::rejected(&error, remote));
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
