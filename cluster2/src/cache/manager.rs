//! The cache manager: owns every namespace, serves clients on a Unix socket, and coordinates
//! loads so that a missing key is loaded once across the whole cluster.
//!
//! Single flight: a `Get` with a lease on a missing key either takes the key's lock (the
//! client loads and `Fill`s) or is parked here, at the manager, until the value arrives, so a
//! waiter can never miss it through message ordering. When the loader fails (`Abandon`) every
//! waiter gets the error: a failing load is usually a failing backend, and N processes retrying
//! it one after another would multiply the damage and the wait. When the loader's connection
//! closes (its process died), its lease passes, or it gives up without a verdict (`Release`),
//! the first waiter is handed the lock and loads instead. No waiter waits longer than its own
//! timeout on the client side.
//!
//! State lives behind one mutex, held only for map operations; every connection has its own
//! task, which encodes and writes outside the lock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::busy_poll::BusyPoll;
use super::persist::{self, Log};
use super::protocol::{Message, NsFigures, NsOptions, Op, Reply, Request, max_frame};
use crate::ipc::frame::{append_frame, decode};
use crate::ipc::frame_socket::{FrameReader, Writer};

/// What a manager needs to know.
#[derive(Clone, Debug)]
pub(crate) struct ManagerConfig {
    pub(crate) persist_path: PathBuf,
    pub(crate) max_value: usize,
}

type ConnId = u64;

struct Entry {
    value: Option<Bytes>,
    /// When the value expires; also its place in the namespace's expiry queue.
    expiry: Option<Expiry>,
    lock: Option<Lock>,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e.at <= now)
    }
}

/// An expiry time, made unique by a sequence number so that it can key the expiry queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Expiry {
    at: Instant,
    seq: u64,
}

struct Lock {
    owner: ConnId,
    token: u64,
    lease_until: Instant,
    /// Parked `Get`s: who, their request id, and the lease they asked for.
    waiters: VecDeque<(ConnId, u64, Duration)>,
}

struct Namespace {
    options: NsOptions,
    entries: HashMap<String, Entry>,
    /// The keys of entries that expire, soonest first: the sweep takes what is due without
    /// walking the namespace.
    expiries: BTreeMap<Expiry, String>,
    log: Option<Log>,
    figures: NsFigures,
}

impl Namespace {
    fn new(name: &str, options: NsOptions) -> Self {
        Self {
            options,
            entries: HashMap::new(),
            expiries: BTreeMap::new(),
            log: None,
            figures: NsFigures {
                namespace: name.to_owned(),
                persist: options.persist,
                expire_ms: options.expire_ms,
                ..NsFigures::default()
            },
        }
    }

    fn live_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k.len() + v.len()) as u64))
            .sum()
    }

    /// Gives `key` the value `value`, expiring as the namespace says; returns the key's lock,
    /// which the value ends.
    fn put(&mut self, key: &str, value: Bytes, expiry: Option<Expiry>) -> Option<Lock> {
        if let Some(e) = expiry {
            self.expiries.insert(e, key.to_owned());
        }
        match self.entries.get_mut(key) {
            Some(entry) => {
                if let Some(old) = std::mem::replace(&mut entry.expiry, expiry) {
                    self.expiries.remove(&old);
                }
                entry.value = Some(value);
                entry.lock.take()
            }
            None => {
                self.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: Some(value),
                        expiry,
                        lock: None,
                    },
                );
                None
            }
        }
    }

    /// Takes `key`'s value away (deleted or expired); the entry stays while a load holds its
    /// lock. Returns the value it had.
    fn take(&mut self, key: &str) -> Option<Bytes> {
        let entry = self.entries.get_mut(key)?;
        if let Some(old) = entry.expiry.take() {
            self.expiries.remove(&old);
        }
        let value = entry.value.take();
        if entry.lock.is_none() {
            self.entries.remove(key);
        }
        value
    }

    /// Rewrites the log from the live entries when it has grown well past them.
    fn maybe_compact(&mut self) {
        // Counting the live bytes walks the namespace: only when a log is big enough to matter.
        if !self.log.as_mut().is_some_and(Log::may_want_compaction) {
            return;
        }
        let live = self.live_bytes();
        let now_wall = SystemTime::now();
        let now = Instant::now();
        let Some(log) = &mut self.log else { return };
        if !log.wants_compaction(live) {
            return;
        }
        let entries = self.entries.iter().filter_map(|(k, e)| {
            let v = e.value.as_ref()?;
            let wall = e
                .expiry
                .map(|x| now_wall + x.at.saturating_duration_since(now));
            Some((k.as_str(), v.as_ref(), wall))
        });
        if let Err(e) = log.compact(self.options, entries) {
            tracing::error!(namespace = %self.figures.namespace, "cannot compact the cache log: {e}");
        }
    }
}

