//! The serving process: configure the app → serve it on a private warm-up listener → warm up →
//! close the warm-up listener → accept on the shared port → tell the master → run `main`.
//!
//! A worker stops gracefully when the master says so or on SIGTERM, and quickly when the master
//! is gone (channel EOF or parent-death signal): then it must free the shared port at once.

pub(crate) mod counting; // what the request path counts: the CountLayer, connections
pub(crate) mod profile; // CPU profiles of this process, asked for by the master
mod reporter; // the heartbeat task: CPU, memory, lag, and the counters
mod serve; // accept loop on the inherited listeners

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::app::App;
use crate::cluster::{MainBody, Parts};
use crate::ipc::channel::{self, Sender};
use crate::ipc::child::{self, Inherited};
use crate::ipc::message::{StartStage, ToMaster, ToWorker};
use crate::listen::{Listener, Listeners};
use crate::options::Options;
use crate::started::{Role, Started, WarmUp};

use counting::{AppStats, ConnStats};
use serve::{Server, Settings};

/// How long a worker whose master is gone lets in-flight requests run: short, because the
/// shared port stays bound until every worker has exited.
const ORPHAN_DEADLINE: Duration = Duration::from_millis(1000);

pub(crate) fn run(parts: Parts, id: usize, main: MainBody) -> ExitCode {
    match start(parts, id, main) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: worker {id}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn start(parts: Parts, id: usize, main: MainBody) -> Result<ExitCode, String> {
    let (Inherited { hello, channel }, listeners) = child::start_worker()?;
    // The balance table's fd is claimed before anything else can open a file descriptor.
    let turn = match hello.balance_seat.map(crate::balance::Turn::inherit) {
        Some(Ok(turn)) => Some(turn),
        Some(Err(e)) => return Err(format!("connection balance: {e}")),
        None if hello.options.balance == crate::options::Balance::Even => {
            // No seat left (workers still draining after many scale-downs and ups): this
            // worker accepts without taking turns, and does not keep the table open.
            crate::ipc::fd::SharedCounters::release_inherited();
            None
        }
        None => None,
    };
    let options = Arc::new(hello.options);
    // A debug worker logs at the level the operator chose, from its first line.
    let debug_new = hello.debug_new;
    crate::log::init(
        crate::log::Who::Worker(id),
        debug_new.as_deref().unwrap_or(&options.log.level),
        options.log.format,
    );
    // Before anything is served; the master opened a file of it already, so this fails only
    // if it was taken away since.
    crate::log::access::start(
        &options.log.access,
        options.log.format,
        crate::log::access::Source::Worker(id),
    )?;

    let threads = options.worker_threads();
    let mut runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = runtime
        .enable_all()
        .thread_name("cluster2-worker")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;

    for listener in &listeners {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("shared listener: {e}"))?;
    }
    channel
        .set_nonblocking(true)
        .map_err(|e| format!("channel: {e}"))?;
    let cache_socket = hello.cache_socket;
    // The master checked these bytes; this cannot fail but on a master of another version.
    let tls = match &hello.tls {
        Some(pem) => Some(crate::tls::Tls::new(pem, options.server)?),
        None => None,
    };
    let worker = Worker {
        id,
        tls,
        options,
        app_args: hello.app_args.into(),
        held: debug_new.is_some(),
        turn,
    };
    let code = runtime.block_on(async {
        // Events from other hosts are heard before the worker serves.
        if worker.options.emitter.backend != "local" {
            if let Err(e) = crate::emitter::connect_hosts(
                &worker.options.emitter.backend,
                &worker.options.cluster_name,
            )
            .await
            {
                tracing::error!("{e}");
            }
        }
        let cache = &worker.options.cache;
        if let Some(socket) = cache_socket {
            crate::cache::connect(socket, cache.max_value as usize, cache.timeout);
        } else if cache.enable && cache.backend != "local" {
            // The master checked the URL when it read the options: this cannot fail on it.
            if let Err(e) = crate::cache::connect_redis(
                &cache.backend,
                &worker.options.cluster_name,
                cache.max_value as usize,
                cache.timeout,
                cache.max_lease,
            ) {
                tracing::error!("{e}");
            }
        }
        worker.run(parts, main, listeners, channel).await
    });
    // Connections still open past the deadline are dropped here, with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(code)
}

