//! Events to every host (`Target::AllHosts`) over a real `redis-server`: two clusters on this
//! machine stand for two hosts of one service.

use std::collections::HashSet;

use cluster2_tests::{Cluster, RedisServer, field, get};
use nix::sys::signal::Signal;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// The pids that logged receiving the host event `text`, waiting for `n` of them.
fn receivers(cluster: &mut Cluster, text: &str, n: usize) -> HashSet<u32> {
    let mut pids = HashSet::new();
    while pids.len() < n {
        let line = cluster.proc.wait_line(&format!("receiving {text}"), |l| {
            l.contains("host event received") && l.contains(&format!("text={text}"))
        });
        pids.insert(field(&line, "pid").unwrap().parse().unwrap());
    }
    pids
}

#[test]
fn an_event_from_one_host_reaches_every_process_of_both() {
    let redis = RedisServer::start("events");
    let backend = format!("--emitter.backend={}", redis.url());
    let args = ["--workers=2", "--cluster-name=shop", backend.as_str()];
    let mut a = Cluster::start(APP, &args, &[]);
    let mut b = Cluster::start(APP, &args, &[]);
    // Another service on the same server hears nothing.
    let other_args = ["--workers=1", "--cluster-name=other", backend.as_str()];
    let mut other = Cluster::start(APP, &other_args, &[]);
    // The masters listen from their `main`, which runs once they are ready.
    for cluster in [&mut a, &mut b, &mut other] {
        cluster.proc.wait_for("main started role=Master");
        cluster.proc.rewind();
    }

    let sent = get(a.app, "/emit-hosts?text=hello").unwrap();
    assert_eq!(sent.body, "sent", "{sent:?}");
    let mut everyone_b: HashSet<u32> = b.workers.iter().copied().collect();
    everyone_b.insert(b.proc.pid());
    assert_eq!(
        receivers(&mut b, "hello", 3),
        everyone_b,
        "both workers and the master of B"
    );
    let mut everyone_a: HashSet<u32> = a.workers.iter().copied().collect();
    everyone_a.insert(a.proc.pid());
    assert_eq!(
        receivers(&mut a, "hello", 3),
        everyone_a,
        "and every process of A"
    );

    // In order, from one sender (one worker of B).
    assert_eq!(
        get(b.app, "/emit-hosts?text=n&count=20").unwrap().body,
        "sent"
    );
    // Wait until every process of A heard the last one, then stop and read the order.
    receivers(&mut a, "n19", 3);
    drop(b);
    a.proc.signal(Signal::SIGTERM);
    a.proc.wait_exit();
    let a_log = a.proc.log.clone();
    for pid in everyone_a {
        let seen: Vec<String> = a_log
            .iter()
            .filter(|l| l.contains("host event received") && l.contains(&format!("pid={pid} ")))
            .filter_map(|l| field(l, "text").map(str::to_owned))
            .filter(|t| t.starts_with('n'))
            .collect();
        let expected: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
        assert_eq!(seen, expected, "pid {pid} heard them in order");
    }
    other.proc.signal(Signal::SIGTERM);
    other.proc.wait_exit();
    assert!(
        !other
            .proc
            .log
            .iter()
            .any(|l| l.contains("host event received")),
        "{}",
        other.proc.log.join("\n")
    );
}

#[test]
fn without_a_backend_emitting_to_every_host_is_a_clear_error() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let answer = get(cluster.app, "/emit-hosts?text=x").unwrap();
    assert!(
        answer.body.contains("emitter.backend") && answer.body.contains("host-event"),
        "{answer:?}"
    );
}
