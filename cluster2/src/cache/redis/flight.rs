//! Single flight on Redis, in two layers.
//!
//! **Within this process**, concurrent reads of one key share one `GET` (`read`): the first
//! sends it, the others wait for its answer. A write from this process detaches the read in
//! flight, so that a read asked for after a write returns never gets an answer from before it.
//! Concurrent gets of one missing key share one *flight*: one task per key works for all of
//! them against Redis, so a burst of callers costs one lock attempt, not one each.
//!
//! **Across processes and hosts**, a flight's task runs the `ACQUIRE` script: the value if it
//! landed, else the lock (`SET NX PX` with the lease of the first caller still waiting), which
//! it hands to that caller as `Reply::Load` (the handle loads, then fills, abandons or
//! releases), else it waits for the holder. Waiting means subscribing to the key's fill channel
//! (the holder's fill, failure or release is published there) **and** asking again on a
//! schedule that doubles from 20 ms to 500 ms and never sleeps past the holder's lease,
//! because a pub/sub message can be lost: a missed value is found by the next ask, a missed
//! failure by the failure key the holder left, a dead or late holder by its lock's expiry,
//! after which the next ask takes the lock and this process loads instead.
//!
//! A caller that gives up (its timeout) simply stops waiting; a flight with nobody left ends.
//! A lock handed to a caller that is already gone is released at once (`LoadTicket`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};

use super::keys::{self, Filled};
use super::{Failure, Outcome, RedisCache, scripts};
use crate::cache::protocol::Reply;

/// The first pause before asking a held lock again, and the longest.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(500);

/// How long a flight waits for its subscription to be confirmed before its first ask: after
/// that, polling alone finds the value.
const SUBSCRIBE_WAIT: Duration = Duration::from_millis(500);

type ReadResult = Result<Option<Bytes>, redis::RedisError>;

/// The reads and loads in flight in this process.
#[derive(Default)]
pub(super) struct Flights {
    reads: Mutex<Reads>,
    loads: Mutex<HashMap<String, LoadFlight>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Reads {
    /// The read of each key that others may still join.
    open: HashMap<String, (u64, Vec<oneshot::Sender<ReadResult>>)>,
    /// Reads a write detached: they answer those who joined, and nobody joins any more.
    detached: HashMap<u64, Vec<oneshot::Sender<ReadResult>>>,
}

/// One key's load, shared by this process's callers.
struct LoadFlight {
    id: u64,
    waiters: VecDeque<Waiter>,
    /// The token of the lock a caller of this process loads under, and the end of its lease:
    /// past it the flight asks Redis again, whatever became of the loader.
    loading: Option<(u64, tokio::time::Instant)>,
    /// Wakes the flight's task: a local loader gave up its lock.
    wake: Arc<Notify>,
}

struct Waiter {
    reply: oneshot::Sender<FlightReply>,
    lease_ms: u64,
}

/// What a flight tells a caller.
pub(super) enum FlightReply {
    Value(Bytes),
    /// The loader failed; its error.
    Failed(String),
    /// The caller loads, under this lock.
    Load(LoadTicket),
    Error(Failure),
}

/// A lock handed to a caller: released if it is dropped before the caller took it.
pub(super) struct LoadTicket {
    cache: Option<RedisCache>,
    ns: String,
    key: String,
    token: u64,
}

impl LoadTicket {
    /// The caller takes the lock: from now on the handle ends it.
    fn take(mut self) -> u64 {
        self.cache = None;
        self.token
    }
}

impl Drop for LoadTicket {
    fn drop(&mut self) {
        let Some(cache) = self.cache.take() else {
            return;
        };
        let (ns, key, token) = (
            std::mem::take(&mut self.ns),
            std::mem::take(&mut self.key),
            self.token,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ =
                    tokio::time::timeout(cache.timeout(), cache.release(&ns, &key, token)).await;
            });
        }
    }
}

/// What the `ACQUIRE` script said.
enum Acquired {
    Value(Bytes),
    Locked,
    Held { holder: String, pttl_ms: i64 },
    Failed(String),
}

