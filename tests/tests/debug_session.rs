//! Debug sessions: a worker taken out of traffic for inspection keeps running while its
//! successor serves in its place, and is stopped when the session ends — never counted as a
//! crash, never restarted.

use std::collections::HashSet;

use cluster2_tests::{Cluster, alive, eventually, get, post};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn worker(monitor: std::net::SocketAddr, pid: u32) -> Option<Value> {
    let all: Value = serde_json::from_str(&get(monitor, "/workers").unwrap().body).unwrap();
    all["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == pid)
        .cloned()
}

#[test]
fn a_debug_session_keeps_the_worker_out_of_traffic_until_it_ends() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();
    let target = cluster.workers[0];

    let r = post(cluster.monitor, &format!("/debug/workers/{target}/session"));
    assert_eq!(r.status, 200, "{}", r.body);
    // Its successor warms up and takes its place first.
    events.wait("debug_session_started", |e| e["pid"] == target);
    let replaced = events.wait("replaced", |e| e["pid"] == target);
    assert_eq!(replaced["reason"]["kind"], "debug_session", "{replaced}");
    let successor = replaced["successor"].as_u64().unwrap() as u32;
    events.rewind();
    events.wait("paused", |e| e["pid"] == target);
    let shown = worker(cluster.monitor, target).expect("still listed");
    assert_eq!(
        (shown["state"].as_str(), shown["debugging"].as_str()),
        (Some("paused"), Some("session"))
    );
    assert!(alive(target));

    // Traffic goes to the successor and the other worker only.
    let answered: HashSet<u32> = (0..300)
        .map(|_| get(cluster.app, "/pid").unwrap().body.parse().unwrap())
        .collect();
    assert!(!answered.contains(&target), "{answered:?}");
    assert!(answered.contains(&successor), "{answered:?}");

    // A second session on it, or a replacement, is refused; so is an unknown pid.
    let again = post(cluster.monitor, &format!("/debug/workers/{target}/session"));
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(
        post(cluster.monitor, "/debug/workers/1/session").status,
        404
    );
    let not_debugging = post(
        cluster.monitor,
        &format!("/debug/workers/{successor}/session/end"),
    );
    assert_eq!(not_debugging.status, 409, "{}", not_debugging.body);

    // Ending it stops the worker: an expected exit, no restart.
    let end = post(
        cluster.monitor,
        &format!("/debug/workers/{target}/session/end"),
    );
    assert_eq!(end.status, 200, "{}", end.body);
    events.wait("debug_session_ended", |e| e["pid"] == target);
    let exited = events.wait("exited", |e| e["pid"] == target);
    assert_eq!(exited["expected"], true, "{exited}");
    assert!(eventually(cluster2_tests::SOON, || !alive(target)));
    assert!(!events.any("restart_scheduled", |_| true));
    let workers: Value =
        serde_json::from_str(&get(cluster.monitor, "/workers").unwrap().body).unwrap();
    assert_eq!(workers["workers"].as_array().unwrap().len(), 2);
}

/// The messages of a debug worker's log stream, read until `last` arrives (or the stream ends
/// or stays silent, which fails).
fn log_messages_until(monitor: std::net::SocketAddr, pid: u32, last: &str) -> Vec<Value> {
    let mut stream = cluster2_tests::Events::open(monitor, &format!("/debug/workers/{pid}/logs"));
    let mut lines = Vec::new();
    while let Some(event) = stream.next_sse() {
        assert_eq!(
            event.name, "message",
            "a line was lost: {event:?} after {lines:?}"
        );
        let done = event.data["message"] == last;
        lines.push(event.data);
        if done {
            return lines;
        }
    }
    panic!("no line `{last}` from debug worker {pid}; it sent: {lines:#?}")
}

