//! The cache on a Redis server that every host of the cluster shares (`cache.backend` set to a
//! Redis URL): the same operations as the local manager, with the same promises, across every
//! process of every host.
//!
//! It answers the handle's requests (`protocol::Op`) with the manager's answers
//! (`protocol::Reply`), so that `handle` runs unchanged on either backend: a miss with a lease
//! hands the caller a lock to load under (`Reply::Load`), and the loader's `Fill`, `Abandon` or
//! `Release` ends it. What differs is where things live:
//!
//! - values are Redis strings holding the JSON the handle encoded (a stored `null`, `false`,
//!   `0` or `""` is a value; a missing key is nil), with the namespace's expiry as their TTL;
//! - single flight is a lock in Redis (see `scripts` and `flight`), its lease the caller's
//!   timeout capped by `cache.max_lease`, and within this process concurrent reads of one key
//!   share one `GET`, and concurrent loads one lock;
//! - a namespace's options are stored in Redis by its first `use_cache` on any host, so every
//!   host keeps the same; they are declared again after Redis comes back empty;
//! - watches are pub/sub (sets and deletes, published by the scripts that make them) and
//!   Redis's expired-key events (which this process turns on with `CONFIG SET` when a watch
//!   needs them, or asks the operator to);
//! - `persist` is whatever durability the Redis server is configured with (RDB snapshots, AOF):
//!   nothing here writes to disk;
//! - the figures are counted in each process and added to a hash in Redis every second.
//!
//! Every call is bounded by its timeout; while Redis is unreachable calls fail at once with an
//! error naming the server, and the connections come back by themselves (`crate::backend`).
//! Keys are limited to 64 KiB, values to `cache.max_value` (and Redis's own 512 MiB).
//! One Redis server or primary is supported, not Redis Cluster: a script touches a key's
//! value, lock and channels together.

mod figures; // counters per namespace, flushed to Redis; the figures of every namespace
mod flight; // reads shared within the process, and single-flight loads across hosts
mod keys; // every key and channel name, and the messages on the channels
mod scripts; // the Lua scripts: acquire, fill, set, delete, abandon, release, declare

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::client::{WatchEntry, WatchFn, callbacks_for};
use super::protocol::{NsBounds, NsOptions, Op, Reply};
use crate::backend::Redis;
use crate::backend::subscriber::ListenerId;
use crate::error::{Error, ErrorKind, Result};
use keys::{Change, Names};

/// The longest key, in bytes: what the local manager accepts beside a value.
const MAX_KEY: usize = 64 * 1024;

/// How long a failed load's error is kept for waiters that missed the message.
const FAILURE_KEPT: Duration = Duration::from_secs(60);

/// The cache on one Redis server; cheap to clone.
#[derive(Clone)]
pub(crate) struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    names: Names,
    max_value: usize,
    timeout: Duration,
    /// The longest lease a loader holds a lock for, whatever its call's timeout
    /// (`cache.max_lease`, as the local manager).
    max_lease: Duration,
    /// This process's part of every lock token, so that tokens never meet across processes.
    nonce: String,
    next_token: AtomicU64,
    /// The namespaces this process uses, with the options Redis holds for them.
    namespaces: Mutex<HashMap<String, NsOptions>>,
    watches: Mutex<Watches>,
    flights: flight::Flights,
    figures: figures::Figures,
}

#[derive(Default)]
struct Watches {
    by_ns: HashMap<String, (ListenerId, Vec<WatchEntry>)>,
    /// The expired-key events, while any namespace is watched.
    expiries: Option<ListenerId>,
    next_id: u64,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("redis", &self.inner.redis)
            .finish_non_exhaustive()
    }
}

/// Why an operation failed, before it is worded with what was asked.
pub(super) enum Failure {
    Redis(redis::RedisError),
    /// Nothing came back in time from a step that has its own bound.
    Timeout,
    /// The request itself is wrong (a key too long).
    Invalid(String),
    /// Redis answered something no script returns: another program wrote our keys.
    Unexpected(String),
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        Failure::Redis(e)
    }
}

