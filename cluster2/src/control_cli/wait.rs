//! `reload` and `scale`: ask the monitor, then wait until it is done.
//!
//! `reload` is `POST /workers/restart` followed on `/events` (from just before it asked, so
//! nothing is missed): every worker it queued is replaced (`replaced`), or given up
//! (`replacement_failed`: each successor failed, the old worker serves on), which makes it
//! exit 1. A queued worker that crashes before its turn is not replaced but restarted: it
//! counts once its restarted process listens, and as failed if that process fails to start
//! (the new program does not start: what a reload is run to find out). `scale` is
//! `POST /workers/scale`, then `/workers` polled until every worker id of the new number
//! serves and none above it is left.
//!
//! Both give up after a bound derived from the options they were given (the death queue's
//! timeout and tries, `startup_timeout`, `stop_timeout`): the same options the cluster runs
//! with when the command is given the same configuration.
//!
//! The monitor's numbers size nothing unchecked: `scale`'s new number must be the one asked
//! for (or the old one plus the change) and within the `workers` option's bounds, and
//! `reload`'s count of queued workers is at most the workers `/workers` lists. Every wait,
//! each request within it included, ends at the command's deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster2_options_schema::MAX_WORKERS;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{self, Events};
use super::find::Monitor;
use super::{Failure, shown};
use crate::options::Options;

/// Beyond the options' own durations: time for processes to start and for messages to pass.
const SLACK: Duration = Duration::from_secs(10);
/// How often `scale` looks at `/workers` while it waits.
const POLL: Duration = Duration::from_millis(100);
/// The workers named at most in a message of what is not done yet.
const NAMED: usize = 10;

/// What `scale` was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scale {
    /// `scale N`.
    To(u64),
    /// `scale +N`, `scale -N`.
    By(i64),
}

/// `4`, `+1`, `-2`: a number of workers or a change of it.
pub(super) fn parse_scale(arg: &str) -> Result<Scale, String> {
    let bad = || {
        format!(
            "scale: `{arg}` is not a number of workers: give one (`scale 4`) or a change \
             (`scale +1`, `scale -1`)"
        )
    };
    let digits = arg.trim_start_matches(['+', '-']);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || arg.len() - digits.len() > 1
    {
        return Err(bad());
    }
    if arg.starts_with(['+', '-']) {
        let delta: i64 = arg.parse().map_err(|_| bad())?;
        if delta == 0 {
            return Err(format!("scale: `{arg}` changes nothing: give +1, -1, …"));
        }
        Ok(Scale::By(delta))
    } else {
        let n: u64 = arg.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err("scale: 0 workers: a cluster needs at least one".to_owned());
        }
        Ok(Scale::To(n))
    }
}

