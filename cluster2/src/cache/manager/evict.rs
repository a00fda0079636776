//! Keeping the cache within its memory: refusing a value that could never fit, and evicting
//! approximately least recently used entries once a namespace passes its bounds
//! (`max_entries`, `max_bytes`) or the whole cache passes `cache.max_memory`.
//!
//! Approximate as Redis's: rather than keep every entry in a recency list (a pointer pair and a
//! list update on every read), each entry records the manager's clock when it was last used,
//! and eviction draws `SAMPLES` entries at random and evicts the one used longest ago. Redis
//! finds five samples close to a true LRU for real workloads; a read costs one store. Within a
//! namespace the draw is over its entries; for `cache.max_memory` it is over every entry of
//! every namespace, so the namespace that holds the least recently used data pays.
//!
//! Never evicted: an entry whose load is in flight (it holds a lock and no value: waiters are
//! parked on it), and the key the write that made the room was for. An evicted entry is gone
//! as if deleted: a persistent namespace logs its deletion (a replay restores only what was
//! kept), its watchers are told (`None`, as for a delete), and the namespace counts it.

use super::namespace::{ENTRY_OVERHEAD, Entry, Namespace};
use super::state::State;

/// Entries drawn to choose one to evict (Redis's `maxmemory-samples` default).
const SAMPLES: usize = 5;

/// Draws before giving up on finding an evictable entry at random (most entries locked): then
/// the first evictable one is taken in order.
const DRAWS: usize = 4 * SAMPLES;

/// A small, fast random number generator (xorshift64*): eviction only needs draws that do not
/// follow the order entries were made in.
#[derive(Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(seed | 1)
    }

    /// A number below `n` (which must not be 0).
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Whether the entry at `index` may be evicted: it has a value, no load in flight, and is not
/// the one kept.
fn evictable(entry: &Entry, index: usize, keep: Option<usize>) -> bool {
    entry.value.is_some() && entry.lock.is_none() && keep != Some(index)
}

impl Namespace {
    /// Why a value of `len` bytes for `key` can never be held here, if it cannot: it alone
    /// passes the namespace's `max_bytes`, or `max_memory` (the whole cache's bound).
    pub(super) fn too_large(&self, key: &str, len: usize, max_memory: u64) -> Option<String> {
        let bytes = (key.len() + len) as u64;
        let name = &self.figures.namespace;
        if let Some(max) = self.bounds.max_bytes.filter(|&max| bytes > max) {
            return Some(format!(
                "the value is {bytes} bytes with its key, more than cache `{name}` may hold \
                 (max_bytes: {max} bytes)"
            ));
        }
        let weight = Namespace::weight(key, len, self.options.expire_ms.is_some());
        (weight > max_memory).then(|| {
            format!(
                "the value is {bytes} bytes with its key ({weight} with the manager's own \
                 {ENTRY_OVERHEAD} per entry), more than the whole cache may hold \
                 (cache.max_memory: {max_memory} bytes)"
            )
        })
    }
}

impl State {
    /// Evicts from the namespace at `ns` until it is within its bounds, then from every
    /// namespace until the cache is within `cache.max_memory`; never the entry at `keep` (the
    /// one just written).
    pub(super) fn make_room(&mut self, ns: usize, mut keep: Option<usize>) {
        // By position, hashing no key: on a namespace at its bound this runs for every write
        // of a new key.
        let Some((name, namespace)) = self.namespaces.get_index_mut(ns) else {
            return;
        };
        let watched = !self.watchers.is_empty()
            && self
                .watchers
                .get(name.as_str())
                .is_some_and(|w| !w.is_empty());
        let mut evicted = Vec::new();
        while namespace.over_bounds() {
            let Some(victim) = victim_in(namespace, &mut self.rng, keep) else {
                break;
            };
            let last = namespace.entries.len() - 1;
            let key = namespace.evict_at(victim);
            if keep == Some(last) {
                // The last entry took the evicted one's place.
                keep = Some(victim);
            }
            if watched {
                evicted.push(key);
            }
        }
        for key in evicted {
            let name = self.namespaces.get_index(ns).expect("above").0;
            self.notify(name, &key, None);
        }
        self.fit_memory(Some((ns, keep)));
    }

