//! The ECV: the endpoint load balancers poll to decide whether to send traffic.
//!
//! `GET <root>` answers 200 with `up_body` when the cluster should take traffic, and 503 with
//! `down_body: <reason>` when it should not. In control mode (the default) it starts down and
//! the master marks it up itself once every initial worker is listening and none failed its
//! warm-up; `POST <mark_up>` and `POST <mark_down>` switch it. In monitor mode each ECV
//! request probes an application URL and validates the answer. In both modes, a cluster with
//! no live worker, fewer than `ecv.min_workers` able to take connections (of the worker ids
//! that served), still starting, or shutting down is down.
//!
//! The same endpoint works on any router, outside a cluster:
//!
//! ```no_run
//! let ecv = cluster2::ecv::Ecv::new(cluster2::options::EcvOptions::default());
//! let app: axum::Router = axum::Router::new().merge(ecv.routes());
//! ecv.mark_up();
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::options::{EcvMode, EcvOptions};

/// Decides whether an answer from the probed URL means "up".
pub type Validator = fn(status: u16, body: &[u8]) -> bool;

/// Why the cluster should not take traffic right now, if it should not; supplied by the master.
pub(crate) type Gate = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// An ECV endpoint and its state. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Ecv {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ecv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ecv")
            .field("mode", &self.inner.options.mode)
            .field("marked_up", &self.inner.marked_up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: EcvOptions,
    marked_up: AtomicBool,
    /// Why the ECV is down while not marked up (`marked down`, or `warm-up failed`).
    down_reason: RwLock<String>,
    gate: Option<Gate>,
    validator: Option<Validator>,
    /// Where a monitor-mode path is probed.
    app: Option<AppPort>,
}

/// The application's own listening socket, where a monitor-mode path is probed: a TCP address
/// or a Unix socket, in TLS when the application port speaks it.
#[derive(Clone, Debug)]
pub(crate) struct AppPort {
    pub(crate) at: AppSocket,
    pub(crate) tls: bool,
}

/// See [`AppPort`].
#[derive(Clone, Debug)]
pub(crate) enum AppSocket {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

impl Ecv {
    /// A standalone ECV, initially marked down (control mode) or probing `options.monitor`
    /// (monitor mode, where the URL must then be absolute).
    pub fn new(options: EcvOptions) -> Self {
        Self::build(options, None, None, None)
    }

