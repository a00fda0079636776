//! Where the application listens, and accepting there. The master binds a listening socket per
//! address of its host ([`bind`]), or one Unix socket (`unix.rs`, `bind = unix:PATH`), or takes
//! the sockets the service manager passed (`activation.rs`); whoever serves them, a worker or
//! the monitor, accepts on all of them at once ([`Listeners`]), TCP and Unix alike ([`Stream`]).
//!
//! A host written as an address is one socket, bound as before. A host name may stand for
//! several addresses (`localhost`: 127.0.0.1 and ::1); the port is then the same on each, and
//! an address this machine does not have (::1 without IPv6) is left out rather than failing the
//! start, as long as one is bound.

pub(crate) mod activation;
pub(crate) mod unix;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// A listening socket of the application: TCP, or a Unix socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// A listening socket inherited or passed as a descriptor: TCP or Unix, by its family.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let socket = Socket::from(fd);
        let family = socket.local_addr()?;
        if family.is_unix() {
            Ok(Self::Unix(std::os::unix::net::UnixListener::from(
                OwnedFd::from(socket),
            )))
        } else if family.is_ipv4() || family.is_ipv6() {
            Ok(Self::Tcp(socket.into()))
        } else {
            Err(io::Error::other("neither a TCP nor a Unix socket"))
        }
    }

    /// Its address as a connection's `ConnInfo::local` reports it: for a Unix socket, which
    /// has none on the network, the unspecified address and port 0.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Tcp(listener) => listener.local_addr(),
            Self::Unix(_) => Ok(NO_ADDRESS),
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Self::Tcp(listener) => listener.set_nonblocking(on),
            Self::Unix(listener) => listener.set_nonblocking(on),
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<OwnedFd> {
        match self {
            Self::Tcp(listener) => listener.try_clone().map(OwnedFd::from),
            Self::Unix(listener) => listener.try_clone().map(OwnedFd::from),
        }
    }

    fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        match self {
            Self::Tcp(listener) => {
                let (stream, remote) = listener.accept()?;
                // Accepted sockets do not inherit the listener's non-blocking mode.
                stream.set_nonblocking(true)?;
                Ok((Stream::Tcp(TcpStream::from_std(stream)?), remote))
            }
            Self::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                stream.set_nonblocking(true)?;
                Ok((Stream::Unix(UnixStream::from_std(stream)?), NO_ADDRESS))
            }
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Tcp(listener) => listener.as_raw_fd(),
            Self::Unix(listener) => listener.as_raw_fd(),
        }
    }
}

