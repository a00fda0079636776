//! The master's event loop. One task owns every worker's state and reacts to events (messages,
//! exits, due restarts, control requests, signals, timers) one at a time, so nothing is shared
//! between tasks except the read-only board the monitor shows.
//!
//! Workers live in slots (`0..workers`). A slot normally has one active process; while it is
//! being replaced it also has a successor, which becomes the active process once it listens,
//! and the old process then drains and exits. Exactly one replacement runs at a time (the death
//! queue), so the number of serving workers stays between `workers` and `workers + 1`.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::control::{self, Control};
use super::pidfile::PidFiles;
use super::spawn::{Kind, Spawned, Spawner};
use crate::cluster::{MainBody, Parts, ShouldKill};
use crate::ecv::Ecv;
use crate::exit;
use crate::heartbeat::Heartbeat;
use crate::ipc::channel::{self, Sender};
use crate::ipc::message::{Hello, StartStage, ToMaster, ToWorker};
use crate::options::Options;
use crate::started::{Role, Started};

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub(crate) enum WorkerState {
    /// Spawned; building its app.
    Starting,
    /// Serving its warm-up listener and running the warm-up.
    Warming,
    /// Accepting on the shared port.
    Listening,
    /// Not accepting new connections, on request; keeps its state.
    Paused,
    /// Told to stop; finishing in-flight requests.
    Stopping,
}

/// What the monitor shows about one worker process; ages are computed when it is read.
#[derive(Clone, Debug)]
pub(crate) struct WorkerInfo {
    pub(crate) id: usize,
    pub(crate) pid: u32,
    pub(crate) state: WorkerState,
    pub(crate) spawned_at: Instant,
    pub(crate) warm_up_addr: Option<SocketAddr>,
    pub(crate) restarts: u64,
    pub(crate) crash_streak: u32,
    pub(crate) next_restart_in: Option<Duration>,
    pub(crate) successor_of: Option<u32>,
    pub(crate) heartbeat: Option<(Heartbeat, Instant)>,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
}

/// Where the cluster as a whole is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the initial workers.
    #[default]
    Starting,
    /// Every initial worker was listening once.
    Running,
    /// Stopping.
    ShuttingDown,
}

/// Counters of workers that are gone, so that cluster totals never go backwards.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) requests: u64,
    pub(crate) request_seconds: f64,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
}

/// One entry of the death queue, as shown.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct QueuedReplacement {
    pub(crate) worker: usize,
    pub(crate) pid: u32,
    pub(crate) reason: String,
    /// Whether this one is in progress (the head of the queue).
    pub(crate) in_progress: bool,
    pub(crate) successor: Option<u32>,
    pub(crate) tries: u32,
}

/// The master's state as the monitor reads it.
#[derive(Debug, Default)]
pub(crate) struct Board {
    pub(crate) workers: RwLock<Vec<WorkerInfo>>,
    pub(crate) death_queue: RwLock<Vec<QueuedReplacement>>,
    pub(crate) phase: RwLock<Phase>,
    /// An initial worker failed its warm-up.
    pub(crate) warm_up_failed: AtomicBool,
    pub(crate) retired: Mutex<Totals>,
    pub(crate) restarts: AtomicU64,
    pub(crate) replacements: AtomicU64,
}

impl Board {
    /// Why the cluster should not take traffic, whatever the ECV mode says.
    pub(crate) fn gate(&self) -> Option<String> {
        let phase = *self.phase.read().expect("board lock");
        let serving = self
            .workers
            .read()
            .expect("board lock")
            .iter()
            .filter(|w| w.state == WorkerState::Listening)
            .count();
        match phase {
            Phase::ShuttingDown => Some("shutting down".to_owned()),
            Phase::Starting if self.warm_up_failed.load(Ordering::Relaxed) => {
                Some("warm-up failed".to_owned())
            }
            Phase::Starting => Some("starting".to_owned()),
            Phase::Running if serving == 0 => Some("no worker alive".to_owned()),
            Phase::Running => None,
        }
    }
}

enum Event {
    Message {
        pid: u32,
        msg: ToMaster,
    },
    ChannelBroken {
        pid: u32,
        error: String,
    },
    Exited {
        pid: u32,
        status: std::io::Result<ExitStatus>,
    },
    RestartDue {
        slot: usize,
    },
    CacheRestartDue,
}

/// The standalone cache manager process.
struct CacheProc {
    pid: u32,
    tx: Sender<ToWorker>,
    signals: mpsc::UnboundedSender<Signal>,
    started: Instant,
}

/// One live worker process.
struct Proc {
    pid: u32,
    slot: usize,
    tx: Sender<ToWorker>,
    signals: mpsc::UnboundedSender<Signal>,
    state: WorkerState,
    spawned_at: Instant,
    listening_since: Option<Instant>,
    warm_up_addr: Option<SocketAddr>,
    /// The latest heartbeat and when it arrived.
    heartbeat: Option<(Heartbeat, Instant)>,
    /// 5xx answers and panics summed over this process's heartbeats.
    errors: u64,
    panics: u64,
    /// Set when this process replaces that one (death queue).
    successor_of: Option<u32>,
    /// The master asked it to go: its exit is no crash.
    expected_exit: bool,
    /// A caller waiting for a pause or resume to be confirmed.
    waiting: Option<(bool, oneshot::Sender<Result<(), String>>)>,
}

/// One worker id and its restart history.
#[derive(Default)]
struct Slot {
    /// The process serving this slot (or starting to).
    active: Option<u32>,
    crash_streak: u32,
    restarts: u64,
    restart_at: Option<Instant>,
    last_failure: Option<String>,
}

