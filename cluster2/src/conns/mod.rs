//! The connections of one server, held to account: the application port's (`worker/serve.rs`)
//! and the monitor's (`monitor/server.rs`) alike.
//!
//! - A connection with no request in flight, a new one waiting for its first request head or a
//!   kept-alive one waiting for its next, is closed once it has waited `header_timeout`: a
//!   client that never sends a byte, one that sends its head a byte at a time, an HTTP/2
//!   connection left open and unused. A request is in flight from its head until its answer's
//!   body is dropped, so long answers (server-sent events, downloads) are never cut.
//! - At most `max` connections are open. At the cap the connections idle the longest are closed
//!   to make room for the new one, so that a flood of silent connections cannot keep real
//!   clients out; when every open connection has a request in flight, the new one is closed at
//!   once, and the process keeps its descriptors for what it is doing. As in nginx, only a
//!   connection the server has already read from and found no request on can be closed so:
//!   not one accepted a moment ago whose request is waiting to be read.
//!
//! Beside it: the process's open-files limit, raised at start, and what it leaves for
//! connections (`fds.rs`); accept failures and refusals, logged once per burst and reported
//! while they last (`stall.rs`).
//!
//! The request path pays for this with an `Arc` clone and a few relaxed atomic updates per
//! request (`Conn::request` and the drop of `InFlight`); the rest happens once per connection,
//! or on the sweeper's tick, which also advances the coarse clock idle times are read from.

pub(crate) mod fds; // the open-files limit: raised at start, and what it leaves for connections
pub(crate) mod stall; // accept failures and refusals: logged once per burst, reported

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

/// How many idle connections one admission at the cap closes at most: the few idle the
/// longest, so that a burst of new connections against a full server does not scan the table
/// for every one of them.
const EVICT_BATCH: usize = 8;

/// The connections of one server. Cheap to clone; clones share the table.
#[derive(Clone, Debug)]
pub(crate) struct Conns {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max: usize,
    /// `header_timeout`, in ticks of the coarse clock.
    timeout: u64,
    /// The coarse clock: ticks since the server started, advanced by the sweeper.
    now: AtomicU64,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Every open connection, at its index; `None` where one has closed.
    slots: Vec<Option<Arc<Conn>>>,
    free: Vec<usize>,
    open: usize,
    /// Connections told to close whose tasks have not ended yet: they no longer count against
    /// the cap.
    closing: usize,
    /// Admissions so far: the order of connections accepted within one tick.
    admitted: u64,
}

/// One open connection, as its server sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    shared: Arc<Shared>,
    index: usize,
    /// Its admission number: among connections idle since the same tick, the older goes first.
    seq: u64,
    /// Requests whose answer's body has not been dropped yet.
    in_flight: AtomicU32,
    /// When `in_flight` last fell to zero, or the connection was accepted, on the coarse clock.
    idle_since: AtomicU64,
    /// Its task has run once: it was read from, so an idle time means the client sent nothing.
    looked_at: AtomicBool,
    /// Told to close: the task serving it ends at its next poll.
    closed: AtomicBool,
    /// The task serving it, woken to end it.
    waker: AtomicWaker,
}

/// What [`Conns::admit`] decided about a new connection.
#[derive(Debug)]
pub(crate) enum Admit {
    /// There was room: serve it.
    Open(Ticket),
    /// The cap was reached: this many idle connections are being closed to make room.
    MadeRoom(Ticket, usize),
    /// The cap was reached and every open connection has a request in flight: close this one.
    Full,
}

/// How many times an admission at the cap lets the tasks of connections accepted just before
/// run, so that they are read and can make room, before it gives up: the accept loop can take
/// a burst of connections faster than their tasks first run.
const YIELDS: usize = 64;

