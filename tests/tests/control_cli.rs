//! The commands for a running cluster, run as the binary's first argument against real
//! clusters: `status` (table and `--json`), `reload`, `scale N|+N|-N`, found through the pid
//! file or the monitor's port, with and without a token; and each failure's words and exit
//! status (2 a bad argument, 5 no master, 6 unreachable, 7 the token, 1 what was asked failed).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster2_tests::{Cluster, SOON, TempPath, get};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");
const TOKEN: &str = "s3cret-token";

/// What a command printed and how it ended.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `APP args…` to its end, bounded: a command that hangs is killed and fails the test.
fn ctl(args: &[&str], envs: &[(&str, &str)]) -> Ran {
    let mut child = Command::new(APP)
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SOON * 3;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{}` did not end in time", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn pids_arg(dir: &TempPath) -> String {
    format!("--pids={}", dir.as_str())
}

fn workers(cluster: &Cluster, token: Option<&str>) -> Value {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let r = cluster2_tests::request(
        cluster.monitor,
        &format!("GET /workers HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// The pids serving each worker id, sorted by id.
fn serving(cluster: &Cluster) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = workers(cluster, None)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == "listening")
        .map(|w| (w["worker"].as_u64().unwrap(), w["pid"].as_u64().unwrap()))
        .collect();
    all.sort();
    all
}

#[test]
fn status_prints_a_table_or_the_json_of_workers_found_by_pid_file_or_port() {
    let dir = TempPath::new("ctl-status");
    let cluster = Cluster::start(APP, &["--workers=2", &pids_arg(&dir)], &[]);

    let ran = ctl(&["status", &pids_arg(&dir)], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[0], "2 of 2 workers serving", "{ran:?}");
    for column in [
        "WORKER", "PID", "STATE", "UPTIME", "CPU", "MEMORY", "REQ/S", "RESTARTS",
    ] {
        assert!(lines[1].contains(column), "{ran:?}");
    }
    assert_eq!(lines.len(), 4, "a row per worker: {ran:?}");
    for (row, pid) in lines[2..].iter().zip(&cluster.workers) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], pid.to_string(), "{ran:?}");
        assert_eq!(cells[2], "listening", "{ran:?}");
    }

    // `--json`, found by the monitor's port this time: /workers as it is.
    let port = format!("--mon-port={}", cluster.monitor.port());
    let ran = ctl(&["status", "--json", &port], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["expected"], 2);
    let mut pids: Vec<u64> = json["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect();
    pids.sort();
    let mut want: Vec<u64> = cluster.workers.iter().map(|&p| u64::from(p)).collect();
    want.sort();
    assert_eq!(pids, want);
}

#[test]
fn with_a_token_the_commands_need_it_and_say_which_is_wrong() {
    let dir = TempPath::new("ctl-token");
    let _cluster = Cluster::start(
        APP,
        &[
            "--workers=1",
            &pids_arg(&dir),
            &format!("--mon.token={TOKEN}"),
        ],
        &[],
    );
    let pids = pids_arg(&dir);

    let ran = ctl(&["status", &pids], &[]);
    assert_eq!(ran.code, Some(7), "{ran:?}");
    assert!(ran.stderr.contains("needs a token"), "{ran:?}");
    assert!(ran.stderr.contains("--mon.token"), "{ran:?}");

    let ran = ctl(&["scale", "+1", &pids, "--mon.token=not-it"], &[]);
    assert_eq!(ran.code, Some(7), "{ran:?}");
    assert!(ran.stderr.contains("refused the token"), "{ran:?}");
    assert!(
        !ran.stderr.contains("not-it"),
        "the token is not echoed: {ran:?}"
    );

    let ran = ctl(&["status", &pids, &format!("--mon.token={TOKEN}")], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.starts_with("1 of 1 workers serving"), "{ran:?}");
    // As every option, from the environment too.
    let ran = ctl(
        &["status", "--json", &pids],
        &[("CLUSTER2_MON__TOKEN", TOKEN)],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[test]
fn without_a_master_or_with_a_bad_argument_the_error_says_so_with_its_own_status() {
    let empty = TempPath::new("ctl-none");
    std::fs::create_dir_all(empty.path()).unwrap();
    let ran = ctl(&["status", &pids_arg(&empty)], &[]);
    assert_eq!(ran.code, Some(5), "{ran:?}");
    assert!(ran.stderr.contains("no master found"), "{ran:?}");
    assert!(ran.stdout.is_empty(), "{ran:?}");

    // A port where nothing listens: bound here, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ran = ctl(&["reload", &format!("--mon-port={port}")], &[]);
    assert_eq!(ran.code, Some(6), "{ran:?}");
    assert!(ran.stderr.contains("connection refused"), "{ran:?}");

    let ran = ctl(&["status", "--mon-port=0"], &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("--pids"), "{ran:?}");

    for (args, says) in [
        (&["scale"][..], "scale needs a number"),
        (&["scale", "abc"], "`abc` is not a number of workers"),
        (&["scale", "0"], "at least one"),
        (&["scale", "+0"], "changes nothing"),
        (&["reload", "--json"], "--json goes with the status command"),
    ] {
        let ran = ctl(args, &[]);
        assert_eq!(ran.code, Some(2), "{args:?}: {ran:?}");
        assert!(ran.stderr.contains(says), "{args:?}: {ran:?}");
    }
}

#[test]
fn reload_replaces_every_worker_and_waits() {
    let dir = TempPath::new("ctl-reload");
    let cluster = Cluster::start(APP, &["--workers=2", &pids_arg(&dir)], &[]);
    let before = serving(&cluster);

    let ran = ctl(&["reload", &pids_arg(&dir)], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("reloading 2 workers"), "{ran:?}");
    assert!(ran.stdout.contains("reloaded 2 workers"), "{ran:?}");
    // Done when it says so: both ids serve, each from a new process.
    let after = serving(&cluster);
    assert_eq!(after.len(), 2, "{after:?}");
    for ((id, old), (id2, new)) in before.iter().zip(&after) {
        assert_eq!(id, id2);
        assert_ne!(old, new, "worker {id} was replaced");
    }
}

#[test]
fn reload_exits_1_when_a_successor_fails_its_warm_up() {
    let dir = TempPath::new("ctl-reload-fail");
    let broken = TempPath::new("ctl-reload-broken");
    let cluster = Cluster::start(
        APP,
        &["--workers=2", &pids_arg(&dir), "--death-queue.retries=2"],
        &[("FIXTURE_WARM_UP_FAIL_AFTER", broken.as_str())],
    );
    let before = serving(&cluster);
    // From now on every new worker fails its warm-up.
    std::fs::write(broken.path(), b"broken").unwrap();

    let ran = ctl(&["reload", &pids_arg(&dir)], &[]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains("successor try 1 of 2 failed"),
        "{ran:?}"
    );
    assert!(
        ran.stderr.contains("2 of 2 workers not replaced"),
        "{ran:?}"
    );
    assert!(ran.stderr.contains("warm-up broken by the test"), "{ran:?}");
    // The old workers serve on.
    assert_eq!(serving(&cluster), before);
}

/// Requests on fresh connections, one after another, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(cluster: &Cluster) -> Self {
        let (stop, ok) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stop2, ok2, app) = (stop.clone(), ok.clone(), cluster.app);
        let thread = std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match get(app, "/") {
                    Ok(r) if r.status == 200 => {
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}: {}", r.status, r.body)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        });
        Self {
            stop,
            ok,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.take().unwrap().join().unwrap();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn scale_to_a_number_and_by_one_waits_until_workers_follow() {
    let dir = TempPath::new("ctl-scale");
    let cluster = Cluster::start(APP, &["--workers=2", &pids_arg(&dir)], &[]);
    let pids = pids_arg(&dir);
    let ids =
        |cluster: &Cluster| -> Vec<u64> { serving(cluster).iter().map(|(id, _)| *id).collect() };

    let ran = ctl(&["scale", "3", &pids], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("scaling from 2 to 3 workers"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("3 workers serving"), "{ran:?}");
    assert_eq!(ids(&cluster), [0, 1, 2]);

    let ran = ctl(&["scale", "+1", &pids], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ids(&cluster), [0, 1, 2, 3]);

    // Down by one under a small load: the newest drains, no request fails, and the command
    // returns once it is gone.
    let load = Load::start(&cluster);
    let ran = ctl(&["scale", "-1", &pids], &[]);
    let (answered, failures) = load.finish();
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("scaling from 4 to 3 workers"),
        "{ran:?}"
    );
    assert!(answered > 0);
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let all = workers(&cluster, None);
    assert_eq!(all["expected"], 3);
    assert_eq!(all["workers"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(ids(&cluster), [0, 1, 2]);

    // Out of the workers option's bounds: the monitor's words, and a usage status.
    let ran = ctl(&["scale", "100000", &pids], &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("workers must be from 1 to"), "{ran:?}");
    let ran = ctl(&["scale", "-3", &pids], &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("at least one"), "{ran:?}");
    assert_eq!(ids(&cluster), [0, 1, 2]);
}

#[test]
fn scale_exits_1_naming_the_worker_when_a_new_one_cannot_start() {
    let dir = TempPath::new("ctl-scale-fail");
    let broken = TempPath::new("ctl-scale-broken");
    let cluster = Cluster::start(
        APP,
        &["--workers=1", &pids_arg(&dir)],
        &[("FIXTURE_WARM_UP_FAIL_AFTER", broken.as_str())],
    );
    std::fs::write(broken.path(), b"broken").unwrap();
    // The command's own bound comes from the options it is given.
    let ran = ctl(
        &[
            "scale",
            "+1",
            &pids_arg(&dir),
            "--startup-timeout=1s",
            "--stop-timeout=1s",
        ],
        &[],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains("scaling from 1 to 2 workers"),
        "{ran:?}"
    );
    assert!(ran.stderr.contains("not done after"), "{ran:?}");
    assert!(ran.stderr.contains("worker 1"), "{ran:?}");
    // The first worker serves on.
    assert_eq!(serving(&cluster).len(), 1);
}
