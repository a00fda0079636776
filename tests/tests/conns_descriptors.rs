//! A cluster under a low open-files limit, flooded with silent connections on both ports:
//! each worker keeps its connections within its share of the limit, the master keeps what it
//! needs to start workers before the monitor takes any, so the application and the ECV still
//! answer, and a worker that crashes is still replaced.

use std::net::{SocketAddr, TcpStream};

use cluster2_tests::{Cluster, Proc, SOON, get, is_ready, request};

const BIN: &str = env!("CARGO_BIN_EXE_fixture-app");

/// The cluster's open-files limit, soft and hard: far below what the flood needs.
const LIMIT: u32 = 128;

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, SOON).expect("connect")
}

#[test]
fn a_flood_of_silent_connections_under_a_low_open_files_limit_starves_nothing() {
    // The limit is set by the shell that then becomes the master, as `ulimit -n` in a service's
    // start script would.
    let script = format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\"");
    let mut proc = Proc::spawn(
        "sh",
        &[
            "-c",
            &script,
            BIN,
            "--port=0",
            "--mon-port=0",
            "--workers=2",
        ],
        &[],
    );
    let ready = proc.wait_line("with the ready message", is_ready);
    let mut cluster = Cluster::from_ready(proc, &ready);
    // Opened first: a stream in flight is never closed to make room.
    let mut events = cluster.events();

    // More silent connections on each port than the whole limit.
    let flood: Vec<TcpStream> = [cluster.app, cluster.monitor]
        .into_iter()
        .flat_map(|addr| (0..3 * LIMIT).map(move |_| connect(addr)))
        .collect();

    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    let ecv = get(cluster.monitor, "/ecv").unwrap();
    assert_eq!((ecv.status, ecv.body.as_str()), (200, "OK"));

    // A crashed worker is replaced: the master could still start a process.
    let _ = request(
        cluster.app,
        "GET /crash HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let exited = events.wait("exited", |e| e["expected"] == false);
    let (worker, crashed) = (exited["worker"].clone(), exited["pid"].clone());
    let successor = events.wait("listening", |e| e["worker"] == worker);
    assert_ne!(successor["pid"], crashed);
    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    assert_eq!(get(cluster.monitor, "/ecv").unwrap().status, 200);

    // Each worker kept its connections within its share: it never ran out of descriptors.
    assert!(!events.any("cannot_accept", |_| true), "{:?}", events.seen);

    // The master said how little the limit leaves the monitor.
    cluster.proc.rewind();
    let warning = cluster.proc.wait_for("leaves the monitor");
    assert!(warning.contains(&format!("({LIMIT})")), "{warning}");
    drop(flood);
}