impl Conns {
    /// The connections of a server that keeps at most `max` open and closes those left without
    /// a request in flight for `header_timeout`. Starts the sweeper on the current runtime; it
    /// ends once the server and all its connections are gone.
    pub(crate) fn new(max: usize, header_timeout: Duration) -> Self {
        // Ten ticks per timeout, within bounds: a connection is closed between one and about
        // one and a tenth timeouts after it fell idle, and an idle server wakes at most once a
        // second for it.
        let tick = (header_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let timeout = header_timeout.as_nanos().div_ceil(tick.as_nanos()).max(1) as u64;
        let shared = Arc::new(Shared {
            max: max.max(1),
            timeout,
            now: AtomicU64::new(0),
            table: Mutex::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&shared), tick));
        Self { shared }
    }

    /// The most connections this server keeps open.
    pub(crate) fn max(&self) -> usize {
        self.shared.max
    }

    /// Admits a new connection as [`Conns::admit`] does and tells the accept loop's `stalls`
    /// what it cost: room made by closing idle connections, or a refusal. `None`: every open
    /// connection is busy, and the caller closes the new one at once, so that the client
    /// learns now and the process keeps its descriptors for the connections it serves.
    pub(crate) async fn admit_or_refuse(&self, stalls: &mut stall::Stall) -> Option<Ticket> {
        match self.admit().await {
            Admit::Open(ticket) => Some(ticket),
            Admit::MadeRoom(ticket, closed) => {
                stalls.made_room(closed, self.max());
                Some(ticket)
            }
            Admit::Full => {
                stalls.refused(self.max());
                None
            }
        }
    }

    /// Takes a new connection into account, making room at the cap if it can.
    pub(crate) async fn admit(&self) -> Admit {
        for _ in 0..YIELDS {
            match self.try_admit() {
                Some(admit) => return admit,
                None => tokio::task::yield_now().await,
            }
        }
        Admit::Full
    }

    /// [`Conns::admit`] now; `None` when the only connections that could make room have not
    /// been read from yet, or those closed to make room have not ended yet.
    fn try_admit(&self) -> Option<Admit> {
        let shared = &self.shared;
        let now = shared.now.load(Ordering::Relaxed);
        let mut table = shared.lock();
        let mut made_room = 0;
        // Connections told to close still hold their descriptors until their tasks run: a
        // burst of admissions may not outrun them by more than a batch.
        if table.open >= shared.max.saturating_add(EVICT_BATCH) {
            return None;
        }
        if table.open - table.closing >= shared.max {
            match table.close_idle_longest(now) {
                Room::Made(n) => made_room = n,
                Room::NotYet => return None,
                Room::None => return Some(Admit::Full),
            }
        }
        let index = match table.free.pop() {
            Some(index) => index,
            None => {
                table.slots.push(None);
                table.slots.len() - 1
            }
        };
        table.admitted += 1;
        let conn = Arc::new(Conn {
            shared: shared.clone(),
            index,
            seq: table.admitted,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            looked_at: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        table.slots[index] = Some(conn.clone());
        table.open += 1;
        let ticket = Ticket(conn);
        Some(if made_room > 0 {
            Admit::MadeRoom(ticket, made_room)
        } else {
            Admit::Open(ticket)
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What closing idle connections at the cap achieved.
enum Room {
    /// This many are being closed.
    Made(usize),
    /// None could be, but some not read from yet may be once their tasks have run.
    NotYet,
    /// Every connection has a request in flight.
    None,
}

impl Table {
    /// Closes the few connections idle the longest.
    fn close_idle_longest(&mut self, now: u64) -> Room {
        let mut unread = false;
        let mut idle: Vec<(u64, u64, usize)> = self
            .slots
            .iter()
            .flatten()
            .filter(|conn| !conn.closed.load(Ordering::Relaxed))
            .filter_map(|conn| {
                let idle = conn.idle_for(now)?;
                if !conn.looked_at.load(Ordering::Acquire) {
                    unread = true;
                    return None;
                }
                Some((u64::MAX - idle, conn.seq, conn.index))
            })
            .collect();
        if idle.is_empty() {
            return if unread { Room::NotYet } else { Room::None };
        }
        if idle.len() > EVICT_BATCH {
            idle.select_nth_unstable(EVICT_BATCH - 1);
            idle.truncate(EVICT_BATCH);
        }
        for &(_, _, index) in &idle {
            if let Some(conn) = &self.slots[index] {
                conn.close();
            }
        }
        self.closing += idle.len();
        Room::Made(idle.len())
    }
}

/// Advances the coarse clock every `tick` and closes the connections that waited too long for
/// a request head; ends once the server and its connections are gone.
async fn sweep(shared: Weak<Shared>, tick: Duration) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = shared.now.fetch_add(1, Ordering::Relaxed) + 1;
        let mut table = shared.lock();
        let mut closed = 0;
        for conn in table.slots.iter().flatten() {
            // `>`: idle times are read from a clock that lags by up to a tick.
            if conn.idle_for(now).is_some_and(|idle| idle > shared.timeout) && conn.close() {
                closed += 1;
            }
        }
        table.closing += closed;
    }
}

impl Conn {
    /// A request of this connection starts: it is in flight until the guard is dropped, which
    /// [`Tracked`] does with the answer's body.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// How many ticks it has had no request in flight; `None` while one is.
    fn idle_for(&self, now: u64) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(now.saturating_sub(self.idle_since.load(Ordering::Relaxed)))
    }

    /// Tells the task serving it to end; `false` if it was told already. Called with the table
    /// locked, which also counts it as closing.
    fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.waker.wake();
        true
    }
}

/// A request in flight on its connection; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        // The idle time first: the sweeper reads it once it sees nothing in flight.
        conn.idle_since
            .store(conn.shared.now.load(Ordering::Relaxed), Ordering::Relaxed);
        conn.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A connection's place in its server's table: it counts as open until this is dropped.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<Conn>);

impl Ticket {
    /// The connection, for the service that marks its requests.
    pub(crate) fn conn(&self) -> Arc<Conn> {
        self.0.clone()
    }

