//! Stopping the cluster: the signals the master answers, the ECV's drain delay, every worker
//! told to stop and given `stop_timeout`, a second signal or the deadline killing what is left,
//! and the cache manager stopped last (workers may use the cache while they drain).

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio::sync::mpsc;

use super::board::{Phase, WorkerState};
use super::control::Control;
use super::supervisor::{Input, Supervisor};
use crate::ipc::message::{LogControl, ToWorker};
use crate::lifecycle::{self, Event};

/// How long a worker may outlive its `stop_timeout` before the master kills it: workers
/// enforce the timeout themselves, and the master allows a little more, at shutdown and for a
/// worker retired by a scale-down alike.
pub(super) const STOP_SLACK: Duration = Duration::from_secs(2);

/// The signals the master answers, installed for its whole life.
pub(super) struct Signals {
    pub(super) term: SignalStream,
    pub(super) int: SignalStream,
    pub(super) hup: SignalStream,
    /// One worker more (gunicorn's SIGTTIN).
    pub(super) ttin: SignalStream,
    /// One worker fewer (gunicorn's SIGTTOU).
    pub(super) ttou: SignalStream,
    /// Reopen the access log files (after `logrotate` moved them), as nginx and gunicorn do.
    pub(super) usr1: SignalStream,
}

impl Signals {
    /// Installs the handlers: from here on no signal takes its default action.
    pub(super) fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            ttin: signal(SignalKind::from_raw(nix::libc::SIGTTIN))?,
            ttou: signal(SignalKind::from_raw(nix::libc::SIGTTOU))?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

impl Supervisor {
    /// SIGUSR1: every worker, and the master for the monitor's lines, reopens its access log
    /// file (a moved file keeps its descriptor, so lines would go on into the old one). A
    /// worker started later opens the new file.
    pub(super) fn reopen_access_log(&mut self) {
        if !matches!(self.options.log.access, crate::options::AccessLog::File(_)) {
            tracing::info!("SIGUSR1: no access log file to reopen (--log.access)");
            return;
        }
        tracing::info!("SIGUSR1: reopening the access log in every worker");
        crate::log::access::reopen();
        for proc in self.procs.values() {
            // A channel thousands of messages behind loses this one: that worker keeps
            // writing to the old file until the next SIGUSR1.
            let _ = proc
                .child
                .tx
                .try_send(&ToWorker::Logs(LogControl::ReopenAccessLog));
        }
    }

    /// The ECV goes down, the drain delay passes, every worker stops gracefully; returns
    /// whether any had to be killed.
    pub(super) async fn shut_down(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Input>,
        controls: &mut mpsc::UnboundedReceiver<Control>,
        signals: &mut Signals,
        graceful: bool,
    ) -> bool {
        self.board.set_phase(Phase::ShuttingDown);
        self.deaths.clear();
        self.publish_queue();
        let drain = self.options.ecv.drain_delay;
        let mut forced = false;
        if !drain.is_zero() && graceful {
            tracing::info!(
                "ECV down; waiting {} (--ecv.drain-delay) before stopping the workers",
                humantime::format_duration(drain)
            );
            let until = tokio::time::Instant::now() + drain;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    Some(input) = events.recv() => self.handle(input).await,
                    Some(request) = controls.recv() => refuse(request),
                    _ = signals.term.recv() => { forced = true; break }
                    _ = signals.int.recv() => { forced = true; break }
                    _ = signals.hup.recv() => {}
                }
            }
        }
        self.stopping = true;
        self.deaths.clear();
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        for pid in pids {
            if self
                .procs
                .get(&pid)
                .is_some_and(|p| p.state != WorkerState::Stopping)
            {
                self.stop_worker(pid).await;
            }
        }
        self.publish();
        // Workers enforce `stop_timeout` themselves; the master allows a little more before
        // it stops waiting and kills.
        let deadline = tokio::time::Instant::now() + self.options.stop_timeout + STOP_SLACK;
        let mut killed = false;
        if forced {
            tracing::warn!("second signal: stopping now");
            self.signal_all(Signal::SIGKILL);
            killed = true;
        }
        while !self.procs.is_empty() {
            tokio::select! {
                Some(input) = events.recv() => self.handle(input).await,
                Some(request) = controls.recv() => refuse(request),
                () = tokio::time::sleep_until(deadline), if !killed => {
                    tracing::warn!(workers = self.procs.len(), "workers did not stop in time; killing them");
                    self.signal_all(Signal::SIGKILL);
                    killed = true;
                }
                _ = signals.term.recv() => { tracing::warn!("second signal: stopping now"); self.signal_all(Signal::SIGKILL); killed = true; }
                _ = signals.int.recv() => { tracing::warn!("second signal: stopping now"); self.signal_all(Signal::SIGKILL); killed = true; }
                _ = signals.hup.recv() => {}
            }
        }
        // The cache outlives the workers, which may use it while they drain.
        crate::cache::stopping();
        if let Some(cache) = &self.cache.process {
            // Without waiting on a manager that does not read: SIGTERM asks the same.
            if cache.child.tx.try_send(&ToWorker::Stop).is_err() {
                cache.child.signal(Signal::SIGTERM);
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while self.cache.process.is_some() {
                tokio::select! {
                    Some(input) = events.recv() => self.handle(input).await,
                    () = tokio::time::sleep_until(deadline) => {
                        if let Some(cache) = &self.cache.process {
                            tracing::warn!("the cache manager did not stop in time; killing it");
                            cache.child.signal(Signal::SIGKILL);
                        }
                        break;
                    }
                }
            }
        }
        lifecycle::publish(Event::Stopped);
        killed
    }
}

fn refuse(request: Control) {
    request.refuse_stopping();
}
