//! The cache across real processes: workers, a supervised manager, and the master.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use cluster2_tests::{Cluster, Events, Response, TempPath, alive, eventually, get, post};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// Runs `requests` concurrently (each on its own connection) and returns the answers in order.
fn concurrently(app: SocketAddr, requests: Vec<String>) -> Vec<Response> {
    let threads: Vec<_> = requests
        .into_iter()
        .map(|path| std::thread::spawn(move || get(app, &path).unwrap()))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn mix(app: SocketAddr, sets: usize, gets: usize) {
    let mut requests = Vec::new();
    for i in 0..sets.max(gets) {
        if i < sets {
            requests.push("/cache/set?key=key&value=cache-test-value".to_owned());
        }
        if i < gets {
            requests.push("/cache/get?key=key".to_owned());
        }
    }
    for (path, answer) in requests.iter().zip(concurrently(app, requests.clone())) {
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        if path.contains("/set") {
            assert_eq!(answer.body, "cache-test-value");
        } else {
            assert!(
                ["cache-test-value", "cache-test"].contains(&answer.body.as_str()),
                "{answer:?}"
            );
        }
    }
}

#[test]
fn the_originals_read_write_mixes_all_succeed() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    mix(cluster.app, 2, 18);
    mix(cluster.app, 10, 10);
    mix(cluster.app, 18, 2);
    // The monitor shows the namespace and its figures.
    let caches: serde_json::Value =
        serde_json::from_str(&get(cluster.monitor, "/caches").unwrap().body).unwrap();
    assert_eq!(caches["backend"], "local", "{caches}");
    assert_eq!(caches["connected"], true, "{caches}");
    let ns = caches["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "cache-test")
        .unwrap();
    assert_eq!(ns["entries"], 1);
    assert!(ns["hits"].as_u64().unwrap() > 0);
    let metrics = get(cluster.monitor, "/metrics").unwrap().body;
    assert!(
        metrics.contains("cluster2_cache_hits_total{namespace=\"cache-test\"}"),
        "{metrics}"
    );
}

#[test]
fn one_loader_for_a_hundred_concurrent_gets_across_workers() {
    let mut cluster = Cluster::start(APP, &["--workers=2"], &[]);
    // Which worker takes a connection is the kernel's choice: a burst can land on one worker
    // only. Each wave uses a fresh key, and waves go on until one spread over both workers, so
    // that single flight is shown across processes; every wave must load its key once.
    let mut waves = 0;
    let spread = (0..8).any(|wave| {
        waves += 1;
        let answers = concurrently(
            cluster.app,
            (0..100)
                .map(|_| format!("/cache/load?key=hot{wave}"))
                .collect(),
        );
        let values: HashSet<String> = answers
            .iter()
            .map(|a| {
                assert_eq!(a.status, 200, "{a:?}");
                a.body.split(" for ").next().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            values.len(),
            1,
            "everyone got the one loaded value of hot{wave}: {values:?}"
        );
        let served_by: HashSet<&str> = answers
            .iter()
            .map(|a| a.body.split(" for ").nth(1).unwrap())
            .collect();
        served_by.len() == 2
    });
    assert!(spread, "no wave of 100 gets reached both workers");
    // Let any other loader line arrive, then count: exactly one per key.
    cluster.proc.signal(Signal::SIGTERM);
    cluster.proc.wait_exit();
    let loaders = cluster
        .proc
        .log
        .iter()
        .filter(|l| l.contains("loader ran"))
        .count();
    assert_eq!(loaders, waves, "{:#?}", cluster.proc.log);
}

#[test]
fn a_waiter_completes_when_the_loading_worker_is_killed() {
    let marker = TempPath::new("loader-marker");
    let mut cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let app = cluster.app;
    let path = format!("/cache/load?key=orphan&marker={}", marker.as_str());
    let first = {
        let p = path.clone();
        std::thread::spawn(move || get(app, &p))
    };
    let started = cluster.proc.wait_for("slow loader started");
    let loader: u32 = cluster2_tests::field(&started, "pid")
        .unwrap()
        .parse()
        .unwrap();
    // Steer new connections away from the loader, then queue a waiter on the other worker.
    assert_eq!(
        post(cluster.monitor, &format!("/workers/{loader}/pause")).status,
        200
    );
    let waiter = {
        let p = path.clone();
        std::thread::spawn(move || get(app, &p))
    };
    // The waiter is parked at the manager once its worker has asked; give the kill a reason to
    // matter by waiting until the manager counts it.
    assert!(eventually(cluster2_tests::SOON, || {
        let caches: serde_json::Value =
            serde_json::from_str(&get(cluster.monitor, "/caches").unwrap().body).unwrap();
        caches["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["namespace"] == "cache-test" && n["lock_waits"].as_u64() >= Some(1))
    }));
    kill(Pid::from_raw(loader as i32), Signal::SIGKILL).unwrap();
    let answer = waiter.join().unwrap().expect("the waiter is answered");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.starts_with("loaded by"), "{answer:?}");
    assert!(
        !answer.body.contains(&format!("loaded by {loader} ")),
        "the killed loader never finished"
    );
    assert!(
        first.join().unwrap().is_err(),
        "the killed worker's own request died with it"
    );
}

/// The pid of the next standalone cache manager that serves.
fn cache_manager_pid(events: &mut Events) -> u32 {
    let up = events.wait("cache_manager_up", |e| e["pid"].is_u64());
    up["pid"].as_u64().unwrap() as u32
}

#[test]
fn the_cache_manager_exits_when_the_master_is_killed() {
    let mut cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let manager = cache_manager_pid(&mut cluster.events());
    assert!(alive(manager));
    // The manager arms its parent-death signal itself, after exec: nothing of the master runs
    // in the child before it.
    cluster.proc.signal(Signal::SIGKILL);
    cluster.proc.wait_exit();
    let gone = eventually(Duration::from_secs(10), || !alive(manager));
    if !gone {
        let _ = kill(Pid::from_raw(manager as i32), Signal::SIGKILL);
    }
    assert!(
        gone,
        "the cache manager (pid {manager}) outlived its master"
    );
}

#[test]
fn persistent_namespaces_survive_a_killed_manager_and_watches_fire_once() {
    let dir = TempPath::new("persist");
    let persist = format!("--cache.persist-path={}", dir.as_str());
    let mut cluster = Cluster::start(
        APP,
        &["--workers=2", &persist],
        &[("FIXTURE_CACHE_WATCH", "1")],
    );
    let mut events = cluster.events();
    let manager = cache_manager_pid(&mut events);
    for i in 0..20 {
        let answer = get(
            cluster.app,
            &format!("/cache/set?ns=durable&persist=true&key=k{i}&value=v{i}"),
        )
        .unwrap();
        assert_eq!(answer.body, format!("v{i}"));
        assert_eq!(
            get(
                cluster.app,
                &format!("/cache/set?ns=volatile&key=k{i}&value=v{i}")
            )
            .unwrap()
            .status,
            200
        );
    }
    kill(Pid::from_raw(manager as i32), Signal::SIGKILL).unwrap();
    let down = events.next_of("cache_manager_down");
    assert_eq!(down["pid"], manager, "{down}");
    assert_eq!(down["exit"]["signal_name"], "SIGKILL", "{down}");
    let restarted = cache_manager_pid(&mut events);
    assert_ne!(restarted, manager);
    assert!(!alive(manager));
    // Everything persisted is back; the rest starts empty.
    for i in 0..20 {
        let answer = get(
            cluster.app,
            &format!("/cache/peek?ns=durable&persist=true&key=k{i}"),
        )
        .unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, format!("v{i}").as_str())
        );
        assert_eq!(
            get(cluster.app, &format!("/cache/peek?ns=volatile&key=k{i}"))
                .unwrap()
                .status,
            404
        );
    }
    // Watches survive the restart, once per watching process.
    let before = cluster.proc.log.len();
    assert_eq!(
        get(cluster.app, "/cache/set?ns=watched&key=after&value=restart")
            .unwrap()
            .status,
        200
    );
    cluster.proc.wait_line("a watch on `after`", |l| {
        l.contains("watch fired key=after")
    });
    cluster.proc.wait_line("a second watch on `after`", |l| {
        l.contains("watch fired key=after")
    });
    // Any third one would come from a doubled subscription; it would arrive with the next
    // change's, so make one and count.
    assert_eq!(
        get(cluster.app, "/cache/set?ns=watched&key=marker&value=x")
            .unwrap()
            .status,
        200
    );
    cluster.proc.wait_line("a watch on `marker`", |l| {
        l.contains("watch fired key=marker")
    });
    cluster.proc.wait_line("a second watch on `marker`", |l| {
        l.contains("watch fired key=marker")
    });
    let after = cluster.proc.log[before..]
        .iter()
        .filter(|l| l.contains("watch fired key=after"))
        .count();
    assert_eq!(after, 2, "two workers, one notice each");
}