struct State {
    namespaces: HashMap<String, Namespace>,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Message>>,
    watchers: HashMap<String, HashSet<ConnId>>,
    /// Every lock held, by the end of its lease (then its token): the sweep and a departing
    /// loader find theirs without walking the entries.
    leases: BTreeMap<(Instant, u64), (String, String)>,
    /// Lock tokens and expiry sequence numbers.
    next_token: u64,
    config: ManagerConfig,
}

/// A running manager.
#[derive(Clone)]
pub(crate) struct Manager {
    state: Arc<Mutex<State>>,
    next_conn: Arc<AtomicU64>,
    /// The standalone manager's wait before sleeping, which watches every client socket.
    busy_poll: Option<Arc<BusyPoll>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

/// How often expired entries and leases are swept and logs synced.
const SWEEP: Duration = Duration::from_millis(100);
const SYNC: Duration = Duration::from_secs(1);

impl Manager {
    /// A manager with every persisted namespace reloaded from `config.persist_path`.
    pub(crate) fn load(config: ManagerConfig) -> std::io::Result<Self> {
        let mut namespaces = HashMap::new();
        let mut seq = 1;
        for (name, options, entries) in persist::load_all(&config.persist_path)? {
            let mut ns = Namespace::new(&name, options);
            let now = (Instant::now(), SystemTime::now());
            for e in entries {
                let expiry = e.expires_at.map(|t| Expiry {
                    at: now.0 + t.duration_since(now.1).unwrap_or(Duration::ZERO),
                    seq,
                });
                seq += 1;
                ns.put(&e.key, Bytes::from(e.value), expiry);
            }
            ns.figures.entries = ns.entries.len() as u64;
            ns.figures.bytes = ns.live_bytes();
            ns.log = Some(Log::open(&config.persist_path, &name, options)?);
            tracing::info!(
                namespace = %name,
                entries = ns.entries.len(),
                "cache namespace reloaded from disk"
            );
            namespaces.insert(name, ns);
        }
        Ok(Self {
            state: Arc::new(Mutex::new(State {
                namespaces,
                conns: HashMap::new(),
                watchers: HashMap::new(),
                leases: BTreeMap::new(),
                next_token: seq,
                config,
            })),
            next_conn: Arc::new(AtomicU64::new(1)),
            busy_poll: None,
        })
    }

    /// Shows every client socket to `poll`, the runtime's wait before sleeping.
    pub(crate) fn with_busy_poll(self, poll: Arc<BusyPoll>) -> Self {
        Self {
            busy_poll: Some(poll),
            ..self
        }
    }

    /// Serves clients on `listener` until `stop`.
    pub(crate) async fn serve(self, listener: UnixListener, stop: CancellationToken) {
        let sweeper = tokio::spawn(self.clone().sweep(stop.clone()));
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("cache manager accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(self.clone().connection(id, stream));
        }
        sweeper.abort();
        let mut state = self.state.lock().expect("cache lock");
        for ns in state.namespaces.values_mut() {
            if let Some(log) = &mut ns.log {
                let _ = log.sync();
            }
        }
    }

    async fn connection(self, id: ConnId, stream: UnixStream) {
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
                        Ok(request) => self.handle(id, request),
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

    /// Handles one request; returns the immediate reply, if any (a parked `Get` has none yet).
    fn handle(&self, conn: ConnId, Request { id, op }: Request<'_>) -> Option<Message> {
        let mut state = self.state.lock().expect("cache lock");
        let reply = state.apply(conn, id, op)?;
        Some(Message::Reply { id, reply })
    }

    fn disconnected(&self, conn: ConnId) {
        let mut state = self.state.lock().expect("cache lock");
        state.conns.remove(&conn);
        for watchers in state.watchers.values_mut() {
            watchers.remove(&conn);
        }
        // Locks held by the departed loader pass to a waiter.
        let orphaned: Vec<(String, String)> = state
            .leases
            .values()
            .filter(|(ns, key)| state.lock_of(ns, key).is_some_and(|l| l.owner == conn))
            .cloned()
            .collect();
        for (ns, key) in orphaned {
            tracing::warn!(namespace = %ns, key = %key, "the loading process is gone; handing the load to a waiter");
            state.hand_over(&ns, &key);
        }
    }

    async fn sweep(self, stop: CancellationToken) {
        let mut last_sync = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SWEEP) => {}
            }
            let mut state = self.state.lock().expect("cache lock");
            state.sweep_due(Instant::now());
            if last_sync.elapsed() >= SYNC {
                last_sync = Instant::now();
                for ns in state.namespaces.values_mut() {
                    if let Some(log) = &mut ns.log {
                        if let Err(e) = log.sync() {
                            tracing::error!(namespace = %ns.figures.namespace, "cannot sync the cache log: {e}");
                        }
                    }
                }
            }
        }
    }
}