    /// Evicts from every namespace until the cache is within `cache.max_memory`; never the
    /// entry `keep` names (namespace and entry positions).
    pub(super) fn fit_memory(&mut self, mut keep: Option<(usize, Option<usize>)>) {
        while self.meter.get() > self.config.max_memory {
            let Some((ns, victim)) = self.victim_anywhere(keep) else {
                break;
            };
            let namespace = &mut self.namespaces[ns];
            let last = namespace.entries.len() - 1;
            let key = namespace.evict_at(victim);
            if keep == Some((ns, Some(last))) {
                keep = Some((ns, Some(victim)));
            }
            let name = self.namespaces.get_index(ns).expect("above").0;
            self.notify(name, &key, None);
        }
    }

    /// The least recently used of `SAMPLES` entries drawn from every namespace alike: the
    /// positions of its namespace and of it there.
    fn victim_anywhere(&mut self, keep: Option<(usize, Option<usize>)>) -> Option<(usize, usize)> {
        let total: usize = self.namespaces.values().map(|n| n.entries.len()).sum();
        if total == 0 {
            return None;
        }
        let kept = |ns: usize| keep.and_then(|(n, entry)| (n == ns).then_some(entry).flatten());
        let mut best: Option<(u64, usize, usize)> = None;
        let mut found = 0;
        for _ in 0..DRAWS {
            if found == SAMPLES {
                break;
            }
            // The `i`th entry of the cache, counting namespace after namespace.
            let mut i = self.rng.below(total);
            for (ns, namespace) in self.namespaces.values().enumerate() {
                if i >= namespace.entries.len() {
                    i -= namespace.entries.len();
                    continue;
                }
                let (_, entry) = namespace.entries.get_index(i).expect("within");
                if evictable(entry, i, kept(ns)) {
                    found += 1;
                    if best.is_none_or(|(used, ..)| entry.used < used) {
                        best = Some((entry.used, ns, i));
                    }
                }
                break;
            }
        }
        if let Some((_, ns, i)) = best {
            return Some((ns, i));
        }
        // Almost everything is being loaded: any entry that may go.
        self.namespaces
            .values()
            .enumerate()
            .find_map(|(ns, namespace)| {
                let mut entries = namespace.entries.values().enumerate();
                entries
                    .find(|&(i, entry)| evictable(entry, i, kept(ns)))
                    .map(|(i, _)| (ns, i))
            })
    }
}

