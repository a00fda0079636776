//! One client connection to the manager, on its own task: requests read as frames and applied
//! to the state, answers and pushed messages (watch events, a parked `Get`'s answer) written
//! back, and back-pressure: while the client does not take its answers, no more of its
//! requests are read. When the connection closes, it is forgotten: its watches end and its
//! locks pass to waiters.
//!
//! Nothing a client does can make the manager hold much for it (clients are local processes,
//! but a buggy or hostile one must not take the cache down with it):
//! - its requests are read into a buffer that grows with the bytes that arrived, up to the
//!   largest frame, and holds nothing while the connection is idle (`ipc::frame_socket`);
//! - a request that began must arrive whole within `cache.timeout` (its own call has given up
//!   by then);
//! - answers are written once `FLUSH_AT` bytes wait, even amid a burst of requests, and are
//!   not read past while the client does not take them; a large answer's buffer is freed
//!   once written;
//! - pushed messages waiting for a client that does not read them are bounded (`Outbox`): past
//!   the bound the client is cut off, as Redis cuts off a subscriber that does not keep up.
//!
//! What a request does is the state's business (`state`, `locks`, through `State::handle`);
//! this file decodes, encodes and writes outside the mutex.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc};

use super::Manager;
use super::state::{ConnId, State};
use crate::cache::protocol::{Message, Reply, Request, max_frame};
use crate::ipc::frame::{append_frame, decode};
use crate::ipc::frame_socket::{FrameReader, Writer};

/// Answers are written once this many bytes of them wait, even while more requests are
/// buffered: a burst of small requests for large values cannot pile up answers unwritten.
const FLUSH_AT: usize = 64 * 1024;

/// An answer buffer grown past this is freed once written rather than kept.
const KEEP_OUT: usize = 64 * 1024;

/// Where the state puts what it pushes to one connection (watch events, parked answers), and
/// how much of it waits.
pub(super) struct Outbox {
    tx: mpsc::UnboundedSender<Message>,
    /// The most that may wait before the connection is cut off.
    limit: usize,
    waiting: Arc<Waiting>,
}

/// What waits for one connection, shared by its outbox and its task.
#[derive(Default)]
struct Waiting {
    /// Bytes of the messages waiting (an estimate: keys and values).
    bytes: AtomicUsize,
    /// Set when the limit is passed: the connection closes.
    overflowed: AtomicBool,
    /// Wakes the task if it waits on a full socket when that happens (only then does it not
    /// take pushed messages as they come, and so only then must it be woken to see it).
    wake: Notify,
}

/// What a waiting message holds on to, near enough.
fn weight(message: &Message) -> usize {
    let value = |v: &Option<bytes::Bytes>| v.as_ref().map_or(0, bytes::Bytes::len);
    64 + match message {
        Message::Changed { ns, key, value: v } => ns.len() + key.len() + value(v),
        Message::Reply {
            reply: Reply::Value(v),
            ..
        } => v.len(),
        Message::Reply {
            reply: Reply::LoadFailed(e) | Reply::Error(e),
            ..
        } => e.len(),
        Message::Reply {
            reply: Reply::Load { ns, key, .. },
            ..
        } => ns.len() + key.len(),
        Message::Reply { .. } | Message::Refused(_) => 0,
    }
}

impl Outbox {
    pub(super) fn push(&self, message: Message) {
        let waiting = &self.waiting;
        if waiting.overflowed.load(Ordering::Relaxed) {
            return;
        }
        if waiting.bytes.fetch_add(weight(&message), Ordering::Relaxed) > self.limit {
            waiting.overflowed.store(true, Ordering::Relaxed);
            waiting.wake.notify_one();
            return;
        }
        let _ = self.tx.send(message);
    }
}

/// Waits until the socket has room, or until the client is to be cut off. (A function: the
/// wait on both is made only while the socket is full, not on every turn of the loop.)
async fn room_or_overflow(writer: &Writer, waiting: &Waiting) -> std::io::Result<()> {
    tokio::select! {
        room = writer.writable() => room,
        () = waiting.wake.notified() => Ok(()),
    }
}

impl Manager {
    pub(super) async fn connection(self, id: ConnId, stream: UnixStream) {
        let (max_value, frame_timeout) = {
            let state = self.state.lock().expect("cache lock");
            (state.config.max_value, state.config.frame_timeout)
        };
        // Read through a socket watched for reading only; write through a duplicate of it.
        let (mut frames, writer) = match stream.into_std().and_then(|stream| {
            if let Some(poll) = &self.busy_poll {
                poll.watch(&stream)?;
            }
            let frames = FrameReader::new(stream.try_clone()?, max_frame(max_value))?
                .with_frame_timeout(frame_timeout)
                .releasing_idle_buffer();
            Ok((frames, Writer::new(stream)))
        }) {
            Ok(halves) => halves,
            Err(e) => {
                tracing::warn!("cache client {id}: cannot serve the connection: {e}");
                return;
            }
        };
        let (tx, mut inbox) = mpsc::unbounded_channel::<Message>();
        let waiting = Arc::new(Waiting::default());
        // Room for a few of the largest messages, and never less than a few megabytes.
        let limit = (4 * max_frame(max_value)).max(8 << 20);
        self.state.lock().expect("cache lock").conns.insert(
            id,
            Outbox {
                tx,
                limit,
                waiting: waiting.clone(),
            },
        );
        // Answers not yet written. While the client does not take them (the socket is full),
        // no more of its requests are read.
        let mut out: Vec<u8> = Vec::new();
        let mut full = false;
        loop {
            let message = tokio::select! {
                frame = frames.next(), if !full => match frame {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!("cache client {id}: closing the connection: {e}");
                        break;
                    }
                    Some(Ok(frame)) => match decode::<Request>(frame) {
                        Ok(request) => State::handle(&self.state, id, request),
                        Err(e) => {
                            tracing::warn!("cache client {id}: closing the connection: {e}");
                            break;
                        }
                    },
                },
                Some(pushed) = inbox.recv(), if !full => {
                    waiting.bytes.fetch_sub(weight(&pushed), Ordering::Relaxed);
                    Some(pushed)
                }
                room = room_or_overflow(&writer, &waiting), if full => {
                    if room.is_err() {
                        break;
                    }
                    None
                }
            };
            if waiting.overflowed.load(Ordering::Relaxed) {
                tracing::warn!(
                    "cache client {id}: closing the connection: it does not read what it is \
                     sent (more than {limit} bytes waiting)"
                );
                break;
            }
            if let Some(message) = message {
                out = append_frame(out, &message);
            }
            // Write once nothing else is ready, so a burst of requests gets one write; or once
            // enough waits.
            if !out.is_empty()
                && (out.len() >= FLUSH_AT || (!frames.has_frame() && inbox.is_empty()))
            {
                match writer.write_some(&out) {
                    Ok(written) => {
                        out.drain(..written);
                        full = !out.is_empty();
                        if !full && out.capacity() > KEEP_OUT {
                            out = Vec::new();
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        self.disconnected(id);
    }

    fn disconnected(&self, conn: ConnId) {
        let mut state = self.state.lock().expect("cache lock");
        state.conns.remove(&conn);
        for watchers in state.watchers.values_mut() {
            watchers.remove(&conn);
        }
        // Locks held by the departed loader pass to a waiter.
        state.hand_over_locks_of(conn);
    }
}