/// A queued replacement.
#[derive(Clone, Debug)]
struct Entry {
    slot: usize,
    pid: u32,
    reason: String,
    /// A runaway cannot drain: it is killed shortly after its successor is ready.
    runaway: bool,
}

/// The replacement in progress.
struct Replacing {
    entry: Entry,
    started: Instant,
    tries: u32,
    successor: Option<u32>,
    stage: Stage,
    deadline: tokio::time::Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the successor to listen.
    Successor,
    /// The old process was told to stop; waiting for its exit.
    Draining,
    /// The old process got SIGTERM; waiting for its exit before SIGKILL.
    Terminated,
}

/// How long an old worker gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long a runaway gets after its successor is ready before it is killed.
const RUNAWAY_GRACE: Duration = Duration::from_secs(2);

struct Supervisor {
    options: Arc<Options>,
    app_args: Arc<[String]>,
    spawner: Spawner,
    procs: BTreeMap<u32, Proc>,
    slots: Vec<Slot>,
    events_tx: mpsc::UnboundedSender<Event>,
    board: Arc<Board>,
    pid_files: PidFiles,
    should_kill: ShouldKill,
    queue: VecDeque<Entry>,
    replacing: Option<Replacing>,
    stopping: bool,
    /// Where the cache manager listens, when the cache is enabled.
    cache_socket: Option<std::path::PathBuf>,
    cache_proc: Option<CacheProc>,
    cache_streak: u32,
}

struct Signals {
    term: SignalStream,
    int: SignalStream,
    hup: SignalStream,
}

pub(super) async fn supervise(
    parts: Parts,
    options: Arc<Options>,
    app_args: Arc<[String]>,
    app: TcpListener,
    monitor: TcpListener,
    main: MainBody,
) -> ExitCode {
    // Signal handlers first: from here on no signal takes its default action.
    let mut signals = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(int), Ok(hup)) => Signals { term, int, hup },
        _ => {
            tracing::error!("cannot install signal handlers");
            return exit::code(exit::FAILURE);
        }
    };
    let pid_files = match PidFiles::create(options.pids.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return exit::code(exit::FAILURE);
        }
    };

    let app_addr = app.local_addr().expect("a bound listener has an address");
    let mon_addr = monitor
        .local_addr()
        .expect("a bound listener has an address");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::error!("cannot find this program's own path to start workers: {e}");
            return exit::code(exit::FAILURE);
        }
    };
    // The master keeps its own copy of the listener for its whole life, so connections queue in
    // the kernel while workers start, crash or are replaced.
    let listener_fd: OwnedFd = match app.try_clone() {
        Ok(l) => l.into(),
        Err(e) => {
            tracing::error!("cannot share the application listener: {e}");
            return exit::code(exit::FAILURE);
        }
    };
    let spawner = match Spawner::start(listener_fd, exe) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start the spawner thread: {e}");
            return exit::code(exit::FAILURE);
        }
    };

    let board = Arc::new(Board::default());
    let gate_board = board.clone();
    let ecv = Ecv::build(
        options.ecv.clone(),
        Some(Box::new(move || gate_board.gate())),
        parts.ecv_validator(),
        Some(app_addr),
    );
    let mut controls = control::install();
    let monitor_stop = CancellationToken::new();
    let monitor_app = crate::monitor::Monitor {
        board: board.clone(),
        ecv: ecv.clone(),
        dependencies: parts.dependencies(),
    };
    let monitor_task = match crate::monitor::serve(
        monitor,
        monitor_app,
        parts.configure_monitor(),
        monitor_stop.clone(),
    )
    .await
    {
        Ok(task) => task,
        Err(e) => {
            tracing::error!("cannot serve the monitor: {e}");
            return exit::code(exit::FAILURE);
        }
    };
    register_death_queue_status(board.clone());

    tracing::info!(
        app = %app_addr,
        monitor = %mon_addr,
        workers = options.workers,
        "starting"
    );
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        slots: (0..options.workers).map(|_| Slot::default()).collect(),
        should_kill: parts.should_kill(&options),
        options,
        app_args,
        spawner,
        procs: BTreeMap::new(),
        events_tx,
        board,
        pid_files,
        queue: VecDeque::new(),
        replacing: None,
        stopping: false,
        cache_socket: None,
        cache_proc: None,
        cache_streak: 0,
    };
    let runtime_dir = if sup.options.cache.enable {
        match sup.start_cache().await {
            Ok(dir) => Some(dir),
            Err(e) => {
                tracing::error!("{e}");
                return exit::code(exit::FAILURE);
            }
        }
    } else {
        None
    };
    for slot in 0..sup.slots.len() {
        sup.spawn(slot, None).await;
    }

    let startup_deadline = tokio::time::Instant::now() + sup.options.startup_timeout;
    let mut nanny = tokio::time::interval(sup.options.heartbeat_interval);
    nanny.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut main = Some(main);
    let mut main_task: Option<JoinHandle<Result<(), String>>> = None;
    let mut exit = ExitCode::SUCCESS;
    loop {
        let replace_deadline = sup.replacing.as_ref().map(|r| r.deadline);
        tokio::select! {
            Some(event) = events.recv() => sup.handle(event).await,
            Some(request) = controls.recv() => sup.control(request).await,
            () = tokio::time::sleep_until(startup_deadline), if main.is_some() => {
                tracing::error!(
                    "start-up timed out after {} (--startup-timeout): {}",
                    humantime::format_duration(sup.options.startup_timeout),
                    sup.describe_unready()
                );
                exit = exit::code(exit::FAILURE);
                break;
            }
            () = sleep_until_some(replace_deadline) => sup.replacement_deadline().await,
            _ = nanny.tick(), if main.is_none() && sup.options.nanny.enable => sup.nanny().await,
            outcome = async { main_task.as_mut().expect("guarded").await }, if main_task.is_some() => {
                main_task = None;
                match outcome {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => tracing::error!("main failed: {e}"),
                    Err(e) => tracing::error!("main panicked: {e}"),
                }
                exit = ExitCode::FAILURE;
                break;
            }
            _ = signals.term.recv() => { tracing::info!("SIGTERM: stopping gracefully"); break }
            _ = signals.int.recv() => { tracing::info!("SIGINT: stopping gracefully"); break }
            _ = signals.hup.recv() => {
                if main.is_some() {
                    tracing::warn!("SIGHUP during start-up: ignored; send it again once ready");
                } else {
                    let n = sup.rolling_restart("rolling restart (SIGHUP)").await;
                    tracing::info!("SIGHUP: replacing {n} workers one at a time");
                }
            }
        }
        if main.is_some() && sup.all_listening() {
            // The ECV reflects readiness before anyone can read the ready line.
            *sup.board.phase.write().expect("board lock") = Phase::Running;
            if sup.board.warm_up_failed.load(Ordering::Relaxed) {
                tracing::warn!(
                    "a worker failed its warm-up during start-up: the ECV stays down until marked up"
                );
                ecv.hold_down("warm-up failed");
            } else {
                ecv.mark_up();
            }
            let pids = sup.active_pids();
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            tracing::info!(
                app = %app_addr,
                monitor = %mon_addr,
                workers = %list.join(","),
                "ready"
            );
            let started = Started {
                role: Role::Master,
                addr: app_addr,
                monitor_addr: Some(mon_addr),
                worker_pids: pids,
                options: sup.options.clone(),
                args: sup.app_args.clone(),
            };
            let main = main.take().expect("checked");
            main_task = Some(tokio::spawn(main(started)));
        }
    }

    let killed = sup
        .shut_down(
            &mut events,
            &mut controls,
            &mut signals,
            exit == ExitCode::SUCCESS,
        )
        .await;
    monitor_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), monitor_task).await;
    if let Some(task) = main_task {
        task.abort();
    }
    if killed {
        exit = ExitCode::FAILURE;
    }
    sup.pid_files.remove_master();
    if let Some(dir) = runtime_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    tracing::info!("stopped");
    exit
}

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The death queue as a status named `death_queue`, in the master.
fn register_death_queue_status(board: Arc<Board>) {
    let _ = crate::status::register("death_queue", move || {
        board.death_queue.read().expect("board lock").clone()
    });
}