fn worker_ids(monitor: std::net::SocketAddr) -> Vec<(u64, u32, String)> {
    let all: Value = serde_json::from_str(&get(monitor, "/workers").unwrap().body).unwrap();
    all["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["worker"].as_u64().unwrap(),
                w["pid"].as_u64().unwrap() as u32,
                w["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_new_debug_worker_logs_from_its_first_line_and_serves_only_once_released() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();

    let bad = cluster2_tests::post_body(
        cluster.monitor,
        "/debug/workers/new",
        "text/plain",
        "verbose",
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("verbose"), "{}", bad.body);

    let started =
        cluster2_tests::post_body(cluster.monitor, "/debug/workers/new", "text/plain", "debug")
            .unwrap();
    assert_eq!(started.status, 200, "{}", started.body);
    let started: Value = serde_json::from_str(&started.body).unwrap();
    let pid = started["pid"].as_u64().unwrap() as u32;
    let id = started["worker"].as_u64().unwrap();
    assert_eq!(started["filter"], "debug");
    events.wait("debug_worker_started", |e| {
        e["pid"] == pid && e["filter"] == "debug"
    });
    // Ready, and held.
    events.wait("paused", |e| e["pid"] == pid);
    let shown = worker(cluster.monitor, pid).expect("listed");
    assert_eq!(shown["state"], "paused", "{shown}");
    assert_eq!(shown["debugging"], "new", "{shown}");
    assert_eq!(shown["log_filter"], "debug", "{shown}");

    // Its stream, opened only now, starts at its first line: the hold, then the application's
    // first (debug) line, its debug-level start-up lines, and the warm-up.
    let lines = log_messages_until(cluster.monitor, pid, "warm-up request answered");
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages.first(),
        Some(&"debug worker: held out of traffic until released"),
        "{messages:?}"
    );
    let configure = messages.iter().position(|m| *m == "configure_app started");
    let warming = messages.iter().position(|m| *m == "warming up");
    assert!(
        configure.is_some() && warming.is_some() && configure < warming,
        "{messages:?}"
    );
    assert!(
        lines.iter().all(|l| l["fields"]["pid"]
            .as_str()
            .is_none_or(|p| p == pid.to_string())),
        "another process's line: {lines:#?}"
    );

    // Held: no request reaches it, and the usual controls refuse it.
    let answered: HashSet<u32> = (0..200)
        .map(|_| get(cluster.app, "/pid").unwrap().body.parse().unwrap())
        .collect();
    assert!(!answered.contains(&pid), "{answered:?}");
    for action in ["pause", "resume", "replace"] {
        let r = post(cluster.monitor, &format!("/workers/{pid}/{action}"));
        assert_eq!(r.status, 409, "{action}: {}", r.body);
    }
    let second = post(cluster.monitor, "/debug/workers/new");
    assert_eq!(second.status, 409, "{}", second.body);
    assert!(second.body.contains(&pid.to_string()), "{}", second.body);

    // Released: it takes its worker id over, and the process that served it drains.
    let old = worker_ids(cluster.monitor)
        .into_iter()
        .find(|(w, p, _)| *w == id && *p != pid)
        .map(|(_, p, _)| p)
        .expect("the worker id's process");
    let released = post(cluster.monitor, &format!("/debug/workers/{pid}/release"));
    assert_eq!(released.status, 200, "{}", released.body);
    let released: Value = serde_json::from_str(&released.body).unwrap();
    assert_eq!(released["replaced"], old, "{released}");
    events.wait("debug_worker_released", |e| {
        e["pid"] == pid && e["replaced"] == old
    });
    // The new one resumes and the old one exits, in either order.
    events.rewind();
    events.wait("resumed", |e| e["pid"] == pid);
    events.rewind();
    let exited = events.wait("exited", |e| e["pid"] == old);
    assert_eq!(exited["expected"], true, "{exited}");
    let shown = worker(cluster.monitor, pid).expect("listed");
    assert_eq!(shown["state"], "listening", "{shown}");
    assert_eq!(shown["worker"], id, "{shown}");
    assert!(shown["debugging"].is_null(), "{shown}");
    assert!(eventually(cluster2_tests::SOON, || {
        get(cluster.app, "/pid")
            .unwrap()
            .body
            .parse::<u32>()
            .unwrap()
            == pid
    }));
    assert!(!events.any("restart_scheduled", |_| true));
    let ids: Vec<u64> = worker_ids(cluster.monitor)
        .iter()
        .map(|(w, _, _)| *w)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

#[test]
fn a_debug_worker_that_fails_to_start_is_not_restarted_and_one_can_be_dismissed() {
    let marker = cluster2_tests::TempPath::new("debug-new-warm-up-fails");
    let cluster = Cluster::start(
        APP,
        &["--workers=2"],
        &[("FIXTURE_WARM_UP_FAIL_AFTER", marker.as_str())],
    );
    let mut events = cluster.events();
    let serving = cluster.workers.clone();

    // The next warm-up fails: the debug worker's, whose stream shows why.
    std::fs::write(marker.path(), "").unwrap();
    let started = post(cluster.monitor, "/debug/workers/new");
    assert_eq!(started.status, 200, "{}", started.body);
    let started: Value = serde_json::from_str(&started.body).unwrap();
    let pid = started["pid"].as_u64().unwrap() as u32;
    assert_eq!(started["filter"], "debug", "an empty body means debug");
    let failed = events.wait("start_failed", |e| e["pid"] == pid);
    assert_eq!(failed["stage"], "warm-up", "{failed}");
    let exited = events.wait("exited", |e| e["pid"] == pid);
    assert_eq!(exited["expected"], false, "{exited}");
    assert_eq!(exited["exit"]["status"], 3, "{exited}");
    // Not the worker id's crash: nothing restarts, the serving workers serve on.
    assert!(!events.any("restart_scheduled", |_| true));
    assert!(serving.iter().all(|&p| alive(p)));
    let now: Vec<u32> = worker_ids(cluster.monitor)
        .iter()
        .map(|(_, p, _)| *p)
        .collect();
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.iter().all(|p| serving.contains(p)),
        "{now:?} vs {serving:?}"
    );

    // Dismissed: it stops without serving.
    std::fs::remove_file(marker.path()).unwrap();
    let started = post(cluster.monitor, "/debug/workers/new");
    assert_eq!(started.status, 200, "{}", started.body);
    let pid: u32 = serde_json::from_str::<Value>(&started.body).unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    events.wait("paused", |e| e["pid"] == pid);
    // Only a debug worker can be released or dismissed; an unknown pid is a 404.
    let regular = post(
        cluster.monitor,
        &format!("/debug/workers/{}/release", serving[0]),
    );
    assert_eq!(regular.status, 409, "{}", regular.body);
    assert_eq!(
        post(cluster.monitor, "/debug/workers/1/dismiss").status,
        404
    );
    assert_eq!(
        post(cluster.monitor, "/debug/workers/1/release").status,
        404
    );
    let dismissed = post(cluster.monitor, &format!("/debug/workers/{pid}/dismiss"));
    assert_eq!(dismissed.status, 200, "{}", dismissed.body);
    events.wait("debug_worker_dismissed", |e| e["pid"] == pid);
    let exited = events.wait("exited", |e| e["pid"] == pid);
    assert_eq!(exited["expected"], true, "{exited}");
    assert!(!events.any("restart_scheduled", |_| true));
    assert!(serving.iter().all(|&p| alive(p)));
}
