//! Where this process's cache lives: the cluster's local manager (over its Unix socket), or a
//! Redis server shared by every host (`cache.backend`). The handle asks either the same
//! questions (`protocol::Op`) and gets the same answers (`protocol::Reply`), so it never knows
//! which it talks to; this enum is the whole seam.

use std::time::Duration;

use super::client::{Client, WatchFn};
use super::protocol::{NsBounds, NsOptions, Op, Reply};
use super::redis::RedisCache;
use crate::error::Result;

/// This process's cache; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// The cache manager of this host.
    Local(Client),
    /// A Redis server that every host shares.
    Redis(RedisCache),
}

impl Backend {
    pub(crate) fn max_value(&self) -> usize {
        match self {
            Backend::Local(c) => c.max_value(),
            Backend::Redis(r) => r.max_value(),
        }
    }

    /// The default timeout of every operation (`cache.timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        match self {
            Backend::Local(c) => c.timeout(),
            Backend::Redis(r) => r.timeout(),
        }
    }

    /// Runs `op` within `timeout`; errors name `what` was asked.
    pub(crate) async fn call(
        &self,
        op: Op<'_>,
        timeout: Duration,
        what: &(impl std::fmt::Display + ?Sized),
    ) -> Result<Reply> {
        match self {
            Backend::Local(c) => c.call(op, timeout, what).await,
            Backend::Redis(r) => r.call(op, timeout, what).await,
        }
    }

    /// Remembers a namespace's options and bounds (declared again after a reconnect).
    pub(crate) fn remember(&self, ns: &str, options: NsOptions, bounds: NsBounds) {
        match self {
            Backend::Local(c) => c.remember(ns, options, bounds),
            // Redis has no bounds per namespace: see `redis::RedisCache::declare`.
            Backend::Redis(r) => r.remember(ns, options),
        }
    }

    pub(crate) fn watch(&self, ns: &str, key: Option<String>, callback: WatchFn) -> u64 {
        match self {
            Backend::Local(c) => c.watch(ns, key, callback),
            Backend::Redis(r) => r.watch(ns, key, callback),
        }
    }

    pub(crate) fn unwatch(&self, ns: &str, id: u64) -> bool {
        match self {
            Backend::Local(c) => c.unwatch(ns, id),
            Backend::Redis(r) => r.unwatch(ns, id),
        }
    }
}
