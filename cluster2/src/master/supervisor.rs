//! The master's event loop: one task owns every worker's state and reacts to events (messages,
//! exits, due restarts, signals) one at a time, so no state is shared between tasks except the
//! read-only board the monitor shows.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::EXIT_START_FAILED;
use super::spawn::{Spawned, Spawner};
use crate::cluster::{MainBody, Parts};
use crate::ecv::Ecv;
use crate::heartbeat::Heartbeat;
use crate::ipc::channel::{self, Sender};
use crate::ipc::message::{Hello, ToMaster, ToWorker};
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
    /// Told to stop; finishing in-flight requests.
    Stopping,
}

/// What the monitor shows about one worker; ages are computed when it is read.
#[derive(Clone, Debug)]
pub(crate) struct WorkerInfo {
    pub(crate) id: usize,
    pub(crate) pid: u32,
    pub(crate) state: WorkerState,
    pub(crate) spawned_at: Instant,
    pub(crate) warm_up_addr: Option<SocketAddr>,
    pub(crate) restarts: u64,
    pub(crate) crash_streak: u32,
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

/// The master's state as the monitor reads it.
#[derive(Debug, Default)]
pub(crate) struct Board {
    pub(crate) workers: RwLock<Vec<WorkerInfo>>,
    pub(crate) phase: RwLock<Phase>,
    /// An initial worker failed its warm-up.
    pub(crate) warm_up_failed: std::sync::atomic::AtomicBool,
    pub(crate) retired: std::sync::Mutex<Totals>,
    pub(crate) restarts: std::sync::atomic::AtomicU64,
}

impl Board {
    /// Why the cluster should not take traffic, whatever the ECV mode says.
    pub(crate) fn gate(&self) -> Option<String> {
        use std::sync::atomic::Ordering;
        let phase = *self.phase.read().expect("board lock");
        let listening = self
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
            Phase::Running if listening == 0 => Some("no worker alive".to_owned()),
            Phase::Running => None,
        }
    }
}

enum Event {
    Message {
        id: usize,
        pid: u32,
        msg: ToMaster,
    },
    ChannelBroken {
        id: usize,
        pid: u32,
        error: String,
    },
    Exited {
        id: usize,
        pid: u32,
        status: std::io::Result<ExitStatus>,
    },
    RestartDue {
        id: usize,
    },
}

/// One live worker process.
struct Proc {
    pid: u32,
    tx: Sender<ToWorker>,
    signals: mpsc::UnboundedSender<Signal>,
    state: WorkerState,
    spawned_at: Instant,
    listening_since: Option<Instant>,
    warm_up_addr: Option<SocketAddr>,
    /// The latest heartbeat and when it arrived.
    heartbeat: Option<(Heartbeat, Instant)>,
    /// 5xx answers and panics summed over this worker's heartbeats.
    errors: u64,
    panics: u64,
}

/// One worker id: the process currently holding it, and its restart history.
#[derive(Default)]
struct Slot {
    current: Option<Proc>,
    crash_streak: u32,
    restarts: u64,
    restart_pending: bool,
    last_failure: Option<String>,
}

