//! Even spread of connections across the workers, on the one accept queue they share.
//!
//! Every worker accepts from the same listening socket, so the kernel keeps one queue for the
//! cluster: a worker that crashes, pauses or drains strands nothing, and nobody needs to hand
//! connections around. But whichever worker wakes first takes a whole burst (64 connections
//! opened at once went 64/0). Here each worker takes its *turn*: a table in shared memory
//! (`ipc::fd::SharedCounters`, created by the master) gives every worker process a seat with
//! its open connections, whether it accepts, and how many it ever accepted; before accepting a
//! pending connection a worker checks that it does not hold more than its share of the
//! accepting workers' connections, and otherwise leaves the connection to the others.
//!
//! Leaving it is bounded: a worker that holds back while nobody else takes the connection for
//! [`HOLD`] concludes that the others cannot (stuck, or saturated) and takes connections
//! freely until it sees another worker accept again. So a stuck worker costs a connection at
//! most [`HOLD`] once, and never throttles the healthy ones.
//!
//! The table is sized once, at start, for the most workers the cluster may be scaled to
//! (`Options::max_workers`), with room for successors and draining workers; its first counter
//! says how many seats have ever been taken, so a worker looks only at those, however large
//! the table.
//!
//! `balance = kernel` turns this off: the first worker to wake takes what it can.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::ipc::fd::SharedCounters;

/// How long a worker above its share leaves a pending connection to the others before it
/// concludes that they cannot take it.
pub(crate) const HOLD: Duration = Duration::from_millis(50);
/// How often a worker that holds back looks again.
pub(crate) const RECHECK: Duration = Duration::from_millis(1);

/// The counter before the seats: one past the highest seat ever taken (only grows).
const EXTENT: usize = 0;
/// The fields of one seat, in counters after [`EXTENT`].
const OPEN: usize = 0;
const ACCEPTING: usize = 1;
const ACCEPTED: usize = 2;
const FIELDS: usize = 3;

/// The table: how many seats were ever taken, then one seat per worker process.
#[derive(Debug)]
struct Table(SharedCounters);

impl Table {
    fn seats(&self) -> usize {
        self.0.counters().len().saturating_sub(1) / FIELDS
    }

    /// The seats worth looking at: those ever taken.
    fn in_use(&self) -> usize {
        (self.0.counters()[EXTENT].load(Ordering::Acquire) as usize).min(self.seats())
    }

    fn field(&self, seat: usize, field: usize) -> &AtomicU32 {
        &self.0.counters()[1 + seat * FIELDS + field]
    }
}

/// The master's side: the table, and which seats are taken by a live process.
#[derive(Debug)]
pub(crate) struct Seats {
    table: Table,
    fd: std::os::fd::OwnedFd,
    taken: Vec<bool>,
}

impl Seats {
    /// A table for a cluster of at most `workers` (scaled up or not): room for each one, its
    /// successor while it is replaced, and old ones still draining.
    pub(crate) fn create(workers: usize) -> std::io::Result<Self> {
        let seats = 2 * workers + 8;
        let (counters, fd) = SharedCounters::create(1 + seats * FIELDS)?;
        let table = Table(counters);
        let taken = vec![false; table.seats()];
        Ok(Self { table, fd, taken })
    }

    /// The fd every worker inherits.
    pub(crate) fn fd(&self) -> &std::os::fd::OwnedFd {
        &self.fd
    }

    /// A free seat for a new worker process; `None` if all are taken (it then accepts
    /// without taking turns, which only loosens the spread).
    pub(crate) fn take(&mut self) -> Option<u32> {
        let seat = self.taken.iter().position(|taken| !taken)?;
        self.taken[seat] = true;
        // Before the process that sits there exists, so it is looked at from its first accept.
        let extent = &self.table.0.counters()[EXTENT];
        if extent.load(Ordering::Relaxed) as usize <= seat {
            extent.store(seat as u32 + 1, Ordering::Release);
        }
        u32::try_from(seat).ok()
    }