    /// Uses `validator` instead of the status and body expectations of the options.
    pub fn with_validator(self, validator: Validator) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| {
            panic!("Ecv::with_validator must be called before the ECV is cloned")
        });
        Self {
            inner: Arc::new(Inner {
                validator: Some(validator),
                ..inner
            }),
        }
    }

    pub(crate) fn build(
        options: EcvOptions,
        gate: Option<Gate>,
        validator: Option<Validator>,
        app: Option<AppPort>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                marked_up: AtomicBool::new(false),
                down_reason: RwLock::new("marked down".to_owned()),
                gate,
                validator,
                app,
            }),
        }
    }

    /// Marks the ECV up (control mode). Logged, and announced as the event `cluster2.ecv`.
    pub fn mark_up(&self) {
        self.set(true, "marked up");
    }

    /// Marks the ECV down (control mode). Logged, and announced as the event `cluster2.ecv`.
    pub fn mark_down(&self) {
        self.set(false, "marked down");
    }

    /// Keeps the ECV down, giving `reason` for it, until it is marked up.
    pub(crate) fn hold_down(&self, reason: &str) {
        self.set(false, reason);
    }

    fn set(&self, up: bool, reason: &str) {
        let was = self.inner.marked_up.swap(up, Ordering::SeqCst);
        if !up {
            *self.inner.down_reason.write().expect("ecv lock") = reason.to_owned();
        }
        if was != up {
            tracing::info!("ECV {} ({reason})", if up { "up" } else { "down" });
            let _ = crate::emitter::emit("cluster2.ecv", (up, reason));
            crate::lifecycle::publish(crate::lifecycle::Event::Ecv {
                up,
                reason: reason.to_owned(),
            });
        }
    }

    /// The options this ECV was built with.
    pub(crate) fn options(&self) -> &EcvOptions {
        &self.inner.options
    }

    pub(crate) fn mode_is_monitor(&self) -> bool {
        self.inner.options.mode == EcvMode::Monitor
    }

    /// Whether control mode has the ECV marked up.
    pub fn is_marked_up(&self) -> bool {
        self.inner.marked_up.load(Ordering::SeqCst)
    }

    /// `Ok` if the cluster should take traffic, else why not.
    pub async fn check(&self) -> Result<(), String> {
        if let Some(reason) = self.inner.gate.as_ref().and_then(|gate| gate()) {
            return Err(reason);
        }
        match self.inner.options.mode {
            EcvMode::Control => {
                if self.is_marked_up() {
                    Ok(())
                } else {
                    Err(self.inner.down_reason.read().expect("ecv lock").clone())
                }
            }
            EcvMode::Monitor => self.probe().await,
        }
    }

    async fn probe(&self) -> Result<(), String> {
        let options = &self.inner.options;
        let target = &options.monitor;
        let answer = tokio::time::timeout(options.timeout, fetch(target, self.inner.app.as_ref()))
            .await
            .map_err(|_| {
                format!(
                    "probe of {target} timed out after {}",
                    humantime::format_duration(options.timeout)
                )
            })?
            .map_err(|e| format!("probe of {target} failed: {e}"))?;
        let (status, body) = answer;
        let ok = match self.inner.validator {
            Some(validator) => validator(status, &body),
            None => {
                let status_ok = match options.expect_status {
                    Some(expected) => status == expected,
                    None => (200..300).contains(&status),
                };
                let body_ok = options
                    .expect_body
                    .as_ref()
                    .is_none_or(|needle| String::from_utf8_lossy(&body).contains(needle.as_str()));
                status_ok && body_ok
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "probe of {target} answered {status}, which the validator refused"
            ))
        }
    }

    /// The ECV routes: `GET root`, and in control mode `POST mark_up` and `POST mark_down`
    /// (any other method on them answers 405).
    pub fn routes(&self) -> Router {
        let options = &self.inner.options;
        let ecv = self.clone();
        let mut router = Router::new().route(
            &options.root,
            get(move || {
                let ecv = ecv.clone();
                async move { ecv.answer().await }
            }),
        );
        if options.mode == EcvMode::Control {
            let (up, down) = (self.clone(), self.clone());
            router = router
                .route(
                    &options.mark_up,
                    post(move || async move {
                        up.mark_up();
                        up.answer().await
                    }),
                )
                .route(
                    &options.mark_down,
                    post(move || async move {
                        down.mark_down();
                        down.answer().await
                    }),
                );
        }
        router
    }

    async fn answer(&self) -> Response {
        let options = &self.inner.options;
        let plain = [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        match self.check().await {
            Ok(()) => (StatusCode::OK, plain, options.up_body.clone()).into_response(),
            Err(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                plain,
                format!("{}: {reason}", options.down_body),
            )
                .into_response(),
        }
    }
}

/// GETs `target` (a path on `app`, or an `http://` URL) and returns the status and body.
async fn fetch(
    target: &str,
    app: Option<&AppPort>,
) -> Result<(u16, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    if let Some(rest) = target.strip_prefix("http://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let host_port = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let stream = tokio::net::TcpStream::connect(host_port).await?;
        return exchange(stream, authority, path).await;
    }
    let app = app.ok_or("a path needs the application's port: use an http:// URL")?;
    match &app.at {
        AppSocket::Tcp(addr) => {
            // The app may listen on 0.0.0.0; probe it on loopback.
            let addr = if addr.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                *addr
            };
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let authority = addr.to_string();
            if app.tls {
                let stream = crate::tls::probe(stream).await?;
                exchange(stream, &authority, target).await
            } else {
                exchange(stream, &authority, target).await
            }
        }
        AppSocket::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            if app.tls {
                let stream = crate::tls::probe(stream).await?;
                exchange(stream, "localhost", target).await
            } else {
                exchange(stream, "localhost", target).await
            }
        }
    }
}

/// One HTTP/1.1 request on `io`.
async fn exchange<I>(
    io: I,
    authority: &str,
    path: &str,
) -> Result<(u16, Bytes), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "cluster2-ecv")
        .body(Body::empty())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // A health page is small; refuse to buffer a huge one.
    let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
        .collect()
        .await?
        .to_bytes();
    Ok((status, body))
}
