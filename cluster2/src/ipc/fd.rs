//! File descriptors that need `unsafe`: those a child inherits from the master at fixed
//! numbers, and a socket registered with tokio's reactor for one readiness kind.
//!
//! The master maps the inherited ones in the child with `command-fds` (see `master::spawn`);
//! the child claims each exactly once here. This is one of the two places where cluster2 needs
//! `unsafe`; the other is `master::spawn`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The shared application listener.
pub(crate) const LISTENER_FD: RawFd = 3;
/// The worker's end of its socketpair with the master.
pub(crate) const CHANNEL_FD: RawFd = 4;

static LISTENER_TAKEN: AtomicBool = AtomicBool::new(false);
static CHANNEL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Claims an inherited socket. Fails if it was claimed already or is not an open socket (the
/// process was not started by a cluster2 master).
pub(crate) fn take_inherited_socket(fd: RawFd) -> io::Result<OwnedFd> {
    let taken = match fd {
        LISTENER_FD => &LISTENER_TAKEN,
        CHANNEL_FD => &CHANNEL_TAKEN,
        _ => return Err(io::Error::other(format!("fd {fd} is not inherited"))),
    };
    if taken.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other(format!(
            "inherited fd {fd} was claimed twice"
        )));
    }
    // SAFETY: `fd` is one of the two numbers the master maps into every worker before exec,
    // and the flag above makes this the only place that ever borrows or owns it. The borrow only
    // lives for the `fstat` call, which fails cleanly (EBADF) if nothing is open at that number.
    let stat = fstat(unsafe { BorrowedFd::borrow_raw(fd) })
        .map_err(|e| io::Error::other(format!("inherited fd {fd} is not open: {e}")))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::other(format!(
            "inherited fd {fd} is not a socket"
        )));
    }
    // SAFETY: the fd is open (fstat succeeded), is a socket, and nothing else in this process
    // owns it: std opens every fd with O_CLOEXEC, so only the master's explicit mapping put an
    // fd at this number, and the flag above guarantees a single owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // The mapping cleared close-on-exec so the fd survived our exec; restore it, or programs
    // the application starts would keep the shared port and the channel open after we exit.
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| io::Error::other(format!("inherited fd {fd}: {e}")))?;
    Ok(owned)
}

/// Registers `socket` with the current runtime's reactor for `interest` alone (tokio's own
/// socket types register for both kinds; see `ipc::frame_socket` for why that costs).
pub(crate) fn register(socket: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: a `UnixStream` owns its file descriptor: it stays open, and is the same one,
    // until the stream is dropped, which only the `AsyncFd` can do once it owns the stream.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| e.into_parts().1)
}
