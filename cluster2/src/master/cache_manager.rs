//! Running the cache manager for the cluster: inside the master, or as its own supervised
//! process that is restarted with back-off when it dies (clients reconnect by themselves).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::children::{self, Child};
use super::restart::CrashStreak;
use super::spawn::Kind;
use super::supervisor::{Input, Supervisor};
use crate::ipc::message::ToMaster;
use crate::lifecycle::{self, Event, Exit};
use crate::options::CacheMode;

/// The cache manager as the supervisor knows it.
#[derive(Default)]
pub(super) struct CacheManager {
    /// Where the manager listens, when the cache is enabled.
    pub(super) socket: Option<PathBuf>,
    /// The cluster's private directory holding the socket, removed when the master exits.
    runtime_dir: Option<PathBuf>,
    /// The standalone manager process, while it runs.
    pub(super) process: Option<CacheProcess>,
    streak: CrashStreak,
}

/// The standalone cache manager process.
pub(super) struct CacheProcess {
    pub(super) child: Child,
    started: Instant,
}

impl CacheManager {
    /// Whether `pid` is the standalone manager.
    pub(super) fn is(&self, pid: u32) -> bool {
        self.process.as_ref().is_some_and(|c| c.child.pid == pid)
    }

    pub(super) fn remove_runtime_dir(&self) {
        if let Some(dir) = &self.runtime_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Supervisor {
    /// Starts the cache manager (in this process or its own) and connects this process to it.
    pub(super) async fn start_cache(&mut self) -> crate::Result<()> {
        let settings = self.options.cache.clone();
        let dir = crate::runtime_dir::create()?;
        let socket = dir.join("cache.sock");
        self.cache.runtime_dir = Some(dir);
        self.cache.socket = Some(socket.clone());
        match settings.mode {
            CacheMode::Master => {
                crate::cache::start_manager(
                    &socket,
                    Path::new(&settings.persist_path),
                    settings.max_value as usize,
                )?;
                tracing::info!(
                    "cache manager listening on {} (in the master)",
                    socket.display()
                );
                lifecycle::publish(Event::CacheManagerUp { pid: None, socket });
            }
            _ => self.spawn_cache().await,
        }
        let socket = self.cache.socket.clone().expect("set above");
        crate::cache::connect(socket, settings.max_value as usize, settings.timeout);
        Ok(())
    }

    async fn spawn_cache(&mut self) {
        let hello = self.hello(usize::MAX);
        let spawning = self.spawner.request(Kind::CacheManager);
        match children::start(spawning, hello, &self.inputs).await {
            Ok(child) => {
                crate::ipc::peers::set_cache_manager(Some((child.pid, child.tx.clone())));
                self.cache.process = Some(CacheProcess {
                    child,
                    started: Instant::now(),
                });
            }
            Err(e) => {
                tracing::error!("cache manager: {e}");
                self.schedule_cache_restart(None);
            }
        }
    }

    /// Counts a failure of the manager and starts another after its back-off.
    fn schedule_cache_restart(&mut self, served: Option<std::time::Duration>) -> f64 {
        let delay = self.cache.streak.crashed(served, &self.options.restart);
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = inputs.send(Input::CacheRestartDue);
        });
        delay.as_secs_f64()
    }

    pub(super) async fn cache_restart_due(&mut self) {
        if !self.stopping && self.cache.process.is_none() {
            self.spawn_cache().await;
        }
    }

    pub(super) fn cache_message(&self, pid: u32, msg: &ToMaster) {
        if matches!(msg, ToMaster::Listening) {
            let socket = self.cache.socket.clone().unwrap_or_default();
            tracing::info!(
                "cache manager (pid {pid}) listening on {}",
                socket.display()
            );
            lifecycle::publish(Event::CacheManagerUp {
                pid: Some(pid),
                socket,
            });
        }
    }

    /// The cache manager process exited: restart it unless the cluster is stopping.
    pub(super) fn cache_exited(&mut self, pid: u32, how: Exit) {
        let Some(cache) = self.cache.process.take() else {
            return;
        };
        crate::ipc::peers::set_cache_manager(None);
        if self.stopping {
            tracing::info!("cache manager (pid {pid}) {how}");
            lifecycle::publish(Event::CacheManagerDown {
                pid,
                exit: how,
                restart_in_secs: None,
            });
            return;
        }
        self.board.count_restart();
        tracing::error!(
            "cache manager (pid {pid}) {how}; restarting it (clients reconnect by themselves)"
        );
        let delay = self.schedule_cache_restart(Some(cache.started.elapsed()));
        lifecycle::publish(Event::CacheManagerDown {
            pid,
            exit: how,
            restart_in_secs: Some(delay),
        });
    }
}
