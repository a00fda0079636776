//! The master's event loop. One task owns every worker's state and reacts to inputs (a
//! child's messages and exit, due restarts, control requests, signals, timers) one at a time,
//! dispatching to the rooms beside this file: `workers` (its record of each process and
//! slot, and the views built from it), `children` (starting and reaping), `restart`
//! (back-off), `death_queue` (one replacement at a time, the nanny), `control` (operator
//! requests), `cache_manager`, `shutdown`. It publishes what it knows on the `board` and every
//! change of a worker's life in the lifecycle journal.
//!
//! Workers live in slots (`0..workers`; `workers` changes when the cluster is scaled at run
//! time, `scale.rs`). A slot normally has one active process; while it is
//! being replaced it also has a successor, which becomes the active process once it listens,
//! and the old process then drains and exits. Exactly one replacement runs at a time, so the
//! number of serving workers stays between `workers` and `workers + 1`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{ExitCode, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::board::{Board, Debugging, Phase, Sample, WorkerState};
use super::cache_manager::CacheManager;
use super::children;
use super::control::{Control, Refusal, Refused};
use super::death_queue::{DeathQueue, Entry, Retire};
use super::pidfile::PidFiles;
use super::restart::Life;
use super::shutdown::Signals;
use super::spawn::{Kind, Pending, Spawner};
use super::workers::{Proc, Slot};
use crate::balance::Seats;
use crate::cluster::{MainBody, ShouldKill};
use crate::ecv::Ecv;
use crate::exit;
use crate::heartbeat::Heartbeat;
use crate::ipc::message::{Hello, StartStage, ToMaster, ToWorker};
use crate::lifecycle::{self, Event, Exit};
use crate::log::human;
use crate::options::Options;
use crate::started::{Role, Started};

/// What the loop reacts to, besides control requests, signals and timers.
pub(super) enum Input {
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
    /// The back-off of a crashed worker id ran out.
    RestartDue {
        slot: usize,
        /// When the restart was due: a timer of an earlier back-off (the id was retired and
        /// started again since) is not this one, and is ignored.
        at: Instant,
    },
    /// A worker whose id was retired by a scale-down was given this long to drain.
    StopOverdue {
        pid: u32,
        grace: Duration,
    },
    CacheRestartDue,
}

/// Which process [`Supervisor::spawn`] starts for a worker id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Spawn<'a> {
    /// The process that serves the id (at start, or a restart after a crash).
    Active,
    /// A successor that takes the id over from this process once it listens (death queue).
    SuccessorOf(u32),
    /// An extra worker held out of traffic for debugging, logging with this filter from its
    /// first line; it takes the id over only if an operator releases it.
    DebugNew(&'a str),
}

/// What the supervisor is started with; `master::run` builds it.
pub(super) struct Setup {
    pub(super) options: Arc<Options>,
    pub(super) app_args: Arc<[String]>,
    pub(super) spawner: Spawner,
    /// The connection-balance table's seats, when connections are spread evenly.
    pub(super) seats: Option<Seats>,
    pub(super) board: Arc<Board>,
    pub(super) ecv: Ecv,
    pub(super) pid_files: PidFiles,
    pub(super) should_kill: ShouldKill,
    pub(super) app_addr: SocketAddr,
    /// Where the application listens, as the starting and ready lines say it: its address, or
    /// `unix:PATH`.
    pub(super) app_shown: String,
    pub(super) mon_addr: SocketAddr,
    /// The certificate and key read at start, when the application port speaks TLS.
    pub(super) tls: Option<crate::tls::Pem>,
    /// What the master's open-files limit holds: checked before the cluster grows.
    pub(super) descriptors: Descriptors,
}

/// The master's open-files limit, and the connections the monitor was given of it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Descriptors {
    pub(super) open_files: u64,
    pub(super) monitor_connections: usize,
}

