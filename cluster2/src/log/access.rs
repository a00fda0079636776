//! The access log (`log.access`): one line per request of the application port, written by
//! every worker, and of the monitor's, written by the master, in the combined format that
//! Apache and nginx write and log tools read, or as JSON (`log.format = json`).
//!
//! ```text
//! 127.0.0.1 - - [28/Nov/2026:06:16:11 +0000] "GET /hello?x=1 HTTP/1.1" 200 12 "-" "curl/8.5.0" 0.000153 1
//! ```
//!
//! The combined format is followed by two fields of cluster2's own, as nginx's custom formats
//! add `$request_time`: the request's duration in seconds (from the request head read to the
//! response's last byte handed to the connection) and the worker id (`monitor` for the
//! monitor's requests). The time is UTC. The path and the client's headers are escaped as
//! nginx escapes them: `"`, `\`, control bytes and bytes beyond ASCII become `\xHH`, so that
//! no client can forge a line or a field. As JSON:
//! `{"timestamp":…,"remote":…,"method":…,"path":…,"protocol":…,"status":…,"bytes":…,
//! "referer":…,"user_agent":…,"duration_secs":…,"worker":…,"port":"app"|"monitor","pid":…,
//! "log":"access"}` (`worker` null for the monitor's).
//!
//! A request head hyper refuses before the application sees it (malformed: 400; a URI or
//! head too long: 414, 431) is logged too, with `"-"` as its request line (null method, path
//! and protocol in JSON), as nginx logs a request it could not read: hostile traffic shows.
//!
//! What it costs. Off, the request path takes one branch on a `None` per request and per body
//! frame: nothing is allocated, nothing formatted. On, each request keeps its head's parts
//! (reference-counted, not copied) in one small allocation; when its body is dropped, the line
//! is formatted on the serving thread into a scratch buffer of that thread and appended to
//! this process's buffer under a mutex held for a copy. A plain thread writes that buffer out
//! every [`FLUSH_EVERY`], or sooner once it holds [`WAKE_AT`] bytes, so the serving threads
//! never wait for a disk or a pipe: past [`CAPACITY`] unwritten bytes a line is dropped and
//! counted (the heartbeat's `access_log_dropped_total`, `/metrics`'
//! `cluster2_access_log_dropped_total`).
//!
//! Where lines go. A file is opened by every worker with `O_APPEND`, and each write is whole
//! lines, so that the workers' lines never interleave within a line; SIGUSR1 to the master
//! reopens it in every worker (after `logrotate` moved it; nginx and gunicorn use the same
//! signal). Standard output and standard error are shared with the other workers and, for
//! standard error, the other log lines: there each write is whole lines of at most
//! [`PIPE_BUF`] bytes, which a pipe keeps together.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use http::header::{REFERER, USER_AGENT};
use http::{HeaderValue, Method, StatusCode, Uri, Version};

use crate::options::{AccessLog, LogFormat};

/// Unwritten bytes a process holds at most; a line beyond is dropped and counted.
pub(crate) const CAPACITY: usize = 2 << 20;
/// Unwritten bytes that wake the writer before its next round.
const WAKE_AT: usize = 256 << 10;
/// How long a line waits at most before the writer takes it.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// The most bytes a pipe writes in one piece (POSIX guarantees 512, Linux 4096).
const PIPE_BUF: usize = 4096;
/// The longest path or header value logged; the rest is cut, and `...` says so.
const MAX_FIELD: usize = 2048;

/// This process's access log, once started.
static LOG: OnceLock<Log> = OnceLock::new();

struct Log {
    /// Lines not yet handed to the writer.
    pending: Mutex<Vec<u8>>,
    /// Lines dropped since start because the buffer was full.
    dropped: AtomicU64,
    /// Set by SIGUSR1 (through the master): the writer reopens the file before its next write.
    reopen: AtomicBool,
    /// Set on exit: the writer writes what is left and ends.
    closing: AtomicBool,
    /// The writer, to wake.
    writer: Thread,
    /// The writer says it ended, with everything written.
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    format: LogFormat,
    source: Source,
    pid: u32,
}

