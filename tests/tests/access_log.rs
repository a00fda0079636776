//! The access log (`log.access`) and JSON log lines (`log.format = json`), read from what a
//! real cluster wrote: one line per request from every worker, in the combined format or as
//! JSON, escaped so that no client can forge a line; nothing at all when it is off; a file
//! reopened on SIGUSR1; paths and values it cannot use refused at start.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use cluster2_tests::{Cluster, KeepAlive, Proc, SOON, TempPath, eventually, get, request};
use nix::sys::signal::Signal;
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// One combined-format line, taken apart: `remote - - [time] "request" status bytes "referer"
/// "agent" duration worker`.
#[derive(Debug)]
struct Combined {
    remote: String,
    time: String,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    agent: String,
    duration: f64,
    /// The worker id; `None` for the monitor's requests, logged by the master.
    worker: Option<usize>,
}

/// Parses a line as a log tool would: quoted fields end at the next `"`, which the writer
/// escapes inside them, so a quote the client sent cannot end a field early.
fn parse_combined(line: &str) -> Combined {
    let fail = || -> (&str, &str) { panic!("not a combined line: {line:?}") };
    let (remote, rest) = line.split_once(" - - [").unwrap_or_else(fail);
    let (time, rest) = rest.split_once("] \"").unwrap_or_else(fail);
    let (request, rest) = rest.split_once("\" ").unwrap_or_else(fail);
    let (status, rest) = rest.split_once(' ').unwrap_or_else(fail);
    let (bytes, rest) = rest.split_once(" \"").unwrap_or_else(fail);
    let (referer, rest) = rest.split_once("\" \"").unwrap_or_else(fail);
    let (agent, rest) = rest.split_once("\" ").unwrap_or_else(fail);
    let (duration, worker) = rest.split_once(' ').unwrap_or_else(fail);
    assert!(
        !request.contains('"') && !referer.contains('"') && !agent.contains('"'),
        "an unescaped quote in {line:?}"
    );
    assert!(
        line.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "a control or non-ASCII byte in {line:?}"
    );
    Combined {
        remote: remote.to_owned(),
        time: time.to_owned(),
        request: request.to_owned(),
        status: number(line, status),
        bytes: number(line, bytes),
        referer: referer.to_owned(),
        agent: agent.to_owned(),
        duration: number(line, duration),
        worker: (worker != "monitor").then(|| number(line, worker)),
    }
}

fn number<T: std::str::FromStr>(line: &str, field: &str) -> T {
    field
        .parse()
        .unwrap_or_else(|_| panic!("{field:?} is not a number in {line:?}"))
}

/// Sends `raw` and reads the answer to the end (the request asks the server to close).
fn send_raw(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, SOON).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Stops the cluster gracefully: every worker writes out its last lines before it exits.
fn stop(cluster: &mut Cluster) {
    cluster.proc.signal(Signal::SIGTERM);
    assert_eq!(cluster.proc.wait_exit().code(), Some(0));
}

