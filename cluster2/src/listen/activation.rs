//! Socket activation: listening sockets a service manager (systemd's `.socket` units,
//! `systemd-socket-activate`) passed to the master, which serves the application on them
//! instead of binding `host`/`port` or `bind`. The service manager holds the sockets, so a
//! restart of the whole service loses no connection: they queue meanwhile.
//!
//! The protocol is `sd_listen_fds(3)`: `LISTEN_PID` is this process, `LISTEN_FDS` says how
//! many sockets follow fd 3, `LISTEN_FDNAMES` (optional) names them. Workers are started
//! without these variables (`master::systemd::VARIABLES`) and get the sockets as they get a
//! bound port, at the same descriptor numbers.

use super::Listener;

/// The sockets passed to this process, if any: `Ok(None)` when the variables are absent or
/// meant for another process. An error is one line: a variable that makes no sense, or a
/// descriptor that is not a listening stream socket.
pub(crate) fn take() -> Result<Option<Vec<Listener>>, String> {
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
        listeners.push(listener);
    }
    Ok(Some(listeners))
}
