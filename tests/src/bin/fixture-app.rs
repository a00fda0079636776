//! The application most integration tests run. Its behaviour is chosen by `FIXTURE_*`
//! environment variables, which every worker inherits from the master:
//!
//! - `FIXTURE_CRASH_AT_START=1`: every worker exits with status 9 while configuring the app.
//! - `FIXTURE_CONFIGURE_FAIL=1`: `configure_app` returns an error.
//! - `FIXTURE_WARM_UP_FAIL=1`: the warm-up returns an error.
//! - `FIXTURE_WARM_UP_GATE=path`: the warm-up waits until `path` exists.
//! - `FIXTURE_MAIN_FAIL=1`: `main` returns an error in the master.
//! - `FIXTURE_EMITTER=1`: the master emits `ping` once ready; every process echoes it back.
//! - `FIXTURE_SLOW_STATUS=1`: workers register a status `slow` whose view takes 3 s.
//! - `FIXTURE_WARM_UP_FAIL_ONCE=path`: the warm-up fails unless `path` exists, and creates it.
//! - `FIXTURE_WARM_UP_FAIL_AFTER=path`: the warm-up fails once `path` exists.
//! - `FIXTURE_CACHE_WATCH=1`: workers watch the cache namespace `watched` and log each change.
//! - `FIXTURE_CACHE_WATCH_MAX_ENTRIES=N`: with `FIXTURE_CACHE_WATCH`, `watched` holds at most N
//!   entries.
//! - `FIXTURE_CACHE_WATCH_EXPIRE=ms`: entries of `watched` expire after `ms` (if this process
//!   is the first to use it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Extension, Query};
use axum::{Router, routing::get};
use cluster2::cache::{self, CacheOptions, SetOptions};
use cluster2::emitter::{self, Target};
use cluster2::status;
use serde::Deserialize;
use std::sync::Mutex;

/// Requests this worker has answered, across all routes: orders warm-up against real traffic.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

/// `/hold?until=path`: an answer that takes until the test creates `path`, without blocking
/// the worker (a request kept in flight).
#[derive(Deserialize)]
struct Hold {
    until: String,
}

#[derive(Deserialize)]
struct Grow {
    mib: usize,
}

/// Memory `/grow` took and keeps for the life of the process.
static GROWN: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

#[derive(Deserialize)]
struct Block {
    ms: u64,
    /// Stop blocking early once this file exists.
    until: Option<String>,
}

/// Spins the CPU for `ms`: what `/busy` runs, under a name that profiles are checked for.
#[inline(never)]
fn fixture_busy_loop(ms: u64) -> u64 {
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    let mut spins = 0u64;
    while std::time::Instant::now() < until {
        spins = std::hint::black_box(spins + 1);
    }
    spins
}

