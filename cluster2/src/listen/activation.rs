//! Socket activation: listening sockets a service manager (systemd's `.socket` units,
//! `systemd-socket-activate`) passed to the master, which serves the application on them
//! instead of binding `host`/`port` or `bind`. The service manager holds the sockets, so a
//! restart of the whole service loses no connection: they queue meanwhile.
//!
//! The protocol is `sd_listen_fds(3)`: `LISTEN_PID` is this process, `LISTEN_FDS` says how
//! many sockets follow fd 3, `LISTEN_FDNAMES` (optional) names them. A socket named
//! `monitor` (`FileDescriptorName=monitor`) is the monitor's, which then binds no port of its
//! own; every other one serves the application. Workers are started without these variables
//! (`master::systemd::VARIABLES`) and get the application's sockets as they get a bound port,
//! at the same descriptor numbers; the monitor's stay in the master.

use super::Listener;

/// The name that gives a passed socket to the monitor.
pub(crate) const MONITOR: &str = "monitor";

/// The sockets a service manager passed, by who serves them.
#[derive(Debug)]
pub(crate) struct Activated {
    /// The application's: never empty.
    pub(crate) app: Vec<Listener>,
    /// The monitor's (named `monitor`), TCP; empty: the monitor binds `mon_port` itself.
    pub(crate) monitor: Vec<std::net::TcpListener>,
}

/// The sockets passed to this process, if any: `Ok(None)` when the variables are absent or
/// meant for another process. An error is one line: a variable that makes no sense, a
/// descriptor that is not a listening stream socket, a monitor socket that is not TCP, or
/// only monitor sockets.
pub(crate) fn take() -> Result<Option<Activated>, String> {
    let Ok(pid) = std::env::var("LISTEN_PID") else {
        return Ok(None);
    };
    // Set for a parent or a sibling that passed its environment on: not ours to take.
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    let count = count
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=crate::ipc::fd::MAX_LISTENERS).contains(n))
        .ok_or_else(|| {
            format!(
                "LISTEN_FDS={count}: expected the number of sockets passed, from 1 to {}",
                crate::ipc::fd::MAX_LISTENERS
            )
        })?;
    let fds = crate::ipc::fd::take_activated(count)
        .map_err(|e| format!("socket activation (LISTEN_FDS={count}): {e}"))?;
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut listeners = Vec::with_capacity(count);
    let mut monitor = Vec::new();
    for (i, fd) in fds.into_iter().enumerate() {
        let socket = socket2::Socket::from(fd);
        let number = crate::ipc::fd::ACTIVATED_FD + i as i32;
        let name = names.split(':').nth(i).filter(|n| !n.is_empty());
        let what = match name {
            Some(name) => format!("fd {number} ({name})"),
            None => format!("fd {number}"),
        };
        let usable = socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
            && socket.is_listener().unwrap_or(false);
        if !usable {
            return Err(format!(
                "socket activation: {what} is not a listening stream socket (ListenStream= in \
                 the .socket unit, without Accept=yes)"
            ));
        }
        let listener = Listener::from_fd(socket.into())
            .map_err(|e| format!("socket activation: {what}: {e}"))?;
        match listener {
            Listener::Tcp(tcp) if name == Some(MONITOR) => monitor.push(tcp),
            Listener::Unix(_) if name == Some(MONITOR) => {
                return Err(format!(
                    "socket activation: {what} is a Unix socket; the monitor's must be TCP \
                     (ListenStream=PORT or ADDRESS:PORT)"
                ));
            }
            listener => listeners.push(listener),
        }
    }
    if listeners.is_empty() {
        return Err(format!(
            "socket activation: every socket passed is named `{MONITOR}`: the application \
             needs one too (name it anything else with FileDescriptorName=)"
        ));
    }
    Ok(Some(Activated {
        app: listeners,
        monitor,
    }))
}
