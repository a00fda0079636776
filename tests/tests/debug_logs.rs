//! A process's live log lines (`GET /debug/workers/{pid}/logs`) and its log filter changed live
//! (`POST /debug/workers/{pid}/log-level`), over a real cluster: the workers, the standalone
//! cache manager and the master.
//!
//! A process forwards its lines from the moment the master's request reaches it, a little
//! after the stream opened; each test therefore logs until a first line of the watched process
//! arrives, and only then logs what it checks.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Instant;

use cluster2_tests::{Cluster, Events, SOON, SseEvent, get, post_body};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// What the test asked the workers to log, and which worker logged each line.
#[derive(Default)]
struct Logged {
    lines: Vec<(String, u32)>,
    next: usize,
}

impl Logged {
    /// Has a worker log a new message starting with `prefix` at `level`; returns the message
    /// and the pid of the worker that logged it.
    fn one(&mut self, cluster: &Cluster, level: &str, prefix: &str) -> (String, u32) {
        self.next += 1;
        let msg = format!("{prefix}-{}", self.next);
        let answer = get(cluster.app, &format!("/log?level={level}&msg={msg}")).expect("GET /log");
        assert_eq!(answer.status, 200, "{answer:?}");
        let pid: u32 = answer.body.parse().expect("a pid");
        self.lines.push((msg.clone(), pid));
        (msg, pid)
    }

    /// Has workers log messages starting with `prefix` until `pid` logged one; returns that one.
    fn on(&mut self, cluster: &Cluster, pid: u32, level: &str, prefix: &str) -> String {
        let deadline = Instant::now() + SOON;
        loop {
            let (msg, by) = self.one(cluster, level, prefix);
            if by == pid {
                return msg;
            }
            assert!(Instant::now() < deadline, "pid {pid} answered no request");
        }
    }

    /// Has workers log messages starting with `prefix` until each of `pids` logged one.
    fn on_each(&mut self, cluster: &Cluster, pids: &[u32], level: &str, prefix: &str) {
        let deadline = Instant::now() + SOON;
        let mut missing = pids.to_vec();
        while !missing.is_empty() {
            let (_, by) = self.one(cluster, level, prefix);
            missing.retain(|&p| p != by);
            assert!(Instant::now() < deadline, "{missing:?} answered no request");
        }
    }

    /// The messages starting with `prefix` that `pid` logged, in order.
    fn by(&self, pid: u32, prefix: &str) -> Vec<String> {
        self.lines
            .iter()
            .filter(|(msg, by)| *by == pid && msg.starts_with(prefix))
            .map(|(msg, _)| msg.clone())
            .collect()
    }
}

/// One open log stream and the events it brought so far.
struct Watched {
    pid: u32,
    events: Receiver<SseEvent>,
    seen: Vec<SseEvent>,
}

impl Watched {
    fn open(cluster: &Cluster, pid: u32) -> Self {
        let path = format!("/debug/workers/{pid}/logs");
        Self {
            pid,
            events: Events::open(cluster.monitor, &path).in_background(),
            seen: Vec::new(),
        }
    }

    /// Takes what has arrived, without waiting.
    fn take(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(event) => self.seen.push(event),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn find(&self, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
        self.seen
            .iter()
            .filter(|e| e.name == "message")
            .map(|e| &e.data)
            .find(|line| pred(line))
    }

    /// Waits for a line that `pred` accepts.
    fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SOON;
        loop {
            if let Some(line) = self.find(&pred) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.seen.push(event),
                Err(e) => panic!(
                    "no line {what} on the stream of pid {} ({e:?}); seen: {:#?}",
                    self.pid, self.seen
                ),
            }
        }
    }

    /// Waits for the line whose message is `msg`.
    fn wait_message(&mut self, msg: &str) -> Value {
        self.wait(&format!("saying {msg:?}"), |l| l["message"] == msg)
    }

    /// Has this worker log until one of its lines arrives here: forwarding is on.
    fn until_forwarding(&mut self, cluster: &Cluster, logged: &mut Logged) {
        let deadline = Instant::now() + SOON;
        loop {
            logged.on(cluster, self.pid, "info", "ready");
            self.take();
            // Any of its lines proves forwarding is on. (Not only the newest: lines gather
            // for a few milliseconds before they are sent, so the newest is usually still on
            // its way when this looks.)
            let ours = |l: &Value| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("ready"))
            };
            if self.find(ours).is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no line of pid {} arrived on its stream; it carried: {:#?}",
                self.pid,
                self.seen
            );
        }
    }

    /// The messages seen that start with `prefix`, in order.
    fn messages(&self, prefix: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|e| e.data["message"].as_str())
            .filter(|m| m.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// Waits for the stream to end.
    fn wait_end(&mut self) {
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.seen.push(event),
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the stream of pid {} did not end", self.pid)
                }
            }
        }
    }
}

