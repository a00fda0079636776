//! The monitor's API documentation (`cluster2/docs/monitor-api.md`) against a running cluster:
//! route by route, every field the documentation lists is served and every field served is
//! documented, so neither can drift from the other. The cluster is brought into a state where
//! every optional part has a value: heartbeats, a death queue with a replacement in progress
//! and one waiting, a cache namespace, statuses, a log stream.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use cluster2_tests::{Cluster, Events, SOON, TempPath, eventually, get, post, post_body};
use serde_json::{Value, json};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");
const DOC: &str = include_str!("../../cluster2/docs/monitor-api.md");

/// One documented field.
#[derive(Debug)]
struct Row {
    /// `workers[].heartbeat.cpu_percent`; `{name}` for any key of an object used as a map.
    path: String,
    /// `integer`, `object or null`, `array of objects`, `array (as /workers)`, …
    kind: String,
    /// Documented as present only sometimes.
    optional: bool,
}

/// The table after `<!-- marker -->`.
fn table(marker: &str) -> Vec<Row> {
    let start = DOC
        .find(&format!("<!-- {marker} -->"))
        .unwrap_or_else(|| panic!("no `{marker}` table in the documentation"));
    DOC[start..]
        .lines()
        .skip(3) // the marker, the head and the rule
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Row {
                path: cells[1].trim_matches('`').to_owned(),
                kind: cells[2].to_owned(),
                optional: cells[3].starts_with("optional"),
            }
        })
        .collect()
}

fn join(path: &str, segment: &str) -> String {
    match (path.is_empty(), segment.starts_with('[')) {
        (true, _) | (_, true) => format!("{path}{segment}"),
        _ => format!("{path}.{segment}"),
    }
}