impl State {
    fn apply(&mut self, conn: ConnId, id: u64, op: Op<'_>) -> Option<Reply> {
        Some(match op {
            Op::Use { ns, options } => self.use_ns(&ns, options),
            Op::Get { ns, key, lease_ms } => {
                return self.get(conn, id, &ns, &key, lease_ms.map(Duration::from_millis));
            }
            Op::Fill {
                ns,
                key,
                token,
                value,
            } => self.fill(&ns, &key, token, &value),
            Op::Abandon {
                ns,
                key,
                token,
                error,
            } => {
                self.abandon(&ns, &key, token, &error);
                Reply::Done(true)
            }
            Op::Release { ns, key, token } => {
                if self.lock_of(&ns, &key).is_some_and(|l| l.token == token) {
                    self.hand_over(&ns, &key);
                }
                Reply::Done(true)
            }
            Op::Set {
                ns,
                key,
                value,
                leave_if_not_null,
            } => self.set(&ns, &key, &value, leave_if_not_null),
            Op::Del { ns, key } => self.del(&ns, &key),
            Op::Keys { ns } => {
                let now = Instant::now();
                let keys = self
                    .namespaces
                    .get(&*ns)
                    .map(|n| {
                        n.entries
                            .iter()
                            .filter(|(_, e)| e.value.is_some() && !e.expired(now))
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                Reply::Keys(keys)
            }
            Op::Watch { ns } => {
                self.watchers
                    .entry(ns.into_owned())
                    .or_default()
                    .insert(conn);
                Reply::Done(true)
            }
            Op::Unwatch { ns } => {
                if let Some(w) = self.watchers.get_mut(&*ns) {
                    w.remove(&conn);
                }
                Reply::Done(true)
            }
            Op::Stats => {
                let mut all: Vec<NsFigures> = self
                    .namespaces
                    .values()
                    .map(|n| NsFigures {
                        entries: n.entries.values().filter(|e| e.value.is_some()).count() as u64,
                        bytes: n.live_bytes(),
                        ..n.figures.clone()
                    })
                    .collect();
                all.sort_by(|a, b| a.namespace.cmp(&b.namespace));
                Reply::Stats(all)
            }
        })
    }

    fn ns(&mut self, name: &str) -> &mut Namespace {
        // A namespace a client has not (re)declared after a manager restart gets the defaults
        // until it does. (Looked up before inserting: the name is copied only when new.)
        if !self.namespaces.contains_key(name) {
            let defaults = NsOptions {
                persist: false,
                expire_ms: None,
            };
            self.namespaces
                .insert(name.to_owned(), Namespace::new(name, defaults));
        }
        self.namespaces.get_mut(name).expect("inserted above")
    }

    fn lock_of(&self, ns: &str, key: &str) -> Option<&Lock> {
        self.namespaces.get(ns)?.entries.get(key)?.lock.as_ref()
    }

    fn use_ns(&mut self, name: &str, options: NsOptions) -> Reply {
        if let Some(ns) = self.namespaces.get(name) {
            return Reply::Used {
                options: ns.options,
                existed: true,
            };
        }
        let mut ns = Namespace::new(name, options);
        if options.persist {
            match Log::open(&self.config.persist_path, name, options) {
                Ok(log) => ns.log = Some(log),
                Err(e) => {
                    return Reply::Error(format!(
                        "cannot persist namespace `{name}` under {}: {e}",
                        self.config.persist_path.display()
                    ));
                }
            }
        }
        self.namespaces.insert(name.to_owned(), ns);
        tracing::debug!(namespace = %name, persist = options.persist, "cache namespace created");
        Reply::Used {
            options,
            existed: false,
        }
    }

    fn get(
        &mut self,
        conn: ConnId,
        id: u64,
        ns_name: &str,
        key: &str,
        lease: Option<Duration>,
    ) -> Option<Reply> {
        let now = Instant::now();
        let ns = self.ns(ns_name);
        let mut expired_now = false;
        if let Some(entry) = ns.entries.get(key) {
            if let Some(value) = &entry.value {
                if !entry.expired(now) {
                    ns.figures.hits += 1;
                    return Some(Reply::Value(value.clone()));
                }
                // Expired, not swept yet.
                expired_now = true;
            }
        }
        if expired_now {
            self.remove_expired(ns_name, key);
        }
        let token = self.next_token;
        let ns = self.ns(ns_name);
        let Some(lease) = lease else {
            ns.figures.misses += 1;
            return Some(Reply::Miss);
        };
        let lock = Lock {
            owner: conn,
            token,
            lease_until: now + lease,
            waiters: VecDeque::new(),
        };
        match ns.entries.get_mut(key) {
            Some(Entry {
                lock: Some(held), ..
            }) => {
                held.waiters.push_back((conn, id, lease));
                ns.figures.lock_waits += 1;
                return None;
            }
            Some(entry) => entry.lock = Some(lock),
            None => {
                ns.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: None,
                        expiry: None,
                        lock: Some(lock),
                    },
                );
            }
        }
        ns.figures.misses += 1;
        self.next_token += 1;
        self.leases
            .insert((now + lease, token), (ns_name.to_owned(), key.to_owned()));
        Some(Reply::Load {
            ns: ns_name.to_owned(),
            key: key.to_owned(),
            token,
        })
    }

