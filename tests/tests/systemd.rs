//! systemd integration, against what systemd itself would see: a datagram socket this test
//! owns as `NOTIFY_SOCKET` receives READY, RELOADING (around a SIGHUP's rolling restart),
//! READY again, STOPPING, in that order, and watchdog pings when `WATCHDOG_USEC` asks; the
//! workers never see the variables. `/livez` answers without a token.

use std::os::unix::net::UnixDatagram;

use cluster2_tests::{Cluster, SOON, TempPath, get, get_raw};
use nix::sys::signal::Signal;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// The next notification, as its lines.
fn next(socket: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The next notification other than a watchdog ping.
fn next_state(socket: &UnixDatagram) -> Vec<String> {
    loop {
        let lines = next(socket);
        if lines != ["WATCHDOG=1"] {
            return lines;
        }
    }
}

#[test]
fn the_service_manager_hears_ready_reloading_ready_stopping_and_the_watchdog() {
    let dir = TempPath::new("notify");
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(SOON)).unwrap();
    let mut cluster = Cluster::start(
        APP,
        &["--workers=2"],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    let ready = next_state(&socket);
    assert_eq!(ready[0], "READY=1", "{ready:?}");
    assert!(
        ready.contains(&"STATUS=serving with 2 workers".to_owned()),
        "{ready:?}"
    );

    // The watchdog pings, at half the interval.
    assert!((0..50).any(|_| next(&socket) == ["WATCHDOG=1"]));

    // The workers do not inherit the variables.
    for &pid in &cluster.workers {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("NOTIFY_SOCKET") && !environ.contains("WATCHDOG_USEC"),
            "worker {pid} has the service manager's variables"
        );
    }

    cluster.proc.signal(Signal::SIGHUP);
    let reloading = next_state(&socket);
    assert_eq!(reloading[0], "RELOADING=1", "{reloading:?}");
    assert!(reloading[1].starts_with("MONOTONIC_USEC="), "{reloading:?}");
    let done = next_state(&socket);
    assert_eq!(done[0], "READY=1", "{done:?}");
    // By then every worker was replaced.
    let mut events = cluster.events();
    for &old in &cluster.workers {
        events.wait("replaced", |e| e["pid"] == old);
    }

    cluster.proc.signal(Signal::SIGTERM);
    let stopping = next_state(&socket);
    assert_eq!(stopping[0], "STOPPING=1", "{stopping:?}");
    assert!(stopping[1].starts_with("STATUS=stopping"), "{stopping:?}");
    assert!(cluster.proc.wait_exit().success());
}

#[test]
fn livez_answers_without_the_token() {
    let cluster = Cluster::start(APP, &["--workers=1", "--mon.token=livez-token-123"], &[]);
    let r = get_raw(cluster.monitor, "/livez").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body), "alive");
    // Everything else still wants it.
    assert_eq!(get(cluster.monitor, "/workers").unwrap().status, 401);
}
