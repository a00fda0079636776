//! One namespace in the manager: its entries, the queue of their expiry times, its log, and
//! its figures, with the operations that keep entries and queue in step (a value written or
//! taken also moves its expiry).
//!
//! Plain data: who may load a key, who waits for it and who is told of a change is decided by
//! the shared state (`state`, `locks`), never here; an entry only carries its lock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::locks::Lock;
use crate::cache::persist::Log;
use crate::cache::protocol::{NsFigures, NsOptions};

pub(super) struct Entry {
    pub(super) value: Option<Bytes>,
    /// When the value expires; also its place in the namespace's expiry queue.
    pub(super) expiry: Option<Expiry>,
    pub(super) lock: Option<Lock>,
}

impl Entry {
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e.at <= now)
    }
}

/// An expiry time, made unique by a sequence number so that it can key the expiry queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Expiry {
    pub(super) at: Instant,
    pub(super) seq: u64,
}

pub(super) struct Namespace {
    pub(super) options: NsOptions,
    pub(super) entries: HashMap<String, Entry>,
    /// The keys of entries that expire, soonest first: the sweep takes what is due without
    /// walking the namespace.
    pub(super) expiries: BTreeMap<Expiry, String>,
    pub(super) log: Option<Log>,
    pub(super) figures: NsFigures,
}

impl Namespace {
    pub(super) fn new(name: &str, options: NsOptions) -> Self {
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

    pub(super) fn live_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k.len() + v.len()) as u64))
            .sum()
    }

    /// Gives `key` the value `value`, expiring as the namespace says; returns the key's lock,
    /// which the value ends.
    pub(super) fn put(&mut self, key: &str, value: Bytes, expiry: Option<Expiry>) -> Option<Lock> {
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
    pub(super) fn take(&mut self, key: &str) -> Option<Bytes> {
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
    // Inline: it runs on every write and almost always returns at its first check.
    #[inline]
    pub(super) fn maybe_compact(&mut self) {
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
