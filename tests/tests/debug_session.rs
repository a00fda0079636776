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
        (shown["state"].as_str(), shown["debugging"].as_bool()),
        (Some("paused"), Some(true))
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
