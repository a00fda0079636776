//! The one frame format of every cluster2 socket: the master ↔ child channels and the cache
//! socket alike.
//!
//! A frame is a 4-byte big-endian length, then the body: one byte of [`PROTOCOL_VERSION`] and
//! the message in postcard (a maintained serde format with a documented, stable wire format;
//! bincode is unmaintained). The length counts the body only. A frame whose body is longer
//! than the reader's limit ([`MAX_FRAME`] on the channels) is refused before it is read, and
//! readers grow their buffers with the bytes that arrive, never to the length a frame declares:
//! a corrupt or hostile length cannot make a process allocate gigabytes.
//!
//! Everything that writes or parses those bytes is here: encoding (straight into the caller's
//! buffer, which the cache transport relies on: no second copy of a request or answer),
//! decoding (the message may borrow from the frame), the length-prefix parse every reader
//! uses, the codec of the async channel, and the blocking read of a child's first frame.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// Bumped whenever a message of either protocol on these frames changes shape (the channel's
/// `ipc::message`, the cache's `cache::protocol`): a peer built from another version of
/// cluster2 is refused instead of misread.
pub(crate) const PROTOCOL_VERSION: u8 = 7;

/// The longest body a channel between master and child accepts (and sends). The cache socket
/// has its own limit, derived from `cache.max_value`.
pub(crate) const MAX_FRAME: usize = 32 * 1024 * 1024;

/// Bytes of the length prefix.
pub(crate) const PREFIX: usize = 4;

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    Io(io::Error),
    Version(u8),
    Malformed(postcard::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "channel read failed: {e}"),
            Self::Version(v) => write!(
                f,
                "frame of protocol version {v}, expected {PROTOCOL_VERSION}: master and worker \
                 come from different builds"
            ),
            Self::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes `msg` as one whole frame, length prefix included, ready to be written as it is.
pub(crate) fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    append_frame(Vec::with_capacity(64), msg)
}

/// Appends `msg` to `buf` as one whole frame, length prefix included. The message is encoded
/// in place, after a placeholder prefix that is filled in once its length is known.
pub(crate) fn append_frame<T: Serialize>(mut buf: Vec<u8>, msg: &T) -> Vec<u8> {
    let start = buf.len();
    buf.extend_from_slice(&[0; PREFIX]);
    buf.push(PROTOCOL_VERSION);
    let mut buf = postcard::to_extend(msg, buf).expect("messages always serialize");
    let len = u32::try_from(buf.len() - start - PREFIX).unwrap_or(u32::MAX);
    buf[start..start + PREFIX].copy_from_slice(&len.to_be_bytes());
    buf
}

/// Decodes one frame's body (what follows the length prefix); the message may borrow from it.
pub(crate) fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    match body.split_first() {
        Some((&PROTOCOL_VERSION, message)) => {
            postcard::from_bytes(message).map_err(FrameError::Malformed)
        }
        Some((&other, _)) => Err(FrameError::Version(other)),
        None => Err(FrameError::Malformed(
            postcard::Error::DeserializeUnexpectedEnd,
        )),
    }
}

/// The body length a frame starting at `bytes` declares, once its whole prefix is there.
// This and `check_len` run for every frame of the cache socket: inline them into the reader.
#[inline]
pub(crate) fn length_prefix(bytes: &[u8]) -> Option<usize> {
    let head: [u8; PREFIX] = bytes.get(..PREFIX)?.try_into().ok()?;
    Some(u32::from_be_bytes(head) as usize)
}

/// Refuses a declared body length above `max`, naming both.
#[inline]
pub(crate) fn check_len(len: usize, max: usize) -> io::Result<()> {
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    Ok(())
}

