//! Replacing workers one at a time: age, runaways, failed successors, operator controls.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cluster2_tests::{Cluster, Events, TempPath, alive, eventually, get, post};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn workers(monitor: SocketAddr) -> Value {
    serde_json::from_str(&get(monitor, "/workers").unwrap().body).unwrap()
}

fn pid(event: &Value) -> u32 {
    event["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in {event}"))
}

/// Clients that send requests on new connections until stopped, counting outcomes.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(app: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match get(app, "/") {
                            Ok(r) if r.status == 200 && r.body == "hello world" => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(format!("{other:?}"));
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the clients; returns (succeeded, failures).
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors: Vec<String> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(self.failed.load(Ordering::Relaxed) as usize, errors.len());
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

#[test]
fn a_rolling_restart_under_load_fails_no_request() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();
    let load = Load::start(cluster.app, 4);
    // Some traffic before, during and after.
    assert!(eventually(cluster2_tests::SOON, || load
        .ok
        .load(Ordering::Relaxed)
        > 200));
    cluster.proc.signal(nix::sys::signal::Signal::SIGHUP);
    let first = events.next_of("replaced");
    let second = events.next_of("replaced");
    for replaced in [&first, &second] {
        assert_eq!(replaced["reason"]["kind"], "rolling_restart", "{replaced}");
        assert_eq!(replaced["reason"]["sighup"], true, "{replaced}");
    }
    let before = load.ok.load(Ordering::Relaxed);
    assert!(eventually(cluster2_tests::SOON, || load
        .ok
        .load(Ordering::Relaxed)
        > before + 200));
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {:?}",
        errors.len(),
        ok,
        &errors[..errors.len().min(5)]
    );
    // Both workers were replaced, strictly one after the other.
    let old: HashSet<u32> = cluster.workers.iter().copied().collect();
    let replaced: HashSet<u32> = [pid(&first), pid(&second)].into();
    assert_eq!(replaced, old);
    assert!(cluster.workers.iter().all(|&p| !alive(p)));
    assert_one_at_a_time(&events);
}

/// From the events: a replacement starts only once the previous one finished.
fn assert_one_at_a_time(events: &Events) {
    let mut in_progress = false;
    for event in &events.seen {
        let kind = event["event"].as_str().unwrap_or_default();
        if kind == "replacing" {
            assert!(!in_progress, "two replacements overlap at: {event}");
            in_progress = true;
        } else if kind == "replaced" || kind == "replacement_failed" {
            assert!(
                in_progress,
                "a replacement ended that never started: {event}"
            );
            in_progress = false;
        }
    }
}

