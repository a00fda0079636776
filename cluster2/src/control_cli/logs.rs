//! `logs`: every worker's log lines, live, as `pm2 logs` shows an application's, until
//! interrupted (Ctrl-C, SIGTERM: exit 0).
//!
//! Each worker's lines come from the monitor's `GET /debug/workers/{pid}/logs` stream (the
//! lines its filter lets through, what its standard error shows, from when the stream opened:
//! a worker forwards its lines only while watched). The workers are read from `/workers`
//! every [`POLL`], by a task of their own so that Ctrl-C is never held up by a slow answer, and
//! the workers a restart, a reload or a scale starts are followed too; a stream ends with its
//! process, and one that broke while its worker is still listed is opened again at the next
//! look. Each line is printed as
//!
//! ```text
//! worker 1 (pid 4242) 2026-11-28T10:00:00.123Z INFO my_app::orders: order taken id=17
//! ```
//!
//! escaped whole ([`shown`]): a line break or any other character a worker logged (or a
//! monitor sent) that would act on a terminal is written as an escape, so that no message can
//! pass for another worker's line. At most [`MAX_FOLLOWED`] streams are open at once, the
//! lowest worker ids', so that `logs` never takes more than a small share of the monitor's
//! connections (`mon.max_connections`), which the ECV needs.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::client::{self, Events};
use super::find::Monitor;
use super::{Failure, shown};

/// How often the workers are looked up, for new ones.
const POLL: Duration = Duration::from_secs(1);
/// The most workers followed at once: one monitor connection each.
const MAX_FOLLOWED: usize = 32;
/// Lines waiting to be printed, at most; a stream waits for room beyond.
const QUEUE: usize = 1024;
/// The longest line printed, in bytes (a worker's own lines are cut at 4 KiB already): with
/// [`QUEUE`], what a monitor can make this command hold.
const MAX_LINE: usize = 16 << 10;

pub(super) async fn run(monitor: &Monitor) -> Result<(), Failure> {
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Failed(format!("cannot watch for Ctrl-C: {e}")))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Failure::Failed(format!("cannot watch for SIGTERM: {e}")))?;
    // The first look says whether there is a monitor at all: if not, that is the answer.
    let first = listed(&client::get(monitor, "/workers").await?);
    let (looks_tx, mut looks) = mpsc::channel(1);
    tokio::spawn(look_every(monitor.clone(), looks_tx));
    let (lines, mut printed) = mpsc::channel::<String>(QUEUE);
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<u32>();
    // The pids followed now: each has a stream open (or opening).
    let mut followed = BTreeSet::new();
    let mut capped = false;
    let mut look: Option<Result<Vec<(u64, u32)>, Failure>> = Some(Ok(first));
    loop {
        match look.take() {
            Some(Ok(mut workers)) => {
                workers.sort_unstable();
                let total = workers.len();
                for (worker, pid) in workers.into_iter().take(MAX_FOLLOWED) {
                    // Never more streams than the bound, replaced workers' included.
                    if followed.len() < MAX_FOLLOWED && followed.insert(pid) {
                        let ended = ended_tx.clone();
                        let lines = lines.clone();
                        let monitor = monitor.clone();
                        tokio::spawn(async move {
                            follow(&monitor, worker, pid, lines).await;
                            let _ = ended.send(pid);
                        });
                    }
                }
                if total > MAX_FOLLOWED && !capped {
                    say!(
                        "(following {MAX_FOLLOWED} of {total} workers, the lowest ids: each \
                         takes one of the monitor's connections)"
                    );
                }
                capped = total > MAX_FOLLOWED;
            }
            Some(Err(failure)) => {
                eprintln!("{}; looking again", shown(failure.message()));
            }
            None => {}
        }
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            Some(line) = printed.recv() => say!("{}", shown(&line)),
            Some(pid) = ended.recv() => {
                // Opened again at the next look if the worker is still listed.
                followed.remove(&pid);
            }
            Some(next) = looks.recv() => look = Some(next),
        }
    }
}

