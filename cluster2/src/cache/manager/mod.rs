//! The cache manager: owns every namespace, serves clients on a Unix socket, and coordinates
//! loads so that a missing key is loaded once across the whole cluster (single flight: see
//! `locks`).
//!
//! This file starts and stops it, the same wherever it runs (the standalone process in
//! `cache::process`, which adds the busy poll, or inside the master or a plain process through
//! `cache::start_manager`): reloading the persisted namespaces, binding the socket, accepting
//! connections until told to stop, and syncing the logs on the way out. What a request does,
//! how a connection is served and what the sweep removes live in the files beside it.
//!
//! State lives behind one mutex, held only for map operations; every connection has its own
//! task, which encodes and writes outside the lock.

mod connection; // one client's task: frames in, answers out, back-pressure, departure
mod locks; // single flight: each key's lock, its lease, the parked waiters, hand-overs
mod namespace; // one namespace's entries, expiry queue, log and figures
mod state; // the shared state and what each request does to it
mod sweep; // the periodic expiry and lease sweep, and log syncing

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::busy_poll::BusyPoll;
use super::persist::{self, Log};
use namespace::{Expiry, Namespace};
use state::State;

/// What a manager needs to know.
#[derive(Clone, Debug)]
pub(crate) struct ManagerConfig {
    pub(crate) persist_path: PathBuf,
    pub(crate) max_value: usize,
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
}

/// Binds the manager's socket in a private directory, replacing a stale socket file.
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    // Created 0600 before it listens: `runtime_dir` owns the socket's privacy.
    let listener = crate::runtime_dir::listen(path)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}
