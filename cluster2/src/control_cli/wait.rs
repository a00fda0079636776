//! `reload` and `scale`: ask the monitor, then wait until it is done.
//!
//! `reload` is `POST /workers/restart` followed on `/events` (from just before it asked, so
//! nothing is missed): every worker it queued is replaced (`replaced`), or given up
//! (`replacement_failed`: each successor failed, the old worker serves on), which makes it
//! exit 1. `scale` is `POST /workers/scale`, then `/workers` polled until every worker id of
//! the new number serves and none above it is left.
//!
//! Both give up after a bound derived from the options they were given (the death queue's
//! timeout and tries, `startup_timeout`, `stop_timeout`): the same options the cluster runs
//! with when the command is given the same configuration.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Failure;
use super::client::{self, Events};
use super::find::Monitor;
use crate::options::Options;

/// Beyond the options' own durations: time for processes to start and for messages to pass.
const SLACK: Duration = Duration::from_secs(10);
/// How often `scale` looks at `/workers` while it waits.
const POLL: Duration = Duration::from_millis(100);

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
                event["why"].as_str().unwrap_or_default()
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
                let why = event["why"].as_str().unwrap_or_default().to_owned();
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
                done += 1;
                say!(
                    "worker {worker} (pid {}) crashed before its turn; it is restarted instead",
                    pid.unwrap_or_default()
                );
            }
            "shutting_down" => {
                return Err(Failure::Failed(format!(
                    "the cluster is shutting down ({}): {done} of {queued} workers replaced",
                    event["why"].as_str().unwrap_or_default()
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
         serving): {}",
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
    if from == to {
        say!("already {to} workers");
        return Ok(());
    }
    say!("scaling from {from} to {to} workers");
    let budget = options.startup_timeout + options.stop_timeout + SLACK;
    let deadline = Instant::now() + budget;
    loop {
        let workers = client::get(monitor, "/workers").await?;
        let expected = workers["expected"].as_u64();
        if expected != Some(to) {
            return Err(Failure::Failed(format!(
                "the cluster was scaled again meanwhile: it runs {} workers now",
                expected.map_or("?".to_owned(), |n| n.to_string())
            )));
        }
        let waiting = not_done(&workers, to);
        if waiting.is_empty() {
            say!("{to} workers serving");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::Failed(format!(
                "not done after {}: {}",
                humantime::format_duration(budget),
                waiting.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What keeps a scale to `to` from being done: a worker id below `to` without a serving
/// process, or a process above it still there. Workers kept for debugging are left aside.
fn not_done(workers: &Value, to: u64) -> Vec<String> {
    let all: Vec<&Value> = workers["workers"]
        .as_array()
        .map(|a| a.iter().filter(|w| w["debugging"].is_null()).collect())
        .unwrap_or_default();
    let mut waiting = Vec::new();
    for id in 0..to {
        let serving = all
            .iter()
            .any(|w| w["worker"] == id && w["state"] == "listening" && w["successor_of"].is_null());
        if !serving {
            let now: Vec<String> = all
                .iter()
                .filter(|w| w["worker"] == id)
                .map(|w| {
                    format!(
                        "pid {} is {} (crash streak {})",
                        w["pid"],
                        w["state"].as_str().unwrap_or("?"),
                        w["crash_streak"]
                    )
                })
                .collect();
            waiting.push(if now.is_empty() {
                format!(
                    "worker {id} has no process now: it failed and waits to restart (the \
                     master's log says why)"
                )
            } else {
                format!("worker {id}: {}", now.join(", "))
            });
        }
    }
    for w in all
        .iter()
        .filter(|w| w["worker"].as_u64().is_some_and(|id| id >= to))
    {
        waiting.push(format!(
            "worker {} (pid {}) is still {}",
            w["worker"],
            w["pid"],
            w["state"].as_str().unwrap_or("?")
        ));
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
    }
}
