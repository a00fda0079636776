//! The accept loop: serves the app on its listeners until told to stop, then lets in-flight
//! requests finish within a deadline. On the shared port it takes its turn with the other
//! workers (`crate::balance`): it waits for a pending connection, and takes it only if that
//! is this worker's turn.
//!
//! Each accepted connection is admitted by `conns` (the per-worker cap, making room by closing
//! the connections idle the longest) and served under its ticket (closed once it has waited
//! `header_timeout` for a request head). Accept failures and refusals are logged once per
//! burst and, on the shared port, reported to the master, which takes the ECV down while no
//! worker can accept (`conns::stall`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::counting::{AppStats, ConnStats, CountLayer};
use crate::app::{App, ConnInfo};
use crate::balance::{self, Decision, Holding, Turn};
use crate::conns::stall::{self, Stall};
use crate::conns::{Conn, Conns, InFlight, Ticket, Tracked};
use crate::listen::{Listeners, Stream};
use crate::options::ServerProtocol;

/// How a server takes its connections.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) protocol: ServerProtocol,
    /// How long a connection may wait for a request head.
    pub(crate) header_timeout: Duration,
    /// The most connections open at once.
    pub(crate) max_connections: usize,
    /// Whether this is the shared port, whose stalls the master hears of (not a warm-up
    /// listener).
    pub(crate) shared_port: bool,
    /// TLS: each connection's handshake comes first, under the same `header_timeout` as a
    /// request head (a client that never sends its ClientHello is closed like a slow one).
    pub(crate) tls: Option<crate::tls::Tls>,
}

/// A running server; [`Server::shutdown`] stops it.
#[derive(Debug)]
pub(crate) struct Server {
    stop_accepting: CancellationToken,
    /// Set while draining: HTTP/1 answers carry `Connection: close`.
    closing: Arc<AtomicBool>,
    task: JoinHandle<GracefulShutdown>,
}

/// How long a stopping worker keeps serving requests on open keep-alive connections, answering
/// each with `Connection: close`, before it closes the idle ones. Closing an idle keep-alive
/// connection races with a client sending on it (the request is lost); a client told to close
/// leaves after its answer, and opens its next connection to another worker.
const DRAIN_WINDOW: Duration = Duration::from_secs(1);

impl Server {
    pub(crate) fn start(
        listeners: Listeners,
        app: App,
        settings: Settings,
        stats: Arc<ConnStats>,
        app_stats: Option<Arc<AppStats>>,
        accepting: tokio::sync::watch::Receiver<bool>,
        turn: Option<Arc<Turn>>,
    ) -> Self {
        let stop_accepting = CancellationToken::new();
        let closing = Arc::new(AtomicBool::new(false));
        // Only the shared port's traffic is the application's: the warm-up server is uncounted.
        // The counted service stays a concrete type: no second boxing on the request path.
        let task = match app_stats {
            Some(app_stats) => tokio::spawn(accept_loop(
                listeners,
                tower::Layer::layer(&CountLayer::with_stats(app_stats), app),
                settings,
                stats,
                accepting,
                turn,
                stop_accepting.clone(),
                closing.clone(),
            )),
            None => tokio::spawn(accept_loop(
                listeners,
                app,
                settings,
                stats,
                accepting,
                turn,
                stop_accepting.clone(),
                closing.clone(),
            )),
        };
        Self {
            stop_accepting,
            closing,
            task,
        }
    }

    /// Stops accepting (the listener closes), then waits up to `deadline` for open connections
    /// to finish their in-flight requests. Returns how many connections were still open when
    /// the deadline passed; those are dropped.
    pub(crate) async fn shutdown(self, deadline: Duration) -> usize {
        self.stop(DRAIN_WINDOW.min(deadline), deadline).await
    }

    /// Like [`Server::shutdown`], without the drain window: for a server whose only client is
    /// this process and is done with it (the warm-up's), where no request can race a close and
    /// waiting would only delay the start.
    pub(crate) async fn close(self, deadline: Duration) -> usize {
        self.stop(Duration::ZERO, deadline).await
    }

