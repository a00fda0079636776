//! Every error the monitor answers is JSON of one shape, `{"error": "…"}`, whatever refused the
//! request (the guard, axum's parsing, a route, a control, a handler that panicked) and
//! whatever the status; and a pid that is no worker is a 404 that names it, on every route
//! that takes one.

use std::net::SocketAddr;

use cluster2_tests::{Cluster, RawResponse, TempPath, request_raw};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");
const BUILDER: &str = env!("CARGO_BIN_EXE_fixture-builder");

/// `method path` with extra header lines and a body, on a fresh connection.
fn send(m: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> RawResponse {
    request_raw(
        m,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap()
}

/// The answer is `status` with a JSON body of exactly one field, `error`; returns its text.
fn error(answer: &RawResponse, status: u16) -> String {
    let body = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, status, "{answer:?}: {body}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{answer:?}: {body}"
    );
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let fields: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["error"], "{body}");
    json["error"].as_str().unwrap().to_owned()
}

#[test]
fn every_refusal_is_json_with_the_status_that_says_why() {
    let gate = TempPath::new("errors-gate");
    std::fs::write(gate.path(), b"open").unwrap();
    let cluster = Cluster::start(
        APP,
        &["--workers=2"],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    let m = cluster.monitor;
    let (a, b) = (cluster.workers[0], cluster.workers[1]);

    // 404: no route.
    let e = error(&send(m, "GET", "/nope", "", ""), 404);
    assert!(e.contains("/nope"), "{e}");
    // 405: a method the route does not take; the Allow header says which it does.
    let answer = send(m, "DELETE", "/workers", "", "");
    assert!(error(&answer, 405).contains("DELETE is not allowed on /workers"));
    assert_eq!(answer.header("allow"), Some("GET,HEAD"));
    let answer = send(m, "GET", &format!("/workers/{a}/pause"), "", "");
    error(&answer, 405);
    assert_eq!(answer.header("allow"), Some("POST"));
    // 400: what does not parse, from the routes and from axum's own parsing.
    assert!(error(&send(m, "POST", "/workers/abc/pause", "", ""), 400).contains("`abc`"));
    assert!(error(&send(m, "GET", "/events?since=abc", "", ""), 400).contains("since"));
    assert!(error(&send(m, "GET", "/deps?view=x", "", ""), 400).contains("`x`"));
    let e = error(
        &send(
            m,
            "GET",
            &format!("/debug/workers/{a}/profile?seconds=0"),
            "",
            "",
        ),
        400,
    );
    assert!(e.contains("`seconds`"), "{e}");
    let e = error(
        &send(
            m,
            "POST",
            &format!("/debug/workers/{a}/log-level"),
            "",
            "verbose",
        ),
        400,
    );
    assert!(e.contains("`verbose`"), "{e}");
    // 403: a browser on another site.
    let e = error(
        &send(m, "GET", "/workers", "Origin: http://evil.example\r\n", ""),
        403,
    );
    assert!(e.contains("evil.example"), "{e}");
    // 413: a body over the limit, as text (axum's own rejection) and as JSON.
    let big = "x".repeat(100 * 1024);
    let e = error(
        &send(
            m,
            "POST",
            &format!("/debug/workers/{a}/log-level"),
            "",
            &big,
        ),
        413,
    );
    assert!(e.contains("length limit"), "{e}");
    let e = error(
        &send(
            m,
            "POST",
            "/statuses/worker",
            "Content-Type: application/json\r\n",
            &format!("\"{big}\""),
        ),
        413,
    );
    assert!(!e.is_empty());
    // 409: a worker already queued for replacement (its successor waits at the gate).
    std::fs::remove_file(gate.path()).unwrap();
    assert_eq!(
        send(m, "POST", &format!("/workers/{a}/replace"), "", "").status,
        200
    );
    let e = error(
        &send(m, "POST", &format!("/workers/{a}/replace"), "", ""),
        409,
    );
    assert!(e.contains(&format!("worker pid {a} is already")), "{e}");
    std::fs::write(gate.path(), b"open").unwrap();

    // 504: a worker that cannot confirm a pause (stopped) within the 5 s it is given.
    kill(Pid::from_raw(b as i32), Signal::SIGSTOP).unwrap();
    let answer = send(m, "POST", &format!("/workers/{b}/pause"), "", "");
    kill(Pid::from_raw(b as i32), Signal::SIGCONT).unwrap();
    assert!(error(&answer, 504).contains("did not confirm within 5.0 s"));
}

#[test]
fn a_pid_that_is_no_worker_is_a_404_naming_it_on_every_route() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let m = cluster.monitor;
    // Pid 1 is init: alive, and no process of this cluster.
    for (method, path) in [
        ("POST", "/workers/1/pause"),
        ("POST", "/workers/1/resume"),
        ("POST", "/workers/1/replace"),
        ("POST", "/debug/workers/1/session"),
        ("POST", "/debug/workers/1/session/end"),
        ("GET", "/debug/workers/1/logs"),
        ("POST", "/debug/workers/1/log-level"),
        ("GET", "/debug/workers/1/profile?seconds=1"),
        ("GET", "/debug/workers/1/stacks"),
    ] {
        let body = if path.ends_with("log-level") {
            "info"
        } else {
            ""
        };
        let e = error(&send(m, method, path, "", body), 404);
        assert!(e.contains("pid 1"), "{method} {path}: {e}");
    }
}

#[test]
fn a_token_refusal_a_missing_cache_manager_and_a_panicking_route_are_json_too() {
    let cluster = Cluster::start(
        BUILDER,
        &["--mon.token=s3cret-errors-token", "--cache.enable=false"],
        &[],
    );
    let m = cluster.monitor;
    // 401, with the challenge.
    let answer = send(m, "GET", "/workers", "", "");
    assert!(error(&answer, 401).contains("--mon.token"));
    assert!(answer.header("www-authenticate").is_some(), "{answer:?}");
    let token = "Authorization: Bearer s3cret-errors-token\r\n";
    // 503: what the route needs is not running.
    let e = error(&send(m, "GET", "/caches", token, ""), 503);
    assert!(e.contains("cache"), "{e}");
    // 500: a handler of the application's monitor routes panicked; the monitor answers and
    // goes on serving.
    let e = error(&send(m, "GET", "/custom/panic", token, ""), 500);
    assert!(
        e.contains("GET /custom/panic") && e.contains("failed on purpose"),
        "{e}"
    );
    assert_eq!(send(m, "GET", "/custom", token, "").status, 200);
}