/// The position of the least recently used of `SAMPLES` entries of `ns` drawn at random.
fn victim_in(ns: &Namespace, rng: &mut Rng, keep: Option<usize>) -> Option<usize> {
    let len = ns.entries.len();
    if len == 0 {
        return None;
    }
    let mut best: Option<(u64, usize)> = None;
    let mut found = 0;
    for _ in 0..DRAWS {
        if found == SAMPLES {
            break;
        }
        let i = rng.below(len);
        let (_, entry) = ns.entries.get_index(i).expect("below len");
        if evictable(entry, i, keep) {
            found += 1;
            if best.is_none_or(|(used, _)| entry.used < used) {
                best = Some((entry.used, i));
            }
        }
    }
    best.map(|(_, i)| i).or_else(|| {
        ns.entries
            .values()
            .enumerate()
            .position(|(i, entry)| evictable(entry, i, keep))
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::cache::manager::ManagerConfig;
    use crate::cache::manager::namespace::Meter;
    use crate::cache::protocol::{Message, NsBounds, NsOptions, Op, Reply, Request};

    fn state(max_memory: u64) -> Mutex<State> {
        Mutex::new(State {
            namespaces: indexmap::IndexMap::new(),
            conns: HashMap::new(),
            watchers: HashMap::new(),
            leases: BTreeMap::new(),
            next_token: 1,
            config: ManagerConfig {
                persist_path: "unused".into(),
                max_value: 1 << 20,
                max_memory,
                max_connections: 1,
                max_lease: Duration::from_secs(1),
                frame_timeout: Duration::from_secs(1),
            },
            meter: Meter::default(),
            clock: 0,
            rng: Rng::new(),
        })
    }

    fn run(state: &Mutex<State>, op: Op<'_>) -> Reply {
        match State::handle(state, 1, Request { id: 1, op }) {
            Some(Message::Reply { reply, .. }) => reply,
            other => panic!("no reply: {other:?}"),
        }
    }

    fn declare(state: &Mutex<State>, ns: &str, bounds: NsBounds) {
        let options = NsOptions {
            persist: false,
            expire_ms: None,
        };
        let reply = run(
            state,
            Op::Use {
                ns: Cow::Borrowed(ns),
                options,
                bounds,
            },
        );
        assert!(matches!(reply, Reply::Used { .. }), "{reply:?}");
    }

    fn set(state: &Mutex<State>, ns: &str, key: &str, value: &[u8]) -> Reply {
        run(
            state,
            Op::Set {
                ns: Cow::Borrowed(ns),
                key: Cow::Borrowed(key),
                value: Cow::Borrowed(value),
                leave_if_not_null: false,
            },
        )
    }

    fn get(state: &Mutex<State>, ns: &str, key: &str, lease_ms: Option<u64>) -> Reply {
        run(
            state,
            Op::Get {
                ns: Cow::Borrowed(ns),
                key: Cow::Borrowed(key),
                lease_ms,
            },
        )
    }

    /// What a random choice would not do: five keys read before every write survive a
    /// thousand evictions from a namespace of a hundred (each would be evicted with a chance
    /// of 1 in 100 at every eviction; sampled LRU evicts one only when all five draws are
    /// of them, about 3 in 10 million).
    #[test]
    fn recently_read_entries_survive_a_stream_of_new_ones() {
        let state = state(u64::MAX);
        let bounds = NsBounds {
            max_entries: Some(100),
            max_bytes: None,
        };
        declare(&state, "lru", bounds);
        for i in 0..100 {
            set(&state, "lru", &format!("k{i}"), b"v");
        }
        let hot = ["k0", "k1", "k2", "k3", "k4"];
        for i in 100..1100 {
            for key in hot {
                assert!(
                    matches!(get(&state, "lru", key, None), Reply::Value(_)),
                    "{key}"
                );
            }
            set(&state, "lru", &format!("k{i}"), b"v");
        }
        let state = state.lock().unwrap();
        let ns = &state.namespaces["lru"];
        assert_eq!((ns.live(), ns.figures.evictions), (100, 1000));
    }

    #[test]
    fn the_whole_cache_is_weighed_and_kept_under_max_memory() {
        let max = 64 * 1024;
        let state = state(max);
        for i in 0..200 {
            let ns = if i % 2 == 0 { "even" } else { "odd" };
            assert!(matches!(
                set(&state, ns, &format!("k{i}"), &[7; 1000]),
                Reply::Done(true)
            ));
        }
        let state = state.lock().unwrap();
        let weighed: u64 = state
            .namespaces
            .values()
            .flat_map(|n| n.entries.iter())
            .map(|(k, e)| Namespace::weight(k, e.value.as_ref().map_or(0, |v| v.len()), false))
            .sum();
        assert_eq!(
            state.meter.get(),
            weighed,
            "the meter is what the entries weigh"
        );
        assert!(weighed <= max && weighed > max - 2000, "{weighed}");
        let evicted: u64 = state.namespaces.values().map(|n| n.figures.evictions).sum();
        assert_eq!(
            evicted,
            200 - state.namespaces.values().map(|n| n.live()).sum::<u64>()
        );
    }

    #[test]
    fn a_loaded_value_larger_than_its_namespace_fails_the_load_and_frees_the_key() {
        let state = state(u64::MAX);
        let bounds = NsBounds {
            max_entries: None,
            max_bytes: Some(10),
        };
        declare(&state, "tiny", bounds);
        let Reply::Load { token, .. } = get(&state, "tiny", "k", Some(1000)) else {
            panic!("no lock")
        };
        let reply = run(
            &state,
            Op::Fill {
                ns: Cow::Borrowed("tiny"),
                key: Cow::Borrowed("k"),
                token,
                value: Cow::Borrowed(&[7; 100]),
            },
        );
        let Reply::Error(e) = reply else {
            panic!("{reply:?}")
        };
        assert!(e.contains("max_bytes: 10 bytes"), "{e}");
        // The lock ended with it: the next reader loads.
        assert!(matches!(
            get(&state, "tiny", "k", Some(1000)),
            Reply::Load { .. }
        ));
        assert!(matches!(
            set(&state, "tiny", "k", &[7; 100]),
            Reply::Error(_)
        ));
    }

    #[test]
    fn draws_cover_the_range_and_stay_below_it() {
        let mut rng = Rng::new();
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[rng.below(7)] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }
}