pub(super) async fn reload(monitor: &Monitor, options: &Options) -> Result<(), Failure> {
    // The stream starts after the last event there is now: whatever the restart causes comes
    // after it, however fast.
    let recent = client::get(monitor, "/events/recent").await?;
    let since = recent
        .as_array()
        .and_then(|all| all.iter().filter_map(|e| e["seq"].as_u64()).max())
        .unwrap_or(0);
    let mut events = Events::open(monitor, &format!("/events?since={since}")).await?;
    let answer = client::post(monitor, "/workers/restart", None).await?;
    let queued = answer["queued"].as_u64().ok_or_else(|| {
        Failure::Unreachable(format!(
            "{} answered POST /workers/restart without `queued`: {answer}",
            monitor.found
        ))
    })?;
    // A monitor's count is at most its workers (successors already started included): a
    // larger one would only stretch the wait below.
    let listed = client::get(monitor, "/workers").await?["workers"]
        .as_array()
        .map_or(0, |all| all.len() as u64);
    let queued = queued.min(listed).min(MAX_WORKERS);
    if queued == 0 {
        say!("nothing to reload: every worker is already queued for replacement");
        return Ok(());
    }
    say!(
        "reloading {queued} worker{} one at a time",
        if queued == 1 { "" } else { "s" }
    );
    let per_worker = options.death_queue.timeout * options.death_queue.retries.max(1)
        + options.stop_timeout
        + SLACK;
    let budget = per_worker * u32::try_from(queued).unwrap_or(u32::MAX);
    let deadline = Instant::now() + budget;

    // The pids this reload queued: a rolling restart that was not SIGHUP's.
    let mut ours = BTreeSet::new();
    let mut replacing = None;
    // Worker ids whose queued process crashed before its turn, and that process: they are
    // done when a new process of the id listens.
    let mut restarting = BTreeMap::new();
    let (mut done, mut failed) = (0u64, Vec::new());
    while done + (failed.len() as u64) < queued {
        let event = match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => {
                return Err(Failure::Failed(format!(
                    "gave up waiting after {}: {done} of {queued} workers replaced",
                    humantime::format_duration(budget)
                )));
            }
            Ok(Err(failure)) => return Err(failure),
            Ok(Ok(None)) => {
                return Err(Failure::Unreachable(format!(
                    "{}: the event stream ended before the reload did ({done} of {queued} \
                     workers replaced)",
                    monitor.found
                )));
            }
            Ok(Ok(Some(event))) => event,
        };
        let pid = event["pid"].as_u64();
        let worker = &event["worker"];
        let mine = pid.is_some_and(|pid| ours.contains(&pid));
        match event["event"].as_str().unwrap_or_default() {
            "queued"
                if event["reason"]["kind"] == "rolling_restart"
                    && event["reason"]["sighup"] == false
                    && (ours.len() as u64) < queued =>
            {
                ours.extend(pid);
            }
            "replacing" if mine => replacing = pid,
            "successor_failed" if mine => say!(
                "worker {worker} (pid {}): successor try {} of {} failed: {}",
                pid.unwrap_or_default(),
                event["attempt"],
                event["tries"],
                shown(event["why"].as_str().unwrap_or_default())
            ),
            "replaced" if mine => {
                done += 1;
                say!(
                    "replaced worker {worker} (pid {} → pid {}) in {:.1}s",
                    pid.unwrap_or_default(),
                    event["successor"],
                    event["took_secs"].as_f64().unwrap_or_default()
                );
            }
            "replacement_failed" if mine => {
                let why = shown(event["why"].as_str().unwrap_or_default()).into_owned();
                say!(
                    "could not replace worker {worker} (pid {}): {why}; it keeps serving",
                    pid.unwrap_or_default()
                );
                failed.push(format!(
                    "worker {worker} (pid {}): {why}",
                    pid.unwrap_or_default()
                ));
            }
            // A queued worker that crashed before its turn: its id restarts afresh, from the
            // program file as it is now, and no replacement follows.
            "exited" if mine && replacing != pid && event["expected"] == false => {
                if let (Some(id), Some(pid)) = (worker.as_u64(), pid) {
                    restarting.insert(id, pid);
                    say!(
                        "worker {id} (pid {pid}) crashed before its turn; waiting for its \
                         restart"
                    );
                }
            }
            "listening" => {
                let restarted = worker.as_u64().and_then(|id| restarting.remove(&id));
                if let Some(crashed) = restarted {
                    done += 1;
                    say!(
                        "worker {worker} restarted (pid {crashed} → pid {})",
                        pid.unwrap_or_default()
                    );
                }
            }
            "start_failed" | "exited"
                if worker.as_u64().is_some_and(|id| {
                    restarting
                        .get(&id)
                        .is_some_and(|&crashed| Some(crashed) != pid)
                }) =>
            {
                let id = worker.as_u64().unwrap_or_default();
                let crashed = restarting.remove(&id).unwrap_or_default();
                let why = match event["event"].as_str() {
                    Some("start_failed") => format!(
                        "its {} failed: {}",
                        shown(event["stage"].as_str().unwrap_or_default()),
                        shown(event["error"].as_str().unwrap_or_default())
                    ),
                    _ => "it exited before it listened".to_owned(),
                };
                say!(
                    "worker {id} (pid {crashed}) crashed before its turn, and its restart \
                     (pid {}) did not start: {why}",
                    pid.unwrap_or_default()
                );
                failed.push(format!(
                    "worker {id}: its restart (pid {}) did not start: {why}",
                    pid.unwrap_or_default()
                ));
            }
            "shutting_down" => {
                return Err(Failure::Failed(format!(
                    "the cluster is shutting down ({}): {done} of {queued} workers replaced",
                    shown(event["why"].as_str().unwrap_or_default())
                )));
            }
            _ => {}
        }
    }
    if failed.is_empty() {
        say!(
            "reloaded {queued} worker{}",
            if queued == 1 { "" } else { "s" }
        );
        return Ok(());
    }
    Err(Failure::Failed(format!(
        "{} of {queued} workers not replaced, their successors failed (the old ones keep \
         serving, or restart when they crashed): {}",
        failed.len(),
        failed.join("; ")
    )))
}

pub(super) async fn scale(
    monitor: &Monitor,
    options: &Options,
    target: Scale,
) -> Result<(), Failure> {
    let body = match target {
        Scale::To(n) => json!({ "workers": n }),
        Scale::By(delta) => json!({ "delta": delta }),
    };
    let answer = client::post(monitor, "/workers/scale", Some(&body)).await?;
    let (Some(from), Some(to)) = (answer["from"].as_u64(), answer["to"].as_u64()) else {
        return Err(Failure::Unreachable(format!(
            "{} answered POST /workers/scale without `from` and `to`: {answer}",
            monitor.found
        )));
    };
    let asked = match target {
        Scale::To(n) => Some(n),
        Scale::By(delta) => from.checked_add_signed(delta),
    };
    if asked != Some(to) || !(1..=MAX_WORKERS).contains(&to) || from > MAX_WORKERS {
        return Err(Failure::Unreachable(format!(
            "{} answered POST /workers/scale with {from} to {to} workers, which is not what \
             was asked (or beyond the 1 to {MAX_WORKERS} workers a cluster runs): not a \
             cluster2 monitor, or of another version",
            monitor.found
        )));
    }
    if from == to {
        say!("already {to} workers");
        return Ok(());
    }
    say!("scaling from {from} to {to} workers");
    let budget = options.startup_timeout + options.stop_timeout + SLACK;
    let deadline = Instant::now() + budget;
    // What kept it from being done at the last look: said if the deadline comes meanwhile.
    let mut waiting = Vec::new();
    loop {
        let Ok(workers) = tokio::time::timeout_at(deadline, client::get(monitor, "/workers")).await
        else {
            if waiting.is_empty() {
                waiting.push("the monitor did not answer GET /workers in time".to_owned());
            }
            return Err(not_done_after(budget, &waiting));
        };
        let workers = workers?;
        let expected = workers["expected"].as_u64();
        if expected != Some(to) {
            return Err(Failure::Failed(format!(
                "the cluster was scaled again meanwhile: it runs {} workers now",
                expected.map_or("?".to_owned(), |n| n.to_string())
            )));
        }
        waiting = not_done(&workers, to);
        if waiting.is_empty() {
            say!("{to} workers serving");
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(not_done_after(budget, &waiting));
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(now))).await;
    }
}

