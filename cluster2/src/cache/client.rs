//! A process's one connection to the cache manager, shared by every `Cache` handle.
//!
//! A background task keeps the connection: it reconnects with back-off when the manager goes
//! away, re-declares every namespace and watch this process uses, and only then lets requests
//! through again, so watches keep working across manager restarts and never fire twice.
//! Requests wait for a connection up to their own timeout. Reads (`get`, `peek`, `keys`) are
//! retried on the new connection when the old one breaks mid-request; writes fail with a clear
//! error instead, since they may or may not have been applied.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::outgoing::Outgoing;
use super::protocol::{Message, NsOptions, Op, Reply, Request, max_frame};
use crate::error::{Error, ErrorKind, Result};
use crate::ipc::channel::{decode, encode_frame};
use crate::ipc::quiet::{FrameReader, Writer};

/// A watch callback, with the raw value (`None`: deleted or expired).
pub(crate) type WatchFn = Arc<dyn Fn(&str, Option<&[u8]>) + Send + Sync>;

struct WatchEntry {
    id: u64,
    key: Option<String>,
    callback: WatchFn,
}

struct Pending {
    reply: oneshot::Sender<Reply>,
    /// For a `Get` that may be handed the lock: whom to tell if its caller is gone by then.
    lock_for: Option<(String, String)>,
}

struct Conn {
    out: Arc<Outgoing>,
    pending: Mutex<HashMap<u64, Pending>>,
    closed: CancellationToken,
}

struct Inner {
    socket: PathBuf,
    max_value: usize,
    timeout: Duration,
    conn: watch::Sender<Option<Arc<Conn>>>,
    namespaces: Mutex<HashMap<String, NsOptions>>,
    watches: Mutex<HashMap<String, Vec<WatchEntry>>>,
    next_id: AtomicU64,
    last_error: Mutex<Option<String>>,
    stop: CancellationToken,
}

/// The connection to the manager; cheap to clone.
#[derive(Clone)]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.inner.socket)
            .finish_non_exhaustive()
    }
}

/// Why a request did not complete.
enum CallError {
    /// The connection broke; the request may be retried if it is a read.
    Lost,
    Timeout,
    Unreachable(String),
    /// The request is longer than the manager accepts (a very long key).
    TooLarge(usize),
}

impl Client {
    /// A client of the manager at `socket`; connects in the background.
    pub(crate) fn new(socket: PathBuf, max_value: usize, timeout: Duration) -> Self {
        let (conn, _) = watch::channel(None);
        let client = Self {
            inner: Arc::new(Inner {
                socket,
                max_value,
                timeout,
                conn,
                namespaces: Mutex::new(HashMap::new()),
                watches: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                last_error: Mutex::new(None),
                stop: CancellationToken::new(),
            }),
        };
        tokio::spawn(client.clone().keep_connected());
        client
    }

