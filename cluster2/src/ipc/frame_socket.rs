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

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::fd::register;
use super::frame::{FrameError, PREFIX, check_len, length_prefix};

/// The reading side: the bodies of whole frames, in the format of [`super::frame`].
#[derive(Debug)]
pub(crate) struct FrameReader {
    socket: AsyncFd<UnixStream>,
    /// Always initialised to its full length; `start..end` holds unread bytes.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: usize,
}

/// What a reader starts with; it grows to hold the largest frame seen.
const INITIAL_BUFFER: usize = 8 * 1024;

impl FrameReader {
    /// Reads frames of at most `max_frame` bytes from `socket` (which must be non-blocking).
    pub(crate) fn new(socket: UnixStream, max_frame: usize) -> io::Result<Self> {
        Ok(Self {
            socket: register(socket, Interest::READABLE)?,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            max_frame,
        })
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

    /// Reads what the socket has into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        // Make room: move the unread bytes to the front, and grow for a large frame.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let wanted = length_prefix(&self.buf[..self.end]).map_or(0, |len| PREFIX + len);
        if self.end == self.buf.len() || wanted > self.buf.len() {
            let size = wanted.max(self.buf.len() * 2);
            self.buf.resize(size, 0);
        }
        loop {
            let mut ready = self.socket.readable().await?;
            let room = &mut self.buf[self.end..];
            let room_len = room.len();
            match ready.try_io(|socket| {
                let mut stream: &UnixStream = socket.get_ref();
                stream.read(room)
            }) {
                Ok(Ok(n)) => {
                    if n > 0 && n < room_len {
                        // A short read emptied the socket: wait for the next edge rather than
                        // find out with one more read.
                        ready.clear_ready();
                    }
                    self.end += n;
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
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
