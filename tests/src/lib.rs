//! Helpers for tests that launch real cluster binaries and talk to them over real sockets.
//!
//! Every wait here waits for something to happen (a log line, an exit, a process to vanish)
//! and gives up after a generous bound with the whole log in the panic message; nothing
//! sleeps to let time pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod load;
mod openmetrics;
mod redis_server;
pub use load::Load;
pub use openmetrics::{INSTALL_PARSER, run_reference_parser};
pub use redis_server::RedisServer;

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(20);

/// A running cluster binary (its master) with its standard error captured line by line.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub log: Vec<String>,
    /// Lines before this index were matched or passed over by a wait.
    cursor: usize,
    exited: Option<ExitStatus>,
    /// Where its private runtime directory may be: `$XDG_RUNTIME_DIR` as it was given, and the
    /// temp dir.
    runtime_bases: Vec<std::path::PathBuf>,
}

impl Proc {
    /// Starts `bin` with `args` and extra environment variables.
    pub fn spawn(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(bin);
        command
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let xdg = envs
            .iter()
            .find(|(k, _)| *k == "XDG_RUNTIME_DIR")
            .map(|(_, v)| std::ffi::OsString::from(v))
            .or_else(|| std::env::var_os("XDG_RUNTIME_DIR"));
        let runtime_bases = xdg
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain([std::env::temp_dir()])
            .collect();
        let (tx, lines) = channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
            cursor: 0,
            exited: None,
            runtime_bases,
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the next line after the last one a wait matched that satisfies `pred`
    /// (lines already read count), so successive waits observe events in order.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(i) = (self.cursor..self.log.len()).find(|&i| pred(&self.log[i])) {
            self.cursor = i + 1;
            return self.log[i].clone();
        }
        self.cursor = self.log.len();
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    self.cursor = self.log.len();
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line {what} within {SOON:?}; log:\n{}",
                        self.log.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the process closed stderr before a line {what}; log:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Makes the next wait consider every line from the start.
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_line(&format!("containing {needle:?}"), |l| l.contains(needle))
    }

    /// Every line already seen or arriving until the process closes stderr.
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.recv_timeout(SOON) {
            self.log.push(line);
        }
        &self.log
    }

    /// Sends a signal to the master.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the master");
    }

    /// Waits for the master to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let deadline = Instant::now() + SOON;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the master") {
                self.exited = Some(status);
                // Collect what it wrote on the way out.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.log.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "the master did not exit within {SOON:?}; log:\n{}",
                    self.log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Standard output, once the process has exited.
    pub fn stdout(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).expect("read stdout");
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // Workers follow their master (parent-death signal and channel EOF).
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A master killed here (or by its test) cannot remove its private directory; the next
        // cluster would sweep it, but the suite leaves none behind.
        for base in &self.runtime_bases {
            let dir = base.join(format!("cluster2-{}", self.child.id()));
            if dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A cluster that reported ready.
#[derive(Debug)]
pub struct Cluster {
    /// The master process.
    pub proc: Proc,
    /// The shared application address (on 127.0.0.1).
    pub app: SocketAddr,
    /// The monitor address.
    pub monitor: SocketAddr,
    /// Worker pids from the ready line.
    pub workers: Vec<u32>,
}

impl Cluster {
    /// Starts `bin` on free ports (unless `args` name ports) and waits until it is ready.
    pub fn start(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut all: Vec<&str> = Vec::new();
        if !args.iter().any(|a| a.starts_with("--port")) {
            all.push("--port=0");
        }
        if !args.iter().any(|a| a.starts_with("--mon-port")) {
            all.push("--mon-port=0");
        }
        all.extend_from_slice(args);
        let mut proc = Proc::spawn(bin, &all, envs);
        let ready = proc.wait_line("with the ready message", is_ready);
        Self::from_ready(proc, &ready)
    }

    /// Builds from a process whose ready line was `line`.
    pub fn from_ready(proc: Proc, line: &str) -> Self {
        // A Unix socket (`app=unix:PATH`) has no address: the test knows its path.
        let app: SocketAddr = match field(line, "app").expect("app=") {
            unix if unix.starts_with("unix:") => SocketAddr::from(([0, 0, 0, 0], 0)),
            app => app.parse().expect("app address"),
        };
        let monitor: SocketAddr = field(line, "monitor")
            .expect("monitor=")
            .parse()
            .expect("monitor address");
        let workers = field(line, "workers")
            .expect("workers=")
            .split(',')
            .map(|p| p.parse().expect("worker pid"))
            .collect();
        Self {
            proc,
            app: SocketAddr::from(([127, 0, 0, 1], app.port())),
            monitor,
            workers,
        }
    }
}

/// Whether `line` is the master's ready message.
pub fn is_ready(line: &str) -> bool {
    line.contains("master[") && line.contains(": ready ")
}

/// The value of `key=value` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(needle.as_str()))
}