    pub(crate) fn max_value(&self) -> usize {
        self.inner.max_value
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    async fn keep_connected(self) {
        let mut delay = Duration::from_millis(5);
        loop {
            if self.inner.stop.is_cancelled() {
                return;
            }
            match UnixStream::connect(&self.inner.socket)
                .await
                .and_then(|stream| self.start(stream))
            {
                Ok(conn) => {
                    delay = Duration::from_millis(5);
                    if self.redeclare(&conn).await {
                        *self.inner.last_error.lock().expect("cache client lock") = None;
                        self.inner.conn.send_replace(Some(conn.clone()));
                        tokio::select! {
                            () = conn.closed.cancelled() => {}
                            () = self.inner.stop.cancelled() => return,
                        }
                        self.inner.conn.send_replace(None);
                        if super::is_stopping() {
                            tracing::debug!("lost the connection to the cache manager");
                        } else {
                            tracing::warn!(
                                "lost the connection to the cache manager; reconnecting"
                            );
                        }
                    }
                    conn.closed.cancel();
                    // Dropping the pending senders fails every request in flight on it.
                    conn.pending.lock().expect("cache client lock").clear();
                }
                Err(e) => {
                    *self.inner.last_error.lock().expect("cache client lock") = Some(e.to_string());
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.inner.stop.cancelled() => return,
                    }
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Namespaces and watches of this process, declared again on a new connection.
    async fn redeclare(&self, conn: &Arc<Conn>) -> bool {
        let namespaces: Vec<(String, NsOptions)> = self
            .inner
            .namespaces
            .lock()
            .expect("cache client lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let watched: Vec<String> = self
            .inner
            .watches
            .lock()
            .expect("cache client lock")
            .iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(ns, _)| ns.clone())
            .collect();
        let ops = namespaces
            .into_iter()
            .map(|(ns, options)| Op::Use { ns, options })
            .chain(watched.into_iter().map(|ns| Op::Watch { ns }));
        for op in ops {
            let reply = tokio::time::timeout(self.inner.timeout, self.send_on(conn, op, None));
            if !matches!(reply.await, Ok(Ok(_))) {
                return false;
            }
        }
        true
    }

    fn start(&self, stream: UnixStream) -> std::io::Result<Arc<Conn>> {
        // Read through a socket watched for reading only; write through a duplicate of it.
        let stream = stream.into_std()?;
        let mut frames = FrameReader::new(stream.try_clone()?, self.max_frame())?;
        let closed = CancellationToken::new();
        let conn = Arc::new(Conn {
            out: Outgoing::new(Writer::new(stream), closed.clone()),
            pending: Mutex::new(HashMap::new()),
            closed,
        });
        let reader_conn = conn.clone();
        let client = self.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    frame = frames.next() => frame,
                    () = reader_conn.closed.cancelled() => break,
                };
                let Some(Ok(frame)) = frame else { break };
                match decode::<Message>(frame) {
                    Ok(Message::Reply { id, reply }) => client.deliver(&reader_conn, id, reply),
                    Ok(Message::Changed { ns, key, value }) => {
                        client.changed(&ns, &key, value.as_deref().map(|v| &v[..]));
                    }
                    Err(e) => {
                        tracing::error!("bad frame from the cache manager: {e}");
                        break;
                    }
                }
            }
            // Whatever was in flight on this connection fails now, not at its timeout.
            reader_conn.closed.cancel();
            reader_conn
                .pending
                .lock()
                .expect("cache client lock")
                .clear();
        });
        Ok(conn)
    }

    fn deliver(&self, conn: &Arc<Conn>, id: u64, reply: Reply) {
        let pending = conn.pending.lock().expect("cache client lock").remove(&id);
        let Some(pending) = pending else { return };
        if let Err(reply) = pending.reply.send(reply) {
            // The caller gave up (timeout, cancelled) before the manager handed it the lock:
            // pass the lock on at once rather than holding it for the lease.
            if let (Reply::Load { token }, Some((ns, key))) = (reply, pending.lock_for) {
                let _ = self.fire(conn, Op::Release { ns, key, token });
            }
        }
    }

    fn changed(&self, ns: &str, key: &str, value: Option<&[u8]>) {
        let callbacks: Vec<WatchFn> = {
            let watches = self.inner.watches.lock().expect("cache client lock");
            let Some(list) = watches.get(ns) else { return };
            // Watchers of the exact key first, then those of every key.
            list.iter()
                .filter(|w| w.key.as_deref() == Some(key))
                .chain(list.iter().filter(|w| w.key.is_none()))
                .map(|w| w.callback.clone())
                .collect()
        };
        for callback in callbacks {
            callback(key, value);
        }
    }

