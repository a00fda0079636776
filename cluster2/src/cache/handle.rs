//! The user's side of the cache: [`use_cache`] opens a namespace, and its [`Cache`] handle
//! reads, loads (the caller's half of single flight: run the loader, then fill or abandon),
//! writes, deletes, lists and watches keys, with values encoded as JSON and this process's
//! hits, misses, loads and errors counted per namespace.
//!
//! Every operation goes through this process's one backend (`global`): the local manager's
//! client or Redis, which answer alike; connecting, reconnecting and timing out are theirs,
//! never this file's.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backend::Backend;
use super::errors::{What, unexpected};
use super::global::client;
use super::protocol::{NsBounds, NsOptions, Op, Reply};
use crate::error::{Error, ErrorKind, Result};

/// Options of a namespace, decided by its first [`use_cache`]. Build it with a struct literal
/// ending in `..Default::default()`, so that fields added later keep their defaults.
///
/// ```
/// use std::time::Duration;
/// use cluster2::cache::CacheOptions;
///
/// // Per-user sessions: at most 100 000 of them and 64 MiB of keys and values; past either,
/// // the least recently used go first.
/// let sessions = CacheOptions {
///     expire: Some(Duration::from_secs(3600)),
///     max_entries: Some(100_000),
///     max_bytes: Some(64 << 20),
///     ..Default::default()
/// };
/// # let _ = sessions;
/// ```
///
/// Every namespace is bounded by `cache.max_memory` too, shared by all of them: past it, the
/// least recently used entries of the whole cache are evicted, whichever namespace they are in.
/// Eviction is approximate (it compares a sample of entries, as Redis does), never takes a key
/// whose load is in flight, and tells watchers as a delete does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheOptions {
    /// Keep the namespace across manager restarts and crashes.
    pub persist: bool,
    /// Entries expire this long after they were written; `None`: never.
    pub expire: Option<Duration>,
    /// The most entries the namespace holds; past it, the least recently used (read or
    /// written) are evicted. `None`: only `cache.max_memory` bounds it.
    pub max_entries: Option<u64>,
    /// The most bytes of keys and values the namespace holds; past it, the least recently used
    /// are evicted, and a value that alone would pass it is refused. `None`: only
    /// `cache.max_memory` bounds it.
    ///
    /// Not kept on disk with a persisted namespace: after a manager restart its bounds are
    /// those of its first `use_cache` (every process of the cluster declares its namespaces
    /// again as it reconnects).
    pub max_bytes: Option<u64>,
}

/// Options of [`Cache::set`]; build it like [`CacheOptions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Leave an existing value alone (and answer `false`).
    pub leave_if_not_null: bool,
}

/// This process's counters for one namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Values this process loaded.
    pub loads: u64,
    /// Loads that failed, here or in the process this one waited for.
    pub errors: u64,
}

/// The longest namespace name.
const MAX_NAMESPACE: usize = 128;

/// Namespace names become file names: keep them to a safe alphabet. The manager checks every
/// name it is sent by the same rule.
pub(crate) fn valid_namespace(ns: &str) -> std::result::Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= MAX_NAMESPACE
        && !ns.starts_with('.')
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        return Ok(());
    }
    // Named as given, but not at any length: the name may come from anyone.
    let mut end = ns.len().min(MAX_NAMESPACE);
    while !ns.is_char_boundary(end) {
        end -= 1;
    }
    let (shown, more) = (&ns[..end], if end < ns.len() { "…" } else { "" });
    Err(format!(
        "invalid cache namespace `{shown}{more}`: use 1 to {MAX_NAMESPACE} letters, digits, `-`, \
         `_` or `.`, not starting with `.`"
    ))
}

/// The cluster's name goes into Redis keys and `SCAN` patterns: the option's own check, for
/// [`enable`](super::enable), which takes it outside the options.
pub(crate) fn valid_cluster_name(name: &str) -> Result<()> {
    let spec = cluster2_options_schema::spec("cluster_name").expect("an option");
    spec.kind.check_text(name).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("invalid cluster name `{name}`: expected {}", spec.expected),
        )
    })
}

