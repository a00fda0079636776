//! A cache shared by every process of the cluster, which loads each missing value once.
//!
//! ```no_run
//! use std::time::Duration;
//! use cluster2::cache::{self, CacheOptions, SetOptions};
//!
//! # #[derive(serde::Serialize, serde::Deserialize, Clone)] struct User { name: String }
//! # async fn load_user(id: u64) -> Result<User, std::io::Error> { unimplemented!() }
//! # async fn demo() -> cluster2::Result<()> {
//! let users = cache::use_cache(
//!     "users",
//!     CacheOptions { persist: true, expire: Some(Duration::from_secs(60)), ..Default::default() },
//! )
//! .await?;
//! // Loaded once across the whole cluster, however many workers ask at the same time.
//! let u: User = users.get("u:42", || load_user(42)).await?;
//! let maybe: Option<User> = users.peek("u:42").await?;
//! let accepted = users.set("u:42", &u, SetOptions { leave_if_not_null: true }).await?;
//! let old: Option<User> = users.del("u:42").await?;
//! let w = users.watch(Some("u:42"), |key: &str, value: Option<User>| { /* every change */ });
//! users.unwatch(w);
//! # Ok(()) }
//! ```
//!
//! The cache lives in a manager process (`cache.mode = "standalone"`, the default, supervised
//! and restarted by the master) or inside the master (`cache.mode = "master"`), and is reached
//! over a Unix socket in a private directory (mode 0700). [`enable`] runs a manager inside a
//! plain process, for using the cache without a cluster (tests, tools).
//!
//! With `cache.backend` set to a Redis URL, the same API and promises hold across every
//! process of every host that uses the server and the same `cluster_name`; what differs
//! (the lock is not mutual exclusion, `persist` is the server's durability, expiry events)
//! is in the README's "Beyond one host" and in `redis/mod.rs`.
//!
//! - Values are any serde type, stored as JSON: `null`, `false`, `0` and `""` come back as
//!   they went in, and a missing key (`None` from [`Cache::peek`]) is distinct from a stored
//!   `null` (`Some(None)` when reading an `Option`).
//! - [`Cache::get`] with a loader is single-flight across the cluster: one caller loads, the
//!   others wait at the manager and receive the value. If the loader returns an error or
//!   panics, its caller and every waiter get the error and the key stays unset. If the loading
//!   process dies, or its load outlives its lease (the call's timeout), a waiter loads instead.
//! - Every operation has a timeout: `cache.timeout` by default, or [`Cache::wait`] per call;
//!   when the manager is unreachable the call fails with a clear error, it never hangs.
//! - A namespace's options are decided by the first `use_cache` of it; a later one with other
//!   options gets the existing ones, with a warning.
//! - Expiry: an expired entry is never returned; a background sweep removes expired entries
//!   and notifies watchers.
//! - Persistence: a persistent namespace survives manager restarts, crashes and SIGKILL (see
//!   the log format in `persist/format.rs`). A damaged log loses only its damaged records,
//!   reported in the log with a copy of the file kept beside it. Other namespaces start empty
//!   after a restart.
//! - Memory: the cache holds at most `cache.max_memory` (by default a quarter of the memory of
//!   the machine or of its cgroup), and a namespace at most its own bounds
//!   ([`CacheOptions::max_entries`], [`CacheOptions::max_bytes`]). Past them the least
//!   recently used entries are evicted (approximately, by sampling, as Redis does), never one
//!   whose load is in flight; watchers are told as for a delete, `/caches` and `/metrics`
//!   count the evictions, and a value that alone could never fit is refused with an error.
//! - The manager trusts no client: names are checked, a lease lasts at most `cache.max_lease`,
//!   connections past `cache.max_connections` are refused, and what a client sends or leaves
//!   unread costs the manager bounded memory.

mod backend; // the seam: the local manager's client or Redis, asked and answering alike
mod busy_poll; // the standalone manager's short wait for the next request before sleeping
mod client; // a process's one connection to the manager: reconnects, timeouts, watches
mod errors; // how cache errors name the operation, key and namespace that failed
mod global; // this process's one client (connect, enable), an in-process manager, stopping flag
pub(crate) mod handle; // the user's API: use_cache, the Cache handle and its operations, options, counters
pub(crate) mod manager; // the owning side: namespaces, single-flight loads, expiry
pub(crate) mod persist; // the append-only logs persistent namespaces survive restarts in, and their files' safety
pub(crate) mod process; // the standalone manager process, started by the master
pub(crate) mod protocol; // what clients and the manager say to each other
mod redis; // the cache on a Redis server shared by every host (cache.backend = a Redis URL)
mod request_writer; // client requests written by the calling task, batched when contended

// The public API is defined in `handle` and `global`, and re-exported here so that users see
// one flat `cluster2::cache`.
pub use global::{Config, enable, manager_stats};
pub use handle::{Cache, CacheOptions, SetOptions, Stats, WatchId, use_cache};
pub use protocol::NsFigures;

pub(crate) use global::{
    backend_state, connect, connect_redis, is_stopping, start_manager, stopping,
};
