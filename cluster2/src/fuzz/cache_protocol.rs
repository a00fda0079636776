//! The cache socket (`cache::protocol` over `ipc::frame_socket`): what any local process that
//! reaches the socket can send the manager, and what a client reads back.
//!
//! Requests are decoded in place from the frame (names, keys and values borrow from it), so
//! decoding a request must cost no more than a little bookkeeping, whatever it declares. The
//! frame reader is driven over a real socket pair, the stream cut into uneven pieces.

use std::borrow::Cow;
use std::io::Write;
use std::os::unix::net::UnixStream;

use super::{Edit, bounded, damage, splits};
use crate::cache::handle::valid_namespace;
use crate::cache::protocol::{
    Message, NsBounds, NsOptions, Op, Reply, Request, RequestRef, max_frame,
};
use crate::ipc::frame::{PREFIX, decode, encode_frame, length_prefix};
use crate::ipc::frame_socket::FrameReader;

/// What decoding may hold whatever the input.
const FIXED: usize = 64 * 1024;

/// The largest value of the reader's limit here; any limit would do.
const MAX_VALUE: usize = 1 << 20;

/// A request body as the manager decodes it: no panic, memory bounded by the body, a name that
/// passes the namespace check stays a plain file name, and what is accepted reads back the same
/// once written again.
fn check_request(body: &[u8]) {
    let Some(request) = bounded("a cache request", body.len(), FIXED, 2, || {
        decode::<Request<'_>>(body).ok()
    }) else {
        return;
    };
    if let Some(ns) = request.op.namespace() {
        if valid_namespace(ns).is_ok() {
            let mut parts = std::path::Path::new(ns).components();
            assert!(
                matches!(parts.next(), Some(std::path::Component::Normal(_)))
                    && parts.next().is_none(),
                "an accepted namespace must be one plain file name: {ns:?}"
            );
        }
    }
    let again = encode_frame(&RequestRef {
        id: request.id,
        op: &request.op,
    });
    let reread: Request<'_> = decode(&again[PREFIX..]).expect("what was written reads back");
    let third = encode_frame(&RequestRef {
        id: reread.id,
        op: &reread.op,
    });
    assert_eq!(third, again, "{request:?}");
}

/// An answer body as a client decodes it.
fn check_message(body: &[u8]) {
    // Lists in answers (keys, figures) are decoded by serde, which reserves room for what a
    // list declares up to its own cap of 1 MiB (`serde::de::size_hint::cautious`): bounded,
    // though not by the body. A client reads these from its own manager.
    let Some(message) = bounded("a cache answer", body.len(), FIXED + (1 << 20), 16, || {
        decode::<Message>(body).ok()
    }) else {
        return;
    };
    let again = encode_frame(&message);
    let reread: Message = decode(&again[PREFIX..]).expect("what was written reads back");
    assert_eq!(encode_frame(&reread), again, "{message:?}");
}

#[test]
fn cache_request_bytes() {
    bolero::check!(name = "cache_request_bytes").for_each(|body| {
        check_request(body);
        check_message(body);
    });
}

/// The parts of a request, generated.
type Parts = (u8, u64, String, String, Vec<u8>, Option<u64>, bool);

fn request_from(parts: &Parts) -> Vec<u8> {
    let (kind, n, ns, key, value, ms, flag) = parts;
    let (ns, key) = (Cow::Borrowed(ns.as_str()), Cow::Borrowed(key.as_str()));
    let value = Cow::Borrowed(value.as_slice());
    let op = match kind % 11 {
        0 => Op::Use {
            ns,
            options: NsOptions {
                persist: *flag,
                expire_ms: *ms,
            },
            bounds: NsBounds {
                max_entries: *ms,
                max_bytes: Some(*n),
            },
        },
        1 => Op::Get {
            ns,
            key,
            lease_ms: *ms,
        },
        2 => Op::Fill {
            ns,
            key,
            token: *n,
            value,
        },
        3 => Op::Abandon {
            ns,
            key: key.clone(),
            token: *n,
            error: key,
        },
        4 => Op::Release { ns, key, token: *n },
        5 => Op::Set {
            ns,
            key,
            value,
            leave_if_not_null: *flag,
        },
        6 => Op::Del { ns, key },
        7 => Op::Keys { ns },
        8 => Op::Watch { ns },
        9 => Op::Unwatch { ns },
        _ => Op::Stats,
    };
    encode_frame(&RequestRef { id: *n, op: &op })
}