    /// The process in `seat` is gone: its seat is cleared (a crashed worker could not say it
    /// stopped accepting) and free again.
    pub(crate) fn free(&mut self, seat: u32) {
        let seat = seat as usize;
        if let Some(taken) = self.taken.get_mut(seat) {
            for field in [ACCEPTING, OPEN, ACCEPTED] {
                self.table.field(seat, field).store(0, Ordering::Relaxed);
            }
            *taken = false;
        }
    }
}

/// A worker's side: its seat at the table.
#[derive(Debug)]
pub(crate) struct Turn {
    table: Table,
    seat: usize,
}

/// What a worker holding back concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Take the pending connection.
    Take,
    /// Leave it to the others for now; look again after [`RECHECK`].
    HoldBack,
}

/// Where a worker is in holding back.
#[derive(Debug, Default)]
pub(crate) struct Holding {
    /// Since when it has held back, and the others' accept count then.
    since: Option<(tokio::time::Instant, u32)>,
    /// The others did not take a connection within [`HOLD`]: take freely until they take one
    /// again (their accept count then).
    others_stuck_at: Option<u32>,
}

impl Turn {
    /// The seat `seat` at the table the master handed this worker.
    pub(crate) fn inherit(seat: u32) -> std::io::Result<Arc<Self>> {
        let table = Table(SharedCounters::inherit()?);
        let seat = seat as usize;
        if seat >= table.seats() {
            return Err(std::io::Error::other(format!(
                "balance seat {seat} is not at the table ({} seats)",
                table.seats()
            )));
        }
        Ok(Arc::new(Self { table, seat }))
    }

    /// Whether this worker takes connections now (listening and not paused).
    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.table
            .field(self.seat, ACCEPTING)
            .store(u32::from(accepting), Ordering::Relaxed);
    }

    /// Whether to take the connection that is pending now.
    pub(crate) fn decide(&self, holding: &mut Holding) -> Decision {
        let (mine, total, accepting, others_accepted) = self.look();
        if let Some(at) = holding.others_stuck_at {
            if others_accepted == at {
                return Decision::Take;
            }
            // Someone else takes connections again: back to taking turns.
            holding.others_stuck_at = None;
        }
        if accepting <= 1 || within_share(mine, total, accepting) {
            holding.since = None;
            return Decision::Take;
        }
        let now = tokio::time::Instant::now();
        match holding.since {
            None => holding.since = Some((now, others_accepted)),
            Some((_, then)) if then != others_accepted => {
                // The others are taking connections: keep leaving them these.
                holding.since = Some((now, others_accepted));
            }
            Some((since, _)) if now.duration_since(since) >= HOLD => {
                holding.since = None;
                holding.others_stuck_at = Some(others_accepted);
                return Decision::Take;
            }
            Some(_) => {}
        }
        Decision::HoldBack
    }

    /// This worker's open connections, the accepting workers' total and number, and how many
    /// connections the others ever accepted (it moves when any of them takes one).
    fn look(&self) -> (u32, u32, u32, u32) {
        let (mut total, mut accepting, mut others_accepted) = (0u32, 0u32, 0u32);
        for seat in 0..self.table.in_use() {
            if seat != self.seat {
                others_accepted = others_accepted
                    .wrapping_add(self.table.field(seat, ACCEPTED).load(Ordering::Relaxed));
            }
            if self.table.field(seat, ACCEPTING).load(Ordering::Relaxed) == 0 {
                continue;
            }
            accepting += 1;
            total = total.saturating_add(self.table.field(seat, OPEN).load(Ordering::Relaxed));
        }
        let mine = self.table.field(self.seat, OPEN).load(Ordering::Relaxed);
        (mine, total, accepting, others_accepted)
    }

    /// Counts a connection this worker accepted, until the guard is dropped.
    pub(crate) fn opened(self: &Arc<Self>) -> Open {
        self.table
            .field(self.seat, ACCEPTED)
            .fetch_add(1, Ordering::Relaxed);
        self.table
            .field(self.seat, OPEN)
            .fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.set_accepting(false);
    }
}

