//! Start-up: the order of a worker's steps, two workers sharing one port, and what the
//! application's `main` receives.

use std::collections::HashSet;

use cluster2_tests::{Cluster, Proc, TempPath, field, get, is_ready};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

#[test]
fn two_workers_share_the_port_and_both_answer() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    assert_eq!(cluster.workers.len(), 2);
    let expected: HashSet<u32> = cluster.workers.iter().copied().collect();
    let mut seen = HashSet::new();
    // Each request is a new connection; the kernel hands each to whichever worker accepts
    // first. Stop as soon as both have answered.
    for _ in 0..5000 {
        let response = get(cluster.app, "/pid").expect("GET /pid");
        assert_eq!(response.status, 200);
        let pid: u32 = response.body.parse().expect("a pid");
        assert!(
            expected.contains(&pid),
            "pid {pid} is not one of the workers {expected:?}"
        );
        seen.insert(pid);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, expected, "both workers must answer");
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");
}

#[test]
fn warm_up_runs_on_its_own_port_before_the_shared_port_takes_traffic() {
    let gate = TempPath::new("gate");
    let mut proc = Proc::spawn(
        APP,
        &["--port=0", "--mon-port=0", "--workers=1"],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    // The master binds the shared port before it spawns anything, and says where.
    let starting = proc.wait_for("starting");
    let app_port: u16 = field(&starting, "app")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    proc.wait_for("warm-up started");
    // A request sent now is queued by the kernel: no worker accepts on the shared port yet.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], app_port));
    let early = std::thread::spawn(move || get(addr, "/seq"));
    // Wait until the connection is really queued before opening the gate.
    assert!(cluster2_tests::eventually(cluster2_tests::SOON, || queued(
        app_port
    ) >= 1));
    std::fs::write(gate.path(), b"open").unwrap();

    let warm = proc.wait_for("warm-up request answered");
    let ready = proc.wait_line("with the ready message", is_ready);
    let early = early
        .join()
        .unwrap()
        .expect("the early request is answered");

    // The warm-up's request was the worker's first, on a loopback port other than the
    // shared one; the early request, although sent before, was served after it.
    assert_eq!(field(&warm, "seq"), Some("1"), "{warm}");
    let warm_local: std::net::SocketAddr = field(&warm, "local").unwrap().parse().unwrap();
    assert!(warm_local.ip().is_loopback());
    assert_ne!(warm_local.port(), app_port);
    let (seq, local) = early.body.split_once(' ').unwrap();
    assert_eq!(
        seq, "2",
        "the early request came after the warm-up: {early:?}"
    );
    assert!(local.ends_with(&format!(":{app_port}")), "{local}");

    // The order of the steps: the worker warmed up, then listened, then the cluster was ready.
    let mut events = proc.events();
    let warming = events.wait("warming", |e| e["worker"] == 0);
    let listening = events.wait("listening", |e| e["worker"] == 0);
    let ready_event = events.next_of("ready");
    assert_eq!(warming["pid"], listening["pid"]);
    assert_eq!(
        ready_event["workers"],
        serde_json::json!([listening["pid"]])
    );
    let warm_up_addr: std::net::SocketAddr = warming["addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        warm_up_addr, warm_local,
        "the warm-up listener the warm-up used"
    );
    let position = |needle: &str| proc.log.iter().position(|l| l.contains(needle)).unwrap();
    assert!(position("warm-up request answered") < position(": ready "));
    let cluster = Cluster::from_ready(proc, &ready);
    assert_eq!(cluster.app.port(), app_port);
}

#[test]
fn main_runs_in_every_process_with_the_application_arguments() {
    let mut cluster = Cluster::start(APP, &["--workers=2", "--", "--mine", "x"], &[]);
    let mut roles = Vec::new();
    // Workers run their main before the master's ready line; start from the beginning.
    cluster.proc.rewind();
    for _ in 0..3 {
        let line = cluster.proc.wait_for("main started");
        assert_eq!(field(&line, "args"), Some("--mine,x"), "{line}");
        roles.push(field(&line, "role").unwrap().to_owned());
    }
    roles.sort();
    assert_eq!(roles, ["Master", "Worker(0)", "Worker(1)"]);
}

/// Connections waiting in the accept queue of the listener on `port` (Recv-Q of a listener).
fn queued(port: u16) -> u32 {
    let mut total = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            if cols.len() > 4 && cols[3] == "0A" && cols[1].ends_with(&format!(":{port:04X}")) {
                let rx = cols[4].split(':').nth(1).unwrap();
                total += u32::from_str_radix(rx, 16).unwrap();
            }
        }
    }
    total
}
