//! One namespace in the manager: its entries, the queue of their expiry times, its log, its
//! figures, and what its values weigh, with the operations that keep all of them in step (a
//! value written or taken also moves its expiry and its weight).
//!
//! Plain data: who may load a key, who waits for it, who is told of a change and what is
//! evicted is decided by the shared state (`state`, `locks`, `evict`), never here; an entry
//! only carries its lock and when it was last used.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use indexmap::IndexMap;

use super::locks::Lock;
use crate::cache::persist::Log;
use crate::cache::protocol::{NsBounds, NsFigures, NsOptions};

pub(super) struct Entry {
    pub(super) value: Option<Bytes>,
    /// When the value expires; also its place in the namespace's expiry queue.
    pub(super) expiry: Option<Expiry>,
    pub(super) lock: Option<Lock>,
    /// The manager's clock when the value was last read or written: eviction takes the
    /// smallest of a sample.
    pub(super) used: u64,
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

/// What the manager's own structures cost per entry with a value, on top of its key and value:
/// the entry itself in the map and its index, the two allocations' headers, and (for an entry
/// that expires) its place in the expiry queue. An estimate, held to the real figure by a
/// test; what `cache.max_memory` counts besides keys and values.
pub(crate) const ENTRY_OVERHEAD: u64 = std::mem::size_of::<(u64, String, Entry)>() as u64 + 48;
const EXPIRY_OVERHEAD: u64 = 64;

/// What the values of every namespace weigh together, for `cache.max_memory`: each namespace
/// adds and takes away its own as values come and go. Only ever changed under the manager's
/// lock; atomic so that namespaces can share it.
#[derive(Clone, Debug, Default)]
pub(super) struct Meter(Arc<AtomicU64>);

impl Meter {
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(super) struct Namespace {
    pub(super) options: NsOptions,
    pub(super) bounds: NsBounds,
    /// Whether a client declared it since this manager started. One reloaded from disk, or
    /// made by a request that came before its `use_cache`, takes its bounds from the first
    /// declaration.
    pub(super) declared: bool,
    /// In an order eviction can sample by position.
    pub(super) entries: IndexMap<String, Entry>,
    /// The keys of entries that expire, soonest first: the sweep takes what is due without
    /// walking the namespace.
    pub(super) expiries: std::collections::BTreeMap<Expiry, String>,
    pub(super) log: Option<Log>,
    pub(super) figures: NsFigures,
    /// Entries with a value, and the bytes of their keys and values.
    live: u64,
    bytes: u64,
    meter: Meter,
}

impl Namespace {
    pub(super) fn new(name: &str, options: NsOptions, bounds: NsBounds, meter: &Meter) -> Self {
        Self {
            options,
            bounds,
            declared: false,
            entries: IndexMap::new(),
            expiries: std::collections::BTreeMap::new(),
            log: None,
            figures: NsFigures {
                namespace: name.to_owned(),
                persist: options.persist,
                expire_ms: options.expire_ms,
                ..NsFigures::default()
            },
            live: 0,
            bytes: 0,
            meter: meter.clone(),
        }
    }

    /// Entries with a value.
    pub(super) fn live(&self) -> u64 {
        self.live
    }

    /// Bytes of the keys and values of the entries with a value.
    pub(super) fn live_bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the namespace holds more than its bounds allow.
    pub(super) fn over_bounds(&self) -> bool {
        self.bounds.max_entries.is_some_and(|max| self.live > max)
            || self.bounds.max_bytes.is_some_and(|max| self.bytes > max)
    }

    /// What a value weighs against `cache.max_memory`.
    pub(super) fn weight(key: &str, value: usize, expires: bool) -> u64 {
        key.len() as u64
            + value as u64
            + ENTRY_OVERHEAD
            + if expires {
                key.len() as u64 + EXPIRY_OVERHEAD
            } else {
                0
            }
    }

    fn counted(&mut self, key: &str, value: usize, expires: bool, added: bool) {
        let bytes = (key.len() + value) as u64;
        let weight = Self::weight(key, value, expires);
        if added {
            self.live += 1;
            self.bytes += bytes;
            self.meter.0.fetch_add(weight, Ordering::Relaxed);
        } else {
            self.live -= 1;
            self.bytes -= bytes;
            self.meter.0.fetch_sub(weight, Ordering::Relaxed);
        }
    }

    /// Gives `key` the value `value`, expiring as the namespace says, last used at `now`;
    /// returns the key's lock, which the value ends, and the entry's position.
    pub(super) fn put(
        &mut self,
        key: &str,
        value: Bytes,
        expiry: Option<Expiry>,
        now: u64,
    ) -> (Option<Lock>, usize) {
        if let Some(e) = expiry {
            self.expiries.insert(e, key.to_owned());
        }
        let len = value.len();
        let (old, lock, index) = match self.entries.get_full_mut(key) {
            Some((index, _, entry)) => {
                let old_expiry = std::mem::replace(&mut entry.expiry, expiry);
                if let Some(old) = old_expiry {
                    self.expiries.remove(&old);
                }
                entry.used = now;
                let old = entry.value.replace(value);
                (
                    old.map(|v| (v.len(), old_expiry.is_some())),
                    entry.lock.take(),
                    index,
                )
            }
            None => {
                let entry = Entry {
                    value: Some(value),
                    expiry,
                    lock: None,
                    used: now,
                };
                let (index, _) = self.entries.insert_full(key.to_owned(), entry);
                (None, None, index)
            }
        };
        if let Some((old, expired)) = old {
            self.counted(key, old, expired, false);
        }
        self.counted(key, len, expiry.is_some(), true);
        (lock, index)
    }

    /// Evicts the entry at `index` (one with a value and no lock: eviction's choice), as a
    /// delete would take it, and counts it; returns its key. The last entry takes its place.
    pub(super) fn evict_at(&mut self, index: usize) -> String {
        let (key, entry) = self
            .entries
            .swap_remove_index(index)
            .expect("an index within the namespace");
        debug_assert!(entry.lock.is_none(), "a key being loaded is never evicted");
        if let Some(expiry) = entry.expiry {
            self.expiries.remove(&expiry);
        }
        if let Some(value) = &entry.value {
            self.counted(&key, value.len(), entry.expiry.is_some(), false);
        }
        self.figures.evictions += 1;
        if let Some(log) = &mut self.log {
            if let Err(e) = log.del(&key) {
                tracing::error!(namespace = %self.figures.namespace, "cannot persist a cache eviction: {e}");
            }
        }
        key
    }

    /// Takes `key`'s value away (deleted or expired); the entry stays while a load holds its
    /// lock. Returns the value it had.
    pub(super) fn take(&mut self, key: &str) -> Option<Bytes> {
        let entry = self.entries.get_mut(key)?;
        let expiry = entry.expiry.take();
        if let Some(old) = expiry {
            self.expiries.remove(&old);
        }
        let value = entry.value.take();
        if entry.lock.is_none() {
            self.entries.swap_remove(key);
        }
        if let Some(v) = &value {
            self.counted(key, v.len(), expiry.is_some(), false);
        }
        value
    }

    /// Rewrites the log from the live entries when it has grown well past them.
    // Inline: it runs on every write and almost always returns at its first check.
    #[inline]
    pub(super) fn maybe_compact(&mut self) {
        // Looked at once per so many appends to a log big enough to matter.
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
