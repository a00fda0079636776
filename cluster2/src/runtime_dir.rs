//! The cluster's private runtime directory: `cluster2-<pid of the master>` under
//! `$XDG_RUNTIME_DIR` (when it is set to this user's directory) or else the temp dir, mode
//! 0700, where the cache socket lives; and the socket itself, created 0600.
//!
//! Private, because anyone who can reach the socket can read and write the cache: the
//! directory's owner and mode are the access control. So an existing directory of that name
//! is refused unless it is this user's own, a real directory (not a symbolic link) and closed
//! to others: someone else could have made it in a shared temp dir to receive the socket. The
//! socket is narrowed to 0600 between `bind` and `listen`, before anyone can connect.
//!
//! The master creates its directory and removes it when it stops; a plain process that enables
//! the cache gets one of its own. A process killed outright (SIGKILL, a crash) leaves its
//! directory behind, so creating one first sweeps the stale ones: `cluster2-<pid>` directories
//! of this user whose pid is gone and whose socket answers no one. A directory whose pid is
//! alive is left alone, whatever that process is now (pid reuse makes that a guess).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

const PREFIX: &str = "cluster2-";

/// Creates this process's private directory (after sweeping stale ones beside it).
pub(crate) fn create() -> Result<PathBuf> {
    let base = base();
    let swept = sweep(&base, std::process::id());
    if swept > 0 {
        tracing::info!(
            "removed {swept} private director{} left under {} by cluster2 processes that are gone",
            if swept == 1 { "y" } else { "ies" },
            base.display()
        );
    }
    let dir = base.join(format!("{PREFIX}{}", std::process::id()));
    ensure_private(&dir).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot create the private directory {}", dir.display()),
        )
        .with_source(e)
    })?;
    Ok(dir)
}

/// `$XDG_RUNTIME_DIR` when it names this user's directory by an absolute path (the session's
/// private, tmpfs-backed place for sockets), else the temp dir.
fn base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| {
            p.is_absolute() && std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid())
        })
        .unwrap_or_else(std::env::temp_dir)
}

fn uid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

/// Creates `dir` with mode 0700, or checks that an existing one is this user's real directory
/// and closed to others.
fn ensure_private(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            check_private(dir, &std::fs::symlink_metadata(dir)?, uid())
        }
        Err(e) => Err(e),
    }
}

fn check_private(dir: &Path, meta: &std::fs::Metadata, uid: u32) -> io::Result<()> {
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} already exists and {why}; the cache socket needs a private directory of \
                 this user's",
                dir.display()
            ),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link".to_owned());
    }
    if !meta.is_dir() {
        return refuse("is not a directory".to_owned());
    }
    if meta.uid() != uid {
        return refuse(format!(
            "belongs to uid {}, not to this user (uid {uid})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return refuse(format!("is open to others (mode {mode:o})"));
    }
    Ok(())
}

/// Listens on a Unix socket at `path` in a private directory, replacing a stale socket file.
/// The socket file is 0600 before the socket listens, so no one else can ever connect.
pub(crate) fn listen(path: &Path) -> io::Result<UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    if let Some(dir) = path.parent() {
        ensure_private(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // Until `listen`, a connection is refused: the mode is set before anyone can get in.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    socket.listen(nix::libc::SOMAXCONN)?;
    Ok(socket.into())
}

/// Removes the stale private directories under `base` (see the module docs); returns how
/// many. Errors are ignored: another process may be sweeping the same directories.
fn sweep(base: &Path, own_pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if pid == own_pid || !is_stale(&dir, pid) {
            continue;
        }
        // `remove_dir_all` does not follow symbolic links inside the directory.
        if std::fs::remove_dir_all(&dir).is_ok() {
            swept += 1;
        }
    }
    swept
}

/// Whether `dir` (named after `pid`) is a leftover: this user's real directory, its process
/// gone, and no one listening on its socket.
fn is_stale(dir: &Path, pid: u32) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    if !meta.is_dir() || meta.uid() != uid() || process_exists(pid) {
        return false;
    }
    // A pid from another pid namespace sharing this directory could look gone from here: a
    // socket that still answers says otherwise.
    UnixStream::connect(dir.join("cache.sock")).is_err()
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks without signalling; EPERM means it exists as another user's.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Base(PathBuf);

    impl Base {
        fn new(name: &str) -> Self {
            let base =
                std::env::temp_dir().join(format!("cluster2-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            std::fs::create_dir(&base).unwrap();
            Self(base)
        }
    }

    impl Drop for Base {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_new_directory_is_private_and_only_a_private_one_of_ours_is_accepted() {
        let base = Base::new("private");
        let fresh = base.0.join("fresh");
        ensure_private(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        ensure_private(&fresh).unwrap();

        let open = base.0.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private(&open).unwrap_err().to_string();
        assert!(err.contains("is open to others (mode 755)"), "{err}");

        // A symbolic link to a private directory: someone else's way in.
        let link = base.0.join("link");
        symlink(&fresh, &link).unwrap();
        let err = ensure_private(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");

        // Another user's 0700 directory: only root could make one here, so the check itself
        // is given another uid.
        let meta = std::fs::symlink_metadata(&fresh).unwrap();
        let err = check_private(&fresh, &meta, meta.uid() + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to uid"), "{err}");
    }

    #[test]
    fn the_socket_is_created_private() {
        let base = Base::new("socket");
        let dir = base.0.join("run");
        let socket = dir.join("cache.sock");
        let listener = listen(&socket).unwrap();
        assert_eq!(mode(&socket), 0o600);
        assert_eq!(mode(&dir), 0o700);
        UnixStream::connect(&socket).unwrap();
        drop(listener);
        // A stale socket file is replaced.
        let _again = listen(&socket).unwrap();
        UnixStream::connect(&socket).unwrap();
    }

    #[test]
    fn only_stale_directories_of_ours_are_swept() {
        let base = Base::new("sweep");
        let dir = |pid: u32| base.0.join(format!("{PREFIX}{pid}"));
        // A pid that is gone: one of a child that was waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        std::fs::create_dir(dir(gone)).unwrap();
        std::fs::write(dir(gone).join("leftover"), b"x").unwrap();
        // A live process that is not a cluster: left alone (the pid may have been reused).
        let alive = std::process::id();
        std::fs::create_dir(dir(alive)).unwrap();
        // A gone pid whose socket still answers (another pid namespace): left alone.
        let mut other = std::process::Command::new("true").spawn().unwrap();
        let answering = other.id();
        other.wait().unwrap();
        std::fs::create_dir(dir(answering)).unwrap();
        let _listener = UnixListener::bind(dir(answering).join("cache.sock")).unwrap();
        // A symbolic link named like a stale directory: not followed, not removed.
        let target = base.0.join("target");
        std::fs::create_dir(&target).unwrap();
        let linked = 4_194_000;
        symlink(&target, dir(linked)).unwrap();
        // Not ours by name.
        std::fs::create_dir(base.0.join("cluster2-test-1")).unwrap();

        assert_eq!(sweep(&base.0, 0), 1);
        assert!(!dir(gone).exists());
        assert!(dir(alive).exists());
        assert!(dir(answering).exists());
        assert!(dir(linked).is_symlink() && target.exists());
        assert!(base.0.join("cluster2-test-1").exists());
    }
}
