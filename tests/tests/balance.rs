//! Connections spread evenly over the workers (`balance = even`, the default): a burst opened
//! at once, with 2, 4 and 8 workers, and the next connections after a pause going to the
//! emptier worker. Each connection's worker is read from the connection itself (`GET /pid` on
//! it), not from heartbeats.

use std::collections::BTreeMap;

use cluster2_tests::{Cluster, KeepAlive, post};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// Opens `n` connections at once (all connected before any request), then asks each which
/// worker serves it; returns the connections, kept open, and the count per worker pid.
fn burst(cluster: &Cluster, n: usize) -> (Vec<KeepAlive>, BTreeMap<u32, usize>) {
    let mut conns: Vec<KeepAlive> = (0..n)
        .map(|_| KeepAlive::connected(cluster.app).expect("connect"))
        .collect();
    let mut per_worker = BTreeMap::new();
    for conn in &mut conns {
        let answer = conn.get("/pid").expect("an answer on every connection");
        assert_eq!(answer.status, 200, "{answer:?}");
        *per_worker
            .entry(answer.body.parse::<u32>().unwrap())
            .or_default() += 1;
    }
    (conns, per_worker)
}

#[test]
fn a_burst_of_64_connections_spreads_evenly_over_2_4_and_8_workers() {
    for workers in [2usize, 4, 8] {
        let cluster = Cluster::start(APP, &[&format!("--workers={workers}")], &[]);
        let (_conns, per_worker) = burst(&cluster, 64);
        let counts: Vec<usize> = cluster
            .workers
            .iter()
            .map(|pid| per_worker.get(pid).copied().unwrap_or(0))
            .collect();
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        assert!(
            min > 0 && 2 * max <= 3 * min,
            "{workers} workers: connections per worker {counts:?} (busiest at most 1.5× the least)"
        );
    }
}

#[test]
fn after_a_resume_new_connections_go_to_the_emptier_worker() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let (a, b) = (cluster.workers[0], cluster.workers[1]);
    // While a is paused, b takes every connection.
    assert_eq!(
        post(cluster.monitor, &format!("/workers/{a}/pause")).status,
        200
    );
    let (_first, per_worker) = burst(&cluster, 20);
    assert_eq!(per_worker.get(&b), Some(&20), "{per_worker:?}");
    // Resumed, a is the emptier one: the next connections are its.
    assert_eq!(
        post(cluster.monitor, &format!("/workers/{a}/resume")).status,
        200
    );
    let (_second, per_worker) = burst(&cluster, 20);
    let to_a = per_worker.get(&a).copied().unwrap_or(0);
    assert!(
        to_a >= 15,
        "the emptier worker got {to_a} of 20: {per_worker:?}"
    );
}

#[test]
fn balance_kernel_leaves_it_to_the_kernel() {
    // The option exists and the cluster serves with it; how the kernel spreads is its own.
    let cluster = Cluster::start(APP, &["--workers=2", "--balance=kernel"], &[]);
    let (_conns, per_worker) = burst(&cluster, 16);
    assert_eq!(per_worker.values().sum::<usize>(), 16);
    assert!(per_worker.keys().all(|pid| cluster.workers.contains(pid)));
}
