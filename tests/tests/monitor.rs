//! The monitor app: the ECV life cycle in both modes, /deps, /metrics, and bad requests.

use std::net::SocketAddr;

use cluster2_tests::{
    Cluster, Proc, Response, TempPath, eventually, field, get, is_ready, post, request,
};
use nix::sys::signal::Signal;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");
const BUILDER: &str = env!("CARGO_BIN_EXE_fixture-builder");

fn ecv(addr: SocketAddr) -> Response {
    get(addr, "/ecv").unwrap()
}

/// The monitor's address from the master's `starting` line.
fn monitor_of(proc: &mut Proc) -> SocketAddr {
    let starting = proc.wait_for("starting");
    field(&starting, "monitor").unwrap().parse().unwrap()
}

/// Opens a gate file the fixture waits for.
fn open(gate: &TempPath) {
    std::fs::write(gate.path(), b"open").unwrap();
}

#[test]
fn ecv_control_mode_life_cycle() {
    let gate = TempPath::new("ecv-gate");
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=1",
            "--ecv.drain-delay=3s",
        ],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    let monitor = monitor_of(&mut proc);
    proc.wait_for("warm-up started");
    // Starting: down, saying why.
    let r = ecv(monitor);
    assert_eq!((r.status, r.body.as_str()), (503, "unavailable: starting"));
    open(&gate);
    proc.wait_line("ready", is_ready);
    let r = ecv(monitor);
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));

    let r = post(monitor, "/ecv/markDown");
    assert_eq!(r.status, 503);
    let r = ecv(monitor);
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "unavailable: marked down")
    );
    assert_eq!(post(monitor, "/ecv/markUp").status, 200);
    assert_eq!(ecv(monitor).status, 200);
    // Each switch is an event, with its reason.
    let mut events = cluster2_tests::Events::open(monitor, "/events?since=0");
    let switches: Vec<(bool, String)> = (0..3)
        .map(|_| {
            let e = events.next_of("ecv");
            (
                e["up"].as_bool().unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        switches,
        [
            (true, "marked up".to_owned()),
            (false, "marked down".to_owned()),
            (true, "marked up".to_owned())
        ]
    );
    // Only POST switches it.
    assert_eq!(get(monitor, "/ecv/markDown").unwrap().status, 405);
    assert_eq!(ecv(monitor).status, 200);
    assert_eq!(post(monitor, "/ecv").status, 405);

    // Shutting down: the ECV goes down first, for the drain delay, before workers stop.
    proc.signal(Signal::SIGTERM);
    proc.wait_for("ECV down; waiting 3s");
    let r = ecv(monitor);
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "unavailable: shutting down")
    );
    assert_eq!(proc.wait_exit().code(), Some(0));
    let drain = proc
        .log
        .iter()
        .position(|l| l.contains("ECV down; waiting"))
        .unwrap();
    let exited = proc
        .log
        .iter()
        .position(|l| l.contains("exited with status 0"))
        .unwrap();
    assert!(drain < exited, "workers stop after the drain delay");
}