impl Supervisor {
    /// Starts the cache manager (in this process or its own) and connects this process to it;
    /// returns the private directory of its socket.
    async fn start_cache(&mut self) -> crate::Result<std::path::PathBuf> {
        let settings = self.options.cache.clone();
        let dir = crate::runtime_dir::create()?;
        let socket = dir.join("cache.sock");
        self.cache_socket = Some(socket.clone());
        match settings.mode {
            crate::options::CacheMode::Master => {
                crate::cache::start_manager(
                    &socket,
                    std::path::Path::new(&settings.persist_path),
                    settings.max_value as usize,
                )?;
                tracing::info!(
                    "cache manager listening on {} (in the master)",
                    socket.display()
                );
            }
            _ => self.spawn_cache().await,
        }
        crate::cache::connect(socket, settings.max_value as usize, settings.timeout);
        Ok(dir)
    }

    async fn spawn_cache(&mut self) {
        let Spawned { child, channel } = match self.spawner.spawn(Kind::CacheManager).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start the cache manager: {e}");
                self.schedule_cache_restart();
                return;
            }
        };
        let pid = child.id().unwrap_or_default();
        let channel = channel
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(channel));
        let Ok(channel) = channel else {
            self.watch_exit(pid, child, None);
            return;
        };
        let (tx, mut rx, _writer) = channel::channel::<ToWorker, ToMaster>(channel);
        let hello = Hello {
            worker_id: usize::MAX,
            options: (*self.options).clone(),
            app_args: self.app_args.to_vec(),
            cache_socket: self.cache_socket.clone(),
        };
        let _ = tx.send(&ToWorker::Hello(Box::new(hello))).await;
        let events = self.events_tx.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(msg)) = rx.recv().await {
                if events.send(Event::Message { pid, msg }).is_err() {
                    return;
                }
            }
        });
        let signals = self.watch_exit(pid, child, Some(reader));
        self.cache_proc = Some(CacheProc {
            pid,
            tx,
            signals,
            started: Instant::now(),
        });
    }

    fn schedule_cache_restart(&mut self) {
        self.cache_streak += 1;
        let delay = restart_delay(
            self.cache_streak,
            self.options.restart.delay,
            self.options.restart.max_delay,
        );
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::CacheRestartDue);
        });
    }

    /// The cache manager process exited: restart it unless the cluster is stopping.
    fn cache_exited(&mut self, how: &str) {
        let Some(cache) = self.cache_proc.take() else {
            return;
        };
        if self.stopping {
            tracing::info!("cache manager (pid {}) {how}", cache.pid);
            return;
        }
        if cache.started.elapsed() >= self.options.restart.max_delay {
            self.cache_streak = 0;
        }
        self.board.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            "cache manager (pid {}) {how}; restarting it (clients reconnect by themselves)",
            cache.pid
        );
        self.schedule_cache_restart();
    }

    /// Starts a process for `slot`; as the successor of `replacing` if given.
    async fn spawn(&mut self, slot: usize, replacing: Option<u32>) -> Option<u32> {
        if replacing.is_none() {
            self.slots[slot].restart_at = None;
        }
        let Spawned { child, channel } = match self.spawner.spawn(Kind::Worker(slot)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start worker {slot}: {e}");
                self.slots[slot].last_failure = Some(format!("cannot start: {e}"));
                if replacing.is_none() {
                    self.schedule_restart(slot, Duration::from_secs(1));
                }
                return None;
            }
        };
        let pid = child.id().unwrap_or_default();
        let channel = channel
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(channel));
        let (tx, mut rx, _writer) = match channel {
            Ok(c) => channel::channel::<ToWorker, ToMaster>(c),
            Err(e) => {
                // The worker sees EOF on its channel and exits on its own.
                tracing::error!("cannot talk to worker {slot} (pid {pid}): {e}");
                self.watch_exit(pid, child, None);
                return None;
            }
        };
        let hello = Hello {
            worker_id: slot,
            options: (*self.options).clone(),
            app_args: self.app_args.to_vec(),
            cache_socket: self.cache_socket.clone(),
        };
        let _ = tx.send(&ToWorker::Hello(Box::new(hello))).await;

        let events = self.events_tx.clone();
        let reader = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    // Events and status traffic are routed here, off the supervisor's loop.
                    Ok(Some(ToMaster::Emit { event, targets })) => {
                        crate::emitter::relay(event, &targets);
                    }
                    Ok(Some(ToMaster::StatusNames(names))) => {
                        crate::status::worker_names(pid, names);
                    }
                    Ok(Some(ToMaster::StatusReply { id, result })) => {
                        crate::status::complete(id, result);
                    }
                    Ok(Some(msg)) => {
                        if events.send(Event::Message { pid, msg }).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = events.send(Event::ChannelBroken {
                            pid,
                            error: e.to_string(),
                        });
                        return;
                    }
                }
            }
        });
        crate::ipc::peers::add_worker(pid, slot, tx.clone());
        self.pid_files.add_worker(pid);
        let signals = self.watch_exit(pid, child, Some(reader));
        tracing::debug!("spawned worker {slot} (pid {pid})");
        self.procs.insert(
            pid,
            Proc {
                pid,
                slot,
                tx,
                signals,
                state: WorkerState::Starting,
                spawned_at: Instant::now(),
                listening_since: None,
                warm_up_addr: None,
                heartbeat: None,
                errors: 0,
                panics: 0,
                successor_of: replacing,
                expected_exit: false,
                waiting: None,
            },
        );
        if replacing.is_none() {
            self.slots[slot].active = Some(pid);
        }
        self.publish();
        Some(pid)
    }

    /// Waits for the child's exit in a task that also delivers signals to it: the task that
    /// reaps a process is the only one that can signal it without risking a recycled pid.
    fn watch_exit(
        &self,
        pid: u32,
        mut child: tokio::process::Child,
        reader: Option<JoinHandle<()>>,
    ) -> mpsc::UnboundedSender<Signal> {
        let (signals, mut incoming) = mpsc::unbounded_channel::<Signal>();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    Some(sig) = incoming.recv() => {
                        if let Some(raw) = child.id() {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(raw as i32),
                                sig,
                            );
                        }
                    }
                }
            };
            // Whatever the worker said before it exited is handled before its exit: the reader
            // ends at the channel's EOF, which the exit causes.
            if let Some(reader) = reader {
                let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
            }
            let _ = events.send(Event::Exited { pid, status });
        });
        signals
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Message { pid, msg } => self.on_message(pid, msg).await,
            Event::ChannelBroken { pid, error } => {
                if let Some(proc) = self.procs.get(&pid) {
                    tracing::error!(
                        "worker {} (pid {pid}) sent a bad frame ({error}); killing it",
                        proc.slot
                    );
                    let _ = proc.signals.send(Signal::SIGKILL);
                }
            }
            Event::Exited { pid, status } => self.on_exit(pid, status).await,
            Event::CacheRestartDue => {
                if !self.stopping && self.cache_proc.is_none() {
                    self.spawn_cache().await;
                }
            }
            Event::RestartDue { slot } => {
                if !self.stopping
                    && self.slots[slot].active.is_none()
                    && self.slots[slot].restart_at.is_some()
                {
                    self.spawn(slot, None).await;
                }
            }
        }
        self.publish();
    }

    async fn on_message(&mut self, pid: u32, msg: ToMaster) {
        if self.cache_proc.as_ref().is_some_and(|c| c.pid == pid) {
            if matches!(msg, ToMaster::Listening) {
                let socket = self
                    .cache_socket
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"));
                tracing::info!(
                    "cache manager (pid {pid}) listening on {}",
                    socket.display()
                );
            }
            return;
        }
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        let slot = proc.slot;
        match msg {
            ToMaster::Warming { addr } => {
                proc.state = WorkerState::Warming;
                proc.warm_up_addr = Some(addr);
                tracing::debug!("worker {slot} (pid {pid}) warming up on {addr}");
            }
            ToMaster::StartFailed { stage, error } => {
                tracing::error!("worker {slot} (pid {pid}) {stage} failed: {error}");
                self.slots[slot].last_failure = Some(format!("{stage} failed: {error}"));
                if stage == StartStage::WarmUp
                    && *self.board.phase.read().expect("board lock") == Phase::Starting
                {
                    self.board.warm_up_failed.store(true, Ordering::Relaxed);
                }
            }
            ToMaster::Listening => {
                if proc.state != WorkerState::Stopping {
                    proc.state = WorkerState::Listening;
                }
                proc.listening_since = Some(Instant::now());
                tracing::info!("worker {slot} (pid {pid}) listening");
                if proc.successor_of.is_some() {
                    self.successor_ready(pid).await;
                }
            }
            ToMaster::Heartbeat(beat) => {
                tracing::debug!(
                    target: "cluster2::heartbeat",
                    worker = slot,
                    pid,
                    transactions = beat.transactions,
                    total_transactions = beat.total_transactions,
                    tps = format_args!("{:.1}", beat.tps),
                    cpu = format_args!("{:.1}", beat.cpu),
                    memory = beat.memory,
                    lag_ms = format_args!("{:.1}", beat.event_loop_lag.as_secs_f64() * 1000.0),
                    open = beat.open_connections,
                    errors = beat.errors,
                    panics = beat.panics,
                    "heartbeat"
                );
                proc.errors += beat.errors;
                proc.panics += beat.panics;
                let judge = proc.state == WorkerState::Listening
                    && proc.successor_of.is_none()
                    && !proc.expected_exit;
                let verdict = if judge {
                    self.should_kill.check(&beat)
                } else {
                    None
                };
                proc.heartbeat = Some((*beat, Instant::now()));
                if let Some(reason) = verdict {
                    self.enqueue(Entry {
                        slot,
                        pid,
                        reason,
                        runaway: false,
                    })
                    .await;
                }
            }
            ToMaster::Paused | ToMaster::Resumed => {
                let paused = matches!(msg, ToMaster::Paused);
                if proc.state != WorkerState::Stopping {
                    proc.state = if paused {
                        WorkerState::Paused
                    } else {
                        WorkerState::Listening
                    };
                }
                if let Some((want_paused, reply)) = proc.waiting.take() {
                    if want_paused == paused {
                        let _ = reply.send(Ok(()));
                    } else {
                        proc.waiting = Some((want_paused, reply));
                    }
                }
            }
            ToMaster::Emit { .. } | ToMaster::StatusNames(_) | ToMaster::StatusReply { .. } => {
                // Routed by the reader task.
            }
        }
    }

    async fn on_exit(&mut self, pid: u32, status: std::io::Result<ExitStatus>) {
        if self.cache_proc.as_ref().is_some_and(|c| c.pid == pid) {
            self.cache_exited(&describe_exit(&status));
            return;
        }
        let Some(proc) = self.procs.remove(&pid) else {
            return;
        };
        let slot = proc.slot;
        crate::ipc::peers::remove_worker(pid);
        crate::status::forget_worker(pid);
        self.pid_files.remove_worker(pid);
        self.should_kill.forget(pid);
        {
            let mut retired = self.board.retired.lock().expect("board lock");
            if let Some((beat, _)) = &proc.heartbeat {
                retired.requests += beat.total_transactions;
                retired.request_seconds += beat.total_durations.as_secs_f64();
            }
            retired.errors += proc.errors;
            retired.panics += proc.panics;
        }
        if let Some((_, reply)) = proc.waiting {
            let _ = reply.send(Err("the worker exited".to_owned()));
        }
        let how = describe_exit(&status);
        let was_active = self.slots[slot].active == Some(pid);
        if was_active {
            self.slots[slot].active = None;
        }

        // The death queue's own processes.
        if let Some(r) = &self.replacing {
            if r.entry.pid == pid {
                tracing::info!("worker {slot} (pid {pid}) {how}");
                self.replacement_done(pid).await;
                return;
            }
            if r.successor == Some(pid) {
                tracing::error!("successor of worker {slot} (pid {pid}) {how} before it was ready");
                self.retry_successor(format!("successor {how}")).await;
                return;
            }
        }
        if self.stopping || proc.expected_exit {
            tracing::info!("worker {slot} (pid {pid}) {how}");
            return;
        }
        // A crash of a process whose successor is already on its way: the successor takes the
        // slot when it is ready, so no restart here.
        let replaced_soon = self
            .replacing
            .as_ref()
            .is_some_and(|r| r.entry.slot == slot && r.successor.is_some());
        self.queue.retain(|e| e.pid != pid);
        let s = &mut self.slots[slot];
        // A worker that served long enough ends the crash streak: its crash is news, not a loop.
        let stable = proc
            .listening_since
            .is_some_and(|t| t.elapsed() >= self.options.restart.max_delay);
        if stable {
            s.crash_streak = 0;
        }
        s.crash_streak += 1;
        s.restarts += 1;
        self.board.restarts.fetch_add(1, Ordering::Relaxed);
        if s.last_failure.is_none() || proc.listening_since.is_some() {
            s.last_failure = Some(how.clone());
        }
        if replaced_soon || !was_active {
            tracing::error!("worker {slot} (pid {pid}) {how}; its successor takes over");
            return;
        }
        let delay = restart_delay(
            s.crash_streak,
            self.options.restart.delay,
            self.options.restart.max_delay,
        );
        tracing::error!(
            "worker {slot} (pid {pid}) {how}; restarting in {} (crash {} in a row, up {:.1}s)",
            humantime::format_duration(delay),
            s.crash_streak,
            proc.spawned_at.elapsed().as_secs_f64()
        );
        if delay.is_zero() {
            self.spawn(slot, None).await;
        } else {
            self.schedule_restart(slot, delay);
        }
    }

    fn schedule_restart(&mut self, slot: usize, delay: Duration) {
        let s = &mut self.slots[slot];
        if s.restart_at.is_some() {
            return;
        }
        s.restart_at = Some(Instant::now() + delay);
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::RestartDue { slot });
        });
    }

    // ---- the death queue ----

    /// Queues a worker for replacement; a worker already queued or being replaced is not
    /// queued twice.
    async fn enqueue(&mut self, entry: Entry) -> bool {
        if self.stopping
            || self.queue.iter().any(|e| e.pid == entry.pid)
            || self
                .replacing
                .as_ref()
                .is_some_and(|r| r.entry.pid == entry.pid)
        {
            return false;
        }
        tracing::info!(
            "queued worker {} (pid {}) for replacement: {}",
            entry.slot,
            entry.pid,
            entry.reason
        );
        self.queue.push_back(entry);
        self.advance().await;
        true
    }

    /// Starts the next replacement if none is in progress.
    async fn advance(&mut self) {
        while self.replacing.is_none() && !self.stopping {
            let Some(entry) = self.queue.pop_front() else {
                break;
            };
            // The worker may have exited since it was queued.
            if !self.procs.contains_key(&entry.pid) {
                continue;
            }
            tracing::info!(
                "replacing worker {} (pid {}): {}",
                entry.slot,
                entry.pid,
                entry.reason
            );
            self.replacing = Some(Replacing {
                entry,
                started: Instant::now(),
                tries: 0,
                successor: None,
                stage: Stage::Successor,
                deadline: tokio::time::Instant::now(),
            });
            self.start_successor().await;
        }
        self.publish_queue();
    }

    async fn start_successor(&mut self) {
        let Some(r) = self.replacing.as_mut() else {
            return;
        };
        r.tries += 1;
        r.stage = Stage::Successor;
        r.deadline = tokio::time::Instant::now() + self.options.death_queue.timeout;
        let (slot, old) = (r.entry.slot, r.entry.pid);
        let successor = self.spawn(slot, Some(old)).await;
        if let Some(r) = self.replacing.as_mut() {
            r.successor = successor;
            if successor.is_none() {
                // Counted as a failed try when the deadline fires, right away.
                r.deadline = tokio::time::Instant::now();
            }
        }
        self.publish_queue();
    }

    /// The successor failed (crashed, failed its warm-up, or was not ready in time).
    async fn retry_successor(&mut self, why: String) {
        let Some(r) = self.replacing.as_mut() else {
            return;
        };
        if let Some(successor) = r.successor.take() {
            if let Some(p) = self.procs.get_mut(&successor) {
                p.expected_exit = true;
                let _ = p.signals.send(Signal::SIGKILL);
            }
        }
        let (slot, pid, tries) = (r.entry.slot, r.entry.pid, r.tries);
        if tries >= self.options.death_queue.retries {
            tracing::error!(
                "gave up replacing worker {slot} (pid {pid}) after {tries} tries ({why}); \
                 it keeps serving"
            );
            self.replacing = None;
            self.advance().await;
            return;
        }
        tracing::warn!(
            "successor of worker {slot} (pid {pid}) failed ({why}); try {} of {}",
            tries + 1,
            self.options.death_queue.retries
        );
        // The old worker keeps serving meanwhile.
        if self.procs.contains_key(&pid) {
            self.start_successor().await;
        } else {
            self.replacing = None;
            self.advance().await;
        }
    }

    /// The successor listens: it becomes the slot's active process and the old one stops.
    async fn successor_ready(&mut self, successor: u32) {
        let Some(r) = self.replacing.as_mut() else {
            return;
        };
        if r.successor != Some(successor) {
            return;
        }
        let (slot, old) = (r.entry.slot, r.entry.pid);
        if let Some(p) = self.procs.get_mut(&successor) {
            p.successor_of = None;
        }
        self.slots[slot].active = Some(successor);
        let Some(old_proc) = self.procs.get_mut(&old) else {
            // The old worker is already gone.
            self.replacement_done(old).await;
            return;
        };
        old_proc.expected_exit = true;
        old_proc.state = WorkerState::Stopping;
        let _ = old_proc.tx.send(&ToWorker::Stop).await;
        let grace = if r.entry.runaway {
            RUNAWAY_GRACE.min(self.options.death_queue.timeout)
        } else {
            self.options.death_queue.timeout
        };
        r.stage = Stage::Draining;
        r.deadline = tokio::time::Instant::now() + grace;
        tracing::info!("worker {slot}: successor (pid {successor}) ready; stopping pid {old}");
        self.publish_queue();
    }

    async fn replacement_done(&mut self, old: u32) {
        let Some(r) = self.replacing.take() else {
            return;
        };
        self.board.replacements.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "replaced worker {} (pid {old} → pid {}) in {:.1}s: {}",
            r.entry.slot,
            self.slots[r.entry.slot]
                .active
                .map_or("none".to_owned(), |p| p.to_string()),
            r.started.elapsed().as_secs_f64(),
            r.entry.reason
        );
        self.advance().await;
    }

    async fn replacement_deadline(&mut self) {
        let Some(r) = self.replacing.as_mut() else {
            return;
        };
        let (slot, pid) = (r.entry.slot, r.entry.pid);
        match r.stage {
            Stage::Successor => {
                let why = format!(
                    "not ready within {} (--death-queue.timeout)",
                    humantime::format_duration(self.options.death_queue.timeout)
                );
                self.retry_successor(why).await;
            }
            Stage::Draining => {
                let signal = if r.entry.runaway {
                    Signal::SIGKILL
                } else {
                    Signal::SIGTERM
                };
                tracing::warn!("worker {slot} (pid {pid}) did not exit in time; sending {signal}");
                r.stage = Stage::Terminated;
                r.deadline = tokio::time::Instant::now() + TERM_GRACE;
                if let Some(p) = self.procs.get(&pid) {
                    let _ = p.signals.send(signal);
                }
            }
            Stage::Terminated => {
                tracing::warn!("worker {slot} (pid {pid}) ignored SIGTERM; sending SIGKILL");
                r.deadline = tokio::time::Instant::now() + TERM_GRACE;
                if let Some(p) = self.procs.get(&pid) {
                    let _ = p.signals.send(Signal::SIGKILL);
                }
            }
        }
        self.publish_queue();
    }

    /// Every active worker, queued for replacement one at a time.
    async fn rolling_restart(&mut self, reason: &str) -> usize {
        let mut queued = 0;
        for slot in 0..self.slots.len() {
            if let Some(pid) = self.slots[slot].active {
                let entry = Entry {
                    slot,
                    pid,
                    reason: reason.to_owned(),
                    runaway: false,
                };
                if self.enqueue(entry).await {
                    queued += 1;
                }
            }
        }
        queued
    }

    /// Workers whose heartbeats stopped are runaways.
    async fn nanny(&mut self) {
        let tolerance = self.options.nanny.tolerance;
        let runaways: Vec<(usize, u32, Duration)> = self
            .procs
            .values()
            .filter(|p| {
                matches!(p.state, WorkerState::Listening | WorkerState::Paused)
                    && p.successor_of.is_none()
                    && !p.expected_exit
            })
            .filter_map(|p| {
                let last = p
                    .heartbeat
                    .as_ref()
                    .map(|(_, at)| *at)
                    .or(p.listening_since)?;
                let silent = last.elapsed();
                (silent > tolerance).then_some((p.slot, p.pid, silent))
            })
            .collect();
        for (slot, pid, silent) in runaways {
            tracing::warn!(
                "worker {slot} (pid {pid}) sent no heartbeat for {:.1}s (--nanny.tolerance {}): runaway",
                silent.as_secs_f64(),
                humantime::format_duration(tolerance)
            );
            self.enqueue(Entry {
                slot,
                pid,
                reason: format!("runaway: no heartbeat for {:.0}s", silent.as_secs_f64()),
                runaway: true,
            })
            .await;
        }
    }

    // ---- operator controls ----

    async fn control(&mut self, request: Control) {
        match request {
            Control::Pause(pid, reply) => self.pause(pid, true, reply).await,
            Control::Resume(pid, reply) => self.pause(pid, false, reply).await,
            Control::Replace(pid, reply) => {
                let result = match self.procs.get(&pid) {
                    Some(p) if p.successor_of.is_none() && !p.expected_exit => {
                        let entry = Entry {
                            slot: p.slot,
                            pid,
                            reason: "replace requested".to_owned(),
                            runaway: false,
                        };
                        if self.enqueue(entry).await {
                            Ok(())
                        } else {
                            Err(format!(
                                "worker pid {pid} is already queued for replacement"
                            ))
                        }
                    }
                    Some(_) => Err(format!("worker pid {pid} is already being replaced")),
                    None => Err(self.no_such_worker(pid)),
                };
                let _ = reply.send(result);
            }
            Control::RollingRestart(reply) => {
                let n = self.rolling_restart("rolling restart requested").await;
                let _ = reply.send(n);
            }
        }
        self.publish();
    }

    async fn pause(&mut self, pid: u32, pause: bool, reply: oneshot::Sender<Result<(), String>>) {
        let missing = self.no_such_worker(pid);
        let Some(proc) = self.procs.get_mut(&pid) else {
            let _ = reply.send(Err(missing));
            return;
        };
        let want = if pause {
            WorkerState::Paused
        } else {
            WorkerState::Listening
        };
        if proc.state == want {
            let _ = reply.send(Ok(()));
            return;
        }
        if !matches!(proc.state, WorkerState::Listening | WorkerState::Paused) {
            let _ = reply.send(Err(format!(
                "worker pid {pid} is {:?}, not serving",
                proc.state
            )));
            return;
        }
        let msg = if pause {
            ToWorker::Pause
        } else {
            ToWorker::Resume
        };
        if proc.tx.send(&msg).await.is_err() {
            let _ = reply.send(Err("the worker is gone".to_owned()));
            return;
        }
        // Answered when the worker confirms.
        proc.waiting = Some((pause, reply));
    }

    fn no_such_worker(&self, pid: u32) -> String {
        let pids: Vec<String> = self.procs.keys().map(u32::to_string).collect();
        format!("no worker with pid {pid}; workers: {}", pids.join(", "))
    }

    // ---- shutdown ----

    /// The ECV goes down, the drain delay passes, every worker stops gracefully; returns
    /// whether any had to be killed.
    async fn shut_down(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        controls: &mut mpsc::UnboundedReceiver<Control>,
        signals: &mut Signals,
        graceful: bool,
    ) -> bool {
        *self.board.phase.write().expect("board lock") = Phase::ShuttingDown;
        self.queue.clear();
        let drain = self.options.ecv.drain_delay;
        let mut forced = false;
        if !drain.is_zero() && graceful {
            tracing::info!(
                "ECV down; waiting {} (--ecv.drain-delay) before stopping the workers",
                humantime::format_duration(drain)
            );
            let until = tokio::time::Instant::now() + drain;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    Some(event) = events.recv() => self.handle(event).await,
                    Some(request) = controls.recv() => refuse(request),
                    _ = signals.term.recv() => { forced = true; break }
                    _ = signals.int.recv() => { forced = true; break }
                    _ = signals.hup.recv() => {}
                }
            }
        }
        self.stopping = true;
        self.replacing = None;
        for proc in self.procs.values_mut() {
            proc.state = WorkerState::Stopping;
            let _ = proc.tx.send(&ToWorker::Stop).await;
        }
        self.publish();
        // Workers enforce `stop_timeout` themselves; the master allows a little more before
        // it stops waiting and kills.
        let deadline =
            tokio::time::Instant::now() + self.options.stop_timeout + Duration::from_secs(2);
        let mut killed = false;
        if forced {
            tracing::warn!("second signal: stopping now");
            self.signal_all(Signal::SIGKILL);
            killed = true;
        }
        while !self.procs.is_empty() {
            tokio::select! {
                Some(event) = events.recv() => self.handle(event).await,
                Some(request) = controls.recv() => refuse(request),
                () = tokio::time::sleep_until(deadline), if !killed => {
                    tracing::warn!(workers = self.procs.len(), "workers did not stop in time; killing them");
                    self.signal_all(Signal::SIGKILL);
                    killed = true;
                }
                _ = signals.term.recv() => { tracing::warn!("second signal: stopping now"); self.signal_all(Signal::SIGKILL); killed = true; }
                _ = signals.int.recv() => { tracing::warn!("second signal: stopping now"); self.signal_all(Signal::SIGKILL); killed = true; }
                _ = signals.hup.recv() => {}
            }
        }
        // The cache outlives the workers, which may use it while they drain.
        crate::cache::stopping();
        if let Some(cache) = &self.cache_proc {
            let _ = cache.tx.send(&ToWorker::Stop).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while self.cache_proc.is_some() {
                tokio::select! {
                    Some(event) = events.recv() => self.handle(event).await,
                    () = tokio::time::sleep_until(deadline) => {
                        if let Some(cache) = &self.cache_proc {
                            tracing::warn!("the cache manager did not stop in time; killing it");
                            let _ = cache.signals.send(Signal::SIGKILL);
                        }
                        break;
                    }
                }
            }
        }
        killed
    }

    // ---- views ----

    fn all_listening(&self) -> bool {
        self.slots.iter().all(|s| {
            s.active
                .and_then(|pid| self.procs.get(&pid))
                .is_some_and(|p| p.state == WorkerState::Listening)
        })
    }

    fn active_pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| s.active).collect()
    }

    fn signal_all(&self, sig: Signal) {
        for proc in self.procs.values() {
            let _ = proc.signals.send(sig);
        }
    }

    fn describe_unready(&self) -> String {
        let parts: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let proc = s.active.and_then(|pid| self.procs.get(&pid));
                if proc.is_some_and(|p| p.state == WorkerState::Listening) {
                    return None;
                }
                let now = match proc {
                    Some(p) => format!("worker {slot} (pid {}) is {:?}", p.pid, p.state),
                    None => format!("worker {slot} is waiting to restart"),
                };
                Some(
                    match &s.last_failure {
                        Some(f) => format!("{now}, last failure: {f}"),
                        None => now,
                    }
                    .to_lowercase(),
                )
            })
            .collect();
        parts.join("; ")
    }

    fn publish(&self) {
        let infos = self
            .procs
            .values()
            .map(|p| {
                let slot = &self.slots[p.slot];
                WorkerInfo {
                    id: p.slot,
                    pid: p.pid,
                    state: p.state,
                    spawned_at: p.spawned_at,
                    warm_up_addr: p.warm_up_addr,
                    restarts: slot.restarts,
                    crash_streak: slot.crash_streak,
                    next_restart_in: slot
                        .restart_at
                        .map(|t| t.saturating_duration_since(Instant::now())),
                    successor_of: p.successor_of,
                    heartbeat: p.heartbeat.clone(),
                    errors: p.errors,
                    panics: p.panics,
                }
            })
            .collect();
        *self.board.workers.write().expect("board lock") = infos;
        self.publish_queue();
    }

    fn publish_queue(&self) {
        let mut shown = Vec::new();
        if let Some(r) = &self.replacing {
            shown.push(QueuedReplacement {
                worker: r.entry.slot,
                pid: r.entry.pid,
                reason: r.entry.reason.clone(),
                in_progress: true,
                successor: r.successor,
                tries: r.tries,
            });
        }
        shown.extend(self.queue.iter().map(|e| QueuedReplacement {
            worker: e.slot,
            pid: e.pid,
            reason: e.reason.clone(),
            in_progress: false,
            successor: None,
            tries: 0,
        }));
        *self.board.death_queue.write().expect("board lock") = shown;
    }
}

fn refuse(request: Control) {
    request.refuse("the cluster is shutting down");
}

/// No delay for the first crash in a row (keep capacity), then `delay`, doubling up to `max`.
fn restart_delay(streak: u32, delay: Duration, max: Duration) -> Duration {
    if streak <= 1 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(streak - 2);
    delay.saturating_mul(factor).min(max)
}

fn describe_exit(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Err(e) => format!("could not be waited for ({e})"),
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => match exit::meaning(code) {
                Some(meaning) => format!("exited with status {code} ({meaning})"),
                None => format!("exited with status {code}"),
            },
            (None, Some(sig)) => {
                let name = Signal::try_from(sig).map_or("unknown", Signal::as_str);
                format!("was killed by signal {sig} ({name})")
            }
            (None, None) => "exited".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_the_second_crash_and_is_capped() {
        let d = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let delays: Vec<u128> = (1..=7)
            .map(|s| restart_delay(s, d, max).as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(restart_delay(u32::MAX, d, max), max);
    }
}
