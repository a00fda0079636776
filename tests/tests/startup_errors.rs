//! Start-up failures: one clear line, a non-zero exit, and no process left behind.

use std::net::TcpListener;

use cluster2_tests::Proc;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn errors(proc: &Proc) -> Vec<&String> {
    proc.log
        .iter()
        .filter(|l| l.contains("ERROR") || l.starts_with("error:"))
        .collect()
}

#[test]
fn a_busy_application_port_is_one_line_and_no_worker_starts() {
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut proc = Proc::spawn(APP, &[&format!("--port={port}"), "--mon-port=0"], &[]);
    assert_eq!(proc.wait_exit().code(), Some(1));
    let errors = errors(&proc);
    assert_eq!(errors.len(), 1, "{:#?}", proc.log);
    assert!(
        errors[0].contains(&format!("--port {port}")),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("in use"), "{}", errors[0]);
    assert!(
        !proc.log.iter().any(|l| l.contains("worker")),
        "no worker was spawned"
    );
}

#[test]
fn a_busy_monitor_port_is_one_line_too() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut proc = Proc::spawn(APP, &["--port=0", &format!("--mon-port={port}")], &[]);
    assert_eq!(proc.wait_exit().code(), Some(1));
    let errors = errors(&proc);
    assert_eq!(errors.len(), 1, "{:#?}", proc.log);
    assert!(
        errors[0].contains(&format!("--mon-port {port}")),
        "{}",
        errors[0]
    );
}

#[test]
fn two_configure_app_functions_are_refused_by_name() {
    let mut proc = Proc::spawn(env!("CARGO_BIN_EXE_fixture-two-apps"), &[], &[]);
    assert_eq!(proc.wait_exit().code(), Some(2));
    let log = proc.log.join("\n");
    assert!(
        log.contains("found 2 #[cluster2::configure_app] functions"),
        "{log}"
    );
    assert!(log.contains("first (") && log.contains("second ("), "{log}");
    assert!(
        log.contains("fixture-two-apps.rs:"),
        "names the file: {log}"
    );
}

#[test]
fn a_missing_configure_app_is_refused() {
    let mut proc = Proc::spawn(env!("CARGO_BIN_EXE_fixture-no-app"), &[], &[]);
    assert_eq!(proc.wait_exit().code(), Some(2));
    let log = proc.log.join("\n");
    assert!(log.contains("no application to serve"), "{log}");
    assert!(log.contains("#[cluster2::configure_app]"), "{log}");
}

#[test]
fn an_error_from_main_in_the_master_stops_the_cluster_non_zero() {
    let mut proc = Proc::spawn(
        APP,
        &["--port=0", "--mon-port=0", "--workers=1"],
        &[("FIXTURE_MAIN_FAIL", "1")],
    );
    let ready = proc.wait_line("ready", cluster2_tests::is_ready);
    let pids: Vec<u32> = cluster2_tests::field(&ready, "workers")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(proc.wait_exit().code(), Some(1));
    assert!(
        proc.log
            .iter()
            .any(|l| l.contains("main failed: the master's main gave up"))
    );
    assert!(pids.iter().all(|&p| !cluster2_tests::alive(p)));
}