/// An HTTP/1.1 response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// `GET path` on a fresh connection that the client closes after the response.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends raw bytes and reads the response until the server closes the connection.
pub fn request(addr: SocketAddr, raw: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, SOON)?;
    stream.set_read_timeout(Some(SOON))?;
    stream.write_all(raw.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no response head: {text:?}"),
        )
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, head.to_owned()))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// An HTTP/1.1 response with its headers and its body as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body, as sent (the server closes the connection after it).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a fresh connection, keeping the headers and the body's bytes: for binary
/// answers. The body is what follows the head up to the server's close, so the answer must not
/// be chunked.
pub fn get_raw(addr: SocketAddr, path: &str) -> std::io::Result<RawResponse> {
    request_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends raw bytes (which should ask for `Connection: close`) and keeps the answer's headers
/// and body, as [`get_raw`].
pub fn request_raw(addr: SocketAddr, raw: &str) -> std::io::Result<RawResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, SOON)?;
    stream.set_read_timeout(Some(SOON))?;
    stream.write_all(raw.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no response head in {} bytes", bytes.len())))?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(head.clone()))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(RawResponse {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    })
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `cond` until it holds or `within` passes; returns whether it held. For observing
/// other processes (exits, freed ports), where there is nothing to wait on.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `port` can be bound on all interfaces right now.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// An HTTP/1.1 client that keeps its connection open between requests, as load balancers and
/// benchmarks do, and opens a new one only when the server said `Connection: close` or closed
/// it cleanly after a full response.
#[derive(Debug)]
pub struct KeepAlive {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    /// A client of `addr`; connects on the first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    /// A client of `addr`, connected now: opening many of these one after another opens a
    /// burst of connections before any request is sent.
    pub fn connected(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, SOON)?;
        stream.set_read_timeout(Some(SOON))?;
        Ok(Self {
            addr,
            stream: Some(BufReader::new(stream)),
        })
    }

    /// `GET path` on the kept connection; any failure is returned (and the connection dropped).
    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        let result = self.try_get(path);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_get(&mut self, path: &str) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, SOON)?;
            stream.set_read_timeout(Some(SOON))?;
            self.stream = Some(BufReader::new(stream));
        }
        let reader = self.stream.as_mut().expect("connected above");
        reader
            .get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
        let mut status_line = String::new();
        if reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection instead of answering",
            ));
        }
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, status_line.clone())
            })?;
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if close {
            self.stream = None;
        }
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// `POST path` with an empty body, on a fresh connection.
pub fn post(addr: SocketAddr, path: &str) -> Response {
    post_body(addr, path, "text/plain", "").expect("POST")
}

/// `POST path` with `body` of type `content_type`, on a fresh connection.
pub fn post_body(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<Response> {
    request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: \
             {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The pid in a master log line about a worker: `worker 0 (pid 123) ...`.
pub fn pid_in(line: &str) -> u32 {
    line.split("(pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"))
}

/// A path under the temp directory that is removed (file or directory) when dropped, named
/// after this test process so parallel test binaries never share one.
#[derive(Debug)]
pub struct TempPath(std::path::PathBuf);

impl TempPath {
    /// `$TMPDIR/cluster2-test-<pid>-<name>`, removed first if a previous run left it.
    pub fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("cluster2-test-{}-{name}", std::process::id()));
        remove_path(&path);
        Self(path)
    }

    /// The path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path as a string, for command-line arguments.
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        remove_path(&self.0);
    }
}

