//! File descriptors that need `unsafe`: those a child inherits from the master at fixed
//! numbers, a socket registered with tokio's reactor for one readiness kind, the counters
//! the master and its workers share in memory ([`SharedCounters`]), and the master's own
//! descriptors for starting and reaping children (a duplicate above the fixed numbers, a pidfd).
//!
//! The master maps the inherited ones in the child with `posix_spawn` file actions (see
//! `master::spawn`); the child claims each exactly once here. This is where cluster2 needs
//! `unsafe` (`master::spawn` may have it too, and since it starts children with nix's safe
//! `posix_spawn`, has none).
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
/// The connection-balance table ([`SharedCounters`]), for workers.
pub(crate) const BALANCE_FD: RawFd = 5;
/// The application listeners after the first, one per further address of the host: 6, 7, …
/// They come after the channel and the balance table so that those numbers never move.
const MORE_LISTENERS_FD: RawFd = 6;
/// The most application listeners a worker inherits (one per address of the host).
pub(crate) const MAX_LISTENERS: usize = crate::options::MAX_ADDRESSES;

/// Where a worker finds application listener `index` (from 0).
pub(crate) const fn listener_fd(index: usize) -> RawFd {
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
    take_inherited(fd, SFlag::S_IFSOCK, "a socket")
}

/// Claims an inherited fd of file type `kind` (`what`, for messages).
fn take_inherited(fd: RawFd, kind: SFlag, what: &str) -> io::Result<OwnedFd> {
    let inherited =
        fd == CHANNEL_FD || fd == BALANCE_FD || (0..MAX_LISTENERS).any(|i| listener_fd(i) == fd);
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
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != kind {
        return Err(io::Error::other(format!("inherited fd {fd} is not {what}")));
    }
    // SAFETY: the fd is open (fstat succeeded), is of the kind expected, and nothing else in
    // this process owns it: std opens every fd with O_CLOEXEC, so only the master's explicit
    // mapping put an fd at this number, and the bit above guarantees a single owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // The mapping cleared close-on-exec so the fd survived our exec; restore it, or programs
    // the application starts would keep the shared port and the channel open after we exit.
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| io::Error::other(format!("inherited fd {fd}: {e}")))?;
    Ok(owned)
}

/// A close-on-exec duplicate of `fd` numbered `floor` or above. The master hands its children
/// fds at fixed low numbers; sources above those numbers can never be overwritten by an
/// earlier mapping of the same spawn.
pub(crate) fn dup_above(fd: BorrowedFd<'_>, floor: RawFd) -> io::Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(floor))?;
    // SAFETY: fcntl(2) just created this descriptor, and nothing else in the process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A pidfd for the child `pid` (Linux 5.3 and later), registered with the current runtime's
/// reactor: readable once the child has exited. The pid must be a child not yet reaped, so
/// that it cannot name a recycled process.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<AsyncFd<OwnedFd>> {
    let pid = nix::libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    let flags: nix::libc::c_uint = 0;
    // SAFETY: pidfd_open(2) takes two integers and returns a new descriptor or -1 with errno
    // set; no memory is shared with the kernel.
    let raw = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, flags) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = RawFd::try_from(raw).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just created this descriptor (close-on-exec, as every pidfd), and
    // nothing else in the process owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the `OwnedFd` keeps the descriptor open, and the same one, until it is dropped,
    // which only the `AsyncFd` can do once it owns it.
    unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
pub(crate) const ACTIVATED_FD: RawFd = 3;

/// Whether the activated descriptors were claimed.
static ACTIVATED_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Claims the `count` sockets a service manager passed to this process (socket activation,
/// `LISTEN_FDS`), from fd 3 on, once. Each must be an open socket; close-on-exec is set on
/// each, so that only the explicit mappings hand them to workers.
pub(crate) fn take_activated(count: usize) -> io::Result<Vec<OwnedFd>> {
    if ACTIVATED_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other("the activated sockets were claimed twice"));
    }
    let mut taken = Vec::with_capacity(count);
    for i in 0..count {
        let fd = ACTIVATED_FD + i as RawFd;
        // SAFETY: the borrow only lives for the `fstat` call, which fails cleanly (EBADF) if
        // nothing is open at that number.
        let stat = fstat(unsafe { BorrowedFd::borrow_raw(fd) })
            .map_err(|e| io::Error::other(format!("fd {fd} is not open: {e}")))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
            return Err(io::Error::other(format!("fd {fd} is not a socket")));
        }
        // SAFETY: the service manager put this socket at this number for this process
        // (LISTEN_PID is ours, checked by the caller) and std opens every fd of its own with
        // O_CLOEXEC above the lowest free number, which these occupied since exec; the flag
        // above makes this the only place that ever owns them.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| io::Error::other(format!("fd {fd}: {e}")))?;
        taken.push(owned);
    }
    Ok(taken)
}

/// A socket type that owns its file descriptor: it stays open, and is the same one, until the
/// value is dropped.
pub(crate) trait OwnedSocket: std::os::fd::AsRawFd {}
impl OwnedSocket for UnixStream {}
impl OwnedSocket for std::net::TcpListener {}
impl OwnedSocket for crate::listen::Listener {}