fn parse_acquired(value: redis::Value) -> Outcome<Acquired> {
    use redis::Value as V;
    let unexpected = |v: &V| Failure::Unexpected(format!("{v:?} from the lock script"));
    let V::Array(items) = value else {
        return Err(unexpected(&value));
    };
    let text = |v: Option<&V>| match v {
        Some(V::BulkString(b)) => Some(b.clone()),
        _ => None,
    };
    match items.first() {
        Some(V::Int(1)) => text(items.get(1))
            .map(|v| Acquired::Value(Bytes::from(v)))
            .ok_or_else(|| unexpected(&V::Array(items.clone()))),
        Some(V::Int(2)) => Ok(Acquired::Locked),
        Some(V::Int(3)) => {
            let holder = text(items.get(1))
                .map(|h| String::from_utf8_lossy(&h).into_owned())
                .unwrap_or_default();
            let pttl_ms = match items.get(2) {
                Some(V::Int(ms)) => *ms,
                _ => -1,
            };
            Ok(Acquired::Held { holder, pttl_ms })
        }
        Some(V::Int(4)) => Ok(Acquired::Failed(
            text(items.get(1))
                .map(|e| String::from_utf8_lossy(&e).into_owned())
                .unwrap_or_default(),
        )),
        _ => Err(unexpected(&V::Array(items))),
    }
}

impl RedisCache {
    /// The value named `vkey`, read once for every concurrent reader in this process.
    pub(super) async fn read(&self, vkey: &str) -> ReadResult {
        let flights = &self.inner.flights;
        loop {
            let joined = {
                let mut reads = flights.reads.lock().expect("reads lock");
                match reads.open.get_mut(vkey) {
                    Some((_, waiters)) => {
                        let (tx, rx) = oneshot::channel();
                        waiters.push(tx);
                        Err(rx)
                    }
                    None => {
                        let id = flights.next_id.fetch_add(1, Ordering::Relaxed);
                        reads.open.insert(vkey.to_owned(), (id, Vec::new()));
                        Ok(id)
                    }
                }
            };
            match joined {
                Err(rx) => match rx.await {
                    Ok(result) => return result,
                    // The reader was cancelled: read again (perhaps as the reader).
                    Err(_) => continue,
                },
                Ok(id) => {
                    let mut lead = ReadLead {
                        flights,
                        key: vkey,
                        id,
                        done: false,
                    };
                    let result = redis::cmd("GET")
                        .arg(vkey)
                        .query_async::<Option<Vec<u8>>>(&mut self.con())
                        .await
                        .map(|v| v.map(Bytes::from));
                    for waiter in lead.finish() {
                        let _ = waiter.send(result.clone());
                    }
                    return result;
                }
            }
        }
    }

    /// Nobody joins a read of `vkey` begun before now.
    pub(super) fn detach_read(&self, vkey: &str) {
        let mut reads = self.inner.flights.reads.lock().expect("reads lock");
        if let Some((id, waiters)) = reads.open.remove(vkey) {
            reads.detached.insert(id, waiters);
        }
    }