#[test]
fn ecv_is_down_while_fewer_workers_than_ecv_min_workers_can_take_connections() {
    let gate = TempPath::new("ecv-min-workers-gate");
    open(&gate);
    // More than the workers there are: at most the workers that served count.
    let cluster = Cluster::start(
        APP,
        &["--workers=3", "--ecv.min-workers=4"],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    assert_eq!(ecv(cluster.monitor).status, 200);
    let scale = |workers: u32| {
        let body = format!(r#"{{"workers": {workers}}}"#);
        let r =
            cluster2_tests::post_body(cluster.monitor, "/workers/scale", "application/json", &body)
                .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    };
    // The gate closed: any new process waits in its warm-up, not serving.
    std::fs::remove_file(gate.path()).unwrap();
    let mut events = cluster2_tests::Events::open(cluster.monitor, "/events");
    let is_new = |e: &serde_json::Value| {
        e["pid"]
            .as_u64()
            .is_some_and(|pid| !cluster.workers.contains(&(pid as u32)))
    };
    // A growth takes nothing away: up while the new worker warms up.
    scale(4);
    let grown = events.wait("warming", |e| is_new(e) && e["worker"] == 3);
    assert_eq!(ecv(cluster.monitor).status, 200);
    // A crash does: down while its restart warms up, saying why.
    let crashed = cluster.workers[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(crashed as i32), Signal::SIGKILL).unwrap();
    events.wait("exited", |e| e["pid"] == crashed);
    let restarted = events.wait("warming", |e| is_new(e) && e["worker"] == 0);
    let r = ecv(cluster.monitor);
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            503,
            "unavailable: 2 of 4 workers can take new connections (ecv.min_workers = 4)"
        )
    );
    // The application itself serves on meanwhile.
    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    open(&gate);
    // In either order.
    let mut warming = vec![grown["pid"].clone(), restarted["pid"].clone()];
    while !warming.is_empty() {
        let listening = events.wait("listening", |e| warming.contains(&e["pid"]));
        warming.retain(|pid| *pid != listening["pid"]);
    }
    assert!(eventually(cluster2_tests::SOON, || ecv(cluster.monitor)
        .status
        == 200));
    // A shrink never takes it down.
    scale(2);
    let mut retired = vec![serde_json::json!(2), serde_json::json!(3)];
    while !retired.is_empty() {
        let exited = events.wait("exited", |e| retired.contains(&e["worker"]));
        retired.retain(|id| *id != exited["worker"]);
    }
    assert_eq!(ecv(cluster.monitor).status, 200);
}

#[test]
fn ecv_stays_down_after_a_failed_warm_up_until_marked_up() {
    let marker = TempPath::new("fail-once");
    let mut proc = Proc::spawn(
        APP,
        &[
            "--port=0",
            "--mon-port=0",
            "--workers=1",
            "--restart.delay=1s",
        ],
        &[("FIXTURE_WARM_UP_FAIL_ONCE", marker.as_str())],
    );
    let monitor = monitor_of(&mut proc);
    proc.wait_for("warm-up failed");
    let r = ecv(monitor);
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "unavailable: warm-up failed")
    );
    // The retry succeeds and the cluster serves, but the failure keeps the ECV down.
    let ready = proc.wait_line("ready", is_ready);
    let cluster = Cluster::from_ready(proc, &ready);
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");
    let r = ecv(monitor);
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "unavailable: warm-up failed")
    );
    assert_eq!(post(monitor, "/ecv/markUp").status, 200);
    assert_eq!(ecv(monitor).status, 200);
}

#[test]
fn ecv_monitor_mode_follows_the_probed_route() {
    let cluster = Cluster::start(
        APP,
        &[
            "--workers=1",
            "--ecv.mode=monitor",
            "--ecv.monitor=/health",
            "--ecv.expect-body=health",
        ],
        &[],
    );
    let monitor = cluster.monitor;
    assert_eq!(ecv(monitor).status, 200);
    get(cluster.app, "/health/set?code=500").unwrap();
    let r = ecv(monitor);
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("probe of /health answered 500"),
        "{}",
        r.body
    );
    get(cluster.app, "/health/set?code=200").unwrap();
    assert_eq!(ecv(monitor).status, 200);
    // No control routes in monitor mode.
    assert_eq!(post(monitor, "/ecv/markDown").status, 404);
}

#[test]
fn ecv_monitor_mode_with_a_user_validator_and_unreachable_urls() {
    let cluster = Cluster::start(BUILDER, &["--ecv.mode=monitor", "--ecv.monitor=/"], &[]);
    assert_eq!(
        ecv(cluster.monitor).status,
        200,
        "the validator accepts `built`"
    );
    drop(cluster);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "--ecv.monitor=http://{}/health",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let cluster = Cluster::start(
        BUILDER,
        &["--ecv.mode=monitor", &url, "--ecv.timeout=500ms"],
        &[],
    );
    let r = ecv(cluster.monitor);
    assert_eq!(r.status, 503);
    assert!(r.body.contains("failed"), "{}", r.body);
}

