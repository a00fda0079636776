//! Pid files (option `pids`, a directory): `master.pid`, and `worker.<pid>.pid` per live
//! worker, so that `stop` can find the master and check that nothing is left behind; and the
//! proof, read back by `stop`, that a pid file names this cluster's master.
//!
//! A pid file outlives a master killed outright, and its pid is later some other process's:
//! signalling whatever the file names would kill an innocent one. So the master holds an
//! exclusive `flock` on `master.pid` for its whole life (the kernel drops it when the process
//! ends, however it ends), and writes its start time (`/proc/<pid>/stat`, in clock ticks since
//! boot) on the file's second line; the first line is the pid alone, as other tools expect.
//! The third line is where the monitor answers (`monitor=127.0.0.1:8081`), for the control
//! commands.
//! [`verify_master`] accepts the file only while the lock is held, the named process started
//! when the file says, and the file belongs to that process's user, and to the user asking
//! (root may ask about anyone's).
//!
//! Private: the files are 0600 and a directory created here is 0700; `master.pid` is never
//! opened through a symbolic link. A pid directory other users can write to is refused, by
//! the master and by the commands that read it: anyone could have put a `master.pid` there,
//! naming their own process and their own "monitor", which would then be sent the token.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The pid files of a running master; does nothing without a directory.
#[derive(Debug)]
pub(crate) struct PidFiles {
    dir: Option<PathBuf>,
    /// `master.pid`, locked for as long as this master lives.
    _lock: Option<Flock<File>>,
}

pub(crate) const MASTER_FILE: &str = "master.pid";

/// The label of the start time on `master.pid`'s second line.
const START: &str = "start=";
/// The label of the monitor's address on its third line, where the command line's control
/// commands (`status`, `reload`, `scale`) find the master.
const MONITOR: &str = "monitor=";

impl PidFiles {
    /// Locks and writes `master.pid` (with the address the monitor answers on), refusing if a
    /// live master already uses the directory.
    pub(crate) fn create(dir: Option<&str>, monitor: SocketAddr) -> Result<Self, String> {
        let Some(dir) = dir else {
            return Ok(Self {
                dir: None,
                _lock: None,
            });
        };
        let dir = PathBuf::from(dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                format!(
                    "cannot create the pid directory {} (--pids): {e}",
                    dir.display()
                )
            })?;
        private_dir(&dir)?;
        let path = dir.join(MASTER_FILE);
        let lock = lock_master_file(&path)?;
        // Leftovers of a master that died without cleaning up.
        for (_, path) in worker_files(&dir) {
            let _ = std::fs::remove_file(path);
        }
        let me = std::process::id();
        let start = identity(me)
            .map(|i| i.start)
            .ok_or("cannot read this process's start time from /proc")?;
        let text = format!("{me}\n{START}{start}\n{MONITOR}{monitor}\n");
        lock.set_len(0)
            .and_then(|()| lock.write_all_at(text.as_bytes(), 0))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self {
            dir: Some(dir),
            _lock: Some(lock),
        })
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

    /// Removes `master.pid` (still locked: a master starting now waits for the lock to go).
    pub(crate) fn remove_master(&self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(MASTER_FILE));
        }
    }
}

/// Refuses a pid directory that users other than its owner can write to (group or other
/// write permission, sticky or not: in a sticky directory another user can still create
/// `master.pid` before the master does).
fn private_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        format!(
            "cannot read the pid directory {} (--pids): {e}",
            dir.display()
        )
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "the pid directory {} (--pids) can be written by other users (mode {mode:04o}): a \
             pid file there would prove nothing, anyone could have put it there; give a \
             directory only its owner can write to (a missing one is created 0700)",
            dir.display()
        ));
    }
    Ok(())
}

fn open_private(path: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    options
        .mode(0o600)
        // Never through a link another user could have planted; never block on a FIFO.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                std::io::Error::other("it is a symbolic link, which cluster2 never writes")
            } else {
                e
            }
        })
}

/// Takes the lock on `master.pid`, creating it if needed.
fn lock_master_file(path: &Path) -> Result<Flock<File>, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot lock {}: {e}", path.display());
    // A `stop` that is checking the file holds a shared lock for an instant: try a few times.
    for _ in 0..50 {
        let file = open_private(path, OpenOptions::new().read(true).write(true).create(true))
            .map_err(|e| cannot(&e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                // A master that was stopping may have removed the file after it was opened
                // here: the lock must be on the file at the path.
                let here = std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()));
                let ours = lock.metadata().map(|m| (m.dev(), m.ino()));
                if matches!((here, ours), (Ok(a), Ok(b)) if a == b) {
                    return Ok(lock);
                }
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                if let Some(pid) = read_pid(path).filter(|&pid| identity(pid).is_some()) {
                    return Err(format!(
                        "another master (pid {pid}) runs with the pid directory {} (--pids)",
                        path.parent().unwrap_or(path).display()
                    ));
                }
            }
            Err((_, e)) => return Err(cannot(&e)),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(cannot(&"another process keeps it locked"))
}

