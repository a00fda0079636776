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
pub(crate) mod pidfile;
mod process;
mod restart;
mod scale;
mod shutdown;
mod spawn;
pub(crate) mod stop;
mod supervisor;
mod systemd;
mod workers;

pub(crate) use board::{Board, WorkerInfo, WorkerState};
pub use control::{pause, replace, resume, rolling_restart};
pub(crate) use debugging::{
    debug_new, debug_session, dismiss_debug_worker, end_debug_session, release_debug_worker,
};
pub use scale::{Scaled, scale, scale_by};

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::{MainBody, Parts};
use crate::ecv::Ecv;
use crate::exit;
use crate::lifecycle::Journal;
use crate::listen::{self, Listener};
use crate::options::{Host, Options};
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
        crate::log::Who::Master,
        &options.log.level,
        options.log.format,
    );
    // Before any descriptor is spent: connections take descriptors, and workers inherit it.
    let open_files = crate::conns::fds::raise_limit();
    // Before anything is bound or started: on success this process starts over with its title.
    if let Err(e) = crate::title::master() {
        tracing::warn!("the master keeps its command line, untitled: cannot execute itself: {e}");
    }
    // Read and checked once, here: a bad file is the user's mistake, found before anything
    // runs; workers get the bytes, never the files.
    let tls = match crate::tls::read(&options.tls) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::code(exit::USAGE);
        }
    };
    // Host names are looked up once, here: every worker inherits what was bound now.
    let addresses = match options.addresses() {
        Ok(addresses) => addresses,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::code(exit::USAGE);
        }
    };
    // Bind before anything else exists: a busy port must fail with no child left behind.
    let Some(app) = app_listeners(&options, &addresses.app) else {
        return exit::code(exit::FAILURE);
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::code(exit::USAGE);
        }
    };
    let monitor = if app.monitor.is_empty() {
        let by_name = options.mon_host.name().is_some();
        match listen::bind(&addresses.monitor, options.mon_port, 128, by_name) {
            Ok(bound) => {
                log_bound("--mon-host", &options.mon_host, &bound);
                bound.listeners
            }
            Err(e) => {
                tracing::error!(
                    "cannot bind the monitor port: --mon-port {} on {}: {e}",
                    options.mon_port,
                    options.mon_host
                );
                return exit::code(exit::FAILURE);
            }
        }
    } else {
        let on: Vec<String> = app.monitor.iter().map(describe_tcp).collect();
        // The rule `mon_host` follows, for an address the service manager chose.
        let exposed = app
            .monitor
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .find(|a| !a.ip().to_canonical().is_loopback());
        if let Some(addr) = exposed {
            if options.mon.token.is_none() && !options.mon.unsafe_no_token {
                eprintln!(
                    "error: socket activation: the monitor's socket listens on {addr}, beyond \
                     loopback: it would let anyone who reaches it act on the cluster; set a \
                     token with --mon.token (CLUSTER2_MON__TOKEN), or accept an open monitor \
                     with --mon.unsafe-no-token"
                );
                return exit::code(exit::USAGE);
            }
        }
        tracing::info!(
            "socket activation: the monitor serves on the socket(s) named `{}` ({}); \
             --mon-port and --mon-host are not used",
            listen::activation::MONITOR,
            on.join(", ")
        );
        app.monitor
    };
    // Every worker appends to the access log file: one that cannot be written is refused
    // here, before any starts, like a mistyped option.
    if let crate::options::AccessLog::File(path) = &options.log.access {
        if let Err(e) = crate::log::access::open(path) {
            eprintln!("error: cannot open the access log file {path} (--log.access): {e}");
            return exit::code(exit::USAGE);
        }
    }
    // The master logs the monitor's requests, as each worker logs the application's.
    if let Err(e) = crate::log::access::start(
        &options.log.access,
        options.log.format,
        crate::log::access::Source::Monitor,
    ) {
        eprintln!("error: {e} (--log.access)");
        return exit::code(exit::USAGE);
    }
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
    let socket_file = app.socket_file;
    let code = runtime.block_on(async move {
        match master(
            parts,
            Arc::new(options),
            app_args.into(),
            (app.listeners, tls),
            monitor,
            open_files,
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
    // The monitor's last lines.
    crate::log::access::finish(Duration::from_secs(1));
    // Every worker is gone: nothing serves on it any more.
    if let Some(file) = socket_file {
        file.remove();
    }
    code
}

/// The application's listening sockets, and the Unix socket's file to remove at stop.
struct AppListeners {
    listeners: Vec<Listener>,
    socket_file: Option<listen::unix::SocketFile>,
    /// The monitor's sockets, when the service manager passed them too (named `monitor`).
    monitor: Vec<std::net::TcpListener>,
}

/// Where the application listens: the sockets a service manager passed, else the Unix socket
/// of `bind`, else `port` on every address of `host`. `None`: binding failed, logged; an
/// error: socket activation that makes no sense (a usage error).
fn app_listeners(options: &Options, addrs: &[SocketAddr]) -> Option<Result<AppListeners, String>> {
    // The schema allows any u32; the kernel caps the backlog anyway (somaxconn).
    let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
    match listen::activation::take() {
        Err(e) => return Some(Err(e)),
        Ok(Some(activated)) => {
            let on: Vec<String> = activated.app.iter().map(describe).collect();
            tracing::info!(
                "socket activation: serving on the {} socket(s) the service manager passed \
                 ({}); --port, --host and --bind are not used",
                activated.app.len(),
                on.join(", ")
            );
            return Some(Ok(AppListeners {
                listeners: activated.app,
                socket_file: None,
                monitor: activated.monitor,
            }));
        }
        Ok(None) => {}
    }
    if let Some(bind) = &options.bind {
        // The schema checked both.
        let path = std::path::Path::new(bind.strip_prefix("unix:").unwrap_or(bind));
        let mode = cluster2_options_schema::parse_mode(&options.bind_mode).unwrap_or(0o660);
        return match listen::unix::bind(path, mode, backlog) {
            Ok((listener, file)) => {
                tracing::info!("--bind {bind}: listening, mode {:o}", mode);
                Some(Ok(AppListeners {
                    listeners: vec![Listener::Unix(listener)],
                    socket_file: Some(file),
                    monitor: Vec::new(),
                }))
            }
            Err(e) => {
                tracing::error!("cannot bind the application socket: --bind {bind}: {e}");
                None
            }
        };
    }
    let by_name = options.host.name().is_some();
    match listen::bind(addrs, options.port, backlog, by_name) {
        Ok(bound) => {
            log_bound("--host", &options.host, &bound);
            Some(Ok(AppListeners {
                listeners: bound.listeners.into_iter().map(Listener::Tcp).collect(),
                socket_file: None,
                monitor: Vec::new(),
            }))
        }
        Err(e) => {
            tracing::error!(
                "cannot bind the application port: --port {} on {}: {e}",
                options.port,
                options.host
            );
            None
        }
    }
}

/// A listening socket as the start-up line shows it.
fn describe(listener: &Listener) -> String {
    match listener {
        Listener::Tcp(l) => describe_tcp(l),
        Listener::Unix(l) => l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(|| "unix socket".to_owned()),
    }
}

/// A TCP listening socket as the start-up lines show it: its address.
fn describe_tcp(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "TCP".to_owned(), |a| a.to_string())
}

/// Everything the master runs, in order: signal handlers, pid files, the spawner, the
/// lifecycle journal, the monitor, then the supervisor until the cluster stops.
async fn master(
    parts: Parts,
    options: Arc<Options>,
    app_args: Arc<[String]>,
    (app, tls): (Vec<Listener>, Option<crate::tls::Pem>),
    monitor: Vec<TcpListener>,
    open_files: u64,
    main: MainBody,
) -> Result<ExitCode, String> {
    // Signal handlers first: from here on no signal takes its default action.
    let signals = Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let local_addr = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
    // Where one address is shown (the starting and ready lines, `Started::addr`): the first.
    let app_addr = app[0].local_addr().unwrap_or(listen::NO_ADDRESS);
    let app_shown = describe(&app[0]);
    let mon_addrs: Vec<SocketAddr> = monitor.iter().map(local_addr).collect();
    let mon_addr = mon_addrs[0];
    let pid_files = PidFiles::create(options.pids.as_deref(), mon_addr)?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program's own path to start workers: {e}"))?;
    // The master keeps its own copy of the listeners for its whole life, so connections queue in
    // the kernel while workers start, crash or are replaced.
    let listener_fds = app
        .iter()
        .map(Listener::try_clone)
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot share the application listener: {e}"))?;
    let seats = match options.balance {
        crate::options::Balance::Even => Some(
            // Sized for the most workers the cluster may be scaled to at run time.
            crate::balance::Seats::create(options.max_workers().max(options.workers))
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
    let spawner = Spawner::start(listener_fds, balance_fd, exe)
        .map_err(|e| format!("cannot start the spawner threads: {e}"))?;

    Journal::install();
    // Follows the journal from here: systemd hears of the cluster's readiness, reloads, stop.
    systemd::start();
    let board = Arc::new(Board::default());
    board.set_min_workers(options.ecv.min_workers);
    let gate_board = board.clone();
    let ecv = Ecv::build(
        options.ecv.clone(),
        Some(Box::new(move || gate_board.gate())),
        parts.ecv_validator(),
        Some(crate::ecv::AppPort {
            at: match &app[0] {
                Listener::Unix(listener) => crate::ecv::AppSocket::Unix(
                    listener
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(std::path::Path::to_owned))
                        .unwrap_or_default(),
                ),
                Listener::Tcp(_) => crate::ecv::AppSocket::Tcp(app_addr),
            },
            tls: tls.is_some(),
        }),
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
        buckets: options.metrics.buckets.bounds().into(),
    };
    let monitor_limits = monitor_limits(&options, open_files);
    let descriptors = supervisor::Descriptors {
        open_files,
        monitor_connections: monitor_limits.max_connections,
    };
    let monitor_task = crate::monitor::serve(
        monitor,
        monitor_app,
        parts.configure_monitor(),
        crate::monitor::guard::Guard::new(&options, &mon_addrs),
        monitor_limits,
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
        app_shown,
        mon_addr,
        tls,
        descriptors,
    };
    let code = supervisor::supervise(setup, signals, controls, main).await;
    monitor_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), monitor_task).await;
    tracing::info!("stopped");
    Ok(code)
}