/// `name@version` of a `/deps` package.
fn key(p: &serde_json::Value) -> String {
    format!(
        "{}@{}",
        p["name"].as_str().unwrap(),
        p["version"].as_str().unwrap()
    )
}

#[test]
fn deps_lists_each_package_once_and_custom_routes_are_served() {
    let cluster = Cluster::start(BUILDER, &[], &[]);
    let r = get(cluster.monitor, "/deps").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // Each package once, not each path to it: the nested tree this replaces was over half a
    // megabyte for a hello world.
    assert!(r.body.len() < 128 * 1024, "/deps is {} bytes", r.body.len());
    let deps: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(deps["name"], "cluster2-tests");
    let packages = deps["packages"].as_array().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for p in packages {
        assert!(seen.insert(key(p)), "{} listed twice", key(p));
    }
    let named = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in /deps"))
    };
    let tokio = named("tokio");
    assert!(
        tokio["version"].as_str().unwrap().starts_with("1."),
        "{tokio}"
    );
    assert!(tokio["source"].as_str().unwrap().starts_with("registry+"));
    assert_eq!(named("cluster2")["source"], "local");
    // The root's direct dependencies, and only they, are marked; every dependency named is
    // listed (`name`, or `name@version` where the lock holds several versions).
    let direct: std::collections::BTreeSet<String> = packages
        .iter()
        .filter(|p| p["direct"] == true)
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let declared: std::collections::BTreeSet<String> = deps["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().split('@').next().unwrap().to_owned())
        .collect();
    assert_eq!(direct, declared);
    assert!(
        direct.contains("tokio") && direct.contains("cluster2"),
        "{direct:?}"
    );
    assert_eq!(named("pin-project-lite")["direct"], false);
    for p in packages {
        for d in p["dependencies"].as_array().unwrap() {
            let d = d.as_str().unwrap();
            let found = if d.contains('@') {
                seen.contains(d)
            } else {
                packages.iter().any(|q| q["name"] == d)
            };
            assert!(found, "{} depends on {d}, which is not listed", key(p));
        }
    }

    // The tree on request: each package spelled out once, later appearances marked.
    let r = get(cluster.monitor, "/deps?view=tree").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.len() < 256 * 1024,
        "the tree is {} bytes",
        r.body.len()
    );
    let tree: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let mut expanded = std::collections::BTreeMap::<String, usize>::new();
    let mut stack = vec![&tree];
    while let Some(node) = stack.pop() {
        if let Some(children) = node["dependencies"].as_array() {
            *expanded.entry(key(node)).or_default() += 1;
            stack.extend(children);
        } else {
            assert_eq!(node["deduplicated"], true, "{node}");
        }
    }
    assert!(expanded.values().all(|&n| n == 1), "{expanded:?}");
    assert_eq!(
        expanded.len(),
        packages.len() + 1,
        "every package, and the root"
    );

    let r = get(cluster.monitor, "/deps?view=nested").unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("`list` (the default) or `tree`"),
        "{}",
        r.body
    );

    assert_eq!(
        get(cluster.monitor, "/custom").unwrap().body,
        "custom route"
    );
}

#[test]
fn bad_methods_paths_and_bodies() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let m = cluster.monitor;
    let r = get(m, "/nope").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route for /nope"));
    assert_eq!(
        request(
            m,
            "DELETE /workers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap()
        .status,
        405
    );
    let big = "x".repeat(200 * 1024);
    let raw = format!(
        "POST /statuses/worker HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n\"{big}\"",
        big.len() + 2
    );
    assert_eq!(request(m, &raw).unwrap().status, 413);
    assert_eq!(request(m, "GARBAGE\r\n\r\n").unwrap().status, 400);
    // Still serving.
    assert_eq!(get(m, "/workers").unwrap().status, 200);
}

