//! Chaos: a cluster under continuous load while its workers and its cache manager are
//! SIGKILLed at random, one after another. What must hold:
//!
//! - no request fails but those the killed processes had in flight: a request on a connection
//!   to a killed worker (what a real client would retry on a fresh connection), or a cache write
//!   that was in flight when the manager died (the client cannot know whether it was applied,
//!   and says so); every answer that comes is a 2xx;
//! - a killed worker that had served is replaced at once (no back-off), and so is the cache
//!   manager: each is serving again before the next kill;
//! - no acknowledged cache write is lost (the namespace is persisted);
//! - after the cluster stops, no process of it is left.
//!
//! The kills follow a seeded sequence; the seed is printed, and `CHAOS_SEED` replays one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster2_tests::{Cluster, Events, KeepAlive, SOON, TempPath, alive, eventually, get};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");
const WORKERS: usize = 3;
const KILLS: usize = 12;
const CLIENTS: usize = 4;

/// One request a client made, and how it went.
#[derive(Debug)]
struct Outcome {
    path: String,
    /// The worker serving the connection, as `/pid` said on it (none yet on a fresh one).
    worker: Option<u32>,
    started: Instant,
    ended: Instant,
    /// The status and body, or the I/O error.
    result: Result<(u16, String), String>,
}

/// A small deterministic generator (xorshift), so that a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

/// One client: on a kept-alive connection, asks which worker serves it, then writes a cache
/// key; after a failure it opens a fresh connection, as HTTP clients do.
fn client(app: std::net::SocketAddr, id: usize, stop: Arc<AtomicBool>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut conn = KeepAlive::new(app);
    let mut worker: Option<u32> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        for path in [
            "/pid".to_owned(),
            format!("/cache/set?ns=chaos&persist=true&key=c{id}-{n}&value=v{n}"),
        ] {
            let started = Instant::now();
            let result = conn.get(&path).map(|r| (r.status, r.body));
            let ended = Instant::now();
            if let (Ok((200, body)), true) = (&result, path == "/pid") {
                worker = body.parse().ok();
            }
            let failed = result.is_err();
            outcomes.push(Outcome {
                path,
                worker,
                started,
                ended,
                result: result.map_err(|e| e.to_string()),
            });
            if failed {
                worker = None;
                break;
            }
        }
    }
    outcomes
}

fn serving(monitor: std::net::SocketAddr) -> Vec<(u64, u32)> {
    listening(monitor)
        .into_iter()
        .filter(|(_, _, served)| *served)
        .map(|(id, pid, _)| (id, pid))
        .collect()
}

