//! The manager's shared state, behind its one mutex, and what each request does to it:
//! declaring a namespace, reading, writing, deleting, listing keys, watching, and the figures.
//! Every change is logged here (persistent namespaces) and told to the namespace's watchers.
//! A request naming a namespace that could not be a file name is refused here, whatever it is.
//!
//! Locks and leases are `locks`' business: a read that misses with a lease, an `Abandon` and a
//! `Release` go there, and nothing here gives or ends a lock. Making room is `evict`'s: a write
//! asks it once the value is in. The mutex is taken here, in
//! `State::handle`, and held only for these map operations; each connection's task decodes
//! requests and encodes and writes answers outside it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use indexmap::IndexMap;

use super::ManagerConfig;
use super::connection::Outbox;
use super::evict::Rng;
use super::namespace::{Expiry, Meter, Namespace};
use crate::cache::handle::valid_namespace;
use crate::cache::persist::Log;
use crate::cache::protocol::{Message, NsBounds, NsFigures, NsOptions, Op, Reply, Request};

pub(super) type ConnId = u64;

pub(super) struct State {
    /// By name; an `IndexMap` for lookups that hash the name once (`ns`) and for eviction's
    /// draws across namespaces.
    pub(super) namespaces: IndexMap<String, Namespace>,
    pub(super) conns: HashMap<ConnId, Outbox>,
    pub(super) watchers: HashMap<String, HashSet<ConnId>>,
    /// Every lock held, by the end of its lease (then its token): the sweep and a departing
    /// loader find theirs without walking the entries.
    pub(super) leases: BTreeMap<(Instant, u64), (String, String)>,
    /// Lock tokens and expiry sequence numbers.
    pub(super) next_token: u64,
    pub(super) config: ManagerConfig,
    /// What every namespace's values weigh, against `cache.max_memory`.
    pub(super) meter: Meter,
    /// Ticks at every read or write of a value: when each entry was last used.
    pub(super) clock: u64,
    pub(super) rng: Rng,
}

impl State {
    /// Handles one request; returns the immediate reply, if any (a parked `Get` has none yet).
    // A function of `State` rather than a method of `Manager`: the compiler builds a type's
    // functions together, so `apply` and the operation it runs are inlined here, on the path of
    // every request.
    pub(super) fn handle(
        state: &Mutex<State>,
        conn: ConnId,
        Request { id, op }: Request<'_>,
    ) -> Option<Message> {
        let mut state = state.lock().expect("cache lock");
        let reply = state.apply(conn, id, op)?;
        Some(Message::Reply { id, reply })
    }

