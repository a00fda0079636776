//! The cache's memory in a running cluster: namespaces bounded by entries and bytes, the whole
//! cache by `cache.max_memory`; what is evicted, what is counted and told, what is never
//! evicted, what is refused, and what a persisted namespace brings back after a crash.

mod cache_wire;

use std::time::Duration;

use cache_wire::{Answer, call, connect, manager, rss, set};
use cluster2_tests::{Cluster, Response, SOON, TempPath, eventually, get};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn ok(answer: std::io::Result<Response>) -> String {
    let answer = answer.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

/// The manager's figures for `namespace`, from the monitor.
fn figures(cluster: &Cluster, namespace: &str) -> Value {
    let caches: Value =
        serde_json::from_str(&ok(get(cluster.monitor, "/caches"))).expect("/caches is JSON");
    caches["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == namespace)
        .unwrap_or_else(|| panic!("no namespace {namespace} in {caches}"))
        .clone()
}

/// The value of a metric line with this name and labels.
fn metric(cluster: &Cluster, series: &str) -> f64 {
    let metrics = ok(get(cluster.monitor, "/metrics"));
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[test]
fn a_namespace_past_its_bounds_evicts_counts_and_refuses_what_cannot_fit() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    for i in 0..30 {
        let path = format!("/cache/set?ns=bounded&max_entries=10&key=k{i}&value=v{i}");
        assert_eq!(ok(get(cluster.app, &path)), format!("v{i}"));
    }
    let bounded = figures(&cluster, "bounded");
    assert_eq!(
        (
            &bounded["entries"],
            &bounded["evictions"],
            &bounded["max_entries"]
        ),
        (&Value::from(10), &Value::from(20), &Value::from(10)),
        "{bounded}"
    );
    // The value just written is never what makes room for itself.
    assert_eq!(
        ok(get(cluster.app, "/cache/peek?ns=bounded&key=k29")),
        "v29"
    );
    assert_eq!(
        metric(
            &cluster,
            "cluster2_cache_evictions_total{namespace=\"bounded\"}"
        ),
        20.0
    );

    // Bytes: 20 values of about 105 bytes with their keys, in a namespace of 1000 bytes.
    let value = "x".repeat(100);
    for i in 0..20 {
        let path = format!("/cache/set?ns=small&max_bytes=1000&key=k{i:02}&value={value}");
        assert_eq!(ok(get(cluster.app, &path)), value);
    }
    let small = figures(&cluster, "small");
    assert!(
        small["bytes"].as_u64().unwrap() <= 1000 && small["evictions"].as_u64().unwrap() >= 10,
        "{small}"
    );
    // A value that alone is larger than the namespace may hold: refused, saying why.
    let big = "x".repeat(2000);
    let refused = get(
        cluster.app,
        &format!("/cache/set?ns=small&key=big&value={big}"),
    )
    .unwrap();
    assert_eq!(refused.status, 404, "{refused:?}");
    assert!(
        refused
            .body
            .contains("more than the namespace may hold (max_bytes: 1000 bytes)"),
        "{refused:?}"
    );
}

#[test]
fn the_whole_cache_stays_within_max_memory() {
    let cluster = Cluster::start(APP, &["--workers=1", "--cache.max-memory=8MiB"], &[]);
    let (socket, pid) = manager(&mut cluster.events());
    let mut client = connect(&socket);
    let before = rss(pid);
    // 64 MiB written, first to one namespace and then to another.
    let value = vec![b'7'; 64 << 10];
    for i in 0..1024u64 {
        let ns = if i < 512 { "first" } else { "second" };
        let answer = call(&mut client, i, &set(ns, &format!("k{i}"), &value));
        assert!(matches!(answer, Answer::Reply(5, _)), "{i}: {answer:?}");
    }
    let (first, second) = (figures(&cluster, "first"), figures(&cluster, "second"));
    let held = first["bytes"].as_u64().unwrap() + second["bytes"].as_u64().unwrap();
    assert!(held <= 8 << 20, "{first} {second}");
    // The second namespace's writes made room by evicting the first's older entries.
    assert!(first["evictions"].as_u64().unwrap() > 0, "{first}");
    assert!(second["entries"].as_u64().unwrap() > 0, "{second}");
    // And the process, not only the count, stayed near the bound (allocator slack aside).
    let grown = rss(pid).saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "the manager grew by {} MiB for a cache of 8 MiB",
        grown >> 20
    );
    // A value the whole cache could never hold is refused, naming the bound.
    let huge = vec![b'7'; 9 << 20];
    let answer = call(&mut client, 9999, &set("first", "huge", &huge));
    assert!(
        matches!(answer, Answer::Reply(9, _))
            && answer
                .text()
                .contains("more than the whole cache may hold (cache.max_memory: 8388608 bytes)"),
        "{}",
        answer.text()
    );
}

#[test]
fn evictions_tell_watchers_and_never_take_a_key_being_loaded() {
    let gate = TempPath::new("eviction-gate");
    let mut cluster = Cluster::start(
        APP,
        &["--workers=1"],
        &[
            ("FIXTURE_CACHE_WATCH", "1"),
            ("FIXTURE_CACHE_WATCH_MAX_ENTRIES", "3"),
        ],
    );
    let app = cluster.app;
    // A load of `loading` holds its lock until the gate opens, and a second get waits for it.
    let load = format!("/cache/load?ns=watched&key=loading&gate={}", gate.as_str());
    let loader = {
        let path = load.clone();
        std::thread::spawn(move || get(app, &path))
    };
    cluster.proc.wait_for("gated loader started");
    let waiter = {
        let path = load.clone();
        std::thread::spawn(move || get(app, &path))
    };
    assert!(eventually(
        SOON,
        || figures(&cluster, "watched")["lock_waits"].as_u64() >= Some(1)
    ));
    // Six values in a namespace of three: three evictions, each told to the watcher.
    for i in 0..6 {
        assert_eq!(
            ok(get(
                app,
                &format!("/cache/set?ns=watched&key=w{i}&value=v{i}")
            )),
            format!("v{i}")
        );
    }
    for n in 1..=3 {
        cluster
            .proc
            .wait_line(&format!("telling eviction {n}"), |l| {
                l.contains("watch fired") && l.contains("value=None")
            });
    }
    let watched = figures(&cluster, "watched");
    assert_eq!(
        (&watched["entries"], &watched["evictions"]),
        (&Value::from(3), &Value::from(3)),
        "{watched}"
    );
    // The key being loaded was never evicted: its loader and its waiter both get the value.
    std::fs::write(gate.path(), b"open").unwrap();
    for answer in [loader.join().unwrap(), waiter.join().unwrap()] {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.body.starts_with("loaded by"), "{answer:?}");
    }
    assert_eq!(
        ok(get(app, "/cache/peek?ns=watched&key=loading")),
        format!("loaded by {}", cluster.workers[0])
    );
}