fn message_from(parts: &Parts) -> Vec<u8> {
    let (kind, n, ns, key, value, ms, flag) = parts;
    let reply = match kind % 5 {
        0 => Reply::Value(value.clone().into()),
        1 => Reply::Load {
            ns: ns.clone(),
            key: key.clone(),
            token: *n,
        },
        2 => Reply::Keys(vec![ns.clone(), key.clone()]),
        3 => Reply::Used {
            options: NsOptions {
                persist: *flag,
                expire_ms: *ms,
            },
            bounds: NsBounds {
                max_entries: *ms,
                max_bytes: None,
            },
            existed: *flag,
        },
        _ => {
            return encode_frame(&Message::Changed {
                ns: ns.clone(),
                key: key.clone(),
                value: flag.then(|| value.clone().into()),
            });
        }
    };
    encode_frame(&Message::Reply { id: *n, reply })
}

#[test]
fn cache_request_damaged() {
    bolero::check!()
        .with_type::<(Parts, Vec<Edit>)>()
        .for_each(|(parts, edits)| {
            for mut frame in [request_from(parts), message_from(parts)] {
                check_request(&frame[PREFIX..]);
                check_message(&frame[PREFIX..]);
                damage(&mut frame, edits);
                let body = frame.get(PREFIX..).unwrap_or_default();
                check_request(body);
                check_message(body);
            }
        });
}

/// The frames the reader must yield from `stream`, and whether it must end in an error (a
/// length above the limit, or the stream closing inside a frame) rather than cleanly.
fn expected_frames(stream: &[u8], max: usize) -> (Vec<&[u8]>, bool) {
    let mut bodies = Vec::new();
    let mut rest = stream;
    while let Some(len) = length_prefix(rest) {
        if len > max {
            return (bodies, true);
        }
        let Some(body) = rest.get(PREFIX..PREFIX + len) else {
            break;
        };
        bodies.push(body);
        rest = &rest[PREFIX + len..];
    }
    (bodies, !rest.is_empty())
}

/// The manager's frame reader over a socket that delivers `stream` in uneven pieces.
fn check_reader(runtime: &tokio::runtime::Runtime, stream: &[u8]) {
    let max = max_frame(MAX_VALUE);
    let (want, want_error) = expected_frames(stream, max);
    // The reader grows with the bytes that came (doubling from its first buffer), never to the
    // length a frame declares: a prefix announcing the limit costs what arrived.
    let (got, failed) = bounded("the cache frame reader", stream.len(), FIXED, 4, || {
        runtime.block_on(read_all(stream))
    });
    assert_eq!(got, want, "frames");
    assert_eq!(failed, want_error, "verdict");
}

async fn read_all(stream: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let (ours, mut theirs) = UnixStream::pair().expect("a socket pair");
    ours.set_nonblocking(true).expect("non-blocking");
    let mut reader = FrameReader::new(ours, max_frame(MAX_VALUE)).expect("a frame reader");
    let pieces: Vec<Vec<u8>> = splits(stream).map(<[u8]>::to_vec).collect();
    // Each piece is written, then the reader gets its turn: it sees the stream cut where the
    // pieces end (at most a few KiB in all: the socket's buffer always has room).
    let writer = tokio::spawn(async move {
        for piece in pieces {
            theirs.write_all(&piece).expect("the socket has room");
            tokio::task::yield_now().await;
        }
    });
    let mut frames = Vec::new();
    let failed = loop {
        match reader.next().await {
            None => break false,
            Some(Ok(frame)) => frames.push(frame.to_vec()),
            Some(Err(_)) => break true,
        }
    };
    writer.await.expect("the writer finishes");
    (frames, failed)
}

#[test]
fn cache_frame_reader() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    bolero::check!(name = "cache_frame_reader").for_each(|stream| check_reader(&runtime, stream));
}
