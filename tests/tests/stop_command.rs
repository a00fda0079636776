//! `<app> stop`: finds the master through its pid file and stops the cluster, and signals
//! nothing when the pid file does not prove that it names this cluster's master.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command};

use cluster2_tests::{Cluster, TempPath, alive, get};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn pids_arg(dir: &TempPath) -> String {
    format!("--pids={}", dir.as_str())
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A process that is not a cluster, killed and reaped when dropped.
struct Bystander(Child);

impl Bystander {
    fn start() -> Self {
        Self(Command::new("sleep").arg("300").spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn still_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let text = std::fs::read_to_string(&master_file).unwrap();
    // The pid alone on the first line, as other tools read it; the start time after it.
    assert_eq!(
        text.lines().next(),
        Some(cluster.proc.pid().to_string().as_str())
    );
    assert!(text.lines().nth(1).unwrap().starts_with("start="), "{text}");
    // Private, in a private directory it created.
    assert_eq!(mode(&master_file), 0o600);
    assert_eq!(mode(dir.path()), 0o700);
    for pid in &cluster.workers {
        let worker_file = dir.path().join(format!("worker.{pid}.pid"));
        assert_eq!(mode(&worker_file), 0o600);
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

/// The reproduction: a pid file left by a master killed outright names a pid that is
/// now another process's (`sleep 300 & echo $! > d/master.pid`). `stop` must not kill it.
#[test]
fn a_stale_pid_file_naming_another_process_signals_nothing() {
    let dir = TempPath::new("pids-reused");
    std::fs::create_dir_all(dir.path()).unwrap();
    let mut sleep = Bystander::start();
    std::fs::write(dir.path().join("master.pid"), format!("{}\n", sleep.pid())).unwrap();
    let (code, stderr) = stop(&[&pids_arg(&dir), "--stop-timeout=1s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("stale pid file"), "{stderr}");
    assert!(stderr.contains("no master holds it"), "{stderr}");
    assert!(stderr.contains("nothing signalled"), "{stderr}");
    assert!(!stderr.contains("stopped"), "{stderr}");
    assert!(
        sleep.still_running(),
        "stop killed a process that is not the master"
    );
}

/// A locked pid file still proves nothing if it names a process that started at another time
/// than the master that wrote it: after a master is killed its file may be edited or copied.
#[test]
fn a_pid_file_naming_another_process_than_its_writer_is_refused() {
    let dir = TempPath::new("pids-edited");
    let cluster = Cluster::start(APP, &["--workers=1", &pids_arg(&dir)], &[]);
    let master_file = dir.path().join("master.pid");
    let mut sleep = Bystander::start();
    // Same file (the master's lock stays on it), another pid.
    let text = std::fs::read_to_string(&master_file).unwrap();
    let start = text.lines().nth(1).unwrap();
    std::fs::write(&master_file, format!("{}\n{start}\n", sleep.pid())).unwrap();
    let (code, stderr) = stop(&[&pids_arg(&dir), "--stop-timeout=1s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not this cluster's master"), "{stderr}");
    assert!(stderr.contains("nothing signalled"), "{stderr}");
    assert!(sleep.still_running());
    assert!(alive(cluster.proc.pid()));
    // Left as it is.
    assert_eq!(
        std::fs::read_to_string(&master_file).unwrap(),
        format!("{}\n{start}\n", sleep.pid())
    );
}

/// A symbolic link where `master.pid` should be is never followed, by `stop` or a master.
#[test]
fn a_symlinked_pid_file_is_refused() {
    let dir = TempPath::new("pids-link");
    std::fs::create_dir_all(dir.path()).unwrap();
    let target = TempPath::new("pids-link-target");
    let sleep = Bystander::start();
    std::fs::write(target.path(), format!("{}\n", sleep.pid())).unwrap();
    std::os::unix::fs::symlink(target.path(), dir.path().join("master.pid")).unwrap();
    let (code, stderr) = stop(&[&pids_arg(&dir)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(stderr.contains("nothing signalled"), "{stderr}");
    let mut master =
        cluster2_tests::Proc::spawn(APP, &["--port=0", "--mon-port=0", &pids_arg(&dir)], &[]);
    assert_eq!(master.wait_exit().code(), Some(1));
    assert!(
        master.log.iter().any(|l| l.contains("symbolic link")),
        "{:#?}",
        master.log
    );
    assert_eq!(
        std::fs::read_to_string(target.path()).unwrap(),
        format!("{}\n", sleep.pid())
    );
    drop(sleep);
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