#[test]
fn every_request_is_one_combined_line_with_what_the_client_sent_escaped() {
    let file = TempPath::new("access.log");
    let access = format!("--log.access={}", file.as_str());
    let mut cluster = Cluster::start(APP, &["--workers=2", &access], &[]);

    // Kept-alive requests, fresh connections, and one with a hostile path and headers.
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    let mut keep = KeepAlive::new(cluster.app);
    for i in 0..20 {
        let path = format!("/?kept={i}");
        assert_eq!(keep.get(&path).unwrap().status, 200);
        *sent.entry(format!("GET {path} HTTP/1.1")).or_default() += 1;
    }
    for i in 0..10 {
        let path = format!("/nope/{i}");
        assert_eq!(get(cluster.app, &path).unwrap().status, 404);
        *sent.entry(format!("GET {path} HTTP/1.1")).or_default() += 1;
    }
    let answer = send_raw(
        cluster.app,
        b"GET /a\"b\\c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
          Referer: http://x/\"] 200 0 \"-\" \"forged\r\n\
          User-Agent: tab\there caf\xc3\xa9 \"quoted\"\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let requests = 31;

    stop(&mut cluster);
    let text = std::fs::read_to_string(file.path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), requests, "one line per request:\n{text}");
    assert!(text.ends_with('\n'));
    let parsed: Vec<Combined> = lines.iter().map(|l| parse_combined(l)).collect();

    let mut logged: BTreeMap<String, usize> = BTreeMap::new();
    let mut workers = std::collections::BTreeSet::new();
    for line in &parsed {
        assert_eq!(line.remote, "127.0.0.1");
        // `28/Nov/2026:06:16:11 +0000`
        assert_eq!(line.time.len(), 26, "{line:?}");
        assert!(line.time.ends_with(" +0000"), "{line:?}");
        assert!(line.duration >= 0.0 && line.duration < 60.0, "{line:?}");
        workers.insert(line.worker.expect("an application request"));
        match line.status {
            200 => assert_eq!(line.bytes, "hello world".len() as u64, "{line:?}"),
            404 => {}
            other => panic!("status {other} in {line:?}"),
        }
        if !line.request.starts_with("GET /a") {
            assert_eq!((line.referer.as_str(), line.agent.as_str()), ("-", "-"));
            *logged.entry(line.request.clone()).or_default() += 1;
        }
    }
    assert_eq!(logged, sent);
    assert!(workers.iter().all(|&w| w < 2), "worker ids {workers:?}");

    // The hostile request: each byte a log reader could trip on is written as nginx writes it.
    let hostile = parsed
        .iter()
        .find(|l| l.request.starts_with("GET /a"))
        .expect("the hostile request is logged");
    assert_eq!(hostile.request, r"GET /a\x22b\x5Cc HTTP/1.1");
    assert_eq!(
        hostile.referer,
        r#"http://x/\x22] 200 0 \x22-\x22 \x22forged"#
    );
    assert_eq!(hostile.agent, r"tab\x09here caf\xC3\xA9 \x22quoted\x22");
}

#[test]
fn the_monitors_requests_are_logged_by_the_master_and_reopened_on_sigusr1() {
    let file = TempPath::new("access-monitor.log");
    let moved = TempPath::new("access-monitor.log.1");
    let access = format!("--log.access={}", file.as_str());
    let mut cluster = Cluster::start(APP, &["--workers=1", &access], &[]);
    assert_eq!(get(cluster.monitor, "/workers").unwrap().status, 200);
    assert_eq!(get(cluster.monitor, "/no-such-route").unwrap().status, 404);
    let refused = request(cluster.monitor, "GARBAGE\r\n\r\n").unwrap();
    assert_eq!(refused.status, 400);
    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    let lines = |path: &std::path::Path| -> Vec<Combined> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(parse_combined)
            .collect()
    };
    // Written within the writers' round; then moved, and the master told to reopen.
    assert!(eventually(SOON, || lines(file.path()).len() == 4));
    std::fs::rename(file.path(), moved.path()).unwrap();
    cluster.proc.signal(Signal::SIGUSR1);
    cluster.proc.wait_for("SIGUSR1: reopening the access log");
    assert!(eventually(SOON, || {
        assert_eq!(get(cluster.monitor, "/ecv").unwrap().status, 200);
        lines(file.path())
            .iter()
            .any(|l| l.worker.is_none() && l.request == "GET /ecv HTTP/1.1")
    }));
    stop(&mut cluster);

    let before = lines(moved.path());
    let monitor: Vec<(&str, u16)> = before
        .iter()
        .filter(|l| l.worker.is_none())
        .map(|l| (l.request.as_str(), l.status))
        .collect();
    assert_eq!(
        monitor,
        [
            ("GET /workers HTTP/1.1", 200),
            ("GET /no-such-route HTTP/1.1", 404),
            ("-", 400)
        ],
        "{before:#?}"
    );
    let app: Vec<(&str, Option<usize>)> = before
        .iter()
        .filter(|l| l.worker.is_some())
        .map(|l| (l.request.as_str(), l.worker))
        .collect();
    assert_eq!(app, [("GET / HTTP/1.1", Some(0))]);
    assert!(before.iter().all(|l| l.remote == "127.0.0.1"));
    // After the reopen, only ECV probes, all in the new file.
    let after = lines(file.path());
    assert!(
        !after.is_empty()
            && after
                .iter()
                .all(|l| l.worker.is_none() && l.request == "GET /ecv HTTP/1.1" && l.status == 200),
        "{after:#?}"
    );
}

