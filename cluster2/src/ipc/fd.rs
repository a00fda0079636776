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
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The shared application listener: the first one, when the host has several addresses.
pub(crate) const LISTENER_FD: RawFd = 3;
/// The worker's end of its socketpair with the master.
pub(crate) const CHANNEL_FD: RawFd = 4;
/// The application listeners after the first, one per further address of the host: 5, 6, …
/// They come after the channel so that the first two numbers mean what they always have.
const MORE_LISTENERS_FD: RawFd = 5;
/// The most application listeners a worker inherits (one per address of the host).
pub(crate) const MAX_LISTENERS: usize = crate::options::MAX_ADDRESSES;

/// Where a worker finds application listener `index` (from 0).
pub(crate) fn listener_fd(index: usize) -> RawFd {
    debug_assert!(index < MAX_LISTENERS);
    match index {
        0 => LISTENER_FD,
        n => MORE_LISTENERS_FD + (n - 1) as RawFd,
    }
}

/// The inherited numbers claimed so far, one bit each.
static TAKEN: AtomicU32 = AtomicU32::new(0);
const _: () = assert!(MORE_LISTENERS_FD as usize + MAX_LISTENERS <= 32);

/// Claims an inherited socket. Fails if it was claimed already or is not an open socket (the
/// process was not started by a cluster2 master).
pub(crate) fn take_inherited_socket(fd: RawFd) -> io::Result<OwnedFd> {
    let inherited = fd == CHANNEL_FD || (0..MAX_LISTENERS).any(|i| listener_fd(i) == fd);
    if !inherited {
        return Err(io::Error::other(format!("fd {fd} is not inherited")));
    }
    let bit = 1u32 << fd;
    if TAKEN.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        return Err(io::Error::other(format!(
            "inherited fd {fd} was claimed twice"
        )));
    }
    // SAFETY: `fd` is one of the numbers the master maps into its children before exec, and the
    // bit above makes this the only place that ever borrows or owns it. The borrow only
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
    // fd at this number, and the bit above guarantees a single owner.
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
