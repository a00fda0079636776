//! SIGTERM stops the cluster without losing an in-flight request; a second signal forces.

use std::time::Duration;

use cluster2_tests::{Cluster, alive, eventually, get};
use nix::sys::signal::Signal;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

#[test]
fn sigterm_lets_every_in_flight_request_finish_and_exits_zero() {
    let mut cluster = Cluster::start(APP, &["--workers=2", "--stop-timeout=20s"], &[]);
    const REQUESTS: usize = 20;
    let app = cluster.app;
    let clients: Vec<_> = (0..REQUESTS)
        .map(|_| std::thread::spawn(move || get(app, "/slow?ms=1500")))
        .collect();
    // Every request is being handled before the signal.
    for _ in 0..REQUESTS {
        cluster.proc.wait_for("slow request started");
    }
    cluster.proc.signal(Signal::SIGTERM);
    for client in clients {
        let response = client
            .join()
            .unwrap()
            .expect("an in-flight request was lost");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "done");
    }
    let status = cluster.proc.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "log:\n{}",
        cluster.proc.log.join("\n")
    );
    assert!(cluster.workers.iter().all(|&pid| !alive(pid)));
    assert!(cluster2_tests::port_is_free(cluster.app.port()));
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut cluster = Cluster::start(APP, &["--workers=1", "--stop-timeout=60s"], &[]);
    let app = cluster.app;
    let client = std::thread::spawn(move || get(app, "/slow?ms=60000"));
    cluster.proc.wait_for("slow request started");
    cluster.proc.signal(Signal::SIGTERM);
    cluster.proc.wait_for("stopping gracefully");
    cluster.proc.signal(Signal::SIGINT);
    let status = cluster.proc.wait_exit();
    assert_eq!(status.code(), Some(1));
    assert!(cluster.proc.log.iter().any(|l| l.contains("second signal")));
    assert!(eventually(Duration::from_secs(5), || cluster
        .workers
        .iter()
        .all(|&p| !alive(p))));
    // The forced stop cut the 60 s request off.
    assert!(client.join().unwrap().is_err());
}