/// Sends request heads hyper refuses (two malformed, a URI and a head too long) and one
/// request it serves; returns the refused ones' statuses, as the client got them.
fn refused_heads(app: SocketAddr) -> Vec<u16> {
    let cases = [
        "GARBAGE\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_owned(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(70_000)),
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        ),
    ];
    let statuses = cases
        .iter()
        .map(|raw| request(app, raw).expect("an answer, not a reset").status)
        .collect();
    assert_eq!(get(app, "/").unwrap().status, 200);
    statuses
}

#[test]
fn request_heads_hyper_refuses_are_logged_with_their_status_and_no_request_line() {
    let file = TempPath::new("access-refused.log");
    let access = format!("--log.access={}", file.as_str());
    let mut cluster = Cluster::start(APP, &["--workers=1", &access], &[]);
    let answered = refused_heads(cluster.app);
    assert_eq!(answered, [400, 400, 414, 431]);
    stop(&mut cluster);
    let text = std::fs::read_to_string(file.path()).unwrap();
    let parsed: Vec<Combined> = text.lines().map(parse_combined).collect();
    assert_eq!(parsed.len(), 5, "{text}");
    let mut logged = Vec::new();
    for line in &parsed {
        assert_eq!(line.remote, "127.0.0.1", "{line:?}");
        if line.request == "-" {
            assert_eq!(
                (line.bytes, line.referer.as_str(), line.agent.as_str()),
                (0, "-", "-"),
                "{line:?}"
            );
            logged.push(line.status);
        } else {
            assert_eq!(
                (line.request.as_str(), line.status),
                ("GET / HTTP/1.1", 200)
            );
        }
    }
    logged.sort_unstable();
    assert_eq!(logged, answered);

    // As JSON: no method, path or protocol to tell.
    let file = TempPath::new("access-refused.json");
    let access = format!("--log.access={}", file.as_str());
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=1",
            "--log.format=json",
            &access,
        ],
        &[],
    );
    let ready = proc.wait_line("with the ready message as JSON", |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| v["message"] == "ready")
    });
    let ready: Value = serde_json::from_str(&ready).unwrap();
    let app: SocketAddr = ready["fields"]["app"].as_str().unwrap().parse().unwrap();
    let answered = refused_heads(SocketAddr::from(([127, 0, 0, 1], app.port())));
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait_exit().code(), Some(0));
    let lines = json_lines(&std::fs::read_to_string(file.path()).unwrap());
    let mut logged: Vec<u16> = lines
        .iter()
        .filter(|l| l["method"].is_null())
        .map(|l| {
            assert!(l["path"].is_null() && l["protocol"].is_null(), "{l}");
            assert_eq!(
                (l["bytes"].as_u64(), l["log"].as_str()),
                (Some(0), Some("access"))
            );
            l["status"].as_u64().unwrap() as u16
        })
        .collect();
    logged.sort_unstable();
    assert_eq!(logged, answered);
    assert_eq!(lines.len(), 5, "{lines:?}");
}

/// Every line of `text` as a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect()
}