/// Blocks the calling thread for `ms`, or until the file `until` exists: what `/block` runs,
/// under a name that thread stacks are checked for.
#[inline(never)]
fn fixture_blocking_sleep(ms: u64, until: Option<&str>) {
    let end = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < end {
        if until.is_some_and(|path| std::path::Path::new(path).exists()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What `/health` answers; monitor-mode ECV tests flip it.
static HEALTH: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(200);

#[derive(Deserialize)]
struct SetHealth {
    code: u16,
}

#[derive(Deserialize)]
struct EmitTo {
    pid: u32,
}

#[derive(Deserialize)]
struct HostEvent {
    text: String,
    count: Option<u32>,
}

#[derive(Deserialize)]
struct LogThis {
    level: String,
    msg: String,
}

/// `/log?level=debug&msg=…`: logs `msg` at `level` with a field `pid`, and answers the pid.
async fn log_this(Query(q): Query<LogThis>) -> (axum::http::StatusCode, String) {
    let pid = std::process::id();
    match q.level.as_str() {
        "error" => tracing::error!(pid, "{}", q.msg),
        "warn" => tracing::warn!(pid, "{}", q.msg),
        "info" => tracing::info!(pid, "{}", q.msg),
        "debug" => tracing::debug!(pid, "{}", q.msg),
        "trace" => tracing::trace!(pid, "{}", q.msg),
        other => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("no level {other}"),
            );
        }
    }
    (axum::http::StatusCode::OK, pid.to_string())
}

/// The value of the mutable status `worker`: this process's pid until someone sets it.
static WORKER_STATUS: Mutex<String> = Mutex::new(String::new());

#[derive(Deserialize)]
struct CacheQuery {
    #[serde(default = "default_ns")]
    ns: String,
    key: String,
    value: Option<String>,
    #[serde(default)]
    persist: bool,
    /// For `/cache/load`: the loader blocks for a minute unless this file exists (it creates
    /// it), so that the first loader can be killed mid-load.
    marker: Option<String>,
    /// For `/cache/load`: the loader waits until this file exists (at most a minute).
    gate: Option<String>,
    /// The namespace's bounds, if this request declares it first.
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    /// For `/cache/load` and `/cache/fail`: the call's timeout (and the loader's lease), in
    /// milliseconds; 15 s otherwise.
    wait_ms: Option<u64>,
    /// The namespace's expiry, in milliseconds, if this is its first use.
    expire_ms: Option<u64>,
    /// For `/cache/set-json`: the value, as JSON.
    json: Option<String>,
    /// For `/cache/set-json`: leave an existing value alone.
    #[serde(default)]
    leave: bool,
    /// For `/cache/burst`: how many gets at once.
    n: Option<usize>,
}

fn default_ns() -> String {
    "cache-test".to_owned()
}

async fn namespace(q: &CacheQuery) -> Result<cache::Cache, String> {
    let options = CacheOptions {
        persist: q.persist,
        expire: q.expire_ms.map(Duration::from_millis),
        max_entries: q.max_entries,
        max_bytes: q.max_bytes,
    };
    cache::use_cache(&q.ns, options)
        .await
        .map_err(|e| e.to_string())
}

type Answer = (axum::http::StatusCode, String);

fn failed(e: impl std::fmt::Display) -> Answer {
    (axum::http::StatusCode::NOT_FOUND, e.to_string())
}

/// The original's `/set`: answers the value if it was stored, `fail` otherwise.
async fn cache_set(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns,
        Err(e) => return failed(e),
    };
    let value = q.value.clone().unwrap_or_default();
    match ns.set(&q.key, &value, SetOptions::default()).await {
        Ok(true) => (axum::http::StatusCode::OK, value),
        Ok(false) => (axum::http::StatusCode::OK, "fail".to_owned()),
        Err(e) => failed(e),
    }
}

/// The original's `/get`: a get whose loader answers `cache-test`.
async fn cache_get(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns,
        Err(e) => return failed(e),
    };
    match ns
        .get(&q.key, || async {
            Ok::<_, String>("cache-test".to_owned())
        })
        .await
    {
        Ok(v) => (axum::http::StatusCode::OK, v),
        Err(e) => failed(e),
    }
}

async fn cache_peek(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns,
        Err(e) => return failed(e),
    };
    match ns.peek::<String>(&q.key).await {
        Ok(Some(v)) => (axum::http::StatusCode::OK, v),
        Ok(None) => failed("missing"),
        Err(e) => failed(e),
    }
}

/// A get whose loader logs, takes 300 ms (or blocks, see `marker`), and names its process.
async fn cache_load(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns.wait(Duration::from_millis(q.wait_ms.unwrap_or(15_000))),
        Err(e) => return failed(e),
    };
    let marker = q.marker.clone();
    let gate = q.gate.clone();
    let loaded = ns
        .get(&q.key, || async move {
            let pid = std::process::id();
            tracing::info!(pid, "loader ran");
            if let Some(gate) = gate {
                tracing::info!(pid, "gated loader started");
                let until = std::time::Instant::now() + Duration::from_secs(60);
                while !std::path::Path::new(&gate).exists() && std::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return Ok::<_, String>(format!("loaded by {pid}"));
            }
            match marker {
                Some(m) if !std::path::Path::new(&m).exists() => {
                    let _ = std::fs::write(&m, b"first");
                    tracing::info!(pid, "slow loader started");
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
            Ok::<_, String>(format!("loaded by {pid}"))
        })
        .await;
    match loaded {
        Ok(v) => (
            axum::http::StatusCode::OK,
            format!("{v} for {}", std::process::id()),
        ),
        Err(e) => failed(e),
    }
}

/// A get whose loader logs, takes 300 ms, and fails.
async fn cache_fail(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns.wait(Duration::from_millis(q.wait_ms.unwrap_or(15_000))),
        Err(e) => return failed(e),
    };
    let loaded = ns
        .get(&q.key, || async move {
            tracing::info!(pid = std::process::id(), "failing loader ran");
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err::<String, _>(format!("backend down in {}", std::process::id()))
        })
        .await;
    match loaded {
        Ok(v) => (axum::http::StatusCode::OK, v),
        Err(e) => failed(e),
    }
}