    async fn stop(self, drain: Duration, deadline: Duration) -> usize {
        let started = tokio::time::Instant::now();
        self.stop_accepting.cancel();
        self.closing.store(true, Ordering::Relaxed);
        let Ok(graceful) = self.task.await else {
            return 0;
        };
        // Let busy keep-alive clients leave on their own first (see DRAIN_WINDOW).
        let window = started + drain;
        while graceful.count() > 0 && tokio::time::Instant::now() < window {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let open = graceful.count();
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, graceful.shutdown()).await {
            Ok(()) => 0,
            Err(_) => open,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop<S>(
    mut listeners: Listeners,
    app: S,
    settings: Settings,
    stats: Arc<ConnStats>,
    mut accepting: tokio::sync::watch::Receiver<bool>,
    turn: Option<Arc<Turn>>,
    stop_accepting: CancellationToken,
    closing: Arc<AtomicBool>,
) -> GracefulShutdown
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    // Warm-up traffic is not the application's: it is not logged.
    let logged = settings.shared_port && crate::log::access::enabled();
    let protocol = settings.protocol;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No HTTP/1 header-read timer of hyper's: `conns` closes a connection that has no request
    // in flight for `header_timeout` (silent, slow-loris and idle kept-alive alike), so a
    // second timer, armed and disarmed around every request head, would only cost (about 2 %
    // of a `hello` worker's instructions per request).
    builder.http2().timer(TokioTimer::new());
    let builder = match protocol {
        ServerProtocol::Auto => builder,
        ServerProtocol::Http1 => builder.http1_only(),
        ServerProtocol::Http2 => builder.http2_only(),
    };
    let conns = Conns::new(settings.max_connections, settings.header_timeout);
    let mut stalls = Stall::new(
        if settings.shared_port {
            "the application port"
        } else {
            "the warm-up listener"
        },
        settings.shared_port.then(report_to_master),
    );
    // Whether anyone can still pause this server (the switch's sender is alive).
    let mut pausable = true;
    let mut holding = Holding::default();
    loop {
        // Paused: the listener stays open (the kernel keeps queueing), this worker just does
        // not take connections; the other workers do.
        if pausable && !*accepting.borrow_and_update() {
            if let Some(turn) = &turn {
                turn.set_accepting(false);
            }
            tokio::select! {
                biased;
                () = stop_accepting.cancelled() => break,
                changed = accepting.changed() => pausable = changed.is_ok(),
            }
            continue;
        }
        if let Some(turn) = &turn {
            turn.set_accepting(true);
        }
        let accepted = tokio::select! {
            biased;
            () = stop_accepting.cancelled() => break,
            changed = accepting.changed(), if pausable => {
                pausable = changed.is_ok();
                continue;
            }
            () = stall::until(stalls.deadline()) => {
                stalls.quiet();
                continue;
            }
            accepted = next_connection(&mut listeners, turn.as_deref(), &mut holding) => accepted,
        };
        let (stream, remote, local) = match accepted {
            Ok(conn) => conn,
            Err(err) if stall::is_per_connection(&err) => continue,
            Err(err) => {
                // Out of file descriptors or memory: back off instead of spinning; the
                // connection stays queued in the kernel meanwhile.
                stalls.accept_failed(&err);
                tokio::time::sleep(stall::RETRY).await;
                continue;
            }
        };
        let Some(ticket) = conns.admit_or_refuse(&mut stalls).await else {
            drop(stream);
            continue;
        };
        let open = turn.as_ref().map(Turn::opened);
        stream.set_nodelay();
        let service = Handler {
            app: app.clone(),
            info: ConnInfo {
                local,
                remote,
                tls: settings.tls.is_some(),
                unix: stream.is_unix(),
            },
            closing: closing.clone(),
            conn: ticket.conn(),
            logged,
        };
        let watcher = graceful.watcher();
        // A refused request head is logged with the client's address.
        let logged_from = logged.then_some(remote);
        match &settings.tls {
            None => spawn_connection(
                &stats,
                ticket,
                open,
                logged_from,
                serve_io(&builder, protocol, watcher, stream, service),
            ),
            Some(tls) => {
                // The handshake runs in the connection's own task, under its ticket: it counts
                // as waiting for a request head, so `conns` closes it after `header_timeout`.
                let handshake = tls.acceptor().accept(stream);
                let builder = builder.clone();
                spawn_connection(&stats, ticket, open, logged_from, async move {
                    let stream = handshake.await?;
                    serve_io(&builder, protocol, watcher, stream, service).await
                })
            }
        }
    }
    if let Some(turn) = &turn {
        turn.set_accepting(false);
    }
    graceful
}

/// The next connection this worker takes: it waits until one is pending, and, taking turns,
/// leaves it to the other workers while it holds more than its share (`crate::balance`).
/// Cancel-safe: a connection is only ever taken inside a poll that returns it.
async fn next_connection(
    listeners: &mut Listeners,
    turn: Option<&Turn>,
    holding: &mut Holding,
) -> std::io::Result<(Stream, std::net::SocketAddr, std::net::SocketAddr)> {
    loop {
        let ready = listeners.pending().await?;
        if turn.is_some_and(|turn| turn.decide(holding) == Decision::HoldBack) {
            // The readiness stays: if the others take the connection, the next accept says
            // so and clears it.
            tokio::time::sleep(balance::RECHECK).await;
            continue;
        }
        if let Some(accepted) = listeners.try_accept(ready)? {
            return Ok(accepted);
        }
        // Taken by another worker first.
    }
}

/// Tells the master when this worker stops and starts being able to take connections.
fn report_to_master() -> stall::Report {
    Box::new(|why| {
        let message = match why {
            Some(why) => crate::ipc::message::ToMaster::CannotAccept { why },
            None => crate::ipc::message::ToMaster::Accepting,
        };
        let _ = crate::ipc::peers::to_master(&message);
    })
}

/// What hyper calls for each request of a connection: the app, with the connection's
/// addresses added to the request and, while draining, `Connection: close` to the answer. The
/// request is in flight on its connection until the answer's body is dropped.
#[derive(Clone)]
struct Handler<S> {
    app: S,
    info: ConnInfo,
    closing: Arc<AtomicBool>,
    conn: Arc<Conn>,
    /// Whether requests are logged: on the application port, with the access log on.
    logged: bool,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for Handler<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone,
{
    type Response = http::Response<Tracked<Body>>;
    type Error = Infallible;
    type Future = Answer<tower::util::Oneshot<S, http::Request<Body>>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let http1 = request.version() < http::Version::HTTP_2;
        // The one branch the access log costs when it is off.
        let access = if self.logged {
            crate::log::access::Pending::new(&request, self.info.remote)
        } else {
            None
        };
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(self.info);
        Answer {
            access,
            // One clone per request, as tower's contract needs a ready service to call.
            response: tower::ServiceExt::oneshot(self.app.clone(), request),
            closing: http1.then(|| self.closing.clone()),
            in_flight: Some(self.conn.request()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Handler`].
    struct Answer<F> {
        #[pin]
        response: F,
        // The server's draining flag, for HTTP/1 answers.
        closing: Option<Arc<AtomicBool>>,
        // Handed to the answer's body; `None` once it was.
        in_flight: Option<InFlight>,
        // The access log line, handed to the answer's body too.
        access: Option<Box<crate::log::access::Pending>>,
    }
}

impl<F> std::future::Future for Answer<F>
where
    F: std::future::Future<Output = Result<http::Response<Body>, Infallible>>,
{
    type Output = Result<http::Response<Tracked<Body>>, Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.response.poll(cx));
        let in_flight = this.in_flight.take().expect("an answer is ready once");
        let mut access = this.access.take();
        if let Some(access) = access.as_mut() {
            access.answered(response.status());
        }
        let mut response = response.map(|body| Tracked::logged(body, in_flight, access));
        if this
            .closing
            .as_ref()
            .is_some_and(|closing| closing.load(Ordering::Relaxed))
        {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        std::task::Poll::Ready(Ok(response))
    }
}

/// What serving one connection can end with: the client's error, said by hyper or rustls.
type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// Serves HTTP on `io` with `service`, watched by the server's graceful shutdown.
fn serve_io<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    protocol: ServerProtocol,
    watcher: Watcher,
    io: I,
    service: Handler<S>,
) -> impl Future<Output = Result<(), ConnError>> + Send + 'static
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(io);
    // The auto builder ignores a version restriction on connections served with upgrades, so
    // a restricted port serves without them (HTTP/1 upgrades such as WebSocket need `auto`).
    match protocol {
        ServerProtocol::Auto => futures_util::future::Either::Left(
            watcher.watch(
                builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned(),
            ),
        ),
        ServerProtocol::Http1 | ServerProtocol::Http2 => futures_util::future::Either::Right(
            watcher.watch(builder.serve_connection(io, service).into_owned()),
        ),
    }
}

/// Serves one connection under its ticket; `open` counts it at the balance table while it
/// lives. With the access log on, `logged_from` is the client's address, for a line if hyper
/// refuses a request head of it.
fn spawn_connection<C>(
    stats: &Arc<ConnStats>,
    ticket: Ticket,
    open: Option<balance::Open>,
    logged_from: Option<std::net::SocketAddr>,
    connection: C,
) where
    C: Future<Output = Result<(), ConnError>> + Send + 'static,
{
    stats.open.fetch_add(1, Ordering::Relaxed);
    stats.total.fetch_add(1, Ordering::Relaxed);
    let stats = stats.clone();
    tokio::spawn(async move {
        // Errors here are the client's (reset, bad request, timeout, a failed handshake);
        // hyper has already answered what could be answered. Those that broke the protocol
        // are counted for the heartbeat: the degradation heuristic does not judge an interval
        // full of them.
        if let Some(Err(error)) = ticket.serve(connection).await {
            if crate::conns::broke_protocol(&*error) {
                stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(remote) = logged_from {
                    drop(crate::log::access::Pending::rejected(&*error, remote));
                }
            }
        }
        stats.open.fetch_sub(1, Ordering::Relaxed);
        drop(open);
    });
}