    /// A get with a loader: the value, or the lock to load under, or the loader's failure.
    pub(super) async fn get(&self, ns: &str, key: &str, lease_ms: u64) -> Outcome<Reply> {
        let vkey = self.inner.names.value(ns, key);
        let counters = self.inner.figures.of(ns);
        if let Some(value) = self.read(&vkey).await? {
            counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Reply::Value(value));
        }
        let answer = self.join(ns, key, vkey, lease_ms).await;
        match answer {
            Ok(FlightReply::Value(value)) => {
                counters.lock_waits.fetch_add(1, Ordering::Relaxed);
                Ok(Reply::Value(value))
            }
            Ok(FlightReply::Failed(error)) => {
                counters.lock_waits.fetch_add(1, Ordering::Relaxed);
                Ok(Reply::LoadFailed(error))
            }
            Ok(FlightReply::Load(ticket)) => {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                Ok(Reply::Load {
                    ns: ns.to_owned(),
                    key: key.to_owned(),
                    token: ticket.take(),
                })
            }
            Ok(FlightReply::Error(failure)) => Err(failure),
            Err(_) => Err(Failure::Unexpected(
                "the key's load ended without an answer".to_owned(),
            )),
        }
    }

    /// Joins the key's flight, starting it if there is none.
    fn join(
        &self,
        ns: &str,
        key: &str,
        vkey: String,
        lease_ms: u64,
    ) -> oneshot::Receiver<FlightReply> {
        let (reply, answer) = oneshot::channel();
        let waiter = Waiter { reply, lease_ms };
        let mut loads = self.inner.flights.loads.lock().expect("loads lock");
        if let Some(flight) = loads.get_mut(&vkey) {
            flight.waiters.push_back(waiter);
            return answer;
        }
        let id = self.inner.flights.next_id.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        loads.insert(
            vkey.clone(),
            LoadFlight {
                id,
                waiters: VecDeque::from([waiter]),
                loading: None,
                wake: wake.clone(),
            },
        );
        tokio::spawn(
            self.clone()
                .fly(ns.to_owned(), key.to_owned(), vkey, id, wake),
        );
        answer
    }

    /// Ends the flight of `vkey` (whichever it is): every waiter gets `reply`.
    pub(super) fn end_flight(&self, vkey: &str, reply: impl Fn() -> FlightReply) {
        let flight = self
            .inner
            .flights
            .loads
            .lock()
            .expect("loads lock")
            .remove(vkey);
        if let Some(flight) = flight {
            flight.wake.notify_one();
            for waiter in flight.waiters {
                let _ = waiter.reply.send(reply());
            }
        }
    }

    /// Ends flight `id` of `vkey` if it is still the current one.
    fn end_this_flight(&self, vkey: &str, id: u64, reply: impl Fn() -> FlightReply) {
        let flight = {
            let mut loads = self.inner.flights.loads.lock().expect("loads lock");
            match loads.get(vkey) {
                Some(f) if f.id == id => loads.remove(vkey),
                _ => None,
            }
        };
        for waiter in flight.into_iter().flat_map(|f| f.waiters) {
            let _ = waiter.reply.send(reply());
        }
    }

    /// The task of one key's flight: asks Redis for the value or the lock until every waiter
    /// here is answered or gone.
    async fn fly(self, ns: String, key: String, vkey: String, id: u64, wake: Arc<Notify>) {
        let names = &self.inner.names;
        let (lock, failed) = (names.lock(&ns, &key), names.failed(&ns, &key));
        let (tx, mut inbox) = mpsc::unbounded_channel::<Vec<u8>>();
        let subscriber = self.inner.redis.subscriber().clone();
        let (listener, confirmed) = subscriber.subscribe(
            names.fills(&ns, &key).into_bytes(),
            Arc::new(move |message: &[u8]| {
                let _ = tx.send(message.to_vec());
            }),
        );
        let _ = tokio::time::timeout(SUBSCRIBE_WAIT, confirmed).await;
        let mut seen_holder = String::new();
        let mut poll = POLL_FIRST;
        loop {
            // Who still waits here, and does a caller here load?
            let (lease_ms, loading) = {
                let mut loads = self.inner.flights.loads.lock().expect("loads lock");
                let Some(flight) = loads.get_mut(&vkey).filter(|f| f.id == id) else {
                    break;
                };
                flight.waiters.retain(|w| !w.reply.is_closed());
                let Some(first) = flight.waiters.front() else {
                    loads.remove(&vkey);
                    break;
                };
                // A loader here whose verdict never came (its call timed out mid-way) is
                // treated like any other past its lease.
                if flight
                    .loading
                    .is_some_and(|(_, until)| until <= tokio::time::Instant::now())
                {
                    flight.loading = None;
                }
                (first.lease_ms, flight.loading.map(|(_, until)| until))
            };
            if let Some(until) = loading {
                // A caller here loads: its fill, abandon or release ends the flight or wakes
                // it; a value from elsewhere ends it too.
                let pause = until.min(tokio::time::Instant::now() + POLL_MAX);
                tokio::select! {
                    message = inbox.recv() => {
                        if self.heard(&vkey, id, message.as_deref()) {
                            break;
                        }
                    }
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(pause) => {}
                }
                continue;
            }
            let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
            let asked = tokio::time::timeout(
                self.inner.timeout,
                scripts::ACQUIRE
                    .key(&vkey)
                    .key(&lock)
                    .key(&failed)
                    .arg(self.token_value(token))
                    .arg(lease_ms)
                    .arg(&seen_holder)
                    .invoke_async::<redis::Value>(&mut self.con()),
            )
            .await;
            let acquired = match asked {
                Ok(Ok(value)) => parse_acquired(value),
                Ok(Err(e)) => Err(Failure::Redis(e)),
                Err(_) => Err(Failure::Timeout),
            };
            match acquired {
                Ok(Acquired::Value(value)) => {
                    self.end_this_flight(&vkey, id, || FlightReply::Value(value.clone()));
                    break;
                }
                Ok(Acquired::Failed(error)) => {
                    self.end_this_flight(&vkey, id, || FlightReply::Failed(error.clone()));
                    break;
                }
                Ok(Acquired::Locked) => {
                    if !self.hand_lock(&ns, &key, &vkey, id, token, lease_ms) {
                        // Everyone left meanwhile: free the key for others at once.
                        let _ = self.release(&ns, &key, token).await;
                    }
                    poll = POLL_FIRST;
                }
                Ok(Acquired::Held { holder, pttl_ms }) => {
                    seen_holder = holder;
                    // Ask again soon, and no later than the holder's lease ends.
                    let lease_left =
                        u64::try_from(pttl_ms).map_or(poll, |ms| Duration::from_millis(ms + 1));
                    let pause = poll.min(lease_left);
                    poll = (poll * 2).min(POLL_MAX);
                    tokio::select! {
                        message = inbox.recv() => {
                            if self.heard(&vkey, id, message.as_deref()) {
                                break;
                            }
                        }
                        () = wake.notified() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(failure) => {
                    // Redis is unreachable or refused: every waiter gets the error now rather
                    // than its timeout.
                    self.end_this_flight(&vkey, id, || FlightReply::Error(failure.again()));
                    break;
                }
            }
        }
        subscriber.unsubscribe(listener);
    }

    /// Hands the lock just taken to the first caller still waiting; `false` if none is.
    fn hand_lock(
        &self,
        ns: &str,
        key: &str,
        vkey: &str,
        id: u64,
        token: u64,
        lease_ms: u64,
    ) -> bool {
        let until = tokio::time::Instant::now() + Duration::from_millis(lease_ms);
        let mut loads = self.inner.flights.loads.lock().expect("loads lock");
        let Some(flight) = loads.get_mut(vkey).filter(|f| f.id == id) else {
            return false;
        };
        while let Some(waiter) = flight.waiters.pop_front() {
            let ticket = LoadTicket {
                cache: Some(self.clone()),
                ns: ns.to_owned(),
                key: key.to_owned(),
                token,
            };
            match waiter.reply.send(FlightReply::Load(ticket)) {
                Ok(()) => {
                    flight.loading = Some((token, until));
                    return true;
                }
                // Gone: the ticket comes back; it is not to release the lock, we do.
                Err(FlightReply::Load(ticket)) => drop(ticket.take()),
                Err(_) => {}
            }
        }
        false
    }

    /// A message on the key's fill channel; whether it ended the flight.
    fn heard(&self, vkey: &str, id: u64, message: Option<&[u8]>) -> bool {
        match message.and_then(keys::parse_filled) {
            Some(Filled::Value(value)) => {
                let value = Bytes::copy_from_slice(value);
                self.end_this_flight(vkey, id, || FlightReply::Value(value.clone()));
                true
            }
            Some(Filled::Failed { error, .. }) => {
                self.end_this_flight(vkey, id, || FlightReply::Failed(error.to_owned()));
                true
            }
            // Released: ask again at once. Anything else: ignore.
            Some(Filled::Released) | None => false,
        }
    }

    /// The loader's value: the waiters here answered, and the value stored (unless someone
    /// set the key meanwhile).
    pub(super) async fn fill(
        &self,
        ns: &str,
        key: &str,
        token: u64,
        value: &[u8],
    ) -> Outcome<Reply> {
        let names = &self.inner.names;
        let vkey = names.value(ns, key);
        // The waiters here get the loaded value at once, whatever Redis says (or if this call
        // times out before it says anything); a read begun from now on goes to Redis.
        self.end_flight(&vkey, || FlightReply::Value(Bytes::copy_from_slice(value)));
        let stored = scripts::FILL
            .key(&vkey)
            .key(names.lock(ns, key))
            .arg(self.token_value(token))
            .arg(value)
            .arg(self.expire_arg(ns))
            .arg(names.changes(ns))
            .arg(names.fills(ns, key))
            .arg(key)
            .invoke_async::<i64>(&mut self.con())
            .await;
        self.detach_read(&vkey);
        let stored = stored?;
        if stored == 1 {
            self.inner
                .figures
                .of(ns)
                .loads
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(Reply::Done(stored == 1))
    }

    /// The loader failed: if the lock is still its own, every waiter (here and elsewhere) gets
    /// the error; if not, the waiters here wait for whoever holds it now.
    pub(super) async fn abandon(
        &self,
        ns: &str,
        key: &str,
        token: u64,
        error: &str,
    ) -> Outcome<Reply> {
        let names = &self.inner.names;
        let vkey = names.value(ns, key);
        self.inner
            .figures
            .of(ns)
            .errors
            .fetch_add(1, Ordering::Relaxed);
        let ended = scripts::ABANDON
            .key(names.lock(ns, key))
            .key(names.failed(ns, key))
            .arg(self.token_value(token))
            .arg(error)
            .arg(super::FAILURE_KEPT.as_millis() as u64)
            .arg(names.fills(ns, key))
            .invoke_async::<i64>(&mut self.con())
            .await;
        match ended {
            Ok(0) => self.stop_loading(&vkey, token),
            // Ended, or Redis is unreachable: the waiters here get the error either way.
            _ => self.end_flight(&vkey, || FlightReply::Failed(error.to_owned())),
        }
        ended?;
        Ok(Reply::Done(true))
    }

    /// The loader gave up without a verdict (its caller went away): the lock is released if it
    /// is still its own, and a waiter (here or elsewhere) takes over.
    pub(super) async fn release(&self, ns: &str, key: &str, token: u64) -> Outcome<()> {
        let names = &self.inner.names;
        let released = scripts::RELEASE
            .key(names.lock(ns, key))
            .arg(self.token_value(token))
            .arg(names.fills(ns, key))
            .invoke_async::<i64>(&mut self.con())
            .await;
        self.stop_loading(&names.value(ns, key), token);
        released.map(drop).map_err(Failure::Redis)
    }

    /// The caller here that loaded under `token` stopped: the flight asks Redis again.
    fn stop_loading(&self, vkey: &str, token: u64) {
        let mut loads = self.inner.flights.loads.lock().expect("loads lock");
        if let Some(flight) = loads.get_mut(vkey) {
            if flight.loading.is_some_and(|(t, _)| t == token) {
                flight.loading = None;
                flight.wake.notify_one();
            }
        }
    }
}

impl Failure {
    /// The same failure for one more waiter.
    fn again(&self) -> Failure {
        match self {
            Failure::Redis(e) => Failure::Redis(e.clone()),
            Failure::Timeout => Failure::Timeout,
            Failure::Invalid(s) => Failure::Invalid(s.clone()),
            Failure::Unexpected(s) => Failure::Unexpected(s.clone()),
        }
    }
}

/// The first reader of a key: when it finishes (or is cancelled), those who joined get its
/// answer (or read again).
struct ReadLead<'a> {
    flights: &'a Flights,
    key: &'a str,
    id: u64,
    done: bool,
}

impl ReadLead<'_> {
    fn finish(&mut self) -> Vec<oneshot::Sender<ReadResult>> {
        self.done = true;
        let mut reads = self.flights.reads.lock().expect("reads lock");
        if reads
            .open
            .get(self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            return reads
                .open
                .remove(self.key)
                .map(|(_, w)| w)
                .unwrap_or_default();
        }
        reads.detached.remove(&self.id).unwrap_or_default()
    }
}

impl Drop for ReadLead<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Those who joined see their sender dropped and read again.
            drop(self.finish());
        }
    }
}
