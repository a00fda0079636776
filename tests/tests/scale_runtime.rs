//! Scaling at run time through `POST /workers/scale`: new workers warm up before they serve,
//! the highest worker ids drain and stop without failing a request, `/workers` and `/metrics`
//! follow, and bad bodies or bad moments are refused with the field or the reason named.

use cluster2_tests::{Cluster, Load, Proc, TempPath, get, is_ready, post, post_body};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn scale(cluster: &Cluster, body: &str) -> (u16, Value) {
    let r = post_body(cluster.monitor, "/workers/scale", "application/json", body).unwrap();
    let json = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    (r.status, json)
}

fn workers(cluster: &Cluster) -> Value {
    let r = get(cluster.monitor, "/workers").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// The worker ids in `/workers`, sorted, and their states.
fn ids_and_states(cluster: &Cluster) -> Vec<(u64, String)> {
    let mut all: Vec<(u64, String)> = workers(cluster)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["worker"].as_u64().unwrap(),
                w["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn scaling_up_warms_new_workers_and_scaling_down_drains_the_newest_without_failing_requests() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();
    assert_eq!(workers(&cluster)["expected"], 2);

    // To 3: worker id 2 starts, warms up, then listens.
    let (status, answer) = scale(&cluster, r#"{"workers": 3}"#);
    assert_eq!(
        (status, &answer),
        (200, &serde_json::json!({"from": 2, "to": 3}))
    );
    events.wait("scaled", |e| e["from"] == 2 && e["to"] == 3);
    let spawned = events.wait("spawned", |e| e["worker"] == 2);
    assert!(spawned["successor_of"].is_null(), "{spawned}");
    events.wait("warming", |e| e["worker"] == 2);
    events.wait("listening", |e| e["worker"] == 2);
    assert_eq!(workers(&cluster)["expected"], 3);
    assert_eq!(
        ids_and_states(&cluster),
        [0, 1, 2].map(|id| (id, "listening".to_owned()))
    );
    let metrics = get(cluster.monitor, "/metrics").unwrap().body;
    assert!(
        metrics.lines().any(|l| l == "cluster2_workers_expected 3"),
        "{metrics}"
    );

    // +1 and -1 by `delta`.
    let (status, answer) = scale(&cluster, r#"{"delta": 1}"#);
    assert_eq!(
        (status, &answer),
        (200, &serde_json::json!({"from": 3, "to": 4}))
    );
    events.wait("listening", |e| e["worker"] == 3);

    // Down to 2 under a small load: ids 3 and 2 (the newest) drain and stop; no request fails.
    let load = Load::start(cluster.app);
    let (status, answer) = scale(&cluster, r#"{"delta": -2}"#);
    assert_eq!(
        (status, &answer),
        (200, &serde_json::json!({"from": 4, "to": 2}))
    );
    events.wait("scaled", |e| e["from"] == 4 && e["to"] == 2);
    for id in [3, 2] {
        events.wait("stopping", |e| e["worker"] == id);
    }
    let mut gone = Vec::new();
    while gone.len() < 2 {
        let exited = events.next_of("exited");
        assert_eq!(exited["expected"], true, "{exited}");
        assert_eq!(exited["exit"]["status"], 0, "drained and stopped: {exited}");
        gone.push(exited["worker"].as_u64().unwrap());
    }
    gone.sort();
    assert_eq!(gone, [2, 3]);
    let (answered, failures) = load.finish();
    assert!(answered > 0, "the load ran");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(workers(&cluster)["expected"], 2);
    assert_eq!(
        ids_and_states(&cluster),
        [0, 1].map(|id| (id, "listening".to_owned()))
    );
    // No retired id is restarted: nothing is spawned until the cluster grows again.
    let mark = events.seen.len();
    let (status, _) = scale(&cluster, r#"{"workers": 3}"#);
    assert_eq!(status, 200);
    events.wait("scaled", |e| e["to"] == 3);
    let scaled_at = events.seen.len() - 1;
    assert!(
        !events.seen[mark..scaled_at]
            .iter()
            .any(|e| e["event"] == "spawned"),
        "{:?}",
        &events.seen[mark..]
    );
    events.wait("listening", |e| e["worker"] == 2);
}

#[test]
fn bad_bodies_and_bounds_are_400_naming_the_field() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    for (body, names) in [
        (r#"{"workers": 0}"#, "`workers`"),
        (r#"{"workers": "3"}"#, "`workers`"),
        (r#"{"workers": -1}"#, "`workers`"),
        (r#"{"delta": 0}"#, "`delta`"),
        (r#"{"delta": 1.5}"#, "`delta`"),
        (r#"{"workers": 3, "delta": 1}"#, "together"),
        (r#"{"workerz": 3}"#, "`workerz`"),
        (r#"{}"#, "no `workers` or `delta`"),
        ("3", "JSON object"),
        ("{", "not JSON"),
        (r#"{"workers": 100000}"#, "workers must be from 1 to"),
        (r#"{"delta": -2}"#, "at least one"),
    ] {
        let (status, answer) = scale(&cluster, body);
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(names), "{body}: {error}");
    }
    // Nothing changed.
    assert_eq!(workers(&cluster)["expected"], 2);
}

#[test]
fn a_scale_down_during_a_replacement_is_refused_and_growing_is_not() {
    // Successors wait in their warm-up while the gate file is missing.
    let gate = TempPath::new("scale-gate");
    std::fs::write(gate.path(), b"open").unwrap();
    let cluster = Cluster::start(
        APP,
        &["--workers=2"],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    let mut events = cluster.events();
    std::fs::remove_file(gate.path()).unwrap();
    let r = post(cluster.monitor, "/workers/restart");
    assert_eq!(r.status, 200, "{}", r.body);
    events.wait("replacing", |_| true);

    let (status, answer) = scale(&cluster, r#"{"delta": -1}"#);
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("death queue"),
        "{answer}"
    );
    let (status, answer) = scale(&cluster, r#"{"delta": 1}"#);
    assert_eq!(
        (status, &answer),
        (200, &serde_json::json!({"from": 2, "to": 3}))
    );

    std::fs::write(gate.path(), b"open").unwrap();
    events.wait("listening", |e| e["worker"] == 2);
    for id in [0, 1] {
        events.rewind();
        events.wait("replaced", |e| e["worker"] == id);
    }
    // Once the queue is empty, shrinking is allowed again.
    let (status, answer) = scale(&cluster, r#"{"workers": 2}"#);
    assert_eq!(
        (status, &answer),
        (200, &serde_json::json!({"from": 3, "to": 2}))
    );
    events.wait("exited", |e| e["worker"] == 2);
}

#[test]
fn a_scale_while_the_cluster_starts_is_refused_with_409() {
    // The first worker waits in its warm-up until the gate exists: the cluster is starting.
    let gate = TempPath::new("scale-start-gate");
    let mut proc = cluster2_tests::Proc::spawn(
        APP,
        &["--port=0", "--mon-port=0", "--workers=1"],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    let mut events = proc.events();
    events.wait("warming", |e| e["worker"] == 0);
    proc.rewind();
    let starting = proc.wait_line("the starting line", |l| l.contains(": starting "));
    let monitor: std::net::SocketAddr = cluster2_tests::field(&starting, "monitor")
        .unwrap()
        .parse()
        .unwrap();
    let r = post_body(
        monitor,
        "/workers/scale",
        "application/json",
        r#"{"workers": 2}"#,
    )
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("starting"), "{}", r.body);

    std::fs::write(gate.path(), b"open").unwrap();
    events.wait("ready", |_| true);
    assert!(!events.any("scaled", |_| true), "nothing was scaled");
}

#[test]
fn growing_beyond_what_the_open_files_limit_holds_is_refused_naming_the_limit() {
    // A hard limit of 300: the monitor gets 220 connections of it (a warning says so), and the
    // master's reserve beside them holds 2 workers.
    let mut proc = Proc::spawn(
        "prlimit",
        &[
            "--nofile=300:300",
            "--",
            APP,
            "--workers=2",
            "--port=0",
            "--mon-port=0",
        ],
        &[],
    );
    let ready = proc.wait_line("with the ready message", is_ready);
    let cluster = Cluster::from_ready(proc, &ready);
    for body in [r#"{"delta": 1}"#, r#"{"workers": 5}"#] {
        let (status, answer) = scale(&cluster, body);
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("from 1 to 2")
                && error.contains("open-files limit (300)")
                && error.contains("220 connections"),
            "{error}"
        );
    }
    assert_eq!(workers(&cluster)["expected"], 2);
    // A shrink needs no more descriptors: never refused for them.
    let (status, answer) = scale(&cluster, r#"{"workers": 1}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(workers(&cluster)["expected"], 1);
}
