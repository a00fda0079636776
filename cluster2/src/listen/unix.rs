//! The application on a Unix socket (`bind = unix:PATH`): binding it with its permissions,
//! replacing the socket file a killed run left, and removing it at stop.
//!
//! A file already at the path is replaced only when it is a socket that nothing answers on
//! (a connection is refused): a live server keeps its socket, and a regular file or a
//! directory someone put there is never deleted.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// The socket file this master created; [`SocketFile::remove`] deletes it at stop, if it is
/// still the same file.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// Device, inode and change time: another socket at the same path later is not ours,
    /// even on an inode number the system reused.
    id: (u64, u64, i64, i64),
}

impl SocketFile {
    /// Removes the socket file, unless another has taken its place since.
    pub(crate) fn remove(&self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|meta| identity(&meta) == self.id);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("cannot remove the socket {}: {e}", self.path.display());
            }
        }
    }
}

/// Binds a listening Unix socket at `path` with permissions `mode`, replacing a stale socket
/// file. Errors name the path.
pub(crate) fn bind(path: &Path, mode: u32, backlog: i32) -> io::Result<(UnixListener, SocketFile)> {
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    remove_stale(path).map_err(at)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(at)?;
    socket.bind(&SockAddr::unix(path)?).map_err(at)?;
    // The file exists from bind on, with the permissions the umask leaves; nobody can connect
    // before listen, so setting them in between leaves no window.
    let chmod = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    let created = std::fs::symlink_metadata(path).map(|file| SocketFile {
        path: path.to_owned(),
        id: identity(&file),
    });
    let created = match (chmod, created) {
        (Ok(()), Ok(created)) => created,
        (Err(e), _) | (_, Err(e)) => {
            let _ = std::fs::remove_file(path);
            return Err(at(e));
        }
    };
    if let Err(e) = socket.listen(backlog) {
        created.remove();
        return Err(at(e));
    }
    Ok((
        UnixListener::from(std::os::fd::OwnedFd::from(socket)),
        created,
    ))
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

/// Makes way for a new socket at `path`: nothing there, or a socket nobody listens on (left by
/// a run that was killed), which is removed. Anything else is an error saying what is there.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a socket: remove it or choose another path",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is serving on this socket",
        )),
        // Nobody listens: left behind by a run that did not stop cleanly.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("{}: replacing a stale socket", path.display());
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cluster2-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_kept() {
        let dir = temp("stale");
        let path = dir.join("app.sock");
        let (first, file) = bind(&path, 0o600, 8).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Live: refused, and the file stays.
        let e = bind(&path, 0o600, 8).unwrap_err();
        assert!(e.to_string().contains("another process"), "{e}");
        // Stale: the listener is gone, the file is not.
        drop(first);
        let (_second, file2) = bind(&path, 0o660, 8).unwrap();
        // The first run's removal must not take the second's socket.
        file.remove();
        assert!(path.exists());
        file2.remove();
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = temp("file");
        let path = dir.join("app.sock");
        std::fs::write(&path, "keep me").unwrap();
        let e = bind(&path, 0o660, 8).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