/// One open connection of this worker, counted at the table while it lives.
#[derive(Debug)]
pub(crate) struct Open(Arc<Turn>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .table
            .field(self.0.seat, OPEN)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a worker holding `mine` of the `total` connections of `accepting` workers may take
/// one more: with it, it would hold no more than an even share of them all. Workers with as
/// many connections then take turns, round robin, as node's primary deals them.
fn within_share(mine: u32, total: u32, accepting: u32) -> bool {
    mine < (total + 1).div_ceil(accepting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_spread_evenly_whatever_the_order_of_takers() {
        for workers in [2u32, 4, 8] {
            // The worst order: the same worker tries first every time, and only the next in
            // line takes what it leaves.
            let mut open = vec![0u32; workers as usize];
            for _ in 0..64 {
                let total: u32 = open.iter().sum();
                let taker = (0..workers as usize)
                    .find(|&w| within_share(open[w], total, workers))
                    .expect("someone may take it");
                open[taker] += 1;
            }
            let (min, max) = (open.iter().min().unwrap(), open.iter().max().unwrap());
            assert!(*max * 2 <= *min * 3, "{workers} workers: {open:?}");
        }
    }

    #[test]
    fn an_emptier_worker_gets_the_new_connections() {
        // A resumed or new worker with none, beside one holding 40.
        assert!(!within_share(40, 40, 2));
        assert!(within_share(0, 40, 2));
        // A lone accepting worker always may.
        assert!(within_share(1000, 1000, 1));
    }

    #[test]
    fn a_table_sized_for_many_workers_is_read_only_as_far_as_seats_were_taken() {
        let mut seats = Seats::create(1024).unwrap();
        assert!(seats.table.seats() >= 2 * 1024);
        assert_eq!(seats.table.in_use(), 0);
        let (a, b) = (seats.take().unwrap(), seats.take().unwrap());
        let turn = Turn {
            table: Table(SharedCounters::map_fd(seats.fd()).unwrap()),
            seat: a as usize,
        };
        assert_eq!(turn.table.in_use(), 2, "seen through another mapping");
        // A freed seat is taken again; how far to read never shrinks below a live seat.
        seats.free(b);
        assert_eq!(seats.take(), Some(b));
        assert_eq!(turn.table.in_use(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn holding_back_is_bounded_and_ends_while_the_others_are_stuck() {
        let mut seats = Seats::create(2).unwrap();
        let (a, b) = (seats.take().unwrap(), seats.take().unwrap());
        // Each seat on its own mapping of the master's table, as each worker maps it.
        let seat = |seat: u32| {
            Arc::new(Turn {
                table: Table(SharedCounters::map_fd(seats.fd()).unwrap()),
                seat: seat as usize,
            })
        };
        let (a, b) = (seat(a), seat(b));
        a.set_accepting(true);
        b.set_accepting(true);
        let held: Vec<Open> = (0..10).map(|_| a.opened()).collect();

        // Above its share: a holds back while b takes connections...
        let mut holding = Holding::default();
        assert_eq!(a.decide(&mut holding), Decision::HoldBack);
        tokio::time::advance(HOLD / 2).await;
        let _b1 = b.opened();
        assert_eq!(a.decide(&mut holding), Decision::HoldBack);
        tokio::time::advance(HOLD / 2 + RECHECK).await;
        assert_eq!(a.decide(&mut holding), Decision::HoldBack);
        // ...but when b takes none for HOLD, a takes them, until b takes one again.
        tokio::time::advance(HOLD).await;
        assert_eq!(a.decide(&mut holding), Decision::Take);
        assert_eq!(a.decide(&mut holding), Decision::Take);
        let _b2 = b.opened();
        assert_eq!(a.decide(&mut holding), Decision::HoldBack);

        // A paused b does not count: a takes everything.
        b.set_accepting(false);
        assert_eq!(a.decide(&mut holding), Decision::Take);
        drop(held);
        assert_eq!(a.look().0, 0, "closed connections are uncounted");

        // A freed seat is cleared for its next process.
        seats.free(1);
        assert_eq!(a.look(), (0, 0, 1, 0));
    }
}
