//! The cache manager against clients that do not play by the rules, over a running cluster's
//! real cache socket: frames that announce gigabytes, frames that never finish, more
//! connections than it serves, idle connections after large requests, names that are paths,
//! and leases that never end. Each time the manager holds, and the cluster's own clients are
//! served throughout.

mod cache_wire;

use std::io::Write;

use cache_wire::{Answer, call, connect, get, manager, read, request, rss, set, use_ns, watch};
use cluster2_tests::{Cluster, TempPath, eventually, get as http_get};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// Makes sure the cluster's own processes have their connections to the manager (the worker
/// through the app, the master through the monitor), so that counts below are the test's.
fn warm(cluster: &Cluster) {
    let set = http_get(cluster.app, "/cache/set?key=warm&value=up").unwrap();
    assert_eq!(set.status, 200, "{set:?}");
    let caches = http_get(cluster.monitor, "/caches").unwrap();
    assert_eq!(caches.status, 200, "{caches:?}");
}

/// A round trip on a fresh connection: once it is answered, the (single-threaded) manager
/// has finished with whatever it read before.
fn round_trip(socket: &str) {
    let mut probe = connect(socket);
    assert!(matches!(
        call(&mut probe, 1, &get("probe", "k", None)),
        Answer::Reply(2, _)
    ));
}

#[test]
fn frames_that_announce_16_mib_commit_kilobytes_not_gigabytes() {
    // A long frame timeout: the connections stay open while memory is measured.
    let cluster = Cluster::start(APP, &["--workers=1", "--cache.timeout=60s"], &[]);
    let (socket, pid) = manager(&mut cluster.events());
    warm(&cluster);
    round_trip(&socket);
    let before = rss(pid);
    // Each connection sends a whole request, then the first five bytes of a request that
    // announces 16 MiB, in one write: once the whole one is answered, the manager has read
    // the rest too.
    let announced = 16 << 20;
    let mut held = Vec::new();
    for i in 0..64 {
        let mut stream = connect(&socket);
        let mut bytes = request(1, &get("cache-test", "k", None));
        bytes.extend_from_slice(&u32::to_be_bytes(announced));
        bytes.push(cache_wire::VERSION);
        stream.write_all(&bytes).unwrap();
        assert!(
            matches!(read(&mut stream), Answer::Reply(2, _)),
            "connection {i}"
        );
        held.push(stream);
    }
    round_trip(&socket);
    let grown = rss(pid).saturating_sub(before);
    // 64 × 16 MiB is a gigabyte; what arrived is 64 × 5 bytes.
    assert!(
        grown < 16 << 20,
        "the manager grew by {} MiB for 64 frames of 5 bytes",
        grown >> 20
    );
    // The cluster's own clients are served as before.
    let answer = http_get(cluster.app, "/cache/set?key=k&value=served").unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "served"));
    drop(held);
}

#[test]
fn idle_connections_hold_no_buffer_after_a_large_request() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let (socket, pid) = manager(&mut cluster.events());
    warm(&cluster);
    round_trip(&socket);
    let before = rss(pid);
    // Each connection sends one request of 256 KiB (a long key), is answered, and goes idle.
    let key = "k".repeat(256 << 10);
    let mut idle = Vec::new();
    for i in 0..200 {
        let mut stream = connect(&socket);
        assert!(
            matches!(
                call(&mut stream, 1, &get("cache-test", &key, None)),
                Answer::Reply(2, _)
            ),
            "connection {i}"
        );
        idle.push(stream);
    }
    round_trip(&socket);
    let grown = rss(pid).saturating_sub(before);
    // Keeping each request's buffer would be 200 × 256 KiB = 50 MiB.
    assert!(
        grown < 12 << 20,
        "200 idle connections hold {} MiB",
        grown >> 20
    );
    drop(idle);
}

#[test]
fn a_frame_that_never_finishes_is_cut_off_after_the_cache_timeout() {
    let mut cluster = Cluster::start(APP, &["--workers=1", "--cache.timeout=1s"], &[]);
    let (socket, _) = manager(&mut cluster.events());
    let mut stalled = connect(&socket);
    // Announces a frame of 100 bytes and sends 10 of them.
    stalled.write_all(&100u32.to_be_bytes()).unwrap();
    stalled.write_all(&[cache_wire::VERSION; 10]).unwrap();
    assert_eq!(
        read(&mut stalled),
        Answer::Closed,
        "the manager closed the connection"
    );
    cluster
        .proc
        .wait_for("has not arrived whole (14 of 104 bytes)");
    // Everyone else is served.
    let answer = http_get(cluster.app, "/cache/set?key=k&value=still").unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "still"));
}

