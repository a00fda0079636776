//! Statuses across real processes, read and set through the monitor app.

use std::net::SocketAddr;

use cluster2_tests::{Cluster, alive, eventually, get};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn json(addr: SocketAddr, path: &str) -> Value {
    let response = get(addr, path).unwrap();
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let response = cluster2_tests::post_body(addr, path, "application/json", body).unwrap();
    (
        response.status,
        serde_json::from_str(&response.body).unwrap_or(Value::Null),
    )
}

fn pids_of(entries: &Value) -> Vec<u64> {
    let mut pids: Vec<u64> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    pids.sort_unstable();
    pids
}

#[test]
fn two_workers_and_the_master_answer_and_updates_reach_every_process() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut expected: Vec<u64> = cluster.workers.iter().map(|&p| u64::from(p)).collect();
    expected.push(u64::from(cluster.proc.pid()));
    expected.sort_unstable();

    // The master registers `worker` in its main, which runs just after the ready line.
    assert!(eventually(cluster2_tests::SOON, || {
        pids_of(&json(cluster.monitor, "/statuses/worker")) == expected
    }));
    let entries = json(cluster.monitor, "/statuses/worker");
    for entry in entries.as_array().unwrap() {
        assert_eq!(entry["status"], entry["pid"].to_string(), "{entry}");
    }

    let (status, entries) = post_json(cluster.monitor, "/statuses/worker", "\"updated\"");
    assert_eq!(status, 200);
    assert_eq!(pids_of(&entries), expected);
    for entry in json(cluster.monitor, "/statuses/worker")
        .as_array()
        .unwrap()
    {
        assert_eq!(entry["status"], "updated");
    }

    // A read-only status ignores updates.
    let (_, entries) = post_json(cluster.monitor, "/statuses/pid", "123");
    for entry in entries.as_array().unwrap() {
        assert_eq!(entry["status"], entry["pid"]);
    }

    // Unknown name, bad body.
    let response = get(cluster.monitor, "/statuses/nope").unwrap();
    assert_eq!(response.status, 404);
    assert!(response.body.contains("no status named `nope`"));
    let (status, _) = post_json(cluster.monitor, "/statuses/worker", "{not json");
    assert_eq!(status, 400);

    // Everything at once.
    let all = json(cluster.monitor, "/statuses");
    assert_eq!(pids_of(&all["worker"]), expected);
    assert_eq!(pids_of(&all["pid"]), expected);
}

#[test]
fn a_status_registered_by_the_macro_is_in_every_process_from_the_start() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let entries = json(cluster.monitor, "/statuses/uptime-owner");
    let mut expected: Vec<u64> = cluster.workers.iter().map(|&p| u64::from(p)).collect();
    expected.push(u64::from(cluster.proc.pid()));
    expected.sort_unstable();
    assert_eq!(pids_of(&entries), expected);
    for entry in entries.as_array().unwrap() {
        assert_eq!(entry["status"], format!("pid {}", entry["pid"]));
    }
    // Read-only: a set leaves it as it is.
    let (status, entries) = post_json(cluster.monitor, "/statuses/uptime-owner", "\"x\"");
    assert_eq!(status, 200);
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] != "x")
    );
}

#[test]
fn a_killed_workers_entry_disappears() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();
    let victim = cluster.workers[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exited = events.wait("exited", |e| e["pid"] == victim);
    assert_eq!(exited["exit"]["signal"], 9, "{exited}");
    assert!(eventually(cluster2_tests::SOON, || !alive(victim)));
    let pids = pids_of(&json(cluster.monitor, "/statuses/pid"));
    assert!(!pids.contains(&u64::from(victim)), "{pids:?}");
    // Its replacement appears once it serves.
    events.wait("listening", |e| e["worker"] == exited["worker"]);
    assert!(eventually(cluster2_tests::SOON, || pids_of(&json(
        cluster.monitor,
        "/statuses/pid"
    ))
    .len()
        == 3));
}

#[test]
fn a_silent_worker_becomes_an_entry_with_an_error() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[("FIXTURE_SLOW_STATUS", "1")]);
    // The master registers its own `slow` in main, just after the ready line.
    let mut entries = Value::Null;
    assert!(eventually(cluster2_tests::SOON, || {
        entries = json(cluster.monitor, "/statuses/slow");
        entries.as_array().unwrap().len() == 3
    }));
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 3, "two workers and the master: {entries:?}");
    for entry in entries {
        assert_eq!(entry["status"], Value::Null);
        assert!(
            entry["error"]
                .as_str()
                .unwrap()
                .contains("no answer within 1s"),
            "{entry}"
        );
    }
}