/// What a connection over a Unix socket has for an address, either end: none on the network.
pub(crate) const NO_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// An accepted connection: TCP or over a Unix socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Whether it came over a Unix socket.
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, Self::Unix(_))
    }

    /// Small answers leave at once (TCP only: a Unix socket has no Nagle).
    pub(crate) fn set_nodelay(&self) {
        if let Self::Tcp(stream) = self {
            let _ = stream.set_nodelay(true);
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(stream) => stream.is_write_vectored(),
            Self::Unix(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// How often binding every address on one free port is tried, when port 0 asks for any free
/// port and another process takes the chosen port on a later address in between.
const FREE_PORT_TRIES: usize = 8;

/// What [`bind`] bound.
#[derive(Debug)]
pub(crate) struct Bound {
    /// One socket per address, in the order of the addresses.
    pub(crate) listeners: Vec<std::net::TcpListener>,
    /// The addresses left out, each with why.
    pub(crate) skipped: Vec<(SocketAddr, io::Error)>,
}

/// Binds `port` (0: any free port, the same on every address) on each of `addrs` and listens
/// with `backlog`. With `optional` (the addresses of a host name), an address the machine does
/// not have is skipped while another can be bound; any other failure is an error naming the
/// address.
pub(crate) fn bind(
    addrs: &[SocketAddr],
    port: u16,
    backlog: i32,
    optional: bool,
) -> io::Result<Bound> {
    let mut tries = 0;
    loop {
        tries += 1;
        match bind_once(addrs, port, backlog, optional) {
            // Another process took the port picked on the first address.
            Err(e)
                if port == 0 && tries < FREE_PORT_TRIES && e.kind() == io::ErrorKind::AddrInUse => {
            }
            other => return other,
        }
    }
}

fn bind_once(addrs: &[SocketAddr], port: u16, backlog: i32, optional: bool) -> io::Result<Bound> {
    let several = addrs.len() > 1;
    let mut bound = Bound {
        listeners: Vec::new(),
        skipped: Vec::new(),
    };
    let mut port = port;
    for (i, addr) in addrs.iter().enumerate() {
        let addr = SocketAddr::new(addr.ip(), port);
        match bind_one(addr, backlog, several) {
            Ok(listener) => {
                // Port 0: the first address picks the port, the others take the same.
                port = listener.local_addr()?.port();
                bound.listeners.push(listener);
            }
            Err(e) if optional && not_on_this_machine(&e) => {
                let last = i + 1 == addrs.len();
                if last && bound.listeners.is_empty() {
                    return Err(at(addr, e));
                }
                bound.skipped.push((addr, e));
            }
            Err(e) => return Err(at(addr, e)),
        }
    }
    Ok(bound)
}

fn bind_one(addr: SocketAddr, backlog: i32, several: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting the master must not wait for TIME_WAIT connections of the previous one.
    socket.set_reuse_address(true)?;
    // Beside an IPv4 address, `::` must not claim the IPv4 side of the port too. Alone it keeps
    // the system's default (on Linux, both).
    if several && addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// The address, or its whole family, does not exist here: ::1 on a machine without IPv6.
fn not_on_this_machine(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT)
}

fn at(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", addr.ip()))
}

/// The listening sockets of one port, accepted on together.
///
/// Each is registered with the runtime for readability alone (`ipc::fd::register`), so that a
/// worker can see a connection pending without taking it: taking turns with the other workers
/// (`crate::balance`) needs exactly that. [`Listeners::accept_any`] is the plain accept.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// Each with its own address, which a connection's `ConnInfo::local` reports.
    all: Vec<(AsyncFd<Listener>, SocketAddr)>,
    /// Where the next poll starts, so that a busy address cannot keep the others waiting.
    next: usize,
}

impl Listeners {
    /// Takes sockets already set non-blocking, at least one, inside a runtime.
    pub(crate) fn new(sockets: Vec<Listener>) -> io::Result<Self> {
        let all = sockets
            .into_iter()
            .map(|socket| {
                let addr = socket.local_addr()?;
                Ok((crate::ipc::fd::register(socket, Interest::READABLE)?, addr))
            })
            .collect::<io::Result<Vec<_>>>()?;
        if all.is_empty() {
            return Err(io::Error::other("no listening socket"));
        }
        Ok(Self { all, next: 0 })
    }

    /// One socket already in the runtime: a worker's private warm-up listener.
    pub(crate) fn single(listener: TcpListener) -> io::Result<Self> {
        Self::new(vec![Listener::Tcp(listener.into_std()?)])
    }

    /// The address of the first socket: the port's address where one is shown.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.all[0].1
    }

    /// The next connection on any of the sockets: the stream, the client's address, and the
    /// address of the socket it arrived on.
    pub(crate) async fn accept_any(&mut self) -> io::Result<(Stream, SocketAddr, SocketAddr)> {
        loop {
            let ready = self.pending().await?;
            if let Some(accepted) = self.try_accept(ready)? {
                return Ok(accepted);
            }
        }
    }

    /// Waits until one of the sockets has a connection pending, without taking it; returns
    /// which. The connection may still go to another process first: [`try_accept`] says so.
    ///
    /// [`try_accept`]: Listeners::try_accept
    pub(crate) fn pending(&mut self) -> impl Future<Output = io::Result<usize>> + '_ {
        std::future::poll_fn(|cx| self.poll_pending(cx))
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let count = self.all.len();
        for step in 0..count {
            let i = (self.next + step) % count;
            // A socket not ready registers this task to be woken when it has a connection.
            match self.all[i].0.poll_read_ready(cx) {
                // The readiness stays set until an accept finds nothing.
                Poll::Ready(Ok(_guard)) => {
                    self.next = (i + 1) % count;
                    return Poll::Ready(Ok(i));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// Takes the connection pending on socket `index`, if another process did not take it
    /// first (`None`: the socket's readiness is cleared, so the next wait is a real one).
    pub(crate) fn try_accept(
        &self,
        index: usize,
    ) -> io::Result<Option<(Stream, SocketAddr, SocketAddr)>> {
        let (listener, local) = &self.all[index];
        match listener.try_io(Interest::READABLE, |socket| socket.accept()) {
            Ok((stream, remote)) => Ok(Some((stream, remote, *local))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The monitor is served by `axum::serve`, which takes any listener of this shape.
impl axum::serve::Listener for Listeners {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.accept_any().await {
                Ok((stream, remote, _)) => return (stream, remote),
                // As axum's own listener does: an error of one connection is skipped, any
                // other (out of file descriptors) waits a moment instead of spinning.
                Err(e) if crate::conns::stall::is_per_connection(&e) => {}
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Listeners::local_addr(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn loopbacks() -> Vec<SocketAddr> {
        vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
        ]
    }

    fn has_ipv6_loopback() -> bool {
        std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
    }

    #[test]
    fn every_address_gets_the_same_free_port() {
        let bound = bind(&loopbacks(), 0, 16, true).unwrap();
        let addrs: Vec<SocketAddr> = bound
            .listeners
            .iter()
            .map(|l| l.local_addr().unwrap())
            .collect();
        if has_ipv6_loopback() {
            assert_eq!(addrs.len(), 2, "{addrs:?}");
            assert_eq!(addrs[0].port(), addrs[1].port());
            assert!(bound.skipped.is_empty());
        } else {
            assert_eq!(addrs.len(), 1, "{addrs:?}");
            assert_eq!(bound.skipped.len(), 1);
        }
        assert_eq!(addrs[0].ip(), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn a_busy_port_is_an_error_naming_the_address() {
        let busy = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        let err = bind(&loopbacks(), port, 16, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().starts_with("127.0.0.1: "), "{err}");
    }

    #[test]
    fn an_address_the_machine_lacks_fails_unless_optional() {
        // TEST-NET-1 (RFC 5737) is on no interface here.
        let absent = SocketAddr::from(([192, 0, 2, 1], 0));
        let err = bind(&[absent], 0, 16, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        let bound = bind(&[absent, loopbacks()[0]], 0, 16, true).unwrap();
        assert_eq!(bound.listeners.len(), 1);
        assert_eq!(bound.skipped[0].0.ip(), absent.ip());
        // Optional, but nothing else to bind: still an error.
        assert!(bind(&[absent], 0, 16, true).is_err());
    }
}