    fn apply(&mut self, conn: ConnId, id: u64, op: Op<'_>) -> Option<Reply> {
        // Names become file names: whatever a client sends, only the safe alphabet passes.
        if let Some(Err(e)) = op.namespace().map(valid_namespace) {
            return Some(Reply::Error(e));
        }
        Some(match op {
            Op::Use {
                ns,
                options,
                bounds,
            } => self.use_ns(&ns, options, bounds),
            Op::Get { ns, key, lease_ms } => {
                // However long the client asked for, no load holds a key longer than this.
                let lease = lease_ms.map(|ms| Duration::from_millis(ms).min(self.config.max_lease));
                return self.get(conn, id, &ns, &key, lease);
            }
            Op::Fill {
                ns,
                key,
                token,
                value,
            } => self.fill(&ns, &key, token, &value),
            Op::Abandon {
                ns,
                key,
                token,
                error,
            } => {
                self.abandon(&ns, &key, token, &error);
                Reply::Done(true)
            }
            Op::Release { ns, key, token } => {
                self.release(&ns, &key, token);
                Reply::Done(true)
            }
            Op::Set {
                ns,
                key,
                value,
                leave_if_not_null,
            } => self.set(&ns, &key, &value, leave_if_not_null),
            Op::Del { ns, key } => self.del(&ns, &key),
            Op::Keys { ns } => {
                let now = Instant::now();
                let keys = self
                    .namespaces
                    .get(&*ns)
                    .map(|n| {
                        n.entries
                            .iter()
                            .filter(|(_, e)| e.value.is_some() && !e.expired(now))
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                Reply::Keys(keys)
            }
            Op::Watch { ns } => {
                self.watchers
                    .entry(ns.into_owned())
                    .or_default()
                    .insert(conn);
                Reply::Done(true)
            }
            Op::Unwatch { ns } => {
                if let Some(w) = self.watchers.get_mut(&*ns) {
                    w.remove(&conn);
                }
                Reply::Done(true)
            }
            Op::Stats => {
                let mut all: Vec<NsFigures> = self
                    .namespaces
                    .values()
                    .map(|n| NsFigures {
                        entries: n.live(),
                        bytes: n.live_bytes(),
                        max_entries: n.bounds.max_entries,
                        max_bytes: n.bounds.max_bytes,
                        ..n.figures.clone()
                    })
                    .collect();
                all.sort_by(|a, b| a.namespace.cmp(&b.namespace));
                Reply::Stats(all)
            }
        })
    }

    pub(super) fn ns(&mut self, name: &str) -> &mut Namespace {
        let index = self.ns_index(name);
        &mut self.namespaces[index]
    }

    /// The position of namespace `name`, made with the defaults if it does not exist.
    pub(super) fn ns_index(&mut self, name: &str) -> usize {
        // A namespace a client has not (re)declared after a manager restart gets the defaults
        // until it does. (Looked up before inserting: the name is copied only when new; and by
        // position after, so that the name is hashed once.)
        match self.namespaces.get_index_of(name) {
            Some(index) => index,
            None => {
                let defaults = NsOptions {
                    persist: false,
                    expire_ms: None,
                };
                let ns = Namespace::new(name, defaults, NsBounds::default(), &self.meter);
                self.namespaces.insert_full(name.to_owned(), ns).0
            }
        }
    }

    fn use_ns(&mut self, name: &str, options: NsOptions, bounds: NsBounds) -> Reply {
        if bounds.max_entries == Some(0) || bounds.max_bytes == Some(0) {
            return Reply::Error(format!(
                "cache `{name}`: max_entries and max_bytes must be at least 1 (or unset)"
            ));
        }
        if let Some((index, _, ns)) = self.namespaces.get_full_mut(name) {
            if !ns.declared {
                // Reloaded from disk, or made by an early request: the first declaration since
                // this manager started gives the bounds, which apply at once.
                ns.declared = true;
                ns.bounds = bounds;
                self.make_room(index, None);
            }
            let ns = &self.namespaces[name];
            return Reply::Used {
                options: ns.options,
                bounds: ns.bounds,
                existed: true,
            };
        }
        let mut ns = Namespace::new(name, options, bounds, &self.meter);
        ns.declared = true;
        if options.persist {
            match Log::open(&self.config.persist_path, name, options) {
                Ok(log) => ns.log = Some(log),
                Err(e) => {
                    return Reply::Error(format!(
                        "cannot persist namespace `{name}` under {}: {e}",
                        self.config.persist_path.display()
                    ));
                }
            }
        }
        self.namespaces.insert(name.to_owned(), ns);
        tracing::debug!(namespace = %name, persist = options.persist, "cache namespace created");
        Reply::Used {
            options,
            bounds,
            existed: false,
        }
    }

    fn get(
        &mut self,
        conn: ConnId,
        id: u64,
        ns_name: &str,
        key: &str,
        lease: Option<Duration>,
    ) -> Option<Reply> {
        let now = Instant::now();
        self.clock += 1;
        let clock = self.clock;
        let ns = self.ns(ns_name);
        let mut expired_now = false;
        if let Some(entry) = ns.entries.get_mut(key) {
            if let Some(value) = &entry.value {
                if !entry.expired(now) {
                    entry.used = clock;
                    ns.figures.hits += 1;
                    return Some(Reply::Value(value.clone()));
                }
                // Expired, not swept yet.
                expired_now = true;
            }
        }
        if expired_now {
            self.remove_expired(ns_name, key);
        }
        let Some(lease) = lease else {
            self.ns(ns_name).figures.misses += 1;
            return Some(Reply::Miss);
        };
        self.lock_or_park(conn, id, ns_name, key, lease, now)
    }

    fn fill(&mut self, ns_name: &str, key: &str, token: u64, value: &[u8]) -> Reply {
        let (ours, has_value) = match self
            .namespaces
            .get(ns_name)
            .and_then(|n| n.entries.get(key))
        {
            Some(e) => (
                e.lock.as_ref().is_some_and(|l| l.token == token),
                e.value.is_some(),
            ),
            None => (false, false),
        };
        if !ours && has_value {
            // Someone set the key meanwhile: that value stands.
            return Reply::Done(false);
        }
        if let Err(e) = self.store(ns_name, key, value) {
            // As if the loader had failed with this error: whoever waited gets it too.
            self.abandon(ns_name, key, token, &e);
            return Reply::Error(e);
        }
        self.ns(ns_name).figures.loads += 1;
        Reply::Done(true)
    }

    /// Stores a value, answers whoever waited for it, tells watchers, logs it, and makes room
    /// for it; or refuses it, saying why, if it could never fit.
    fn store(&mut self, ns_name: &str, key: &str, value: &[u8]) -> Result<(), String> {
        let max_memory = self.config.max_memory;
        let seq = self.next_token;
        self.next_token += 1;
        self.clock += 1;
        let clock = self.clock;
        let ns_index = self.ns_index(ns_name);
        let ns = &mut self.namespaces[ns_index];
        if let Some(e) = ns.too_large(key, value.len(), max_memory) {
            return Err(e);
        }
        let value = Bytes::copy_from_slice(value);
        let expiry = ns.options.expire_ms.map(|ms| Expiry {
            at: Instant::now() + Duration::from_millis(ms),
            seq,
        });
        if let Some(log) = &mut ns.log {
            let wall = ns
                .options
                .expire_ms
                .map(|ms| SystemTime::now() + Duration::from_millis(ms));
            if let Err(e) = log.set(key, &value, wall) {
                tracing::error!(namespace = %ns_name, "cannot persist a cache entry: {e}");
            }
        }
        let (lock, index) = ns.put(key, value.clone(), expiry, clock);
        ns.maybe_compact();
        let over = ns.over_bounds();
        if let Some(lock) = lock {
            self.end_lock(lock, || Reply::Value(value.clone()));
        }
        self.notify(ns_name, key, Some(&value));
        if over || self.meter.get() > max_memory {
            self.make_room(ns_index, Some(index));
        }
        Ok(())
    }

    fn set(&mut self, ns_name: &str, key: &str, value: &[u8], leave_if_not_null: bool) -> Reply {
        if leave_if_not_null {
            let now = Instant::now();
            let present = self
                .ns(ns_name)
                .entries
                .get(key)
                .is_some_and(|e| e.value.is_some() && !e.expired(now));
            if present {
                return Reply::Done(false);
            }
        }
        match self.store(ns_name, key, value) {
            Ok(()) => Reply::Done(true),
            Err(e) => Reply::Error(e),
        }
    }

    fn del(&mut self, ns_name: &str, key: &str) -> Reply {
        let now = Instant::now();
        let ns = self.ns(ns_name);
        let Some(entry) = ns.entries.get(key) else {
            return Reply::Old(None);
        };
        let expired = entry.expired(now);
        let old = ns.take(key).filter(|_| !expired);
        if let Some(log) = &mut ns.log {
            if let Err(e) = log.del(key) {
                tracing::error!(namespace = %ns_name, "cannot persist a cache delete: {e}");
            }
        }
        self.notify(ns_name, key, None);
        Reply::Old(old)
    }

    pub(super) fn remove_expired(&mut self, ns_name: &str, key: &str) {
        let ns = self.ns(ns_name);
        if ns.take(key).is_some() {
            if let Some(log) = &mut ns.log {
                let _ = log.del(key);
            }
        }
        self.notify(ns_name, key, None);
    }

    pub(super) fn notify(&self, ns: &str, key: &str, value: Option<&Bytes>) {
        // Nobody ever watched: not even the name is hashed.
        if self.watchers.is_empty() {
            return;
        }
        let Some(watchers) = self.watchers.get(ns) else {
            return;
        };
        for conn in watchers {
            self.send(
                *conn,
                Message::Changed {
                    ns: ns.to_owned(),
                    key: key.to_owned(),
                    value: value.cloned(),
                },
            );
        }
    }

    pub(super) fn send(&self, conn: ConnId, message: Message) {
        if let Some(outbox) = self.conns.get(&conn) {
            outbox.push(message);
        }
    }
}
