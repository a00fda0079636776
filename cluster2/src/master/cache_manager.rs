//! Running the cache manager for the cluster: inside the master, or as its own supervised
//! process that is restarted when it dies (clients reconnect by themselves): at once if it
//! had been listening for `restart.delay`, with back-off if it keeps dying before that.

use std::path::PathBuf;
use std::time::Instant;

use super::children::{self, Child};
use super::restart::{CrashStreak, Life};
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
    /// Since when it listens, once it does.
    listening_since: Option<Instant>,
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
    /// Starts the cache manager (in this process or its own) and connects this process to it;
    /// with a Redis backend, only connects this process to Redis: no manager runs.
    pub(super) async fn start_cache(&mut self) -> crate::Result<()> {
        let settings = self.options.cache.clone();
        if settings.backend != "local" {
            crate::cache::connect_redis(
                &settings.backend,
                &self.options.cluster_name,
                settings.max_value as usize,
                settings.timeout,
                settings.max_lease,
            )?;
            tracing::info!(
                "cache on Redis at {} (cluster name {})",
                cluster2_options_schema::redact_url(&settings.backend),
                self.options.cluster_name
            );
            return Ok(());
        }
        let dir = crate::runtime_dir::create()?;
        let socket = dir.join("cache.sock");
        self.cache.runtime_dir = Some(dir);
        self.cache.socket = Some(socket.clone());
        match settings.mode {
            CacheMode::Master => {
                crate::cache::start_manager(
                    &socket,
                    crate::cache::manager::ManagerConfig::from_options(&settings),
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
                    listening_since: None,
                });
            }
            Err(e) => {
                tracing::error!("cache manager: {e}");
                self.schedule_cache_restart(Life::default());
            }
        }
    }

    /// Counts a failure of the manager and starts another after its back-off.
    fn schedule_cache_restart(&mut self, life: Life) -> f64 {
        let delay = self.cache.streak.crashed(life, &self.options.restart);
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

    pub(super) fn cache_message(&mut self, pid: u32, msg: &ToMaster) {
        if matches!(msg, ToMaster::Listening) {
            if let Some(cache) = &mut self.cache.process {
                cache.listening_since = Some(Instant::now());
            }
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
        // The manager counts no requests of its own: one that kept listening for
        // `restart.delay` did its work (its clients reconnect to it at once), and one that
        // dies sooner, again and again, is a loop.
        let listened_for = cache.listening_since.map(|t| t.elapsed());
        let life = Life {
            listened_for,
            served: listened_for.is_some_and(|l| l >= self.options.restart.delay),
        };
        let delay = self.schedule_cache_restart(life);
        lifecycle::publish(Event::CacheManagerDown {
            pid,
            exit: how,
            restart_in_secs: Some(delay),
        });
    }
}
