//! Single flight: the lock a load holds on its key, the lease that bounds it (the caller's
//! timeout, never more than `cache.max_lease`, whatever a client asks), the `Get`s parked
//! behind it, and every way a lock ends. A locked entry has no value, so eviction never takes
//! it (`evict`).
//!
//! A `Get` with a lease on a missing key either takes the key's lock (the client loads and
//! `Fill`s) or is parked here, at the manager, until the value arrives, so a waiter can never
//! miss it through message ordering. When the loader fails (`Abandon`) every waiter gets the
//! error: a failing load is usually a failing backend, and N processes retrying it one after
//! another would multiply the damage and the wait. When the loader's connection closes (its
//! process died), its lease passes, or it gives up without a verdict (`Release`), the first
//! waiter is handed the lock and loads instead. No waiter waits longer than its own timeout on
//! the client side.
//!
//! Every lock held is also in the lease map, keyed by the end of its lease, so the sweep and a
//! departing loader find theirs without walking the entries. Only this file gives, moves or
//! ends a lock and edits the lease map; a value stored over a lock (`Namespace::put` hands the
//! lock back) ends it through `end_lock`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::namespace::Entry;
use super::state::{ConnId, State};
use crate::cache::protocol::{Message, Reply};

pub(super) struct Lock {
    owner: ConnId,
    pub(super) token: u64,
    lease_until: Instant,
    /// Parked `Get`s: who, their request id, and the lease they asked for.
    waiters: VecDeque<(ConnId, u64, Duration)>,
}

impl State {
    fn lock_of(&self, ns: &str, key: &str) -> Option<&Lock> {
        self.namespaces.get(ns)?.entries.get(key)?.lock.as_ref()
    }

    /// A miss with a lease: the caller takes the key's lock and is told to load, or, while
    /// another load is under way, is parked behind it and has no answer yet.
    pub(super) fn lock_or_park(
        &mut self,
        conn: ConnId,
        id: u64,
        ns_name: &str,
        key: &str,
        lease: Duration,
        now: Instant,
    ) -> Option<Reply> {
        let token = self.next_token;
        let ns = self.ns(ns_name);
        let lock = Lock {
            owner: conn,
            token,
            lease_until: now + lease,
            waiters: VecDeque::new(),
        };
        match ns.entries.get_mut(key) {
            Some(Entry {
                lock: Some(held), ..
            }) => {
                held.waiters.push_back((conn, id, lease));
                ns.figures.lock_waits += 1;
                return None;
            }
            Some(entry) => entry.lock = Some(lock),
            None => {
                ns.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: None,
                        expiry: None,
                        lock: Some(lock),
                        used: 0,
                    },
                );
            }
        }
        ns.figures.misses += 1;
        self.next_token += 1;
        self.leases
            .insert((now + lease, token), (ns_name.to_owned(), key.to_owned()));
        Some(Reply::Load {
            ns: ns_name.to_owned(),
            key: key.to_owned(),
            token,
        })
    }

    pub(super) fn abandon(&mut self, ns_name: &str, key: &str, token: u64, error: &str) {
        let ours = self.lock_of(ns_name, key).is_some_and(|l| l.token == token);
        if !ours {
            return;
        }
        let ns = self.ns(ns_name);
        ns.figures.errors += 1;
        let Some(entry) = ns.entries.get_mut(key) else {
            return;
        };
        let lock = entry.lock.take().expect("checked above");
        if entry.value.is_none() {
            ns.entries.swap_remove(key);
        }
        self.end_lock(lock, || Reply::LoadFailed(error.to_owned()));
    }

    /// The loader gave up without a verdict: the first waiter loads instead.
    pub(super) fn release(&mut self, ns_name: &str, key: &str, token: u64) {
        if self.lock_of(ns_name, key).is_some_and(|l| l.token == token) {
            self.hand_over(ns_name, key);
        }
    }

    /// A lock taken off its entry: its lease ends and every waiter gets `reply`.
    pub(super) fn end_lock(&mut self, lock: Lock, reply: impl Fn() -> Reply) {
        self.leases.remove(&(lock.lease_until, lock.token));
        for (conn, id, _) in lock.waiters {
            self.send(conn, Message::Reply { id, reply: reply() });
        }
    }

    /// Locks held by a departed connection pass to a waiter.
    pub(super) fn hand_over_locks_of(&mut self, conn: ConnId) {
        let orphaned: Vec<(String, String)> = self
            .leases
            .values()
            .filter(|(ns, key)| self.lock_of(ns, key).is_some_and(|l| l.owner == conn))
            .cloned()
            .collect();
        for (ns, key) in orphaned {
            tracing::warn!(namespace = %ns, key = %key, "the loading process is gone; handing the load to a waiter");
            self.hand_over(&ns, &key);
        }
    }

    /// Hands over the loads whose lease has passed by `now`: only what is due.
    pub(super) fn hand_over_late(&mut self, now: Instant) {
        let mut late = Vec::new();
        while let Some(first) = self.leases.first_entry() {
            if first.key().0 > now {
                break;
            }
            let ((_, token), (ns, key)) = first.remove_entry();
            late.push((ns, key, token));
        }
        for (ns, key, token) in late {
            if self.lock_of(&ns, &key).is_some_and(|l| l.token == token) {
                tracing::warn!(namespace = %ns, key = %key, "a loader exceeded its lease; handing the load to a waiter");
                self.hand_over(&ns, &key);
            }
        }
    }

    /// The lock's owner is gone or out of time: the first live waiter loads instead.
    fn hand_over(&mut self, ns_name: &str, key: &str) {
        let now = Instant::now();
        loop {
            let token = self.next_token;
            let Some(entry) = self
                .namespaces
                .get_mut(ns_name)
                .and_then(|n| n.entries.get_mut(key))
            else {
                return;
            };
            let Some(lock) = &mut entry.lock else { return };
            self.leases.remove(&(lock.lease_until, lock.token));
            let Some((conn, id, lease)) = lock.waiters.pop_front() else {
                entry.lock = None;
                if entry.value.is_none() {
                    self.namespaces
                        .get_mut(ns_name)
                        .map(|n| n.entries.swap_remove(key));
                }
                return;
            };
            if !self.conns.contains_key(&conn) {
                continue;
            }
            lock.owner = conn;
            lock.token = token;
            lock.lease_until = now + lease;
            self.leases
                .insert((now + lease, token), (ns_name.to_owned(), key.to_owned()));
            self.next_token += 1;
            self.send(
                conn,
                Message::Reply {
                    id,
                    reply: Reply::Load {
                        ns: ns_name.to_owned(),
                        key: key.to_owned(),
                        token,
                    },
                },
            );
            return;
        }
    }
}