    fn fill(&mut self, ns_name: &str, key: &str, token: u64, value: &[u8]) -> Reply {
        let (ours, has_value) = match self
            .namespaces
            .get(ns_name)
            .and_then(|n| n.entries.get(key))
        {
            Some(e) => (
                e.lock.as_ref().is_some_and(|l| l.token == token),
                e.value.is_some(),
            ),
            None => (false, false),
        };
        if !ours && has_value {
            // Someone set the key meanwhile: that value stands.
            return Reply::Done(false);
        }
        self.ns(ns_name).figures.loads += 1;
        self.store(ns_name, key, Bytes::copy_from_slice(value));
        Reply::Done(true)
    }

    /// Stores a value, answers whoever waited for it, tells watchers, and logs it.
    fn store(&mut self, ns_name: &str, key: &str, value: Bytes) {
        let seq = self.next_token;
        self.next_token += 1;
        let ns = self.ns(ns_name);
        let expiry = ns.options.expire_ms.map(|ms| Expiry {
            at: Instant::now() + Duration::from_millis(ms),
            seq,
        });
        if let Some(log) = &mut ns.log {
            let wall = ns
                .options
                .expire_ms
                .map(|ms| SystemTime::now() + Duration::from_millis(ms));
            if let Err(e) = log.set(key, &value, wall) {
                tracing::error!(namespace = %ns_name, "cannot persist a cache entry: {e}");
            }
        }
        let lock = ns.put(key, value.clone(), expiry);
        ns.maybe_compact();
        if let Some(lock) = lock {
            self.end_lock(lock, || Reply::Value(value.clone()));
        }
        self.notify(ns_name, key, Some(&value));
    }

    fn abandon(&mut self, ns_name: &str, key: &str, token: u64, error: &str) {
        let ours = self.lock_of(ns_name, key).is_some_and(|l| l.token == token);
        if !ours {
            return;
        }
        let ns = self.ns(ns_name);
        ns.figures.errors += 1;
        let Some(entry) = ns.entries.get_mut(key) else {
            return;
        };
        let lock = entry.lock.take().expect("checked above");
        if entry.value.is_none() {
            ns.entries.remove(key);
        }
        self.end_lock(lock, || Reply::LoadFailed(error.to_owned()));
    }

    /// A lock taken off its entry: its lease ends and every waiter gets `reply`.
    fn end_lock(&mut self, lock: Lock, reply: impl Fn() -> Reply) {
        self.leases.remove(&(lock.lease_until, lock.token));
        for (conn, id, _) in lock.waiters {
            self.send(conn, Message::Reply { id, reply: reply() });
        }
    }

