//! SIGTTIN and SIGTTOU to the master (gunicorn's signals): one worker more, one fewer, as
//! `POST /workers/scale` with a `delta` of +1 and -1; a SIGTTOU at one worker is refused in
//! the log and changes nothing.

use cluster2_tests::{Cluster, get};
use nix::sys::signal::Signal;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn expected(cluster: &Cluster) -> u64 {
    let r = get(cluster.monitor, "/workers").unwrap();
    let workers: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    workers["expected"].as_u64().unwrap()
}

#[test]
fn sigttin_adds_a_worker_and_sigttou_retires_the_newest() {
    let mut cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let mut events = cluster.events();

    cluster.proc.signal(Signal::SIGTTIN);
    events.wait("scaled", |e| e["from"] == 1 && e["to"] == 2);
    events.wait("listening", |e| e["worker"] == 1);
    assert_eq!(expected(&cluster), 2);

    cluster.proc.signal(Signal::SIGTTOU);
    events.wait("scaled", |e| e["from"] == 2 && e["to"] == 1);
    events.wait("exited", |e| e["worker"] == 1 && e["expected"] == true);
    assert_eq!(expected(&cluster), 1);

    // One worker is the least: refused, said in the log, nothing changes.
    cluster.proc.signal(Signal::SIGTTOU);
    let line = cluster.proc.wait_line("refusing SIGTTOU", |l| {
        l.contains("WARN") && l.contains("SIGTTOU:")
    });
    assert!(line.contains("at least one"), "{line}");
    assert_eq!(expected(&cluster), 1);
    assert!(!events.any("scaled", |e| e["to"] == 0));
    cluster.proc.signal(Signal::SIGTERM);
    assert!(cluster.proc.wait_exit().success());
}
