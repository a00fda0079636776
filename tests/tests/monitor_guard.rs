//! Who may use the monitor, over real sockets: cross-site requests and DNS-rebinding `Host`
//! headers are refused (and the action does not happen), curl-like and same-origin clients
//! pass, the token guards every route but the ECV's, and a monitor beyond loopback needs a
//! token or an explicit opt-out. The token never shows in `--check`, `--help` or the log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};

use cluster2_tests::{Cluster, Proc, SOON};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");
const BUILDER: &str = env!("CARGO_BIN_EXE_fixture-builder");
const TOKEN: &str = "s3cret-t0ken-for-the-guard-test";

/// A response: status, head (lowercase header names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The `error` of a JSON refusal.
    fn error(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let json: Value = serde_json::from_str(&self.body).expect("a JSON body");
        json["error"].as_str().expect("an error").to_owned()
    }
}

/// Sends `method path` with `headers` (`Host: localhost` unless given) on a fresh connection.
/// A stream (server-sent events) is answered with its head only.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        raw.push_str("Host: localhost\r\n");
    }
    for (key, value) in headers {
        raw.push_str(&format!("{key}: {value}\r\n"));
    }
    if method == "POST" {
        raw.push_str("Content-Length: 0\r\n");
    }
    raw.push_str("Connection: close\r\n\r\n");
    let mut stream = TcpStream::connect_timeout(&addr, SOON).expect("connect to the monitor");
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read the head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    if answer.header("content-type") != Some("text/event-stream") {
        let mut body = Vec::new();
        reader.read_to_end(&mut body).expect("read the body");
        answer.body = String::from_utf8_lossy(&body).into_owned();
    }
    answer
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The state of worker `pid` as `/workers` tells it.
fn state_of(monitor: SocketAddr, pid: u32, headers: &[(&str, &str)]) -> String {
    let answer = send(monitor, "GET", "/workers", headers);
    assert_eq!(answer.status, 200, "{answer:?}");
    let workers: Value = serde_json::from_str(&answer.body).unwrap();
    workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == pid)
        .map(|w| w["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(APP)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(envs.iter().copied())
        .output()
        .expect("run the fixture")
}

#[test]
fn a_browser_on_another_site_cannot_act_and_curl_or_the_page_itself_can() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let (m, pid) = (cluster.monitor, cluster.workers[0]);
    let pause = format!("/workers/{pid}/pause");
    let own_origin = format!("http://{m}");
    let own_host = m.to_string();

    // What a page elsewhere can make the operator's browser send: refused, and nothing done.
    for headers in [
        &[("Origin", "http://evil.example")][..],
        &[("Origin", "null")],
        // Another port on the same machine is another application.
        &[("Origin", "http://127.0.0.1:1")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Sec-Fetch-Site", "same-site")],
        &[
            ("Origin", own_origin.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ] {
        let answer = send(m, "POST", &pause, headers);
        assert_eq!(answer.status, 403, "{headers:?}: {answer:?}");
        assert!(answer.error().contains("cross-site"), "{answer:?}");
        assert_eq!(state_of(m, pid, &[]), "listening", "{headers:?}");
    }
    for path in ["/workers/restart", "/ecv/markDown", "/statuses/worker"] {
        let answer = send(m, "POST", path, &[("Sec-Fetch-Site", "cross-site")]);
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
    }
    assert_eq!(send(m, "GET", "/ecv", &[]).status, 200, "still marked up");
    // Reads too: the debug page and its data, the views.
    for path in ["/debug", "/debug/stream", "/workers", "/events", "/metrics"] {
        let answer = send(m, "GET", path, &[("Sec-Fetch-Site", "cross-site")]);
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
    }
    // The ECV answers load balancers, whatever they send.
    let answer = send(m, "GET", "/ecv", &[("Origin", "http://evil.example")]);
    assert_eq!(answer.status, 200, "{answer:?}");

    // The monitor's own page (same origin), then a script (no browser headers).
    let same_origin = [
        ("Host", own_host.as_str()),
        ("Origin", own_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let answer = send(m, "POST", &pause, &same_origin);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(state_of(m, pid, &[]), "paused");
    let answer = send(m, "POST", &format!("/workers/{pid}/resume"), &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(state_of(m, pid, &[]), "listening");
    // Typed in the address bar.
    let answer = send(m, "GET", "/debug", &[("Sec-Fetch-Site", "none")]);
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[test]
fn a_host_that_is_not_this_machine_is_refused_on_loopback() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let m = cluster.monitor;
    let port = m.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.1.evil.example:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        let answer = send(m, "GET", "/workers", &[("Host", &host)]);
        assert_eq!(answer.status, 403, "{host}: {answer:?}");
        assert!(answer.error().contains("DNS rebinding"), "{answer:?}");
        let answer = send(m, "POST", "/ecv/markDown", &[("Host", &host)]);
        assert_eq!(answer.status, 403, "{host}: {answer:?}");
    }
    assert_eq!(send(m, "GET", "/ecv", &[]).status, 200, "still marked up");
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let answer = send(m, "GET", "/workers", &[("Host", &host)]);
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
    }
    // A balancer that names the service in its health check still gets the ECV.
    let answer = send(m, "GET", "/ecv", &[("Host", "my-service.internal")]);
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[test]
fn changes_are_post_only_and_a_get_is_a_json_405() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let (m, pid) = (cluster.monitor, cluster.workers[0]);
    for path in [
        format!("/workers/{pid}/pause"),
        format!("/workers/{pid}/replace"),
        "/workers/restart".to_owned(),
        "/workers/scale".to_owned(),
        "/ecv/markDown".to_owned(),
        "/ecv/markUp".to_owned(),
    ] {
        let answer = send(m, "GET", &path, &[]);
        assert_eq!(answer.status, 405, "{path}: {answer:?}");
        assert!(answer.error().contains("not allowed"), "{path}: {answer:?}");
        assert_eq!(answer.header("allow"), Some("POST"), "{path}: {answer:?}");
    }
    assert_eq!(state_of(m, pid, &[]), "listening");
    assert_eq!(send(m, "GET", "/ecv", &[]).status, 200);
}

#[test]
fn the_token_guards_every_route_but_the_ecv() {
    let mut cluster = Cluster::start(BUILDER, &[&format!("--mon.token={TOKEN}")], &[]);
    let (m, pid) = (cluster.monitor, cluster.workers[0]);
    let right = bearer(TOKEN);
    let with_token = [("Authorization", right.as_str())];
    let pause = format!("/workers/{pid}/pause");

    let wrong = bearer("not-the-token");
    // All but its last character: a comparison that stops at the first difference would
    // take longest on this one.
    let near = bearer(&TOKEN[..TOKEN.len() - 1]);
    let basic = format!("Basic {TOKEN}");
    for headers in [
        &[][..],
        &[("Authorization", wrong.as_str())],
        &[("Authorization", near.as_str())],
        &[("Authorization", basic.as_str())],
        &[("Authorization", "Bearer")],
    ] {
        for (method, path) in [
            ("GET", "/workers"),
            ("GET", "/debug"),
            ("GET", "/debug/stream"),
            ("GET", "/events"),
            ("GET", "/events/recent"),
            ("GET", "/metrics"),
            ("GET", "/statuses"),
            ("GET", "/"),
            ("GET", "/no-such-route"),
            // What the application added with configure_monitor.
            ("GET", "/custom"),
            ("POST", pause.as_str()),
            ("POST", "/workers/restart"),
            ("POST", "/workers/scale"),
        ] {
            let answer = send(m, method, path, headers);
            assert_eq!(
                answer.status, 401,
                "{method} {path} {headers:?}: {answer:?}"
            );
            let challenge = answer.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{answer:?}");
            assert!(answer.error().contains("token"), "{answer:?}");
        }
    }
    assert_eq!(state_of(m, pid, &with_token), "listening");

    // The right token opens everything.
    for path in [
        "/workers",
        "/debug",
        "/events/recent",
        "/metrics",
        "/custom",
        "/",
    ] {
        let answer = send(m, "GET", path, &with_token);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }
    for path in ["/events", "/debug/stream"] {
        let answer = send(m, "GET", path, &with_token);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    }
    // Any case of the scheme, as RFC 9110 allows.
    let lower = format!("bearer {TOKEN}");
    assert_eq!(
        send(m, "GET", "/workers", &[("Authorization", &lower)]).status,
        200
    );
    let answer = send(m, "POST", &pause, &with_token);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(state_of(m, pid, &with_token), "paused");
    let answer = send(m, "POST", &format!("/workers/{pid}/resume"), &with_token);
    assert_eq!(answer.status, 200, "{answer:?}");

    // The ECV stays open to balancers and deploy tools: read it, switch it, no token.
    let answer = send(m, "GET", "/ecv", &[]);
    assert_eq!((answer.status, answer.body.as_str()), (200, "OK"));
    assert_eq!(send(m, "POST", "/ecv/markDown", &[]).status, 503);
    assert_eq!(send(m, "GET", "/ecv", &[]).status, 503);
    assert_eq!(send(m, "POST", "/ecv/markUp", &[]).status, 200);
    assert_eq!(send(m, "GET", "/ecv", &[]).status, 200);

    // A browser opening the debug page without a token gets the page, as a 401: its script
    // asks for the token. Its script and styles need none (a <script src> cannot send one).
    let browser = [
        ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("Sec-Fetch-Site", "none"),
    ];
    let answer = send(m, "GET", "/debug", &browser);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.header("www-authenticate").is_some());
    assert!(answer.body.contains("<dialog id=\"token\""), "{answer:?}");
    for path in ["/debug/assets/page.js", "/debug/assets/page.css"] {
        assert_eq!(send(m, "GET", path, &[]).status, 200, "{path}");
    }
    // The page's data needs the token, however the browser asks.
    assert_eq!(send(m, "GET", "/debug/stream", &browser).status, 401);

    // The token is nowhere in the log, and nowhere in what the monitor shows.
    for path in [
        "/workers",
        "/debug/stream",
        "/metrics",
        "/events/recent",
        "/",
    ] {
        let answer = send(m, "GET", path, &with_token);
        assert!(!answer.body.contains(TOKEN), "{path}");
    }
    cluster.proc.signal(nix::sys::signal::Signal::SIGTERM);
    cluster.proc.wait_exit();
    assert!(
        !cluster.proc.log.iter().any(|line| line.contains(TOKEN)),
        "{}",
        cluster.proc.log.join("\n")
    );
}

#[test]
fn a_monitor_beyond_loopback_needs_a_token() {
    for args in [
        &["--check", "--mon-host=0.0.0.0"][..],
        &["--mon-host=::", "--port=0", "--mon-port=0"],
    ] {
        let out = run(args, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("--mon-host"), "{stderr}");
        assert!(stderr.contains("--mon.token"), "{stderr}");
        assert!(stderr.contains("--mon.unsafe-no-token"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    // Set anywhere, the token or the opt-out lets it start.
    let ok = run(
        &["--check", "--mon-host=0.0.0.0"],
        &[("CLUSTER2_MON__TOKEN", TOKEN)],
    );
    assert!(ok.status.success(), "{ok:?}");
    let ok = run(
        &["--check", "--mon-host=0.0.0.0", "--mon.unsafe-no-token"],
        &[],
    );
    assert!(ok.status.success(), "{ok:?}");
    // Loopback needs neither.
    assert!(run(&["--check", "--mon-host=::1"], &[]).status.success());
}

#[test]
fn the_unsafe_opt_out_starts_and_warns() {
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=1",
            "--mon-host=0.0.0.0",
            "--mon.unsafe-no-token=true",
        ],
        &[],
    );
    let warning = proc.wait_for("--mon.unsafe-no-token");
    assert!(warning.contains("WARN"), "{warning}");
    let ready = proc.wait_line("with the ready message", cluster2_tests::is_ready);
    let cluster = Cluster::from_ready(proc, &ready);
    let m = SocketAddr::from(([127, 0, 0, 1], cluster.monitor.port()));
    // Off loopback a name is expected in Host; browsers on other sites are still refused.
    let answer = send(m, "GET", "/workers", &[("Host", "monitor.internal")]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = send(
        m,
        "POST",
        "/workers/restart",
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(answer.status, 403, "{answer:?}");
}

#[test]
fn check_and_help_never_print_the_token() {
    for envs in [&[][..], &[("CLUSTER2_MON__TOKEN", TOKEN)]] {
        let args: &[&str] = if envs.is_empty() {
            &["--check", "--mon.token", TOKEN]
        } else {
            &["--check"]
        };
        let out = run(args, envs);
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains(TOKEN), "{stdout}");
        let options: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(options["mon"]["token"], "<redacted>");
    }
    let out = run(&["--help"], &[("CLUSTER2_MON__TOKEN", TOKEN)]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN));
    // Nor does an error about it.
    let out = run(&["--check", "--mon.token", "with a space"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--mon.token") && !stderr.contains("with a space"),
        "{stderr}"
    );
}
