//! Heartbeats: what the master learns about each worker, observed from its debug log and the
//! monitor's `/workers`.

use cluster2_tests::{Cluster, SOON, eventually, field, get};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

const ARGS: &[&str] = &[
    "--workers=1",
    "--heartbeat-interval=200ms",
    "--log.level=info,cluster2::heartbeat=debug",
];

/// The next heartbeat the master logged.
fn beat(cluster: &mut Cluster) -> String {
    cluster.proc.wait_line("with a heartbeat", |l| {
        l.contains("master[") && l.contains(": heartbeat worker=")
    })
}

fn number(line: &str, key: &str) -> f64 {
    field(line, key)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap()
}

#[test]
fn requests_over_the_heartbeats_add_up_to_the_requests_sent() {
    let mut cluster = Cluster::start(APP, ARGS, &[]);
    const K: u64 = 25;
    for _ in 0..K {
        assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    }
    let mut sum = 0;
    let mut last_total = 0;
    while sum < K {
        let beat = beat(&mut cluster);
        sum += number(&beat, "requests") as u64;
        last_total = number(&beat, "requests_total") as u64;
    }
    assert_eq!(
        sum, K,
        "warm-up requests are not counted, and nothing twice"
    );
    assert_eq!(last_total, K);
    // Later heartbeats add nothing.
    for _ in 0..2 {
        let beat = beat(&mut cluster);
        assert_eq!(number(&beat, "requests"), 0.0, "{beat}");
    }
}

#[test]
fn cpu_rises_under_a_busy_handler() {
    let mut cluster = Cluster::start(APP, ARGS, &[]);
    let idle = (0..3)
        .map(|_| number(&beat(&mut cluster), "cpu_percent"))
        .fold(f64::MAX, f64::min);
    let app = cluster.app;
    let busy = std::thread::spawn(move || get(app, "/busy?ms=1500").unwrap());
    let mut peak: f64 = 0.0;
    while !busy.is_finished() {
        peak = peak.max(number(&beat(&mut cluster), "cpu_percent"));
    }
    busy.join().unwrap();
    assert!(peak > idle + 20.0, "cpu idle {idle}%, busy peak {peak}%");
}

#[test]
fn event_loop_lag_rises_when_a_handler_blocks_and_errors_are_counted() {
    let mut cluster = Cluster::start(APP, &[ARGS, &["--threads=1"]].concat(), &[]);
    let idle = number(&beat(&mut cluster), "event_loop_lag_ms");
    assert_eq!(get(cluster.app, "/block?ms=800").unwrap().body, "blocked");
    let mut peak: f64 = 0.0;
    for _ in 0..3 {
        peak = peak.max(number(&beat(&mut cluster), "event_loop_lag_ms"));
    }
    assert!(
        peak > idle.max(1.0) * 10.0 && peak >= 400.0,
        "lag idle {idle}ms, peak {peak}ms"
    );

    // A 502 and a panic: both counted, and the panic answered with a 500.
    assert_eq!(get(cluster.app, "/fail").unwrap().status, 502);
    assert_eq!(get(cluster.app, "/panic").unwrap().status, 500);
    let (mut errors, mut panics) = (0.0, 0.0);
    while errors < 2.0 || panics < 1.0 {
        let beat = beat(&mut cluster);
        errors += number(&beat, "errors");
        panics += number(&beat, "panics");
    }
    assert_eq!((errors, panics), (2.0, 1.0));
    assert_eq!(
        get(cluster.app, "/").unwrap().body,
        "hello world",
        "the worker lives on"
    );
}

#[test]
fn the_monitor_shows_heartbeat_durations_as_seconds_and_each_fact_once() {
    let cluster = Cluster::start(APP, ARGS, &[]);
    let worker = || -> Value {
        let body = get(cluster.monitor, "/workers").unwrap().body;
        let workers: Value = serde_json::from_str(&body).unwrap();
        workers["workers"][0].clone()
    };
    assert!(
        eventually(SOON, || !worker()["heartbeat"].is_null()),
        "the master has a heartbeat"
    );
    let worker = worker();
    let beat = &worker["heartbeat"];
    for key in [
        "age_secs",
        "interval_secs",
        "request_duration_secs",
        "request_duration_total_secs",
        "event_loop_lag_secs",
    ] {
        assert!(beat[key].is_number(), "{key} in {beat}");
    }
    // The entry has the pid, the worker id and the uptime; the heartbeat does not repeat them.
    for key in ["pid", "worker", "uptime_secs", "uptime"] {
        assert!(beat.get(key).is_none(), "{key} in {beat}");
    }
    assert_eq!(worker["pid"], cluster.workers[0], "{worker}");
    let uptime = worker["uptime_secs"].as_f64().unwrap();
    assert!(
        uptime > 0.0 && uptime < SOON.as_secs_f64() * 10.0,
        "{worker}"
    );
}
