//! `--host` with a host name: the application port is bound on every address the name stands
//! for, with one port number, and every worker accepts on all of them; `--mon-host` likewise
//! for the monitor.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use cluster2_tests::{Cluster, get};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// Whether this machine has an IPv6 loopback address (it may run without IPv6).
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// The addresses of the master's `FLAG localhost: listening on A, B` line.
fn listening_on(cluster: &mut Cluster, flag: &str) -> BTreeSet<SocketAddr> {
    // Written before the ready line that `Cluster::start` waited for.
    cluster.proc.rewind();
    let line = cluster
        .proc
        .wait_for(&format!("{flag} localhost: listening on "));
    let list = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    list.split(", ")
        .map(|a| {
            a.trim()
                .parse()
                .unwrap_or_else(|_| panic!("an address: {a:?} in {line}"))
        })
        .collect()
}

#[test]
fn localhost_is_served_on_every_loopback_address_of_the_machine() {
    let args = ["--host=localhost", "--mon-host=localhost", "--workers=2"];
    let mut cluster = Cluster::start(APP, &args, &[]);
    let loopbacks = |port| {
        let mut all = BTreeSet::from([SocketAddr::from((Ipv4Addr::LOCALHOST, port))]);
        if has_ipv6_loopback() {
            all.insert(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        }
        all
    };
    let expected = loopbacks(cluster.app.port());
    assert_eq!(listening_on(&mut cluster, "--host"), expected);
    let monitors = loopbacks(cluster.monitor.port());
    assert_eq!(listening_on(&mut cluster, "--mon-host"), monitors);
    for addr in &monitors {
        let response = get(*addr, "/workers").unwrap_or_else(|e| panic!("GET {addr}/workers: {e}"));
        assert_eq!(
            response.status, 200,
            "the monitor on {addr}: {}",
            response.body
        );
    }
    if !has_ipv6_loopback() {
        // Without IPv6 the port is on 127.0.0.1 alone, and the master said why.
        cluster.proc.rewind();
        let line = cluster.proc.wait_for("--host localhost: listening on ");
        assert!(line.contains("; not on ::1: "), "{line}");
    }
    // Every address answers, and each of them reaches both workers: each worker accepts on
    // every socket, not one worker per address.
    for addr in &expected {
        let mut pids = BTreeSet::new();
        for _ in 0..5000 {
            let response = get(*addr, "/pid").unwrap_or_else(|e| panic!("GET {addr}/pid: {e}"));
            assert_eq!(response.status, 200, "{addr}");
            pids.insert(response.body.parse::<u32>().unwrap());
            if pids.len() == cluster.workers.len() {
                break;
            }
        }
        let workers: BTreeSet<u32> = cluster.workers.iter().copied().collect();
        assert_eq!(pids, workers, "the workers that answered on {addr}");
    }
}