/// `n` gets of one key at once from this process (all polled before any is answered); the
/// loader logs. Answers the distinct values, comma-separated.
async fn cache_burst(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns,
        Err(e) => return failed(e),
    };
    let gets = (0..q.n.unwrap_or(50)).map(|_| {
        ns.get(&q.key, || async {
            tracing::info!(pid = std::process::id(), "loader ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(format!("burst loaded by {}", std::process::id()))
        })
    });
    let mut values = std::collections::BTreeSet::new();
    for got in futures_util::future::join_all(gets).await {
        match got {
            Ok(v) => values.insert(v),
            Err(e) => return failed(e),
        };
    }
    (
        axum::http::StatusCode::OK,
        values.into_iter().collect::<Vec<_>>().join(","),
    )
}

/// Stores any JSON value; answers `stored`, or `left` when `leave` kept an existing one.
async fn cache_set_json(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns,
        Err(e) => return failed(e),
    };
    let value: serde_json::Value = match serde_json::from_str(q.json.as_deref().unwrap_or("")) {
        Ok(v) => v,
        Err(e) => return failed(format!("bad json: {e}")),
    };
    let options = SetOptions {
        leave_if_not_null: q.leave,
    };
    match ns.set(&q.key, &value, options).await {
        Ok(true) => (axum::http::StatusCode::OK, "stored".to_owned()),
        Ok(false) => (axum::http::StatusCode::OK, "left".to_owned()),
        Err(e) => failed(e),
    }
}

/// The stored JSON value, or `missing`.
async fn cache_peek_json(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns,
        Err(e) => return failed(e),
    };
    match ns.peek::<serde_json::Value>(&q.key).await {
        Ok(Some(v)) => (axum::http::StatusCode::OK, v.to_string()),
        Ok(None) => (axum::http::StatusCode::OK, "missing".to_owned()),
        Err(e) => failed(e),
    }
}

