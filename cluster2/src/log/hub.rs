//! The master's side of log streaming and live log filters: which processes can be watched
//! (every child whose channel is open, and the master itself), how many watch each one, the
//! fan-out of each process's lines to its watchers, and each process's current filter.
//!
//! A process forwards its lines only while it has at least one watcher: the first watcher
//! turns forwarding on, the last one to leave turns it off. Lines arrive in batches (from
//! `master::children`' reader, off the supervisor's loop), are turned into JSON once, and go
//! into a `broadcast` channel per process that every watcher reads: a watcher that falls
//! [`FAN_OUT`] lines behind skips what it missed and is told how many, and never holds up
//! the others. When a child's channel closes its entry goes, which ends its watchers' streams.
//!
//! A debug worker ("debug new") is the exception: it forwards from its very first line, and
//! the hub keeps its lines (the last [`KEPT`]) until it is released or gone, so that whoever
//! opens its stream, whenever, sees its start-up from the beginning.
//!
//! Master only: the entries are children of this process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeMap;
use tokio::sync::{broadcast, oneshot};

use super::forward::{self, Sink};
use crate::ipc::channel::Sender;
use crate::ipc::message::{LogControl, LogLevel, LogLine, ToWorker};

/// Lines kept per watched process for its slowest watcher.
pub(crate) const FAN_OUT: usize = 1024;
/// Lines of a debug worker kept for its watchers, at most; older ones are dropped (and
/// counted) first.
pub(crate) const KEPT: usize = 4096;
/// How long the master waits for a child to confirm a new filter.
const FILTER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a watcher receives.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    /// One line, as the JSON the monitor sends.
    Line(Arc<str>),
    /// The process dropped this many lines before they reached the master.
    Dropped(u64),
}

/// A process that can be watched.
struct Proc {
    /// The channel to it; `None` for the master itself.
    tx: Option<Sender<ToWorker>>,
    /// The fan-out to its watchers, while it has any (or keeps its lines): [`FAN_OUT`] slots
    /// are tens of kilobytes, which a master with many workers should not hold for nobody.
    lines: Option<broadcast::Sender<Item>>,
    watchers: usize,
    /// The filter set live, if one was.
    filter: Option<String>,
    /// Tells this entry from a later one for a recycled pid.
    generation: u64,
    /// A debug worker's lines since its start, for watchers yet to come.
    kept: Option<Kept>,
}

/// The lines a debug worker sent so far: the newest [`KEPT`], and how many older ones went.
#[derive(Default)]
struct Kept {
    lines: VecDeque<Arc<str>>,
    dropped: u64,
}

impl Kept {
    fn push(&mut self, item: &Item) {
        match item {
            Item::Line(line) => {
                if self.lines.len() == KEPT {
                    self.lines.pop_front();
                    self.dropped += 1;
                }
                self.lines.push_back(line.clone());
            }
            Item::Dropped(n) => self.dropped += n,
        }
    }

    /// What a new watcher is sent first.
    fn replay(&self) -> VecDeque<Item> {
        let lost = (self.dropped > 0).then_some(Item::Dropped(self.dropped));
        lost.into_iter()
            .chain(self.lines.iter().cloned().map(Item::Line))
            .collect()
    }
}

impl Proc {
    fn new(tx: Option<Sender<ToWorker>>, generation: u64) -> Self {
        Self {
            tx,
            lines: None,
            watchers: 0,
            filter: None,
            generation,
            kept: None,
        }
    }

    /// Tells the process to start or stop forwarding its lines.
    fn forward(&self, on: bool) {
        match &self.tx {
            // A full channel loses the message: the lines then come although nobody watches
            // (and are thrown away here), or do not come for this watcher. Both are harmless,
            // and a channel four thousand messages behind has bigger problems.
            Some(tx) => {
                let _ = tx.try_send(&ToWorker::Logs(LogControl::Forward(on)));
            }
            None if on => forward::start(Sink::Local),
            None => forward::stop(),
        }
    }
}

struct Hub {
    procs: HashMap<u32, Proc>,
    /// The last generation or request id handed out.
    last_id: u64,
    /// Filter changes waiting for their child's answer: id → (pid, answer).
    pending: HashMap<u64, (u32, oneshot::Sender<Result<(), String>>)>,
}

