//! A small HTTP/1.1 client for the monitor, on hyper's own client connection (already in the
//! tree for the server side): one connection per request, the token as `Authorization:
//! Bearer`, JSON answers read whole (bounded in size and time), and `/events` read as a stream
//! of server-sent events ([`Sse`]: raw bytes, scanned once, each event decoded whole). Every
//! failure becomes a [`Failure`] that names the address and what went wrong, the monitor's own
//! words escaped ([`shown`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::find::Monitor;
use super::{Failure, shown};

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
    sse: Sse,
    found: String,
}

impl Events {
    pub(crate) async fn open(monitor: &Monitor, path: &str) -> Result<Self, Failure> {
        let what = format!("GET {path}");
        // One bound for the head and, on a refusal, its body: a monitor that stalls in either
        // does not hold the command.
        let work = async {
            let response = send(monitor, Method::GET, path, None).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Err(refused(monitor, status, &bytes, &what))
        };
        let response = tokio::time::timeout(ANSWER, work).await.map_err(|_| {
            Failure::Unreachable(format!(
                "{} did not answer {what} within {}",
                monitor.found,
                humantime::format_duration(ANSWER)
            ))
        })??;
        Ok(Self {
            body: response.into_body(),
            sse: Sse::default(),
            found: monitor.found.clone(),
        })
    }

    /// The next event's data as JSON; `None` when the stream ended. Keep-alive comments and
    /// events without data are passed over.
    pub(crate) async fn next(&mut self) -> Result<Option<Value>, Failure> {
        loop {
            match self.sse.next_event() {
                Err(TooLong) => {
                    return Err(Failure::Unreachable(format!(
                        "{}: an event of more than {MAX_EVENT} bytes",
                        self.found
                    )));
                }
                Ok(Some(data)) => {
                    return serde_json::from_slice(&data).map(Some).map_err(|e| {
                        let start = &data[..data.len().min(200)];
                        Failure::Unreachable(format!(
                            "{}: an event that is not JSON ({e}): {}",
                            self.found,
                            shown(&String::from_utf8_lossy(start))
                        ))
                    });
                }
                Ok(None) => {}
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
                        self.sse.push(&data);
                    }
                }
            }
        }
    }
}

/// An event longer than [`MAX_EVENT`].
#[derive(Debug, PartialEq, Eq)]
struct TooLong;

/// The server-sent events parser: lines end in CRLF, LF or CR (a CR and the LF after it may
/// come in different reads), an empty line ends an event, and `data` lines are its data. Bytes
/// are kept raw until an event is whole, so a character or a CRLF split between reads stays
/// whole, and each byte is looked at once, however small the reads.
#[derive(Debug, Default)]
struct Sse {
    /// Bytes not yet taken as lines: the start of a line.
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no line end.
    scanned: usize,
    /// The previous line ended in a CR, which an LF at the start of the next read belongs to.
    after_cr: bool,
    /// The event's `data` lines so far, joined by LF.
    data: Vec<u8>,
    /// Whether the event has a `data` line (which may be empty).
    has_data: bool,
}

impl Sse {
    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The data of the next whole event that has any; `None` until more bytes come.
    fn next_event(&mut self) -> Result<Option<Vec<u8>>, TooLong> {
        loop {
            if self.after_cr && !self.buffer.is_empty() {
                if self.buffer[0] == b'\n' {
                    self.buffer.advance(1);
                    self.scanned = self.scanned.saturating_sub(1);
                }
                self.after_cr = false;
            }
            let Some(at) = self.buffer[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|i| self.scanned + i)
            else {
                self.scanned = self.buffer.len();
                if self.buffer.len() + self.data.len() > MAX_EVENT {
                    return Err(TooLong);
                }
                return Ok(None);
            };
            let line = self.buffer.split_to(at + 1);
            self.scanned = 0;
            // An LF after it is the same line end: dropped at the top of the loop.
            self.after_cr = line[at] == b'\r';
            let line = &line[..at];
            if line.is_empty() {
                let has_data = std::mem::take(&mut self.has_data);
                let data = std::mem::take(&mut self.data);
                if has_data {
                    return Ok(Some(data));
                }
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            // Comments (`: keep-alive`, an empty field name) and other fields are passed over.
            if field == b"data" {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > MAX_EVENT {
                    return Err(TooLong);
                }
            }
        }
    }
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
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(1000)])
                .trim()
                .to_owned()
        });
    let said = shown(&said).into_owned();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event `stream` holds, fed `chunk` bytes at a time.
    fn events(stream: &[u8], chunk: usize) -> Vec<String> {
        let mut sse = Sse::default();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            sse.push(piece);
            while let Some(data) = sse.next_event().unwrap() {
                out.push(String::from_utf8(data).unwrap());
            }
        }
        out
    }

    #[test]
    fn events_are_whole_however_the_stream_is_cut() {
        // LF, CRLF and CR line ends; a comment; an event without data; a two-line event; a
        // character of four bytes.
        let stream = "data: {\"a\":1}\n\n: keep-alive\r\n\r\nevent: x\n\n\
                      data: {\"b\":\r\ndata: \"🦀é\"}\r\n\r\ndata:{\"c\":3}\r\r";
        let want = ["{\"a\":1}", "{\"b\":\n\"🦀é\"}", "{\"c\":3}"];
        for chunk in [1, 2, 3, 5, 7, stream.len()] {
            assert_eq!(events(stream.as_bytes(), chunk), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_cr_then_an_lf_in_the_next_read_is_one_line_end() {
        let mut sse = Sse::default();
        sse.push(b"data: 1\r");
        assert_eq!(sse.next_event(), Ok(None));
        sse.push(b"\n");
        assert_eq!(
            sse.next_event(),
            Ok(None),
            "CRLF is one line end, not an empty line"
        );
        sse.push(b"\r\n");
        assert_eq!(sse.next_event(), Ok(Some(b"1".to_vec())));
    }

    #[test]
    fn an_event_longer_than_the_bound_is_refused() {
        let mut sse = Sse::default();
        let line = vec![b'x'; 64 * 1024];
        let mut result = Ok(None);
        for _ in 0..=MAX_EVENT / line.len() {
            sse.push(b"data: ");
            sse.push(&line);
            sse.push(b"\n");
            result = sse.next_event();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(TooLong));
        let mut sse = Sse::default();
        sse.push(&vec![b'x'; MAX_EVENT + 1]);
        assert_eq!(sse.next_event(), Err(TooLong));
    }
}