/// Deletes; answers the old JSON value, or `missing`.
async fn cache_del(Query(q): Query<CacheQuery>) -> Answer {
    let ns = match namespace(&q).await {
        Ok(ns) => ns,
        Err(e) => return failed(e),
    };
    match ns.del::<serde_json::Value>(&q.key).await {
        Ok(Some(v)) => (axum::http::StatusCode::OK, v.to_string()),
        Ok(None) => (axum::http::StatusCode::OK, "missing".to_owned()),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
struct NsQuery {
    ns: String,
    expire_ms: Option<u64>,
    #[serde(default)]
    persist: bool,
}

/// The namespace's keys, comma-separated.
async fn cache_keys(Query(q): Query<NsQuery>) -> Answer {
    match cache::use_cache(&q.ns, CacheOptions::default()).await {
        Ok(ns) => match ns.keys().await {
            Ok(keys) => (axum::http::StatusCode::OK, keys.join(",")),
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    }
}

/// Uses a namespace with these options; answers the options it has: `persist=… expire_ms=…`.
async fn cache_use(Query(q): Query<NsQuery>) -> Answer {
    let options = CacheOptions {
        persist: q.persist,
        expire: q.expire_ms.map(Duration::from_millis),
        ..CacheOptions::default()
    };
    match cache::use_cache(&q.ns, options).await {
        Ok(ns) => {
            let o = ns.options();
            (
                axum::http::StatusCode::OK,
                format!(
                    "persist={} expire_ms={}",
                    o.persist,
                    o.expire
                        .map_or("none".to_owned(), |d| d.as_millis().to_string())
                ),
            )
        }
        Err(e) => failed(e),
    }
}

/// Registered by the macro: present in every process (master and workers) from the start.
#[cluster2::status("uptime-owner")]
fn uptime_owner() -> String {
    format!("pid {}", std::process::id())
}

async fn panicking_handler() -> &'static str {
    panic!("handler bug")
}

fn listen_for_events() {
    // Every process answers a ping with its pid, to the master.
    emitter::on("ping", |_| {
        emitter::to([Target::Master]).emit("echo", std::process::id())?;
        Ok(())
    });
    emitter::on("direct", |ev| {
        let text: String = ev.args()?;
        tracing::info!(from = ev.from(), text = %text, "direct event received");
        Ok(())
    });
}

/// Every process (the master too) logs the events sent to every host.
fn listen_for_host_events() {
    emitter::on("host-event", |ev| {
        let text: String = ev.args()?;
        tracing::info!(
            pid = std::process::id(),
            from = ev.from(),
            text = %text,
            "host event received"
        );
        Ok(())
    });
}

fn register_statuses() {
    *WORKER_STATUS.lock().unwrap() = std::process::id().to_string();
    status::register_with_update(
        "worker",
        || WORKER_STATUS.lock().unwrap().clone(),
        |value: String| {
            *WORKER_STATUS.lock().unwrap() = value.clone();
            value
        },
    )
    .expect("register `worker`");
    status::register("pid", std::process::id).expect("register `pid`");
    if flag("FIXTURE_SLOW_STATUS") {
        status::register("slow", || {
            std::thread::sleep(Duration::from_secs(3));
            "finally"
        })
        .expect("register `slow`");
    }
}

#[cluster2::configure_app]
async fn app() -> Result<Router, String> {
    // The application's first line: what a debug worker's log stream must begin with.
    tracing::debug!(pid = std::process::id(), "configure_app started");
    if flag("FIXTURE_CRASH_AT_START") {
        std::process::exit(9);
    }
    if flag("FIXTURE_CONFIGURE_FAIL") {
        return Err("database unreachable".to_owned());
    }
    // Listeners and statuses are registered before the worker serves, so nothing is missed.
    listen_for_events();
    listen_for_host_events();
    register_statuses();
    if flag("FIXTURE_CACHE_WATCH") {
        let expire = std::env::var("FIXTURE_CACHE_WATCH_EXPIRE")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        let max_entries = std::env::var("FIXTURE_CACHE_WATCH_MAX_ENTRIES")
            .ok()
            .and_then(|n| n.parse().ok());
        let options = CacheOptions {
            expire,
            max_entries,
            ..CacheOptions::default()
        };
        let watched = cache::use_cache("watched", options)
            .await
            .map_err(|e| e.to_string())?;
        watched.watch(None, |key: &str, value: Option<String>| {
            tracing::info!(key = %key, value = ?value, "watch fired");
        });
    }
    Ok(Router::new()
        .route("/", get(|| async { "hello world" }))
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route("/log", get(log_this))
        .route(
            "/seq",
            get(
                |Extension(conn): Extension<cluster2::ConnInfo>| async move {
                    let n = SEQUENCE.fetch_add(1, Ordering::SeqCst) + 1;
                    format!("{n} {}", conn.local)
                },
            ),
        )
        .route(
            "/slow",
            get(|Query(slow): Query<Slow>| async move {
                tracing::info!(pid = std::process::id(), "slow request started");
                tokio::time::sleep(Duration::from_millis(slow.ms)).await;
                "done"
            }),
        )
        .route(
            "/emit-to",
            get(|Query(to): Query<EmitTo>| async move {
                emitter::to([Target::Pid(to.pid)])
                    .emit("direct", format!("hello from {}", std::process::id()))
                    .map_or_else(|e| e.to_string(), |()| "sent".to_owned())
            }),
        )
        .route(
            "/emit-hosts",
            get(|Query(q): Query<HostEvent>| async move {
                // With `count`, `text0`, `text1`, … one after another, from this process.
                let texts: Vec<String> = match q.count {
                    Some(n) => (0..n).map(|i| format!("{}{i}", q.text)).collect(),
                    None => vec![q.text],
                };
                for text in texts {
                    if let Err(e) = emitter::to([Target::AllHosts]).emit("host-event", text) {
                        return e.to_string();
                    }
                }
                "sent".to_owned()
            }),
        )
        .route(
            "/busy",
            get(|Query(slow): Query<Slow>| async move { fixture_busy_loop(slow.ms).to_string() }),
        )
        .route(
            "/block",
            get(|Query(block): Query<Block>| async move {
                tracing::info!(pid = std::process::id(), "block request started");
                // Blocks the runtime thread on purpose: what a badly written handler does.
                fixture_blocking_sleep(block.ms, block.until.as_deref());
                "blocked"
            }),
        )
        .route(
            "/hold",
            get(|Query(hold): Query<Hold>| async move {
                tracing::info!(pid = std::process::id(), "hold request started");
                // Waiting for the test to release it: this is what the test observes.
                while !std::path::Path::new(&hold.until).exists() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                "released"
            }),
        )
        .route(
            "/grow",
            get(|Query(grow): Query<Grow>| async move {
                // Written, not only allocated: untouched pages are not resident.
                let chunk = vec![1u8; grow.mib.min(1024) << 20];
                let mut grown = GROWN.lock().unwrap();
                grown.push(chunk);
                let held: usize = grown.iter().map(Vec::len).sum();
                format!("{} {}", std::process::id(), held >> 20)
            }),
        )
        .route("/panic", get(panicking_handler))
        .route("/cache/set", get(cache_set))
        .route("/cache/get", get(cache_get))
        .route("/cache/peek", get(cache_peek))
        .route("/cache/load", get(cache_load))
        .route("/cache/fail", get(cache_fail))
        .route("/cache/burst", get(cache_burst))
        .route("/cache/set-json", get(cache_set_json))
        .route("/cache/peek-json", get(cache_peek_json))
        .route("/cache/del", get(cache_del))
        .route("/cache/keys", get(cache_keys))
        .route("/cache/use", get(cache_use))
        .route(
            "/health",
            get(|| async {
                let code = HEALTH.load(Ordering::SeqCst);
                (
                    axum::http::StatusCode::from_u16(code).unwrap(),
                    format!("health {code}"),
                )
            }),
        )
        .route(
            "/health/set",
            get(|Query(set): Query<SetHealth>| async move {
                HEALTH.store(set.code, Ordering::SeqCst);
                "set"
            }),
        )
        .route(
            "/fail",
            get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }),
        )
        .route(
            "/crash",
            get(|| async {
                std::process::exit(42);
                #[allow(unreachable_code)]
                ""
            }),
        ))
}

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    tracing::info!(addr = %w.addr(), "warm-up started");
    if let Some(gate) = std::env::var_os("FIXTURE_WARM_UP_GATE") {
        // Waiting for the test to open the gate: this is what the test observes, not a delay.
        while !std::path::Path::new(&gate).exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let response = w.get("/seq").await?;
    let body = String::from_utf8_lossy(response.body()).into_owned();
    let (seq, local) = body.split_once(' ').unwrap_or((&body, ""));
    tracing::info!(seq = %seq, local = %local, "warm-up request answered");
    if flag("FIXTURE_WARM_UP_FAIL") {
        return Err("cache not primed".into());
    }
    if let Some(marker) = std::env::var_os("FIXTURE_WARM_UP_FAIL_AFTER") {
        if std::path::Path::new(&marker).exists() {
            return Err("warm-up broken by the test".into());
        }
    }
    if let Some(marker) = std::env::var_os("FIXTURE_WARM_UP_FAIL_ONCE") {
        if !std::path::Path::new(&marker).exists() {
            std::fs::write(&marker, b"failed once")?;
            return Err("first warm-up fails".into());
        }
    }
    Ok(())
}

