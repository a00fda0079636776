//! The commands for a running cluster, run as the binary's first argument against real
//! clusters: `status` (table and `--json`), `reload`, `scale N|+N|-N`, `logs`, found through the pid
//! file or the monitor's port, with and without a token; and each failure's words and exit
//! status (2 a bad argument, 5 no master, 6 unreachable, 7 the token, 1 what was asked failed).
//! Then against a "monitor" that is not one (a small server here answering crafted HTTP) and
//! pid files others could have planted: the command sizes nothing by what it is told, stalls
//! on nothing, prints no control character it was sent, and sends its token nowhere unproven.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster2_tests::{Cluster, Load, SOON, TempPath};
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
    ctl_as(None, args, envs)
}

/// [`ctl`], as the user `uid` when one is given.
fn ctl_as(uid: Option<u32>, args: &[&str], envs: &[(&str, &str)]) -> Ran {
    let mut command = Command::new(APP);
    if let Some(uid) = uid {
        command.uid(uid);
    }
    let mut child = command
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
    let load = Load::start(cluster.app);
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

#[test]
fn logs_follows_every_worker_new_ones_included_escaped_until_interrupted() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut child = Command::new(APP)
        .args(["logs", &format!("--mon-port={}", cluster.monitor.port())])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, printed) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Asks a worker to log `msg` (with an escape sequence in it) until `logs` prints it;
    // returns the line and the pid of the worker that logged it.
    let mut seen = Vec::new();
    let mut logged_until_printed = |msg: &str| -> (String, String) {
        let deadline = Instant::now() + SOON;
        loop {
            assert!(
                Instant::now() < deadline,
                "never printed {msg:?}:\n{seen:#?}"
            );
            // An escape sequence, and a line break with what looks like another worker's line.
            let path =
                format!("/log?level=info&msg={msg}%1B%5B2J%0Aworker%209%20(pid%201)%20forged");
            let pid = cluster2_tests::get(cluster.app, &path).unwrap().body;
            while let Ok(line) = printed.recv_timeout(Duration::from_millis(100)) {
                if line.contains(msg) {
                    return (line, pid);
                }
                seen.push(line);
            }
        }
    };
    let (line, pid) = logged_until_printed("from-the-app");
    assert!(
        line.starts_with("worker ") && line.contains(&format!("(pid {pid}) ")),
        "{line}"
    );
    assert!(line.contains(" INFO "), "{line}");
    // The worker's bytes, shown and not acted on.
    assert!(
        line.contains(r"from-the-app\u{1b}[2J\u{a}worker 9 (pid 1) forged"),
        "{line}"
    );
    assert!(!line.chars().any(char::is_control), "{line}");
    // A worker started after `logs` is followed too.
    let grown = cluster2_tests::post_body(
        cluster.monitor,
        "/workers/scale",
        "application/json",
        r#"{"workers": 3}"#,
    )
    .unwrap();
    assert_eq!(grown.status, 200, "{}", grown.body);
    let mut from_worker_2 = false;
    for i in 0..200 {
        let (line, _) = logged_until_printed(&format!("after-growth-{i}-"));
        if line.starts_with("worker 2 ") {
            from_worker_2 = true;
            break;
        }
    }
    assert!(from_worker_2, "no line of the new worker 2");
    // No message made a line of its own.
    while let Ok(line) = printed.try_recv() {
        seen.push(line);
    }
    assert!(!seen.iter().any(|l| l.starts_with("worker 9")), "{seen:#?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + SOON;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "logs did not end on SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

/// How a [`Hostile`] monitor answers a request.
enum Reply {
    /// These bytes, then the connection is closed.
    Close(String),
    /// These bytes, then nothing more while the server lives.
    Hold(String),
}

fn json_reply(body: &str) -> Reply {
    Reply::Close(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// A "monitor" that is not one: answers each request as `reply` says for its request line,
/// and keeps each request head it was sent.
struct Hostile {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hostile {
    fn start(reply: impl Fn(&str) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (heads2, stop2) = (heads.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(SOON));
                let Some(head) = read_request(&mut stream) else {
                    continue;
                };
                let line = head.lines().next().unwrap_or_default().to_owned();
                heads2.lock().unwrap().push(head);
                match reply(&line) {
                    Reply::Close(bytes) => {
                        let _ = stream.write_all(bytes.as_bytes());
                    }
                    Reply::Hold(bytes) => {
                        let _ = stream.write_all(bytes.as_bytes());
                        held.push(stream);
                    }
                }
            }
        });
        Self {
            addr,
            heads,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which sees `stop` and ends.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `reload` against a [`Hostile`] monitor, found by its port.
fn reload_against(monitor: &Hostile) -> Ran {
    ctl(
        &["reload", &format!("--mon-port={}", monitor.addr.port())],
        &[],
    )
}

/// A request's head, its body read too (so that closing after the answer loses nothing).
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(head)
}

/// Whether `text` holds a character that acts on a terminal (a line break aside).
fn has_controls(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn a_scale_answer_beyond_what_was_asked_is_refused_before_anything_is_sized_by_it() {
    let monitor = Hostile::start(|line| {
        if line.starts_with("POST /workers/scale") {
            json_reply(r#"{"from": 1, "to": 18446744073709551615}"#)
        } else {
            json_reply(r#"{"expected": 18446744073709551615, "workers": []}"#)
        }
    });
    let port = format!("--mon-port={}", monitor.addr.port());
    for asked in ["3", "+1"] {
        let ran = ctl(&["scale", asked, &port], &[]);
        assert_eq!(ran.code, Some(6), "{asked}: {ran:?}");
        assert!(ran.stderr.contains("not what was asked"), "{ran:?}");
        assert!(ran.stderr.contains("1 to 1024 workers"), "{ran:?}");
    }
    // Asked twice, and never looked further.
    let requests = monitor.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("POST /workers/scale"))
    );
}

#[test]
fn a_reload_waits_for_no_more_workers_than_there_are_and_prints_no_control_characters() {
    let why = r#"\u001b]0;owned\u0007\u009b2J\nreloaded 1 worker"#;
    let monitor = Hostile::start(move |line| {
        if line.starts_with("GET /events/recent") {
            json_reply("[]")
        } else if line.starts_with("GET /events") {
            // Both events at once, then the stream's end; CRLF line ends, as the spec allows.
            Reply::Close(format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
                 data: {{\"event\": \"queued\", \"pid\": 77, \"worker\": 0, \
                 \"reason\": {{\"kind\": \"rolling_restart\", \"sighup\": false}}}}\r\n\r\n\
                 data: {{\"event\": \"replacement_failed\", \"pid\": 77, \"worker\": 0, \
                 \"why\": \"{why}\"}}\r\n\r\n"
            ))
        } else if line.starts_with("POST /workers/restart") {
            json_reply(r#"{"queued": 1000000000000000000}"#)
        } else {
            json_reply(
                r#"{"expected": 1, "workers": [{"worker": 0, "pid": 77, "state": "listening"}]}"#,
            )
        }
    });
    let ran = reload_against(&monitor);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    // Its count of queued workers is at most the one worker listed.
    assert!(
        ran.stdout.starts_with("reloading 1 worker one at a time\n"),
        "{ran:?}"
    );
    assert!(
        ran.stderr.contains("1 of 1 workers not replaced"),
        "{ran:?}"
    );
    // The monitor's words, escaped: no control character and no line of its own.
    assert!(
        !has_controls(&ran.stdout) && !has_controls(&ran.stderr),
        "{ran:?}"
    );
    assert!(
        ran.stdout
            .contains(r"(pid 77): \u{1b}]0;owned\u{7}\u{9b}2J\u{a}reloaded 1 worker;"),
        "{ran:?}"
    );
    assert!(
        !ran.stdout.lines().any(|l| l.starts_with("reloaded")),
        "{ran:?}"
    );
}

/// A monitor whose rolling restart of two workers replaces the first, while the second crashes
/// before its turn; `restart` is what its id's new process does next, as `/events` says it.
fn reload_with_a_crash_before_its_turn(restart: &'static str) -> Hostile {
    Hostile::start(move |line| {
        if line.starts_with("GET /events/recent") {
            json_reply("[]")
        } else if line.starts_with("GET /events") {
            let events = [
                r#"{"event": "queued", "pid": 77, "worker": 0, "reason": {"kind": "rolling_restart", "sighup": false}}"#,
                r#"{"event": "queued", "pid": 78, "worker": 1, "reason": {"kind": "rolling_restart", "sighup": false}}"#,
                r#"{"event": "replacing", "pid": 77, "worker": 0}"#,
                r#"{"event": "replaced", "pid": 77, "worker": 0, "successor": 80, "took_secs": 0.1}"#,
                r#"{"event": "exited", "pid": 78, "worker": 1, "expected": false}"#,
                r#"{"event": "spawned", "pid": 81, "worker": 1, "successor_of": null}"#,
                restart,
            ];
            let mut body = String::new();
            for event in events {
                body.push_str(&format!("data: {event}\n\n"));
            }
            Reply::Close(format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
                 {body}"
            ))
        } else if line.starts_with("POST /workers/restart") {
            json_reply(r#"{"queued": 2}"#)
        } else {
            json_reply(
                r#"{"expected": 2, "workers": [{"worker": 0, "pid": 77, "state": "listening"},
                    {"worker": 1, "pid": 78, "state": "listening"}]}"#,
            )
        }
    })
}

#[test]
fn a_reload_counts_a_worker_that_crashed_before_its_turn_only_once_its_restart_listens() {
    let monitor =
        reload_with_a_crash_before_its_turn(r#"{"event": "listening", "pid": 81, "worker": 1}"#);
    let ran = reload_against(&monitor);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("worker 1 (pid 78) crashed before its turn; waiting for its restart"),
        "{ran:?}"
    );
    assert!(
        ran.stdout.contains("worker 1 restarted (pid 78 → pid 81)"),
        "{ran:?}"
    );
    assert!(ran.stdout.ends_with("reloaded 2 workers\n"), "{ran:?}");
}

#[test]
fn a_reload_fails_when_a_worker_that_crashed_before_its_turn_cannot_start_again() {
    for (restart, why) in [
        (
            r#"{"event": "start_failed", "pid": 81, "worker": 1, "stage": "warm-up", "error": "no database"}"#,
            "its warm-up failed: no database",
        ),
        (
            r#"{"event": "exited", "pid": 81, "worker": 1, "expected": false}"#,
            "it exited before it listened",
        ),
    ] {
        let monitor = reload_with_a_crash_before_its_turn(restart);
        let ran = reload_against(&monitor);
        assert_eq!(ran.code, Some(1), "{restart}: {ran:?}");
        assert!(
            ran.stderr.contains("1 of 2 workers not replaced"),
            "{ran:?}"
        );
        assert!(
            ran.stderr.contains(&format!(
                "worker 1: its restart (pid 81) did not start: {why}"
            )),
            "{ran:?}"
        );
        assert!(
            !ran.stdout.lines().any(|l| l.starts_with("reloaded")),
            "{ran:?}"
        );
    }
}

#[test]
fn status_prints_no_control_characters_the_monitor_sends() {
    let answer = r#"{"expected": 1, "death_queue": [], "workers": [{"worker": 0, "pid": 77,
        "state": "listening\u001b[2J\u009b31m\u202e", "uptime_secs": 1.0, "restarts": 0,
        "successor_of": null, "debugging": "\u0007x\ny", "cannot_accept": null,
        "heartbeat": null}]}"#;
    let monitor = Hostile::start(move |_| json_reply(answer));
    let port = format!("--mon-port={}", monitor.addr.port());

    let ran = ctl(&["status", &port], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!has_controls(&ran.stdout), "{ran:?}");
    assert_eq!(ran.stdout.lines().count(), 3, "{ran:?}");
    assert!(
        ran.stdout
            .contains(r"listening\u{1b}[2J\u{9b}31m\u{202e} (debug \u{7}x\u{a}y)"),
        "{ran:?}"
    );

    // `--json`: the same value, with what JSON leaves raw written as JSON escapes.
    let ran = ctl(&["status", "--json", &port], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!has_controls(&ran.stdout), "{ran:?}");
    assert!(!ran.stdout.contains('\u{202e}'), "{ran:?}");
    let printed: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(printed, serde_json::from_str::<Value>(answer).unwrap());
}

#[test]
fn a_refusal_whose_body_never_comes_does_not_hold_the_command() {
    let monitor = Hostile::start(|line| {
        if line.starts_with("GET /events/recent") {
            json_reply("[]")
        } else {
            // A head promising a body that never comes.
            Reply::Hold(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\npartial"
                    .to_owned(),
            )
        }
    });
    // Bounded by `ctl`: before the fix, the command waited forever.
    let ran = reload_against(&monitor);
    assert_eq!(ran.code, Some(6), "{ran:?}");
    assert!(ran.stderr.contains("did not answer GET /events"), "{ran:?}");
}

/// The start time of process `pid` (clock ticks after boot), as a pid file has it.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A `master.pid` as another user could make one: naming a live process of its own (a
/// `sleep`), locked for as long as this lives, and naming its own monitor. Dropped, the lock
/// goes and the process is killed and reaped.
struct Planted {
    _lock: nix::fcntl::Flock<std::fs::File>,
    process: std::process::Child,
}

impl Planted {
    fn new(dir: &std::path::Path, monitor: SocketAddr) -> Self {
        let process = Command::new("sleep").arg("300").spawn().unwrap();
        let pid = process.id();
        let path = dir.join("master.pid");
        std::fs::write(
            &path,
            format!("{pid}\nstart={}\nmonitor={monitor}\n", start_time(pid)),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let lock =
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        Self {
            _lock: lock,
            process,
        }
    }

    fn still_running(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn a_pid_file_others_could_have_planted_gets_no_token() {
    let monitor = Hostile::start(|_| json_reply(r#"{"expected": 1, "workers": []}"#));
    let token = format!("--mon.token={TOKEN}");

    // A directory anyone can write to: refused by the commands, and by a master.
    let open = TempPath::new("ctl-open-dir");
    std::fs::create_dir_all(open.path()).unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut planted = Planted::new(open.path(), monitor.addr);
    let ran = ctl(&["status", &pids_arg(&open), &token], &[]);
    assert_eq!(ran.code, Some(5), "{ran:?}");
    assert!(ran.stderr.contains(open.as_str()), "{ran:?}");
    assert!(
        ran.stderr
            .contains("can be written by other users (mode 0777)"),
        "{ran:?}"
    );
    let stop = ctl(&["stop", &pids_arg(&open)], &[]);
    assert_eq!(stop.code, Some(1), "{stop:?}");
    assert!(
        stop.stderr.contains("can be written by other users"),
        "{stop:?}"
    );
    assert!(stop.stderr.contains("nothing signalled"), "{stop:?}");
    assert!(planted.still_running());
    assert!(monitor.requests().is_empty(), "{:#?}", monitor.requests());
    drop(planted);
    std::fs::remove_file(open.path().join("master.pid")).unwrap();
    let mut master =
        cluster2_tests::Proc::spawn(APP, &["--port=0", "--mon-port=0", &pids_arg(&open)], &[]);
    assert_eq!(master.wait_exit().code(), Some(1));
    assert!(
        master
            .log
            .iter()
            .any(|l| l.contains("can be written by other users")),
        "{:#?}",
        master.log
    );

    // A private directory, but the file is another user's: refused to any user but root.
    // Only root can make a file another user's, so this part runs as root alone, the command
    // as `nobody` (whose file this is not).
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let private = TempPath::new("ctl-other-user");
    std::fs::create_dir_all(private.path()).unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _planted = Planted::new(private.path(), monitor.addr);
    let ran = ctl_as(Some(65534), &["status", &pids_arg(&private), &token], &[]);
    assert_eq!(ran.code, Some(5), "{ran:?}");
    assert!(
        ran.stderr.contains("belongs to uid 0, not to uid 65534"),
        "{ran:?}"
    );
    assert!(monitor.requests().is_empty(), "{:#?}", monitor.requests());
    // Root's own command trusts it (root may control anyone's cluster): the monitor it names
    // is asked, with the token.
    let ran = ctl(&["status", &pids_arg(&private), &token], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let requests = monitor.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(requests[0].contains(TOKEN), "{requests:#?}");
}
