//! The cache socket's two halves: a reader of whole frames from a Unix stream socket watched for
//! reading only, and a writer that writes without waiting.
//!
//! tokio registers a `UnixStream` for both readiness kinds, edge-triggered. On a Unix socket
//! the kernel signals "writable" every time the peer reads, not only when a full buffer makes
//! room: in a request/answer exchange every answer the peer reads wakes the writer's runtime
//! once more for nothing, doubling the wake-ups of a round trip. Here the socket is registered
//! for reading alone; writes go straight to the socket without waiting, and only a writer that
//! found the socket full registers (a duplicate of) it for writing, until it drains. The
//! registration itself needs `unsafe`, and lives in [`super::fd::register`].

use std::cell::RefCell;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::time::Instant;

use super::fd::register;
use super::frame::{FrameError, PREFIX, check_len, length_prefix};

/// The reading side: the bodies of whole frames, in the format of [`super::frame`].
///
/// Memory follows the bytes that arrived, never what a frame's length declares: the buffer
/// doubles only once it is full, up to the frame's length (itself checked against the limit
/// first), so a peer that announces a huge frame and sends five bytes costs a few kilobytes.
/// Once a large frame is read, its grown buffer is freed. A reader made with
/// [`FrameReader::releasing_idle_buffer`] (the manager's, one per client) holds no buffer at all
/// while nothing is unread: its buffer goes back to the thread's spares until bytes arrive.
#[derive(Debug)]
pub(crate) struct FrameReader {
    socket: AsyncFd<UnixStream>,
    /// Initialised to its full length; `start..end` holds unread bytes. Empty while nothing is
    /// unread.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: usize,
    /// How long a frame may take to arrive once it has begun; `None`: as long as it takes.
    frame_timeout: Option<Duration>,
    /// When the frame now partly in the buffer began to arrive.
    partial_since: Option<Instant>,
    /// Whether the buffer goes back to the spares while nothing is unread.
    release_idle: bool,
}

/// What a reader's buffer starts at; it grows, for a large frame, as the frame arrives.
const INITIAL_BUFFER: usize = 8 * 1024;

/// Buffers of `INITIAL_BUFFER` bytes kept per thread for readers that wake up. A request and
/// its answer take one and give it back: no allocation, and idle readers hold none.
const MAX_SPARES: usize = 32;

thread_local! {
    static SPARES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_spare() -> Vec<u8> {
    SPARES
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| vec![0; INITIAL_BUFFER])
}

fn give_spare(buf: Vec<u8>) {
    // A grown buffer is freed: the memory of one large frame is not kept for the next. (An
    // empty one is no buffer at all.)
    if buf.len() == INITIAL_BUFFER {
        SPARES.with_borrow_mut(|spares| {
            if spares.len() < MAX_SPARES {
                spares.push(buf);
            }
        });
    }
}

impl FrameReader {
    /// Reads frames of at most `max_frame` bytes from `socket` (which must be non-blocking).
    pub(crate) fn new(socket: UnixStream, max_frame: usize) -> io::Result<Self> {
        Ok(Self {
            socket: register(socket, Interest::READABLE)?,
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_frame,
            frame_timeout: None,
            partial_since: None,
            release_idle: false,
        })
    }

    /// Holds no buffer while nothing is unread (for a reader of one of many mostly idle
    /// connections; a buffer is taken from the thread's spares, and given back, around each
    /// wait, which costs a little per frame).
    pub(crate) fn releasing_idle_buffer(self) -> Self {
        Self {
            release_idle: true,
            ..self
        }
    }

    /// Fails a frame that has not wholly arrived `timeout` after it began: a peer that starts
    /// a frame and stalls (or drips it a byte at a time) is not waited for forever.
    pub(crate) fn with_frame_timeout(self, timeout: Duration) -> Self {
        Self {
            frame_timeout: Some(timeout),
            ..self
        }
    }

