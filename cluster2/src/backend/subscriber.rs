//! This process's one subscription connection to a Redis server: the channels its users
//! listen on (cache watches, single-flight waiters, cross-host events), each subscribed once
//! however many listen, and kept across reconnects.
//!
//! One task owns the connection and does everything on it in order: subscribe and unsubscribe
//! as listeners come and go, hand each message to the channel's listeners, and ping the server
//! now and then, so that a connection that died silently is noticed. When the connection
//! breaks it reconnects with back-off and subscribes every channel that still has a listener,
//! one at a time, before it tells anyone it is back: messages published while it was away are
//! lost (pub/sub keeps nothing), which is why the cache's waiters also poll, but no listener is
//! ever called twice for one message, since each channel is subscribed once per connection.
//!
//! Listeners run on this task: keep them short.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

/// A listener: called with each message's payload.
pub(crate) type Listener = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// How often an idle connection is checked, and how long any one operation on it may take.
const PING_EVERY: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// Identifies a listener, for [`Subscriber::unsubscribe`].
#[derive(Debug)]
pub(crate) struct ListenerId {
    channel: Vec<u8>,
    id: u64,
}

/// The subscription connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Subscriber {
    inner: Arc<Inner>,
}

struct Inner {
    listeners: Mutex<Listeners>,
    commands: mpsc::UnboundedSender<Command>,
    connected: watch::Sender<bool>,
    /// Called after each reconnect (not after the first connect).
    reconnected: Mutex<Vec<Arc<dyn Fn() + Send + Sync>>>,
}

#[derive(Default)]
struct Listeners {
    by_channel: HashMap<Vec<u8>, Vec<(u64, Listener)>>,
    next_id: u64,
}

enum Command {
    /// Subscribe, then say so.
    Subscribe(Vec<u8>, oneshot::Sender<()>),
    /// Unsubscribe, unless someone listens again by then.
    Unsubscribe(Vec<u8>),
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("connected", &*self.inner.connected.borrow())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Starts the connection's task (in the current tokio runtime).
    pub(crate) fn start(client: redis::Client, shown: String, connect_timeout: Duration) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (connected, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            listeners: Mutex::new(Listeners::default()),
            commands,
            connected,
            reconnected: Mutex::new(Vec::new()),
        });
        // The task holds only a weak reference: it ends once every user is gone.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(run(weak, client, shown, connect_timeout, rx));
        Self { inner }
    }

    /// Calls `listener` with every message on `channel`. The receiver completes once the
    /// server confirmed the subscription, or is dropped if the connection is down (the
    /// subscription is then made when it is back).
    pub(crate) fn subscribe(
        &self,
        channel: Vec<u8>,
        listener: Listener,
    ) -> (ListenerId, oneshot::Receiver<()>) {
        let (done, confirmed) = oneshot::channel();
        let id = {
            let mut listeners = self.inner.listeners.lock().expect("subscriber lock");
            let id = listeners.next_id;
            listeners.next_id += 1;
            listeners
                .by_channel
                .entry(channel.clone())
                .or_default()
                .push((id, listener));
            id
        };
        // Subscribing a channel twice on one connection is harmless; doing it for every
        // listener keeps the confirmation simple.
        let _ = self
            .inner
            .commands
            .send(Command::Subscribe(channel.clone(), done));
        (ListenerId { channel, id }, confirmed)
    }

    /// Removes a listener; the channel is unsubscribed when it was the last.
    pub(crate) fn unsubscribe(&self, listener: ListenerId) {
        let last = {
            let mut listeners = self.inner.listeners.lock().expect("subscriber lock");
            let Some(list) = listeners.by_channel.get_mut(&listener.channel) else {
                return;
            };
            list.retain(|(id, _)| *id != listener.id);
            let last = list.is_empty();
            if last {
                listeners.by_channel.remove(&listener.channel);
            }
            last
        };
        if last {
            let _ = self
                .inner
                .commands
                .send(Command::Unsubscribe(listener.channel));
        }
    }

    /// Calls `hook` each time the connection is back after it broke.
    pub(crate) fn on_reconnect(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.inner
            .reconnected
            .lock()
            .expect("subscriber lock")
            .push(hook);
    }

    /// Whether the connection is up now.
    pub(crate) fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }
}