/// The listening workers, and whether each has answered a request (by its heartbeats).
fn listening(monitor: std::net::SocketAddr) -> Vec<(u64, u32, bool)> {
    let all: Value = serde_json::from_str(&get(monitor, "/workers").unwrap().body).unwrap();
    all["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == "listening")
        .map(|w| {
            (
                w["worker"].as_u64().unwrap(),
                w["pid"].as_u64().unwrap() as u32,
                w["heartbeat"]["requests_total"].as_u64().unwrap_or(0) > 0,
            )
        })
        .collect()
}

#[test]
fn random_kills_under_load_lose_nothing_but_what_the_killed_had_in_flight() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
    let mut dice = Dice(seed);

    let dir = TempPath::new("chaos-persist");
    let persist = format!("--cache.persist-path={}", dir.as_str());
    let mut cluster = Cluster::start(
        APP,
        &[
            &format!("--workers={WORKERS}"),
            &persist,
            "--heartbeat-interval=100ms",
        ],
        &[],
    );
    let mut events: Events = cluster.events();
    let mut manager = events.wait("cache_manager_up", |e| e["pid"].is_u64())["pid"]
        .as_u64()
        .unwrap() as u32;
    let mut every_pid: Vec<u32> = cluster.workers.clone();
    every_pid.push(manager);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let stop = stop.clone();
            let app = cluster.app;
            std::thread::spawn(move || client(app, id, stop))
        })
        .collect();

    // (pid, when) of every kill.
    let killed: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let mut recoveries = Vec::new();
    for round in 0..KILLS {
        // Let the load run on the whole cluster for a moment.
        std::thread::sleep(Duration::from_millis(150));
        if round % 4 == 3 {
            let at = Instant::now();
            kill(Pid::from_raw(manager as i32), Signal::SIGKILL).unwrap();
            killed.lock().unwrap().push((manager, at));
            let down = events.wait("cache_manager_down", |e| e["pid"] == manager);
            assert_eq!(
                down["restart_in_secs"].as_f64(),
                Some(0.0),
                "a cache manager that served is restarted at once: {down}"
            );
            let up = events.wait("cache_manager_up", |e| e["pid"].is_u64());
            manager = up["pid"].as_u64().unwrap() as u32;
            every_pid.push(manager);
            recoveries.push(("cache manager", at.elapsed()));
        } else {
            // The victim is a worker that has served (one killed before it served is a crash
            // loop, rightly backed off): a fresh connection goes to the emptiest worker, the
            // newest, so a few make every worker serve.
            let mut now = serving(cluster.monitor);
            while now.len() < WORKERS {
                let _ = get(cluster.app, "/pid");
                std::thread::sleep(Duration::from_millis(20));
                now = serving(cluster.monitor);
            }
            let (id, victim) = now[dice.next(now.len())];
            let at = Instant::now();
            kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
            killed.lock().unwrap().push((victim, at));
            let scheduled = events.wait("restart_scheduled", |e| e["worker"] == id);
            assert_eq!(
                scheduled["delay_secs"].as_f64(),
                Some(0.0),
                "a worker that served is replaced at once: {scheduled}"
            );
            let back = events.wait("listening", |e| e["worker"] == id && e["pid"] != victim);
            every_pid.push(back["pid"].as_u64().unwrap() as u32);
            recoveries.push(("worker", at.elapsed()));
        }
        assert_eq!(
            listening(cluster.monitor).len(),
            WORKERS,
            "back to {WORKERS} workers"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread"))
        .collect();
    println!("recovered after each kill (kill → serving again): {recoveries:?}");

    // Every failure is a request the killed processes had in flight.
    let kills = killed.lock().unwrap().clone();
    let worker_killed_before = |pid: Option<u32>, ended: Instant| {
        kills.iter().any(|&(k, at)| Some(k) == pid && at <= ended)
    };
    let manager_killed_during = |started: Instant, ended: Instant| {
        kills.iter().any(|&(_, at)| started <= at && at <= ended)
    };
    let mut ok = 0;
    for o in &outcomes {
        match &o.result {
            Ok((status, _)) if (200..300).contains(status) => ok += 1,
            Err(_) if worker_killed_before(o.worker, o.ended) => {}
            Ok((_, body))
                if o.path.starts_with("/cache/set")
                    && manager_killed_during(o.started, o.ended)
                    && body.contains("may or may not have been applied") => {}
            _ => panic!("a request failed that no kill explains: {o:#?}"),
        }
    }
    assert!(ok > 100, "the load ran: {ok} requests answered");

    // Every acknowledged write is there.
    let acknowledged: Vec<(&str, &str)> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            Ok((200, body)) if o.path.starts_with("/cache/set") => {
                let key = o.path.split("key=").nth(1)?.split('&').next()?;
                Some((key, body.as_str()))
            }
            _ => None,
        })
        .collect();
    assert!(!acknowledged.is_empty());
    let mut reader = KeepAlive::new(cluster.app);
    for (key, value) in &acknowledged {
        let answer = reader
            .get(&format!("/cache/peek?ns=chaos&persist=true&key={key}"))
            .unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, *value),
            "acknowledged write of {key} lost"
        );
    }

    // Stopped, nothing of it is left.
    cluster.proc.signal(Signal::SIGTERM);
    cluster.proc.wait_exit();
    assert!(
        eventually(SOON, || every_pid.iter().all(|&p| !alive(p))),
        "left behind: {:?}",
        every_pid.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
}