fn hub() -> MutexGuard<'static, Hub> {
    static HUB: OnceLock<Mutex<Hub>> = OnceLock::new();
    HUB.get_or_init(|| {
        // The master can be watched from the start.
        let procs = HashMap::from([(std::process::id(), Proc::new(None, 0))]);
        Mutex::new(Hub {
            procs,
            last_id: 0,
            pending: HashMap::new(),
        })
    })
    .lock()
    .unwrap_or_else(PoisonError::into_inner)
}

/// A child's channel is open: it can be watched. A debug worker (`debug_filter`, the filter it
/// logs with) forwards from its start, and its lines are kept until [`stop_keeping`].
pub(crate) fn child_started(pid: u32, tx: Sender<ToWorker>, debug_filter: Option<String>) {
    let mut hub = hub();
    hub.last_id += 1;
    let mut proc = Proc::new(Some(tx), hub.last_id);
    if debug_filter.is_some() {
        proc.filter = debug_filter;
        proc.kept = Some(Kept::default());
    }
    hub.procs.insert(pid, proc);
}

/// A debug worker was released into traffic: its lines are no longer kept, and it forwards
/// only while watched, like any process.
pub(crate) fn stop_keeping(pid: u32) {
    let mut hub = hub();
    let Some(proc) = hub.procs.get_mut(&pid) else {
        return;
    };
    if proc.kept.take().is_some() && proc.watchers == 0 {
        proc.forward(false);
        proc.lines = None;
    }
}

/// A child's channel closed: its watchers' streams end, its pending filter changes fail.
pub(crate) fn child_gone(pid: u32) {
    let mut hub = hub();
    hub.procs.remove(&pid);
    hub.pending.retain(|_, (of, _)| *of != pid);
}

/// One watcher of one process's lines; dropping it leaves.
#[derive(Debug)]
pub(crate) struct Watch {
    pid: u32,
    generation: u64,
    /// What came before this watcher (a debug worker's kept lines), to send first.
    pub(crate) backlog: VecDeque<Item>,
    /// The lines; closed when the process is gone.
    pub(crate) lines: broadcast::Receiver<Item>,
}

/// Starts watching `pid`; `None` if no such process can be watched.
pub(crate) fn watch(pid: u32) -> Option<Watch> {
    let mut hub = hub();
    let proc = hub.procs.get_mut(&pid)?;
    proc.watchers += 1;
    if proc.watchers == 1 && proc.kept.is_none() {
        proc.forward(true);
    }
    // Under the hub's lock, as `received` keeps and sends: no line is in both, none in neither.
    Some(Watch {
        pid,
        generation: proc.generation,
        backlog: proc.kept.as_ref().map(Kept::replay).unwrap_or_default(),
        lines: proc
            .lines
            .get_or_insert_with(|| broadcast::channel(FAN_OUT).0)
            .subscribe(),
    })
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut hub = hub();
        let Some(proc) = hub.procs.get_mut(&self.pid) else {
            return;
        };
        if proc.generation == self.generation {
            proc.watchers -= 1;
            if proc.watchers == 0 && proc.kept.is_none() {
                proc.forward(false);
                proc.lines = None;
            }
        }
    }
}

/// Lines from `pid`, and how many it dropped before them.
pub(crate) fn received(pid: u32, lines: Vec<LogLine>, dropped: u64) {
    let mut hub = hub();
    let Some(proc) = hub.procs.get_mut(&pid) else {
        return;
    };
    if let Some(kept) = proc.kept.as_mut() {
        // A debug worker: kept and sent under the lock (see `watch`). Only one process at a
        // time is one, so its lines holding the hub's lock for a moment is no contention.
        let items = (dropped > 0)
            .then_some(Item::Dropped(dropped))
            .into_iter()
            .chain(lines.iter().map(|line| Item::Line(to_json(line))));
        for item in items {
            kept.push(&item);
            if let Some(out) = &proc.lines {
                let _ = out.send(item);
            }
        }
        return;
    }
    // Nobody watches.
    let Some(out) = proc.lines.clone() else {
        return;
    };
    drop(hub);
    // Lines still on their way when the last watcher left.
    if out.receiver_count() == 0 {
        return;
    }
    if dropped > 0 {
        let _ = out.send(Item::Dropped(dropped));
    }
    for line in &lines {
        let _ = out.send(Item::Line(to_json(line)));
    }
}