    /// Serves `connection` (the future that runs it) under this ticket: the result ends early,
    /// with `None`, when the connection is told to close, dropping `connection` and so closing
    /// the socket. It must be awaited by one task for its whole life, the connection's own.
    pub(crate) fn serve<F: Future>(self, connection: F) -> Serve<F> {
        Serve {
            connection,
            ticket: self,
            registered: false,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let conn = &self.0;
        let mut table = conn.shared.lock();
        table.slots[conn.index] = None;
        table.free.push(conn.index);
        table.open -= 1;
        // Set only with the table locked, as `closing` was counted.
        if conn.closed.load(Ordering::Relaxed) {
            table.closing -= 1;
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Ticket::serve`].
    #[derive(Debug)]
    pub(crate) struct Serve<F> {
        #[pin]
        connection: F,
        ticket: Ticket,
        registered: bool,
    }
}

impl<F: Future> Future for Serve<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let conn = &this.ticket.0;
        if !*this.registered {
            // Polled by one task for its whole life (see `Ticket::serve`): the waker it gives
            // first stays the one that wakes it, so it is registered once, not on every poll
            // of a busy connection.
            conn.waker.register(cx.waker());
        }
        if conn.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        let polled = this.connection.poll(cx).map(Some);
        if !*this.registered {
            *this.registered = true;
            // Whatever request had arrived is in flight now.
            conn.looked_at.store(true, Ordering::Release);
        }
        polled
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, which ends its request when dropped: hyper drops it once it is sent,
    /// or when the client goes away.
    #[derive(Debug)]
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        in_flight: InFlight,
        // The request's access log line, when the access log is on: it counts the bytes
        // sent, and is written when this body is dropped.
        access: Option<Box<crate::log::access::Pending>>,
    }
}

impl<B> Tracked<B> {
    /// An answer's body, with its access log line if it has one.
    pub(crate) fn logged(
        body: B,
        in_flight: InFlight,
        access: Option<Box<crate::log::access::Pending>>,
    ) -> Self {
        Self {
            body,
            in_flight,
            access,
        }
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.body.poll_frame(cx));
        if let (Some(access), Some(Ok(frame))) = (this.access.as_mut(), &frame) {
            if let Some(data) = frame.data_ref() {
                access.sent(bytes::Buf::remaining(data));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether a connection ended because its client broke the protocol: a malformed or oversized
/// request head, or an HTTP/2 violation that made this end close the connection (a flood of
/// streams reset as soon as they were opened, bad frames). Clients that vanish, time out or
/// close in an orderly way are not counted.
pub(crate) fn broke_protocol(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(e) = error.downcast_ref::<hyper::Error>() {
            if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() {
                return true;
            }
        }
        if let Some(e) = error.downcast_ref::<h2::Error>() {
            // Raised by h2 on this end: the peer violated the protocol.
            return e.is_library() && e.reason() != Some(h2::Reason::NO_ERROR);
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(admit: Option<Admit>) -> Ticket {
        match admit {
            Some(Admit::Open(ticket) | Admit::MadeRoom(ticket, _)) => ticket,
            other => panic!("refused: {other:?}"),
        }
    }

    /// A ticket whose connection has been read from once.
    fn looked_at(ticket: Ticket) -> Ticket {
        ticket.0.looked_at.store(true, Ordering::Relaxed);
        ticket
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_connection_idle_the_longest_makes_room() {
        let conns = Conns::new(2, Duration::from_secs(30));
        let first = looked_at(ticket(conns.try_admit()));
        let second = looked_at(ticket(conns.try_admit()));
        // The first one is busy: only the second can go.
        let busy = first.conn().request();
        match conns.try_admit() {
            Some(Admit::MadeRoom(third, 1)) => {
                assert!(second.0.closed.load(Ordering::Relaxed));
                assert!(!first.0.closed.load(Ordering::Relaxed));
                // Closing, not yet gone: the cap counts it out already.
                drop(second);
                drop(third);
            }
            other => panic!("{other:?}"),
        }
        // Every open connection busy: the new one is refused.
        let another = looked_at(ticket(conns.try_admit()));
        let _also_busy = another.conn().request();
        assert!(matches!(conns.try_admit(), Some(Admit::Full)));
        drop(busy);
        assert!(matches!(conns.try_admit(), Some(Admit::MadeRoom(_, 1))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_not_read_from_yet_is_not_closed_to_make_room() {
        let conns = Conns::new(2, Duration::from_secs(30));
        // Accepted a moment ago, their requests not read yet.
        let first = ticket(conns.try_admit());
        let _second = ticket(conns.try_admit());
        assert!(conns.try_admit().is_none());
        // Once its task has run and found no request, it may go.
        let silent = tokio::spawn(first.serve(std::future::pending::<()>()));
        tokio::task::yield_now().await;
        assert!(matches!(conns.try_admit(), Some(Admit::MadeRoom(_, 1))));
        assert_eq!(silent.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_timeout_and_a_busy_one_is_not() {
        let conns = Conns::new(10, Duration::from_secs(1));
        let silent = ticket(conns.try_admit());
        let working = ticket(conns.try_admit());
        let in_flight = working.conn().request();
        let start = tokio::time::Instant::now();
        let silent = tokio::spawn(silent.serve(std::future::pending::<()>()));
        let working = tokio::spawn(working.serve(std::future::pending::<()>()));
        assert_eq!(silent.await.unwrap(), None, "closed");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited <= Duration::from_millis(1300),
            "{waited:?}"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!working.is_finished(), "a request in flight keeps it open");
        // Once its answer is done it is idle, and goes after the timeout.
        drop(in_flight);
        assert_eq!(working.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_forgets_connections_that_ended() {
        let conns = Conns::new(1, Duration::from_secs(30));
        let done = tokio::spawn(ticket(conns.try_admit()).serve(async { 7 }));
        assert_eq!(done.await.unwrap(), Some(7));
        // Its place is free again, with nothing to close.
        assert!(matches!(conns.try_admit(), Some(Admit::Open(_))));
        let table = conns.shared.lock();
        assert_eq!((table.open, table.closing, table.slots.len()), (0, 0, 1));
    }
}