#[test]
fn connections_past_the_bound_are_refused_with_the_reason() {
    let mut cluster = Cluster::start(APP, &["--workers=1", "--cache.max-connections=4"], &[]);
    let (socket, _) = manager(&mut cluster.events());
    // The worker and the master hold two of the four.
    warm(&cluster);
    let mut served = Vec::new();
    let mut refused = 0;
    for i in 0..6 {
        let mut stream = connect(&socket);
        match call(&mut stream, 1, &get("cache-test", "nothing", None)) {
            Answer::Reply(2, _) => served.push(stream),
            answer @ Answer::Refused(_) => {
                assert!(
                    answer
                        .text()
                        .contains("serves 4 connections already (cache.max_connections)"),
                    "{}",
                    answer.text()
                );
                assert_eq!(read(&mut stream), Answer::Closed, "closed after the reason");
                refused += 1;
            }
            other => panic!("connection {i}: {other:?}"),
        }
    }
    assert_eq!((served.len(), refused), (2, 4));
    // The cluster's own connections are untouched.
    let answer = http_get(cluster.app, "/cache/set?key=k&value=still").unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "still"));
    // A place freed is a place taken again.
    drop(served);
    let mut last = Answer::Closed;
    assert!(
        eventually(cluster2_tests::SOON, || {
            let mut stream = connect(&socket);
            last = call(&mut stream, 1, &get("cache-test", "nothing", None));
            matches!(last, Answer::Reply(2, _))
        }),
        "{last:?}; {:#?}",
        cluster.proc.drain()
    );
    // One line for the burst, not one per refusal.
    cluster.proc.wait_for("refused cache clients");
    let lines = cluster
        .proc
        .log
        .iter()
        .filter(|l| l.contains("refused cache clients"))
        .count();
    assert_eq!(lines, 1, "{:#?}", cluster.proc.log);
}

#[test]
fn namespace_names_from_the_socket_are_checked() {
    let persist = TempPath::new("hostile-names");
    let flag = format!("--cache.persist-path={}", persist.as_str());
    let cluster = Cluster::start(APP, &["--workers=1", &flag], &[]);
    let (socket, _) = manager(&mut cluster.events());
    // Where these names would put a log if they were taken as paths.
    let escaped = format!("escaped-{}", std::process::id());
    let outside = persist
        .path()
        .parent()
        .unwrap()
        .join(format!("{escaped}.log"));
    let absolute = TempPath::new("hostile-absolute");
    let absolute_log = format!("{}.log", absolute.as_str());
    let mut stream = connect(&socket);
    let hostile = [
        format!("../{escaped}"),
        absolute.as_str().to_owned(),
        "a/b".to_owned(),
        ".hidden".to_owned(),
        String::new(),
        "n".repeat(300),
    ];
    for (i, name) in hostile.iter().enumerate() {
        for op in [use_ns(name, true), set(name, "k", b"\"v\"")] {
            let answer = call(&mut stream, i as u64, &op);
            assert!(
                matches!(answer, Answer::Reply(9, _))
                    && answer.text().contains("invalid cache namespace")
                    && answer.text().contains("letters, digits"),
                "{name:?}: {answer:?}"
            );
        }
    }
    assert!(!outside.exists(), "{} was created", outside.display());
    assert!(
        !std::path::Path::new(&absolute_log).exists(),
        "{absolute_log} was created"
    );
    // The same connection serves good names on.
    assert!(matches!(
        call(&mut stream, 99, &use_ns("fine.name-1_x", true)),
        Answer::Reply(0, _)
    ));
    assert!(persist.path().join("fine.name-1_x.log").exists());
    let _ = std::fs::remove_file(&outside);
    let _ = std::fs::remove_file(&absolute_log);
}

#[test]
fn a_lease_is_capped_whatever_a_client_asks_for() {
    let mut cluster = Cluster::start(APP, &["--workers=1", "--cache.max-lease=1s"], &[]);
    let (socket, _) = manager(&mut cluster.events());
    warm(&cluster);
    // A client takes a key's lock for u64::MAX milliseconds and never loads.
    let mut hog = connect(&socket);
    assert!(matches!(
        call(&mut hog, 1, &get("cache-test", "leased", Some(u64::MAX))),
        Answer::Reply(3, _)
    ));
    // A worker waits for it (up to 15 s), is handed the lock when the capped lease ends, and
    // loads.
    let answer = http_get(cluster.app, "/cache/load?key=leased").unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.starts_with("loaded by"), "{answer:?}");
    cluster.proc.wait_for("a loader exceeded its lease");
    drop(hog);
}

#[test]
fn a_watcher_that_does_not_read_is_cut_off_past_a_bound() {
    // Values of at most 1 MiB: the manager keeps at most 8 MiB waiting for one client.
    let mut cluster = Cluster::start(APP, &["--workers=1", "--cache.max-value=1048576"], &[]);
    let (socket, pid) = manager(&mut cluster.events());
    let mut deaf = connect(&socket);
    assert!(matches!(
        call(&mut deaf, 1, &watch("firehose")),
        Answer::Reply(5, _)
    ));
    round_trip(&socket);
    let before = rss(pid);
    // 32 MiB of changes in the watched namespace, none of them read, each stored under a key
    // of its own and evicted at once (the namespace holds one entry): only what waits for the
    // watcher could grow.
    let mut writer = connect(&socket);
    let declare = cache_wire::use_ns_bounded("firehose", 1);
    assert!(matches!(
        call(&mut writer, 1, &declare),
        Answer::Reply(0, _)
    ));
    let value = vec![b'7'; 64 << 10];
    for i in 0..512u64 {
        let answer = call(&mut writer, i, &set("firehose", &format!("k{i}"), &value));
        assert!(matches!(answer, Answer::Reply(5, _)), "{i}: {answer:?}");
    }
    cluster.proc.wait_for("does not read what it is sent");
    let grown = rss(pid).saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "the manager holds {} MiB for a client that does not read",
        grown >> 20
    );
    // What was sent before the cut is there to read, then the end: far from all of it.
    let mut read_before_end = 0;
    while let Answer::Changed(body) = read(&mut deaf) {
        read_before_end += body.len();
    }
    assert!(
        read_before_end < 16 << 20,
        "{read_before_end} bytes of 32 MiB"
    );
    // The writer is served on.
    assert!(matches!(
        call(&mut writer, 9999, &get("firehose", "k511", None)),
        Answer::Reply(1, _)
    ));
}