    /// The next frame's body; `None` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Option<Result<&[u8], FrameError>> {
        loop {
            match self.frame_len() {
                Ok(Some(len)) => {
                    let body = self.start + PREFIX..self.start + PREFIX + len;
                    self.start = body.end;
                    return Some(Ok(&self.buf[body]));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.fill().await {
                Ok(0) if self.start == self.end => return None,
                Ok(0) => {
                    return Some(Err(FrameError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed in the middle of a frame",
                    ))));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(FrameError::Io(e))),
            }
        }
    }

    /// Whether a whole next frame is already buffered.
    pub(crate) fn has_frame(&self) -> bool {
        matches!(self.frame_len(), Ok(Some(_)))
    }

    /// The length of the next frame if it is wholly buffered.
    fn frame_len(&self) -> Result<Option<usize>, FrameError> {
        let unread = &self.buf[self.start..self.end];
        let Some(len) = length_prefix(unread) else {
            return Ok(None);
        };
        check_len(len, self.max_frame).map_err(FrameError::Io)?;
        Ok((unread.len() >= PREFIX + len).then_some(len))
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at end of stream. Cancel-safe: the
    /// buffer is consistent at every await.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            // Nothing unread: hold no buffer while waiting, or at least not a grown one.
            if self.release_idle || self.buf.len() > INITIAL_BUFFER {
                give_spare(std::mem::take(&mut self.buf));
            }
            (self.start, self.end) = (0, 0);
            self.partial_since = None;
        } else if self.start > 0 {
            // Make room: move the unread bytes to the front.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end > 0 && self.frame_timeout.is_some() {
            // A frame has begun: it has until its deadline to arrive whole. (Apart, so that the
            // common wait, between frames, stays small.)
            return Box::pin(self.fill_before_deadline()).await;
        }
        loop {
            let mut ready = self.socket.readable().await?;
            let release = self.release_idle;
            if let Some(read) = read_ready(&mut self.buf, &mut self.end, &mut ready, release) {
                return read;
            }
        }
    }

    /// `fill`, for the rest of a frame that must have arrived by its deadline.
    async fn fill_before_deadline(&mut self) -> io::Result<usize> {
        let timeout = self.frame_timeout.unwrap_or_default();
        let deadline = *self.partial_since.get_or_insert_with(Instant::now) + timeout;
        loop {
            let Ok(ready) = tokio::time::timeout_at(deadline, self.socket.readable()).await else {
                let declared = length_prefix(&self.buf[..self.end])
                    .map_or_else(|| "?".to_owned(), |len| (PREFIX + len).to_string());
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "a frame began {} ago and has not arrived whole ({} of {declared} bytes)",
                        humantime::format_duration(timeout),
                        self.end
                    ),
                ));
            };
            let release = self.release_idle;
            if let Some(read) = read_ready(&mut self.buf, &mut self.end, &mut ready?, release) {
                return read;
            }
        }
    }
}

