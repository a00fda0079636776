//! A Redis server that the hosts of a cluster share: what `cache.backend` and `emitter.backend`
//! name when they are not `local`. This room owns the URL (checked when options are read,
//! shown without its password), this process's connections to the server (one connection for
//! commands, kept by redis-rs's connection manager, and one for subscriptions, kept by
//! `subscriber`), and the wording of every error about it, which names the server.
//!
//! The client is redis-rs (`redis`), the maintained Rust client (fred, the other one, has had
//! no release since early 2025): its tokio connection manager multiplexes every command of the
//! process on one connection (pipelining what concurrent callers send) and reconnects by
//! itself; scripts carry the compare-and-delete of the cache's locks. What it leaves to us is
//! a subscription connection that comes back on its own with every channel, which
//! `subscriber` does.
//!
//! One process talks to one server through one `Redis`, whoever asks for it: the cache and the
//! emitter share it when their URLs are the same.

pub(crate) mod subscriber;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, ErrorKind};
pub(crate) use subscriber::Subscriber;

/// Reads a backend URL as the client will (host, port, database, TLS), for the options' check:
/// the message says what is wrong, without the password.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let expected = cluster2_options_schema::spec("cache.backend").map_or("", |s| s.expected);
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("the Redis client cannot use this URL ({e}); expected {expected}"))
}

/// The longest a connection attempt may take; a call's own timeout is shorter when it is.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One Redis server as this process uses it; cheap to clone.
#[derive(Clone)]
pub(crate) struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL as it may be shown: without its password.
    shown: String,
    commands: ConnectionManager,
    subscriber: Subscriber,
    /// The database the URL names: expiry events are published per database.
    db: i64,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// This process's connections to the server at `url`, made on first use (needs a tokio
    /// runtime). Nothing is connected yet: the first command connects, and a server that is
    /// down now is only an error for the calls made while it is.
    pub(crate) fn shared(url: &str) -> crate::Result<Redis> {
        static SERVERS: OnceLock<Mutex<HashMap<String, Redis>>> = OnceLock::new();
        let mut servers = SERVERS
            .get_or_init(Default::default)
            .lock()
            .expect("redis servers lock");
        if let Some(redis) = servers.get(url) {
            return Ok(redis.clone());
        }
        let redis = Self::connect(url)?;
        servers.insert(url.to_owned(), redis.clone());
        Ok(redis)
    }

    fn connect(url: &str) -> crate::Result<Redis> {
        let shown = cluster2_options_schema::redact_url(url);
        if url.starts_with("rediss://") {
            // redis-rs leaves the choice of rustls's cryptography to the application; an
            // application that chose already keeps its choice.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("invalid Redis URL `{shown}`: {e}"),
            )
        })?;
        let db = client.get_connection_info().redis_settings().db();
        // Few, quick retries: a call during an outage should fail with a clear error at once,
        // not wait out a back-off; the next call tries again.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Every call is bounded by its own timeout, above redis-rs.
            .set_response_timeout(None);
        let commands =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot set up the connection to Redis at {shown}: {e}"),
                )
            })?;
        let subscriber = Subscriber::start(client, shown.clone(), CONNECT_TIMEOUT);
        Ok(Redis {
            inner: Arc::new(Inner {
                shown,
                commands,
                subscriber,
                db,
            }),
        })
    }

    /// The URL, without its password.
    pub(crate) fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// The database number of the URL.
    pub(crate) fn db(&self) -> i64 {
        self.inner.db
    }

    /// The command connection (a clone shares it).
    pub(crate) fn commands(&self) -> ConnectionManager {
        self.inner.commands.clone()
    }

    pub(crate) fn subscriber(&self) -> &Subscriber {
        &self.inner.subscriber
    }

    /// The error for `what` (an operation, as messages name it) that failed with `e`: the
    /// server unreachable, or its refusal, naming the server.
    pub(crate) fn error(
        &self,
        role: &str,
        what: &(impl std::fmt::Display + ?Sized),
        e: &redis::RedisError,
    ) -> Error {
        if is_connection_error(e) {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what}: the {role} backend, Redis at {}, is unreachable ({e})",
                    self.inner.shown
                ),
            )
        } else {
            Error::new(
                ErrorKind::Cache,
                format!(
                    "{what}: the {role} backend, Redis at {}, answered with an error: {e}",
                    self.inner.shown
                ),
            )
        }
    }

    /// The error for `what` that had no answer within `timeout`.
    pub(crate) fn timeout(
        &self,
        role: &str,
        what: &(impl std::fmt::Display + ?Sized),
        timeout: Duration,
    ) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "{what}: no answer from the {role} backend, Redis at {}, within {}",
                self.inner.shown,
                humantime::format_duration(timeout)
            ),
        )
    }
}

/// Whether `e` says the server could not be reached or the connection broke, rather than that
/// the server refused the command.
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.is_timeout()
}