/// Writes through a temporary file and a rename, so a reader never sees half a pid.
fn write_atomically(path: &Path, pid: u32) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = open_private(
        &tmp,
        OpenOptions::new().write(true).create(true).truncate(true),
    )?;
    file.write_all(format!("{pid}\n").as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// The pid on the first line of a pid file.
pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    let text = read_small(path).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// A pid file is a few bytes: reading more would only be a mistake's (or an attack's) cost.
fn read_small(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    open_private(path, OpenOptions::new().read(true))?
        .take(256)
        .read_to_string(&mut text)?;
    Ok(text)
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

/// One process, told apart from a later process that reuses its pid by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    /// Clock ticks after boot.
    pub(crate) start: u64,
    pub(crate) parent: u32,
}

impl Identity {
    /// Whether this very process still runs (and is not a zombie).
    pub(crate) fn alive(&self) -> bool {
        identity(self.pid).is_some_and(|now| now.start == self.start)
    }
}

/// The process `pid` is now, unless there is none (or only a zombie).
pub(crate) fn identity(pid: u32) -> Option<Identity> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the
    // last `)`, at field 3 (the state).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some(Identity {
        pid,
        parent: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Why `stop` will not signal what `master.pid` names.
#[derive(Debug)]
pub(crate) enum NotMaster {
    /// There is no `master.pid`.
    Missing,
    /// No master holds the file: it outlived the master that wrote it. Removed.
    Stale { pid: Option<u32> },
    /// The file cannot be trusted to name this cluster's master; left as it is.
    Refused(String),
}

/// The master `master.pid` names, proven, and the monitor's address the same file gave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Proven {
    pub(crate) process: Identity,
    /// The third line (`monitor=ADDR`); `None` from a master of an older version.
    pub(crate) monitor: Option<SocketAddr>,
}

/// The master `master.pid` names, proven: see [`prove_master`].
pub(crate) fn verify_master(path: &Path) -> Result<Identity, NotMaster> {
    prove_master(path).map(|proven| proven.process)
}

/// The master `master.pid` names, proven: the directory is writable by its owner alone, the
/// file belongs to the user asking (unless root asks), it is locked (a live master holds it),
/// names a process that started when the file says, and belongs to that process's user. The
/// monitor's address comes from the very bytes proven, never from a second read.
pub(crate) fn prove_master(path: &Path) -> Result<Proven, NotMaster> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NotMaster::Missing),
            _ => private_dir(dir).map_err(NotMaster::Refused)?,
        }
    }
    let file = match open_private(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NotMaster::Missing),
        Err(e) => return Err(NotMaster::Refused(format!("cannot open {shown}: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| NotMaster::Refused(format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(NotMaster::Refused(format!("{shown} is not a regular file")));
    }
    let me = nix::unistd::geteuid();
    if !me.is_root() && meta.uid() != me.as_raw() {
        return Err(NotMaster::Refused(format!(
            "{shown} belongs to uid {}, not to uid {me} who runs this command: only a master \
             of one's own user is trusted (run the command as that user)",
            meta.uid()
        )));
    }
    let mut text = String::new();
    let _ = (&file).take(256).read_to_string(&mut text);
    let mut lines = text.lines();
    let pid: Option<u32> = lines.next().and_then(|l| l.trim().parse().ok());
    let start: Option<u64> = lines
        .next()
        .and_then(|l| l.trim().strip_prefix(START))
        .and_then(|s| s.parse().ok());
    let monitor = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(MONITOR))
        .and_then(|a| a.parse().ok());
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(lock) => {
            // Nobody holds it: the master that wrote it is gone. Remove it while it is
            // locked here, so that a master starting now waits and then makes a new one.
            let here = std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()));
            if here.is_ok_and(|h| h == (meta.dev(), meta.ino())) {
                let _ = std::fs::remove_file(path);
            }
            drop(lock);
            return Err(NotMaster::Stale { pid });
        }
        Err((_, Errno::EWOULDBLOCK)) => {}
        Err((_, e)) => return Err(NotMaster::Refused(format!("cannot lock {shown}: {e}"))),
    }
    let (Some(pid), Some(start)) = (pid, start) else {
        return Err(NotMaster::Refused(format!(
            "{shown} is locked but does not name a pid and its start time (a master still \
             starting?); try again"
        )));
    };
    let Some(process) = identity(pid) else {
        return Err(NotMaster::Refused(format!(
            "{shown} is locked but names pid {pid}, which does not run"
        )));
    };
    if process.start != start {
        return Err(NotMaster::Refused(format!(
            "{shown} names pid {pid}, but that process started at another time than the \
             master that wrote the file: it is not this cluster's master"
        )));
    }
    let owner = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.uid());
    if owner.as_ref().ok() != Some(&meta.uid()) {
        return Err(NotMaster::Refused(format!(
            "{shown} belongs to uid {}, but pid {pid} runs as another user: the master writes \
             its own pid file",
            meta.uid()
        )));
    }
    Ok(Proven { process, monitor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_directory_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cluster2-pid-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = |m: u32| {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
            private_dir(&dir)
        };
        assert_eq!(mode(0o700), Ok(()));
        assert_eq!(mode(0o755), Ok(()));
        for open in [0o770, 0o703, 0o1777] {
            let why = mode(open).unwrap_err();
            assert!(why.contains(&format!("(mode {open:04o})")), "{why}");
            assert!(why.contains(&dir.display().to_string()), "{why}");
        }
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn identity_reads_this_process_and_tells_a_reused_pid_apart() {
        let me = identity(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.alive());
        let earlier = Identity {
            start: me.start.saturating_sub(1),
            ..me
        };
        assert!(!earlier.alive(), "another start time is another process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(identity(pid), None);
    }
}