/// Structural check of the OpenMetrics text: every line is a comment of a known kind, a
/// sample `name{labels} value`, or the final `# EOF`.
fn check_exposition(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split_whitespace().next().unwrap();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (name_labels, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = name_labels.split('{').next().unwrap();
        assert!(name.starts_with("cluster2_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if let Some(labels) = name_labels.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
    }
    // And by an independent parser, which must refuse what is not OpenMetrics for its
    // acceptance to mean anything.
    let families = reference_parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert!(families > 0, "no metric family in:\n{text}");
    let truncated = text.trim_end().trim_end_matches("# EOF");
    assert!(
        reference_parse(truncated).is_err(),
        "the reference parser accepted an exposition without # EOF"
    );
}

/// Parses an exposition with the reference OpenMetrics parser, Prometheus's Python client's,
/// and returns how many metric families it read, or why it refused the text. Panics, naming
/// the command that installs it, when the parser is missing: the metrics check is not skipped.
fn reference_parse(text: &str) -> Result<usize, String> {
    const SCRIPT: &str = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        print(len(list(parse(sys.stdin.read()))))";
    let out = cluster2_tests::run_reference_parser(SCRIPT, text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "prometheus_client refused the exposition: {stderr}"
        ));
    }
    let families = String::from_utf8_lossy(&out.stdout);
    families
        .trim()
        .parse()
        .map_err(|_| format!("prometheus_client printed {families:?}"))
}

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .rsplit_once(' ')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_every_request_even_across_a_replaced_worker() {
    let cluster = Cluster::start(APP, &["--workers=2", "--heartbeat-interval=100ms"], &[]);
    const K: u64 = 30;
    for _ in 0..K {
        assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    }
    let metrics = || {
        let r = get(cluster.monitor, "/metrics").unwrap();
        assert_eq!(r.status, 200);
        r.body
    };
    assert!(eventually(cluster2_tests::SOON, || sample(
        &metrics(),
        "cluster2_requests_total"
    ) == K as f64));
    let text = metrics();
    check_exposition(&text);
    assert_eq!(sample(&text, "cluster2_ecv_up"), 1.0);
    // The latency histogram counts every request, once, in order of its buckets.
    assert_eq!(
        sample(&text, "cluster2_request_duration_seconds_count"),
        K as f64
    );
    assert_eq!(
        sample(
            &text,
            "cluster2_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        K as f64
    );
    let cumulative: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("cluster2_request_duration_seconds_bucket{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(
        cumulative.len(),
        cluster2::REQUEST_DURATION_BUCKETS.len() + 1
    );
    assert!(
        cumulative.windows(2).all(|w| w[0] <= w[1]),
        "{cumulative:?}"
    );
    let per_worker: f64 = text
        .lines()
        .filter(|l| l.starts_with("cluster2_worker_request_duration_seconds_count{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(per_worker, K as f64);
    for pid in &cluster.workers {
        assert!(
            text.contains(&format!("pid=\"{pid}\"")),
            "per-worker series for {pid}"
        );
    }

    // A worker crashes and is replaced: the cluster total does not go backwards.
    let mut events = cluster.events();
    assert!(get(cluster.app, "/crash").is_err());
    let crashed = events.wait("exited", |e| e["exit"]["status"] == 42);
    events.wait("listening", |e| e["worker"] == crashed["worker"]);
    let after = sample(&metrics(), "cluster2_requests_total");
    assert!(after >= K as f64, "total went from {K} to {after}");
    let after = sample(&metrics(), "cluster2_request_duration_seconds_count");
    assert!(after >= K as f64, "the histogram went from {K} to {after}");
    assert_eq!(sample(&metrics(), "cluster2_restarts_total"), 1.0);
    // The lifecycle stream's counts: one crash, and the exits and spawns behind it.
    let text = metrics();
    assert_eq!(sample(&text, "cluster2_worker_crashes_total"), 1.0);
    assert_eq!(
        sample(&text, "cluster2_lifecycle_events_total{event=\"exited\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "cluster2_lifecycle_events_total{event=\"spawned\"}"),
        3.0
    );
}