/// Which port a process logs the requests of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The application's, in the worker of this id.
    Worker(usize),
    /// The monitor's, in the master.
    Monitor,
}

/// Where the writer writes.
enum Out {
    /// A file, and its path to reopen.
    File(File, String),
    /// Standard output or error (a duplicate of it): writes of whole lines up to [`PIPE_BUF`].
    Stdio(File),
}

/// Opens (creates) the access log file for appending, as every worker does; the master calls
/// it at start so that a path it cannot write is refused before any worker starts.
pub(crate) fn open(path: &str) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
}

/// Starts this process's access log, unless `access` is off: a worker's, of the application
/// port, or the master's, of the monitor's.
pub(crate) fn start(access: &AccessLog, format: LogFormat, source: Source) -> Result<(), String> {
    let out = match access {
        AccessLog::File(path) => Out::File(
            open(path).map_err(|e| format!("cannot open the access log {path}: {e}"))?,
            path.clone(),
        ),
        AccessLog::Stdout => Out::Stdio(stdio(std::io::stdout().as_fd())?),
        AccessLog::Stderr => Out::Stdio(stdio(std::io::stderr().as_fd())?),
        _ => return Ok(()),
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = std::thread::Builder::new()
        .name("cluster2-access-log".into())
        .spawn(move || {
            // Waits for `LOG`, set just below.
            let log = loop {
                match LOG.get() {
                    Some(log) => break log,
                    None => std::thread::park_timeout(Duration::from_millis(1)),
                }
            };
            write_out(log, out);
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the access log's writer: {e}"))?;
    let log = Log {
        pending: Mutex::new(Vec::with_capacity(WAKE_AT)),
        dropped: AtomicU64::new(0),
        reopen: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        writer: writer.thread().clone(),
        done: Mutex::new(Some(done_rx)),
        format,
        source,
        pid: std::process::id(),
    };
    if LOG.set(log).is_err() {
        return Err("the access log was started twice".to_owned());
    }
    Ok(())
}

fn stdio(fd: std::os::fd::BorrowedFd<'_>) -> Result<File, String> {
    fd.try_clone_to_owned()
        .map(File::from)
        .map_err(|e| format!("cannot write the access log to standard output or error: {e}"))
}

/// Whether this process logs requests.
pub(crate) fn enabled() -> bool {
    LOG.get().is_some()
}

/// Lines dropped since start because the writer fell behind.
pub(crate) fn dropped() -> u64 {
    LOG.get()
        .map_or(0, |log| log.dropped.load(Ordering::Relaxed))
}

/// Reopens the file before the next write (SIGUSR1 reached the master).
pub(crate) fn reopen() {
    if let Some(log) = LOG.get() {
        log.reopen.store(true, Ordering::Relaxed);
        log.writer.unpark();
    }
}

/// Writes what is left, waiting at most `timeout` for a slow disk or pipe; on exit.
pub(crate) fn finish(timeout: Duration) {
    let Some(log) = LOG.get() else { return };
    log.closing.store(true, Ordering::Release);
    log.writer.unpark();
    let done = log
        .done
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(done) = done {
        let _ = done.recv_timeout(timeout);
    }
}

/// The writer thread: takes what the serving threads appended and writes it.
fn write_out(log: &Log, mut out: Out) {
    let mut batch = Vec::with_capacity(WAKE_AT);
    loop {
        let closing = log.closing.load(Ordering::Acquire);
        if !closing {
            std::thread::park_timeout(FLUSH_EVERY);
        }
        if log.reopen.swap(false, Ordering::Relaxed) {
            if let Out::File(file, path) = &mut out {
                match open(path) {
                    Ok(new) => *file = new,
                    Err(e) => tracing::error!("cannot reopen the access log {path}: {e}"),
                }
            }
        }
        {
            let mut pending = log.pending.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *pending, &mut batch);
        }
        if !batch.is_empty() {
            // A failed write (a full disk, a closed pipe) loses those lines; they are counted
            // as dropped, and the next batch tries again.
            if let Err(lost) = write_batch(&mut out, &batch) {
                log.dropped.fetch_add(lost, Ordering::Relaxed);
            }
            batch.clear();
            // A burst may have grown it far beyond the usual; give that memory back.
            batch.shrink_to(WAKE_AT);
        }
        if closing {
            return;
        }
    }
}

/// Writes whole lines; on an error, the number of lines not written.
fn write_batch(out: &mut Out, batch: &[u8]) -> Result<(), u64> {
    let lines = |bytes: &[u8]| bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    match out {
        // One write: O_APPEND puts it whole at the end, whatever the other workers write.
        Out::File(file, _) => file.write_all(batch).map_err(|_| lines(batch)),
        Out::Stdio(file) => {
            let mut rest = batch;
            while !rest.is_empty() {
                // Whole lines up to PIPE_BUF, or one longer line alone.
                let cut = match rest[..rest.len().min(PIPE_BUF)]
                    .iter()
                    .rposition(|&b| b == b'\n')
                {
                    Some(i) => i + 1,
                    None => rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |i| i + 1),
                };
                if file.write_all(&rest[..cut]).is_err() {
                    return Err(lines(rest));
                }
                rest = &rest[cut..];
            }
            Ok(())
        }
    }
}

/// One request on its way to a line: what its head said, then its status and the bytes of
/// its body as they are sent. Dropped with the response body, which writes the line.
#[derive(Debug)]
pub(crate) struct Pending {
    /// A request hyper refused before the application saw it (a malformed or oversized
    /// head): its request line is logged as `"-"`, as nginx logs one it could not read.
    rejected: bool,
    method: Method,
    uri: Uri,
    version: Version,
    referer: Option<HeaderValue>,
    agent: Option<HeaderValue>,
    remote: SocketAddr,
    at: SystemTime,
    started: Instant,
    /// `None` until the response head is ready: a request whose client left before then is
    /// logged with nginx's 499.
    status: Option<StatusCode>,
    bytes: u64,
}

impl Pending {
    /// What a line needs from a request's head, when the access log is on: the one branch a
    /// request takes when it is off.
    pub(crate) fn new<B>(request: &http::Request<B>, remote: SocketAddr) -> Option<Box<Self>> {
        LOG.get()?;
        let headers = request.headers();
        Some(Box::new(Self {
            rejected: false,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            referer: headers.get(REFERER).cloned(),
            agent: headers.get(USER_AGENT).cloned(),
            remote,
            at: SystemTime::now(),
            started: Instant::now(),
            status: None,
            bytes: 0,
        }))
    }

    /// A line for a connection that ended with `error`, when it says hyper refused a request
    /// head and answered it itself (400, 414 or 431), and the access log is on; logged when
    /// dropped.
    pub(crate) fn rejected(
        error: &(dyn std::error::Error + 'static),
        remote: SocketAddr,
    ) -> Option<Box<Self>> {
        LOG.get()?;
        let status = refused_with(error)?;
        let now = Instant::now();
        Some(Box::new(Self {
            rejected: true,
            method: Method::GET,
            uri: Uri::default(),
            version: Version::HTTP_11,
            referer: None,
            agent: None,
            remote,
            at: SystemTime::now(),
            started: now,
            status: Some(status),
            bytes: 0,
        }))
    }

    /// The response's status, once its head is ready.
    pub(crate) fn answered(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    /// Body bytes handed to the connection.
    pub(crate) fn sent(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(log) = LOG.get() else { return };
        let took = self.started.elapsed();
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        // `try_with`: a request dropped while its thread ends has no scratch buffer left, and
        // goes unlogged rather than panicking in a destructor.
        let _ = SCRATCH.try_with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return;
            };
            let Scratch { line, time } = &mut *scratch;
            line.clear();
            match log.format {
                LogFormat::Json => json_line(line, self, took, log),
                _ => text_line(line, time, self, took, log.source),
            }
            let mut pending = log.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.len() + line.len() > CAPACITY {
                drop(pending);
                log.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.extend_from_slice(line);
            let wake = pending.len() >= WAKE_AT;
            drop(pending);
            if wake {
                log.writer.unpark();
            }
            // A huge header once must not keep its buffer on this thread for ever.
            line.shrink_to(4096);
        });
    }
}

/// What each serving thread keeps between lines: the line being formatted, and the time of
/// the last one, since a busy thread logs many requests in the same second.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    time: ClfTime,
}

