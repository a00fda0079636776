//! What the `main` body and the warm-up function are given.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::error::BoxError;
use crate::options::{Options, ServerProtocol};

/// Which process of the cluster this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The supervising process.
    Master,
    /// A serving process, with its worker id (`0..workers`; a replacement keeps the id).
    Worker(usize),
}

/// Handed to the `main` body once this process is serving: in the master once every initial
/// worker is listening, in each worker once it accepts on the shared port.
#[derive(Clone, Debug)]
pub struct Started {
    pub(crate) role: Role,
    pub(crate) addr: SocketAddr,
    pub(crate) monitor_addr: Option<SocketAddr>,
    pub(crate) worker_pids: Vec<u32>,
    pub(crate) options: Arc<Options>,
    pub(crate) args: Arc<[String]>,
}

impl Started {
    /// Master or worker.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The shared application address (with the real port when `port = 0` was asked for); the
    /// first of them when `host` is a name with several addresses (`localhost`: 127.0.0.1).
    /// On a Unix socket (`bind = unix:…`), which has no network address, `0.0.0.0:0`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The monitor app's address; `None` in workers.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.monitor_addr
    }

    /// This process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// In the master: the pids of the initial workers. Empty in workers.
    pub fn worker_pids(&self) -> &[u32] {
        &self.worker_pids
    }

    /// The resolved options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The command-line arguments after `--`, which belong to the application.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// Handed to the `#[warm_up]` function: requests to this worker's own warm-up listener, which
/// serves the real application before the worker takes traffic on the shared port.
#[derive(Clone, Debug)]
pub struct WarmUp {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: ServerProtocol,
}

impl WarmUp {
    /// The warm-up listener's address (on 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path`; an error unless the answer is a success (2xx) or a redirect (3xx).
    pub async fn get(&self, path: &str) -> Result<Response<Bytes>, BoxError> {
        let request = Request::get(path).body(Body::empty())?;
        let response = self.request(request).await?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            return Err(format!("GET {path} during warm-up answered {status}").into());
        }
        Ok(response)
    }

    /// Sends any request to the warm-up listener and returns the whole response.
    pub async fn request(&self, mut request: Request<Body>) -> Result<Response<Bytes>, BoxError> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        let io = TokioIo::new(stream);
        let host = self.addr.to_string();
        request
            .headers_mut()
            .entry(http::header::HOST)
            .or_insert(host.parse()?);
        let response = if self.protocol == ServerProtocol::Http2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}
