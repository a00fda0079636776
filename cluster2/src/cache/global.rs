//! This process's cache, process-wide: its one backend, set by `connect` (the local manager)
//! or `connect_redis` in a cluster (workers and the master), or by [`enable`] without one;
//! `start_manager`, which runs a manager task in this process (for `enable`, and in the master
//! with `cache.mode = "master"`; the standalone manager is `process`); the flag that says this
//! process is stopping; and the figures for every namespace, with the backend's state.
//!
//! The user's operations are in `handle`, which reaches the client through `client()`; what a
//! manager does once started is `manager`'s business, never this file's.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::backend::Backend;
use super::client::Client;
use super::errors::unexpected;
use super::manager;
use super::protocol::{NsFigures, Op, Reply};
use crate::error::{Error, ErrorKind, Result};

/// The cache of a process outside a cluster; see [`enable`]. Build it like
/// [`CacheOptions`](super::CacheOptions).
#[derive(Clone, Debug)]
pub struct Config {
    /// `local`: a cache manager inside this process; or the URL of a Redis server
    /// (`redis://host:port/db`, `rediss://…`, `redis+unix:///path`), shared with every
    /// process that uses the same server and cluster name.
    pub backend: String,
    /// With a Redis backend: the prefix of every key and channel (the option `cluster_name`).
    pub cluster_name: String,
    /// Where the manager listens; `None`: a fresh private directory.
    pub socket: Option<PathBuf>,
    /// Where persistent namespaces are kept.
    pub persist_path: PathBuf,
    /// The largest value, in bytes.
    pub max_value: usize,
    /// The most memory the entries may take, in bytes (see `cache.max_memory`); past it the
    /// least recently used are evicted.
    pub max_memory: u64,
    /// The most clients the manager serves at once.
    pub max_connections: usize,
    /// Default timeout of every operation.
    pub timeout: Duration,
    /// The longest a loader holds a key's lock, whatever its call's timeout.
    pub max_lease: Duration,
}

impl Default for Config {
    /// The defaults of the `cache.*` options.
    fn default() -> Self {
        let options = crate::options::CacheSettings::default();
        Self {
            backend: "local".to_owned(),
            cluster_name: "cluster2".to_owned(),
            socket: None,
            persist_path: PathBuf::from(options.persist_path),
            max_value: options.max_value as usize,
            max_memory: options.max_memory,
            max_connections: options.max_connections as usize,
            timeout: options.timeout,
            max_lease: options.max_lease,
        }
    }
}

static CLIENT: OnceLock<Backend> = OnceLock::new();

/// Set when this process is stopping: losing the manager is then expected, not news.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn stopping() {
    STOPPING.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn is_stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Connects this process to the cluster's manager (workers and the master).
pub(crate) fn connect(socket: PathBuf, max_value: usize, timeout: Duration) {
    let _ = CLIENT.set(Backend::Local(Client::new(socket, max_value, timeout)));
}

/// Connects this process to the cache on the Redis server at `url` (workers and the master,
/// with `cache.backend` set to a URL); needs a tokio runtime.
pub(crate) fn connect_redis(
    url: &str,
    cluster: &str,
    max_value: usize,
    timeout: Duration,
    max_lease: Duration,
) -> Result<()> {
    let cache = super::redis::RedisCache::connect(url, cluster, max_value, timeout, max_lease)?;
    let _ = CLIENT.set(Backend::Redis(cache));
    Ok(())
}

pub(super) fn client() -> Result<&'static Backend> {
    CLIENT.get().ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "the cache is not enabled in this process: run in a cluster with cache.enable = \
             true, or call cluster2::cache::enable first",
        )
    })
}

/// The cache without a cluster: runs a cache manager inside this process and connects this
/// process to it, or, with a Redis `backend`, connects to that server. Needs a tokio runtime;
/// fails if this process already has a cache, or if the backend is neither `local` nor a
/// Redis URL.
pub async fn enable(config: Config) -> Result<()> {
    if CLIENT.get().is_some() {
        return Err(Error::new(
            ErrorKind::Config,
            "the cache is already enabled in this process",
        ));
    }
    if config.backend != "local" {
        let spec = cluster2_options_schema::spec("cache.backend").expect("an option");
        if spec.kind.check_text(&config.backend).is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "invalid cache backend `{}`: expected {}",
                    cluster2_options_schema::redact_url(&config.backend),
                    spec.expected
                ),
            ));
        }
        crate::backend::check_url(&config.backend).map_err(|e| Error::new(ErrorKind::Config, e))?;
        super::handle::valid_cluster_name(&config.cluster_name)?;
        return connect_redis(
            &config.backend,
            &config.cluster_name,
            config.max_value,
            config.timeout,
            config.max_lease,
        );
    }
    let socket = match config.socket {
        Some(s) => s,
        None => crate::runtime_dir::create()?.join("cache.sock"),
    };
    let manager = manager::ManagerConfig {
        persist_path: config.persist_path,
        max_value: config.max_value,
        max_memory: config.max_memory,
        max_connections: config.max_connections.max(1),
        max_lease: config.max_lease,
        frame_timeout: config.timeout,
    };
    start_manager(&socket, manager)?;
    connect(socket, config.max_value, config.timeout);
    Ok(())
}

/// Starts a manager task in this process on `socket`.
pub(crate) fn start_manager(socket: &Path, config: manager::ManagerConfig) -> Result<()> {
    let persist_path = config.persist_path.clone();
    let manager = manager::Manager::load(config).map_err(|e| {
        Error::new(
            ErrorKind::Cache,
            format!("cannot reload the cache from {}", persist_path.display()),
        )
        .with_source(e)
    })?;
    let listener = manager::bind(socket).map_err(|e| {
        Error::new(
            ErrorKind::Bind,
            format!("cannot listen on the cache socket {}", socket.display()),
        )
        .with_source(e)
    })?;
    tokio::spawn(manager.serve(listener, tokio_util::sync::CancellationToken::new()));
    Ok(())
}

/// The figures of every namespace: the manager's, or with a Redis backend the whole fleet's.
pub async fn manager_stats() -> Result<Vec<NsFigures>> {
    let client = client()?;
    let timeout = client.timeout().min(Duration::from_secs(2));
    match client.call(Op::Stats, timeout, "cache stats").await? {
        Reply::Stats(all) => Ok(all),
        other => Err(unexpected("cache stats", &other)),
    }
}

/// Where this process's cache lives, as the monitor shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackendState {
    /// `local` or `redis`.
    pub(crate) kind: &'static str,
    /// The Redis URL without its password; `None` for the local manager.
    pub(crate) url: Option<String>,
    /// With Redis: whether this process's subscription connection is up (it pings every few
    /// seconds). `None` for the local manager, whose state its answer shows.
    pub(crate) connected: Option<bool>,
}

/// Where this process's cache lives; `None` without a cache.
pub(crate) fn backend_state() -> Option<BackendState> {
    Some(match CLIENT.get()? {
        Backend::Local(_) => BackendState {
            kind: "local",
            url: None,
            connected: None,
        },
        Backend::Redis(r) => BackendState {
            kind: "redis",
            url: Some(r.shown().to_owned()),
            connected: Some(r.is_connected()),
        },
    })
}
