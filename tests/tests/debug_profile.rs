//! Live debugging of one process by pid on the monitor: CPU profiles (SVG flame graph and
//! pprof protobuf) of a busy worker, one at a time, of the cache manager and of the master;
//! thread stacks of a blocked worker taken with eu-stack; and the answers to bad requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cluster2_tests::{Cluster, RawResponse, TempPath, get, get_raw};
use pprof::protos::Message;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn profile(monitor: SocketAddr, pid: u32, query: &str) -> RawResponse {
    get_raw(monitor, &format!("/debug/workers/{pid}/profile?{query}")).unwrap()
}

fn text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The `error` of a JSON error answer.
fn error_of(r: &RawResponse) -> String {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        text(r)
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    body["error"].as_str().expect("an error message").to_owned()
}

/// Keeps `/busy` requests going until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(app: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                assert_eq!(get(app, "/busy?ms=100").unwrap().status, 200);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let outcome = thread.join();
            if !std::thread::panicking() {
                outcome.unwrap();
            }
        }
    }
}

#[test]
fn a_profile_of_a_busy_worker_names_the_busy_function() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let worker = cluster.workers[0];
    let _load = Load::start(cluster.app);

    let svg = profile(cluster.monitor, worker, "seconds=2");
    assert_eq!(svg.status, 200, "{}", text(&svg));
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let body = text(&svg);
    assert!(body.starts_with("<?xml") && body.trim_end().ends_with("</svg>"));
    assert!(
        body.contains("fixture_busy_loop"),
        "the flame graph does not name the busy function:\n{body}"
    );

    let pb = profile(cluster.monitor, worker, "seconds=2&format=pprof");
    assert_eq!(pb.status, 200, "{}", text(&pb));
    assert_eq!(pb.header("content-type"), Some("application/octet-stream"));
    let decoded = pprof::protos::Profile::decode(&pb.body[..]).expect("a pprof Profile message");
    assert!(!decoded.sample.is_empty(), "no samples");
    assert!(
        decoded
            .string_table
            .iter()
            .any(|s| s.contains("fixture_busy_loop")),
        "the string table does not name the busy function: {:?}",
        decoded.string_table
    );
}

#[test]
fn one_profile_at_a_time_per_process() {
    let mut cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let (monitor, worker) = (cluster.monitor, cluster.workers[0]);
    let first = std::thread::spawn(move || profile(monitor, worker, "seconds=5"));
    cluster.proc.wait_line("the worker's profile started", |l| {
        l.contains(&format!("[{worker}]")) && l.contains("cpu profile started")
    });
    let second = profile(monitor, worker, "seconds=1");
    assert_eq!(second.status, 409, "{}", text(&second));
    let message = error_of(&second);
    assert!(
        message.contains(&worker.to_string()) && message.contains("already being profiled"),
        "{message}"
    );
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}", text(&first));
    // Once it is done, the next one may start.
    assert_eq!(profile(monitor, worker, "seconds=1").status, 200);
}

#[test]
fn a_profile_fails_at_once_when_its_worker_exits() {
    let mut cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let (monitor, worker) = (cluster.monitor, cluster.workers[0]);
    let asked = std::thread::spawn(move || profile(monitor, worker, "seconds=60"));
    cluster.proc.wait_line("the worker's profile started", |l| {
        l.contains(&format!("[{worker}]")) && l.contains("cpu profile started")
    });
    // The worker exits mid-profile; the request connection is closed without an answer.
    let _ = get(cluster.app, "/crash");
    let answer = asked.join().unwrap();
    assert_eq!(answer.status, 502, "{}", text(&answer));
    assert!(error_of(&answer).contains("exited"));
}

#[test]
fn bad_requests_are_refused_with_the_valid_range() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let worker = cluster.workers[0];
    for query in ["", "seconds=0", "seconds=61", "seconds=abc", "seconds=-1"] {
        let r = profile(cluster.monitor, worker, query);
        assert_eq!(r.status, 400, "{query}: {}", text(&r));
        let message = error_of(&r);
        assert!(
            message.contains("seconds") && message.contains("from 1 to 60"),
            "{query}: {message}"
        );
    }
    let r = profile(cluster.monitor, worker, "seconds=1&format=png");
    assert_eq!(r.status, 400);
    let message = error_of(&r);
    assert!(
        message.contains("`png`") && message.contains("pprof"),
        "{message}"
    );

    // A pid that is no process of the cluster: 404 naming it, for both routes.
    let stranger = 4_000_000;
    for route in ["profile?seconds=1", "stacks"] {
        let r = get_raw(
            cluster.monitor,
            &format!("/debug/workers/{stranger}/{route}"),
        )
        .unwrap();
        assert_eq!(r.status, 404, "{route}: {}", text(&r));
        let message = error_of(&r);
        assert!(
            message.contains(&stranger.to_string()) && message.contains(&worker.to_string()),
            "{route}: {message}"
        );
        let r = get_raw(cluster.monitor, &format!("/debug/workers/nope/{route}")).unwrap();
        assert_eq!(r.status, 400, "{route}: {}", text(&r));
    }
}

