//! Crash back-off is for crash loops: a worker that served is replaced at once, however often
//! it is killed, while one that keeps failing before it serves still backs off.

use cluster2_tests::{Cluster, Events, get};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_fixture-app");

/// Waits until worker 0's process after `previous` listens and has answered a request; returns
/// its pid.
fn next_serving(cluster: &Cluster, events: &mut Events, previous: Option<u32>) -> u32 {
    let listening = events.wait("listening", |e| {
        e["worker"] == 0 && previous.is_none_or(|p| e["pid"] != p)
    });
    let pid = listening["pid"].as_u64().unwrap() as u32;
    // The only worker: the next request is its.
    let answer = get(cluster.app, "/pid").unwrap();
    assert_eq!(answer.body, pid.to_string());
    events.wait("served", |e| e["pid"] == pid);
    pid
}

#[test]
fn a_worker_that_served_is_replaced_at_once_however_often_it_is_killed() {
    // The default back-off: 100ms, doubling, up to 30s.
    let cluster = Cluster::start(BIN, &["--workers=1"], &[]);
    let mut events = cluster.events();
    let mut pid = next_serving(&cluster, &mut events, None);
    for kill_number in 1..=5 {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let exited = events.wait("exited", |e| e["pid"] == pid);
        assert_eq!(exited["expected"], false, "{exited}");
        let scheduled = events.next_of("restart_scheduled");
        assert_eq!(
            (
                scheduled["delay_secs"].as_f64(),
                scheduled["crash_streak"].as_u64()
            ),
            (Some(0.0), Some(1)),
            "kill {kill_number}: {scheduled}"
        );
        pid = next_serving(&cluster, &mut events, Some(pid));
    }
    assert!(
        !events.any("restart_scheduled", |e| e["delay_secs"] != 0.0),
        "{:?}",
        events.seen
    );
}

#[test]
fn a_worker_that_fails_before_it_serves_still_backs_off() {
    let cluster = Cluster::start(BIN, &["--workers=1"], &[]);
    let mut events = cluster.events();
    // Listening, never asked anything: each replacement is killed before it serves.
    let mut victim = cluster.workers[0];
    for _ in 0..3 {
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        events.wait("exited", |e| e["pid"] == victim);
        let next = events.wait("listening", |e| e["worker"] == 0 && e["pid"] != victim);
        victim = next["pid"].as_u64().unwrap() as u32;
    }
    let delays: Vec<f64> = events
        .seen
        .iter()
        .filter(|e| e["event"] == "restart_scheduled")
        .map(|e| e["delay_secs"].as_f64().unwrap())
        .collect();
    assert_eq!(delays, [0.0, 0.1, 0.2], "{:?}", events.seen);
}
