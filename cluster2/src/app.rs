//! The application a cluster serves: an `axum::Router`, or any tower service over HTTP.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt as _};

use crate::error::BoxError;

/// The application served by every worker.
///
/// Built from an [`axum::Router`] (`App::from(router)`) or from any cloneable tower service
/// with [`App::from_service`]. `#[configure_app]` functions may return either, or a `Result`
/// of either.
#[derive(Clone)]
pub struct App {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    /// A router is called as it is: its clone is a reference count and its future a concrete
    /// type, so a request costs no allocation here.
    Router(axum::Router),
    Service(BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>),
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Wraps any tower service that answers every request (its error type is `Infallible`).
    pub fn from_service<S, B>(service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            inner: Inner::Service(BoxCloneSyncService::new(
                service.map_response(|r| r.map(Body::new)),
            )),
        }
    }
}

impl Service<Request<Body>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            Inner::Router(router) => Service::<Request<Body>>::poll_ready(router, cx),
            Inner::Service(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        AppFuture {
            kind: match &mut self.inner {
                Inner::Router(router) => Kind::Router {
                    future: router.call(req),
                },
                Inner::Service(service) => Kind::Service {
                    future: service.call(req),
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of an [`App`].
    pub struct AppFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind {
        Router { #[pin] future: axum::routing::future::RouteFuture<Infallible> },
        Service { future: BoxFuture<'static, Result<Response<Body>, Infallible>> },
    }
}

impl std::fmt::Debug for AppFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppFuture").finish_non_exhaustive()
    }
}

impl Future for AppFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Router { future } => future.poll(cx),
            KindProj::Service { future } => future.as_mut().poll(cx),
        }
    }
}

impl From<axum::Router> for App {
    fn from(router: axum::Router) -> Self {
        Self {
            inner: Inner::Router(router),
        }
    }
}

/// Addresses of the connection a request arrived on, added to every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The listener's address: the shared application port, or a warm-up port. Over a Unix
    /// socket, which has no network address, `0.0.0.0:0`.
    pub local: SocketAddr,
    /// The client's address. Over a Unix socket `0.0.0.0:0`: the client is a process on this
    /// host (a proxy, which says who its own client is in a header such as
    /// `X-Forwarded-For`).
    pub remote: SocketAddr,
    /// Whether the connection speaks TLS (`tls.cert`): an application may send
    /// `Strict-Transport-Security`, or redirect plain requests.
    pub tls: bool,
    /// Whether the connection came over a Unix socket (`bind = unix:…`, or one passed by the
    /// service manager).
    pub unix: bool,
}

/// What a `#[configure_app]` function may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an application cluster2 can serve",
    label = "return an `axum::Router`, a `cluster2::App`, or a `Result` of either",
    note = "wrap other tower services with `cluster2::App::from_service`"
)]
pub trait IntoApp {
    /// Converts into an [`App`], or the error text that aborts start-up.
    fn into_app(self) -> Result<App, String>;
}

impl IntoApp for App {
    fn into_app(self) -> Result<App, String> {
        Ok(self)
    }
}

impl IntoApp for axum::Router {
    fn into_app(self) -> Result<App, String> {
        Ok(self.into())
    }
}

impl<T, E> IntoApp for Result<T, E>
where
    T: Into<App>,
    E: std::fmt::Display,
{
    fn into_app(self) -> Result<App, String> {
        self.map(Into::into).map_err(|e| e.to_string())
    }
}
