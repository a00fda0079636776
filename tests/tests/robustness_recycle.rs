//! The recycling options: `max_requests` with its jitter and `max_memory` replace workers
//! through the death queue, one at a time, each with its reason; bad values are refused.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cluster2_tests::{Cluster, Events, KeepAlive, alive, get};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn pid(event: &Value) -> u32 {
    event["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in {event}"))
}

/// From the events: a replacement starts only once the previous one finished, and each old
/// worker stops only once its successor serves.
fn assert_one_at_a_time(events: &Events) {
    let mut in_progress: Option<u32> = None;
    let mut successor_ready = false;
    for event in &events.seen {
        match event["event"].as_str().unwrap_or_default() {
            "replacing" => {
                assert!(
                    in_progress.is_none(),
                    "two replacements overlap at: {event}"
                );
                in_progress = Some(pid(event));
                successor_ready = false;
            }
            "successor_ready" => {
                assert_eq!(in_progress, Some(pid(event)), "{event}");
                successor_ready = true;
            }
            "stopping" if in_progress == Some(pid(event)) => {
                assert!(
                    successor_ready,
                    "the old worker stopped before its successor served: {event}"
                );
            }
            "replaced" | "replacement_failed" => {
                assert!(
                    in_progress.is_some(),
                    "a replacement ended that never started: {event}"
                );
                in_progress = None;
            }
            _ => {}
        }
    }
}

/// Keep-alive clients sending `GET /` until stopped, each counting what failed.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(app: std::net::SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    let mut client = KeepAlive::new(app);
                    let mut failed = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get("/") {
                            Ok(r) if r.status == 200 && r.body == "hello world" => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failed.push(format!("{other:?}")),
                        }
                    }
                    failed
                })
            })
            .collect();
        Self { stop, ok, threads }
    }

    /// Stops the clients; returns how many requests succeeded and every failure.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

#[test]
fn max_requests_replaces_workers_one_at_a_time_within_their_jitter() {
    const LIMIT: u64 = 300;
    const JITTER: u64 = 200;
    let cluster = Cluster::start(
        APP,
        &[
            "--workers=2",
            "--max-requests=300",
            "--max-requests-jitter=200",
        ],
        &[],
    );
    let mut events = cluster.events();
    let load = Load::start(cluster.app, 3);
    // Six replacements: every worker, its successor, and the successor's successor.
    let replaced: Vec<Value> = (0..6).map(|_| events.next_of("replaced")).collect();
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed while workers were recycled: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );

    let mut limits = BTreeSet::new();
    for event in &replaced {
        let reason = &event["reason"];
        assert_eq!(reason["kind"], "max_requests", "{event}");
        let limit = reason["limit"].as_u64().expect("limit");
        let served = reason["requests_total"].as_u64().expect("requests_total");
        assert!(
            (LIMIT..=LIMIT + JITTER).contains(&limit),
            "a limit outside max_requests + jitter: {event}"
        );
        assert!(served >= limit, "replaced before its limit: {event}");
        limits.insert(limit);
    }
    // The jitter is drawn per worker: six workers did not all get the same limit.
    assert!(limits.len() > 1, "one limit for every worker: {limits:?}");
    // Each was queued once, with the reason it was replaced for.
    for event in &replaced {
        let queued: Vec<&Value> = events
            .seen
            .iter()
            .filter(|e| e["event"] == "queued" && pid(e) == pid(event))
            .collect();
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert_eq!(queued[0]["reason"]["limit"], event["reason"]["limit"]);
    }
    assert_one_at_a_time(&events);
    assert!(cluster.workers.iter().all(|&p| !alive(p)));
    // The log line says why, in words.
    let mut proc = cluster.proc;
    let line = proc.wait_for("for replacement: max_requests: answered ");
    assert!(line.contains(", its limit "), "{line}");
}

#[test]
fn max_memory_replaces_the_worker_that_grew_and_no_other() {
    let cluster = Cluster::start(
        APP,
        &[
            "--workers=2",
            "--max-memory=160MiB",
            "--heartbeat-interval=100ms",
        ],
        &[],
    );
    let mut events = cluster.events();
    // Whichever worker answers grows past the limit and keeps the memory.
    let grown = get(cluster.app, "/grow?mib=200").unwrap();
    assert_eq!(grown.status, 200, "{grown:?}");
    let (grown_pid, held) = grown.body.split_once(' ').expect("pid and MiB held");
    let grown_pid: u32 = grown_pid.parse().unwrap();
    assert_eq!(held, "200");
    let other = *cluster
        .workers
        .iter()
        .find(|&&p| p != grown_pid)
        .expect("the other worker");

    let replaced = events.wait("replaced", |e| pid(e) == grown_pid);
    let reason = &replaced["reason"];
    assert_eq!(reason["kind"], "max_memory", "{replaced}");
    assert_eq!(reason["limit_bytes"], 160u64 << 20, "{replaced}");
    assert!(
        reason["memory_bytes"].as_u64().unwrap() >= 160 << 20,
        "{replaced}"
    );
    // The other worker reports less than the limit, so no heartbeat of it can have been
    // judged over it; and nothing but the grown one was ever queued or replaced.
    let workers: Value =
        serde_json::from_str(&get(cluster.monitor, "/workers").unwrap().body).unwrap();
    let entry = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == other)
        .unwrap_or_else(|| panic!("worker {other} is gone: {workers}"))
        .clone();
    let memory = entry["heartbeat"]["memory_bytes"].as_u64().expect("memory");
    assert!(memory < 160 << 20, "{entry}");
    let recent: Value =
        serde_json::from_str(&get(cluster.monitor, "/events/recent").unwrap().body).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for event in recent.as_array().expect("an array of events") {
        if matches!(
            event["event"].as_str(),
            Some("queued" | "replacing" | "replaced")
        ) {
            assert_eq!(pid(event), grown_pid, "another worker was touched: {event}");
            *counts.entry(event["event"].as_str().unwrap()).or_default() += 1;
        }
    }
    assert_eq!(counts["queued"], 1, "queued once: {counts:?}");
    assert_one_at_a_time(&events);
    assert!(alive(other));
    assert!(!alive(grown_pid));
    let mut proc = cluster.proc;
    let line = proc.wait_for("for replacement: max_memory: ");
    assert!(line.contains("MiB resident, max_memory 160MiB"), "{line}");
}

