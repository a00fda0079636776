//! Events between the processes of a cluster, as simple as a local event emitter.
//!
//! ```no_run
//! use cluster2::emitter::{self, Target};
//!
//! # fn demo() -> cluster2::Result<()> {
//! let id = emitter::on("price-changed", |ev: emitter::Event| {
//!     let (sku, cents): (String, u64) = ev.args()?;
//!     println!("{sku} now costs {cents} cents (from pid {})", ev.from());
//!     Ok(())
//! });
//! emitter::emit("price-changed", ("sku-1", 999))?; // master: itself + every worker
//! emitter::to([Target::Master]).emit("reload", ())?;
//! emitter::remove_listener("price-changed", id);
//! # Ok(()) }
//! ```
//!
//! - `emit` from the master reaches the master itself and every worker; from a worker, the
//!   worker itself and the master. `to(...)`/`emit_to` pick the targets; a worker can reach
//!   another worker by pid (the master relays it). In a plain process, outside a cluster,
//!   events reach the process itself.
//! - Payloads are any `Serialize` value, carried as JSON; [`Event::args`] decodes into the
//!   listener's own type and fails cleanly on a mismatch.
//! - User events travel in their own message type: no event name can collide with cluster2's
//!   internal messages.
//! - Order is kept per sender and receiver. Listeners run on the task that receives the event,
//!   one after another: keep them short, and spawn a task for long work. A listener's error is
//!   logged with the event's name.
//! - Overflow: each channel holds at most 4096 messages waiting for the peer. `emit` never
//!   waits: when a target's queue is full, that target misses the event and `emit` returns an
//!   [`ErrorKind::Overflow`](crate::ErrorKind) error naming it (the other targets still get it).
//!   An event for a worker that has died is dropped with a debug log.
//! - Register listeners that must not miss anything before the process serves, e.g. in
//!   `#[configure_app]`.
//!
//! **Every host.** With `emitter.backend` set to a Redis URL, [`Target::AllHosts`] reaches
//! every process (master and workers) of every host of the cluster (the hosts that share the
//! server and `cluster_name`), this one included, through Redis pub/sub:
//! `emitter::to([Target::AllHosts]).emit("reload-config", ())`, to invalidate something
//! everywhere or reload configuration fleet-wide. Payloads are as above, and events from one
//! sender arrive in the order it emitted them. Like pub/sub, it is fire-and-forget: a process
//! whose connection to Redis is down at that moment misses the event, and an event that
//! cannot be published is logged and dropped. Without the backend, emitting to `AllHosts` is
//! an error that says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::ipc::channel::TrySendError;
use crate::ipc::message::{ToMaster, ToWorker, WireEvent, WireTarget};
use crate::ipc::peers;

mod hosts; // Target::AllHosts: events to every host of the cluster over Redis pub/sub

pub(crate) use hosts::connect as connect_hosts;

/// Identifies a listener, for [`remove_listener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// Where an event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// The master process.
    Master,
    /// This process.
    Myself,
    /// The process with this pid (the master, a worker, or this process).
    Pid(u32),
    /// Every worker.
    AllWorkers,
    /// Every process (master and workers) of every host of the cluster, this one included,
    /// through the Redis server of `emitter.backend`.
    AllHosts,
}

/// An event as a listener receives it.
#[derive(Clone, Debug)]
pub struct Event {
    name: Arc<str>,
    from: u32,
    payload: Arc<[u8]>,
}

impl Event {
    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pid of the process that emitted it.
    pub fn from(&self) -> u32 {
        self.from
    }

    /// Decodes the payload into `T`; an error if it does not have that shape.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "event `{}` does not decode into {}: {e}",
                    self.name,
                    std::any::type_name::<T>()
                ),
            )
        })
    }
}

type Callback = Arc<dyn Fn(Event) -> std::result::Result<(), BoxError> + Send + Sync>;

struct Listener {
    id: ListenerId,
    once: bool,
    callback: Callback,
}

