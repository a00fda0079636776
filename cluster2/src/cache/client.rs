//! A process's one connection to the cache manager, shared by every `Cache` handle.
//!
//! A background task keeps the connection: it reconnects with back-off when the manager goes
//! away (or refuses the connection, serving `cache.max_connections` already), re-declares
//! every namespace and watch this process uses, and only then lets requests through again, so
//! watches keep working across manager restarts and never fire twice.
//! Requests wait for a connection up to their own timeout. Reads (`get`, `peek`, `keys`) are
//! retried on the new connection when the old one breaks mid-request; writes fail with a clear
//! error instead, since they may or may not have been applied.
//!
//! Timeouts: a request in flight does not arm a timer of its own. Each connection has one
//! deadline keeper, a task that sleeps until the earliest deadline of the requests in flight
//! and fails those whose time has come; a request only wakes it when its deadline is earlier
//! than the keeper's next wake-up, which with a common timeout is almost never. A timer per
//! request was a tenth of the client's work per operation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protocol::{Message, NsBounds, NsOptions, Op, Reply, RequestRef, max_frame};
use super::request_writer::RequestWriter;
use crate::error::{Error, ErrorKind, Result};
use crate::ipc::frame::{decode, encode_frame};
use crate::ipc::frame_socket::{FrameReader, Writer};

/// A watch callback, with the raw value (`None`: deleted or expired).
pub(crate) type WatchFn = Arc<dyn Fn(&str, Option<&[u8]>) + Send + Sync>;

/// One watch of a namespace: of one key, or of every key (`None`). Kept alike by the local
/// client and the Redis backend.
pub(crate) struct WatchEntry {
    pub(crate) id: u64,
    pub(crate) key: Option<String>,
    pub(crate) callback: WatchFn,
}

/// The callbacks a change of `key` calls, in order: the watchers of that key first, then those
/// of every key. Taken out of the lock before any is called.
pub(crate) fn callbacks_for(list: &[WatchEntry], key: &str) -> Vec<WatchFn> {
    list.iter()
        .filter(|w| w.key.as_deref() == Some(key))
        .chain(list.iter().filter(|w| w.key.is_none()))
        .map(|w| w.callback.clone())
        .collect()
}

struct Pending {
    reply: oneshot::Sender<Reply>,
    deadline: Instant,
}

/// Request ids are sequential: a multiplicative hash spreads them well, and SipHash would
/// only cost.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Requests in flight on a connection, and when the deadline keeper wakes next.
#[derive(Default)]
struct InFlight {
    requests: HashMap<u64, Pending, BuildHasherDefault<IdHasher>>,
    /// `None`: the keeper sleeps until a request wakes it.
    keeper_wakes_at: Option<Instant>,
}

struct Conn {
    out: Arc<RequestWriter>,
    in_flight: Mutex<InFlight>,
    /// Wakes the deadline keeper for a deadline earlier than it planned for.
    keeper: Notify,
    closed: CancellationToken,
    /// The manager refused this connection (it said why): reconnect after a back-off.
    refused: AtomicBool,
}

impl Conn {
    /// Fails every request in flight: dropping its reply sender wakes its caller.
    fn fail_all(&self) {
        self.in_flight
            .lock()
            .expect("cache client lock")
            .requests
            .clear();
    }

    /// Fails the requests whose deadline has passed, until the connection closes.
    async fn keep_deadlines(self: Arc<Self>) {
        loop {
            let wake_at = {
                let mut in_flight = self.in_flight.lock().expect("cache client lock");
                let now = Instant::now();
                // A dropped reply sender tells the caller; it sees its deadline has passed.
                let mut next: Option<Instant> = None;
                in_flight.requests.retain(|_, p| {
                    let live = p.deadline > now;
                    if live {
                        next = Some(next.map_or(p.deadline, |n| n.min(p.deadline)));
                    }
                    live
                });
                in_flight.keeper_wakes_at = next;
                next
            };
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.closed.cancelled() => return,
                () = self.keeper.notified() => {}
                () = sleep => {}
            }
        }
    }
}

