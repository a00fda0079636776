//! The master answers SIGTERM whatever it is doing, here starting many workers: it stops
//! starting them, stops those it started, and exits.

use cluster2_tests::{Proc, SOON, TempPath, alive, eventually, pid_in};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_fixture-app");

const WORKERS: usize = 16;

#[test]
fn sigterm_is_answered_in_the_middle_of_starting_the_workers() {
    // Never opened: every worker waits in its warm-up, so starting them is all that happens.
    let gate = TempPath::new("gate");
    let workers = format!("--workers={WORKERS}");
    let mut proc = Proc::spawn(
        BIN,
        &[
            "--port=0",
            "--mon-port=0",
            &workers,
            "--threads=1",
            // The master's own debug lines name each worker it starts.
            "--log.level=info,cluster2::master=debug",
        ],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    // The master logs this line just before it starts the workers.
    proc.wait_line("the starting line", |l| {
        l.contains("master[") && l.contains(": starting ")
    });
    proc.signal(Signal::SIGTERM);
    let status = proc.wait_exit();
    assert!(status.success(), "{status}; log:\n{}", proc.log.join("\n"));

    let spawned: Vec<u32> = proc
        .log
        .iter()
        .filter(|l| l.contains("master[") && l.contains("spawned worker"))
        .map(|l| pid_in(l))
        .collect();
    assert!(
        spawned.len() < WORKERS,
        "all {WORKERS} workers were started before SIGTERM was answered; log:\n{}",
        proc.log.join("\n")
    );
    for pid in spawned {
        assert!(
            eventually(SOON, || !alive(pid)),
            "worker {pid} outlived its master"
        );
    }
}
