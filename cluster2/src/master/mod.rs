//! The supervising process: binds the ports, spawns the workers, waits until every one is
//! listening, restarts crashed ones with back-off, replaces old, degraded and stuck ones one at
//! a time, and shuts the cluster down on a signal. See `LIFECYCLE.md` beside this file.
//!
//! The public part is the operator controls, for code running in the master.

mod control;
mod pidfile;
mod spawn;
pub(crate) mod stop;
pub(crate) mod supervisor;

pub use control::{pause, replace, resume, rolling_restart};

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use crate::cluster::{MainBody, Parts};
use crate::options::Options;

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
    let app = match bind(options.host, options.port, options.backlog as i32) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "cannot bind the application port: --port {} on {}: {e}",
                options.port,
                options.host
            );
            return crate::exit::code(crate::exit::FAILURE);
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
            return crate::exit::code(crate::exit::FAILURE);
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
            return crate::exit::code(crate::exit::FAILURE);
        }
    };
    let code = runtime.block_on(supervisor::supervise(
        parts,
        Arc::new(options),
        app_args.into(),
        app,
        monitor,
        main,
    ));
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
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
