//! Named status views. Every process registers its own; the master reads and updates them
//! across the whole cluster.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//! static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
//!
//! # async fn demo() -> cluster2::Result<()> {
//! cluster2::status::register("connections", || CONNECTIONS.load(Ordering::Relaxed))?;
//! for entry in cluster2::status::get_status("connections").await? {
//!     println!("{}: {:?}", entry.pid, entry.status);
//! }
//! # Ok(()) }
//! ```
//!
//! In the master, [`get_status`] and [`set_status`] cover the master's own registration and
//! every live worker's; a worker that does not answer within the timeout (1 s by default)
//! yields an entry carrying an error instead of failing the call. In a worker, or in a plain
//! process, they cover that process only. Views and updates run on a blocking thread, so a
//! slow one delays only its own answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::Role;
use crate::error::{Error, ErrorKind, Result};
use crate::ipc::message::{ToMaster, ToWorker};
use crate::ipc::peers;

/// How long the master waits for each worker by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// One process's answer.
///
/// In JSON (the monitor's `/statuses`), which process it is reads as `"role": "master"` or
/// `"role": "worker"` with its id in `"worker"` (`null` for the master).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "EntryJson", try_from = "EntryJson")]
#[non_exhaustive]
pub struct StatusEntry {
    /// The process that answered (or failed to).
    pub pid: u32,
    /// Which process that is: the master or a worker (with its id).
    pub role: Role,
    /// The status's name.
    pub name: String,
    /// The view, when the process answered.
    pub status: Option<Value>,
    /// Why there is no view: a timeout, a failing view, a value of the wrong shape.
    pub error: Option<String>,
}

/// A [`StatusEntry`] as JSON: the role as a word and the worker id beside it.
#[derive(Serialize, Deserialize)]
struct EntryJson {
    pid: u32,
    role: RoleName,
    worker: Option<usize>,
    name: String,
    status: Option<Value>,
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RoleName {
    Master,
    Worker,
}

impl From<StatusEntry> for EntryJson {
    fn from(e: StatusEntry) -> Self {
        let (role, worker) = match e.role {
            Role::Worker(id) => (RoleName::Worker, Some(id)),
            Role::Master => (RoleName::Master, None),
        };
        Self {
            pid: e.pid,
            role,
            worker,
            name: e.name,
            status: e.status,
            error: e.error,
        }
    }
}

impl TryFrom<EntryJson> for StatusEntry {
    type Error = String;

    fn try_from(e: EntryJson) -> std::result::Result<Self, String> {
        let role = match (e.role, e.worker) {
            (RoleName::Master, None) => Role::Master,
            (RoleName::Worker, Some(id)) => Role::Worker(id),
            (RoleName::Master, Some(id)) => {
                return Err(format!("a master entry has no worker id, but got {id}"));
            }
            (RoleName::Worker, None) => return Err("a worker entry needs its worker id".into()),
        };
        Ok(Self {
            pid: e.pid,
            role,
            name: e.name,
            status: e.status,
            error: e.error,
        })
    }
}

/// A worker's answer to a query: the view as JSON, or why there is none.
type Answer = std::result::Result<Vec<u8>, String>;
type View = Arc<dyn Fn() -> std::result::Result<Value, String> + Send + Sync>;
type Update = Arc<dyn Fn(Value) -> std::result::Result<Value, String> + Send + Sync>;

#[derive(Clone)]
struct Entry {
    view: View,
    update: Option<Update>,
}

#[derive(Default)]
struct Registry {
    own: Mutex<BTreeMap<String, Entry>>,
    /// In the master: the names each worker registered.
    workers: Mutex<HashMap<u32, BTreeSet<String>>>,
    /// In the master: queries waiting for a worker's reply.
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_query: AtomicU64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Registry::default();
        let mut own = registry.own.lock().expect("status lock");
        for r in crate::registry::STATUS.iter() {
            if own.contains_key(r.name) {
                tracing::error!(
                    "status `{}` is registered twice ({}:{}); keeping the first",
                    r.name,
                    r.file,
                    r.line
                );
                continue;
            }
            let view = r.view;
            let update = r.update;
            own.insert(
                r.name.to_owned(),
                Entry {
                    view: Arc::new(view),
                    update: update.map(|u| Arc::new(u) as Update),
                },
            );
        }
        drop(own);
        registry
    })
}