/// Reads from a socket reported readable into `buf` after `end`: `None` if it was not readable
/// after all (then, with `release_idle`, an empty buffer goes back to the spares).
#[inline]
fn read_ready(
    buf: &mut Vec<u8>,
    end: &mut usize,
    ready: &mut AsyncFdReadyGuard<'_, UnixStream>,
    release_idle: bool,
) -> Option<io::Result<usize>> {
    if buf.is_empty() {
        *buf = take_spare();
    }
    if *end == buf.len() {
        // Full, and the frame in it is longer (else it would have been returned): double, up
        // to what the frame needs.
        let wanted = length_prefix(&buf[..*end]).map_or(0, |len| PREFIX + len);
        let size = (buf.len() * 2).min(wanted.max(buf.len() + 1));
        buf.resize(size, 0);
    }
    let room = &mut buf[*end..];
    let room_len = room.len();
    match ready.try_io(|socket| {
        let mut stream: &UnixStream = socket.get_ref();
        stream.read(room)
    }) {
        Ok(Ok(n)) => {
            if n > 0 && n < room_len {
                // A short read emptied the socket: wait for the next edge rather than find out
                // with one more read.
                ready.clear_ready();
            }
            *end += n;
            Some(Ok(n))
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => None,
        Ok(Err(e)) => Some(Err(e)),
        Err(_would_block) => {
            if release_idle && *end == 0 {
                // Woken for nothing: back to holding no buffer while waiting.
                give_spare(std::mem::take(buf));
            }
            None
        }
    }
}

/// The writing side: non-blocking writes, and a wait for room when the socket is full.
#[derive(Debug)]
pub(crate) struct Writer {
    socket: UnixStream,
}

impl Writer {
    /// Writes to `socket` (which must be non-blocking).
    pub(crate) fn new(socket: UnixStream) -> Self {
        Self { socket }
    }

    /// Writes as much of `bytes` as the socket takes now; `WouldBlock` is not an error here
    /// (fewer bytes are written).
    pub(crate) fn write_some(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < bytes.len() {
            match nix::sys::socket::send(
                self.socket.as_raw_fd(),
                &bytes[written..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Waits until the socket has room again (or is broken).
    pub(crate) async fn writable(&self) -> io::Result<()> {
        let watched = register(self.socket.try_clone()?, Interest::WRITABLE)?;
        let _ready = watched.writable().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[tokio::test]
    async fn frames_split_and_joined_across_reads_come_out_whole() {
        let (a, mut b) = pair();
        let mut reader = FrameReader::new(a, 1 << 20).unwrap();
        let big = vec![7u8; 3 * INITIAL_BUFFER];
        let mut bytes = frame(b"one");
        bytes.extend(frame(&big));
        bytes.extend(frame(b"three"));
        let writer = std::thread::spawn(move || {
            b.set_nonblocking(false).unwrap();
            // Dribbled out in uneven pieces, cutting through lengths and bodies.
            for piece in bytes.chunks(1000) {
                b.write_all(piece).unwrap();
            }
        });
        assert_eq!(reader.next().await.unwrap().unwrap(), b"one");
        assert_eq!(reader.next().await.unwrap().unwrap(), &big[..]);
        assert_eq!(reader.next().await.unwrap().unwrap(), b"three");
        writer.join().unwrap();
        assert!(reader.next().await.is_none(), "a clean end of stream");
    }

    #[tokio::test]
    async fn an_oversized_frame_is_an_error_naming_the_limit() {
        let (a, mut b) = pair();
        let mut reader = FrameReader::new(a, 100).unwrap();
        b.write_all(&frame(&[0; 101])).unwrap();
        let err = reader.next().await.unwrap().unwrap_err().to_string();
        assert!(err.contains("101 bytes") && err.contains("100"), "{err}");
    }

    #[tokio::test]
    async fn a_declared_length_commits_nothing_and_a_stalled_frame_times_out() {
        let (a, mut b) = pair();
        let mut reader = FrameReader::new(a, 64 << 20)
            .unwrap()
            .with_frame_timeout(Duration::from_millis(100));
        // Announces 16 MiB, sends one byte of it, and stalls.
        b.write_all(&(16u32 << 20).to_be_bytes()).unwrap();
        b.write_all(&[4]).unwrap();
        let err = reader.next().await.unwrap().unwrap_err().to_string();
        assert!(
            err.contains("has not arrived whole (5 of 16777220 bytes)"),
            "{err}"
        );
        assert_eq!(
            reader.buf.len(),
            INITIAL_BUFFER,
            "memory for what arrived only"
        );
    }

    #[tokio::test]
    async fn a_waiting_reader_holds_no_buffer_and_a_large_frame_is_not_kept() {
        use futures_util::FutureExt;
        let (a, mut b) = pair();
        let mut reader = FrameReader::new(a, 1 << 20)
            .unwrap()
            .releasing_idle_buffer();
        let big = vec![7u8; 10 * INITIAL_BUFFER];
        let bytes = frame(&big);
        let writer = std::thread::spawn(move || {
            b.set_nonblocking(false).unwrap();
            b.write_all(&bytes).unwrap();
            b
        });
        assert_eq!(reader.next().await.unwrap().unwrap().len(), big.len());
        let mut b = writer.join().unwrap();
        assert!(reader.buf.len() > INITIAL_BUFFER, "it grew for the frame");
        assert!(
            reader.next().now_or_never().is_none(),
            "nothing more to read"
        );
        assert!(reader.buf.is_empty(), "{} bytes held", reader.buf.len());
        // And it reads again as before.
        b.write_all(&frame(b"again")).unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap(), b"again");
    }

    #[tokio::test]
    async fn a_reader_that_keeps_its_buffer_does_not_keep_a_grown_one() {
        use futures_util::FutureExt;
        let (a, mut b) = pair();
        let mut reader = FrameReader::new(a, 1 << 20).unwrap();
        let bytes = frame(&vec![7u8; 10 * INITIAL_BUFFER]);
        let writer = std::thread::spawn(move || {
            b.set_nonblocking(false).unwrap();
            b.write_all(&bytes).unwrap();
            b
        });
        assert_eq!(
            reader.next().await.unwrap().unwrap().len(),
            10 * INITIAL_BUFFER
        );
        let _b = writer.join().unwrap();
        assert!(
            reader.next().now_or_never().is_none(),
            "nothing more to read"
        );
        assert!(
            reader.buf.len() <= INITIAL_BUFFER,
            "{} bytes held",
            reader.buf.len()
        );
    }

    #[tokio::test]
    async fn an_end_of_stream_inside_a_frame_is_an_error() {
        let (a, mut b) = pair();
        let mut reader = FrameReader::new(a, 100).unwrap();
        b.write_all(&frame(b"hello")[..6]).unwrap();
        drop(b);
        let err = reader.next().await.unwrap().unwrap_err().to_string();
        assert!(err.contains("middle of a frame"), "{err}");
    }

    #[tokio::test]
    async fn a_writer_that_fills_the_socket_waits_for_room() {
        let (a, b) = pair();
        let writer = Writer::new(a);
        let data = vec![1u8; 4 << 20];
        let mut written = writer.write_some(&data).unwrap();
        assert!(written < data.len(), "4 MiB fills a socket buffer");
        let reader = tokio::task::spawn_blocking(move || {
            b.set_nonblocking(false).unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut &b, &mut got).unwrap();
            got.len()
        });
        while written < data.len() {
            writer.writable().await.unwrap();
            written += writer.write_some(&data[written..]).unwrap();
        }
        drop(writer);
        assert_eq!(reader.await.unwrap(), data.len());
    }
}