/// Sends what `/workers` lists every [`POLL`], or why it could not be read (said once in a
/// row), until the receiver is gone.
async fn look_every(monitor: Monitor, looks: mpsc::Sender<Result<Vec<(u64, u32)>, Failure>>) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The look at start was made by `run`.
    poll.tick().await;
    let mut failing = false;
    loop {
        poll.tick().await;
        let look = client::get(&monitor, "/workers").await.map(|w| listed(&w));
        let failed = look.is_err();
        if failed && failing {
            continue;
        }
        failing = failed;
        if looks.send(look).await.is_err() {
            return;
        }
    }
}

/// The worker ids and pids `/workers` lists.
fn listed(workers: &Value) -> Vec<(u64, u32)> {
    workers["workers"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|w| {
                    let pid = u32::try_from(w["pid"].as_u64()?).ok()?;
                    Some((w["worker"].as_u64()?, pid))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one worker's lines, rendered, until its stream ends (its process exited) or breaks.
async fn follow(monitor: &Monitor, worker: u64, pid: u32, lines: mpsc::Sender<String>) {
    // A worker gone between `/workers` and here has no stream: nothing to follow.
    let Ok(mut events) = Events::open(monitor, &format!("/debug/workers/{pid}/logs")).await else {
        return;
    };
    while let Ok(Some(event)) = events.next().await {
        if lines.send(render(worker, pid, &event)).await.is_err() {
            return;
        }
    }
}

/// One event of a stream as a line: a log line, or how many were lost.
fn render(worker: u64, pid: u32, event: &Value) -> String {
    let mut line = format!("worker {worker} (pid {pid})");
    if let Some(lost) = event.as_u64() {
        let _ = write!(
            line,
            " ({lost} lines dropped: the process or this reader fell behind)"
        );
        return line;
    }
    if let Some(at) = event["at_unix_secs"]
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)
    {
        let at = UNIX_EPOCH + Duration::from_secs_f64(at.min(253_402_300_799.0));
        let _ = write!(line, " {}", humantime::format_rfc3339_millis(at));
    }
    let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
    let _ = write!(
        line,
        " {} {}: {}",
        text("level"),
        text("target"),
        text("message")
    );
    if let Some(fields) = event["fields"].as_object() {
        for (key, value) in fields {
            match value {
                Value::String(s) => {
                    let _ = write!(line, " {key}={s}");
                }
                other => {
                    let _ = write!(line, " {key}={other}");
                }
            }
        }
    }
    if line.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_shows_who_when_how_loud_where_and_what() {
        let event = json!({
            "level": "INFO", "target": "app::orders", "message": "order taken",
            "fields": {"id": 17, "who": "ann"}, "at_unix_secs": 1_795_860_000.123_4,
        });
        assert_eq!(
            render(1, 4242, &event),
            "worker 1 (pid 4242) 2026-11-28T10:00:00.123Z INFO app::orders: order taken id=17 \
             who=ann"
        );
        assert_eq!(
            render(0, 7, &json!(3)),
            "worker 0 (pid 7) (3 lines dropped: the process or this reader fell behind)"
        );
        // What a monitor may send that is no line: shown as empty parts, never a panic.
        assert_eq!(
            render(0, 7, &json!({"at_unix_secs": 1e300})),
            "worker 0 (pid 7) 9999-12-31T23:59:59.000Z  : "
        );
        assert_eq!(render(0, 7, &json!("x")), "worker 0 (pid 7)  : ");
        // A monitor's huge line is cut, on a character boundary.
        let huge = render(0, 7, &json!({"message": "é".repeat(MAX_LINE)}));
        assert!(
            huge.len() <= MAX_LINE + 3 && huge.ends_with("é..."),
            "{}",
            huge.len()
        );
    }

    #[test]
    fn workers_are_read_from_what_the_monitor_lists() {
        let workers = json!({"workers": [
            {"worker": 0, "pid": 10}, {"worker": 1, "pid": 11},
            {"worker": 2, "pid": -1}, {"worker": "x", "pid": 12}, {"pid": 13},
            {"worker": 3, "pid": 4_294_967_296_u64},
        ]});
        assert_eq!(listed(&workers), [(0, 10), (1, 11)]);
        assert_eq!(listed(&json!({})), []);
    }
}