/// The connection's life: connect, subscribe what is wanted, serve, and again when it breaks.
async fn run(
    inner: std::sync::Weak<Inner>,
    client: redis::Client,
    shown: String,
    connect_timeout: Duration,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut delay = Duration::from_millis(10);
    let mut first = true;
    loop {
        let connected = tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connection timed out".to_owned(),
                };
                tracing::debug!("cannot subscribe at Redis {shown}: {why}; retrying");
                // Meanwhile, commands are answered by the reconnect: confirmations are dropped
                // (the waiters poll), and every channel with a listener is subscribed then.
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        command = commands.recv() => if command.is_none() { return },
                    }
                }
                delay = (delay * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let wanted: Vec<Vec<u8>> = {
            let Some(inner) = inner.upgrade() else { return };
            let listeners = inner.listeners.lock().expect("subscriber lock");
            listeners.by_channel.keys().cloned().collect()
        };
        // One channel per command: redis-rs matches one confirmation to each request.
        let mut ok = true;
        for channel in wanted {
            if !matches!(
                tokio::time::timeout(OPERATION_TIMEOUT, sink.subscribe(&channel)).await,
                Ok(Ok(()))
            ) {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        delay = Duration::from_millis(10);
        {
            let Some(inner) = inner.upgrade() else { return };
            inner.connected.send_replace(true);
            if !first {
                tracing::info!("subscriptions at Redis {shown} are back");
                let hooks = inner.reconnected.lock().expect("subscriber lock").clone();
                for hook in hooks {
                    hook();
                }
            }
        }
        first = false;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        let why = loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    match command {
                        Command::Subscribe(channel, done) => {
                            match tokio::time::timeout(OPERATION_TIMEOUT, sink.subscribe(&channel)).await {
                                Ok(Ok(())) => { let _ = done.send(()); }
                                Ok(Err(e)) => break e.to_string(),
                                Err(_) => break "no answer to SUBSCRIBE".to_owned(),
                            }
                        }
                        Command::Unsubscribe(channel) => {
                            let Some(inner) = inner.upgrade() else { return };
                            let listened = inner
                                .listeners
                                .lock()
                                .expect("subscriber lock")
                                .by_channel
                                .contains_key(&channel);
                            if !listened {
                                match tokio::time::timeout(OPERATION_TIMEOUT, sink.unsubscribe(&channel)).await {
                                    Ok(Ok(())) => {}
                                    Ok(Err(e)) => break e.to_string(),
                                    Err(_) => break "no answer to UNSUBSCRIBE".to_owned(),
                                }
                            }
                        }
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { break "the connection closed".to_owned() };
                    let Some(inner) = inner.upgrade() else { return };
                    let listeners: Vec<Listener> = {
                        let listeners = inner.listeners.lock().expect("subscriber lock");
                        match listeners.by_channel.get(message.get_channel_name().as_bytes()) {
                            Some(list) => list.iter().map(|(_, l)| l.clone()).collect(),
                            None => continue,
                        }
                    };
                    // Called without the lock, so that a listener may subscribe or leave.
                    for listener in listeners {
                        listener(message.get_payload_bytes());
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(OPERATION_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break "no answer to PING".to_owned(),
                    }
                }
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        inner.connected.send_replace(false);
        if crate::cache::is_stopping() {
            tracing::debug!("lost the subscriptions at Redis {shown}: {why}");
        } else {
            tracing::warn!("lost the subscriptions at Redis {shown} ({why}); reconnecting");
        }
    }
}
