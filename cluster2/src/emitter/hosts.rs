//! Events to every host: [`Target::AllHosts`](super::Target::AllHosts) over Redis pub/sub,
//! when `emitter.backend` is a Redis URL.
//!
//! Every process of every host of the cluster (the same `cluster_name` on the same server)
//! subscribes to one channel, `<cluster_name>:events`, before it serves (the master before
//! it starts its workers). An event for every host is queued here, and one task publishes the
//! queue in order, so that events from one sender arrive everywhere in the order they were
//! emitted; each process delivers what arrives on its subscription task, in order, to its own
//! listeners, the sender included. The payload is the emitter's own (JSON), carried with the
//! event's name and the sender's pid in a versioned frame.
//!
//! Like pub/sub itself, this is fire-and-forget: an event published while a process's
//! subscription is down (Redis restarting) does not reach that process, and an event that
//! cannot be published (Redis unreachable) is logged and dropped. `emit` never waits: a full
//! queue is an `Overflow` error, as for local targets.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::backend::Redis;
use crate::error::{Error, ErrorKind, Result};
use crate::ipc::message::WireEvent;

/// The first byte of every message on the channel: the frame's version.
const VERSION: u8 = 1;

/// The largest event, as between processes of one host.
const MAX_EVENT: usize = crate::ipc::frame::MAX_FRAME;

/// How long a process waits, at start, for its subscription to be confirmed before it goes
/// on without (the subscription is then made as soon as Redis answers).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

struct Hosts {
    queue: mpsc::Sender<Vec<u8>>,
    shown: String,
}

static HOSTS: OnceLock<Hosts> = OnceLock::new();

/// Subscribes this process to the events of cluster `cluster` on the Redis server at `url`
/// and starts its publisher; returns once the subscription is confirmed (or after a short
/// wait, if Redis does not answer).
pub(crate) async fn connect(url: &str, cluster: &str) -> Result<()> {
    if HOSTS.get().is_some() {
        return Ok(());
    }
    let redis = Redis::shared(url)?;
    let channel = format!("{cluster}:events");
    let (listener, confirmed) = redis.subscriber().subscribe(
        channel.clone().into_bytes(),
        Arc::new(|message: &[u8]| match decode(message) {
            Some(event) => super::deliver(event),
            None => tracing::warn!("a message of another shape on the events channel; ignored"),
        }),
    );
    // The subscription lasts as long as the process: nothing unsubscribes it.
    drop(listener);
    let (queue, rx) = mpsc::channel(crate::ipc::channel::QUEUE);
    tokio::spawn(publish(redis.clone(), channel, rx));
    let _ = HOSTS.set(Hosts {
        queue,
        shown: redis.shown().to_owned(),
    });
    if tokio::time::timeout(SUBSCRIBE_WAIT, confirmed)
        .await
        .is_err()
    {
        tracing::warn!(
            "events from other hosts: no answer yet from Redis at {}; subscribing as soon as \
             it answers",
            redis.shown()
        );
    }
    Ok(())
}

/// Queues `event` for every process of every host; an error when there is no backend, the
/// event is too large, or the queue is full.
pub(crate) fn send(event: &WireEvent) -> Result<()> {
    let Some(hosts) = HOSTS.get() else {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "event `{}` for every host: set emitter.backend to a Redis URL that every host \
                 shares (it is `local`, or this process is not in a cluster)",
                event.name
            ),
        ));
    };
    let frame = encode(event);
    if frame.len() > MAX_EVENT {
        return Err(Error::new(
            ErrorKind::Encode,
            format!(
                "event `{}` is {} bytes, more than the {MAX_EVENT} an event may have",
                event.name,
                frame.len()
            ),
        ));
    }
    hosts.queue.try_send(frame).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => Error::new(
            ErrorKind::Overflow,
            format!(
                "event `{}` dropped for every host: the queue to Redis at {} is full ({} \
                 events waiting)",
                event.name,
                hosts.shown,
                crate::ipc::channel::QUEUE
            ),
        ),
        mpsc::error::TrySendError::Closed(_) => Error::new(
            ErrorKind::Unavailable,
            format!(
                "event `{}` for every host: this process is stopping",
                event.name
            ),
        ),
    })
}

/// Publishes the queue in order. A publish that fails is logged and dropped: the next one
/// tries again (the connection comes back by itself).
async fn publish(redis: Redis, channel: String, mut queue: mpsc::Receiver<Vec<u8>>) {
    let mut con = redis.commands();
    while let Some(frame) = queue.recv().await {
        let published = tokio::time::timeout(
            Duration::from_secs(5),
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&frame)
                .query_async::<i64>(&mut con),
        )
        .await;
        let name = || decode(&frame).map(|e| e.name).unwrap_or_default();
        match published {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let e = redis.error("emitter", &format!("event `{}` for every host", name()), &e);
                tracing::warn!("{e}; the event is lost");
            }
            Err(_) => tracing::warn!(
                "event `{}` for every host: no answer from Redis at {} within 5s; the event \
                 may be lost",
                name(),
                redis.shown()
            ),
        }
    }
}

fn encode(event: &WireEvent) -> Vec<u8> {
    let mut frame = vec![VERSION];
    frame.extend(postcard::to_stdvec(event).expect("an event encodes"));
    frame
}

fn decode(frame: &[u8]) -> Option<WireEvent> {
    let (&version, rest) = frame.split_first()?;
    if version != VERSION {
        return None;
    }
    postcard::from_bytes(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_its_frame_and_other_frames_are_refused() {
        let event = WireEvent {
            name: "reload".to_owned(),
            from: 4242,
            payload: b"{\"all\":true}".to_vec(),
        };
        let back = decode(&encode(&event)).unwrap();
        assert_eq!(
            (back.name, back.from, back.payload),
            (event.name, event.from, event.payload)
        );
        assert!(decode(b"").is_none());
        assert!(decode(b"\x02whatever").is_none());
    }
}
