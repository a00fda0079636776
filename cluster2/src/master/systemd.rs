//! systemd's notify protocol, for `Type=notify` services: when the service manager sets
//! `NOTIFY_SOCKET`, the master tells it what the cluster is doing, in datagrams of
//! `KEY=value` lines (`sd_notify(3)`).
//!
//! Nothing here hooks into the supervisor: it follows the lifecycle journal like any other
//! reader, and maps events to notifications:
//!
//! | event | sent |
//! |---|---|
//! | `ready` | `READY=1`, `STATUS=serving with N workers` (the moment of the "ready" line) |
//! | a SIGHUP's first `queued` | `RELOADING=1` with `MONOTONIC_USEC` (`Type=notify-reload`) |
//! | the last of its replacements done (`replaced` or `replacement_failed`) | `READY=1` |
//! | `scaled` | `STATUS=serving with N workers` |
//! | `shutting_down` | `STOPPING=1`, `STATUS=stopping: <why>` |
//!
//! and `WATCHDOG=1` every half of `WATCHDOG_USEC` when the manager asks for a watchdog, from a
//! task on the master's event loop (so a wedged loop stops the pings and systemd restarts the
//! service). The variables are for the master alone: workers are started without them.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::lifecycle::{self, Event, ReplaceReason};

/// The service manager's variables (notify, watchdog, socket activation): the master's alone,
/// so removed from every child's environment.
pub(crate) const VARIABLES: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Starts notifying, if the service manager asked for it.
pub(super) fn start() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let notifier = match Notifier::connect(&path) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(
                "NOTIFY_SOCKET={}: cannot reach the service manager: {e}",
                path.to_string_lossy()
            );
            return;
        }
    };
    if let Some(interval) = watchdog_interval() {
        let notifier = notifier.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                notifier.send("WATCHDOG=1");
            }
        });
    }
    let Ok(mut events) = lifecycle::subscribe() else {
        return;
    };
    tokio::spawn(async move {
        let mut reload = Reload::default();
        while let Some(record) = events.next().await {
            if let Some(message) = reload.message_for(&record.event) {
                notifier.send(&message);
            }
        }
    });
}

/// The socket to the service manager.
#[derive(Clone, Debug)]
struct Notifier(std::sync::Arc<UnixDatagram>);

impl Notifier {
    /// `path` is a file system path, or `@name` for a socket in the abstract namespace.
    fn connect(path: &std::ffi::OsStr) -> std::io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let socket = UnixDatagram::unbound()?;
        match path.as_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.connect_addr(&addr)?;
            }
            None => socket.connect(path)?,
        }
        socket.set_nonblocking(true)?;
        Ok(Self(std::sync::Arc::new(socket)))
    }

    /// Sends one notification; a manager that is not reading loses it (as `sd_notify` does).
    fn send(&self, message: &str) {
        if let Err(e) = self.0.send(message.as_bytes()) {
            tracing::debug!("notifying the service manager: {e}");
        }
    }
}

/// Half of `WATCHDOG_USEC`, when the watchdog is meant for this process.
fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Follows a SIGHUP's rolling restart from its first replacement queued to its last done.
#[derive(Debug, Default)]
struct Reload {
    /// The workers of the rolling restart not replaced yet.
    waiting: BTreeSet<u32>,
}

impl Reload {
    /// What an event tells the service manager, if anything.
    fn message_for(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::Ready { workers } => Some(format!(
                "READY=1\nSTATUS=serving with {} workers",
                workers.len()
            )),
            Event::Queued {
                pid,
                reason: ReplaceReason::RollingRestart { sighup: true },
                ..
            } => {
                let first = self.waiting.is_empty();
                self.waiting.insert(*pid);
                first.then(|| {
                    format!(
                        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=rolling restart (SIGHUP)",
                        monotonic_usec()
                    )
                })
            }
            Event::Replaced { pid, .. }
            | Event::ReplacementFailed { pid, .. }
            | Event::Exited { pid, .. } => {
                let done = self.waiting.remove(pid) && self.waiting.is_empty();
                done.then(|| "READY=1\nSTATUS=rolling restart done".to_owned())
            }
            Event::Scaled { to, .. } => Some(format!("STATUS=serving with {to} workers")),
            Event::ShuttingDown { why } => {
                self.waiting.clear();
                Some(format!("STOPPING=1\nSTATUS=stopping: {why}"))
            }
            _ => None,
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as `RELOADING=1` wants it.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighup_reloads_until_its_last_replacement_and_stopping_ends_it() {
        let mut reload = Reload::default();
        let ready = reload.message_for(&Event::Ready {
            workers: vec![10, 11],
        });
        assert_eq!(
            ready.as_deref(),
            Some("READY=1\nSTATUS=serving with 2 workers")
        );
        let queued = |pid| Event::Queued {
            worker: 0,
            pid,
            reason: ReplaceReason::RollingRestart { sighup: true },
        };
        assert!(
            reload
                .message_for(&queued(10))
                .unwrap()
                .starts_with("RELOADING=1\nMONOTONIC_USEC=")
        );
        assert_eq!(reload.message_for(&queued(11)), None);
        // An operator's replacement is no reload.
        assert_eq!(
            reload.message_for(&Event::Queued {
                worker: 0,
                pid: 12,
                reason: ReplaceReason::Operator,
            }),
            None
        );
        let replaced = |pid| Event::Replaced {
            worker: 0,
            pid,
            successor: Some(pid + 100),
            reason: ReplaceReason::RollingRestart { sighup: true },
            took_secs: 0.1,
        };
        assert_eq!(reload.message_for(&replaced(10)), None);
        assert_eq!(
            reload.message_for(&Event::ReplacementFailed {
                worker: 1,
                pid: 11,
                why: "x".into(),
            }),
            Some("READY=1\nSTATUS=rolling restart done".to_owned())
        );
        // A scale says how many serve now.
        assert_eq!(
            reload.message_for(&Event::Scaled { from: 2, to: 3 }),
            Some("STATUS=serving with 3 workers".to_owned())
        );
        assert_eq!(
            reload.message_for(&Event::ShuttingDown {
                why: "SIGTERM".into()
            }),
            Some("STOPPING=1\nSTATUS=stopping: SIGTERM".to_owned())
        );
    }
}