type Outcome<T> = std::result::Result<T, Failure>;

impl RedisCache {
    /// The cache of cluster `cluster` on the Redis server at `url` (connected on first use).
    pub(crate) fn connect(
        url: &str,
        cluster: &str,
        max_value: usize,
        timeout: Duration,
        max_lease: Duration,
    ) -> Result<Self> {
        let redis = Redis::shared(url)?;
        let cache = Self {
            inner: Arc::new(Inner {
                redis,
                names: Names::new(cluster),
                max_value,
                timeout,
                max_lease,
                nonce: nonce(),
                next_token: AtomicU64::new(1),
                namespaces: Mutex::new(HashMap::new()),
                watches: Mutex::new(Watches::default()),
                flights: flight::Flights::default(),
                figures: figures::Figures::default(),
            }),
        };
        // After Redis comes back (perhaps empty), declare the namespaces again and turn the
        // expiry events back on. Weak: the hook must not keep the cache alive.
        let weak = Arc::downgrade(&cache.inner);
        cache
            .inner
            .redis
            .subscriber()
            .on_reconnect(Arc::new(move || {
                if let Some(inner) = weak.upgrade() {
                    tokio::spawn(RedisCache { inner }.redeclare());
                }
            }));
        tokio::spawn(figures::flush_every_second(Arc::downgrade(&cache.inner)));
        Ok(cache)
    }