struct Supervisor {
    options: Arc<Options>,
    app_args: Arc<[String]>,
    spawner: Spawner,
    slots: Vec<Slot>,
    events_tx: mpsc::UnboundedSender<Event>,
    board: Arc<Board>,
    stopping: bool,
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
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::from(EXIT_START_FAILED);
    };

    let app_addr = app.local_addr().expect("a bound listener has an address");
    let mon_addr = monitor
        .local_addr()
        .expect("a bound listener has an address");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::error!("cannot find this program's own path to start workers: {e}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    // The master keeps its own copy of the listener for its whole life, so connections queue in
    // the kernel while workers start, crash or are replaced.
    let listener_fd: OwnedFd = match app.try_clone() {
        Ok(l) => l.into(),
        Err(e) => {
            tracing::error!("cannot share the application listener: {e}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    let spawner = match Spawner::start(listener_fd, exe) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start the spawner thread: {e}");
            return ExitCode::from(EXIT_START_FAILED);
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
            return ExitCode::from(EXIT_START_FAILED);
        }
    };

    tracing::info!(
        app = %app_addr,
        monitor = %mon_addr,
        workers = options.workers,
        "starting"
    );
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        slots: (0..options.workers).map(|_| Slot::default()).collect(),
        options,
        app_args,
        spawner,
        events_tx,
        board,
        stopping: false,
    };
    for id in 0..sup.slots.len() {
        sup.spawn(id).await;
    }

    let startup_deadline = tokio::time::Instant::now() + sup.options.startup_timeout;
    let mut main = Some(main);
    let mut main_task: Option<JoinHandle<Result<(), String>>> = None;
    let mut exit = ExitCode::SUCCESS;
    loop {
        tokio::select! {
            Some(event) = events.recv() => sup.handle(event).await,
            () = tokio::time::sleep_until(startup_deadline), if main.is_some() => {
                tracing::error!(
                    "start-up timed out after {} (--startup-timeout): {}",
                    humantime::format_duration(sup.options.startup_timeout),
                    sup.describe_unready()
                );
                exit = ExitCode::from(EXIT_START_FAILED);
                break;
            }
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
            _ = term.recv() => { tracing::info!("SIGTERM: stopping gracefully"); break }
            _ = int.recv() => { tracing::info!("SIGINT: stopping gracefully"); break }
            _ = hup.recv() => {
                tracing::warn!("SIGHUP: rolling restarts are not available yet; ignoring");
            }
        }
        if main.is_some() && sup.all_listening() {
            // The ECV reflects readiness before anyone can read the ready line.
            *sup.board.phase.write().expect("board lock") = Phase::Running;
            if sup
                .board
                .warm_up_failed
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "a worker failed its warm-up during start-up: the ECV stays down until marked up"
                );
                ecv.hold_down("warm-up failed");
            } else {
                ecv.mark_up();
            }
            let pids = sup.pids();
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

    // The ECV goes down first, so that balancers stop sending before anything closes.
    *sup.board.phase.write().expect("board lock") = Phase::ShuttingDown;
    let drain = sup.options.ecv.drain_delay;
    let mut forced = false;
    if !drain.is_zero() && exit == ExitCode::SUCCESS {
        tracing::info!(
            "ECV down; waiting {} (--ecv.drain-delay) before stopping the workers",
            humantime::format_duration(drain)
        );
        let until = tokio::time::Instant::now() + drain;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                Some(event) = events.recv() => sup.handle(event).await,
                _ = term.recv() => { forced = true; break }
                _ = int.recv() => { forced = true; break }
                _ = hup.recv() => {}
            }
        }
    }

    // Graceful shutdown: every worker stops accepting and finishes what it has.
    sup.stopping = true;
    for slot in &mut sup.slots {
        if let Some(proc) = &mut slot.current {
            proc.state = WorkerState::Stopping;
            let _ = proc.tx.send(&ToWorker::Stop).await;
        }
    }
    sup.publish();
    // Workers enforce `stop_timeout` themselves; the master allows a little more before it
    // stops waiting and kills.
    let deadline = tokio::time::Instant::now() + sup.options.stop_timeout + Duration::from_secs(2);
    let mut killed = false;
    if forced {
        tracing::warn!("second signal: stopping now");
        sup.signal_all(Signal::SIGKILL);
        killed = true;
    }
    while sup.live() > 0 {
        tokio::select! {
            Some(event) = events.recv() => sup.handle(event).await,
            () = tokio::time::sleep_until(deadline), if !killed => {
                tracing::warn!(workers = sup.live(), "workers did not stop in time; killing them");
                sup.signal_all(Signal::SIGKILL);
                killed = true;
            }
            _ = term.recv() => { tracing::warn!("second signal: stopping now"); sup.signal_all(Signal::SIGKILL); killed = true; }
            _ = int.recv() => { tracing::warn!("second signal: stopping now"); sup.signal_all(Signal::SIGKILL); killed = true; }
            _ = hup.recv() => {}
        }
    }
    monitor_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), monitor_task).await;
    if let Some(task) = main_task {
        task.abort();
    }
    if killed {
        exit = ExitCode::FAILURE;
    }
    tracing::info!("stopped");
    exit
}