struct Inner {
    socket: PathBuf,
    max_value: usize,
    timeout: Duration,
    conn: watch::Sender<Option<Arc<Conn>>>,
    namespaces: Mutex<HashMap<String, (NsOptions, NsBounds)>>,
    watches: Mutex<HashMap<String, Vec<WatchEntry>>>,
    next_id: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Whether the manager's last refusal was logged: once per run of refusals.
    refusal_logged: AtomicBool,
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
                refusal_logged: AtomicBool::new(false),
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
                    if self.redeclare(&conn).await {
                        *self.inner.last_error.lock().expect("cache client lock") = None;
                        self.inner.conn.send_replace(Some(conn.clone()));
                        tokio::select! {
                            () = conn.closed.cancelled() => {}
                            () = self.inner.stop.cancelled() => {
                                // Ends the connection's reader, flusher and deadline keeper.
                                conn.closed.cancel();
                                return;
                            }
                        }
                        self.inner.conn.send_replace(None);
                        if conn.refused.load(Ordering::Relaxed) {
                            // Told once already, in `refused`.
                        } else if super::global::is_stopping() {
                            tracing::debug!("lost the connection to the cache manager");
                        } else {
                            tracing::warn!(
                                "lost the connection to the cache manager; reconnecting"
                            );
                        }
                    }
                    conn.closed.cancel();
                    conn.fail_all();
                    if conn.refused.load(Ordering::Relaxed) {
                        // Full: trying again at once would only add to its load.
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = self.inner.stop.cancelled() => return,
                        }
                        delay = (delay * 2).min(Duration::from_millis(500));
                    } else {
                        delay = Duration::from_millis(5);
                        self.inner.refusal_logged.store(false, Ordering::Relaxed);
                    }
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
        let namespaces: Vec<(String, (NsOptions, NsBounds))> = self
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
            .map(|(ns, (options, bounds))| Op::Use {
                ns: ns.into(),
                options,
                bounds,
            })
            .chain(watched.into_iter().map(|ns| Op::Watch { ns: ns.into() }));
        for op in ops {
            let deadline = Instant::now() + self.inner.timeout;
            if self.send_on(conn, &op, deadline).await.is_err() {
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
            out: RequestWriter::new(Writer::new(stream), closed.clone()),
            in_flight: Mutex::new(InFlight::default()),
            keeper: Notify::new(),
            closed,
            refused: AtomicBool::new(false),
        });
        tokio::spawn(conn.clone().keep_deadlines());
        let reader_conn = conn.clone();
        let client = self.clone();
        tokio::spawn(async move {
            // Made once: a new one per frame would register and unregister a waiter each time.
            let closed = reader_conn.closed.clone();
            let mut closed = std::pin::pin!(closed.cancelled());
            loop {
                let frame = tokio::select! {
                    biased;
                    frame = frames.next() => frame,
                    () = &mut closed => break,
                };
                let Some(Ok(frame)) = frame else { break };
                match decode::<Message>(frame) {
                    Ok(Message::Reply { id, reply }) => client.deliver(&reader_conn, id, reply),
                    Ok(Message::Changed { ns, key, value }) => {
                        client.changed(&ns, &key, value.as_deref());
                    }
                    Ok(Message::Refused(why)) => {
                        client.refused(&reader_conn, why);
                        break;
                    }
                    Err(e) => {
                        tracing::error!("bad frame from the cache manager: {e}");
                        break;
                    }
                }
            }
            // Whatever was in flight on this connection fails now, not at its timeout.
            reader_conn.closed.cancel();
            reader_conn.fail_all();
        });
        Ok(conn)
    }

    fn deliver(&self, conn: &Arc<Conn>, id: u64, reply: Reply) {
        let pending = conn
            .in_flight
            .lock()
            .expect("cache client lock")
            .requests
            .remove(&id);
        let unheard = match pending {
            Some(pending) => pending.reply.send(reply).err(),
            None => Some(reply),
        };
        // The caller gave up (timeout, cancelled) before the manager handed it the lock: pass
        // the lock on at once rather than holding it for the lease.
        if let Some(Reply::Load { ns, key, token }) = unheard {
            let _ = self.fire(
                conn,
                &Op::Release {
                    ns: ns.into(),
                    key: key.into(),
                    token,
                },
            );
        }
    }

    /// The manager will not serve this connection: why becomes the error of calls that find
    /// no connection, and is logged once until a connection is served again.
    fn refused(&self, conn: &Conn, why: String) {
        conn.refused.store(true, Ordering::Relaxed);
        if !self.inner.refusal_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!("the cache manager refused the connection: {why}; retrying");
        }
        *self.inner.last_error.lock().expect("cache client lock") =
            Some(format!("it refused the connection: {why}"));
    }

    fn changed(&self, ns: &str, key: &str, value: Option<&[u8]>) {
        let callbacks: Vec<WatchFn> = {
            let watches = self.inner.watches.lock().expect("cache client lock");
            let Some(list) = watches.get(ns) else { return };
            callbacks_for(list, key)
        };
        for callback in callbacks {
            callback(key, value);
        }
    }

    /// Sends without waiting for the answer.
    fn fire(&self, conn: &Arc<Conn>, op: &Op<'_>) -> bool {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&RequestRef { id, op });
        frame.len() <= self.max_frame() && conn.out.send(frame).is_ok()
    }

    /// The longest frame the manager accepts.
    fn max_frame(&self) -> usize {
        max_frame(self.inner.max_value)
    }

    async fn send_on(
        &self,
        conn: &Arc<Conn>,
        op: &Op<'_>,
        deadline: Instant,
    ) -> std::result::Result<Reply, CallError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(&RequestRef { id, op });
        if frame.len() > self.max_frame() {
            return Err(CallError::TooLarge(frame.len()));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut in_flight = conn.in_flight.lock().expect("cache client lock");
            in_flight.requests.insert(
                id,
                Pending {
                    reply: tx,
                    deadline,
                },
            );
            if in_flight.keeper_wakes_at.is_none_or(|at| deadline < at) {
                in_flight.keeper_wakes_at = Some(deadline);
                conn.keeper.notify_one();
            }
        }
        let forget = || {
            conn.in_flight
                .lock()
                .expect("cache client lock")
                .requests
                .remove(&id);
        };
        if conn.out.send(frame).is_err() || conn.closed.is_cancelled() {
            forget();
            return Err(CallError::Lost);
        }
        // When the connection breaks, its reader empties `requests` (after `closed` is
        // cancelled, so a request added after that was caught just above); when the deadline
        // passes, the keeper removes the request. Either way the reply sender is dropped and
        // this wakes at once.
        match rx.await {
            Ok(reply) => Ok(reply),
            Err(_) if Instant::now() >= deadline => Err(CallError::Timeout),
            Err(_) => Err(CallError::Lost),
        }
    }

    /// The live connection, waiting for one until `deadline`.
    async fn connected(&self, deadline: Instant) -> Option<Arc<Conn>> {
        let live = |c: &Option<Arc<Conn>>| c.clone().filter(|c| !c.closed.is_cancelled());
        if let Some(conn) = live(&self.inner.conn.borrow()) {
            return Some(conn);
        }
        let mut rx = self.inner.conn.subscribe();
        let wait = async {
            loop {
                if let Some(conn) = live(&rx.borrow_and_update()) {
                    return conn;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout_at(deadline, wait).await.ok()
    }

    /// Sends `op` and waits for its reply, within `timeout`. Reads are retried on a new
    /// connection if the old one breaks.
    pub(crate) async fn call(
        &self,
        op: Op<'_>,
        timeout: Duration,
        what: &(impl std::fmt::Display + ?Sized),
    ) -> Result<Reply> {
        let deadline = Instant::now() + timeout;
        let retry = matches!(
            op,
            Op::Get { .. } | Op::Keys { .. } | Op::Stats | Op::Use { .. } | Op::Watch { .. }
        );
        let outcome = loop {
            let Some(conn) = self.connected(deadline).await else {
                break Err(self.no_connection());
            };
            match self.send_on(&conn, &op, deadline).await {
                Err(CallError::Lost) if retry => continue,
                outcome => break outcome,
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

    /// Why no connection came within a request's time: still connecting, or reconnecting.
    fn no_connection(&self) -> CallError {
        if self.inner.conn.borrow().is_some() {
            return CallError::Timeout;
        }
        let last = self
            .inner
            .last_error
            .lock()
            .expect("cache client lock")
            .clone();
        CallError::Unreachable(last.unwrap_or_else(|| "reconnecting".to_owned()))
    }

    /// Remembers a namespace so that it is declared again after a reconnect.
    pub(crate) fn remember(&self, ns: &str, options: NsOptions, bounds: NsBounds) {
        self.inner
            .namespaces
            .lock()
            .expect("cache client lock")
            .insert(ns.to_owned(), (options, bounds));
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
                self.fire(&conn, &Op::Watch { ns: ns.into() });
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
                self.fire(&conn, &Op::Unwatch { ns: ns.into() });
            }
        }
        removed
    }
}
