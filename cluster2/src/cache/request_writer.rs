//! The sending half of a client's connection to the cache manager: requests are written by the
//! task that makes them.
//!
//! A request is written to the socket by the task that makes it, when no one else is writing:
//! no hop through a writer task, which on a multi-thread runtime can mean waking another thread
//! and costs a large share of a round trip that is otherwise two socket writes. Requests sent
//! while a write is under way are gathered and written together by the task already writing,
//! so concurrent callers still share system calls. Only when the socket is full does a
//! background task take over, wait for it to drain, and write what has gathered meanwhile.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ipc::frame_socket::Writer;

/// Frames waiting to be written, and whether someone is writing.
#[derive(Default)]
struct State {
    /// Bytes of whole frames not yet written, in order.
    waiting: Vec<u8>,
    /// Someone (a sender or the flusher) is writing; it writes `waiting` before it stops.
    writing: bool,
    /// A write failed: the connection is broken.
    broken: bool,
}

impl State {
    /// Puts bytes a write did not take back in front of what gathered meanwhile.
    fn put_back(&mut self, unwritten: &[u8]) {
        self.waiting.splice(0..0, unwritten.iter().copied());
    }
}

/// Sends frames on one connection; shared by every task that uses the connection.
pub(super) struct RequestWriter {
    socket: Writer,
    state: Mutex<State>,
    /// Wakes the flusher when the socket filled up.
    full: Notify,
    /// Cancelled when the connection breaks (by either half).
    closed: CancellationToken,
}

/// The connection broke; nothing more can be sent on it.
#[derive(Debug)]
pub(super) struct Broken;

impl RequestWriter {
    /// Starts the flusher task; it ends when `closed` is cancelled.
    pub(super) fn new(socket: Writer, closed: CancellationToken) -> Arc<Self> {
        let writer = Arc::new(Self {
            socket,
            state: Mutex::new(State::default()),
            full: Notify::new(),
            closed,
        });
        tokio::spawn(writer.clone().flusher());
        writer
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one whole frame and, unless someone is already writing, writes it (and whatever
    /// gathers meanwhile) now. Returns once the bytes are with the kernel or queued.
    pub(super) fn send(&self, frame: Vec<u8>) -> Result<(), Broken> {
        let mut batch = {
            let mut state = self.state();
            if state.broken {
                return Err(Broken);
            }
            if state.writing {
                state.waiting.extend_from_slice(&frame);
                return Ok(());
            }
            state.writing = true;
            if state.waiting.is_empty() {
                frame
            } else {
                // Left by a flusher that has just finished: keep the order.
                let mut batch = std::mem::take(&mut state.waiting);
                batch.extend_from_slice(&frame);
                batch
            }
        };
        loop {
            match self.socket.write_some(&batch) {
                Ok(written) if written == batch.len() => {}
                Ok(written) => {
                    // The socket is full: the flusher writes the rest when it drains.
                    self.state().put_back(&batch[written..]);
                    self.full.notify_one();
                    return Ok(());
                }
                Err(_) => return Err(self.break_off()),
            }
            let mut state = self.state();
            if state.waiting.is_empty() {
                state.writing = false;
                return Ok(());
            }
            batch.clear();
            std::mem::swap(&mut batch, &mut state.waiting);
        }
    }

    fn break_off(&self) -> Broken {
        let mut state = self.state();
        state.broken = true;
        state.waiting = Vec::new();
        drop(state);
        self.closed.cancel();
        Broken
    }

    /// Writes what waits whenever a sender found the socket full, until it is all written.
    async fn flusher(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.full.notified() => {}
                () = self.closed.cancelled() => return,
            }
            loop {
                tokio::select! {
                    ready = self.socket.writable() => if ready.is_err() {
                        self.break_off();
                        return;
                    },
                    () = self.closed.cancelled() => return,
                }
                let batch = std::mem::take(&mut self.state().waiting);
                let written = match self.socket.write_some(&batch) {
                    Ok(written) => written,
                    Err(_) => {
                        self.break_off();
                        return;
                    }
                };
                let mut state = self.state();
                if written < batch.len() {
                    state.put_back(&batch[written..]);
                    continue;
                }
                if state.waiting.is_empty() {
                    state.writing = false;
                    break;
                }
            }
        }
    }
}