/// A worker serving on the shared port.
struct Serving {
    server: Server,
    final_beat: reporter::FinalBeat,
}

struct Worker {
    id: usize,
    /// TLS on the shared port (never on the warm-up listener, which stays plain HTTP).
    tls: Option<crate::tls::Tls>,
    options: Arc<Options>,
    app_args: Arc<[String]>,
    /// A debug worker ("debug new"): it forwards its log lines from the start, and does not
    /// accept on the shared port until the master releases it (a `Resume`).
    held: bool,
    /// Its seat at the balance table, when connections are spread evenly.
    turn: Option<Arc<crate::balance::Turn>>,
}

/// Why a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The master asked, or SIGTERM: in-flight requests get `stop_timeout`.
    Graceful,
    /// The master is gone: free the port quickly.
    Orphaned,
    /// A second SIGTERM: leave now.
    Now,
}

impl Worker {
    async fn run(
        self,
        parts: Parts,
        main: MainBody,
        listeners: Vec<Listener>,
        channel: std::os::unix::net::UnixStream,
    ) -> ExitCode {
        let channel = match tokio::net::UnixStream::from_std(channel) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot use the channel to the master: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (to_master, mut from_master, _writer) = channel::channel::<ToMaster, ToWorker>(channel);
        crate::ipc::peers::set_master(to_master.clone());
        if self.held {
            // Before any of the application's code runs: its start-up is what is watched.
            crate::log::forward::start(crate::log::forward::Sink::Master(to_master.clone()));
            tracing::info!("debug worker: held out of traffic until released");
        }
        // Statuses registered so far (by #[status] or in configure_app) are announced now;
        // later registrations announce themselves.
        crate::status::announce();
        let (stop_tx, mut stop_rx) = mpsc::unbounded_channel::<Stop>();
        let (accepting, accepting_rx) = tokio::sync::watch::channel(!self.held);

        // Messages from the master; EOF means it is gone.
        let tx = stop_tx.clone();
        let to_master_logs = to_master.clone();
        let replies = to_master.clone();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            loop {
                match from_master.recv().await {
                    Ok(Some(ToWorker::Stop)) => {
                        let _ = tx.send(Stop::Graceful);
                    }
                    Ok(Some(ToWorker::Hello(_))) => {
                        tracing::warn!("ignoring a second hello from the master");
                    }
                    Ok(Some(ToWorker::Pause)) => {
                        accepting.send_replace(false);
                        tracing::info!("paused: not accepting new connections");
                        let _ = crate::ipc::peers::to_master(&ToMaster::Paused);
                    }
                    Ok(Some(ToWorker::Resume)) => {
                        accepting.send_replace(true);
                        tracing::info!("resumed");
                        let _ = crate::ipc::peers::to_master(&ToMaster::Resumed);
                    }
                    Ok(Some(ToWorker::Event(event))) => crate::emitter::deliver(event),
                    Ok(Some(ToWorker::StatusQuery { id, name, set })) => {
                        crate::status::answer(id, name, set);
                    }
                    Ok(Some(ToWorker::Logs(control))) => {
                        crate::log::control(control, &to_master_logs);
                    }
                    Ok(Some(ToWorker::Profile {
                        id,
                        seconds,
                        format,
                    })) => profile::answer(id, seconds, format, replies.clone()),
                    Ok(Some(ToWorker::Tls(pem))) => match &tls {
                        Some(tls) => match tls.replace(&pem) {
                            Ok(()) => tracing::info!("new TLS certificate for new handshakes"),
                            Err(e) => tracing::error!("keeping the TLS certificate in use: {e}"),
                        },
                        None => tracing::warn!("ignoring a TLS certificate: TLS is off"),
                    },
                    Ok(None) => {
                        let _ = tx.send(Stop::Orphaned);
                        return;
                    }
                    Err(e) => {
                        tracing::error!("closing the channel to the master: {e}");
                        let _ = tx.send(Stop::Orphaned);
                        return;
                    }
                }
            }
        });
        // SIGTERM: graceful, then immediate. SIGINT is the master's to handle (a terminal sends
        // it to the whole process group); the master then tells each worker to stop.
        let tx = stop_tx.clone();
        let master_pid = std::os::unix::process::parent_id();
        tokio::spawn(async move {
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            let Ok(mut int) = signal(SignalKind::interrupt()) else {
                return;
            };
            let mut first = true;
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => continue,
                }
                // The parent-death signal is SIGTERM too; a changed parent means orphaned.
                let stop = if std::os::unix::process::parent_id() != master_pid {
                    Stop::Orphaned
                } else if first {
                    Stop::Graceful
                } else {
                    Stop::Now
                };
                first = false;
                let _ = tx.send(stop);
            }
        });

        let started = tokio::select! {
            started = self.start(&parts, &to_master, listeners, accepting_rx) => started,
            stop = stop_rx.recv() => {
                tracing::info!(reason = ?stop, "stopping during start-up");
                return ExitCode::SUCCESS;
            }
        };
        let (Serving { server, final_beat }, started) = match started {
            Ok(pair) => pair,
            Err((stage, error)) => {
                // The master logs it with this worker's id and pid.
                tracing::debug!("{stage} failed: {error}");
                let _ = to_master
                    .send(&ToMaster::StartFailed { stage, error })
                    .await;
                // The report must reach the master before this process goes.
                let _ = tokio::time::timeout(Duration::from_secs(1), to_master.flushed()).await;
                return crate::exit::code(crate::exit::START_FAILED);
            }
        };

        let (main_done_tx, mut main_done) = mpsc::channel::<Result<(), String>>(1);
        tokio::spawn(async move {
            let outcome = match tokio::spawn(main(started)).await {
                Ok(outcome) => outcome,
                Err(e) => Err(format!("main panicked: {e}")),
            };
            let _ = main_done_tx.send(outcome).await;
        });

        let mut exit = ExitCode::SUCCESS;
        let stop = loop {
            tokio::select! {
                stop = stop_rx.recv() => break stop.unwrap_or(Stop::Orphaned),
                Some(outcome) = main_done.recv() => {
                    if let Err(e) = outcome {
                        tracing::error!("main failed: {e}");
                        exit = crate::exit::code(crate::exit::MAIN_FAILED);
                        break Stop::Graceful;
                    }
                }
            }
        };
        crate::cache::stopping();
        let deadline = match stop {
            Stop::Graceful => self.options.stop_timeout,
            Stop::Orphaned => {
                tracing::warn!("the master is gone; stopping");
                ORPHAN_DEADLINE
            }
            Stop::Now => Duration::ZERO,
        };
        // A second SIGTERM during the drain cuts it short.
        let shutdown = server.shutdown(deadline);
        tokio::pin!(shutdown);
        let dropped = loop {
            tokio::select! {
                dropped = &mut shutdown => break dropped,
                stop = stop_rx.recv() => match stop {
                    Some(Stop::Now) => break 0,
                    Some(_) => continue,
                    // Nobody can ask any more; just finish.
                    None => break (&mut shutdown).await,
                },
            }
        };
        if dropped > 0 {
            tracing::warn!(
                connections = dropped,
                "stop deadline passed; closing connections"
            );
        }
        // The master's totals then include every request this worker answered.
        if stop != Stop::Orphaned {
            final_beat.send().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), to_master.flushed()).await;
        }
        // Lines of the last requests, still in the buffer.
        crate::log::access::finish(Duration::from_secs(2));
        tracing::debug!("stopped");
        exit
    }

    async fn start(
        &self,
        parts: &Parts,
        to_master: &Sender<ToMaster>,
        listeners: Vec<Listener>,
        accepting: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Serving, Started), (StartStage, String)> {
        let configure = parts
            .configure_app()
            .map_err(|e| (StartStage::ConfigureApp, e.to_string()))?;
        let app: App = configure()
            .await
            .map_err(|e| (StartStage::ConfigureApp, e))?;

        // Warm up on a private listener, so warm-up requests reach this worker and no other.
        let warm_listener = self
            .bind_warm_up()
            .await
            .map_err(|e| (StartStage::WarmUpListener, e))?;
        let warm_addr = warm_listener
            .local_addr()
            .map_err(|e| (StartStage::WarmUpListener, e.to_string()))?;
        // Warm-up traffic is not the application's: it is counted apart and thrown away.
        let warm_listeners = Listeners::single(warm_listener)
            .map_err(|e| (StartStage::WarmUpListener, e.to_string()))?;
        let warm_server = Server::start(
            warm_listeners,
            app.clone(),
            Settings {
                protocol: self.options.server,
                header_timeout: self.options.header_timeout,
                // The warm-up's own connections, on loopback.
                max_connections: usize::MAX,
                shared_port: false,
                // Plain HTTP on loopback: what warm-up code and its clients expect.
                tls: None,
            },
            Arc::default(),
            None,
            tokio::sync::watch::channel(true).1,
            None,
        );
        let _ = to_master.send(&ToMaster::Warming { addr: warm_addr }).await;
        let warm_up = parts
            .warm_up()
            .map_err(|e| (StartStage::WarmUp, e.to_string()))?;
        let outcome = match warm_up {
            Some(warm_up) => {
                tracing::debug!(addr = %warm_addr, "warming up");
                warm_up(WarmUp {
                    addr: warm_addr,
                    protocol: self.options.server,
                })
                .await
            }
            None => Ok(()),
        };
        // Warm-up connections are the warm-up's own, and it is over: no drain window; a
        // request still running gets a moment, not `stop_timeout`.
        warm_server.close(Duration::from_millis(500)).await;
        outcome.map_err(|e| (StartStage::WarmUp, e))?;

        let listeners = Listeners::new(listeners)
            .map_err(|e| (StartStage::WarmUpListener, format!("shared listener: {e}")))?;
        let addr = listeners.local_addr();
        let conns = Arc::new(ConnStats::default());
        // With `max_requests`, a heartbeat goes out as soon as this worker reaches its limit,
        // not up to `heartbeat_interval` later: the master judges it on its exact count.
        let report_at = crate::robustness::request_limit(
            self.options.max_requests,
            self.options.max_requests_jitter,
            std::process::id(),
        );
        let app_stats = Arc::new(AppStats::new(
            self.options.metrics.buckets.bounds(),
            report_at,
        ));
        let open_files = crate::conns::fds::limit();
        let max_connections =
            crate::conns::fds::worker_cap(self.options.max_connections, open_files);
        if max_connections as u64 >= open_files {
            tracing::warn!(
                "--max-connections {max_connections} is not below the open-files limit \
                 ({open_files}): accepting will fail for want of descriptors before the cap \
                 is reached; leave it at 0 to derive it from the limit"
            );
        }
        tracing::debug!(max_connections, "connections on the shared port");
        let server = Server::start(
            listeners,
            app,
            Settings {
                protocol: self.options.server,
                header_timeout: self.options.header_timeout,
                max_connections,
                shared_port: true,
                tls: self.tls.clone(),
            },
            conns.clone(),
            Some(app_stats.clone()),
            accepting,
            self.turn.clone(),
        );
        let _ = to_master.send(&ToMaster::Listening).await;
        let final_beat =
            reporter::spawn_reporter(self.id, self.options.heartbeat_interval, app_stats, conns);
        tracing::debug!(%addr, "listening");
        let started = Started {
            role: Role::Worker(self.id),
            addr,
            monitor_addr: None,
            worker_pids: Vec::new(),
            options: self.options.clone(),
            args: self.app_args.clone(),
        };
        Ok((Serving { server, final_beat }, started))
    }

    /// Binds this worker's warm-up listener: `warm_up_port + id` first, then upward, so that
    /// workers get distinct ports; any free port when `warm_up_port` is unset.
    async fn bind_warm_up(&self) -> Result<TcpListener, String> {
        let Some(base) = self.options.warm_up_port else {
            return TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|e| format!("cannot bind a warm-up port: {e}"));
        };
        let first = u32::from(base) + self.id as u32;
        let span = 3 * self.options.workers.max(1) as u32;
        for port in (first..first + span).chain(u32::from(base)..first) {
            let Ok(port) = u16::try_from(port) else { break };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match TcpListener::bind(addr).await {
                Ok(listener) => return Ok(listener),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(format!("cannot bind warm-up port {port}: {e}")),
            }
        }
        Err(format!(
            "no free warm-up port in {base}..{} (--warm-up-port)",
            u32::from(base) + span
        ))
    }
}