fn to_json(line: &LogLine) -> Arc<str> {
    serde_json::to_string(&Json(line))
        .expect("a log line serializes")
        .into()
}

/// A child's answer to a filter change.
pub(crate) fn filter_set(id: u64, result: Result<(), String>) {
    if let Some((_, answer)) = hub().pending.remove(&id) {
        let _ = answer.send(result);
    }
}

/// Why a filter was not changed.
#[derive(Debug)]
pub(crate) enum FilterError {
    /// No process with this pid can be reached.
    NoProcess,
    /// The process refused it (its subscriber is the application's), with its reason.
    Refused(String),
    /// The process exited before it answered.
    Exited,
    /// The process did not answer in time.
    NoAnswer,
}

/// Replaces the log filter of `pid` (the master's own or a child's) with `filter`, already
/// checked, and records it.
pub(crate) async fn set_filter(pid: u32, filter: &str) -> Result<(), FilterError> {
    let (tx, generation, id, answer) = {
        let mut hub = hub();
        let Some(proc) = hub.procs.get_mut(&pid) else {
            return Err(FilterError::NoProcess);
        };
        let Some(tx) = proc.tx.clone() else {
            super::set_filter(filter).map_err(FilterError::Refused)?;
            proc.filter = Some(filter.to_owned());
            drop(hub);
            tracing::info!("log filter of the master (pid {pid}) set to `{filter}`");
            return Ok(());
        };
        let generation = proc.generation;
        hub.last_id += 1;
        let id = hub.last_id;
        let (done, answer) = oneshot::channel();
        hub.pending.insert(id, (pid, done));
        (tx, generation, id, answer)
    };
    let message = ToWorker::Logs(LogControl::SetFilter {
        id,
        filter: filter.to_owned(),
    });
    if tx.send(&message).await.is_err() {
        hub().pending.remove(&id);
        return Err(FilterError::Exited);
    }
    let answer = tokio::time::timeout(FILTER_TIMEOUT, answer).await;
    hub().pending.remove(&id);
    match answer {
        Ok(Ok(Ok(()))) => {
            if let Some(proc) = hub().procs.get_mut(&pid) {
                if proc.generation == generation {
                    proc.filter = Some(filter.to_owned());
                }
            }
            tracing::info!("log filter of pid {pid} set to `{filter}`");
            Ok(())
        }
        Ok(Ok(Err(why))) => Err(FilterError::Refused(why)),
        Ok(Err(_)) => Err(FilterError::Exited),
        Err(_) => Err(FilterError::NoAnswer),
    }
}

/// Every process that can be watched or given a filter: the master first, then its children
/// by pid.
pub(crate) fn pids() -> Vec<u32> {
    let master = std::process::id();
    let mut children: Vec<u32> = hub()
        .procs
        .keys()
        .copied()
        .filter(|&pid| pid != master)
        .collect();
    children.sort_unstable();
    std::iter::once(master).chain(children).collect()
}

/// The log filter `pid` runs with now: the one last set live, or the configured `log.level`.
/// `None` if the master knows no such process.
pub(crate) fn current_filter(pid: u32) -> Option<String> {
    let filter = hub().procs.get(&pid)?.filter.clone();
    Some(filter.unwrap_or_else(super::configured))
}

/// A line as the monitor sends it:
/// `{"level":"INFO","target":…,"message":…,"fields":{…},"at_unix_secs":…}`.
struct Json<'a>(&'a LogLine);

impl Serialize for Json<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let line = self.0;
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("level", level(line.level))?;
        map.serialize_entry("target", &line.target)?;
        map.serialize_entry("message", &line.message)?;
        map.serialize_entry("fields", &Fields(&line.fields))?;
        map.serialize_entry("at_unix_secs", &line.at_unix_secs)?;
        map.end()
    }
}

