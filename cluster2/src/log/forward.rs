//! A process's side of log streaming: the tracing layer that captures each line while someone
//! watches this process, and the task that hands the captured lines on, in batches, to the
//! master (a child) or to the hub (the master itself).
//!
//! While nobody watches, the layer costs one relaxed atomic load per line that passes the
//! filter, and formats nothing. While someone does, each line is captured into a bounded
//! queue ([`BUFFER`] lines) with `try_send`: a full queue drops the line and counts it, so a
//! logging thread never waits for the master. The task sends what has queued up as one frame
//! of at most [`BATCH`] lines, with the count dropped since the last one, and waits until that
//! frame is written before sending the next: at most one batch of log lines sits in the
//! channel to the master, so heartbeats and replies never queue behind a flood of lines. After
//! a batch that was not full it lets lines gather for [`GATHER`]: a process that logs a line
//! per request then sends one frame per interval rather than one per line (a frame per line,
//! and a wake-up of the task per line, cost more than capturing the line).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::ipc::channel::{Sender, TrySendError};
use crate::ipc::message::{LogLevel, LogLine, ToMaster};

/// Lines captured and not yet handed on; more are dropped (and counted). With [`GATHER`], a
/// process can log some 200 000 lines a second before any is dropped.
pub(crate) const BUFFER: usize = 2048;
/// Lines per frame to the master, at most.
pub(crate) const BATCH: usize = 256;
/// How long lines gather after a batch that was not full.
pub(crate) const GATHER: Duration = Duration::from_millis(10);
/// A message longer than this is cut (standard error still has it whole).
const MAX_MESSAGE: usize = 4 * 1024;
/// A field's value longer than this is cut.
const MAX_FIELD: usize = 1024;
/// Fields kept per line; with the limits above a batch stays far below the frame limit.
const MAX_FIELDS: usize = 16;

/// Whether lines are captured: the only thing the layer reads while nobody watches.
static ON: AtomicBool = AtomicBool::new(false);
/// Where captured lines go while forwarding.
static QUEUE: RwLock<Option<mpsc::Sender<LogLine>>> = RwLock::new(None);
/// Lines dropped since the last batch.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Where the forwarding task hands the lines.
#[derive(Debug)]
pub(crate) enum Sink {
    /// A child: to the master, on the child's channel.
    Master(Sender<ToMaster>),
    /// The master: straight to the hub's watchers of the master's own pid.
    Local,
}

/// Starts capturing lines and a task that hands them to `sink`; nothing if already started.
/// Must be called within the runtime.
pub(crate) fn start(sink: Sink) {
    let mut queue = QUEUE.write().unwrap_or_else(PoisonError::into_inner);
    if queue.is_some() {
        return;
    }
    let (tx, rx) = mpsc::channel(BUFFER);
    *queue = Some(tx);
    DROPPED.store(0, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
    drop(queue);
    tokio::spawn(hand_on(rx, sink));
}

/// Stops capturing; the task hands on what was captured and ends.
pub(crate) fn stop() {
    ON.store(false, Ordering::Relaxed);
    QUEUE.write().unwrap_or_else(PoisonError::into_inner).take();
}

async fn hand_on(mut queue: mpsc::Receiver<LogLine>, sink: Sink) {
    let mut lines = Vec::with_capacity(BATCH);
    // `recv_many` takes whatever queued up while the last batch was written and lines gathered:
    // the busier the process logs, the fuller the frames.
    while queue.recv_many(&mut lines, BATCH).await > 0 {
        let full = lines.len() == BATCH;
        let batch = std::mem::replace(&mut lines, Vec::with_capacity(BATCH));
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        match &sink {
            Sink::Master(to_master) => {
                let count = batch.len() as u64;
                match to_master.try_send(&ToMaster::Logs {
                    lines: batch,
                    dropped,
                }) {
                    Ok(()) => {
                        if to_master.flushed().await.is_err() {
                            return;
                        }
                    }
                    Err(TrySendError::Full) => {
                        DROPPED.fetch_add(count + dropped, Ordering::Relaxed);
                    }
                    Err(TrySendError::Closed) => return,
                }
            }
            Sink::Local => super::hub::received(std::process::id(), batch, dropped),
        }
        if !full {
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// The layer that captures lines while forwarding is on.
#[derive(Debug)]
pub(crate) struct Forward;

impl<S: Subscriber> Layer<S> for Forward {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !ON.load(Ordering::Relaxed) {
            return;
        }
        let line = capture(event);
        let queue = QUEUE.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queue.as_ref() {
            if queue.try_send(line).is_err() {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn capture(event: &Event<'_>) -> LogLine {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    LogLine {
        level: level(*meta.level()),
        target: meta.target().to_owned(),
        message: fields.message,
        fields: fields.others,
        at_unix_secs: crate::lifecycle::unix_now(),
    }
}

fn level(level: Level) -> LogLevel {
    match level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

/// An event's fields as text: `message` apart, the others in order.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, String)>,
}

impl Fields {
    fn text(&mut self, field: &Field) -> Option<Clipped> {
        if field.name() == "message" {
            Some(Clipped::new(MAX_MESSAGE))
        } else if self.others.len() < MAX_FIELDS {
            Some(Clipped::new(MAX_FIELD))
        } else {
            None
        }
    }

    fn keep(&mut self, field: &Field, text: Clipped) {
        if field.name() == "message" {
            self.message = text.text;
        } else {
            self.others.push((field.name().to_owned(), text.text));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(mut text) = self.text(field) {
            let _ = text.write_str(value);
            self.keep(field, text);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(mut text) = self.text(field) {
            // A value cut short makes its `Debug` stop with an error: what was written stays.
            let _ = write!(text, "{value:?}");
            self.keep(field, text);
        }
    }
}

/// Text that stops growing at a limit, so that a huge value is never formatted whole.
struct Clipped {
    text: String,
    limit: usize,
    full: bool,
}

impl Clipped {
    fn new(limit: usize) -> Self {
        Self {
            text: String::new(),
            limit,
            full: false,
        }
    }
}

impl fmt::Write for Clipped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.full {
            return Err(fmt::Error);
        }
        let room = self.limit - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.text.push('…');
        self.full = true;
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_text_stops_at_a_char_boundary() {
        let mut text = Clipped::new(5);
        assert!(text.write_str("abc").is_ok());
        assert!(text.write_str("dé…").is_err());
        assert_eq!(text.text, "abcd…");
        assert!(text.write_str("more").is_err());
        assert_eq!(text.text, "abcd…");
    }
}