    pub(crate) fn max_value(&self) -> usize {
        self.inner.max_value
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The server's URL, without its password.
    pub(crate) fn shown(&self) -> &str {
        self.inner.redis.shown()
    }

    /// Whether this process's subscription connection is up: the server answered its last
    /// ping (every few seconds).
    pub(crate) fn is_connected(&self) -> bool {
        self.inner.redis.subscriber().is_connected()
    }

    fn con(&self) -> redis::aio::ConnectionManager {
        self.inner.redis.commands()
    }

    fn token_value(&self, token: u64) -> String {
        format!("{}:{token}", self.inner.nonce)
    }

    /// The namespace's expiry, as the scripts take it ("0": none).
    fn expire_arg(&self, ns: &str) -> String {
        let options = self
            .inner
            .namespaces
            .lock()
            .expect("redis cache lock")
            .get(ns)
            .copied();
        options
            .and_then(|o| o.expire_ms)
            .map_or_else(|| "0".to_owned(), |ms| ms.to_string())
    }

    /// Runs `op` within `timeout`; errors name the operation (`what`) and the server.
    pub(crate) async fn call(
        &self,
        op: Op<'_>,
        timeout: Duration,
        what: &(impl std::fmt::Display + ?Sized),
    ) -> Result<Reply> {
        let deadline = Instant::now() + timeout;
        let outcome = tokio::time::timeout_at(deadline, self.apply(op)).await;
        let redis = &self.inner.redis;
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(Failure::Redis(e))) => Err(redis.error("cache", what, &e)),
            Ok(Err(Failure::Timeout)) | Err(_) => Err(redis.timeout("cache", what, timeout)),
            Ok(Err(Failure::Invalid(why))) => {
                Err(Error::new(ErrorKind::Config, format!("{what}: {why}")))
            }
            Ok(Err(Failure::Unexpected(why))) => Err(Error::new(
                ErrorKind::Cache,
                format!(
                    "{what}: unexpected answer from the cache backend, Redis at {}: {why}",
                    redis.shown()
                ),
            )),
        }
    }

    async fn apply(&self, op: Op<'_>) -> Outcome<Reply> {
        if let Op::Get { key, .. }
        | Op::Fill { key, .. }
        | Op::Set { key, .. }
        | Op::Del { key, .. } = &op
        {
            if key.len() > MAX_KEY {
                return Err(Failure::Invalid(format!(
                    "the key is {} bytes, more than the {MAX_KEY} a key may have",
                    key.len()
                )));
            }
        }
        match op {
            Op::Use {
                ns,
                options,
                bounds,
            } => self.declare(&ns, options, bounds).await,
            Op::Get {
                ns,
                key,
                lease_ms: None,
            } => self.peek(&ns, &key).await,
            Op::Get {
                ns,
                key,
                lease_ms: Some(lease_ms),
            } => {
                let most = self
                    .inner
                    .max_lease
                    .as_millis()
                    .clamp(1, u128::from(u64::MAX)) as u64;
                self.get(&ns, &key, lease_ms.clamp(1, most)).await
            }
            Op::Fill {
                ns,
                key,
                token,
                value,
            } => self.fill(&ns, &key, token, &value).await,
            Op::Abandon {
                ns,
                key,
                token,
                error,
            } => self.abandon(&ns, &key, token, &error).await,
            Op::Release { ns, key, token } => {
                self.release(&ns, &key, token).await?;
                Ok(Reply::Done(true))
            }
            Op::Set {
                ns,
                key,
                value,
                leave_if_not_null,
            } => self.set(&ns, &key, &value, leave_if_not_null).await,
            Op::Del { ns, key } => self.del(&ns, &key).await,
            Op::Keys { ns } => self.keys(&ns).await.map(Reply::Keys),
            Op::Stats => self.stats().await.map(Reply::Stats),
            // Watches are this process's business (`watch`), never a request.
            Op::Watch { .. } | Op::Unwatch { .. } => Ok(Reply::Done(true)),
        }
    }

    /// `use_cache`: the namespace's options as Redis holds them (these, if it had none). A
    /// namespace has no bounds of its own on Redis (`max_entries`, `max_bytes` are the local
    /// manager's eviction): the server's `maxmemory` policy evicts. Asking for bounds is said
    /// once, and the answer has none, so that `Cache::options` does not pretend.
    async fn declare(&self, ns: &str, wanted: NsOptions, bounds: NsBounds) -> Outcome<Reply> {
        let first_here = !self
            .inner
            .namespaces
            .lock()
            .expect("redis cache lock")
            .contains_key(ns);
        if bounds != NsBounds::default() && first_here {
            tracing::warn!(
                namespace = %ns,
                "cache namespace bounds (max_entries, max_bytes) are not kept on a Redis \
                 backend: the server's maxmemory policy evicts"
            );
        }
        let json = serde_json::to_string(&wanted).expect("options serialize");
        let stored: Option<Vec<u8>> = scripts::DECLARE
            .key(self.inner.names.options(ns))
            .key(self.inner.names.namespaces())
            .arg(json)
            .arg(ns)
            .invoke_async(&mut self.con())
            .await?;
        let Some(stored) = stored else {
            return Ok(Reply::Used {
                options: wanted,
                bounds: NsBounds::default(),
                existed: false,
            });
        };
        let options = serde_json::from_slice(&stored).map_err(|e| {
            Failure::Unexpected(format!(
                "the options of namespace `{ns}` are not what cluster2 writes ({e})"
            ))
        })?;
        Ok(Reply::Used {
            options,
            bounds: NsBounds::default(),
            existed: true,
        })
    }

    /// Declares every namespace this process uses again (after Redis came back, perhaps
    /// empty), and turns the expiry events back on if a watch needs them.
    async fn redeclare(self) {
        let namespaces: Vec<(String, NsOptions)> = self
            .inner
            .namespaces
            .lock()
            .expect("redis cache lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (ns, options) in namespaces {
            let what = format!("use_cache(\"{ns}\") again");
            if let Err(e) = self
                .call(
                    Op::Use {
                        ns: ns.into(),
                        options,
                        bounds: NsBounds::default(),
                    },
                    self.inner.timeout,
                    &what,
                )
                .await
            {
                tracing::warn!("{e}");
            }
        }
        let watching = self
            .inner
            .watches
            .lock()
            .expect("redis cache lock")
            .expiries
            .is_some();
        if watching {
            self.ensure_expiry_events().await;
        }
    }

    /// Remembers the options a namespace has, for the expiry of what is written in it and to
    /// declare it again after Redis restarts.
    pub(crate) fn remember(&self, ns: &str, options: NsOptions) {
        self.inner
            .namespaces
            .lock()
            .expect("redis cache lock")
            .insert(ns.to_owned(), options);
    }

    async fn peek(&self, ns: &str, key: &str) -> Outcome<Reply> {
        let value = self.read(&self.inner.names.value(ns, key)).await?;
        let counters = self.inner.figures.of(ns);
        Ok(match value {
            Some(value) => {
                counters.hits.fetch_add(1, Ordering::Relaxed);
                Reply::Value(value)
            }
            None => {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                Reply::Miss
            }
        })
    }

    async fn set(&self, ns: &str, key: &str, value: &[u8], leave: bool) -> Outcome<Reply> {
        let names = &self.inner.names;
        let vkey = names.value(ns, key);
        let stored: i64 = scripts::SET
            .key(&vkey)
            .key(names.lock(ns, key))
            .arg(value)
            .arg(self.expire_arg(ns))
            .arg(if leave { "1" } else { "0" })
            .arg(names.changes(ns))
            .arg(names.fills(ns, key))
            .arg(key)
            .invoke_async(&mut self.con())
            .await?;
        // A read begun before this write must not answer those who ask after it.
        self.detach_read(&vkey);
        if stored == 1 {
            // Like the local manager: a load under way here ends with this value.
            self.end_flight(&vkey, || {
                flight::FlightReply::Value(Bytes::copy_from_slice(value))
            });
        }
        Ok(Reply::Done(stored == 1))
    }

    async fn del(&self, ns: &str, key: &str) -> Outcome<Reply> {
        let vkey = self.inner.names.value(ns, key);
        let old: Option<Vec<u8>> = scripts::DEL
            .key(&vkey)
            .arg(self.inner.names.changes(ns))
            .arg(key)
            .invoke_async(&mut self.con())
            .await?;
        self.detach_read(&vkey);
        Ok(Reply::Old(old.map(Bytes::from)))
    }

    /// The namespace's keys, by `SCAN` of its values' prefix (never `KEYS`, which blocks the
    /// server); a key seen twice by the scan is listed once.
    async fn keys(&self, ns: &str) -> Outcome<Vec<String>> {
        let pattern = self.inner.names.values_pattern(ns);
        let skip = self.inner.names.value_prefix_len(ns);
        let mut con = self.con();
        let mut keys = std::collections::BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch) = scan_page(&mut con, cursor, &pattern).await?;
            for name in batch {
                if let Some(key) = name.get(skip..).and_then(|k| std::str::from_utf8(k).ok()) {
                    keys.insert(key.to_owned());
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(keys.into_iter().collect())
    }

    /// Calls `callback` on every change of `key` (or of every key) in `ns`, made by any
    /// process of any host: sets and deletes through the namespace's channel, expiries
    /// through Redis's expired-key events.
    pub(crate) fn watch(&self, ns: &str, key: Option<String>, callback: WatchFn) -> u64 {
        let subscriber = self.inner.redis.subscriber();
        let mut watches = self.inner.watches.lock().expect("redis cache lock");
        let id = watches.next_id;
        watches.next_id += 1;
        if watches.expiries.is_none() {
            let weak = Arc::downgrade(&self.inner);
            let channel = format!("__keyevent@{}__:expired", self.inner.redis.db());
            let (listener, _) = subscriber.subscribe(
                channel.into_bytes(),
                Arc::new(move |name: &[u8]| {
                    let Some(inner) = weak.upgrade() else { return };
                    if let Some((ns, key)) = inner.names.parse_value(name) {
                        RedisCache {
                            inner: inner.clone(),
                        }
                        .changed(ns, key, None);
                    }
                }),
            );
            watches.expiries = Some(listener);
            let cache = self.clone();
            tokio::spawn(async move { cache.ensure_expiry_events().await });
        }
        let entry = WatchEntry { id, key, callback };
        if let Some((_, list)) = watches.by_ns.get_mut(ns) {
            list.push(entry);
            return id;
        }
        let weak = Arc::downgrade(&self.inner);
        let namespace = ns.to_owned();
        let (listener, _) = subscriber.subscribe(
            self.inner.names.changes(ns).into_bytes(),
            Arc::new(move |message: &[u8]| {
                let Some(inner) = weak.upgrade() else { return };
                let cache = RedisCache { inner };
                match keys::parse_change(message) {
                    Some(Change::Set { key, value }) => cache.changed(&namespace, key, Some(value)),
                    Some(Change::Deleted { key }) => cache.changed(&namespace, key, None),
                    None => tracing::debug!(
                        namespace = %namespace,
                        "a message of another shape on the cache's changes channel"
                    ),
                }
            }),
        );
        watches.by_ns.insert(ns.to_owned(), (listener, vec![entry]));
        id
    }

    /// Removes a watch; `false` if it was not registered on `ns`.
    pub(crate) fn unwatch(&self, ns: &str, id: u64) -> bool {
        let subscriber = self.inner.redis.subscriber();
        let mut watches = self.inner.watches.lock().expect("redis cache lock");
        let Some((_, list)) = watches.by_ns.get_mut(ns) else {
            return false;
        };
        let before = list.len();
        list.retain(|w| w.id != id);
        let removed = list.len() != before;
        if list.is_empty() {
            if let Some((listener, _)) = watches.by_ns.remove(ns) {
                subscriber.unsubscribe(listener);
            }
            if watches.by_ns.is_empty() {
                if let Some(listener) = watches.expiries.take() {
                    subscriber.unsubscribe(listener);
                }
            }
        }
        removed
    }

    /// Tells this process's watchers of `ns` that `key` changed (`None`: deleted or expired).
    fn changed(&self, ns: &str, key: &str, value: Option<&[u8]>) {
        let callbacks: Vec<WatchFn> = {
            let watches = self.inner.watches.lock().expect("redis cache lock");
            let Some((_, list)) = watches.by_ns.get(ns) else {
                return;
            };
            callbacks_for(list, key)
        };
        for callback in callbacks {
            callback(key, value);
        }
    }

    /// Turns on Redis's expired-key events if they are off (at the first watch, and after
    /// each reconnect, since a restarted server forgets); says so, loudly, when this client
    /// may not.
    async fn ensure_expiry_events(&self) {
        let mut con = self.con();
        let attempt = async {
            let current: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("notify-keyspace-events")
                .query_async(&mut con)
                .await?;
            let flags = current.get(1).cloned().unwrap_or_default();
            let expired = flags.contains('x') || flags.contains('A');
            if flags.contains('E') && expired {
                return Ok::<_, redis::RedisError>(());
            }
            let mut wanted = flags;
            for flag in ['E', 'x'] {
                if !wanted.contains(flag) {
                    wanted.push(flag);
                }
            }
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(&wanted)
                .query_async::<()>(&mut con)
                .await?;
            tracing::info!(
                "turned on Redis's expired-key events at {} (notify-keyspace-events {wanted}) \
                 for cache watches",
                self.shown()
            );
            Ok(())
        };
        match tokio::time::timeout(self.inner.timeout, attempt).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                "cache watches will not hear of expiries: cannot turn on Redis's expired-key \
                 events at {} ({e}); set notify-keyspace-events to include Ex on the server",
                self.shown()
            ),
            Err(_) => tracing::warn!(
                "cache watches may not hear of expiries: no answer from Redis at {} about \
                 its expired-key events; they are turned on at the next reconnect",
                self.shown()
            ),
        }
    }
}

/// This process's part of every lock token: its pid, the time, and the standard library's
/// per-process random hash keys, so that two processes never share it, on any host.
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    format!("{:016x}-{}", hasher.finish(), std::process::id())
}

/// One page of a `SCAN` over the names matching `pattern` (never `KEYS`, which blocks the
/// server): the cursor to go on from (0 when done) and the names of this page.
async fn scan_page(
    con: &mut redis::aio::ConnectionManager,
    cursor: u64,
    pattern: &str,
) -> redis::RedisResult<(u64, Vec<Vec<u8>>)> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .query_async(con)
        .await
}