#[test]
fn a_malformed_frame_closes_only_its_connection() {
    let mut cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let up = cluster.events().next_of("cache_manager_up");
    let socket = up["socket"].as_str().unwrap().to_owned();
    use std::io::{Read, Write};
    let mut hostile = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    hostile
        .write_all(&[0, 0, 0, 5, 1, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        hostile.read(&mut buf).unwrap(),
        0,
        "the manager closed the hostile connection"
    );
    let mut huge = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let _ = huge.write_all(&u32::MAX.to_be_bytes());
    assert_eq!(huge.read(&mut buf).unwrap_or(0), 0);
    // Everyone else is still served.
    assert_eq!(
        get(cluster.app, "/cache/set?key=k&value=still")
            .unwrap()
            .body,
        "still"
    );
    assert_eq!(get(cluster.app, "/cache/peek?key=k").unwrap().body, "still");
    cluster.proc.wait_for("closing the connection");
    // The socket lives in a private directory.
    use std::os::unix::fs::PermissionsExt;
    let dir = std::path::Path::new(&socket).parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn the_manager_can_run_inside_the_master_or_not_at_all() {
    let cluster = Cluster::start(APP, &["--workers=2", "--cache.mode=master"], &[]);
    mix(cluster.app, 10, 10);
    drop(cluster);
    let cluster = Cluster::start(APP, &["--workers=1", "--cache.enable=false"], &[]);
    let answer = get(cluster.app, "/cache/get?key=k").unwrap();
    assert_eq!(answer.status, 404);
    assert!(
        answer.body.contains("the cache is not enabled"),
        "{answer:?}"
    );
}