#[test]
fn max_age_recycles_workers_one_at_a_time_within_bounds() {
    let cluster = Cluster::start(
        APP,
        &["--workers=2", "--max-age=2s", "--heartbeat-interval=100ms"],
        &[],
    );
    let mut events = cluster.events();
    let (mut min_serving, mut max_serving) = (usize::MAX, 0);
    let mut replaced = 0;
    while replaced < 4 {
        let listening = workers(cluster.monitor)["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "listening")
            .count();
        min_serving = min_serving.min(listening);
        max_serving = max_serving.max(listening);
        // Sample again at each step of a replacement.
        if events.next_any()["event"] == "replaced" {
            replaced += 1;
        }
    }
    assert!(
        events
            .seen
            .iter()
            .filter(|e| e["event"] == "replaced")
            .all(|e| e["reason"]["kind"] == "old_age"),
        "the reason is age"
    );
    assert_one_at_a_time(&events);
    assert!(
        min_serving >= 2 && max_serving <= 3,
        "serving workers ranged {min_serving}..={max_serving}"
    );
    // Still serving.
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");
}

#[test]
fn a_worker_blocking_every_runtime_thread_is_replaced_by_the_nanny() {
    let cluster = Cluster::start(
        APP,
        &[
            "--workers=2",
            "--threads=1",
            "--heartbeat-interval=200ms",
            "--nanny.tolerance=1s",
        ],
        &[],
    );
    let app = cluster.app;
    // Blocks whichever worker takes it, for longer than the test.
    let _blocked = std::thread::spawn(move || get(app, "/block?ms=60000"));
    let mut events = cluster.events();
    let runaway = events.wait("queued", |e| e["reason"]["kind"] == "runaway");
    let stuck = pid(&runaway);
    assert!(cluster.workers.contains(&stuck));
    assert!(
        runaway["reason"]["silent_secs"].as_f64().unwrap() > 1.0,
        "{runaway}"
    );
    let exited = events.wait("exited", |e| e["pid"] == stuck);
    assert_eq!(exited["exit"]["signal_name"], "SIGKILL", "{exited}");
    let replaced = events.next_of("replaced");
    assert_eq!(pid(&replaced), stuck);
    assert!(!alive(stuck), "the stuck worker was killed");
    assert_one_at_a_time(&events);
    // Two workers serve again, neither of them the stuck one.
    let pids: HashSet<u32> = (0..200)
        .map(|_| get(cluster.app, "/pid").unwrap().body.parse().unwrap())
        .collect();
    assert!(!pids.contains(&stuck), "{pids:?}");
}

#[test]
fn a_successor_that_fails_warm_up_is_retried_while_the_old_worker_keeps_serving() {
    let marker = TempPath::new("break-warm-up");
    let mut cluster = Cluster::start(
        APP,
        &["--workers=1", "--death-queue.retries=2"],
        &[("FIXTURE_WARM_UP_FAIL_AFTER", marker.as_str())],
    );
    let mut events = cluster.events();
    let old = cluster.workers[0];
    std::fs::write(marker.path(), b"broken").unwrap();
    assert_eq!(
        post(cluster.monitor, &format!("/workers/{old}/replace")).status,
        200
    );
    let queued = events.wait("queued", |e| e["pid"] == old);
    assert_eq!(queued["reason"]["kind"], "operator", "{queued}");
    let first = events.wait("start_failed", |e| e["stage"] == "warm-up");
    let retry = events.next_of("successor_failed");
    assert_eq!(
        (retry["pid"].as_u64(), retry["attempt"].as_u64()),
        (Some(old.into()), Some(1))
    );
    let second = events.wait("start_failed", |e| e["stage"] == "warm-up");
    assert_ne!(pid(&first), pid(&second), "a new successor each try");
    let gave_up = events.next_of("replacement_failed");
    assert_eq!(pid(&gave_up), old, "{gave_up}");
    assert!(events.any("successor_failed", |e| e["attempt"] == 2 && e["tries"] == 2));
    cluster.proc.wait_for("gave up replacing");
    // The old worker served throughout and still does.
    assert!(alive(old));
    assert_eq!(get(cluster.app, "/pid").unwrap().body, old.to_string());
}

#[test]
fn pause_and_resume_steer_new_connections() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();
    let (a, b) = (cluster.workers[0], cluster.workers[1]);
    let r = post(cluster.monitor, &format!("/workers/{a}/pause"));
    assert_eq!(r.status, 200, "{}", r.body);
    let state = |pid: u32| {
        workers(cluster.monitor)["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["pid"] == pid)
            .map(|w| w["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state(a).as_deref(), Some("paused"));
    let paused = events.next_of("paused");
    assert_eq!(pid(&paused), a);
    let metrics = get(cluster.monitor, "/metrics").unwrap().body;
    assert!(
        metrics.contains("cluster2_workers{state=\"paused\"} 1"),
        "the per-state gauge counts the paused worker:\n{metrics}"
    );
    for _ in 0..300 {
        assert_eq!(
            get(cluster.app, "/pid").unwrap().body,
            b.to_string(),
            "a paused worker took a connection"
        );
    }
    assert_eq!(
        post(cluster.monitor, &format!("/workers/{a}/resume")).status,
        200
    );
    assert_eq!(state(a).as_deref(), Some("listening"));
    assert_eq!(pid(&events.next_of("resumed")), a);
    assert!(
        (0..5000).any(|_| get(cluster.app, "/pid").unwrap().body == a.to_string()),
        "the resumed worker never answered"
    );
    // Mistakes are clear.
    let r = post(cluster.monitor, "/workers/1/pause");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no worker with pid 1"), "{}", r.body);
    assert_eq!(
        post(cluster.monitor, &format!("/workers/{a}/explode")).status,
        404
    );
    assert_eq!(post(cluster.monitor, "/workers/abc/pause").status, 400);
    // The death queue is visible, as a status and on /workers.
    assert!(workers(cluster.monitor)["death_queue"].is_array());
    let status: Value =
        serde_json::from_str(&get(cluster.monitor, "/statuses/death_queue").unwrap().body).unwrap();
    assert_eq!(status[0]["status"], serde_json::json!([]));
}

#[test]
fn a_rolling_restart_loses_nothing_on_kept_alive_connections() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = cluster.app;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut client = cluster2_tests::KeepAlive::new(app);
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match client.get("/") {
                        Ok(r) if r.status == 200 => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                (ok, failed)
            })
        })
        .collect();
    // The restart starts once the clients are at work on their kept connections (on a busy
    // machine their threads may otherwise first run after it is over).
    assert!(
        cluster2_tests::eventually(cluster2_tests::SOON, || answered.load(Ordering::Relaxed)
            >= 200),
        "the clients got answers before the restart"
    );
    cluster.proc.signal(nix::sys::signal::Signal::SIGHUP);
    events.next_of("replaced");
    events.next_of("replaced");
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (ok, failed) = client.join().unwrap();
        assert!(
            failed.is_empty(),
            "requests failed on kept-alive connections: {failed:?}"
        );
        total += ok;
    }
    assert!(
        total > 100,
        "the clients were busy throughout ({total} requests)"
    );
}
