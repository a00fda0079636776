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

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_bytes::ByteBuf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::persist::{self, Log};
use super::protocol::{Message, NsFigures, NsOptions, Op, Reply, Request, max_frame};
use crate::ipc::channel::{append_frame, decode};
use crate::ipc::quiet::{FrameReader, Writer};

/// What a manager needs to know.
#[derive(Clone, Debug)]
pub(crate) struct ManagerConfig {
    pub(crate) persist_path: PathBuf,
    pub(crate) max_value: usize,
}

type ConnId = u64;

struct Entry {
    value: Option<Bytes>,
    expires_at: Option<Instant>,
    lock: Option<Lock>,
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
    log: Option<Log>,
    figures: NsFigures,
}

impl Namespace {
    fn new(name: &str, options: NsOptions) -> Self {
        Self {
            options,
            entries: HashMap::new(),
            log: None,
            figures: NsFigures {
                namespace: name.to_owned(),
                persist: options.persist,
                expire_ms: options.expire_ms,
                ..NsFigures::default()
            },
        }
    }

    fn expiry(&self) -> Option<Duration> {
        self.options.expire_ms.map(Duration::from_millis)
    }

    fn live_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k.len() + v.len()) as u64))
            .sum()
    }
}

struct State {
    namespaces: HashMap<String, Namespace>,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Message>>,
    watchers: HashMap<String, HashSet<ConnId>>,
    next_token: u64,
    config: ManagerConfig,
}

