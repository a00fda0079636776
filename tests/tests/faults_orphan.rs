//! The master is SIGKILLed while a worker's handler blocks its runtime: the worker cannot run
//! its orderly way out (the parent-death signal and the channel's EOF are handled on that
//! runtime), yet it must not serve on as an orphan holding the port.

use cluster2_tests::{Cluster, SOON, TempPath, alive, eventually, field, port_is_free};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_fixture-app");

#[test]
fn a_worker_whose_runtime_is_blocked_still_exits_once_its_master_is_killed() {
    let mut cluster = Cluster::start(BIN, &["--workers=1", "--threads=1"], &[]);
    let worker = cluster.workers[0];
    let port = cluster.app.port();
    // Far longer than the test waits; the file ends it early if the test fails.
    let unblock = TempPath::new("unblock");
    let path = format!("/block?ms=300000&until={}", unblock.as_str());
    let app = cluster.app;
    let _client = std::thread::spawn(move || cluster2_tests::get(app, &path));
    let line = cluster.proc.wait_for("block request started");
    assert_eq!(field(&line, "pid"), Some(worker.to_string().as_str()));

    cluster.proc.signal(Signal::SIGKILL);
    cluster.proc.wait_exit();

    let gone = eventually(SOON, || !alive(worker));
    if !gone {
        std::fs::write(unblock.path(), b"go").unwrap();
        let _ = kill(Pid::from_raw(worker as i32), Signal::SIGKILL);
    }
    assert!(gone, "the orphaned worker {worker} is still running");
    assert!(
        eventually(SOON, || port_is_free(port)),
        "port {port} is still taken"
    );
}
