//! The cache's figures on Redis: each process counts its hits, misses, loads, waits and
//! errors per namespace, and adds them every second to the namespace's hash in Redis
//! (`HINCRBY`), so that the figures any host shows are the whole fleet's, at most a second
//! late, and counting costs no round trip. Entries and bytes are counted when asked, by
//! `SCAN` of the namespace's values (up to `MAX_COUNTED` of them) and their lengths.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{Inner, Outcome, RedisCache};
use crate::cache::protocol::{NsFigures, NsOptions};

/// The most values counted for one namespace's `entries` and `bytes`: beyond, a figure
/// would cost the monitor (and the server) a scan of the whole namespace on every look.
const MAX_COUNTED: u64 = 100_000;

/// How often counts go to Redis.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The fields of a namespace's hash, in the order of [`Counters::take`].
const FIELDS: [&str; 5] = ["hits", "misses", "loads", "lock_waits", "errors"];

/// This process's counts for one namespace, since they last went to Redis.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) lock_waits: AtomicU64,
    pub(super) errors: AtomicU64,
}

impl Counters {
    fn all(&self) -> [&AtomicU64; 5] {
        [
            &self.hits,
            &self.misses,
            &self.loads,
            &self.lock_waits,
            &self.errors,
        ]
    }

    fn take(&self) -> [u64; 5] {
        self.all().map(|c| c.swap(0, Ordering::Relaxed))
    }

    fn add(&self, counts: [u64; 5]) {
        for (counter, n) in self.all().into_iter().zip(counts) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub(super) struct Figures {
    by_ns: Mutex<HashMap<String, Arc<Counters>>>,
}

impl Figures {
    /// The counters of `ns`.
    pub(super) fn of(&self, ns: &str) -> Arc<Counters> {
        let mut by_ns = self.by_ns.lock().expect("figures lock");
        if let Some(counters) = by_ns.get(ns) {
            return counters.clone();
        }
        by_ns.entry(ns.to_owned()).or_default().clone()
    }
}

/// Sends the counts every second, until the cache is gone.
pub(super) async fn flush_every_second(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        RedisCache { inner }.flush().await;
    }
}

impl RedisCache {
    /// Adds this process's counts to Redis; they are kept for the next time if Redis is away.
    pub(super) async fn flush(&self) {
        let taken: Vec<(String, Arc<Counters>, [u64; 5])> = {
            let by_ns = self.inner.figures.by_ns.lock().expect("figures lock");
            by_ns
                .iter()
                .map(|(ns, c)| (ns.clone(), c.clone(), c.take()))
                .filter(|(_, _, counts)| counts.iter().any(|&n| n > 0))
                .collect()
        };
        if taken.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (ns, _, counts) in &taken {
            let hash = self.inner.names.figures(ns);
            for (field, n) in FIELDS.iter().zip(counts) {
                if *n > 0 {
                    pipe.cmd("HINCRBY").arg(&hash).arg(*field).arg(*n).ignore();
                }
            }
        }
        let sent =
            tokio::time::timeout(self.inner.timeout, pipe.query_async::<()>(&mut self.con())).await;
        if !matches!(sent, Ok(Ok(()))) {
            for (_, counters, counts) in taken {
                counters.add(counts);
            }
        }
    }

    /// Every namespace's figures, as the whole fleet counted them.
    pub(super) async fn stats(&self) -> Outcome<Vec<NsFigures>> {
        self.flush().await;
        let mut con = self.con();
        let mut namespaces: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.inner.names.namespaces())
            .query_async(&mut con)
            .await?;
        namespaces.sort();
        let mut all = Vec::with_capacity(namespaces.len());
        for ns in namespaces {
            let (options, counts): (Option<Vec<u8>>, HashMap<String, u64>) = redis::pipe()
                .cmd("GET")
                .arg(self.inner.names.options(&ns))
                .cmd("HGETALL")
                .arg(self.inner.names.figures(&ns))
                .query_async(&mut con)
                .await?;
            let options: NsOptions = match options.map(|o| serde_json::from_slice(&o)) {
                Some(Ok(options)) => options,
                // Declared by a process that has not written its options yet, or Redis lost
                // them: the defaults, as the local manager shows an undeclared namespace.
                _ => NsOptions {
                    persist: false,
                    expire_ms: None,
                },
            };
            let (entries, bytes) = self.count(&ns).await?;
            let count = |field: &str| counts.get(field).copied().unwrap_or(0);
            all.push(NsFigures {
                persist: options.persist,
                expire_ms: options.expire_ms,
                entries,
                bytes,
                hits: count("hits"),
                misses: count("misses"),
                loads: count("loads"),
                lock_waits: count("lock_waits"),
                errors: count("errors"),
                // Redis evicts by its own `maxmemory` policy, and counts that itself
                // (`INFO stats`, `evicted_keys`); namespaces have no bounds of their own.
                evictions: 0,
                max_entries: None,
                max_bytes: None,
                namespace: ns,
            });
        }
        Ok(all)
    }

    /// The values of `ns` and their bytes (keys and values), up to `MAX_COUNTED` values.
    async fn count(&self, ns: &str) -> Outcome<(u64, u64)> {
        let pattern = self.inner.names.values_pattern(ns);
        let skip = self.inner.names.value_prefix_len(ns) as u64;
        let mut con = self.con();
        let (mut entries, mut bytes) = (0u64, 0u64);
        let mut cursor: u64 = 0;
        loop {
            let (next, batch) = super::scan_page(&mut con, cursor, &pattern).await?;
            if !batch.is_empty() {
                let mut pipe = redis::pipe();
                for name in &batch {
                    pipe.cmd("STRLEN").arg(name);
                }
                let lengths: Vec<u64> = pipe.query_async(&mut con).await?;
                for (name, len) in batch.iter().zip(lengths) {
                    // Gone between the scan and now: not an entry any more.
                    if len > 0 {
                        entries += 1;
                        bytes += len + (name.len() as u64).saturating_sub(skip);
                    }
                }
            }
            if next == 0 || entries >= MAX_COUNTED {
                break;
            }
            cursor = next;
        }
        Ok((entries, bytes))
    }
}
