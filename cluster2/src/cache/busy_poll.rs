//! The standalone manager's busy poll before sleeping (`cache.spin`): a short wait for the
//! next request instead of going to sleep at once.
//!
//! A worker that makes cache calls one after another (a handler reading a few keys) sends its
//! next request a few microseconds after the previous answer. If the manager has gone to sleep
//! in the meantime, the request has to wake it: on a virtual machine that is a cross-CPU
//! interrupt and an exit from the idle state, about a quarter of the round trip. So before its
//! runtime thread sleeps, the manager keeps looking at its client sockets for up to
//! `cache.spin`, yielding the CPU between looks so that any other runnable process on that CPU
//! goes first. The same trade as Seastar's idle polling or Go's spinning threads: a little CPU
//! right after activity for lower latency; `cache.spin = 0s` turns it off.
//!
//! It only waits when waiting has been paying off: it keeps a moving average of how long the
//! manager stays idle (from running out of work to the next wake-up), and spins only while
//! that is shorter than `cache.spin`. Under light or bursty traffic the average is long and
//! the manager goes straight to sleep; the CPU goes to spinning only while clients keep it
//! busy with calls a few microseconds apart.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

/// Watches the manager's client sockets for the runtime's "about to sleep" hook.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    /// The client sockets, level-triggered: "is there anything to read" at any moment.
    sockets: Epoll,
    spin: Duration,
    /// Times below are nanoseconds since this.
    epoch: Instant,
    /// When the runtime last ran out of work and slept.
    idle_since: AtomicU64,
    /// Moving average of idle periods, in nanoseconds (each new one weighs 1/8).
    average_idle: AtomicU64,
}

impl BusyPoll {
    pub(crate) fn new(spin: Duration) -> std::io::Result<Self> {
        Ok(Self {
            sockets: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            spin,
            epoch: Instant::now(),
            idle_since: AtomicU64::new(0),
            average_idle: AtomicU64::new(0),
        })
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn record_idle(&self, idle: u64) {
        // Only the runtime's one thread calls the hooks: plain loads and stores suffice.
        let average = self.average_idle.load(Ordering::Relaxed);
        let average = average - average / 8 + idle / 8;
        self.average_idle.store(average, Ordering::Relaxed);
    }

    /// Whether idle periods have lately been short enough for a wait to catch their end.
    fn pays_off(&self) -> bool {
        u128::from(self.average_idle.load(Ordering::Relaxed)) < self.spin.as_nanos()
    }

    /// For the runtime's "woke up" hook: how long it was idle goes into the average.
    pub(crate) fn after_wake(&self) {
        let since = self.idle_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.record_idle(self.nanos(Instant::now()).saturating_sub(since));
        }
    }

    /// Adds a client socket; it leaves by itself when the socket is closed.
    pub(crate) fn watch(&self, socket: impl AsFd) -> std::io::Result<()> {
        self.sockets
            .add(socket, EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        Ok(())
    }

    /// For the runtime's "about to sleep" hook: returns as soon as a client socket has
    /// something to read, or after `spin`, or at once when idle periods have lately been
    /// longer than `spin`.
    pub(crate) fn before_sleep(&self) {
        if self.spin.is_zero() {
            return;
        }
        let started = Instant::now();
        let since = self.nanos(started).max(1);
        if !self.pays_off() {
            self.idle_since.store(since, Ordering::Relaxed);
            return;
        }
        let until = started + self.spin;
        let mut events = [EpollEvent::empty()];
        loop {
            // An error (EINTR) ends the wait like an event: the runtime then looks for itself.
            if !matches!(self.sockets.wait(&mut events, 0u8), Ok(0)) {
                self.record_idle(self.nanos(Instant::now()) - since);
                return;
            }
            let now = Instant::now();
            if now >= until {
                // Waited in vain: the rest of this idle period is measured on waking.
                self.idle_since.store(since, Ordering::Relaxed);
                return;
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn returns_at_once_when_a_socket_is_readable_and_after_the_spin_otherwise() {
        // A long spin: "returned at once" and "waited it out" are ten seconds apart.
        let spin = BusyPoll::new(Duration::from_secs(10)).unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        spin.watch(&server).unwrap();
        client.write_all(b"x").unwrap();
        let started = Instant::now();
        spin.before_sleep();
        assert!(started.elapsed() < Duration::from_secs(10));

        let idle = BusyPoll::new(Duration::from_millis(20)).unwrap();
        let (_client, server) = UnixStream::pair().unwrap();
        idle.watch(&server).unwrap();
        let started = Instant::now();
        idle.before_sleep();
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn waits_only_while_idle_periods_are_shorter_than_the_spin() {
        let idle = BusyPoll::new(Duration::from_millis(5)).unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        idle.watch(&server).unwrap();
        assert!(idle.pays_off());
        // Idle periods of 20 ms, four times the spin: the average climbs past it.
        for _ in 0..20 {
            idle.before_sleep();
            std::thread::sleep(Duration::from_millis(20));
            idle.after_wake();
        }
        assert!(!idle.pays_off());
        // Requests back to back (the socket always has something to read): idle periods of
        // next to nothing bring the average down again.
        client.write_all(b"x").unwrap();
        for _ in 0..60 {
            idle.before_sleep();
            idle.after_wake();
        }
        assert!(idle.pays_off());
    }
}
