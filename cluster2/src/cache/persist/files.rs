//! The safety of the persistence files: the directory must be this user's real directory and
//! not writable by everyone (created 0700); a log is opened without following a symbolic link
//! (`O_NOFOLLOW`) or waiting on a FIFO, must be a regular file of this user, and is narrowed
//! to 0600. What fails a check is left untouched, with an error that names it. And the
//! quarantine: a damaged log is kept beside it, exactly as found.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) fn refuse(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

fn uid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

/// Checks the persistence directory (creating it, private, when `create` and missing):
/// this user's, a real directory, not writable by everyone. `Ok(false)`: it does not exist.
pub(super) fn check_dir(dir: &Path, create: bool) -> io::Result<bool> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            std::fs::symlink_metadata(dir)?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    check_dir_meta(dir, &meta, uid())?;
    Ok(true)
}

pub(super) fn check_dir_meta(dir: &Path, meta: &std::fs::Metadata, uid: u32) -> io::Result<()> {
    if meta.file_type().is_symlink() {
        return Err(refuse(
            dir,
            "the cache persistence directory is a symbolic link, which cluster2 does not \
             follow; set cache.persist_path to the directory itself",
        ));
    }
    if !meta.is_dir() {
        return Err(refuse(
            dir,
            "cache.persist_path names something that is not a directory",
        ));
    }
    if meta.uid() != uid {
        return Err(refuse(
            dir,
            format!(
                "the cache persistence directory belongs to uid {}, not to this user (uid \
                 {uid}); its logs could be read or replaced by their owner",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o002 != 0 {
        return Err(refuse(
            dir,
            format!(
                "the cache persistence directory is writable by every user (mode {:o}), who \
                 could plant logs in it; use a directory of this user's",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Opens a log without following a symbolic link or waiting on a FIFO, and checks that it is
/// a regular file of this user, narrowing its mode to 0600.
pub(super) fn open_file(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                refuse(
                    path,
                    "a symbolic link where a cache log should be; left as it is",
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse(
            path,
            "not a regular file where a cache log should be; left as it is",
        ));
    }
    if meta.uid() != uid() {
        return Err(refuse(
            path,
            format!(
                "a cache log that belongs to uid {}, not to this user; left as it is",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Keeps the damaged file as `<namespace>.log.damaged-<unix seconds>` beside the log: a hard
/// link, so the bytes are exactly what was found, and the log can then be replaced.
pub(super) fn quarantine(path: &Path) -> io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let copy = path.with_file_name(format!("{name}.damaged-{secs}{suffix}"));
        match std::fs::hard_link(path, &copy) {
            Ok(()) => return Ok(copy),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "too many damaged copies of this log already",
    ))
}
