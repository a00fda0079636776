//! The application a cluster serves: an `axum::Router`, or any tower service over HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use bytes::Bytes;
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
    service: BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>,
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
            service: BoxCloneSyncService::new(service.map_response(|r| r.map(Body::new))),
        }
    }
}

impl Service<Request<Body>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = <BoxCloneSyncService<Request<Body>, Response<Body>, Infallible> as Service<
        Request<Body>,
    >>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.service.call(req)
    }
}

impl From<axum::Router> for App {
    fn from(router: axum::Router) -> Self {
        Self::from_service(router)
    }
}

/// Addresses of the connection a request arrived on, added to every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The listener's address: the shared application port, or a warm-up port.
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
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
