//! A typed channel over a Unix socketpair, in the frames of [`super::frame`].
//!
//! Sending goes through a bounded queue drained by one writer task, so that many tasks can
//! send concurrently, a slow peer exerts back-pressure instead of growing memory, and writes
//! are batched under load.

use std::marker::PhantomData;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::frame::{FrameCodec, FrameError, decode, encode_frame};

/// How many messages may wait for the writer before `send` waits and `try_send` fails.
pub(crate) const QUEUE: usize = 4096;

/// One message as a whole frame, ready for the writer task.
fn encode<T: Serialize>(msg: &T) -> Bytes {
    Bytes::from(encode_frame(msg))
}

/// What the writer task is handed.
enum Outgoing {
    Frame(Bytes),
    /// Reply once everything queued before has been written to the socket.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending half; cheap to clone.
pub(crate) struct Sender<T> {
    queue: mpsc::Sender<Outgoing>,
    _msg: PhantomData<fn(T)>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            _msg: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

/// The peer is gone.
#[derive(Debug)]
pub(crate) struct Closed;

/// Why a message could not be queued without waiting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// [`QUEUE`] messages are already waiting for the peer.
    Full,
    /// The peer is gone.
    Closed,
}

impl<T: Serialize> Sender<T> {
    /// Queues a message; waits while the queue is full. Fails once the peer is gone.
    pub(crate) async fn send(&self, msg: &T) -> Result<(), Closed> {
        self.queue
            .send(Outgoing::Frame(encode(msg)))
            .await
            .map_err(|_| Closed)
    }

    /// Waits until every message queued so far has been written to the socket.
    pub(crate) async fn flushed(&self) -> Result<(), Closed> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.queue
            .send(Outgoing::Flush(done))
            .await
            .map_err(|_| Closed)?;
        written.await.map_err(|_| Closed)
    }

    /// Queues a message if there is room, without waiting.
    pub(crate) fn try_send(&self, msg: &T) -> Result<(), TrySendError> {
        self.try_send_frame(encode(msg))
    }

    /// Queues a message encoded once for many channels (a fan-out), if there is room.
    pub(crate) fn try_send_encoded(&self, msg: Encoded<T>) -> Result<(), TrySendError> {
        self.try_send_frame(msg.frame)
    }

    fn try_send_frame(&self, frame: Bytes) -> Result<(), TrySendError> {
        self.queue
            .try_send(Outgoing::Frame(frame))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TrySendError::Full,
                mpsc::error::TrySendError::Closed(_) => TrySendError::Closed,
            })
    }
}

/// A message encoded once, to be queued on any number of channels of its type: each gets the
/// same frame (a clone is a reference count), not an encoding and a copy of its own.
pub(crate) struct Encoded<T> {
    frame: Bytes,
    _msg: PhantomData<fn(T)>,
}

impl<T> Clone for Encoded<T> {
    fn clone(&self) -> Self {
        Self {
            frame: self.frame.clone(),
            _msg: PhantomData,
        }
    }
}

impl<T: Serialize> Encoded<T> {
    pub(crate) fn new(msg: &T) -> Self {
        Self {
            frame: encode(msg),
            _msg: PhantomData,
        }
    }
}

/// The receiving half.
pub(crate) struct Receiver<T> {
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
    _msg: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// The next message; `Ok(None)` when the peer closed the channel.
    pub(crate) async fn recv(&mut self) -> Result<Option<T>, FrameError> {
        match self.frames.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(FrameError::Io(e)),
            Some(Ok(frame)) => decode(&frame).map(Some),
        }
    }
}

/// Splits a connected stream into a typed sender (`Tx` messages) and receiver (`Rx`). The writer
/// task ends when every sender is dropped, after writing what was queued.
pub(crate) fn channel<Tx, Rx>(stream: UnixStream) -> (Sender<Tx>, Receiver<Rx>, JoinHandle<()>) {
    let (read, write) = stream.into_split();
    let (queue, pending) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(write_frames(write, pending));
    (
        Sender {
            queue,
            _msg: PhantomData,
        },
        Receiver {
            frames: FramedRead::new(read, FrameCodec),
            _msg: PhantomData,
        },
        writer,
    )
}

async fn write_frames(write: OwnedWriteHalf, mut pending: mpsc::Receiver<Outgoing>) {
    let mut frames = FramedWrite::new(write, FrameCodec);
    let mut batch = Vec::with_capacity(64);
    let mut waiting = Vec::new();
    // `recv_many` hands over everything already queued, so one flush covers a whole burst.
    while pending.recv_many(&mut batch, 256).await > 0 {
        for item in batch.drain(..) {
            match item {
                Outgoing::Frame(frame) => {
                    if frames.feed(frame).await.is_err() {
                        return;
                    }
                }
                Outgoing::Flush(done) => waiting.push(done),
            }
        }
        if SinkExt::<Bytes>::flush(&mut frames).await.is_err() {
            return;
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::frame::PROTOCOL_VERSION;
    use crate::ipc::message::{ToMaster, ToWorker};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn messages_cross_a_real_socketpair_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (tx, _rx_a, _) = channel::<ToMaster, ToWorker>(a);
        let (_tx_b, mut rx, _) = channel::<ToWorker, ToMaster>(b);
        for _ in 0..3 {
            tx.send(&ToMaster::Listening).await.unwrap();
        }
        tx.send(&ToMaster::Warming {
            addr: "127.0.0.1:9".parse().unwrap(),
        })
        .await
        .unwrap();
        for _ in 0..3 {
            assert!(matches!(
                rx.recv().await.unwrap(),
                Some(ToMaster::Listening)
            ));
        }
        assert!(matches!(
            rx.recv().await.unwrap(),
            Some(ToMaster::Warming { .. })
        ));
        drop(tx);
        assert!(
            rx.recv().await.unwrap().is_none(),
            "EOF once the sender is gone"
        );
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        let (mut raw, b) = UnixStream::pair().unwrap();
        let (_tx, mut rx, _) = channel::<ToWorker, ToMaster>(b);
        // Wrong protocol version.
        raw.write_all(&[0, 0, 0, 2, 99, 0]).await.unwrap();
        assert!(matches!(rx.recv().await, Err(FrameError::Version(99))));
        // Right version, garbage body (an enum tag that does not exist).
        raw.write_all(&[0, 0, 0, 2, PROTOCOL_VERSION, 200])
            .await
            .unwrap();
        assert!(matches!(rx.recv().await, Err(FrameError::Malformed(_))));
        // A length above the limit.
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(rx.recv().await, Err(FrameError::Io(_))));
    }
}