fn remove_path(path: &std::path::Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// A stream of server-sent events from the monitor, over chunked HTTP/1.1: the master's
/// lifecycle events (`/events?since=0`, from the oldest event the master kept, so nothing
/// that happened before the test connected is missed), or any other SSE path.
#[derive(Debug)]
pub struct Events {
    reader: BufReader<TcpStream>,
    /// Bytes left in the current chunk of the body.
    chunk_left: usize,
    /// Every event read so far.
    pub seen: Vec<serde_json::Value>,
    /// Events before this index were matched or passed over by a wait.
    cursor: usize,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// Its `event:` name; `message` when it has none.
    pub name: String,
    /// Its `data`, as JSON.
    pub data: serde_json::Value,
}

impl Events {
    /// Connects to the monitor at `monitor`, asks for `path` (`/events?since=0`) and reads the
    /// stream's head.
    pub fn open(monitor: SocketAddr, path: &str) -> Self {
        let mut stream = TcpStream::connect_timeout(&monitor, SOON).expect("connect to monitor");
        stream.set_read_timeout(Some(SOON)).expect("read timeout");
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
                )
                .as_bytes(),
            )
            .expect("send the request");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read the response head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(
            head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains("chunked"),
            "unexpected head for {path}: {head}"
        );
        Self {
            reader,
            chunk_left: 0,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    /// Waits for the first event after the cursor of kind `kind` (its `event` field) that
    /// `pred` accepts; moves the cursor past it and returns it. Panics with every event seen
    /// if none comes in time.
    pub fn wait(
        &mut self,
        kind: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + SOON;
        loop {
            while self.cursor < self.seen.len() {
                let event = &self.seen[self.cursor];
                self.cursor += 1;
                if event["event"] == kind && pred(event) {
                    return event.clone();
                }
            }
            match self.next_event(deadline) {
                Ok(Some(event)) => self.seen.push(event.data),
                Ok(None) => panic!(
                    "the event stream ended before a `{kind}` event:\n{}",
                    self.dump()
                ),
                Err(TimedOut) => panic!("no `{kind}` event as expected; events:\n{}", self.dump()),
            }
        }
    }

    /// Waits for the next event after the cursor, of any kind.
    pub fn next_any(&mut self) -> serde_json::Value {
        if self.cursor == self.seen.len() {
            match self.next_event(Instant::now() + SOON) {
                Ok(Some(event)) => self.seen.push(event.data),
                Ok(None) => panic!("the event stream ended:\n{}", self.dump()),
                Err(TimedOut) => panic!("no event for {SOON:?}; events:\n{}", self.dump()),
            }
        }
        self.cursor += 1;
        self.seen[self.cursor - 1].clone()
    }

    /// Waits for the next event of kind `kind`, whatever its fields.
    pub fn next_of(&mut self, kind: &str) -> serde_json::Value {
        self.wait(kind, |_| true)
    }

    /// Whether any event seen so far (matched or not) is of `kind` and accepted by `pred`.
    pub fn any(&self, kind: &str, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
        self.seen.iter().any(|e| e["event"] == kind && pred(e))
    }

    /// Moves the cursor back to the first event, so waits see every event again.
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The next event, whatever its name, without recording it; `None` once the stream has
    /// ended (or stayed silent, keep-alives included, for [`SOON`]).
    pub fn next_sse(&mut self) -> Option<SseEvent> {
        self.next_event(Instant::now() + SOON).ok().flatten()
    }

    /// Reads the stream on a thread of its own, so that a test can send requests while
    /// events arrive; the receiver disconnects when the stream ends.
    pub fn in_background(mut self) -> Receiver<SseEvent> {
        let (tx, events) = channel();
        std::thread::spawn(move || {
            while let Some(event) = self.next_sse() {
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        events
    }

    /// The next SSE event; `None` at the end of the stream. The stream's keep-alive comments
    /// keep the socket busy, so the deadline is checked on every line.
    fn next_event(&mut self, deadline: Instant) -> Result<Option<SseEvent>, TimedOut> {
        let mut data = String::new();
        let mut name = String::new();
        loop {
            if Instant::now() > deadline {
                return Err(TimedOut);
            }
            let Some(line) = self.body_line() else {
                return Ok(None);
            };
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue; // the end of a comment (keep-alive) or of nothing
                }
                return Ok(Some(SseEvent {
                    name: if name.is_empty() {
                        "message".to_owned()
                    } else {
                        name
                    },
                    data: serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("bad event data {data:?}: {e}")),
                }));
            }
            if let Some(rest) = line.strip_prefix("data:") {
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            } else if let Some(rest) = line.strip_prefix("event:") {
                name = rest.trim().to_owned();
            }
        }
    }

    /// One line of the de-chunked body.
    fn body_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        loop {
            if self.chunk_left == 0 {
                let mut size = String::new();
                self.reader.read_line(&mut size).ok()?;
                if size.trim().is_empty() {
                    // The CRLF that ends the previous chunk.
                    size.clear();
                    self.reader.read_line(&mut size).ok()?;
                }
                self.chunk_left = usize::from_str_radix(size.trim(), 16).ok()?;
                if self.chunk_left == 0 {
                    return None;
                }
            }
            let available = self.reader.fill_buf().ok()?;
            if available.is_empty() {
                return None;
            }
            let take = available.len().min(self.chunk_left);
            let part = &available[..take];
            if let Some(end) = part.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&part[..=end]);
                self.reader.consume(end + 1);
                self.chunk_left -= end + 1;
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            line.extend_from_slice(part);
            self.reader.consume(take);
            self.chunk_left -= take;
        }
    }
}

/// A wait for an event ran out of time.
#[derive(Debug)]
struct TimedOut;

impl Proc {
    /// The master's lifecycle events from the start, found through the monitor address that
    /// its `starting` line names.
    pub fn events(&mut self) -> Events {
        self.rewind();
        let starting = self.wait_line("the starting line", |l| {
            l.contains("master[") && l.contains(": starting ")
        });
        let monitor: SocketAddr = field(&starting, "monitor")
            .expect("monitor=")
            .parse()
            .expect("monitor address");
        Events::open(monitor, "/events?since=0")
    }
}

impl Cluster {
    /// The master's lifecycle events from the start.
    pub fn events(&self) -> Events {
        Events::open(self.monitor, "/events?since=0")
    }
}