#[test]
fn bad_recycling_values_are_refused_naming_the_flag_and_what_is_valid() {
    let cases: &[(&str, &str)] = &[
        (
            "--max-requests=-1",
            "a whole number from 0 to 1000000000000 (0: never)",
        ),
        (
            "--max-requests=lots",
            "a whole number from 0 to 1000000000000 (0: never)",
        ),
        (
            "--max-requests=1000000000001",
            "a whole number from 0 to 1000000000000 (0: never)",
        ),
        (
            "--max-requests-jitter=2.5",
            "a whole number from 0 to 1000000000000",
        ),
        (
            "--max-memory=1KiB",
            "a size from 1MiB to 1PiB, like 512MiB or 4GiB, or none",
        ),
        (
            "--max-memory=2PiB",
            "a size from 1MiB to 1PiB, like 512MiB or 4GiB, or none",
        ),
        ("--max-memory=512 parsecs", "a size from 1MiB to 1PiB"),
    ];
    for (arg, expected) in cases {
        let (flag, value) = arg.split_once('=').unwrap();
        let out = Command::new(APP)
            .arg(arg)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value `{value}` for {flag}: expected {expected}"
            )),
            "{arg}: {stderr}"
        );
    }
    // What is valid reads back as written; unset and 0 are the defaults.
    let out = Command::new(APP)
        .args(["--check", "--max-requests=1000", "--max-memory=512MiB"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let options: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(options["max_requests"], 1000);
    assert_eq!(options["max_requests_jitter"], 0);
    assert_eq!(options["max_memory"], "512MiB");
    let out = Command::new(APP)
        .arg("--check")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let defaults: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(defaults["max_requests"], 0);
    assert_eq!(defaults["max_memory"], Value::Null);
}

/// A worker in a debug session is the operator's: past both limits, on a connection it kept
/// open, it is still never queued.
#[test]
fn a_worker_in_a_debug_session_is_never_recycled() {
    let cluster = Cluster::start(
        APP,
        &[
            "--workers=2",
            "--max-requests=50",
            "--max-memory=160MiB",
            "--heartbeat-interval=100ms",
        ],
        &[],
    );
    let mut events = cluster.events();
    let mut kept = KeepAlive::new(cluster.app);
    let target: u32 = kept.get("/pid").unwrap().body.parse().unwrap();

    let r = cluster2_tests::post(cluster.monitor, &format!("/debug/workers/{target}/session"));
    assert_eq!(r.status, 200, "{}", r.body);
    events.wait("debug_session_started", |e| pid(e) == target);
    events.wait("replaced", |e| pid(e) == target);

    // Its kept connection still reaches it: past max_requests, then past max_memory.
    for _ in 0..60 {
        let answer = kept.get("/pid").unwrap();
        assert_eq!(answer.body, target.to_string(), "the kept connection moved");
    }
    let grown = kept.get("/grow?mib=200").unwrap();
    assert_eq!(grown.body, format!("{target} 200"));
    // The master has had its heartbeats over both limits…
    assert!(cluster2_tests::eventually(cluster2_tests::SOON, || {
        let workers: Value =
            serde_json::from_str(&get(cluster.monitor, "/workers").unwrap().body).unwrap();
        workers["workers"].as_array().unwrap().iter().any(|w| {
            let beat = &w["heartbeat"];
            w["pid"] == target
                && beat["memory_bytes"].as_u64() >= Some(160 << 20)
                && beat["requests_total"].as_u64() >= Some(61)
        })
    }));
    // …and queued it for nothing but its debug session.
    let recent: Value =
        serde_json::from_str(&get(cluster.monitor, "/events/recent").unwrap().body).unwrap();
    for event in recent.as_array().expect("an array of events") {
        if event["event"] == "queued" || event["event"] == "replacing" {
            assert_eq!(event["reason"]["kind"], "debug_session", "{event}");
        }
    }
    assert!(alive(target));
}