/// The paths of every field in `value`, named as the table names them. Objects and arrays of
/// objects are entered where the table describes their fields; any other value (a view's own
/// JSON, a reason, a shape documented elsewhere) is one field.
fn paths(value: &Value, rows: &[Row]) -> BTreeSet<String> {
    fn walk(value: &Value, path: &str, rows: &[Row], out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                // An object used as a map: its keys are data, documented as `{name}`.
                let placeholder = rows.iter().find_map(|r| {
                    let rest = r.path.strip_prefix(path)?;
                    let rest = rest.strip_prefix('.').unwrap_or(rest);
                    (rest.starts_with('{') && !rest[1..].contains(['.', '[', '{']))
                        .then(|| rest.split_once('}').map(|(p, _)| format!("{p}}}")))
                        .flatten()
                });
                for (key, child) in map {
                    let name = placeholder.clone().unwrap_or_else(|| key.clone());
                    let child_path = join(path, &name);
                    let enter = rows.iter().any(|r| {
                        r.path == child_path
                            && !r.kind.contains("(as ")
                            && (r.kind.starts_with("object")
                                || r.kind.starts_with("array of objects"))
                    });
                    out.insert(child_path.clone());
                    if enter {
                        walk(child, &child_path, rows, out);
                    }
                }
            }
            Value::Array(items) => {
                let item_path = join(path, "[]");
                if path.is_empty() {
                    out.insert(item_path.clone());
                }
                for item in items {
                    walk(item, &item_path, rows, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", rows, &mut out);
    out
}

/// Every field of `value` is in the table `marker`, and every field there but the optional
/// ones is in `value`.
fn check(marker: &str, value: &Value) {
    let rows = table(marker);
    let served = paths(value, &rows);
    let documented: BTreeSet<String> = rows.iter().map(|r| r.path.clone()).collect();
    let required: BTreeSet<String> = rows
        .iter()
        .filter(|r| !r.optional)
        .map(|r| r.path.clone())
        .collect();
    let undocumented: Vec<&String> = served.difference(&documented).collect();
    let missing: Vec<&String> = required.difference(&served).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "`{marker}`: served but not documented: {undocumented:?}; documented but not served: \
         {missing:?}\nin {value:#}"
    );
}

fn json(monitor: SocketAddr, path: &str) -> Value {
    let r = get(monitor, path).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

fn posted(monitor: SocketAddr, path: &str) -> Value {
    let r = post(monitor, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn every_documented_field_is_served_and_every_served_field_documented() {
    let gate = TempPath::new("api-gate");
    std::fs::write(gate.path(), b"open").unwrap();
    let cluster = Cluster::start(
        APP,
        &["--workers=2", "--heartbeat-interval=200ms"],
        &[("FIXTURE_WARM_UP_GATE", gate.as_str())],
    );
    let m = cluster.monitor;
    let (a, b) = (cluster.workers[0], cluster.workers[1]);
    assert!(
        eventually(SOON, || json(m, "/workers")["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !w["heartbeat"].is_null())),
        "every worker sent a heartbeat"
    );
    assert_eq!(
        get(cluster.app, "/cache/set?ns=api-ns&key=k&value=v")
            .unwrap()
            .status,
        200
    );
    // The master's own log lines, as a stream.
    let master = cluster.proc.pid();
    let mut master_logs = Events::open(m, &format!("/debug/workers/{master}/logs"));

    // Two replacements: the first waits in its successor's warm-up, the second behind it.
    std::fs::remove_file(gate.path()).unwrap();
    posted(m, &format!("/workers/{a}/replace"));
    let done = posted(m, &format!("/workers/{b}/replace"));
    check("fields: POST /workers/{pid}/{action}", &done);

    let workers = json(m, "/workers");
    assert_eq!(
        workers["death_queue"].as_array().unwrap().len(),
        2,
        "{workers}"
    );
    check("fields: GET /workers", &workers);
    let statuses = json(m, "/statuses");
    check("fields: GET /statuses", &statuses);
    check(
        "fields: GET /statuses",
        &json!({ "worker": json(m, "/statuses/worker") }),
    );
    check("fields: GET /caches", &json(m, "/caches"));
    check("fields: GET /", &json(m, "/"));
    check("fields: GET /deps", &json(m, "/deps"));
    // The tree: every node, at any depth, is documented.
    let tree = json(m, "/deps?view=tree");
    let mut stack = vec![tree];
    let mut node_fields = BTreeSet::new();
    while let Some(node) = stack.pop() {
        node_fields.extend(node.as_object().unwrap().keys().cloned());
        stack.extend(
            node["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    let documented: BTreeSet<String> = table("fields: GET /deps?view=tree")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(node_fields, documented);

    // The metric families.
    let metrics = get(m, "/metrics").unwrap().body;
    let served: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    // This cluster serves plain HTTP: the TLS families are tls_serving.rs's to check.
    let documented: BTreeSet<String> = table("metrics")
        .into_iter()
        .map(|r| r.path)
        .filter(|family| !family.starts_with("cluster2_tls_"))
        .collect();
    assert_eq!(served, documented, "metric families");

    // The debug page's feed: the history, then the state, whose parts are shaped as the
    // routes they come from.
    let mut feed = Events::open(m, "/debug/stream");
    let history = feed.next_sse().expect("the history");
    assert_eq!(history.name, "history");
    check("fields: history", &history.data);
    let state = loop {
        let event = feed.next_sse().expect("a state");
        if event.name == "state" && !event.data["death_queue"].as_array().unwrap().is_empty() {
            break event.data;
        }
    };
    check("fields: state", &state);
    check(
        "fields: GET /workers",
        &json!({
            "expected": state["expected"],
            "workers": state["workers"],
            "death_queue": state["death_queue"],
        }),
    );
    check("fields: GET /caches", &state["caches"]);
    check("fields: GET /statuses", &state["statuses"]);

    // A line of the master's log stream.
    let line = master_logs.next_sse().expect("a master log line");
    check("fields: log line", &line.data);

    // Actions.
    check(
        "fields: POST /workers/{pid}/{action}",
        &posted(m, &format!("/workers/{b}/pause")),
    );
    posted(m, &format!("/workers/{b}/resume"));
    let r = post_body(
        m,
        &format!("/debug/workers/{b}/log-level"),
        "text/plain",
        "info",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    check(
        "fields: POST /debug/workers/{pid}/log-level",
        &serde_json::from_str(&r.body).unwrap(),
    );

    // An error.
    let r = get(m, "/nope").unwrap();
    assert_eq!(r.status, 404);
    check("fields: error", &serde_json::from_str(&r.body).unwrap());

    // The replacements finish once the gate opens; a rolling restart then queues both.
    let mut events = cluster.events();
    std::fs::write(gate.path(), b"open").unwrap();
    events.wait("replaced", |e| e["pid"] == a);
    events.wait("replaced", |e| e["pid"] == b);
    check(
        "fields: POST /workers/restart",
        &posted(m, "/workers/restart"),
    );

    // A debug worker: started, then released; its answers as documented.
    let started = posted(m, "/debug/workers/new");
    check("fields: POST /debug/workers/new", &started);
    let held = started["pid"].as_u64().unwrap();
    let mut debug_events = cluster.events();
    debug_events.wait("paused", |e| e["pid"] == held);
    // A replacement still running for its worker id answers 409 until it is done.
    let mut released = None;
    assert!(
        cluster2_tests::eventually(cluster2_tests::SOON, || {
            let r = post(m, &format!("/debug/workers/{held}/release"));
            if r.status == 200 {
                released = Some(serde_json::from_str::<Value>(&r.body).unwrap());
            }
            r.status == 200
        }),
        "the debug worker was never released"
    );
    let released = released.expect("set with the 200");
    check("fields: POST /debug/workers/{pid}/release", &released);
    debug_events.wait("debug_worker_released", |e| e["pid"] == held);

    // One worker more, at run time.
    let mut scale_events = cluster.events();
    let r = post_body(m, "/workers/scale", "application/json", r#"{"delta": 1}"#).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    check(
        "fields: POST /workers/scale",
        &serde_json::from_str(&r.body).unwrap(),
    );
    scale_events.wait("scaled", |e| e["to"] == 3);
    scale_events.wait("listening", |e| e["worker"] == 2);

    // Lifecycle records: the envelope and each kind's fields as documented.
    let kinds = table("events");
    let exit_fields: BTreeSet<String> = table("fields: exit").into_iter().map(|r| r.path).collect();
    let recent = json(m, "/events/recent");
    for record in recent.as_array().unwrap() {
        let kind = record["event"].as_str().unwrap();
        let documented: BTreeSet<String> = table("fields: event")
            .into_iter()
            .map(|r| r.path)
            .chain(
                kinds
                    .iter()
                    .find(|r| r.path == kind)
                    .unwrap_or_else(|| panic!("event `{kind}` is not documented"))
                    .kind
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned),
            )
            .collect();
        let served: BTreeSet<String> = record.as_object().unwrap().keys().cloned().collect();
        assert_eq!(served, documented, "{record}");
        if let Some(exit) = record.get("exit") {
            let served: BTreeSet<String> = exit.as_object().unwrap().keys().cloned().collect();
            assert_eq!(served, exit_fields, "{record}");
        }
    }
}