#[test]
fn a_persisted_namespace_replays_only_what_eviction_kept() {
    let dir = TempPath::new("evict-persist");
    let persist = format!("--cache.persist-path={}", dir.as_str());
    let mut cluster = Cluster::start(APP, &["--workers=1", &persist], &[]);
    let mut events = cluster.events();
    let (_, pid) = manager(&mut events);
    for i in 0..20 {
        let path = format!("/cache/set?ns=durable&persist=true&max_entries=5&key=k{i}&value=v{i}");
        assert_eq!(ok(get(cluster.app, &path)), format!("v{i}"));
    }
    assert_eq!(figures(&cluster, "durable")["entries"], 5);
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let (_, restarted) = manager(&mut events);
    assert_ne!(restarted, pid);
    // Reloaded before any client declares the namespace again: only what the log kept.
    let reloaded = cluster.proc.wait_line("reloading `durable`", |l| {
        l.contains("reloaded from disk") && l.contains("namespace=durable")
    });
    assert_eq!(
        cluster2_tests::field(&reloaded, "entries"),
        Some("5"),
        "{reloaded}"
    );
    assert_eq!(
        ok(get(
            cluster.app,
            "/cache/peek?ns=durable&persist=true&key=k19"
        )),
        "v19"
    );
    // Figures restart with the manager; the bound is back with the worker's declaration.
    assert!(eventually(Duration::from_secs(5), || {
        figures(&cluster, "durable")["max_entries"] == 5
    }));
}
