//! The cache manager: owns every namespace, serves clients on a Unix socket, and coordinates
//! loads so that a missing key is loaded once across the whole cluster (single flight: see
//! `locks`).
//!
//! This file starts and stops it, the same wherever it runs (the standalone process in
//! `cache::process`, which adds the busy poll, or inside the master or a plain process through
//! `cache::start_manager`): reloading the persisted namespaces, binding the socket, accepting
//! connections until told to stop (and refusing those past `cache.max_connections`), and
//! syncing the logs on the way out. What a request does, how a connection is served, what the
//! sweep removes and what is evicted live in the files beside it.
//!
//! State lives behind one mutex, held only for map operations; every connection has its own
//! task, which encodes and writes outside the lock.

mod connection; // one client's task: frames in, answers out, back-pressure, bounds, departure
mod evict; // cache.max_memory and namespace bounds: sampled LRU eviction, values too large
mod locks; // single flight: each key's lock, its lease, the parked waiters, hand-overs
mod namespace; // one namespace's entries, expiry queue, log, figures and weight
mod state; // the shared state and what each request does to it
mod sweep; // the periodic expiry and lease sweep, and log syncing

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::busy_poll::BusyPoll;
use super::persist::{self, Log};
use super::protocol::{Message, NsBounds};
use namespace::{Expiry, Meter, Namespace};
use state::State;

/// What a manager needs to know (the `cache.*` options).
#[derive(Clone, Debug)]
pub(crate) struct ManagerConfig {
    pub(crate) persist_path: PathBuf,
    pub(crate) max_value: usize,
    /// What the values of every namespace may weigh together.
    pub(crate) max_memory: u64,
    /// Clients served at once.
    pub(crate) max_connections: usize,
    /// The longest lease a loader gets.
    pub(crate) max_lease: Duration,
    /// How long a request may take to arrive once it began (the clients' `cache.timeout`).
    pub(crate) frame_timeout: Duration,
}

impl ManagerConfig {
    /// The manager the `cache.*` options describe.
    pub(crate) fn from_options(settings: &crate::options::CacheSettings) -> Self {
        Self {
            persist_path: settings.persist_path.clone().into(),
            max_value: settings.max_value as usize,
            max_memory: settings.max_memory,
            max_connections: settings.max_connections as usize,
            max_lease: settings.max_lease,
            frame_timeout: settings.timeout,
        }
    }
}

/// A running manager.
#[derive(Clone)]
pub(crate) struct Manager {
    state: Arc<Mutex<State>>,
    next_conn: Arc<AtomicU64>,
    /// Connections being served.
    served: Arc<AtomicUsize>,
    /// The standalone manager's wait before sleeping, which watches every client socket.
    busy_poll: Option<Arc<BusyPoll>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager with every persisted namespace reloaded from `config.persist_path`.
    pub(crate) fn load(config: ManagerConfig) -> std::io::Result<Self> {
        let mut namespaces = indexmap::IndexMap::new();
        let meter = Meter::default();
        let mut seq = 1;
        for (name, options, entries) in persist::load_all(&config.persist_path)? {
            let mut ns = Namespace::new(&name, options, NsBounds::default(), &meter);
            let now = (Instant::now(), SystemTime::now());
            for e in entries {
                let expiry = e.expires_at.map(|t| Expiry {
                    at: now.0 + t.duration_since(now.1).unwrap_or(Duration::ZERO),
                    seq,
                });
                // Reloaded entries count as used in the order they come back.
                ns.put(&e.key, Bytes::from(e.value), expiry, seq);
                seq += 1;
            }
            ns.log = Some(Log::open(&config.persist_path, &name, options)?);
            tracing::info!(
                namespace = %name,
                entries = ns.entries.len(),
                "cache namespace reloaded from disk"
            );
            namespaces.insert(name, ns);
        }
        let mut state = State {
            namespaces,
            conns: HashMap::new(),
            watchers: HashMap::new(),
            leases: BTreeMap::new(),
            next_token: seq,
            config,
            meter,
            clock: seq,
            rng: evict::Rng::new(),
        };
        // Persisted under a larger `cache.max_memory`, or on a larger machine: keep what fits.
        let before = state.meter.get();
        state.fit_memory(None);
        if state.meter.get() < before {
            tracing::warn!(
                "the reloaded cache was larger than cache.max_memory ({} bytes); evicted entries \
                 to fit",
                state.config.max_memory
            );
        }
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            next_conn: Arc::new(AtomicU64::new(1)),
            served: Arc::new(AtomicUsize::new(0)),
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
        let max_connections = self
            .state
            .lock()
            .expect("cache lock")
            .config
            .max_connections;
        let mut refusals = Refusals::default();
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
            if self.served.load(Ordering::Relaxed) >= max_connections {
                refusals.refuse(stream, max_connections);
                continue;
            }
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            self.served.fetch_add(1, Ordering::Relaxed);
            let manager = self.clone();
            tokio::spawn(async move {
                manager.clone().connection(id, stream).await;
                manager.served.fetch_sub(1, Ordering::Relaxed);
            });
        }
        sweeper.abort();
        let mut state = self.state.lock().expect("cache lock");
        for ns in state.namespaces.values_mut() {
            if let Some(log) = &mut ns.log {
                let _ = log.sync();
            }
        }
    }
}

/// Connections refused for `cache.max_connections`, told why and closed; logged once per
/// burst rather than once each.
#[derive(Debug, Default)]
struct Refusals {
    /// Refused since the last line logged, and when that was.
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// At most one line about refused connections per this long.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

impl Refusals {
    fn refuse(&mut self, stream: tokio::net::UnixStream, max: usize) {
        let reason =
            format!("the cache manager serves {max} connections already (cache.max_connections)");
        // Best effort, without waiting: a fresh socket has room for one short frame.
        let frame = crate::ipc::frame::encode_frame(&Message::Refused(reason.clone()));
        let _ = stream.try_write(&frame);
        drop(stream);
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|at| at.elapsed() >= REFUSALS_LOGGED_EVERY)
        {
            tracing::warn!(refused = self.unlogged, "refused cache clients: {reason}");
            self.unlogged = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}

/// Binds the manager's socket in a private directory, replacing a stale socket file.
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    // Created 0600 before it listens: `runtime_dir` owns the socket's privacy.
    let listener = crate::runtime_dir::listen(path)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}
