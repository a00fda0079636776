//! The frame format of every channel (`ipc::frame`): the codec that cuts a byte stream into
//! frames, however the stream arrives, and the messages of the master ↔ child channels.
//!
//! Why bolero. proptest and bolero both run on stable Rust as ordinary `#[test]`s. proptest
//! generates structured values and shrinks them well, but it has no byte corpus (its
//! regression files hold seeds, not inputs) and no coverage-guided engine: its long run is
//! only more random cases. A decoder's bugs hide behind exact byte patterns (a length that
//! agrees with a checksum, a version byte, an enum tag), which coverage guidance finds and
//! random generation rarely does. bolero runs the same target three ways: under `cargo test`
//! on its committed corpus plus a second of random inputs; under `cargo bolero test --engine
//! libfuzzer` for hours, coverage-guided, growing the same corpus; and with generated,
//! structured inputs (`with_type`) for the `…_damaged` targets, still shrunk on failure. A
//! corpus of real frames, logs and bodies, readable as files, is what this suite wants.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::{Edit, bounded, damage, splits};
use crate::ipc::frame::{
    FrameCodec, MAX_FRAME, PREFIX, decode, encode_frame, length_prefix, read_blocking,
};
use crate::ipc::message::{LogLevel, LogLine, StartStage, ToMaster, ToWorker, WireEvent};

/// What a reader may hold whatever the input: its first buffer, a step of growth.
const FIXED: usize = 256 * 1024;

/// How the channels' frames should come out of `stream`: the bodies of its whole frames, and
/// whether a length above the limit stops it (what follows the last whole frame is a frame
/// still arriving).
fn expected_frames(stream: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut bodies = Vec::new();
    let mut rest = stream;
    while let Some(len) = length_prefix(rest) {
        if len > MAX_FRAME {
            return (bodies, true);
        }
        let Some(body) = rest.get(PREFIX..PREFIX + len) else {
            break;
        };
        bodies.push(body);
        rest = &rest[PREFIX + len..];
    }
    (bodies, false)
}

/// The codec over `pieces` as a reader receives them: every frame it yields, and whether it
/// failed.
fn run_codec<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<BytesMut>, bool) {
    let mut codec = FrameCodec;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// The whole property of a byte stream on a channel.
fn check_stream(stream: &[u8]) {
    let (want, want_error) = expected_frames(stream);
    // Whole, a byte at a time, and in uneven pieces: the same frames, the same verdict, and
    // memory that follows the bytes that came, not the lengths they declare.
    let ways: [(&str, Vec<&[u8]>); 3] = [
        ("whole", vec![stream]),
        ("byte by byte", stream.chunks(1).collect()),
        ("in pieces", splits(stream).collect()),
    ];
    for (how, pieces) in ways {
        let (got, failed) = bounded("the frame codec", stream.len(), FIXED, 4, || {
            run_codec(pieces.into_iter())
        });
        let got: Vec<&[u8]> = got.iter().map(|f| &f[..]).collect();
        assert_eq!(got, want, "frames read {how}");
        assert_eq!(failed, want_error, "verdict read {how}");
    }
    // A child's first frame, read before it has a runtime: the same frame, the same message.
    let first = bounded("a blocking frame read", stream.len(), FIXED, 4, || {
        read_blocking::<ToWorker>(&mut &stream[..]).is_ok()
    });
    let first_decodes = want
        .first()
        .is_some_and(|body| decode::<ToWorker>(body).is_ok());
    assert_eq!(first, first_decodes, "the first frame, read blocking");
    for body in want {
        check_body(body);
    }
}

/// A frame's body as either side of a channel decodes it: no panic, bounded memory, and a
/// message accepted writes back to bytes that read back the same.
fn check_body(body: &[u8]) {
    let to_master = bounded("ToMaster", body.len(), FIXED, 16, || {
        decode::<ToMaster>(body).ok()
    });
    if let Some(message) = to_master {
        let again = encode_frame(&message);
        let reread: ToMaster = decode(&again[PREFIX..]).expect("what was written reads back");
        assert_eq!(encode_frame(&reread), again, "{message:?}");
    }
    let to_worker = bounded("ToWorker", body.len(), FIXED, 16, || {
        decode::<ToWorker>(body).ok()
    });
    if let Some(message) = to_worker {
        let again = encode_frame(&message);
        let reread: ToWorker = decode(&again[PREFIX..]).expect("what was written reads back");
        assert_eq!(encode_frame(&reread), again, "{message:?}");
    }
}

#[test]
fn ipc_frame_bytes() {
    bolero::check!(name = "ipc_frame_bytes").for_each(check_stream);
}

/// The parts of a few real messages, generated.
type Parts = (u8, u64, String, Vec<u8>, Vec<String>);

fn message_from((kind, n, text, bytes, words): &Parts) -> Vec<u8> {
    // Small messages, a few of them: the target is the decoder, not the allocator.
    let text: String = text.chars().take(64).collect();
    let text = &text;
    let bytes = &bytes[..bytes.len().min(256)];
    let words: Vec<String> = words
        .iter()
        .take(8)
        .map(|w| w.chars().take(32).collect())
        .collect();
    let event = || WireEvent {
        name: text.clone(),
        from: *n as u32,
        payload: bytes.to_vec(),
    };
    match kind % 6 {
        0 => encode_frame(&ToMaster::StartFailed {
            stage: StartStage::WarmUp,
            error: text.clone(),
        }),
        1 => encode_frame(&ToMaster::Emit {
            event: event(),
            targets: vec![],
        }),
        2 => encode_frame(&ToMaster::StatusNames(words.clone())),
        3 => encode_frame(&ToMaster::Logs {
            lines: words
                .iter()
                .map(|w| LogLine {
                    level: LogLevel::Info,
                    target: text.clone(),
                    message: w.clone(),
                    fields: vec![(w.clone(), text.clone())],
                    at_unix_secs: *n as f64,
                })
                .collect(),
            dropped: *n,
        }),
        4 => encode_frame(&ToWorker::StatusQuery {
            id: *n,
            name: text.clone(),
            set: Some(bytes.to_vec()),
        }),
        _ => encode_frame(&ToWorker::Event(event())),
    }
}

#[test]
fn ipc_frame_damaged() {
    bolero::check!()
        .with_type::<(Vec<Parts>, Vec<Edit>)>()
        .for_each(|(messages, edits)| {
            let mut stream: Vec<u8> = messages.iter().take(8).flat_map(message_from).collect();
            check_stream(&stream);
            damage(&mut stream, edits);
            check_stream(&stream);
        });
}

/// A length of exactly the limit, and one above it, each announced in four bytes.
#[test]
fn a_declared_length_is_no_allocation() {
    for len in [MAX_FRAME, MAX_FRAME + 1, u32::MAX as usize] {
        let mut stream = (len as u32).to_be_bytes().to_vec();
        stream.push(crate::ipc::frame::PROTOCOL_VERSION);
        check_stream(&stream);
    }
}