/// A running manager.
#[derive(Clone)]
pub(crate) struct Manager {
    state: Arc<Mutex<State>>,
    next_conn: Arc<AtomicU64>,
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
        for (name, options, entries) in persist::load_all(&config.persist_path)? {
            let mut ns = Namespace::new(&name, options);
            let now = (Instant::now(), SystemTime::now());
            for e in entries {
                let expires_at = e
                    .expires_at
                    .map(|t| now.0 + t.duration_since(now.1).unwrap_or(Duration::ZERO));
                ns.entries.insert(
                    e.key,
                    Entry {
                        value: Some(Bytes::from(e.value)),
                        expires_at,
                        lock: None,
                    },
                );
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
                next_token: 1,
                config,
            })),
            next_conn: Arc::new(AtomicU64::new(1)),
        })
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
    fn handle(&self, conn: ConnId, Request { id, op }: Request) -> Option<Message> {
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
        let mut orphaned = Vec::new();
        for (ns_name, ns) in &state.namespaces {
            for (key, entry) in &ns.entries {
                if entry.lock.as_ref().is_some_and(|l| l.owner == conn) {
                    orphaned.push((ns_name.clone(), key.clone()));
                }
            }
        }
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
            state.expire_and_lease();
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
    fn apply(&mut self, conn: ConnId, id: u64, op: Op) -> Option<Reply> {
        Some(match op {
            Op::Use { ns, options } => self.use_ns(&ns, options),
            Op::Get { ns, key, lease_ms } => {
                return self.get(conn, id, &ns, key, lease_ms.map(Duration::from_millis));
            }
            Op::Fill {
                ns,
                key,
                token,
                value,
            } => self.fill(&ns, &key, token, value),
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
                if self.lock_token(&ns, &key) == Some(token) {
                    self.hand_over(&ns, &key);
                }
                Reply::Done(true)
            }
            Op::Set {
                ns,
                key,
                value,
                leave_if_not_null,
            } => self.set(&ns, key, value, leave_if_not_null),
            Op::Del { ns, key } => self.del(&ns, &key),
            Op::Keys { ns } => {
                let now = Instant::now();
                let keys = self
                    .namespaces
                    .get(&ns)
                    .map(|n| {
                        n.entries
                            .iter()
                            .filter(|(_, e)| e.value.is_some() && !expired(e, now))
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                Reply::Keys(keys)
            }
            Op::Watch { ns } => {
                self.watchers.entry(ns).or_default().insert(conn);
                Reply::Done(true)
            }
            Op::Unwatch { ns } => {
                if let Some(w) = self.watchers.get_mut(&ns) {
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
        // until it does.
        self.namespaces.entry(name.to_owned()).or_insert_with(|| {
            Namespace::new(
                name,
                NsOptions {
                    persist: false,
                    expire_ms: None,
                },
            )
        })
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
        key: String,
        lease: Option<Duration>,
    ) -> Option<Reply> {
        let now = Instant::now();
        let expired_now = {
            let ns = self.ns(ns_name);
            ns.entries
                .get(&key)
                .is_some_and(|e| e.value.is_some() && expired(e, now))
        };
        if expired_now {
            self.remove_expired(ns_name, &key);
        }
        let token = self.next_token;
        let ns = self.ns(ns_name);
        if let Some(value) = ns.entries.get(&key).and_then(|e| e.value.clone()) {
            ns.figures.hits += 1;
            return Some(Reply::Value(ByteBuf::from(value.to_vec())));
        }
        let Some(lease) = lease else {
            ns.figures.misses += 1;
            return Some(Reply::Miss);
        };
        let entry = ns.entries.entry(key).or_insert(Entry {
            value: None,
            expires_at: None,
            lock: None,
        });
        match &mut entry.lock {
            Some(lock) => {
                lock.waiters.push_back((conn, id, lease));
                ns.figures.lock_waits += 1;
                None
            }
            None => {
                entry.lock = Some(Lock {
                    owner: conn,
                    token,
                    lease_until: now + lease,
                    waiters: VecDeque::new(),
                });
                ns.figures.misses += 1;
                self.next_token += 1;
                Some(Reply::Load { token })
            }
        }
    }

    fn lock_token(&self, ns: &str, key: &str) -> Option<u64> {
        self.namespaces
            .get(ns)?
            .entries
            .get(key)?
            .lock
            .as_ref()
            .map(|l| l.token)
    }

    fn fill(&mut self, ns_name: &str, key: &str, token: u64, value: ByteBuf) -> Reply {
        let ours = self.lock_token(ns_name, key) == Some(token);
        let has_value = self
            .namespaces
            .get(ns_name)
            .and_then(|n| n.entries.get(key))
            .is_some_and(|e| e.value.is_some());
        if !ours && has_value {
            // Someone set the key meanwhile: that value stands.
            return Reply::Done(false);
        }
        let ns = self.ns(ns_name);
        ns.figures.loads += 1;
        self.store(ns_name, key.to_owned(), Bytes::from(value.into_vec()));
        Reply::Done(true)
    }

    /// Stores a value, answers whoever waited for it, tells watchers, and logs it.
    fn store(&mut self, ns_name: &str, key: String, value: Bytes) {
        let now = Instant::now();
        let ns = self.ns(ns_name);
        let expires_at = ns.expiry().map(|d| now + d);
        if let Some(log) = &mut ns.log {
            let wall = ns
                .options
                .expire_ms
                .map(|ms| SystemTime::now() + Duration::from_millis(ms));
            if let Err(e) = log.set(&key, &value, wall) {
                tracing::error!(namespace = %ns_name, "cannot persist a cache entry: {e}");
            }
        }
        let entry = ns.entries.entry(key.clone()).or_insert(Entry {
            value: None,
            expires_at: None,
            lock: None,
        });
        entry.value = Some(value.clone());
        entry.expires_at = expires_at;
        let waiters = entry.lock.take().map(|l| l.waiters).unwrap_or_default();
        self.maybe_compact(ns_name);
        for (conn, id, _) in waiters {
            self.send(
                conn,
                Message::Reply {
                    id,
                    reply: Reply::Value(ByteBuf::from(value.to_vec())),
                },
            );
        }
        self.notify(ns_name, &key, Some(&value));
    }

    fn maybe_compact(&mut self, ns_name: &str) {
        let Some(ns) = self.namespaces.get_mut(ns_name) else {
            return;
        };
        // Counting the live bytes walks the namespace: only when a log is big enough to matter.
        if !ns.log.as_mut().is_some_and(Log::may_want_compaction) {
            return;
        }
        let live = ns.live_bytes();
        let options = ns.options;
        let now_wall = SystemTime::now();
        let now = Instant::now();
        let Some(log) = &mut ns.log else { return };
        if !log.wants_compaction(live) {
            return;
        }
        let entries = ns.entries.iter().filter_map(|(k, e)| {
            let v = e.value.as_ref()?;
            let wall = e
                .expires_at
                .map(|t| now_wall + t.saturating_duration_since(now));
            Some((k.as_str(), v.as_ref(), wall))
        });
        if let Err(e) = log.compact(options, entries) {
            tracing::error!(namespace = %ns_name, "cannot compact the cache log: {e}");
        }
    }

    fn abandon(&mut self, ns_name: &str, key: &str, token: u64, error: &str) {
        if self.lock_token(ns_name, key) != Some(token) {
            return;
        }
        let ns = self.ns(ns_name);
        ns.figures.errors += 1;
        let Some(entry) = ns.entries.get_mut(key) else {
            return;
        };
        let waiters = entry.lock.take().map(|l| l.waiters).unwrap_or_default();
        if entry.value.is_none() {
            ns.entries.remove(key);
        }
        for (conn, id, _) in waiters {
            self.send(
                conn,
                Message::Reply {
                    id,
                    reply: Reply::LoadFailed(error.to_owned()),
                },
            );
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
            self.next_token += 1;
            self.send(
                conn,
                Message::Reply {
                    id,
                    reply: Reply::Load { token },
                },
            );
            return;
        }
    }

    fn set(
        &mut self,
        ns_name: &str,
        key: String,
        value: ByteBuf,
        leave_if_not_null: bool,
    ) -> Reply {
        let now = Instant::now();
        let present = self
            .ns(ns_name)
            .entries
            .get(&key)
            .is_some_and(|e| e.value.is_some() && !expired(e, now));
        if leave_if_not_null && present {
            return Reply::Done(false);
        }
        self.store(ns_name, key, Bytes::from(value.into_vec()));
        Reply::Done(true)
    }

    fn del(&mut self, ns_name: &str, key: &str) -> Reply {
        let now = Instant::now();
        let ns = self.ns(ns_name);
        let Some(entry) = ns.entries.get_mut(key) else {
            return Reply::Old(None);
        };
        let old = entry
            .value
            .take()
            .filter(|_| !expired_at(entry.expires_at, now));
        if entry.lock.is_none() {
            ns.entries.remove(key);
        }
        if let Some(log) = &mut ns.log {
            if let Err(e) = log.del(key) {
                tracing::error!(namespace = %ns_name, "cannot persist a cache delete: {e}");
            }
        }
        self.notify(ns_name, key, None);
        Reply::Old(old.map(|v| ByteBuf::from(v.to_vec())))
    }

    fn remove_expired(&mut self, ns_name: &str, key: &str) {
        let ns = self.ns(ns_name);
        if let Some(entry) = ns.entries.get_mut(key) {
            entry.value = None;
            entry.expires_at = None;
            if entry.lock.is_none() {
                ns.entries.remove(key);
            }
            if let Some(log) = &mut ns.log {
                let _ = log.del(key);
            }
        }
        self.notify(ns_name, key, None);
    }

    fn expire_and_lease(&mut self) {
        let now = Instant::now();
        let mut expired_keys = Vec::new();
        let mut late = Vec::new();
        for (name, ns) in &self.namespaces {
            for (key, e) in &ns.entries {
                if e.value.is_some() && expired(e, now) {
                    expired_keys.push((name.clone(), key.clone()));
                }
                if e.lock.as_ref().is_some_and(|l| l.lease_until <= now) {
                    late.push((name.clone(), key.clone()));
                }
            }
        }
        for (ns, key) in expired_keys {
            self.remove_expired(&ns, &key);
        }
        for (ns, key) in late {
            tracing::warn!(namespace = %ns, key = %key, "a loader exceeded its lease; handing the load to a waiter");
            self.hand_over(&ns, &key);
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
                    value: value.map(|v| ByteBuf::from(v.to_vec())),
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

fn expired(e: &Entry, now: Instant) -> bool {
    expired_at(e.expires_at, now)
}

fn expired_at(expires_at: Option<Instant>, now: Instant) -> bool {
    expires_at.is_some_and(|t| t <= now)
}

/// Binds the manager's socket in a private directory, replacing a stale socket file.
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        super::private_dir(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}