    /// The lock's owner is gone or out of time: the first live waiter loads instead.
    fn hand_over(&mut self, ns_name: &str, key: &str) {
        let now = Instant::now();
        loop {
            let token = self.next_token;
            let Some(entry) = self
                .namespaces
                .get_mut(ns_name)
                .and_then(|n| n.entries.get_mut(key))
            else {
                return;
            };
            let Some(lock) = &mut entry.lock else { return };
            self.leases.remove(&(lock.lease_until, lock.token));
            let Some((conn, id, lease)) = lock.waiters.pop_front() else {
                entry.lock = None;
                if entry.value.is_none() {
                    self.namespaces
                        .get_mut(ns_name)
                        .map(|n| n.entries.remove(key));
                }
                return;
            };
            if !self.conns.contains_key(&conn) {
                continue;
            }
            lock.owner = conn;
            lock.token = token;
            lock.lease_until = now + lease;
            self.leases
                .insert((now + lease, token), (ns_name.to_owned(), key.to_owned()));
            self.next_token += 1;
            self.send(
                conn,
                Message::Reply {
                    id,
                    reply: Reply::Load {
                        ns: ns_name.to_owned(),
                        key: key.to_owned(),
                        token,
                    },
                },
            );
            return;
        }
    }

    fn set(&mut self, ns_name: &str, key: &str, value: &[u8], leave_if_not_null: bool) -> Reply {
        if leave_if_not_null {
            let now = Instant::now();
            let present = self
                .ns(ns_name)
                .entries
                .get(key)
                .is_some_and(|e| e.value.is_some() && !e.expired(now));
            if present {
                return Reply::Done(false);
            }
        }
        self.store(ns_name, key, Bytes::copy_from_slice(value));
        Reply::Done(true)
    }

    fn del(&mut self, ns_name: &str, key: &str) -> Reply {
        let now = Instant::now();
        let ns = self.ns(ns_name);
        let Some(entry) = ns.entries.get(key) else {
            return Reply::Old(None);
        };
        let expired = entry.expired(now);
        let old = ns.take(key).filter(|_| !expired);
        if let Some(log) = &mut ns.log {
            if let Err(e) = log.del(key) {
                tracing::error!(namespace = %ns_name, "cannot persist a cache delete: {e}");
            }
        }
        self.notify(ns_name, key, None);
        Reply::Old(old)
    }

    fn remove_expired(&mut self, ns_name: &str, key: &str) {
        let ns = self.ns(ns_name);
        if ns.take(key).is_some() {
            if let Some(log) = &mut ns.log {
                let _ = log.del(key);
            }
        }
        self.notify(ns_name, key, None);
    }

    /// Removes the entries that have expired and hands over the loads whose lease has
    /// passed: only what is due, so a big cache costs nothing here.
    fn sweep_due(&mut self, now: Instant) {
        let mut expired_keys = Vec::new();
        for (name, ns) in &mut self.namespaces {
            while let Some(first) = ns.expiries.first_entry() {
                if first.key().at > now {
                    break;
                }
                expired_keys.push((name.clone(), first.remove()));
            }
        }
        for (ns, key) in expired_keys {
            self.remove_expired(&ns, &key);
        }
        let mut late = Vec::new();
        while let Some(first) = self.leases.first_entry() {
            if first.key().0 > now {
                break;
            }
            let ((_, token), (ns, key)) = first.remove_entry();
            late.push((ns, key, token));
        }
        for (ns, key, token) in late {
            if self.lock_of(&ns, &key).is_some_and(|l| l.token == token) {
                tracing::warn!(namespace = %ns, key = %key, "a loader exceeded its lease; handing the load to a waiter");
                self.hand_over(&ns, &key);
            }
        }
    }

    fn notify(&self, ns: &str, key: &str, value: Option<&Bytes>) {
        let Some(watchers) = self.watchers.get(ns) else {
            return;
        };
        for conn in watchers {
            self.send(
                *conn,
                Message::Changed {
                    ns: ns.to_owned(),
                    key: key.to_owned(),
                    value: value.cloned(),
                },
            );
        }
    }

    fn send(&self, conn: ConnId, message: Message) {
        if let Some(tx) = self.conns.get(&conn) {
            let _ = tx.send(message);
        }
    }
}

/// Binds the manager's socket in a private directory, replacing a stale socket file.
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        crate::runtime_dir::ensure_private(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}
