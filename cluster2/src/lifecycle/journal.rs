//! The master's journal of lifecycle events: a bounded, ordered log with one writer (the
//! master's loop, through [`publish`]) and any number of readers, each holding only a cursor.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use super::Event;
use crate::error::{Error, ErrorKind, Result};

/// How many events the master keeps for late subscribers and the monitor's replay.
pub const JOURNAL_CAPACITY: usize = 4096;

/// One event with its place in the journal and its time.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Record {
    /// Consecutive from 1 over the master's life.
    pub seq: u64,
    /// When it happened, in seconds since the Unix epoch.
    pub at_unix_secs: f64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// The master's bounded event log.
pub(crate) struct Journal {
    records: Mutex<VecDeque<Arc<Record>>>,
    /// The newest sequence number; subscribers wait on it.
    latest: watch::Sender<u64>,
    /// How many events of each kind, over the master's whole life (for `/metrics`).
    counts: Mutex<BTreeMap<String, u64>>,
}

static JOURNAL: OnceLock<Journal> = OnceLock::new();

impl Journal {
    /// Called once by the master, before anything happens.
    pub(crate) fn install() -> &'static Journal {
        JOURNAL.get_or_init(|| Journal {
            records: Mutex::new(VecDeque::with_capacity(256)),
            latest: watch::Sender::new(0),
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    /// The master's journal, in the master.
    pub(crate) fn get() -> Option<&'static Journal> {
        JOURNAL.get()
    }

    fn push(&self, event: Event) {
        let at_unix_secs = unix_now();
        // Events are rare (a worker's life has a handful), so naming one through serde, the
        // same name `/events` shows, costs nothing that matters.
        let kind = serde_json::to_value(&event)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *self
            .counts
            .lock()
            .expect("journal lock")
            .entry(kind)
            .or_default() += 1;
        let mut records = self.records.lock().expect("journal lock");
        let seq = records.back().map_or(1, |r| r.seq + 1);
        if records.len() == JOURNAL_CAPACITY {
            records.pop_front();
        }
        records.push_back(Arc::new(Record {
            seq,
            at_unix_secs,
            event,
        }));
        drop(records);
        self.latest.send_replace(seq);
    }

    /// A subscription that starts after sequence number `after` (0: from the oldest kept).
    pub(crate) fn subscribe_after(&'static self, after: u64) -> Subscription {
        Subscription {
            journal: self,
            cursor: after,
            latest: self.latest.subscribe(),
            missed: 0,
        }
    }

    /// How many events of each kind the master has seen.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("journal lock").clone()
    }

    /// The events kept, oldest first.
    pub(crate) fn recent(&self) -> Vec<Record> {
        let records = self.records.lock().expect("journal lock");
        records.iter().map(|r| Record::clone(r)).collect()
    }

    /// The first record after `cursor`, and how many were dropped before it.
    fn after(&self, cursor: u64) -> Option<(Arc<Record>, u64)> {
        let records = self.records.lock().expect("journal lock");
        let first = records.front()?.seq;
        let index = cursor.saturating_add(1).saturating_sub(first);
        let record = records.get(usize::try_from(index).ok()?)?.clone();
        let skipped = record.seq - cursor - 1;
        Some((record, skipped))
    }
}

/// Now, in seconds since the Unix epoch: how every record of cluster2 is stamped (events,
/// heartbeat samples, forwarded log lines), so that a page can put them on one time axis.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Records the event in the master's journal (a no-op in other processes).
pub(crate) fn publish(event: Event) {
    if let Some(journal) = Journal::get() {
        journal.push(event);
    }
}

/// Follows the master's events, from the moment of subscribing.
///
/// Works in the master only (the one process that sees the cluster's life); elsewhere it is an
/// [`ErrorKind::Unavailable`] error.
pub fn subscribe() -> Result<Subscription> {
    let journal = Journal::get().ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "lifecycle events are kept in the master only: subscribe from the master's main",
        )
    })?;
    let latest = *journal.latest.borrow();
    Ok(journal.subscribe_after(latest))
}

/// The master's events as they happen; see [`subscribe`].
pub struct Subscription {
    journal: &'static Journal,
    cursor: u64,
    latest: watch::Receiver<u64>,
    missed: u64,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.cursor)
            .field("missed", &self.missed)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next event; `None` once the master's journal is gone (it never is before exit).
    pub async fn next(&mut self) -> Option<Arc<Record>> {
        loop {
            if let Some((record, skipped)) = self.journal.after(self.cursor) {
                self.missed += skipped;
                self.cursor = record.seq;
                return Some(record);
            }
            // Marks the current value seen, so the wait below ends only on a newer event.
            self.latest.borrow_and_update();
            if self.journal.after(self.cursor).is_some() {
                continue;
            }
            self.latest.changed().await.ok()?;
        }
    }

    /// How many events this subscription skipped because it fell behind the journal.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> &'static Journal {
        Box::leak(Box::new(Journal {
            records: Mutex::new(VecDeque::new()),
            latest: watch::Sender::new(0),
            counts: Mutex::new(BTreeMap::new()),
        }))
    }

    #[tokio::test]
    async fn subscribers_read_in_order_and_wait_for_more() {
        let journal = journal();
        let mut from_start = journal.subscribe_after(0);
        journal.push(Event::Stopped);
        journal.push(Event::ShuttingDown { why: "x".into() });
        assert_eq!(from_start.next().await.unwrap().seq, 1);
        assert_eq!(from_start.next().await.unwrap().seq, 2);
        let waiting = tokio::spawn(async move { from_start.next().await.unwrap().seq });
        tokio::task::yield_now().await;
        journal.push(Event::Stopped);
        assert_eq!(waiting.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_capacity_counts_what_it_missed() {
        let journal = journal();
        let mut slow = journal.subscribe_after(0);
        for _ in 0..JOURNAL_CAPACITY + 10 {
            journal.push(Event::Stopped);
        }
        let first = slow.next().await.unwrap();
        assert_eq!(first.seq, 11);
        assert_eq!(slow.missed(), 10);
        assert_eq!(journal.recent().len(), JOURNAL_CAPACITY);
        // The counts cover every event, also those no longer kept.
        assert_eq!(journal.counts()["stopped"], JOURNAL_CAPACITY as u64 + 10);
    }
}