/// Registers `socket` with the current runtime's reactor for `interest` alone (tokio's own
/// socket types register for both kinds; see `ipc::frame_socket` for why that costs; and a
/// listener registered here can wait for a pending connection without accepting it).
pub(crate) fn register<S: OwnedSocket>(socket: S, interest: Interest) -> io::Result<AsyncFd<S>> {
    // SAFETY: an `OwnedSocket` owns its file descriptor: it stays open, and is the same one,
    // until the socket is dropped, which only the `AsyncFd` can do once it owns the socket.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| e.into_parts().1)
}

/// Counters in memory shared by the master and its workers: a memfd the master creates, sizes
/// and seals, and every worker maps. Each counter is an `AtomicU32`, written by the process
/// that owns it and read by all.
///
/// Sealed against shrinking and growing, the mapping can never lose its pages under a reader
/// (no SIGBUS); shared memory is only ever touched through atomics, so a process that dies
/// mid-write leaves a whole value behind, never a torn one.
#[derive(Debug)]
pub(crate) struct SharedCounters {
    base: std::ptr::NonNull<std::sync::atomic::AtomicU32>,
    len: usize,
}

// SAFETY: the mapping is only reached through `&[AtomicU32]`, which is `Sync`; moving the owner
// to another thread moves nothing but the pointer, and the mapping lives until `drop`.
unsafe impl Send for SharedCounters {}
// SAFETY: as above: every access is an atomic operation on a shared reference.
unsafe impl Sync for SharedCounters {}

/// The largest table accepted from an inherited fd: far more than any cluster needs.
const MAX_SHARED_COUNTERS: usize = 1 << 16;

impl SharedCounters {
    /// Creates a table of `len` counters, all zero; returns it and the fd to hand to children.
    pub(crate) fn create(len: usize) -> io::Result<(Self, OwnedFd)> {
        use nix::fcntl::SealFlag;
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let len = len.clamp(1, MAX_SHARED_COUNTERS);
        let fd = memfd_create(
            c"cluster2-balance",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let bytes = len * std::mem::size_of::<u32>();
        nix::unistd::ftruncate(&fd, bytes as i64)?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        Ok((Self::map(&fd, len)?, fd))
    }

    /// Maps the table the master handed this worker at [`BALANCE_FD`].
    pub(crate) fn inherit() -> io::Result<Self> {
        let fd = take_inherited(BALANCE_FD, SFlag::S_IFREG, "a shared-memory file")?;
        Self::map_fd(&fd).map_err(|e| io::Error::other(format!("inherited fd {BALANCE_FD}: {e}")))
    }

    /// Closes the table the master handed this worker at [`BALANCE_FD`] without mapping it
    /// (the worker got no seat at it), so that programs the application starts do not inherit
    /// it.
    pub(crate) fn release_inherited() {
        drop(take_inherited(
            BALANCE_FD,
            SFlag::S_IFREG,
            "a shared-memory file",
        ));
    }

    /// Maps the table behind `fd`, after checking that it is one: sealed against shrinking, a
    /// whole number of counters, not empty, not huge.
    pub(crate) fn map_fd(fd: &OwnedFd) -> io::Result<Self> {
        let seals = fcntl(fd, FcntlArg::F_GET_SEALS)?;
        let sealed = nix::fcntl::SealFlag::from_bits_truncate(seals);
        if !sealed.contains(nix::fcntl::SealFlag::F_SEAL_SHRINK) {
            return Err(io::Error::other("not a sealed table"));
        }
        let bytes = usize::try_from(fstat(fd)?.st_size).unwrap_or(0);
        let len = bytes / std::mem::size_of::<u32>();
        if len == 0 || len > MAX_SHARED_COUNTERS || bytes % std::mem::size_of::<u32>() != 0 {
            return Err(io::Error::other(format!(
                "a size of {bytes} bytes is not a table"
            )));
        }
        Self::map(fd, len)
    }

    fn map(fd: &OwnedFd, len: usize) -> io::Result<Self> {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap};
        let bytes = std::num::NonZeroUsize::new(len * std::mem::size_of::<u32>())
            .ok_or_else(|| io::Error::other("an empty table"))?;
        // SAFETY: a fresh shared mapping of a sealed memfd of exactly `bytes` bytes (created so,
        // or checked above): nothing else in this process aliases it, it cannot shrink under us,
        // and it stays mapped (the fd may close) until `drop` unmaps it.
        let base = unsafe {
            mmap(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        Ok(Self {
            base: base.cast(),
            len,
        })
    }

    /// The counters.
    pub(crate) fn counters(&self) -> &[std::sync::atomic::AtomicU32] {
        // SAFETY: `base` points at `len` u32s of a live, page-aligned mapping (so aligned for
        // `AtomicU32`, which has the layout of `u32`); other processes write it too, which is
        // sound because every access, here and there, is atomic.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        // SAFETY: `base` and the size are those `mmap` returned, and no reference from
        // `counters` outlives `self`.
        let _ = unsafe {
            nix::sys::mman::munmap(self.base.cast(), self.len * std::mem::size_of::<u32>())
        };
    }
}