/// A namespace of the shared cache.
///
/// The name is 1 to 128 ASCII letters, digits, `-`, `_` or `.`, not starting with `.` (a
/// persisted namespace is a file of that name): anything else, a path like `../x` or `/x`
/// included, is refused with an error of kind [`ErrorKind::Config`].
pub async fn use_cache(namespace: &str, options: CacheOptions) -> Result<Cache> {
    valid_namespace(namespace).map_err(|e| Error::new(ErrorKind::Config, e))?;
    if options.max_entries == Some(0) || options.max_bytes == Some(0) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "use_cache(\"{namespace}\"): max_entries and max_bytes must be at least 1, or \
                 None for no bound"
            ),
        ));
    }
    let client = client()?;
    let wanted = NsOptions {
        persist: options.persist,
        expire_ms: options
            .expire
            .map(|d| d.as_millis().clamp(1, u128::from(u64::MAX)) as u64),
    };
    let wanted_bounds = NsBounds {
        max_entries: options.max_entries,
        max_bytes: options.max_bytes,
    };
    let op = Op::Use {
        ns: namespace.into(),
        options: wanted,
        bounds: wanted_bounds,
    };
    let what = format!("use_cache(\"{namespace}\")");
    let reply = client.call(op, client.timeout(), &what).await?;
    let Reply::Used {
        options,
        bounds,
        existed,
    } = reply
    else {
        return Err(unexpected(&what, &reply));
    };
    if existed && (options != wanted || bounds != wanted_bounds) {
        tracing::warn!(
            namespace,
            "cache namespace already in use with other options (persist {}, expire {:?}, \
             max_entries {:?}, max_bytes {:?}); keeping those",
            options.persist,
            options.expire_ms.map(Duration::from_millis),
            bounds.max_entries,
            bounds.max_bytes,
        );
    }
    client.remember(namespace, options, bounds);
    Ok(Cache {
        client: client.clone(),
        namespace: namespace.into(),
        options,
        bounds,
        timeout: client.timeout(),
        stats: stats_of(namespace),
    })
}

fn stats_of(ns: &str) -> Arc<Mutex<Stats>> {
    static STATS: OnceLock<Mutex<HashMap<String, Arc<Mutex<Stats>>>>> = OnceLock::new();
    STATS
        .get_or_init(Default::default)
        .lock()
        .expect("stats lock")
        .entry(ns.to_owned())
        .or_default()
        .clone()
}

/// Identifies a watch, for [`Cache::unwatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatchId(u64);

/// A handle on one namespace; cheap to clone.
#[derive(Clone, Debug)]
pub struct Cache {
    client: Backend,
    namespace: Arc<str>,
    options: NsOptions,
    bounds: NsBounds,
    timeout: Duration,
    stats: Arc<Mutex<Stats>>,
}

impl Cache {
    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The namespace's options (those of its first `use_cache`).
    pub fn options(&self) -> CacheOptions {
        CacheOptions {
            persist: self.options.persist,
            expire: self.options.expire_ms.map(Duration::from_millis),
            max_entries: self.bounds.max_entries,
            max_bytes: self.bounds.max_bytes,
        }
    }

    /// A handle whose operations time out after `timeout` instead of `cache.timeout`.
    pub fn wait(&self, timeout: Duration) -> Cache {
        Cache {
            timeout,
            ..self.clone()
        }
    }

