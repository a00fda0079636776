//! A small HTTP/1.1 client for the monitor, on hyper's own client connection (already in the
//! tree for the server side): one connection per request, the token as `Authorization:
//! Bearer`, JSON answers read whole (bounded), and `/events` read as a stream of server-sent
//! events. Every failure becomes a [`Failure`] that names the address and what went wrong.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::Failure;
use super::find::Monitor;

/// How long connecting may take: the monitor is local, or near.
const CONNECT: Duration = Duration::from_secs(5);
/// How long a plain request may take (the monitor answers these at once).
const ANSWER: Duration = Duration::from_secs(30);
/// The largest answer read: `/workers` of the largest cluster is far below.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// The longest server-sent event kept while it is read.
const MAX_EVENT: usize = 1024 * 1024;

/// `GET path`, answered with JSON.
pub(crate) async fn get(monitor: &Monitor, path: &str) -> Result<Value, Failure> {
    call(monitor, Method::GET, path, None).await
}

/// `POST path` with a JSON body (or none), answered with JSON.
pub(crate) async fn post(
    monitor: &Monitor,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    call(monitor, Method::POST, path, body).await
}

async fn call(
    monitor: &Monitor,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    let what = format!("{method} {path}");
    let work = async {
        let response = send(monitor, method, path, body).await?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                Failure::Unreachable(format!(
                    "{}: reading the answer to {what}: {e}",
                    monitor.found
                ))
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(refused(monitor, status, &bytes, &what));
        }
        serde_json::from_slice(&bytes).map_err(|e| not_a_monitor(monitor, &what, &e.to_string()))
    };
    tokio::time::timeout(ANSWER, work).await.map_err(|_| {
        Failure::Unreachable(format!(
            "{} did not answer {what} within {}",
            monitor.found,
            humantime::format_duration(ANSWER)
        ))
    })?
}

/// A stream of server-sent events from `path`.
pub(crate) struct Events {
    body: Incoming,
    buffer: BytesMut,
    found: String,
}

impl Events {
    pub(crate) async fn open(monitor: &Monitor, path: &str) -> Result<Self, Failure> {
        let what = format!("GET {path}");
        let response = tokio::time::timeout(ANSWER, send(monitor, Method::GET, path, None))
            .await
            .map_err(|_| {
                Failure::Unreachable(format!("{} did not answer {what} in time", monitor.found))
            })??;
        let status = response.status();
        if !status.is_success() {
            let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(refused(monitor, status, &bytes, &what));
        }
        Ok(Self {
            body: response.into_body(),
            buffer: BytesMut::new(),
            found: monitor.found.clone(),
        })
    }

    /// The next event's data as JSON; `None` when the stream ended. Keep-alive comments and
    /// events without data are passed over.
    pub(crate) async fn next(&mut self) -> Result<Option<Value>, Failure> {
        loop {
            if let Some(end) = find(&self.buffer, b"\n\n") {
                let event = self.buffer.split_to(end + 2);
                let text = String::from_utf8_lossy(&event);
                let data: String = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                let value = serde_json::from_str(&data).map_err(|e| {
                    Failure::Unreachable(format!(
                        "{}: an event that is not JSON ({e}): {data}",
                        self.found
                    ))
                })?;
                return Ok(Some(value));
            }
            if self.buffer.len() > MAX_EVENT {
                return Err(Failure::Unreachable(format!(
                    "{}: an event of more than {MAX_EVENT} bytes",
                    self.found
                )));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(Failure::Unreachable(format!(
                        "{}: the event stream broke: {e}",
                        self.found
                    )));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        // Lines may end in CRLF; events are separated by an empty line.
                        let data = String::from_utf8_lossy(&data).replace("\r\n", "\n");
                        self.buffer.extend_from_slice(data.as_bytes());
                    }
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection to the first address that accepts one.
async fn send(
    monitor: &Monitor,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<hyper::Response<Incoming>, Failure> {
    let (stream, addr) = connect(monitor).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Unreachable(format!("{}: {e}", monitor.found)))?;
    // Driven beside the request; it ends with the connection.
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        // The monitor wants a Host that names it (on loopback: a loopback address).
        .header(header::HOST, addr.to_string());
    if let Some(token) = &monitor.token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let bytes = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(bytes))
        .map_err(|e| Failure::Usage(format!("cannot build the request (a bad token?): {e}")))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Unreachable(format!("{}: {e}", monitor.found)))
}

async fn connect(monitor: &Monitor) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last = None;
    for &addr in &monitor.addrs {
        match tokio::time::timeout(CONNECT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok((stream, addr)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Some(format!("connection refused at {addr}"));
            }
            Ok(Err(e)) => last = Some(format!("cannot connect to {addr}: {e}")),
            Err(_) => {
                last = Some(format!(
                    "no answer from {addr} within {}",
                    humantime::format_duration(CONNECT)
                ));
            }
        }
    }
    Err(Failure::Unreachable(format!(
        "cannot reach {}: {}; is the cluster running?",
        monitor.found,
        last.unwrap_or_else(|| "no address to try".to_owned())
    )))
}

/// The monitor's refusal as a failure of its kind, with its own words.
fn refused(monitor: &Monitor, status: StatusCode, body: &[u8], what: &str) -> Failure {
    let said = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    match status {
        StatusCode::UNAUTHORIZED if monitor.token.is_none() => Failure::Denied(format!(
            "{} needs a token: give the cluster's mon.token with --mon.token=TOKEN or \
             CLUSTER2_MON__TOKEN",
            monitor.found
        )),
        StatusCode::UNAUTHORIZED => Failure::Denied(format!(
            "{} refused the token given (--mon.token): it is not the cluster's",
            monitor.found
        )),
        StatusCode::FORBIDDEN => {
            Failure::Denied(format!("{} refused {what}: {said}", monitor.found))
        }
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            not_a_monitor(monitor, what, &format!("{status}: {said}"))
        }
        StatusCode::BAD_REQUEST => Failure::Usage(said),
        _ => Failure::Failed(format!("{said} ({status} from {})", monitor.found)),
    }
}

fn not_a_monitor(monitor: &Monitor, what: &str, why: &str) -> Failure {
    Failure::Unreachable(format!(
        "{} is not a cluster2 monitor, or of another version: {what} answered {why}",
        monitor.found
    ))
}