#[test]
fn the_longest_profile_is_an_option() {
    let cluster = Cluster::start(APP, &["--workers=1", "--mon.max_profile=2s"], &[]);
    let worker = cluster.workers[0];
    let r = profile(cluster.monitor, worker, "seconds=3");
    assert_eq!(r.status, 400, "{}", text(&r));
    let message = error_of(&r);
    assert!(
        message.contains("from 1 to 2") && message.contains("--mon.max_profile"),
        "{message}"
    );
    assert_eq!(profile(cluster.monitor, worker, "seconds=2").status, 200);
}

/// Whether eu-stack can be run here. Where the machine is expected to have it
/// (`REQUIRE_EU_STACK`, set by CI, which installs it), its absence fails the test.
fn eu_stack_installed() -> bool {
    let found = std::process::Command::new("eu-stack")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found || std::env::var_os("REQUIRE_EU_STACK").is_none(),
        "REQUIRE_EU_STACK is set, but eu-stack is not installed (apt-get install elfutils)"
    );
    found
}

#[test]
fn stacks_of_a_blocked_worker_show_the_blocking_handler() {
    let mut cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let worker = cluster.workers[0];
    let gate = TempPath::new("unblock");
    let app = cluster.app;
    let path = format!("/block?ms=60000&until={}", gate.as_str());
    let blocked = std::thread::spawn(move || get(app, &path).unwrap());
    cluster.proc.wait_line("the block request started", |l| {
        l.contains("block request started")
    });

    let r = get_raw(cluster.monitor, &format!("/debug/workers/{worker}/stacks")).unwrap();
    if eu_stack_installed() {
        assert_eq!(r.status, 200, "{}", text(&r));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let stacks = text(&r);
        assert!(
            stacks.contains("fixture_blocking_sleep"),
            "no frame of the blocking handler in:\n{stacks}"
        );
    } else {
        assert_eq!(r.status, 501, "{}", text(&r));
        assert!(error_of(&r).contains("apt-get install elfutils"));
    }

    std::fs::write(gate.path(), b"go").unwrap();
    assert_eq!(blocked.join().unwrap().body, "blocked");
}

#[test]
fn the_cache_manager_and_the_master_are_addressable_too() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let manager = cluster
        .events()
        .wait("cache_manager_up", |e| e["pid"].is_u64())["pid"]
        .as_u64()
        .unwrap() as u32;
    let master = cluster.proc.pid();
    for pid in [manager, master] {
        let svg = profile(cluster.monitor, pid, "seconds=1");
        assert_eq!(svg.status, 200, "pid {pid}: {}", text(&svg));
        assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
        assert!(text(&svg).trim_end().ends_with("</svg>"));
        let pb = profile(cluster.monitor, pid, "seconds=1&format=pprof");
        assert_eq!(pb.status, 200, "pid {pid}: {}", text(&pb));
        pprof::protos::Profile::decode(&pb.body[..]).expect("a pprof Profile message");
    }

    let installed = eu_stack_installed();
    let stacks = |pid: u32| get_raw(cluster.monitor, &format!("/debug/workers/{pid}/stacks"));
    let r = stacks(manager).unwrap();
    if installed {
        assert_eq!(r.status, 200, "{}", text(&r));
        assert!(text(&r).contains(&format!("TID {manager}")), "{}", text(&r));
    } else {
        assert_eq!(r.status, 501, "{}", text(&r));
    }
    // The master's own stacks: eu-stack, its child, may trace it unless Yama says only
    // ancestors may; then the answer says why.
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .map_or(0, |s| s.trim().parse().unwrap_or(0));
    let r = stacks(master).unwrap();
    match (installed, scope) {
        (_, 1 | 2) => {
            assert_eq!(r.status, 400, "{}", text(&r));
            assert!(error_of(&r).contains("ptrace_scope"));
        }
        (true, 0) => {
            assert_eq!(r.status, 200, "{}", text(&r));
            assert!(text(&r).contains(&format!("TID {master}")), "{}", text(&r));
        }
        _ => assert_eq!(r.status, 501, "{}", text(&r)),
    }
}