struct Fields<'a>(&'a [(String, String)]);

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
        LogLevel::Trace => "TRACE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::channel::{Receiver, channel};
    use crate::ipc::message::ToMaster;

    fn line(message: &str) -> LogLine {
        LogLine {
            level: LogLevel::Info,
            target: "t".to_owned(),
            message: message.to_owned(),
            fields: Vec::new(),
            at_unix_secs: 0.0,
        }
    }

    async fn next_forward(child: &mut Receiver<ToWorker>) -> bool {
        match child.recv().await.unwrap() {
            Some(ToWorker::Logs(LogControl::Forward(on))) => on,
            other => panic!("expected a forwarding switch, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn watchers_switch_forwarding_get_every_line_and_end_with_the_child() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (tx, _from_child, _) = channel::<ToWorker, ToMaster>(a);
        let (_to_master, mut child, _) = channel::<ToMaster, ToWorker>(b);
        // Not a real process: no pid is this high.
        let pid = u32::MAX - 7;
        child_started(pid, tx, None);

        // The first watcher switches forwarding on, the last one off; none in between.
        let first = watch(pid).unwrap();
        let second = watch(pid).unwrap();
        assert!(next_forward(&mut child).await);
        drop(first);
        drop(second);
        assert!(!next_forward(&mut child).await);

        let mut one = watch(pid).unwrap();
        let mut two = watch(pid).unwrap();
        assert!(next_forward(&mut child).await);
        received(pid, vec![line("a"), line("b")], 3);
        for watcher in [&mut one, &mut two] {
            assert!(matches!(watcher.lines.recv().await, Ok(Item::Dropped(3))));
            for message in ["a", "b"] {
                let Ok(Item::Line(json)) = watcher.lines.recv().await else {
                    panic!("expected a line");
                };
                assert!(
                    json.contains(&format!(r#""message":"{message}""#)),
                    "{json}"
                );
            }
        }

        child_gone(pid);
        assert!(matches!(
            one.lines.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        assert!(watch(pid).is_none());
        assert_eq!(current_filter(pid), None);
    }

    #[tokio::test]
    async fn a_debug_workers_lines_are_kept_for_watchers_to_come_until_it_is_released() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (tx, _from_child, _) = channel::<ToWorker, ToMaster>(a);
        let (_to_master, mut child, _) = channel::<ToMaster, ToWorker>(b);
        let pid = u32::MAX - 8;
        child_started(pid, tx, Some("debug".to_owned()));
        assert_eq!(current_filter(pid).as_deref(), Some("debug"));

        // Lines before anyone watches, more than are kept: the oldest go, and are counted.
        let early: Vec<LogLine> = (0..KEPT + 3).map(|i| line(&format!("early {i}"))).collect();
        received(pid, early, 2);
        let mut first = watch(pid).unwrap();
        let backlog: Vec<Item> = first.backlog.drain(..).collect();
        assert!(matches!(backlog[0], Item::Dropped(5)), "{:?}", backlog[0]);
        assert_eq!(backlog.len(), KEPT + 1);
        let Item::Line(oldest) = &backlog[1] else {
            panic!("expected a line")
        };
        assert!(oldest.contains(r#""message":"early 3""#), "{oldest}");

        // Live lines reach the watcher, and a later watcher gets them in its backlog too.
        received(pid, vec![line("live")], 0);
        assert!(matches!(first.lines.recv().await, Ok(Item::Line(l)) if l.contains("live")));
        let second = watch(pid).unwrap();
        assert_eq!(second.backlog.len(), KEPT + 1);
        // Watchers leaving do not stop a held worker's forwarding.
        drop(first);
        drop(second);

        // Released: nothing is kept any more, and nobody watching turns forwarding off.
        stop_keeping(pid);
        assert!(!next_forward(&mut child).await);
        received(pid, vec![line("after")], 0);
        let third = watch(pid).unwrap();
        assert!(third.backlog.is_empty());
        child_gone(pid);
    }

    #[test]
    fn a_line_in_json() {
        let line = LogLine {
            level: LogLevel::Warn,
            target: "my_app::db".to_owned(),
            message: "slow query".to_owned(),
            fields: vec![("ms".to_owned(), "120".to_owned())],
            at_unix_secs: 1.5,
        };
        assert_eq!(
            serde_json::to_string(&Json(&line)).unwrap(),
            r#"{"level":"WARN","target":"my_app::db","message":"slow query","fields":{"ms":"120"},"at_unix_secs":1.5}"#
        );
    }
}