    /// Sends without waiting for the answer.
    fn fire(&self, conn: &Arc<Conn>, op: Op) -> bool {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&Request { id, op });
        frame.len() <= self.max_frame() && conn.out.send(frame).is_ok()
    }

    /// The longest frame the manager accepts.
    fn max_frame(&self) -> usize {
        max_frame(self.inner.max_value)
    }

    async fn send_on(
        &self,
        conn: &Arc<Conn>,
        op: Op,
        lock_for: Option<(String, String)>,
    ) -> std::result::Result<Reply, CallError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&Request { id, op });
        if frame.len() > self.max_frame() {
            return Err(CallError::TooLarge(frame.len()));
        }
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().expect("cache client lock").insert(
            id,
            Pending {
                reply: tx,
                lock_for,
            },
        );
        if conn.out.send(frame).is_err() || conn.closed.is_cancelled() {
            conn.pending.lock().expect("cache client lock").remove(&id);
            return Err(CallError::Lost);
        }
        // When the connection breaks, its reader empties `pending` (after `closed` is
        // cancelled, so a request added after that was caught just above): the reply sender
        // is dropped and this fails at once.
        rx.await.map_err(|_| CallError::Lost)
    }

    async fn connected(&self) -> Arc<Conn> {
        let mut rx = self.inner.conn.subscribe();
        loop {
            if let Some(conn) = rx.borrow_and_update().clone() {
                if !conn.closed.is_cancelled() {
                    return conn;
                }
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sends `op` and waits for its reply, within `timeout`. Reads are retried on a new
    /// connection if the old one breaks.
    pub(crate) async fn call(
        &self,
        op: Op,
        timeout: Duration,
        what: &(impl std::fmt::Display + ?Sized),
    ) -> Result<Reply> {
        let retry = matches!(
            op,
            Op::Get { .. } | Op::Keys { .. } | Op::Stats | Op::Use { .. } | Op::Watch { .. }
        );
        let lock_for = match &op {
            Op::Get {
                ns,
                key,
                lease_ms: Some(_),
            } => Some((ns.clone(), key.clone())),
            _ => None,
        };
        let attempt = async {
            // Writes are sent once, so their value is moved, not copied.
            let mut once = Some(op);
            loop {
                let conn = self.connected().await;
                let this = match (&once, retry) {
                    (Some(op), true) => op.clone(),
                    _ => match once.take() {
                        Some(op) => op,
                        None => return Err(CallError::Lost),
                    },
                };
                match self.send_on(&conn, this, lock_for.clone()).await {
                    Ok(reply) => return Ok(reply),
                    Err(CallError::Lost) if retry => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        let outcome = match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let connected = self.inner.conn.borrow().is_some();
                if connected {
                    Err(CallError::Timeout)
                } else {
                    let last = self
                        .inner
                        .last_error
                        .lock()
                        .expect("cache client lock")
                        .clone();
                    Err(CallError::Unreachable(
                        last.unwrap_or_else(|| "reconnecting".to_owned()),
                    ))
                }
            }
        };
        match outcome {
            Ok(Reply::Error(e)) => Err(Error::new(ErrorKind::Cache, format!("{what}: {e}"))),
            Ok(reply) => Ok(reply),
            Err(CallError::Timeout) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{what}: no answer from the cache manager within {}",
                    humantime::format_duration(timeout)
                ),
            )),
            Err(CallError::Unreachable(why)) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what}: the cache manager at {} is unreachable ({why})",
                    self.inner.socket.display()
                ),
            )),
            Err(CallError::TooLarge(len)) => Err(Error::new(
                ErrorKind::Cache,
                format!(
                    "{what}: the request is {len} bytes, more than the cache manager accepts \
                     ({} bytes: cache.max_value plus 64 KiB for the key)",
                    self.max_frame()
                ),
            )),
            Err(CallError::Lost) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what}: the connection to the cache manager broke; the change may or may \
                     not have been applied"
                ),
            )),
        }
    }

    /// Remembers a namespace so that it is declared again after a reconnect.
    pub(crate) fn remember(&self, ns: &str, options: NsOptions) {
        self.inner
            .namespaces
            .lock()
            .expect("cache client lock")
            .insert(ns.to_owned(), options);
    }

    /// Adds a local watch; subscribes this connection to the namespace on its first watch.
    pub(crate) fn watch(&self, ns: &str, key: Option<String>, callback: WatchFn) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut watches = self.inner.watches.lock().expect("cache client lock");
            let list = watches.entry(ns.to_owned()).or_default();
            list.push(WatchEntry { id, key, callback });
            list.len() == 1
        };
        if first {
            if let Some(conn) = self.inner.conn.borrow().clone() {
                self.fire(&conn, Op::Watch { ns: ns.to_owned() });
            }
            // Otherwise the reconnect declares it.
        }
        id
    }

    /// Removes a local watch; `false` if it was not there.
    pub(crate) fn unwatch(&self, ns: &str, id: u64) -> bool {
        let (removed, now_empty) = {
            let mut watches = self.inner.watches.lock().expect("cache client lock");
            let Some(list) = watches.get_mut(ns) else {
                return false;
            };
            let before = list.len();
            list.retain(|w| w.id != id);
            (list.len() != before, list.is_empty())
        };
        if removed && now_empty {
            if let Some(conn) = self.inner.conn.borrow().clone() {
                self.fire(&conn, Op::Unwatch { ns: ns.to_owned() });
            }
        }
        removed
    }
}