/// A second, and how the common log format writes it.
#[derive(Default)]
struct ClfTime {
    second: u64,
    text: Vec<u8>,
}

impl ClfTime {
    fn write(&mut self, line: &mut Vec<u8>, at: SystemTime) {
        let second = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.text.is_empty() || self.second != second {
            self.text.clear();
            clf_time(&mut self.text, second);
            self.second = second;
        }
        line.extend_from_slice(&self.text);
    }
}

/// The request target as the client sent it in origin form: path and query.
fn target(uri: &Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
}

/// The status hyper answered a request head it refused with, found in `error`'s chain: the
/// answers of its HTTP/1 server (`on_error`); none for what it closes without an answer (an
/// HTTP/2 preface on an HTTP/1 port) or for any other error. (hyper's rare internal parse
/// error, which it closes on without an answer, cannot be told apart and is logged as 400.)
fn refused_with(error: &(dyn std::error::Error + 'static)) -> Option<StatusCode> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(e) = error.downcast_ref::<hyper::Error>() {
            if e.is_parse_too_large() {
                // hyper has no predicate of its own for the URI: its message names it.
                return Some(if e.to_string().contains("URI") {
                    StatusCode::URI_TOO_LONG
                } else {
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                });
            }
            if e.is_parse() && !e.is_parse_version_h2() && !e.is_parse_status() {
                return Some(StatusCode::BAD_REQUEST);
            }
            return None;
        }
        next = error.source();
    }
    None
}