fn not_done_after(budget: Duration, waiting: &[String]) -> Failure {
    Failure::Failed(format!(
        "not done after {}: {}",
        humantime::format_duration(budget),
        waiting.join("; ")
    ))
}

/// What keeps a scale to `to` (at most [`MAX_WORKERS`], checked) from being done: a worker id
/// below `to` without a serving process, or a process above it still there. Workers kept for
/// debugging are left aside. At most [`NAMED`] are named, then how many more there are.
fn not_done(workers: &Value, to: u64) -> Vec<String> {
    // Worker id → its processes, from what the monitor listed: each entry looked at once.
    let mut by_id: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for w in workers["workers"].as_array().into_iter().flatten() {
        if let (Some(id), true) = (w["worker"].as_u64(), w["debugging"].is_null()) {
            by_id.entry(id).or_default().push(w);
        }
    }
    let serving = |w: &&Value| w["state"] == "listening" && w["successor_of"].is_null();
    let state = |w: &Value| shown(w["state"].as_str().unwrap_or("?")).into_owned();
    let mut waiting = Vec::new();
    for id in 0..to {
        let now = by_id.get(&id).map_or(&[][..], Vec::as_slice);
        if now.iter().any(serving) {
            continue;
        }
        waiting.push(if now.is_empty() {
            format!(
                "worker {id} has no process now: it failed and waits to restart (the \
                 master's log says why)"
            )
        } else {
            let now: Vec<String> = now
                .iter()
                .map(|w| {
                    format!(
                        "pid {} is {} (crash streak {})",
                        w["pid"],
                        state(w),
                        w["crash_streak"]
                    )
                })
                .collect();
            format!("worker {id}: {}", now.join(", "))
        });
    }
    for (id, all) in by_id.range(to..) {
        for w in all {
            waiting.push(format!(
                "worker {id} (pid {}) is still {}",
                w["pid"],
                state(w)
            ));
        }
    }
    if waiting.len() > NAMED {
        let more = waiting.len() - NAMED;
        waiting.truncate(NAMED);
        waiting.push(format!("and {more} more"));
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_arguments() {
        assert_eq!(parse_scale("4"), Ok(Scale::To(4)));
        assert_eq!(parse_scale("+1"), Ok(Scale::By(1)));
        assert_eq!(parse_scale("-2"), Ok(Scale::By(-2)));
        for bad in [
            "",
            "+",
            "-",
            "x",
            "1.5",
            "--1",
            "+-1",
            "4 ",
            "0x10",
            "99999999999999999999",
        ] {
            assert!(
                parse_scale(bad).unwrap_err().contains("not a number"),
                "{bad:?}"
            );
        }
        assert!(parse_scale("0").unwrap_err().contains("at least one"));
        assert!(parse_scale("+0").unwrap_err().contains("changes nothing"));
    }

    #[test]
    fn a_scale_is_done_when_every_id_serves_and_none_above_is_left() {
        let w = |id: u64, pid: u64, state: &str| {
            json!({"worker": id, "pid": pid, "state": state, "successor_of": null,
                   "debugging": null, "crash_streak": 0})
        };
        let workers = json!({"workers": [w(0, 10, "listening"), w(1, 11, "warming")]});
        assert_eq!(not_done(&workers, 2).len(), 1);
        let workers = json!({"workers": [w(0, 10, "listening"), w(1, 11, "stopping")]});
        assert!(not_done(&workers, 1)[0].contains("still stopping"));
        let workers = json!({"workers": [w(0, 10, "listening"), w(1, 11, "listening")]});
        assert!(not_done(&workers, 2).is_empty());
        // Many ids missing, many left above: ten named, then how many more.
        let above: Vec<Value> = (0..50).map(|i| w(1000 + i, 2000 + i, "stopping")).collect();
        let waiting = not_done(&json!({ "workers": above }), MAX_WORKERS);
        assert_eq!(waiting.len(), 11, "{waiting:?}");
        assert_eq!(waiting[10], format!("and {} more", 1000 + 50 - 10));
        assert!(
            waiting[0].starts_with("worker 0 has no process"),
            "{waiting:?}"
        );
    }
}