pub(super) struct Supervisor {
    app_shown: String,
    /// The certificate and key every new worker gets; read again on SIGHUP.
    tls: Option<crate::tls::Pem>,
    /// The served certificate's validity, looked at again once a day.
    tls_expiry: Option<crate::tls::Expiry>,
    pub(super) options: Arc<Options>,
    app_args: Arc<[String]>,
    pub(super) spawner: Spawner,
    seats: Option<Seats>,
    pub(super) procs: BTreeMap<u32, Proc>,
    pub(super) slots: Vec<Slot>,
    pub(super) inputs: mpsc::UnboundedSender<Input>,
    pub(super) board: Arc<Board>,
    pid_files: PidFiles,
    should_kill: ShouldKill,
    pub(super) deaths: DeathQueue,
    pub(super) stopping: bool,
    pub(super) cache: CacheManager,
    pub(super) descriptors: Descriptors,
}

/// Runs the cluster until a signal or a failure stops it; returns the master's exit code.
pub(super) async fn supervise(
    setup: Setup,
    mut signals: Signals,
    mut controls: mpsc::UnboundedReceiver<Control>,
    main: MainBody,
) -> ExitCode {
    let Setup {
        options,
        app_args,
        spawner,
        seats,
        board,
        ecv,
        pid_files,
        should_kill,
        app_addr,
        app_shown,
        mon_addr,
        tls,
        descriptors,
    } = setup;
    tracing::info!(app = %app_shown, monitor = %mon_addr, workers = options.workers, "starting");
    lifecycle::publish(Event::Starting {
        app: app_addr,
        monitor: mon_addr,
        workers: options.workers,
    });
    let (inputs, mut events) = mpsc::unbounded_channel();
    board.set_expected(options.workers);
    let mut sup = Supervisor {
        slots: (0..options.workers).map(|_| Slot::default()).collect(),
        app_shown,
        tls,
        tls_expiry: None,
        options,
        app_args,
        spawner,
        seats,
        procs: BTreeMap::new(),
        inputs,
        board,
        pid_files,
        should_kill,
        deaths: DeathQueue::default(),
        stopping: false,
        cache: CacheManager::default(),
        descriptors,
    };
    sup.watch_expiry();
    sup.report_expiry();
    if sup.options.cache.enable {
        if let Err(e) = sup.start_cache().await {
            tracing::error!("{e}");
            sup.pid_files.remove_master();
            return exit::code(exit::FAILURE);
        }
    }
    // The master hears events from other hosts from the start, as its workers will.
    if sup.options.emitter.backend != "local" {
        if let Err(e) =
            crate::emitter::connect_hosts(&sup.options.emitter.backend, &sup.options.cluster_name)
                .await
        {
            tracing::error!("{e}");
            sup.pid_files.remove_master();
            return exit::code(exit::FAILURE);
        }
    }
    // Every worker is asked for at once: the spawner threads start them back to back while
    // this loop hands each its hello, one per turn of the loop, so that a signal is answered
    // between two of them, however many there are.
    let mut unstarted: std::collections::VecDeque<(usize, Pending)> = (0..sup.slots.len())
        .map(|slot| (slot, sup.spawner.request(Kind::Worker(slot))))
        .collect();

    let startup_deadline = tokio::time::Instant::now() + sup.options.startup_timeout;
    let mut nanny = tokio::time::interval(sup.options.heartbeat_interval);
    nanny.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut main = Some(main);
    let mut main_task: Option<JoinHandle<Result<(), String>>> = None;
    let mut code = ExitCode::SUCCESS;
    let why = loop {
        tokio::select! {
            // Ready at once; the other branches (signals among them) get their turn at random.
            () = std::future::ready(()), if !unstarted.is_empty() => {
                let (slot, pending) = unstarted.pop_front().expect("checked");
                sup.spawned(slot, Spawn::Active, pending).await;
            }
            Some(input) = events.recv() => sup.handle(input).await,
            Some(request) = controls.recv() => sup.control(request).await,
            () = tokio::time::sleep_until(startup_deadline), if main.is_some() => {
                tracing::error!(
                    "start-up timed out after {} (--startup-timeout): {}",
                    humantime::format_duration(sup.options.startup_timeout),
                    sup.describe_unready()
                );
                code = exit::code(exit::FAILURE);
                break "start-up timed out";
            }
            // These two, and SIGHUP below, may change workers besides the death queue: a
            // heartbeat no longer republishes every worker, so they do it themselves.
            () = sleep_until_some(sup.deaths.deadline()) => {
                sup.replacement_deadline().await;
                sup.publish();
            }
            _ = nanny.tick(), if main.is_none() => {
                // The certificate's daily look rides on this tick: a clock read in between.
                if let Some(expiry) = &mut sup.tls_expiry {
                    expiry.look();
                }
                if sup.options.nanny.enable {
                    sup.nanny().await;
                    sup.publish();
                }
            }
            outcome = async { main_task.as_mut().expect("guarded").await }, if main_task.is_some() => {
                main_task = None;
                match outcome {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => tracing::error!("main failed: {e}"),
                    Err(e) => tracing::error!("main panicked: {e}"),
                }
                code = ExitCode::FAILURE;
                break "main failed";
            }
            _ = signals.term.recv() => { tracing::info!("SIGTERM: stopping gracefully"); break "SIGTERM" }
            _ = signals.int.recv() => { tracing::info!("SIGINT: stopping gracefully"); break "SIGINT" }
            _ = signals.hup.recv() => {
                if main.is_some() {
                    tracing::warn!("SIGHUP during start-up: ignored; send it again once ready");
                } else {
                    // Successors start with what is read now.
                    sup.reload_tls();
                    // It says what it does, before each worker's line.
                    sup.rolling_restart(true).await;
                    sup.publish();
                }
            }
            _ = signals.ttin.recv() => sup.scale_signal(1).await,
            _ = signals.ttou.recv() => sup.scale_signal(-1).await,
            _ = signals.usr1.recv() => sup.reopen_access_log(),
        }
        if main.is_some() && sup.all_listening() {
            let main = main.take().expect("checked");
            main_task = Some(sup.ready(&ecv, app_addr, mon_addr, main));
        }
    };

    // Workers asked for and not handed their hello yet are not started, or killed and reaped
    // if a spawner thread started them already.
    for (_, pending) in unstarted {
        pending.cancel();
    }
    lifecycle::publish(Event::ShuttingDown {
        why: why.to_owned(),
    });
    let killed = sup
        .shut_down(
            &mut events,
            &mut controls,
            &mut signals,
            code == ExitCode::SUCCESS,
        )
        .await;
    if let Some(task) = main_task {
        task.abort();
    }
    if killed {
        code = ExitCode::FAILURE;
    }
    sup.pid_files.remove_master();
    sup.cache.remove_runtime_dir();
    code
}

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// Every initial worker listens: the ECV goes up, the ready line is written, and the
    /// master's `main` starts.
    fn ready(
        &mut self,
        ecv: &Ecv,
        app_addr: SocketAddr,
        mon_addr: SocketAddr,
        main: MainBody,
    ) -> JoinHandle<Result<(), String>> {
        // The ECV reflects readiness before anyone can read the ready line.
        self.board.set_phase(Phase::Running);
        if self.board.warm_up_failed() {
            tracing::warn!(
                "a worker failed its warm-up during start-up: the ECV stays down until marked up"
            );
            ecv.hold_down("warm-up failed");
        } else {
            ecv.mark_up();
        }
        let pids = self.active_pids();
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        tracing::info!(app = %self.app_shown, monitor = %mon_addr, workers = %list.join(","), "ready");
        lifecycle::publish(Event::Ready {
            workers: pids.clone(),
        });
        let started = Started {
            role: Role::Master,
            addr: app_addr,
            monitor_addr: Some(mon_addr),
            worker_pids: pids,
            options: self.options.clone(),
            args: self.app_args.clone(),
        };
        tokio::spawn(main(started))
    }

    pub(super) fn hello(&self, worker_id: usize) -> Hello {
        Hello {
            worker_id,
            options: (*self.options).clone(),
            app_args: self.app_args.to_vec(),
            cache_socket: self.cache.socket.clone(),
            debug_new: None,
            balance_seat: None,
            tls: self.tls.clone(),
        }
    }

    /// SIGHUP: reads the certificate and key again. New ones go to every worker now, for their
    /// next handshakes, and to every worker started from now on; a bad file keeps the ones in
    /// use, with an error naming it.
    fn reload_tls(&mut self) {
        let read = match crate::tls::read(&self.options.tls) {
            Ok(Some(pem)) => pem,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("SIGHUP: keeping the TLS certificate in use: {e}");
                return;
            }
        };
        if self.tls.as_ref() == Some(&read) {
            return;
        }
        for proc in self.procs.values() {
            let _ = proc
                .child
                .tx
                .try_send(&ToWorker::Tls(Box::new(read.clone())));
        }
        self.tls = Some(read);
        // `/metrics` shows the new expiry by the time this line can be read.
        self.watch_expiry();
        tracing::info!("SIGHUP: new TLS certificate read; new handshakes use it");
        self.report_expiry();
    }

    /// Reads the served certificate's validity, for `/metrics` and the daily look.
    fn watch_expiry(&mut self) {
        self.tls_expiry =
            crate::tls::Expiry::watch(self.tls.as_ref(), self.options.tls.cert.as_deref());
        self.board
            .set_tls_not_after(self.tls_expiry.as_ref().map(crate::tls::Expiry::not_after));
    }

    /// Says how long the certificate just loaded has left.
    fn report_expiry(&mut self) {
        if let Some(expiry) = &mut self.tls_expiry {
            expiry.report();
        }
    }

    /// Starts a process for `slot`: its serving process, a successor, or a debug worker.
    pub(super) async fn spawn(&mut self, slot: usize, how: Spawn<'_>) -> Option<u32> {
        let spawning = self.spawner.request(Kind::Worker(slot));
        self.spawned(slot, how, spawning).await
    }

    /// [`Supervisor::spawn`], once the spawner threads were asked for the process.
    pub(super) async fn spawned(
        &mut self,
        slot: usize,
        how: Spawn<'_>,
        spawning: Pending,
    ) -> Option<u32> {
        let replacing = match how {
            Spawn::SuccessorOf(old) => Some(old),
            _ => None,
        };
        if how == Spawn::Active {
            self.slots[slot].restart_at = None;
        }
        let mut hello = self.hello(slot);
        hello.balance_seat = self.seats.as_mut().and_then(Seats::take);
        let seat = hello.balance_seat;
        let debugging = match how {
            Spawn::DebugNew(filter) => {
                hello.debug_new = Some(filter.to_owned());
                Some(Debugging::New)
            }
            _ => None,
        };
        let child = match children::start(spawning, hello, &self.inputs).await {
            Ok(child) => child,
            Err(e) => {
                tracing::error!("worker {slot}: {e}");
                self.free_seat(seat);
                if how == Spawn::Active {
                    self.slots[slot].last_failure = Some(e);
                    self.schedule_restart(slot, Duration::from_secs(1));
                }
                return None;
            }
        };
        let pid = child.pid;
        crate::ipc::peers::add_worker(pid, slot, child.tx.clone());
        self.pid_files.add_worker(pid);
        tracing::debug!("spawned worker {slot} (pid {pid})");
        lifecycle::publish(Event::Spawned {
            worker: slot,
            pid,
            successor_of: replacing,
        });
        self.procs.insert(
            pid,
            Proc {
                child,
                slot,
                state: WorkerState::Starting,
                spawned_at: Instant::now(),
                listening_since: None,
                served: false,
                cannot_accept: None,
                warm_up_addr: None,
                heartbeat: None,
                errors: 0,
                panics: 0,
                successor_of: replacing,
                expected_exit: false,
                debugging,
                waiting: None,
                seat,
                start_failure: None,
                judged_again_at: None,
            },
        );
        if how == Spawn::Active {
            self.slots[slot].active = Some(pid);
        }
        self.publish();
        Some(pid)
    }

    pub(super) async fn handle(&mut self, input: Input) {
        match input {
            // The most frequent input by far: it changes one worker's figures, unless it
            // queues the worker for replacement.
            Input::Message {
                pid,
                msg: ToMaster::Heartbeat(beat),
            } if !self.cache.is(pid) => {
                if self.on_heartbeat(pid, *beat).await {
                    self.publish();
                } else {
                    self.publish_worker(pid);
                }
                return;
            }
            Input::Message { pid, msg } => self.on_message(pid, msg).await,
            Input::ChannelBroken { pid, error } => {
                if let Some(proc) = self.procs.get(&pid) {
                    tracing::error!(
                        "worker {} (pid {pid}) sent a bad frame ({error}); killing it",
                        proc.slot
                    );
                    proc.child.signal(Signal::SIGKILL);
                }
            }
            Input::Exited { pid, status } => self.on_exit(pid, status).await,
            Input::CacheRestartDue => self.cache_restart_due().await,
            Input::StopOverdue { pid, grace } => self.stop_overdue(pid, grace),
            Input::RestartDue { slot, at } => {
                if !self.stopping
                    && self.is_live(slot)
                    && self.slots[slot].active.is_none()
                    && self.slots[slot].restart_at == Some(at)
                {
                    self.spawn(slot, Spawn::Active).await;
                }
            }
        }
        self.publish();
    }

    async fn on_message(&mut self, pid: u32, msg: ToMaster) {
        if self.cache.is(pid) {
            self.cache_message(pid, &msg);
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
                lifecycle::publish(Event::Warming {
                    worker: slot,
                    pid,
                    addr,
                });
            }
            ToMaster::StartFailed { stage, error } => {
                let failure = format!("{stage} failed: {error}");
                proc.start_failure = Some(failure.clone());
                // Said once, by the line of its exit, which comes next and explains its status
                // with this.
                if proc.debugging == Some(Debugging::New) {
                    // A debug worker's failure is its own: its worker id's process serves on.
                    tracing::debug!("debug worker (pid {pid}) {stage} failed: {error}");
                } else {
                    tracing::debug!("worker {slot} (pid {pid}) {stage} failed: {error}");
                    self.slots[slot].last_failure = Some(failure);
                    if stage == StartStage::WarmUp && self.board.phase() == Phase::Starting {
                        self.board.note_warm_up_failed();
                    }
                }
                lifecycle::publish(Event::StartFailed {
                    worker: slot,
                    pid,
                    stage: stage.to_string(),
                    error,
                });
            }
            ToMaster::Listening if proc.debugging == Some(Debugging::New) => {
                // Ready, and held: it does not accept until released.
                if proc.state != WorkerState::Stopping {
                    proc.state = WorkerState::Paused;
                }
                proc.listening_since = Some(Instant::now());
                tracing::info!("debug worker (pid {pid}) is ready, held out of traffic");
                lifecycle::publish(Event::Paused { worker: slot, pid });
            }
            ToMaster::Listening => {
                if proc.state != WorkerState::Stopping {
                    proc.state = WorkerState::Listening;
                }
                proc.listening_since = Some(Instant::now());
                self.slots[slot].established = true;
                if proc.successor_of.is_some() {
                    // The replacement's own line says it when it is done.
                    tracing::debug!("worker {slot} (pid {pid}) listening");
                } else {
                    tracing::info!("worker {slot} (pid {pid}) listening");
                }
                lifecycle::publish(Event::Listening { worker: slot, pid });
                if proc.successor_of.is_some() {
                    self.successor_ready(pid).await;
                }
            }
            ToMaster::Served => {
                if !proc.served {
                    proc.served = true;
                    tracing::debug!("worker {slot} (pid {pid}) answered its first request");
                    lifecycle::publish(Event::Served { worker: slot, pid });
                }
            }
            ToMaster::CannotAccept { why } => {
                tracing::warn!("worker {slot} (pid {pid}) cannot take new connections: {why}");
                proc.cannot_accept = Some(why.clone());
                lifecycle::publish(Event::CannotAccept {
                    worker: slot,
                    pid,
                    why,
                });
            }
            ToMaster::Accepting => {
                if proc.cannot_accept.take().is_some() {
                    tracing::info!("worker {slot} (pid {pid}) takes new connections again");
                    lifecycle::publish(Event::Accepting { worker: slot, pid });
                }
            }
            ToMaster::Heartbeat(beat) => {
                self.on_heartbeat(pid, *beat).await;
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
                lifecycle::publish(if paused {
                    Event::Paused { worker: slot, pid }
                } else {
                    Event::Resumed { worker: slot, pid }
                });
                if let Some((want_paused, reply)) = proc.waiting.take() {
                    if want_paused == paused {
                        let _ = reply.send(Ok(()));
                    } else {
                        proc.waiting = Some((want_paused, reply));
                    }
                }
            }
            ToMaster::Emit { .. }
            | ToMaster::StatusNames(_)
            | ToMaster::StatusReply { .. }
            | ToMaster::Logs { .. }
            | ToMaster::LogFilterSet { .. }
            | ToMaster::ProfileDone { .. } => {
                // Routed by the reader task.
            }
        }
    }

    /// Keeps a worker's heartbeat, and queues the worker for replacement if it should go;
    /// returns whether it was queued.
    async fn on_heartbeat(&mut self, pid: u32, beat: Heartbeat) -> bool {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return false;
        };
        let slot = proc.slot;
        tracing::debug!(
            target: "cluster2::heartbeat",
            worker = slot,
            pid,
            requests = beat.requests,
            requests_total = beat.requests_total,
            requests_per_second = format_args!("{:.1}", beat.requests_per_second),
            cpu_percent = format_args!("{:.1}", beat.cpu_percent),
            memory_bytes = beat.memory_bytes,
            event_loop_lag_ms = format_args!("{:.1}", beat.event_loop_lag.as_secs_f64() * 1000.0),
            open_connections = beat.open_connections,
            errors = beat.errors,
            panics = beat.panics,
            "heartbeat"
        );
        proc.errors += beat.errors;
        proc.panics += beat.panics;
        // Debug workers and workers in a debug session are the operator's: never recycled.
        let judge = proc.state == WorkerState::Listening
            && proc.successor_of.is_none()
            && !proc.expected_exit
            && proc.debugging.is_none()
            && proc.judged_again_at.is_none_or(|at| Instant::now() >= at);
        let verdict = if judge {
            self.should_kill.check(&beat)
        } else {
            None
        };
        self.board.record(pid, Sample::of(&beat));
        proc.heartbeat = Some((beat, Instant::now()));
        let Some(reason) = verdict else {
            return false;
        };
        self.enqueue(Entry {
            slot,
            pid,
            reason,
            retire: Retire::Drain,
        })
        .await
    }

    async fn on_exit(&mut self, pid: u32, status: std::io::Result<ExitStatus>) {
        let how = Exit::from_wait(&status);
        if self.cache.is(pid) {
            self.cache_exited(pid, how);
            return;
        }
        let Some(proc) = self.procs.remove(&pid) else {
            return;
        };
        // `exited with status 3 (warm-up failed: …)`: what it reported before it went.
        let how = how.explained_by(proc.start_failure.as_deref());
        let slot = proc.slot;
        self.free_seat(proc.seat);
        crate::ipc::peers::remove_worker(pid);
        crate::status::forget_worker(pid);
        self.pid_files.remove_worker(pid);
        self.should_kill.forget(pid);
        self.board.forget(pid);
        self.board.retire(
            proc.heartbeat.as_ref().map(|(beat, _)| beat),
            proc.errors,
            proc.panics,
        );
        if let Some((_, reply)) = proc.waiting {
            let _ = reply.send(Err(Refusal::new(
                Refused::NoSuchWorker,
                format!("worker pid {pid} exited before it confirmed"),
            )));
        }
        let was_active = self.slots[slot].active == Some(pid);
        if was_active {
            self.slots[slot].active = None;
        }
        let expected = self.stopping || proc.expected_exit || self.deaths.is_replacing(pid);
        lifecycle::publish(Event::Exited {
            worker: slot,
            pid,
            exit: how.clone(),
            expected,
        });

        if proc.debugging == Some(Debugging::New) {
            // An extra process: its worker id keeps its own, whatever happened to this one.
            if proc.expected_exit {
                tracing::info!("debug worker (pid {pid}) {how}");
            } else {
                tracing::error!("debug worker (pid {pid}) {how}");
            }
            return;
        }
        // The death queue's own processes: its lines say how they ended.
        if self.deaths.is_replacing(pid) {
            tracing::debug!("worker {slot} (pid {pid}) {how}");
            self.replacement_done(pid, Some(&how)).await;
            return;
        }
        if self.deaths.is_successor(pid) {
            tracing::debug!("successor of worker {slot} (pid {pid}) {how} before it was ready");
            self.retry_successor(format!("successor pid {pid} {how} before it was ready"))
                .await;
            return;
        }
        if expected {
            if proc.successor_of.is_some() {
                // A failed successor, killed by the death queue, which said so already.
                tracing::debug!("worker {slot} (pid {pid}) {how}");
            } else {
                tracing::info!("worker {slot} (pid {pid}) {how}");
            }
            return;
        }
        // A crash of a process whose successor is already on its way: the successor takes the
        // slot when it is ready, so no restart here.
        self.board.count_crash();
        let replaced_soon = self.deaths.successor_coming_for(slot);
        self.deaths.forget(pid);
        let s = &mut self.slots[slot];
        let life = Life {
            listened_for: proc.listening_since.map(|t| t.elapsed()),
            served: proc.served,
        };
        let delay = s.streak.crashed(life, &self.options.restart);
        s.restarts += 1;
        self.board.count_restart();
        if s.last_failure.is_none() || proc.listening_since.is_some() {
            s.last_failure = Some(how.to_string());
        }
        if replaced_soon || !was_active {
            tracing::error!("worker {slot} (pid {pid}) {how}; its successor takes over");
            return;
        }
        let streak = s.streak.count();
        let when = if delay.is_zero() {
            "at once".to_owned()
        } else {
            format!("in {}", human(delay))
        };
        tracing::error!(
            "worker {slot} (pid {pid}) {how}; restarting {when} (crash {streak} in a row, up {}{})",
            human(proc.spawned_at.elapsed()),
            if proc.served { ", had served" } else { "" }
        );
        lifecycle::publish(Event::RestartScheduled {
            worker: slot,
            delay_secs: delay.as_secs_f64(),
            crash_streak: streak,
        });
        if delay.is_zero() {
            self.spawn(slot, Spawn::Active).await;
        } else {
            self.schedule_restart(slot, delay);
        }
    }

    /// A worker process is gone (or never started): its balance seat is free again.
    fn free_seat(&mut self, seat: Option<u32>) {
        if let (Some(seats), Some(seat)) = (self.seats.as_mut(), seat) {
            seats.free(seat);
        }
    }

    fn schedule_restart(&mut self, slot: usize, delay: Duration) {
        let s = &mut self.slots[slot];
        if s.restart_at.is_some() {
            return;
        }
        let at = Instant::now() + delay;
        s.restart_at = Some(at);
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = inputs.send(Input::RestartDue { slot, at });
        });
    }

    /// Tells a worker to stop gracefully: it is expected to exit.
    pub(super) async fn stop_worker(&mut self, pid: u32) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        proc.expected_exit = true;
        proc.state = WorkerState::Stopping;
        // Never wait on a worker that does not read its channel (its queue is full): SIGTERM
        // asks the same of it, and the master stays free to answer its own signals.
        if proc.child.tx.try_send(&ToWorker::Stop).is_err() {
            proc.child.signal(Signal::SIGTERM);
        }
        lifecycle::publish(Event::Stopping {
            worker: proc.slot,
            pid,
        });
    }
}