/// The status sent, or 499 (nginx's "client closed request") when none was.
fn status(p: &Pending) -> u16 {
    p.status.map_or(499, |s| s.as_u16())
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

/// The client's address as nginx's `$remote_addr` writes it: no port, IPv4 unmapped.
fn remote(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// A combined-format line, with the duration and the worker id after it.
fn text_line(line: &mut Vec<u8>, time: &mut ClfTime, p: &Pending, took: Duration, source: Source) {
    let _ = write!(line, "{} - - [", remote(p.remote));
    time.write(line, p.at);
    line.extend_from_slice(b"] \"");
    if p.rejected {
        line.push(b'-');
    } else {
        escape(line, p.method.as_str().as_bytes());
        line.push(b' ');
        escape(line, target(&p.uri).as_bytes());
        let _ = write!(line, " {}", protocol(p.version));
    }
    let _ = write!(line, "\" {} {} \"", status(p), p.bytes);
    header(line, p.referer.as_ref());
    line.extend_from_slice(b"\" \"");
    header(line, p.agent.as_ref());
    // Whole numbers: formatting an `f64` costs more than the rest of the line.
    let micros = took.as_micros();
    let _ = write!(line, "\" {}.{:06} ", micros / 1_000_000, micros % 1_000_000);
    let _ = match source {
        Source::Worker(id) => writeln!(line, "{id}"),
        Source::Monitor => writeln!(line, "monitor"),
    };
}

fn header(line: &mut Vec<u8>, value: Option<&HeaderValue>) {
    match value {
        Some(value) => escape(line, value.as_bytes()),
        None => line.push(b'-'),
    }
}

/// nginx's escaping of logged variables: `"`, `\`, control bytes and bytes beyond ASCII as
/// `\xHH`; cut at [`MAX_FIELD`] bytes.
fn escape(line: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let unsafe_byte = |b: &u8| *b == b'"' || *b == b'\\' || !(0x20..0x7f).contains(b);
    let mut rest = &bytes[..bytes.len().min(MAX_FIELD)];
    // Runs of plain bytes are copied whole: most paths and agents are nothing else.
    while let Some(i) = rest.iter().position(unsafe_byte) {
        line.extend_from_slice(&rest[..i]);
        let b = rest[i];
        line.extend_from_slice(&[
            b'\\',
            b'x',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]);
        rest = &rest[i + 1..];
    }
    line.extend_from_slice(rest);
    if bytes.len() > MAX_FIELD {
        line.extend_from_slice(b"...");
    }
}

/// `28/Nov/2026:06:16:11 +0000`, the common log format's time of a Unix second, in UTC.
fn clf_time(line: &mut Vec<u8>, secs: u64) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = civil(secs / 86_400);
    let time = secs % 86_400;
    let _ = write!(
        line,
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[month as usize - 1],
        time / 3600,
        time % 3600 / 60,
        time % 60
    );
}

/// The date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A JSON line: the same fields, named.
fn json_line(line: &mut Vec<u8>, p: &Pending, took: Duration, log: &Log) {
    let text = |value: Option<&HeaderValue>| {
        value.map(|v| {
            let bytes = &v.as_bytes()[..v.len().min(MAX_FIELD)];
            String::from_utf8_lossy(bytes).into_owned()
        })
    };
    let path = target(&p.uri);
    // A refused head has no request line to tell: null, as `referer` without the header.
    let said = |text: &str| (!p.rejected).then(|| text.to_owned());
    let record = serde_json::json!({
        "timestamp": humantime::format_rfc3339_micros(p.at).to_string(),
        "remote": remote(p.remote).to_string(),
        "method": said(p.method.as_str()),
        "path": said(&path[..floor_char_boundary(path, MAX_FIELD)]),
        "protocol": said(protocol(p.version)),
        "status": status(p),
        "bytes": p.bytes,
        "referer": text(p.referer.as_ref()),
        "user_agent": text(p.agent.as_ref()),
        "duration_secs": took.as_secs_f64(),
        "worker": match log.source {
            Source::Worker(id) => Some(id),
            Source::Monitor => None,
        },
        "port": match log.source {
            Source::Worker(_) => "app",
            Source::Monitor => "monitor",
        },
        "pid": log.pid,
        "log": "access",
    });
    // serde_json escapes every control character: a line stays one line.
    let _ = serde_json::to_writer(&mut *line, &record);
    line.push(b'\n');
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_quote_backslash_or_control_byte() {
        let mut line = Vec::new();
        escape(&mut line, b"/a\"b\\c\nd\te\x7f\xff~");
        assert_eq!(line, b"/a\\x22b\\x5Cc\\x0Ad\\x09e\\x7F\\xFF~");
        line.clear();
        escape(&mut line, &[b'a'; MAX_FIELD + 5]);
        assert_eq!(line.len(), MAX_FIELD + 3);
        assert!(line.ends_with(b"a..."));
    }

    #[test]
    fn dates_are_the_calendars() {
        let mut line = Vec::new();
        clf_time(&mut line, 0);
        assert_eq!(line, b"01/Jan/1970:00:00:00 +0000");
        line.clear();
        // 2026-11-28T06:16:11Z, then the next second through the per-thread cache; a leap day.
        let mut time = ClfTime::default();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_846_571);
        time.write(&mut line, at);
        assert_eq!(line, b"28/Nov/2026:06:16:11 +0000");
        line.clear();
        time.write(&mut line, at + Duration::from_millis(1500));
        assert_eq!(line, b"28/Nov/2026:06:16:12 +0000");
        assert_eq!(civil(19_782), (2024, 2, 29));
    }

    #[test]
    fn whole_lines_go_to_a_pipe_in_pieces_it_keeps_together() {
        let (reader, writer) = std::io::pipe().unwrap();
        let mut out = Out::Stdio(File::from(std::os::fd::OwnedFd::from(writer)));
        let line = format!("{}\n", "x".repeat(99));
        let batch = line.repeat(100);
        let long = format!("{}\n", "y".repeat(PIPE_BUF * 2));
        let reading = std::thread::spawn(move || {
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut { reader }, &mut all).unwrap();
            all
        });
        write_batch(&mut out, batch.as_bytes()).unwrap();
        write_batch(&mut out, long.as_bytes()).unwrap();
        drop(out);
        let all = reading.join().unwrap();
        assert_eq!(all, format!("{batch}{long}").into_bytes());
    }
}
