//! The supervising process: binds the ports, spawns the workers, waits until every one is
//! listening, restarts crashed ones with back-off, replaces old, degraded and stuck ones one at
//! a time, and shuts the cluster down on a signal. See `LIFECYCLE.md` beside this file.
//!
//! The public part is the operator controls, for code running in the master.

mod board;
mod cache_manager;
mod children;
mod control;
mod death_queue;
mod debugging;
mod pidfile;
mod process;
mod restart;
mod shutdown;
mod spawn;
pub(crate) mod stop;
mod supervisor;
mod workers;

pub(crate) use board::{Board, Sample, WorkerState};
pub use control::{pause, replace, resume, rolling_restart};
pub(crate) use debugging::{
    debug_new, debug_session, dismiss_debug_worker, end_debug_session, release_debug_worker,
};

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use crate::cluster::{MainBody, Parts};
use crate::ecv::Ecv;
use crate::exit;
use crate::lifecycle::Journal;
use crate::options::Options;
use pidfile::PidFiles;
use shutdown::Signals;
use spawn::Spawner;
use supervisor::Setup;

pub(crate) fn run(
    parts: Parts,
    options: Options,
    app_args: Vec<String>,
    main: MainBody,
) -> ExitCode {
    crate::log::init(
        format!("master[{}]", std::process::id()),
        &options.log.level,
    );
    // Bind before anything else exists: a busy port must fail with no child left behind.
    // The schema allows any u32; the kernel caps the backlog anyway (somaxconn).
    let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
    let app = match bind(options.host, options.port, backlog) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "cannot bind the application port: --port {} on {}: {e}",
                options.port,
                options.host
            );
            return exit::code(exit::FAILURE);
        }
    };
    let monitor = match bind(options.mon_host, options.mon_port, 128) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "cannot bind the monitor port: --mon-port {} on {}: {e}",
                options.mon_port,
                options.mon_host
            );
            return exit::code(exit::FAILURE);
        }
    };
    // One thread: the master routes messages and supervises; it does no heavy work, and a
    // single-threaded runtime spares every relayed message a wake-up across threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .thread_name("cluster2-master")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return exit::code(exit::FAILURE);
        }
    };
    let code = runtime.block_on(async move {
        match master(
            parts,
            Arc::new(options),
            app_args.into(),
            app,
            monitor,
            main,
        )
        .await
        {
            Ok(code) => code,
            Err(e) => {
                tracing::error!("{e}");
                exit::code(exit::FAILURE)
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Everything the master runs, in order: signal handlers, pid files, the spawner, the
/// lifecycle journal, the monitor, then the supervisor until the cluster stops.
async fn master(
    parts: Parts,
    options: Arc<Options>,
    app_args: Arc<[String]>,
    app: TcpListener,
    monitor: TcpListener,
    main: MainBody,
) -> Result<ExitCode, String> {
    // Signal handlers first: from here on no signal takes its default action.
    let signals = Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let pid_files = PidFiles::create(options.pids.as_deref())?;
    let app_addr = app.local_addr().expect("a bound listener has an address");
    let mon_addr = monitor
        .local_addr()
        .expect("a bound listener has an address");
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program's own path to start workers: {e}"))?;
    // The master keeps its own copy of the listener for its whole life, so connections queue in
    // the kernel while workers start, crash or are replaced.
    let listener_fd: OwnedFd = app
        .try_clone()
        .map_err(|e| format!("cannot share the application listener: {e}"))?
        .into();
    let seats = match options.balance {
        crate::options::Balance::Even => Some(
            crate::balance::Seats::create(options.workers)
                .map_err(|e| format!("cannot create the connection-balance table: {e}"))?,
        ),
        crate::options::Balance::Kernel => None,
    };
    let balance_fd = match &seats {
        Some(seats) => Some(
            seats
                .fd()
                .try_clone()
                .map_err(|e| format!("cannot share the connection-balance table: {e}"))?,
        ),
        None => None,
    };
    let spawner = Spawner::start(listener_fd, balance_fd, exe)
        .map_err(|e| format!("cannot start the spawner threads: {e}"))?;

    Journal::install();
    let board = Arc::new(Board::default());
    let gate_board = board.clone();
    let ecv = Ecv::build(
        options.ecv.clone(),
        Some(Box::new(move || gate_board.gate())),
        parts.ecv_validator(),
        Some(app_addr),
    );
    let controls = control::install();
    let monitor_stop = CancellationToken::new();
    let monitor_app = crate::monitor::Monitor {
        board: board.clone(),
        ecv: ecv.clone(),
        dependencies: parts.dependencies(),
        refresh: options.heartbeat_interval,
        max_profile_secs: options
            .mon
            .max_profile
            .as_secs()
            .clamp(1, u64::from(u32::MAX)) as u32,
    };
    let monitor_task = crate::monitor::serve(
        monitor,
        monitor_app,
        parts.configure_monitor(),
        crate::monitor::guard::Guard::new(&options, mon_addr),
        monitor_stop.clone(),
    )
    .await
    .map_err(|e| format!("cannot serve the monitor: {e}"))?;
    register_death_queue_status(board.clone());

    let setup = Setup {
        should_kill: parts.should_kill(&options),
        options,
        app_args,
        spawner,
        seats,
        board,
        ecv,
        pid_files,
        app_addr,
        mon_addr,
    };
    let code = supervisor::supervise(setup, signals, controls, main).await;
    monitor_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), monitor_task).await;
    tracing::info!("stopped");
    Ok(code)
}

/// The death queue as a status named `death_queue`, in the master.
fn register_death_queue_status(board: Arc<Board>) {
    let _ = crate::status::register("death_queue", move || board.snapshot().death_queue);
}

fn bind(host: std::net::IpAddr, port: u16, backlog: i32) -> std::io::Result<TcpListener> {
    let addr = SocketAddr::new(host, port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting the master must not wait for TIME_WAIT connections of the previous one.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