/// The monitor's connections: what `mon.max_connections` asks, within what the open-files
/// limit leaves once the master has kept what it needs to start and talk to its workers (so
/// that monitor clients can never keep a crashed worker from being replaced).
fn monitor_limits(options: &Options, open_files: u64) -> crate::monitor::server::Limits {
    let configured = options.mon.max_connections;
    let (max_connections, clamped) =
        crate::conns::fds::monitor_cap(configured, open_files, options.workers);
    if clamped {
        tracing::warn!(
            "the open-files limit ({open_files}) leaves the monitor {max_connections} \
             connections, not {configured} (--mon.max-connections): raise it with `ulimit -n`"
        );
    }
    crate::monitor::server::Limits {
        header_timeout: options.header_timeout,
        max_connections,
    }
}

/// The death queue as a status named `death_queue`, in the master.
fn register_death_queue_status(board: Arc<Board>) {
    let _ = crate::status::register("death_queue", move || board.snapshot().death_queue);
}

/// Says once where a port given by host name listens: every address the name resolved to that
/// was bound, and why any was left out (`::1` on a machine without IPv6).
fn log_bound(flag: &str, host: &Host, bound: &listen::Bound) {
    if host.name().is_none() {
        return;
    }
    let on: Vec<String> = bound
        .listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let mut line = format!("{flag} {host}: listening on {}", on.join(", "));
    for (addr, e) in &bound.skipped {
        line.push_str(&format!("; not on {}: {e}", addr.ip()));
    }
    tracing::info!("{line}");
}