fn to_json<T: Serialize>(value: T) -> std::result::Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("the view cannot be encoded: {e}"))
}

/// Registers a read-only status; [`set_status`] leaves it as it is.
pub fn register<V, T>(name: &str, view: V) -> Result<()>
where
    V: Fn() -> T + Send + Sync + 'static,
    T: Serialize,
{
    insert(
        name,
        Entry {
            view: Arc::new(move || to_json(view())),
            update: None,
        },
    )
}

/// Registers a status that [`set_status`] can change: `update` receives the new value and
/// returns the resulting view.
pub fn register_with_update<V, T, F, U, R>(name: &str, view: V, update: F) -> Result<()>
where
    V: Fn() -> T + Send + Sync + 'static,
    T: Serialize,
    F: Fn(U) -> R + Send + Sync + 'static,
    U: DeserializeOwned,
    R: Serialize,
{
    let owned = name.to_owned();
    insert(
        name,
        Entry {
            view: Arc::new(move || to_json(view())),
            update: Some(Arc::new(move |value| {
                let value: U = serde_json::from_value(value)
                    .map_err(|e| format!("not a valid value for status `{owned}`: {e}"))?;
                to_json(update(value))
            })),
        },
    )
}

fn insert(name: &str, entry: Entry) -> Result<()> {
    {
        let mut own = registry().own.lock().expect("status lock");
        if own.contains_key(name) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("status `{name}` is already registered in this process"),
            ));
        }
        own.insert(name.to_owned(), entry);
    }
    announce();
    Ok(())
}

/// Removes a status of this process; `false` if there was none.
pub fn unregister(name: &str) -> bool {
    let removed = registry()
        .own
        .lock()
        .expect("status lock")
        .remove(name)
        .is_some();
    if removed {
        announce();
    }
    removed
}

/// The names registered: in the master, across the cluster; elsewhere, in this process.
pub fn statuses() -> Vec<String> {
    let registry = registry();
    let mut names: BTreeSet<String> = registry
        .own
        .lock()
        .expect("status lock")
        .keys()
        .cloned()
        .collect();
    for worker in registry.workers.lock().expect("status lock").values() {
        names.extend(worker.iter().cloned());
    }
    names.into_iter().collect()
}

/// Every process's view of `name`, with the default per-process timeout.
pub async fn get_status(name: &str) -> Result<Vec<StatusEntry>> {
    query(name, None, DEFAULT_TIMEOUT).await
}

/// Calls every process's update of `name` with `value` and returns what each returned (a
/// read-only status returns its unchanged view).
pub async fn set_status<T: Serialize>(name: &str, value: T) -> Result<Vec<StatusEntry>> {
    let value = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::Encode, format!("value for status `{name}`: {e}")))?;
    query(name, Some(value), DEFAULT_TIMEOUT).await
}

