//! The emitter across real processes.

use cluster2_tests::{Cluster, field, get};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

#[test]
fn the_master_pings_everyone_and_every_process_echoes() {
    let mut cluster = Cluster::start(APP, &["--workers=2"], &[("FIXTURE_EMITTER", "1")]);
    let line = cluster.proc.wait_for("echoes complete");
    let mut pids: Vec<u32> = field(&line, "pids")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    pids.sort_unstable();
    let mut expected = cluster.workers.clone();
    expected.push(cluster.proc.pid());
    expected.sort_unstable();
    assert_eq!(pids, expected, "both workers and the master itself echoed");
}

#[test]
fn a_worker_reaches_another_worker_by_pid_through_the_master() {
    let mut cluster = Cluster::start(APP, &["--workers=2"], &[]);
    // Find which worker takes a connection, then ask it to message the other one.
    for _ in 0..5000 {
        let sender: u32 = get(cluster.app, "/pid").unwrap().body.parse().unwrap();
        let receiver = *cluster.workers.iter().find(|&&p| p != sender).unwrap();
        let answer = get(cluster.app, &format!("/emit-to?pid={receiver}")).unwrap();
        assert_eq!(answer.body, "sent");
        // That request may have landed on either worker; a worker emitting to its own pid
        // delivers locally, which the log line shows too, so check who sent and who got it.
        let line = cluster.proc.wait_for("direct event received");
        let to = line
            .split("worker ")
            .nth(1)
            .and_then(|s| s.split('[').nth(1))
            .and_then(|s| s.split(']').next())
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap();
        let from: u32 = field(&line, "from").unwrap().parse().unwrap();
        if from != to {
            assert_eq!(to, receiver, "{line}");
            assert!(cluster.workers.contains(&from), "{line}");
            return;
        }
    }
    panic!("no worker-to-worker event observed");
}

#[test]
fn an_event_for_a_dead_pid_is_dropped_without_harm() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    // Pid 1 is never a worker of this cluster.
    let answer = get(cluster.app, "/emit-to?pid=1").unwrap();
    assert_eq!(answer.body, "sent");
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");
}