#[derive(Default)]
struct Registry {
    listeners: Mutex<HashMap<String, Vec<Listener>>>,
    next_id: AtomicU64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn add(event: &str, once: bool, callback: Callback) -> ListenerId {
    let registry = registry();
    let id = ListenerId(registry.next_id.fetch_add(1, Ordering::Relaxed));
    registry
        .listeners
        .lock()
        .expect("listeners lock")
        .entry(event.to_owned())
        .or_default()
        .push(Listener { id, once, callback });
    id
}

/// Calls `listener` for every `event`.
pub fn on<F>(event: &str, listener: F) -> ListenerId
where
    F: Fn(Event) -> std::result::Result<(), BoxError> + Send + Sync + 'static,
{
    add(event, false, Arc::new(listener))
}

/// Calls `listener` for the next `event` only.
pub fn once<F>(event: &str, listener: F) -> ListenerId
where
    F: Fn(Event) -> std::result::Result<(), BoxError> + Send + Sync + 'static,
{
    add(event, true, Arc::new(listener))
}

/// Removes one listener; `false` if it was not registered for `event`.
pub fn remove_listener(event: &str, id: ListenerId) -> bool {
    let mut listeners = registry().listeners.lock().expect("listeners lock");
    let Some(list) = listeners.get_mut(event) else {
        return false;
    };
    let before = list.len();
    list.retain(|l| l.id != id);
    let removed = list.len() != before;
    if list.is_empty() {
        listeners.remove(event);
    }
    removed
}

/// Removes every listener of `event`.
pub fn remove_all_listeners(event: &str) {
    registry()
        .listeners
        .lock()
        .expect("listeners lock")
        .remove(event);
}

/// Emits to the default targets: from the master, the master and every worker; from a
/// worker, the worker and the master; in a plain process, the process itself.
pub fn emit<T: Serialize>(event: &str, args: T) -> Result<()> {
    let targets: &[Target] = if peers::in_worker() {
        &[Target::Myself, Target::Master]
    } else {
        &[Target::Myself, Target::AllWorkers]
    };
    emit_to(targets, event, args)
}

/// Emits to `targets`; see [`to`].
pub fn emit_to<T: Serialize>(targets: &[Target], event: &str, args: T) -> Result<()> {
    let payload = serde_json::to_vec(&args).map_err(|e| {
        Error::new(
            ErrorKind::Encode,
            format!("event `{event}` cannot be encoded: {e}"),
        )
    })?;
    let wire = WireEvent {
        name: event.to_owned(),
        from: std::process::id(),
        payload,
    };
    route(targets, wire)
}

/// An emitter bound to some targets: `emitter::to([Target::Master]).emit("reload", ())`.
pub fn to(targets: impl IntoIterator<Item = Target>) -> To {
    To {
        targets: targets.into_iter().collect(),
    }
}

/// Emits to a fixed set of targets; made by [`to`].
#[derive(Clone, Debug)]
pub struct To {
    targets: Vec<Target>,
}

impl To {
    /// Emits `event` with `args` to this emitter's targets.
    pub fn emit<T: Serialize>(&self, event: &str, args: T) -> Result<()> {
        emit_to(&self.targets, event, args)
    }
}

/// Delivers `wire` to each target once, even when targets overlap (`Myself` and
/// `Pid(own pid)`).
fn route(targets: &[Target], wire: WireEvent) -> Result<()> {
    // Every host includes every process here, this one too: nobody gets it twice.
    if targets.contains(&Target::AllHosts) {
        return hosts::send(&wire);
    }
    let me = std::process::id();
    let in_worker = peers::in_worker();
    let mut local = false;
    let mut workers: Vec<u32> = Vec::new();
    let mut via_master: Vec<WireTarget> = Vec::new();
    for target in targets {
        match *target {
            Target::Myself => local = true,
            Target::Pid(pid) if pid == me => local = true,
            Target::Master if !in_worker => local = true,
            Target::Master => via_master.push(WireTarget::Master),
            Target::Pid(pid) if in_worker => via_master.push(WireTarget::Pid(pid)),
            Target::Pid(pid) => workers.push(pid),
            Target::AllWorkers if in_worker => via_master.push(WireTarget::AllWorkers),
            Target::AllWorkers => workers.extend(peers::worker_pids()),
            // Sent to every host above.
            Target::AllHosts => {}
        }
    }
    workers.sort_unstable();
    workers.dedup();
    via_master.dedup();

    let mut overflowed = Vec::new();
    if !via_master.is_empty() {
        let msg = ToMaster::Emit {
            event: wire.clone(),
            targets: via_master,
        };
        if peers::to_master(&msg) == Err(TrySendError::Full) {
            overflowed.push("the master".to_owned());
        }
    }
    overflowed.extend(send_to_workers(&workers, &wire));
    if local {
        deliver(wire);
    }
    if overflowed.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Overflow,
            format!(
                "event dropped for {}: its queue is full ({} messages waiting)",
                overflowed.join(", "),
                crate::ipc::channel::QUEUE
            ),
        ))
    }
}

/// Sends to each worker; returns the ones whose queue was full.
fn send_to_workers(pids: &[u32], wire: &WireEvent) -> Vec<String> {
    if pids.is_empty() {
        return Vec::new();
    }
    let mut overflowed = Vec::new();
    for (pid, missed) in peers::to_workers(pids, &ToWorker::Event(wire.clone())) {
        match missed {
            Some(TrySendError::Full) => overflowed.push(format!("worker pid {pid}")),
            Some(TrySendError::Closed) | None => {
                tracing::debug!(event = %wire.name, pid, "no such worker; event dropped");
            }
        }
    }
    overflowed
}

/// In the master: an event a worker asked to deliver.
pub(crate) fn relay(event: WireEvent, targets: &[WireTarget]) {
    let me = std::process::id();
    let mut local = false;
    let mut workers = Vec::new();
    for target in targets {
        match *target {
            WireTarget::Master => local = true,
            WireTarget::Pid(pid) if pid == me => local = true,
            WireTarget::Pid(pid) => workers.push(pid),
            WireTarget::AllWorkers => workers.extend(peers::worker_pids()),
        }
    }
    workers.sort_unstable();
    workers.dedup();
    for what in send_to_workers(&workers, &event) {
        tracing::warn!(event = %event.name, "relayed event dropped for {what}: queue full");
    }
    if local {
        deliver(event);
    }
}

/// Runs this process's listeners for an event.
pub(crate) fn deliver(wire: WireEvent) {
    let callbacks: Vec<Callback> = {
        let mut listeners = registry().listeners.lock().expect("listeners lock");
        let Some(list) = listeners.get_mut(&wire.name) else {
            return;
        };
        let callbacks = list.iter().map(|l| l.callback.clone()).collect();
        list.retain(|l| !l.once);
        if list.is_empty() {
            listeners.remove(&wire.name);
        }
        callbacks
    };
    // Called without the lock held, so that listeners may emit or (un)register.
    let event = Event {
        name: wire.name.into(),
        from: wire.from,
        payload: wire.payload.into(),
    };
    for callback in callbacks {
        if let Err(e) = callback(event.clone()) {
            tracing::warn!(event = %event.name, from = event.from, "listener failed: {e}");
        }
    }
}