/// [`get_status`] (or, with `set`, [`set_status`]) with a chosen per-process timeout.
pub async fn query(name: &str, set: Option<Value>, timeout: Duration) -> Result<Vec<StatusEntry>> {
    let registry = registry();
    let own = registry.own.lock().expect("status lock").get(name).cloned();
    let remote: Vec<u32> = {
        let workers = registry.workers.lock().expect("status lock");
        let mut pids: Vec<u32> = workers
            .iter()
            .filter(|(_, names)| names.contains(name))
            .map(|(pid, _)| *pid)
            .collect();
        pids.sort_unstable();
        pids
    };
    if own.is_none() && remote.is_empty() {
        let known = statuses();
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no status named `{name}`; registered: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    let set_bytes = set
        .as_ref()
        .map(|v| serde_json::to_vec(v).expect("JSON values encode"));
    let mut waits = Vec::new();
    if let Some(entry) = own {
        let name = name.to_owned();
        let set = set.clone();
        waits.push(tokio::spawn(async move {
            let pid = std::process::id();
            let role = match crate::role::current() {
                crate::role::ProcessRole::Worker(id) => Role::Worker(id),
                // A plain process answers as the master of itself.
                _ => Role::Master,
            };
            let answer = tokio::time::timeout(timeout, run_entry(entry, set)).await;
            entry_from(
                pid,
                role,
                &name,
                answer.unwrap_or_else(|_| Err(late(timeout))),
            )
        }));
    }
    for pid in remote {
        // A worker the master no longer knows has exited: it is no part of the answer.
        let Some(worker) = peers::worker_id(pid) else {
            continue;
        };
        let role = Role::Worker(worker);
        let id = registry.next_query.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        registry.pending.lock().expect("status lock").insert(id, tx);
        let msg = ToWorker::StatusQuery {
            id,
            name: name.to_owned(),
            set: set_bytes.clone(),
        };
        let sent = peers::to_worker(pid, &msg);
        let name = name.to_owned();
        waits.push(tokio::spawn(async move {
            let answer = match sent {
                Some(Ok(())) => match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(Ok(bytes))) => serde_json::from_slice(&bytes)
                        .map_err(|e| format!("unreadable answer: {e}")),
                    Ok(Ok(Err(e))) => Err(e),
                    Ok(Err(_)) => Err("the worker exited before answering".to_owned()),
                    Err(_) => Err(late(timeout)),
                },
                Some(Err(e)) => Err(format!("cannot reach the worker: {e:?}")),
                None => Err("the worker exited".to_owned()),
            };
            self::registry()
                .pending
                .lock()
                .expect("status lock")
                .remove(&id);
            entry_from(pid, role, &name, answer)
        }));
    }
    let mut entries = Vec::with_capacity(waits.len());
    for wait in waits {
        match wait.await {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("status query failed: {e}"),
                ));
            }
        }
    }
    Ok(entries)
}

fn late(timeout: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(timeout))
}

fn entry_from(
    pid: u32,
    role: Role,
    name: &str,
    answer: std::result::Result<Value, String>,
) -> StatusEntry {
    let (status, error) = match answer {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    StatusEntry {
        pid,
        role,
        name: name.to_owned(),
        status,
        error,
    }
}

/// Runs a view or an update on a blocking thread: user code may block.
async fn run_entry(entry: Entry, set: Option<Value>) -> std::result::Result<Value, String> {
    let work = move || match (set, &entry.update) {
        (Some(value), Some(update)) => update(value),
        _ => (entry.view)(),
    };
    tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
    })
    .await
    .map_err(|e| format!("the view failed: {e}"))?
    .unwrap_or_else(|_| Err("the view panicked".to_owned()))
}

/// In a worker: tells the master which names this process has.
pub(crate) fn announce() {
    let names: Vec<String> = registry()
        .own
        .lock()
        .expect("status lock")
        .keys()
        .cloned()
        .collect();
    let _ = peers::to_master(&ToMaster::StatusNames(names));
}

/// In a worker: answers the master's query.
pub(crate) fn answer(id: u64, name: String, set: Option<Vec<u8>>) {
    let entry = registry()
        .own
        .lock()
        .expect("status lock")
        .get(&name)
        .cloned();
    tokio::spawn(async move {
        let result = match entry {
            None => Err(format!("status `{name}` is not registered in this worker")),
            Some(entry) => {
                let set = match set.map(|b| serde_json::from_slice::<Value>(&b)) {
                    Some(Ok(v)) => Some(v),
                    Some(Err(e)) => {
                        send_reply(id, Err(format!("unreadable value: {e}"))).await;
                        return;
                    }
                    None => None,
                };
                run_entry(entry, set)
                    .await
                    .map(|v| serde_json::to_vec(&v).expect("JSON values encode"))
            }
        };
        send_reply(id, result).await;
    });
}

async fn send_reply(id: u64, result: std::result::Result<Vec<u8>, String>) {
    if let Some(master) = peers::master() {
        let _ = master.send(&ToMaster::StatusReply { id, result }).await;
    }
}

/// In the master: a worker's names changed.
pub(crate) fn worker_names(pid: u32, names: Vec<String>) {
    registry()
        .workers
        .lock()
        .expect("status lock")
        .insert(pid, names.into_iter().collect());
}

/// In the master: a worker's answer arrived.
pub(crate) fn complete(id: u64, result: std::result::Result<Vec<u8>, String>) {
    if let Some(tx) = registry().pending.lock().expect("status lock").remove(&id) {
        let _ = tx.send(result);
    }
}

/// In the master: a worker is gone, and so are its statuses.
pub(crate) fn forget_worker(pid: u32) {
    registry().workers.lock().expect("status lock").remove(&pid);
}
