//! Pid files (option `pids`, a directory): `master.pid`, and `worker.<pid>.pid` per live
//! worker, so that `stop` can find the master and check that nothing is left behind.

use std::path::{Path, PathBuf};

/// The pid files of a running master; does nothing without a directory.
#[derive(Debug)]
pub(crate) struct PidFiles {
    dir: Option<PathBuf>,
}

pub(crate) const MASTER_FILE: &str = "master.pid";

impl PidFiles {
    /// Writes `master.pid`, refusing if a live master already uses the directory.
    pub(crate) fn create(dir: Option<&str>) -> Result<Self, String> {
        let Some(dir) = dir else {
            return Ok(Self { dir: None });
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "cannot create the pid directory {} (--pids): {e}",
                dir.display()
            )
        })?;
        if let Some(pid) = read_pid(&dir.join(MASTER_FILE)) {
            if pid != std::process::id() && alive(pid) {
                return Err(format!(
                    "another master (pid {pid}) runs with the pid directory {} (--pids)",
                    dir.display()
                ));
            }
        }
        // Leftovers of a master that died without cleaning up.
        for (_, path) in worker_files(&dir) {
            let _ = std::fs::remove_file(path);
        }
        write_atomically(&dir.join(MASTER_FILE), std::process::id())
            .map_err(|e| format!("cannot write {}/{MASTER_FILE}: {e}", dir.display()))?;
        Ok(Self { dir: Some(dir) })
    }

    pub(crate) fn add_worker(&self, pid: u32) {
        if let Some(dir) = &self.dir {
            if let Err(e) = write_atomically(&dir.join(format!("worker.{pid}.pid")), pid) {
                tracing::warn!("cannot write the pid file of worker pid {pid}: {e}");
            }
        }
    }

    pub(crate) fn remove_worker(&self, pid: u32) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(format!("worker.{pid}.pid")));
        }
    }

    pub(crate) fn remove_master(&self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(MASTER_FILE));
        }
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a pid.
fn write_atomically(path: &Path, pid: u32) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `(pid, path)` of every `worker.<pid>.pid` in `dir`.
pub(crate) fn worker_files(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let pid = name
                .strip_prefix("worker.")?
                .strip_suffix(".pid")?
                .parse()
                .ok()?;
            Some((pid, path))
        })
        .collect()
}

/// Whether a process exists (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