    /// This process's counters for the namespace.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().expect("stats lock")
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().expect("stats lock"));
    }

    /// Names an operation in error messages; formatted only when there is an error.
    fn what<'a>(&'a self, op: &'static str, key: &'a str) -> What<'a> {
        What {
            op,
            key,
            namespace: &self.namespace,
        }
    }

    fn encode<T: Serialize>(&self, what: &What<'_>, value: &T) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::new(ErrorKind::Encode, format!("{what}: {e}")))?;
        if bytes.len() > self.client.max_value() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{what}: the value is {} bytes, more than cache.max_value ({} bytes)",
                    bytes.len(),
                    self.client.max_value()
                ),
            ));
        }
        let with_key = (what.key.len() + bytes.len()) as u64;
        if let Some(max) = self.bounds.max_bytes.filter(|&max| with_key > max) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{what}: the value is {with_key} bytes with its key, more than the \
                     namespace may hold (max_bytes: {max} bytes)"
                ),
            ));
        }
        Ok(bytes)
    }

    fn decode<T: DeserializeOwned>(&self, what: &What<'_>, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "{what}: the stored value is not a {}: {e}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// The value of `key`, loaded by `loader` if it is missing, once across the cluster.
    pub async fn get<T, F, Fut, E>(&self, key: &str, loader: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: std::fmt::Display,
    {
        let what = self.what("get", key);
        let lease = self.timeout.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let op = Op::Get {
            ns: (*self.namespace).into(),
            key: key.into(),
            lease_ms: Some(lease),
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        match self.client.call(op, self.timeout, &what).await? {
            Reply::Value(bytes) => {
                self.count(|s| s.hits += 1);
                self.decode(&what, &bytes)
            }
            Reply::LoadFailed(error) => {
                self.count(|s| s.errors += 1);
                Err(Error::new(
                    ErrorKind::Load,
                    format!("{what}: the loader (in another process) failed: {error}"),
                ))
            }
            Reply::Load { token, .. } => {
                self.count(|s| s.misses += 1);
                self.load(key, token, loader, deadline).await
            }
            other => Err(unexpected(&what, &other)),
        }
    }

    /// Runs the loader while holding the key's lock, then stores (or abandons) the value.
    async fn load<T, F, Fut, E>(
        &self,
        key: &str,
        token: u64,
        loader: F,
        deadline: tokio::time::Instant,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: std::fmt::Display,
    {
        use futures_util::FutureExt;
        let what = self.what("get", key);
        // If this future is dropped mid-load (the caller timed out or was cancelled), the lock
        // passes to a waiter instead of being held for the whole lease.
        let mut guard = LockGuard {
            cache: self,
            key,
            token,
            armed: true,
        };
        let loaded = std::panic::AssertUnwindSafe(loader()).catch_unwind();
        let loaded = match tokio::time::timeout_at(deadline, loaded).await {
            Ok(Ok(Ok(value))) => value,
            Ok(Ok(Err(e))) => {
                guard.armed = false;
                return Err(self
                    .abandon(key, token, format!("{what}: the loader failed: {e}"))
                    .await);
            }
            Ok(Err(_)) => {
                guard.armed = false;
                return Err(self
                    .abandon(key, token, format!("{what}: the loader panicked"))
                    .await);
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what}: the loader took longer than {}; another process may load it",
                        humantime::format_duration(self.timeout)
                    ),
                ));
            }
        };
        guard.armed = false;
        let value = match self.encode(&what, &loaded) {
            Ok(v) => v,
            Err(e) => return Err(self.abandon(key, token, e.to_string()).await),
        };
        self.count(|s| s.loads += 1);
        let op = Op::Fill {
            ns: (*self.namespace).into(),
            key: key.into(),
            token,
            value: value.into(),
        };
        if let Err(e) = self.client.call(op, self.timeout, &what).await {
            // The value is good; only sharing it failed. Whoever waited will load again.
            tracing::warn!("{what}: the loaded value could not be stored: {e}");
        }
        Ok(loaded)
    }

    async fn abandon(&self, key: &str, token: u64, error: String) -> Error {
        self.count(|s| s.errors += 1);
        let op = Op::Abandon {
            ns: (*self.namespace).into(),
            key: key.into(),
            token,
            error: (*error).into(),
        };
        let _ = self.client.call(op, self.timeout, &error).await;
        Error::new(ErrorKind::Load, error)
    }

    /// The value of `key`, if any; never loads.
    pub async fn peek<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let what = self.what("peek", key);
        let op = Op::Get {
            ns: (*self.namespace).into(),
            key: key.into(),
            lease_ms: None,
        };
        match self.client.call(op, self.timeout, &what).await? {
            Reply::Value(bytes) => {
                self.count(|s| s.hits += 1);
                self.decode(&what, &bytes).map(Some)
            }
            Reply::Miss => {
                self.count(|s| s.misses += 1);
                Ok(None)
            }
            other => Err(unexpected(&what, &other)),
        }
    }

    /// Stores `value` under `key`; `false` if `leave_if_not_null` kept an existing value.
    pub async fn set<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        options: SetOptions,
    ) -> Result<bool> {
        let what = self.what("set", key);
        let op = Op::Set {
            ns: (*self.namespace).into(),
            key: key.into(),
            value: self.encode(&what, value)?.into(),
            leave_if_not_null: options.leave_if_not_null,
        };
        match self.client.call(op, self.timeout, &what).await? {
            Reply::Done(accepted) => Ok(accepted),
            other => Err(unexpected(&what, &other)),
        }
    }

    /// Deletes `key`; returns the value it had.
    pub async fn del<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let what = self.what("del", key);
        let op = Op::Del {
            ns: (*self.namespace).into(),
            key: key.into(),
        };
        match self.client.call(op, self.timeout, &what).await? {
            Reply::Old(None) => Ok(None),
            Reply::Old(Some(bytes)) => self.decode(&what, &bytes).map(Some),
            other => Err(unexpected(&what, &other)),
        }
    }

    /// The keys that have a value.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let what = format!("keys of cache `{}`", self.namespace);
        let op = Op::Keys {
            ns: (*self.namespace).into(),
        };
        match self.client.call(op, self.timeout, &what).await? {
            Reply::Keys(mut keys) => {
                keys.sort();
                Ok(keys)
            }
            other => Err(unexpected(&what, &other)),
        }
    }

    /// Calls `f` on every change of `key` (or of every key, with `None`) made by any process:
    /// sets, deletes, expiries and evictions (`None`). A value that does not decode into `T` is logged
    /// and skipped. Runs on the connection's task: keep it short.
    pub fn watch<T, F>(&self, key: Option<&str>, f: F) -> WatchId
    where
        T: DeserializeOwned + 'static,
        F: Fn(&str, Option<T>) + Send + Sync + 'static,
    {
        let namespace = self.namespace.clone();
        let _type = PhantomData::<fn() -> T>;
        let callback = move |key: &str, value: Option<&[u8]>| match value {
            None => f(key, None),
            Some(bytes) => match serde_json::from_slice::<T>(bytes) {
                Ok(v) => f(key, Some(v)),
                Err(e) => tracing::warn!(
                    namespace = %namespace,
                    key,
                    "a watched value is not a {}: {e}",
                    std::any::type_name::<T>()
                ),
            },
        };
        WatchId(
            self.client
                .watch(&self.namespace, key.map(str::to_owned), Arc::new(callback)),
        )
    }

    /// Removes a watch; `false` if it was not registered on this namespace.
    pub fn unwatch(&self, id: WatchId) -> bool {
        self.client.unwatch(&self.namespace, id.0)
    }
}

/// Passes a held lock on when a load is cancelled.
struct LockGuard<'a> {
    cache: &'a Cache,
    key: &'a str,
    token: u64,
    armed: bool,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let client = self.cache.client.clone();
        let op = Op::Release {
            ns: self.cache.namespace.to_string().into(),
            key: self.key.to_owned().into(),
            token: self.token,
        };
        let timeout = self.cache.timeout;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = client.call(op, timeout, "release a cache lock").await;
            });
        }
    }
}