fn set_level(cluster: &Cluster, target: &str, filter: &str) -> (u16, Value) {
    let answer = post_body(
        cluster.monitor,
        &format!("/debug/workers/{target}/log-level"),
        "text/plain",
        filter,
    )
    .expect("POST log-level");
    let body =
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:?}"));
    (answer.status, body)
}

/// The `log_filter` of each worker in `GET /workers`.
fn worker_filters(cluster: &Cluster) -> Vec<(u32, String)> {
    let workers: Value = serde_json::from_str(&get(cluster.monitor, "/workers").unwrap().body)
        .expect("JSON from /workers");
    workers["workers"]
        .as_array()
        .expect("a list of workers")
        .iter()
        .map(|w| {
            (
                w["pid"].as_u64().unwrap() as u32,
                w["log_filter"].as_str().unwrap_or("(none)").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_workers_stream_carries_its_lines_and_no_other_workers() {
    let cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let (chosen, other) = (cluster.workers[0], cluster.workers[1]);
    let mut logged = Logged::default();
    let mut stream = Watched::open(&cluster, chosen);
    stream.until_forwarding(&cluster, &mut logged);
    // A second watcher of the same worker (another tab) gets every line from when it opened.
    let mut twin = Watched::open(&cluster, chosen);

    logged.on_each(&cluster, &[chosen, other], "info", "mark");
    let last = logged.on(&cluster, chosen, "info", "mark");
    twin.wait_message(&last);
    assert_eq!(twin.messages("mark"), logged.by(chosen, "mark"));
    drop(twin);
    let line = stream.wait_message(&last);
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["target"], "fixture_app", "{line}");
    assert_eq!(line["fields"]["pid"], chosen.to_string(), "{line}");
    assert!(line["at_unix_secs"].as_f64().unwrap() > 1.7e9, "{line}");
    // Every line of the chosen worker, in order, and none of the other's.
    assert_eq!(stream.messages("mark"), logged.by(chosen, "mark"));
    assert!(!logged.by(other, "mark").is_empty());
    assert!(
        stream
            .messages("ready")
            .iter()
            .all(|m| !logged.by(other, "ready").contains(m))
    );

    // The stream ends with the process.
    let replaced = cluster2_tests::post(cluster.monitor, &format!("/workers/{chosen}/replace"));
    assert_eq!(replaced.status, 200, "{replaced:?}");
    stream.wait_end();
    let gone = get(cluster.monitor, &format!("/debug/workers/{chosen}/logs")).unwrap();
    assert_eq!(gone.status, 404, "{gone:?}");
}

#[test]
fn the_log_level_changes_per_process_and_for_all() {
    let cluster = Cluster::start(APP, &["--workers=2", "--heartbeat-interval=500ms"], &[]);
    let (chosen, other) = (cluster.workers[0], cluster.workers[1]);
    let mut logged = Logged::default();
    let mut streams = [
        Watched::open(&cluster, chosen),
        Watched::open(&cluster, other),
    ];
    for stream in &mut streams {
        stream.until_forwarding(&cluster, &mut logged);
    }
    let flush = |logged: &mut Logged, streams: &mut [Watched; 2], prefix: &str| {
        for stream in streams.iter_mut() {
            let end = logged.on(&cluster, stream.pid, "info", prefix);
            stream.wait_message(&end);
        }
    };

    // At the configured level, `info`, debug lines are neither written nor streamed.
    logged.on_each(&cluster, &[chosen, other], "debug", "before");
    flush(&mut logged, &mut streams, "end-before");
    assert!(streams.iter().all(|s| s.messages("before").is_empty()));

    let (status, answer) = set_level(&cluster, &chosen.to_string(), "debug");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({ "pid": chosen, "filter": "debug" })
    );
    let mut filters = worker_filters(&cluster);
    filters.sort();
    let mut expected = vec![(chosen, "debug".to_owned()), (other, "info".to_owned())];
    expected.sort();
    assert_eq!(filters, expected);

    logged.on_each(&cluster, &[chosen, other], "debug", "after");
    flush(&mut logged, &mut streams, "end-after");
    let [chosen_stream, other_stream] = &mut streams;
    assert_eq!(chosen_stream.messages("after"), logged.by(chosen, "after"));
    assert!(!logged.by(chosen, "after").is_empty());
    assert!(other_stream.messages("after").is_empty());
    let debug = chosen_stream.wait_message(&logged.by(chosen, "after")[0]);
    assert_eq!(debug["level"], "DEBUG", "{debug}");

    // `all`: the master, both workers and the cache manager.
    let (status, answer) = set_level(&cluster, "all", "\"debug\"");
    assert_eq!(status, 200, "{answer}");
    let results = answer.as_array().expect("a list");
    assert_eq!(
        results[0]["pid"],
        cluster.proc.pid(),
        "the master first: {answer}"
    );
    assert_eq!(
        results.len(),
        4,
        "master, two workers, cache manager: {answer}"
    );
    assert!(results.iter().all(|r| r["filter"] == "debug"), "{answer}");
    assert!(worker_filters(&cluster).iter().all(|(_, f)| f == "debug"));
    logged.on_each(&cluster, &[chosen, other], "debug", "everywhere");
    flush(&mut logged, &mut streams, "end-everywhere");
    for stream in &streams {
        assert_eq!(
            stream.messages("everywhere"),
            logged.by(stream.pid, "everywhere")
        );
    }

    // The master's own lines: its heartbeat lines are at debug level.
    let mut master = Watched::open(&cluster, cluster.proc.pid());
    let beat = master.wait("about a heartbeat", |l| {
        l["target"] == "cluster2::heartbeat"
    });
    assert_eq!(beat["level"], "DEBUG", "{beat}");
}

#[test]
fn the_cache_managers_lines_stream_too() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let up = cluster
        .events()
        .wait("cache_manager_up", |e| e["pid"].is_u64());
    let cache = up["pid"].as_u64().unwrap() as u32;
    let (status, answer) = set_level(&cluster, &cache.to_string(), "info,cluster2=debug");
    assert_eq!(status, 200, "{answer}");
    let mut stream = Watched::open(&cluster, cache);
    // The manager logs each namespace it creates, at debug level.
    let deadline = Instant::now() + SOON;
    let mut n = 0;
    let line = loop {
        n += 1;
        let created = get(
            cluster.app,
            &format!("/cache/set?ns=fresh-{n}&key=k&value=v"),
        )
        .unwrap();
        assert_eq!(created.status, 200, "{created:?}");
        stream.take();
        if let Some(line) = stream.find(|l| l["message"] == "cache namespace created") {
            break line.clone();
        }
        assert!(Instant::now() < deadline, "no line of the cache manager");
    };
    assert_eq!(line["level"], "DEBUG", "{line}");
    assert!(
        line["fields"]["namespace"]
            .as_str()
            .is_some_and(|ns| ns.starts_with("fresh-")),
        "{line}"
    );
}

#[test]
fn bad_filters_and_unknown_pids_are_refused() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    let worker = cluster.workers[0].to_string();
    for target in [worker.as_str(), "all"] {
        let (status, answer) = set_level(&cluster, target, "verbose");
        assert_eq!(status, 400, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("`verbose` is not a level"), "{error}");
    }
    let (status, answer) = set_level(&cluster, &worker, "info,my_app=loud");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("`loud` is not a level"),
        "{answer}"
    );
    // Nothing changed.
    assert_eq!(worker_filters(&cluster)[0].1, "info");

    let unknown = u32::MAX - 1;
    let logs = get(cluster.monitor, &format!("/debug/workers/{unknown}/logs")).unwrap();
    assert_eq!(logs.status, 404, "{logs:?}");
    assert!(logs.body.contains(&unknown.to_string()), "{logs:?}");
    let (status, answer) = set_level(&cluster, &unknown.to_string(), "debug");
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains(&unknown.to_string())
    );
    let (status, _) = set_level(&cluster, "nobody", "debug");
    assert_eq!(status, 400);
}