impl Supervisor {
    async fn spawn(&mut self, id: usize) {
        self.slots[id].restart_pending = false;
        let Spawned { child, channel } = match self.spawner.spawn(id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start worker {id}: {e}");
                self.slots[id].last_failure = Some(format!("cannot start: {e}"));
                self.schedule_restart(id);
                return;
            }
        };
        let pid = child.id().unwrap_or_default();
        let channel = channel
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(channel));
        let channel = match channel {
            Ok(c) => c,
            Err(e) => {
                // The worker sees EOF on its channel and exits on its own.
                tracing::error!("cannot talk to worker {id} (pid {pid}): {e}");
                self.slots[id].last_failure = Some(e.to_string());
                self.watch_exit(id, pid, child, None);
                return;
            }
        };
        let (tx, mut rx, _writer) = channel::channel::<ToWorker, ToMaster>(channel);
        let hello = Hello {
            worker_id: id,
            options: (*self.options).clone(),
            app_args: self.app_args.to_vec(),
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
                        if events.send(Event::Message { id, pid, msg }).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = events.send(Event::ChannelBroken {
                            id,
                            pid,
                            error: e.to_string(),
                        });
                        return;
                    }
                }
            }
        });
        crate::ipc::peers::add_worker(pid, id, tx.clone());
        let signals = self.watch_exit(id, pid, child, Some(reader));
        tracing::debug!("spawned worker {id} (pid {pid})");
        self.slots[id].current = Some(Proc {
            pid,
            tx,
            signals,
            state: WorkerState::Starting,
            spawned_at: Instant::now(),
            listening_since: None,
            warm_up_addr: None,
            heartbeat: None,
            errors: 0,
            panics: 0,
        });
        self.publish();
    }

    /// Waits for the child's exit in a task that also delivers signals to it: the task that
    /// reaps a process is the only one that can signal it without risking a recycled pid.
    fn watch_exit(
        &self,
        id: usize,
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
            let _ = events.send(Event::Exited { id, pid, status });
        });
        signals
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Message { id, pid, msg } => self.on_message(id, pid, msg),
            Event::ChannelBroken { id, pid, error } => {
                tracing::error!("worker {id} (pid {pid}) sent a bad frame ({error}); killing it");
                if let Some(proc) = self.proc(id, pid) {
                    let _ = proc.signals.send(Signal::SIGKILL);
                }
            }
            Event::Exited { id, pid, status } => self.on_exit(id, pid, status).await,
            Event::RestartDue { id } => {
                if !self.stopping && self.slots[id].current.is_none() {
                    self.spawn(id).await;
                }
            }
        }
        self.publish();
    }

    fn proc(&mut self, id: usize, pid: u32) -> Option<&mut Proc> {
        self.slots[id].current.as_mut().filter(|p| p.pid == pid)
    }

    fn on_message(&mut self, id: usize, pid: u32, msg: ToMaster) {
        match msg {
            ToMaster::Warming { addr } => {
                if let Some(proc) = self.proc(id, pid) {
                    proc.state = WorkerState::Warming;
                    proc.warm_up_addr = Some(addr);
                }
                tracing::debug!("worker {id} (pid {pid}) warming up on {addr}");
            }
            ToMaster::StartFailed { stage, error } => {
                tracing::error!("worker {id} (pid {pid}) {stage} failed: {error}");
                if *self.board.phase.read().expect("board lock") == Phase::Starting {
                    self.board
                        .warm_up_failed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                self.slots[id].last_failure = Some(format!("{stage} failed: {error}"));
            }
            ToMaster::Heartbeat(beat) => {
                tracing::debug!(
                    target: "cluster2::heartbeat",
                    worker = id,
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
                if let Some(proc) = self.proc(id, pid) {
                    proc.errors += beat.errors;
                    proc.panics += beat.panics;
                    proc.heartbeat = Some((*beat, Instant::now()));
                }
            }
            ToMaster::Emit { .. } | ToMaster::StatusNames(_) | ToMaster::StatusReply { .. } => {
                // Routed by the reader task.
            }
            ToMaster::Listening => {
                if let Some(proc) = self.proc(id, pid) {
                    if proc.state != WorkerState::Stopping {
                        proc.state = WorkerState::Listening;
                    }
                    proc.listening_since = Some(Instant::now());
                    tracing::info!("worker {id} (pid {pid}) listening");
                }
            }
        }
    }

    async fn on_exit(&mut self, id: usize, pid: u32, status: std::io::Result<ExitStatus>) {
        let slot = &mut self.slots[id];
        let Some(proc) = slot.current.take_if(|p| p.pid == pid) else {
            return;
        };
        crate::ipc::peers::remove_worker(pid);
        crate::status::forget_worker(pid);
        {
            let mut retired = self.board.retired.lock().expect("board lock");
            if let Some((beat, _)) = &proc.heartbeat {
                retired.requests += beat.total_transactions;
                retired.request_seconds += beat.total_durations.as_secs_f64();
            }
            retired.errors += proc.errors;
            retired.panics += proc.panics;
        }
        let how = describe_exit(&status);
        if self.stopping || proc.state == WorkerState::Stopping {
            tracing::info!("worker {id} (pid {pid}) {how}");
            return;
        }
        // A worker that served long enough ends the crash streak: its crash is news, not a loop.
        let stable = proc
            .listening_since
            .is_some_and(|t| t.elapsed() >= self.options.restart.max_delay);
        if stable {
            slot.crash_streak = 0;
        }
        slot.crash_streak += 1;
        slot.restarts += 1;
        self.board
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay = restart_delay(
            slot.crash_streak,
            self.options.restart.delay,
            self.options.restart.max_delay,
        );
        if slot.last_failure.is_none() || proc.listening_since.is_some() {
            slot.last_failure = Some(how.clone());
        }
        tracing::error!(
            "worker {id} (pid {pid}) {how}; restarting in {} (crash {} in a row, up {:.1}s)",
            humantime::format_duration(delay),
            slot.crash_streak,
            proc.spawned_at.elapsed().as_secs_f64()
        );
        if delay.is_zero() {
            self.spawn(id).await;
        } else {
            self.schedule_restart_after(id, delay);
        }
    }

    fn schedule_restart(&mut self, id: usize) {
        let slot = &mut self.slots[id];
        slot.crash_streak += 1;
        let delay = restart_delay(
            slot.crash_streak.max(2),
            self.options.restart.delay,
            self.options.restart.max_delay,
        );
        self.schedule_restart_after(id, delay);
    }

    fn schedule_restart_after(&mut self, id: usize, delay: Duration) {
        let slot = &mut self.slots[id];
        if slot.restart_pending {
            return;
        }
        slot.restart_pending = true;
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::RestartDue { id });
        });
    }

    fn all_listening(&self) -> bool {
        self.slots.iter().all(|s| {
            s.current
                .as_ref()
                .is_some_and(|p| p.state == WorkerState::Listening)
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|s| s.current.as_ref().map(|p| p.pid))
            .collect()
    }

    fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.current.is_some()).count()
    }

    fn signal_all(&self, sig: Signal) {
        for proc in self.slots.iter().filter_map(|s| s.current.as_ref()) {
            let _ = proc.signals.send(sig);
        }
    }

    fn describe_unready(&self) -> String {
        let parts: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                !s.current
                    .as_ref()
                    .is_some_and(|p| p.state == WorkerState::Listening)
            })
            .map(|(id, s)| {
                let now = match &s.current {
                    Some(p) => format!("worker {id} (pid {}) is {:?}", p.pid, p.state),
                    None => format!("worker {id} is waiting to restart"),
                };
                match &s.last_failure {
                    Some(f) => format!("{now}, last failure: {f}"),
                    None => now,
                }
                .to_lowercase()
            })
            .collect();
        parts.join("; ")
    }

    fn publish(&self) {
        let infos = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| {
                slot.current.as_ref().map(|p| WorkerInfo {
                    id,
                    pid: p.pid,
                    state: p.state,
                    spawned_at: p.spawned_at,
                    warm_up_addr: p.warm_up_addr,
                    restarts: slot.restarts,
                    crash_streak: slot.crash_streak,
                    heartbeat: p.heartbeat.clone(),
                    errors: p.errors,
                    panics: p.panics,
                })
            })
            .collect();
        *self.board.workers.write().expect("board lock") = infos;
    }
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
            (Some(code), _) => format!("exited with status {code}"),
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
