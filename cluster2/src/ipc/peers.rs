//! Who this process can talk to: nobody (a plain process), the master (a worker), or every
//! worker and the standalone cache manager (the master). The emitter, the status registry and
//! the monitor's profile requests route through here.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use super::channel::{Encoded, Sender, TrySendError};
use super::message::{ToMaster, ToWorker};

#[derive(Default)]
struct Peers {
    master: Option<Sender<ToMaster>>,
    /// In the master: pid → (worker id, channel).
    workers: HashMap<u32, (usize, Sender<ToWorker>)>,
    /// In the master: the standalone cache manager (pid, channel), while it runs.
    cache_manager: Option<(u32, Sender<ToWorker>)>,
}

fn peers() -> &'static RwLock<Peers> {
    static PEERS: OnceLock<RwLock<Peers>> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

/// In a worker: the channel to the master.
pub(crate) fn set_master(sender: Sender<ToMaster>) {
    peers().write().expect("peers lock").master = Some(sender);
}

/// In the master: a worker joined.
pub(crate) fn add_worker(pid: u32, id: usize, sender: Sender<ToWorker>) {
    peers()
        .write()
        .expect("peers lock")
        .workers
        .insert(pid, (id, sender));
}

/// In the master: a worker is gone.
pub(crate) fn remove_worker(pid: u32) {
    peers().write().expect("peers lock").workers.remove(&pid);
}

/// In the master: the standalone cache manager started (`Some`) or is gone (`None`). It is
/// not a worker: events and statuses never reach it, only requests addressed to its pid.
pub(crate) fn set_cache_manager(manager: Option<(u32, Sender<ToWorker>)>) {
    peers().write().expect("peers lock").cache_manager = manager;
}

/// In the master: the standalone cache manager's pid, while it runs.
pub(crate) fn cache_manager_pid() -> Option<u32> {
    let peers = peers().read().expect("peers lock");
    peers.cache_manager.as_ref().map(|(pid, _)| *pid)
}

/// Sends to one child, a worker or the standalone cache manager. `None` if `pid` is neither.
pub(crate) fn to_child(pid: u32, msg: &ToWorker) -> Option<Result<(), TrySendError>> {
    let peers = peers().read().expect("peers lock");
    match &peers.cache_manager {
        Some((manager, sender)) if *manager == pid => Some(sender.try_send(msg)),
        _ => peers.workers.get(&pid).map(|(_, s)| s.try_send(msg)),
    }
}

/// Sends to the master, if this is a worker. `Ok(false)` outside a cluster.
pub(crate) fn to_master(msg: &ToMaster) -> Result<bool, TrySendError> {
    match &peers().read().expect("peers lock").master {
        Some(sender) => sender.try_send(msg).map(|()| true),
        None => Ok(false),
    }
}

/// Whether this process is a worker (it has a channel to the master).
pub(crate) fn in_worker() -> bool {
    peers().read().expect("peers lock").master.is_some()
}

/// A clone of the channel to the master, for callers that must wait for room.
pub(crate) fn master() -> Option<Sender<ToMaster>> {
    peers().read().expect("peers lock").master.clone()
}

/// In the master: the worker id of worker `pid`, while it lives.
pub(crate) fn worker_id(pid: u32) -> Option<usize> {
    let peers = peers().read().expect("peers lock");
    peers.workers.get(&pid).map(|(id, _)| *id)
}

/// Sends to one worker. `None` if there is no such worker.
pub(crate) fn to_worker(pid: u32, msg: &ToWorker) -> Option<Result<(), TrySendError>> {
    let peers = peers().read().expect("peers lock");
    peers.workers.get(&pid).map(|(_, s)| s.try_send(msg))
}

/// Sends one message to each of `pids` (a fan-out: encoded once, one look-up of the peers);
/// returns those that did not get it (`None`: no such worker).
pub(crate) fn to_workers(pids: &[u32], msg: &ToWorker) -> Vec<(u32, Option<TrySendError>)> {
    // The last one takes the encoding itself: sharing it costs an allocation, which a
    // message for one worker need not pay.
    let mut encoded = Some(Encoded::new(msg));
    let peers = peers().read().expect("peers lock");
    let mut missed = Vec::new();
    for (i, &pid) in pids.iter().enumerate() {
        let msg = if i + 1 == pids.len() {
            encoded.take()
        } else {
            encoded.clone()
        };
        let (Some(msg), Some((_, sender))) = (msg, peers.workers.get(&pid)) else {
            missed.push((pid, None));
            continue;
        };
        if let Err(e) = sender.try_send_encoded(msg) {
            missed.push((pid, Some(e)));
        }
    }
    missed
}

/// Pids of the live workers, in the master.
pub(crate) fn worker_pids() -> Vec<u32> {
    let mut pids: Vec<u32> = peers()
        .read()
        .expect("peers lock")
        .workers
        .keys()
        .copied()
        .collect();
    pids.sort_unstable();
    pids
}