#[test]
fn json_format_writes_every_line_and_every_request_as_json() {
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=2",
            "--log.format=json",
            "--log.access=stdout",
        ],
        &[],
    );
    let ready = proc.wait_line("with the ready message as JSON", |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| v["message"] == "ready")
    });
    let ready: Value = serde_json::from_str(&ready).unwrap();
    let app: SocketAddr = ready["fields"]["app"].as_str().unwrap().parse().unwrap();
    let app = SocketAddr::from(([127, 0, 0, 1], app.port()));

    let requests = 24;
    let mut keep = KeepAlive::new(app);
    for i in 0..requests - 2 {
        assert_eq!(keep.get(&format!("/?n={i}")).unwrap().status, 200);
    }
    // A line from the application's own code, in a worker.
    assert_eq!(
        get(app, "/log?level=info&msg=from-the-app").unwrap().status,
        200
    );
    let answer = send_raw(
        app,
        b"GET /q\"x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
          User-Agent: a\"b\tc\xff\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait_exit().code(), Some(0));

    // Standard error: every line of every process is one JSON object naming its process.
    let master = proc.pid();
    let lines = json_lines(&proc.log.join("\n"));
    assert!(lines.len() > 3, "{:#?}", proc.log);
    let mut roles = std::collections::BTreeSet::new();
    for line in &lines {
        for field in ["timestamp", "level", "target", "message", "role", "pid"] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
        let pid = line["pid"].as_u64().expect("a numeric pid");
        match line["role"].as_str().unwrap() {
            "master" => {
                assert_eq!(pid, u64::from(master), "{line}");
                assert!(line.get("worker").is_none(), "{line}");
            }
            "worker" => {
                assert_ne!(pid, u64::from(master), "{line}");
                assert!(line["worker"].is_u64(), "{line}");
            }
            "cache" => {
                assert_ne!(pid, u64::from(master), "{line}");
                assert!(line.get("worker").is_none(), "{line}");
            }
            other => panic!("role {other} in {line}"),
        }
        roles.insert(line["role"].as_str().unwrap().to_owned());
    }
    assert!(
        roles.contains("master") && roles.contains("worker"),
        "{roles:?}"
    );
    let from_app = lines
        .iter()
        .find(|l| l["message"] == "from-the-app")
        .expect("the application's line");
    assert_eq!(from_app["role"], "worker");
    assert_eq!(from_app["fields"]["pid"], from_app["pid"]);

    // Standard output: the access log, one JSON object per request.
    let out = proc.stdout();
    let access = json_lines(&out);
    assert_eq!(access.len(), requests, "{out}");
    for line in &access {
        assert_eq!(line["log"], "access", "{line}");
        assert_eq!(line["remote"], "127.0.0.1", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        assert_eq!(line["protocol"], "HTTP/1.1", "{line}");
        assert!(line["status"].is_u64() && line["bytes"].is_u64(), "{line}");
        assert!(line["duration_secs"].is_f64(), "{line}");
        assert!(line["worker"].is_u64() && line["pid"].is_u64(), "{line}");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    let hostile = access
        .iter()
        .find(|l| l["path"] == "/q\"x")
        .unwrap_or_else(|| panic!("the hostile request, read back whole:\n{out}"));
    // Quote and tab come back as sent; the byte that is not UTF-8 as U+FFFD.
    assert_eq!(hostile["user_agent"], "a\"b\tc\u{fffd}");
    assert_eq!(hostile["referer"], Value::Null);
    let served = access.iter().filter(|l| l["status"] == 200).count();
    assert_eq!(served, requests - 1);
}

#[test]
fn off_writes_no_line() {
    for args in [&[][..], &["--log.access=off"][..]] {
        let mut all = vec!["--workers=2"];
        all.extend_from_slice(args);
        let mut cluster = Cluster::start(APP, &all, &[]);
        let mut keep = KeepAlive::new(cluster.app);
        for _ in 0..10 {
            assert_eq!(keep.get("/never-logged").unwrap().status, 404);
        }
        stop(&mut cluster);
        let out = cluster.proc.stdout();
        assert!(out.is_empty(), "{args:?}: standard output: {out}");
        let log = cluster.proc.log.join("\n");
        assert!(!log.contains("never-logged"), "{args:?}: {log}");
    }
}

#[test]
fn sigusr1_reopens_the_file_after_it_was_moved() {
    let file = TempPath::new("rotated.log");
    let moved = TempPath::new("rotated.log.1");
    let access = format!("--log.access={}", file.as_str());
    let mut cluster = Cluster::start(APP, &["--workers=2", &access], &[]);
    let count = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
    };
    let mut sent = 0;
    for _ in 0..6 {
        assert_eq!(get(cluster.app, "/").unwrap().status, 200);
        sent += 1;
    }
    // Written within the writer's round.
    assert!(eventually(SOON, || count(file.path()) == sent));
    std::fs::rename(file.path(), moved.path()).unwrap();
    cluster.proc.signal(Signal::SIGUSR1);
    cluster.proc.wait_for("SIGUSR1: reopening the access log");
    // Each worker reopens when its message arrives; until then its lines go to the old file.
    // Requests go on until both workers have written to the new one.
    let reopened = eventually(SOON, || {
        assert_eq!(get(cluster.app, "/").unwrap().status, 200);
        sent += 1;
        std::fs::read_to_string(file.path()).is_ok_and(|text| {
            let workers: std::collections::BTreeSet<&str> = text
                .lines()
                .filter_map(|l| l.rsplit_once(' ').map(|(_, w)| w))
                .collect();
            workers.len() == 2
        })
    });
    assert!(reopened, "both workers write to the new file");
    stop(&mut cluster);
    assert_eq!(count(file.path()) + count(moved.path()), sent);
}

#[test]
fn an_access_log_the_master_cannot_use_is_refused_at_start() {
    let missing = TempPath::new("no-such-dir");
    let in_missing = format!("--log.access={}/access.log", missing.as_str());
    let cases: [(&str, &str); 3] = [
        ("--log.access=access.log", "a file path with a / in it"),
        ("--log.access=on", "off, stdout, stderr"),
        (in_missing.as_str(), "cannot open the access log file"),
    ];
    for (arg, says) in cases {
        let mut proc = Proc::spawn(APP, &["--port=0", "--mon-port=0", arg], &[]);
        assert_eq!(proc.wait_exit().code(), Some(2), "{arg}: {:#?}", proc.log);
        let log = proc.log.join("\n");
        assert!(
            log.contains(says) && log.contains("log.access"),
            "{arg}: {log}"
        );
        assert!(!log.contains("worker"), "{arg}: no worker starts: {log}");
    }
    let mut proc = Proc::spawn(APP, &["--port=0", "--mon-port=0", "--log.format=xml"], &[]);
    assert_eq!(proc.wait_exit().code(), Some(2));
    assert!(
        proc.log.join("\n").contains("text or json"),
        "{:#?}",
        proc.log
    );
}

#[test]
fn a_stuck_pipe_drops_and_counts_lines_and_never_holds_up_a_request() {
    // Standard output is a pipe this test does not read until the end: once its 64 KiB and
    // each worker's buffer are full, the workers' writers are stuck in `write`.
    let mut cluster = Cluster::start(
        APP,
        &[
            "--workers=2",
            "--heartbeat-interval=100ms",
            "--log.access=stdout",
        ],
        &[],
    );
    // Long paths make long lines: a few thousand fill 64 KiB and two buffers of 2 MiB.
    let path = format!("/{}", "a".repeat(2000));
    let sent = 4000;
    let mut keep = KeepAlive::new(cluster.app);
    for _ in 0..sent {
        assert_eq!(keep.get(&path).unwrap().status, 404);
    }
    let sample = |name: &str| -> f64 {
        let text = get(cluster.monitor, "/metrics").unwrap().body;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert!(eventually(SOON, || sample("cluster2_requests_total") == sent as f64));
    let dropped = sample("cluster2_access_log_dropped_total");
    assert!(
        dropped > 0.0 && dropped < sent as f64,
        "{dropped} of {sent} lines dropped"
    );
    stop(&mut cluster);
    // What did reach the pipe is whole lines.
    let out = cluster.proc.stdout();
    assert!(!out.is_empty());
    for line in out.lines() {
        parse_combined(line);
    }
}