/// Reads one frame from a blocking stream: a child reads its hello before it has a runtime.
pub(crate) fn read_blocking<T: DeserializeOwned>(stream: &mut impl Read) -> Result<T, FrameError> {
    let mut head = [0u8; PREFIX];
    stream.read_exact(&mut head).map_err(FrameError::Io)?;
    let len = length_prefix(&head).expect("a whole prefix was read");
    check_len(len, MAX_FRAME).map_err(FrameError::Io)?;
    // Grown as the body arrives, not allocated at the length it declares.
    let mut body = Vec::new();
    stream
        .take(len as u64)
        .read_to_end(&mut body)
        .map_err(FrameError::Io)?;
    if body.len() < len {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    decode(&body)
}

/// The least a channel's buffer grows by while a long frame arrives.
const RESERVE_STEP: usize = 64 * 1024;

/// The channels' codec, for tokio's `FramedRead` and `FramedWrite`: reads bodies of at most
/// [`MAX_FRAME`] bytes, and writes whole frames made by [`encode_frame`].
#[derive(Debug, Default)]
pub(crate) struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        let Some(len) = length_prefix(src) else {
            return Ok(None);
        };
        check_len(len, MAX_FRAME)?;
        if src.len() < PREFIX + len {
            // Room for more of the frame, growing with what arrived (at least doubling), rather
            // than for all it declares: a length alone commits no memory.
            let missing = PREFIX + len - src.len();
            src.reserve(missing.min(src.len().max(RESERVE_STEP)));
            return Ok(None);
        }
        src.advance(PREFIX);
        Ok(Some(src.split_to(len)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        // The peer would refuse it and close the channel: refuse it here instead.
        check_len(frame.len().saturating_sub(PREFIX), MAX_FRAME)?;
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::message::ToMaster;

    #[test]
    fn a_frame_is_its_body_length_then_the_version_then_postcard() {
        let frame = encode_frame(&ToMaster::Listening);
        assert_eq!(length_prefix(&frame), Some(frame.len() - PREFIX));
        assert_eq!(frame[PREFIX], PROTOCOL_VERSION);
        assert!(matches!(
            decode::<ToMaster>(&frame[PREFIX..]),
            Ok(ToMaster::Listening)
        ));
        assert_eq!(
            length_prefix(&frame[..PREFIX - 1]),
            None,
            "a partial prefix"
        );
    }

    #[test]
    fn appending_keeps_what_the_buffer_held_and_frames_follow_each_other() {
        let mut buf = append_frame(b"xy".to_vec(), &ToMaster::Listening);
        buf = append_frame(buf, &ToMaster::Paused);
        assert_eq!(&buf[..2], b"xy");
        let first = &buf[2..];
        let len = length_prefix(first).unwrap();
        assert!(matches!(
            decode::<ToMaster>(&first[PREFIX..PREFIX + len]),
            Ok(ToMaster::Listening)
        ));
        let second = &first[PREFIX + len..];
        assert!(matches!(
            decode::<ToMaster>(&second[PREFIX..]),
            Ok(ToMaster::Paused)
        ));
    }

    #[test]
    fn a_blocking_read_takes_one_frame_and_refuses_a_length_above_the_limit() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut bytes = encode_frame(&ToMaster::Resumed);
        bytes.extend_from_slice(&u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes());
        std::io::Write::write_all(&mut a, &bytes).unwrap();
        assert!(matches!(read_blocking(&mut b), Ok(ToMaster::Resumed)));
        let err = read_blocking::<ToMaster>(&mut b).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} bytes", MAX_FRAME + 1)) && err.contains("limit"),
            "{err}"
        );
    }

    #[test]
    fn the_codec_waits_for_a_whole_frame_and_refuses_a_length_above_the_limit() {
        let frame = encode_frame(&ToMaster::Listening);
        let mut src = BytesMut::from(&frame[..frame.len() - 1]);
        assert!(FrameCodec.decode(&mut src).unwrap().is_none());
        src.extend_from_slice(&frame[frame.len() - 1..]);
        let body = FrameCodec.decode(&mut src).unwrap().unwrap();
        assert_eq!(&body[..], &frame[PREFIX..]);
        assert!(src.is_empty());

        src.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(FrameCodec.decode(&mut src).is_err());
    }

    #[test]
    fn the_codec_grows_with_what_arrived_not_with_what_a_length_declares() {
        let mut src = BytesMut::new();
        src.extend_from_slice(&u32::try_from(MAX_FRAME).unwrap().to_be_bytes());
        src.extend_from_slice(&[PROTOCOL_VERSION]);
        assert!(FrameCodec.decode(&mut src).unwrap().is_none());
        assert!(src.capacity() <= 2 * RESERVE_STEP, "{}", src.capacity());
    }
}
