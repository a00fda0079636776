//! Workers that crash are replaced; workers that keep crashing are retried with back-off;
//! start-up failures are reported with their error text.

use std::time::Duration;

use cluster2_tests::{Cluster, Proc, alive, eventually, get, is_ready};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

#[test]
fn a_crashed_worker_is_replaced_and_the_port_keeps_serving() {
    let mut cluster = Cluster::start(APP, &["--workers=2"], &[]);
    // Whichever worker takes this request exits with status 42 without answering.
    assert!(get(cluster.app, "/crash").is_err());
    let line = cluster.proc.wait_for("exited with status 42");
    let crashed_pid = pid_in(&line);
    assert!(cluster.workers.contains(&crashed_pid), "{line}");
    assert!(
        line.contains("restarting in 0s"),
        "the first crash restarts at once: {line}"
    );
    let new_pid = pid_in(&cluster.proc.wait_for("listening"));
    assert!(!cluster.workers.contains(&new_pid));
    assert!(alive(new_pid));
    assert!(!alive(crashed_pid));
    // The replacement serves: keep asking until it answers.
    assert!(
        (0..5000).any(|_| get(cluster.app, "/pid").unwrap().body == new_pid.to_string()),
        "the replacement never answered"
    );
}

/// The pid in a master line about a worker: `worker 0 (pid 123) ...`.
fn pid_in(line: &str) -> u32 {
    line.split("(pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"))
}

#[test]
fn a_crash_loop_backs_off_exponentially_and_start_up_gives_up_cleanly() {
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=1",
            "--restart.delay=50ms",
            "--restart.max-delay=400ms",
            "--startup-timeout=3s",
        ],
        &[("FIXTURE_CRASH_AT_START", "1")],
    );
    let mut delays = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..6 {
        let line = proc.wait_for("exited with status 9");
        let delay = line.split("restarting in ").nth(1).unwrap();
        delays.push(delay.split_whitespace().next().unwrap().to_owned());
        pids.push(pid_in(&line));
    }
    assert_eq!(delays, ["0s", "50ms", "100ms", "200ms", "400ms", "400ms"]);
    pids.dedup();
    assert_eq!(pids.len(), 6, "every crash is a new process");
    let status = proc.wait_exit();
    assert_eq!(status.code(), Some(1));
    let timeout = proc
        .log
        .iter()
        .find(|l| l.contains("start-up timed out after 3s"))
        .unwrap_or_else(|| panic!("no timeout message: {:#?}", proc.log));
    assert!(timeout.contains("--startup-timeout"), "{timeout}");
    assert!(
        timeout.contains("exited with status 9"),
        "names the last failure: {timeout}"
    );
    assert!(!proc.log.iter().any(|l| is_ready(l)));
}

#[test]
fn a_failed_warm_up_is_reported_with_its_error_and_retried() {
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=1",
            "--restart.delay=20ms",
            "--startup-timeout=2s",
        ],
        &[("FIXTURE_WARM_UP_FAIL", "1")],
    );
    let from_master = |l: &str| l.contains("master[") && l.contains("warm-up failed");
    let failed = proc.wait_line("from the master about the warm-up", from_master);
    assert!(failed.contains("cache not primed"), "{failed}");
    // Retried: a second attempt warms up again.
    let second = proc.wait_line("about a second warm-up", from_master);
    assert_ne!(
        pid_in(&failed),
        pid_in(&second),
        "a new process tried again"
    );
    assert_eq!(proc.wait_exit().code(), Some(1));
    let timeout = proc
        .log
        .iter()
        .find(|l| l.contains("start-up timed out"))
        .unwrap();
    assert!(timeout.contains("cache not primed"), "{timeout}");
}

#[test]
fn a_failing_configure_app_is_reported_naming_the_step() {
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=1",
            "--startup-timeout=1s",
        ],
        &[("FIXTURE_CONFIGURE_FAIL", "1")],
    );
    let line = proc.wait_for("configure_app failed");
    assert!(line.contains("database unreachable"), "{line}");
    assert_eq!(proc.wait_exit().code(), Some(1));
}

#[test]
fn workers_exit_when_the_master_is_killed_and_the_port_is_freed() {
    let mut cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let port = cluster.app.port();
    assert!(cluster.workers.iter().all(|&pid| alive(pid)));
    cluster.proc.signal(nix::sys::signal::Signal::SIGKILL);
    cluster.proc.wait_exit();
    let start = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || cluster
            .workers
            .iter()
            .all(|&p| !alive(p))),
        "workers outlived their master"
    );
    let took = start.elapsed();
    assert!(eventually(Duration::from_secs(10), || {
        cluster2_tests::port_is_free(port)
    }));
    // The requirement is 2 s; the bound above is loose for loaded machines, so report it.
    eprintln!("workers gone {took:?} after the master was killed");
    assert!(
        took < Duration::from_secs(2),
        "workers took {took:?} to exit"
    );
}
