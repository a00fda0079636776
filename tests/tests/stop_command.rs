//! `<app> stop`: finds the master through its pid file and stops the cluster.

use std::process::Command;

use cluster2_tests::{Cluster, TempPath, alive, get};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn pids_arg(dir: &TempPath) -> String {
    format!("--pids={}", dir.as_str())
}

fn stop(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(APP).arg("stop").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stop_stops_the_cluster_gracefully_and_cleans_up() {
    let dir = TempPath::new("pids-graceful");
    let mut cluster = Cluster::start(APP, &["--workers=2", &pids_arg(&dir)], &[]);
    let master_file = dir.path().join("master.pid");
    assert_eq!(
        std::fs::read_to_string(&master_file).unwrap().trim(),
        cluster.proc.pid().to_string()
    );
    for pid in &cluster.workers {
        assert!(dir.path().join(format!("worker.{pid}.pid")).exists());
    }
    let (code, stderr) = stop(&[&pids_arg(&dir)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert_eq!(cluster.proc.wait_exit().code(), Some(0));
    assert!(cluster.workers.iter().all(|&p| !alive(p)));
    assert!(!master_file.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no pid file left"
    );

    // Nothing running any more.
    let (code, stderr) = stop(&[&pids_arg(&dir)]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no master.pid"), "{stderr}");
}

#[test]
fn stop_kills_what_does_not_stop_in_time_and_says_so() {
    let dir = TempPath::new("pids-kill");
    let cluster = Cluster::start(
        APP,
        &["--workers=1", "--stop-timeout=60s", &pids_arg(&dir)],
        &[],
    );
    let app = cluster.app;
    let slow = std::thread::spawn(move || get(app, "/slow?ms=60000"));
    let mut cluster = cluster;
    cluster.proc.wait_for("slow request started");
    let (code, stderr) = stop(&[&pids_arg(&dir), "--stop-timeout=1s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("killed what did not stop in time"),
        "{stderr}"
    );
    let master = cluster.proc.pid();
    assert!(cluster2_tests::eventually(cluster2_tests::SOON, || !alive(
        master
    )));
    assert!(cluster2_tests::eventually(cluster2_tests::SOON, || cluster
        .workers
        .iter()
        .all(|&p| !alive(p))));
    assert!(slow.join().unwrap().is_err());
}

#[test]
fn stop_reports_stale_pid_files_and_missing_directories() {
    let dir = TempPath::new("pids-stale");
    std::fs::create_dir_all(dir.path()).unwrap();
    // A pid that is not running: far above any pid this machine hands out.
    std::fs::write(dir.path().join("master.pid"), "4194000\n").unwrap();
    let (code, stderr) = stop(&[&pids_arg(&dir)]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("stale pid file"), "{stderr}");
    assert!(!dir.path().join("master.pid").exists());

    let (code, stderr) = stop(&[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("stop needs --pids=DIR"), "{stderr}");
}

#[test]
fn a_second_master_with_the_same_pid_directory_is_refused() {
    let dir = TempPath::new("pids-twice");
    let _first = Cluster::start(APP, &["--workers=1", &pids_arg(&dir)], &[]);
    let mut second =
        cluster2_tests::Proc::spawn(APP, &["--port=0", "--mon-port=0", &pids_arg(&dir)], &[]);
    assert_eq!(second.wait_exit().code(), Some(1));
    assert!(
        second.log.iter().any(|l| l.contains("another master")),
        "{:#?}",
        second.log
    );
}
