//! One client connection to the manager, on its own task: requests read as frames and applied
//! to the state, answers and pushed messages (watch events, a parked `Get`'s answer) written
//! back, and back-pressure: while the client does not take its answers, no more of its
//! requests are read. When the connection closes, it is forgotten: its watches end and its
//! locks pass to waiters.
//!
//! What a request does is the state's business (`state`, `locks`, through `State::handle`);
//! this file decodes, encodes and writes outside the mutex.

use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::Manager;
use super::state::{ConnId, State};
use crate::cache::protocol::{Message, Request, max_frame};
use crate::ipc::frame::{append_frame, decode};
use crate::ipc::frame_socket::{FrameReader, Writer};

impl Manager {
    pub(super) async fn connection(self, id: ConnId, stream: UnixStream) {
        let max_value = self.state.lock().expect("cache lock").config.max_value;
        // Read through a socket watched for reading only; write through a duplicate of it.
        let (mut frames, writer) = match stream.into_std().and_then(|stream| {
            if let Some(poll) = &self.busy_poll {
                poll.watch(&stream)?;
            }
            let frames = FrameReader::new(stream.try_clone()?, max_frame(max_value))?;
            Ok((frames, Writer::new(stream)))
        }) {
            Ok(halves) => halves,
            Err(e) => {
                tracing::warn!("cache client {id}: cannot serve the connection: {e}");
                return;
            }
        };
        let (inbox_tx, mut inbox) = mpsc::unbounded_channel::<Message>();
        self.state
            .lock()
            .expect("cache lock")
            .conns
            .insert(id, inbox_tx);
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
                Some(pushed) = inbox.recv(), if !full => Some(pushed),
                room = writer.writable(), if full => {
                    if room.is_err() {
                        break;
                    }
                    None
                }
            };
            if let Some(message) = message {
                out = append_frame(out, &message);
            }
            // Write once nothing else is ready, so a burst of requests gets one write.
            if !out.is_empty() && !frames.has_frame() && inbox.is_empty() {
                match writer.write_some(&out) {
                    Ok(written) => {
                        out.drain(..written);
                        full = !out.is_empty();
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