#[cluster2::main(port = 7001, workers = 2, stop_timeout = "10s")]
async fn main(started: cluster2::Started) -> Result<(), String> {
    tracing::info!(
        role = ?started.role(),
        args = %started.args().join(","),
        "main started"
    );
    if started.role() == cluster2::Role::Master && flag("FIXTURE_MAIN_FAIL") {
        return Err("the master's main gave up".to_owned());
    }
    if started.role() == cluster2::Role::Master {
        register_statuses();
        listen_for_host_events();
        if flag("FIXTURE_EMITTER") {
            ping_everyone(started.worker_pids().len() + 1);
        }
        if flag("FIXTURE_LIFECYCLE") {
            follow_lifecycle();
        }
    }
    Ok(())
}

/// The master follows the cluster's life through the public subscription and logs each crash
/// it hears of.
fn follow_lifecycle() {
    let mut events = cluster2::lifecycle::subscribe().expect("the master can subscribe");
    tokio::spawn(async move {
        while let Some(record) = events.next().await {
            if let cluster2::lifecycle::Event::Exited {
                worker,
                pid,
                exit,
                expected: false,
            } = &record.event
            {
                tracing::info!(
                    seq = record.seq,
                    worker,
                    pid,
                    "subscriber saw a crash: {exit}"
                );
            }
        }
    });
}

/// The master pings every process, itself included, and logs once all have echoed.
fn ping_everyone(expected: usize) {
    let echoes = std::sync::Arc::new(Mutex::new(Vec::<u32>::new()));
    let seen = echoes.clone();
    emitter::on("echo", move |ev| {
        let pid: u32 = ev.args()?;
        let mut seen = seen.lock().unwrap();
        seen.push(pid);
        if seen.len() == expected {
            let list: Vec<String> = seen.iter().map(u32::to_string).collect();
            tracing::info!(pids = %list.join(","), "echoes complete");
        }
        Ok(())
    });
    listen_for_events();
    emitter::emit("ping", ()).expect("emit ping");
}
