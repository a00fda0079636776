//! The cache on Redis across hosts: two clusters on this machine stand for two hosts sharing
//! one real `redis-server` (started by each test on a private Unix socket) and one cluster
//! name. Single flight across both, concurrent gets in one process sharing one round trip,
//! failures, a loader killed mid-load, watches, expiry, falsy values, keys, namespace options,
//! the monitor's view, and Redis killed and restarted under load.

use std::collections::HashSet;
use std::net::SocketAddr;

use cluster2_tests::{Cluster, RedisServer, Response, SOON, TempPath, eventually, field, get};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// Two hosts of cluster `shop` on `redis`, two workers each.
fn hosts(redis: &RedisServer, extra: &[&str], envs: &[(&str, &str)]) -> (Cluster, Cluster) {
    let backend = format!("--cache.backend={}", redis.url());
    let mut args = vec!["--workers=2", "--cluster-name=shop", backend.as_str()];
    args.extend_from_slice(extra);
    let a = Cluster::start(APP, &args, envs);
    let b = Cluster::start(APP, &args, envs);
    (a, b)
}

/// Runs each `(host, path)` at once, each on its own connection; the answers in order.
fn concurrently(requests: Vec<(SocketAddr, String)>) -> Vec<Response> {
    let threads: Vec<_> = requests
        .into_iter()
        .map(|(addr, path)| std::thread::spawn(move || get(addr, &path).unwrap()))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Stops a cluster and returns every line it logged.
fn stop(mut cluster: Cluster) -> Vec<String> {
    cluster.proc.signal(Signal::SIGTERM);
    cluster.proc.wait_exit();
    cluster.proc.log.clone()
}

fn count(log: &[String], needle: &str) -> usize {
    log.iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_hundred_gets_over_two_hosts_load_once() {
    let redis = RedisServer::start("flight");
    let (a, b) = hosts(&redis, &[], &[]);
    // Which worker takes a connection is up to the kernel and the balance; waves with fresh
    // keys go on until one reached all four workers, and every wave must load its key once.
    let mut waves = 0;
    let spread = (0..8).any(|wave| {
        waves += 1;
        let path = format!("/cache/load?key=hot{wave}");
        let answers = concurrently(
            (0..100)
                .map(|i| (if i % 2 == 0 { a.app } else { b.app }, path.clone()))
                .collect(),
        );
        let values: HashSet<&str> = answers
            .iter()
            .map(|r| {
                assert_eq!(r.status, 200, "{r:?}");
                r.body.split(" for ").next().unwrap()
            })
            .collect();
        assert_eq!(values.len(), 1, "one value for hot{wave}: {values:?}");
        let served_by: HashSet<&str> = answers
            .iter()
            .map(|r| r.body.split(" for ").nth(1).unwrap())
            .collect();
        served_by.len() == 4
    });
    assert!(spread, "no wave of 100 gets reached the four workers");
    let (a_log, b_log) = (stop(a), stop(b));
    assert_eq!(
        count(&a_log, "loader ran") + count(&b_log, "loader ran"),
        waves,
        "one load per key over both hosts:\n{}\n{}",
        a_log.join("\n"),
        b_log.join("\n")
    );
}

/// Calls of `command` Redis has served so far (`INFO commandstats`).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info = redis.command(&["INFO", "commandstats"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn concurrent_gets_of_one_key_in_a_process_make_one_round_trip() {
    let redis = RedisServer::start("coalesce");
    // One runtime thread: the 50 gets are all asked before the connection's task, which reads
    // the answer, can run; with more threads a caller polled late may come after the answer,
    // and that is a get of its own, not a concurrent one.
    let backend = format!("--cache.backend={}", redis.url());
    let a = Cluster::start(
        APP,
        &[
            "--workers=1",
            "--threads=1",
            "--cluster-name=shop",
            &backend,
        ],
        &[],
    );
    // What Redis does for a burst of `n` gets of `key` (scripts' own reads count as GETs).
    let cost = |n: usize, key: &str| {
        let before = (calls(&redis, "get"), calls(&redis, "evalsha"));
        let burst = get(a.app, &format!("/cache/burst?key={key}&n={n}")).unwrap();
        assert_eq!(burst.status, 200, "{burst:?}");
        assert!(!burst.body.contains(','), "one value for all: {burst:?}");
        (
            calls(&redis, "get") - before.0,
            calls(&redis, "evalsha") - before.1,
        )
    };
    for key in ["warm-1", "warm-50"] {
        assert_eq!(
            get(a.app, &format!("/cache/set?key={key}&value=v"))
                .unwrap()
                .body,
            "v"
        );
    }
    // Redis learns each script on its first use, which costs a call more: use them all once.
    cost(1, "primer");
    // 50 gets at once of a stored value cost what one costs: one GET.
    let one = cost(1, "warm-1");
    assert_eq!(cost(50, "warm-50"), one);
    // 50 gets at once of a missing key cost what one costs: one GET, one lock, one fill.
    let one = cost(1, "cold-1");
    assert_eq!(cost(50, "cold-50"), one);
    let log = stop(a);
    assert_eq!(count(&log, "loader ran"), 3, "{}", log.join("\n"));
}

#[test]
fn a_failing_loaders_error_reaches_its_waiters_on_both_hosts() {
    let redis = RedisServer::start("failing");
    let (a, b) = hosts(&redis, &[], &[]);
    let answers = concurrently(
        (0..20)
            .map(|i| {
                (
                    if i % 2 == 0 { a.app } else { b.app },
                    "/cache/fail?key=down".to_owned(),
                )
            })
            .collect(),
    );
    for answer in &answers {
        assert_eq!(answer.status, 404, "{answer:?}");
        assert!(
            answer.body.contains("the loader failed: backend down in"),
            "the loader's error: {answer:?}"
        );
    }
    let (a_log, b_log) = (stop(a), stop(b));
    assert_eq!(
        count(&a_log, "failing loader ran") + count(&b_log, "failing loader ran"),
        1,
        "{}\n{}",
        a_log.join("\n"),
        b_log.join("\n")
    );
    // Nothing was stored: a failed load leaves the key unset.
    assert_eq!(
        redis.command(&["EXISTS", "shop:cache:cache-test:v:down"]),
        Some(":0\r\n".to_owned())
    );
}

#[test]
fn a_loader_killed_mid_load_is_taken_over_by_the_other_host_after_its_lease() {
    let redis = RedisServer::start("killed");
    let marker = TempPath::new("redis-loader-marker");
    let (mut a, b) = hosts(&redis, &[], &[]);
    // The loader's lease is its call's timeout: 3 s. The waiter waits longer (15 s).
    let first = {
        let app = a.app;
        let p = format!(
            "/cache/load?key=orphan&wait_ms=3000&marker={}",
            marker.as_str()
        );
        std::thread::spawn(move || get(app, &p))
    };
    let started = a.proc.wait_for("slow loader started");
    let loader: u32 = field(&started, "pid").unwrap().parse().unwrap();
    // The lock is in Redis, held by the loader.
    assert!(eventually(SOON, || {
        redis
            .command(&["EXISTS", "shop:cache:cache-test:lock:orphan"])
            .as_deref()
            == Some(":1\r\n")
    }));
    let waiter = {
        let app = b.app;
        let p = format!("/cache/load?key=orphan&marker={}", marker.as_str());
        std::thread::spawn(move || get(app, &p))
    };
    kill(Pid::from_raw(loader as i32), Signal::SIGKILL).unwrap();
    let answer = waiter.join().unwrap().expect("the waiter is answered");
    assert_eq!(answer.status, 200, "{answer:?}");
    let (value, served) = answer.body.split_once(" for ").unwrap();
    assert_eq!(
        value,
        format!("loaded by {served}"),
        "the waiting host loaded it itself"
    );
    assert!(b.workers.contains(&served.parse().unwrap()), "{answer:?}");
    assert!(
        first.join().unwrap().is_err(),
        "the killed worker's own request died with it"
    );
}

#[test]
fn watches_hear_sets_deletes_and_expiries_from_the_other_host() {
    let redis = RedisServer::start("watches");
    let (a, b) = hosts(
        &redis,
        &[],
        &[
            ("FIXTURE_CACHE_WATCH", "1"),
            ("FIXTURE_CACHE_WATCH_EXPIRE", "1500"),
        ],
    );
    let mut b = b;
    let set = get(a.app, "/cache/set?ns=watched&key=k1&value=v1").unwrap();
    assert_eq!(set.status, 200, "{set:?}");
    // Both workers of the other host hear it, then hear it expire.
    for _ in 0..2 {
        b.proc.wait_line("with the set", |l| {
            l.contains("watch fired") && l.contains("key=k1") && l.contains("Some(\"v1\")")
        });
    }
    for _ in 0..2 {
        b.proc.wait_line("with the expiry", |l| {
            l.contains("watch fired") && l.contains("key=k1") && l.contains("value=None")
        });
    }
    let set = get(a.app, "/cache/set?ns=watched&key=k2&value=v2").unwrap();
    assert_eq!(set.status, 200, "{set:?}");
    let del = get(a.app, "/cache/del?ns=watched&key=k2").unwrap();
    assert_eq!(del.body, "\"v2\"", "del answers the old value");
    for _ in 0..2 {
        b.proc.wait_line("with the delete", |l| {
            l.contains("watch fired") && l.contains("key=k2") && l.contains("value=None")
        });
    }
    // Each change reached each watcher once.
    let b_log = stop(b);
    drop(a);
    let fired = |key: &str, value: &str| {
        b_log
            .iter()
            .filter(|l| l.contains("watch fired") && l.contains(key) && l.contains(value))
            .count()
    };
    assert_eq!(fired("key=k1", "Some(\"v1\")"), 2, "{}", b_log.join("\n"));
    assert_eq!(fired("key=k2", "Some(\"v2\")"), 2, "{}", b_log.join("\n"));
}

#[test]
fn falsy_values_null_and_missing_keys_and_options_agree_across_hosts() {
    let redis = RedisServer::start("values");
    let (a, b) = hosts(&redis, &[], &[]);
    for (key, json) in [("f", "false"), ("z", "0"), ("e", "%22%22"), ("n", "null")] {
        let set = get(a.app, &format!("/cache/set-json?key={key}&json={json}")).unwrap();
        assert_eq!(set.body, "stored", "{set:?}");
    }
    for (key, shown) in [("f", "false"), ("z", "0"), ("e", "\"\""), ("n", "null")] {
        let peek = get(b.app, &format!("/cache/peek-json?key={key}")).unwrap();
        assert_eq!(peek.body, shown, "{key} as the other host reads it");
    }
    assert_eq!(
        get(b.app, "/cache/peek-json?key=absent").unwrap().body,
        "missing"
    );
    // leave_if_not_null keeps any value, a stored null included, atomically.
    assert_eq!(
        get(b.app, "/cache/set-json?key=n&json=1&leave=true")
            .unwrap()
            .body,
        "left"
    );
    assert_eq!(
        get(b.app, "/cache/set-json?key=fresh&json=1&leave=true")
            .unwrap()
            .body,
        "stored"
    );
    // del answers the old value, falsy or not, once.
    assert_eq!(get(b.app, "/cache/del?key=z").unwrap().body, "0");
    assert_eq!(get(a.app, "/cache/del?key=z").unwrap().body, "missing");
    // keys: every key with a value, from either host, by SCAN.
    for i in 0..30 {
        let set = get(
            b.app,
            &format!("/cache/set-json?ns=listed&key=k{i:02}&json={i}"),
        )
        .unwrap();
        assert_eq!(set.body, "stored");
    }
    let keys = get(a.app, "/cache/keys?ns=listed").unwrap().body;
    let expected: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected.join(","));
    // A namespace's options are decided by its first use on any host.
    let first = get(a.app, "/cache/use?ns=opts&expire_ms=60000").unwrap();
    assert_eq!(first.body, "persist=false expire_ms=60000");
    let second = get(b.app, "/cache/use?ns=opts&persist=true").unwrap();
    assert_eq!(second.body, "persist=false expire_ms=60000", "{second:?}");
    // ... and what the other host writes there expires as decided.
    assert_eq!(
        get(b.app, "/cache/set-json?ns=opts&key=t&json=1")
            .unwrap()
            .body,
        "stored"
    );
    let ttl = redis.command(&["PTTL", "shop:cache:opts:v:t"]).unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
    assert!((1..=60_000).contains(&ttl), "the value expires: PTTL {ttl}");
    // The monitor of either host shows the backend and the fleet's figures.
    let caches: serde_json::Value =
        serde_json::from_str(&get(b.monitor, "/caches").unwrap().body).unwrap();
    assert_eq!(caches["backend"], "redis", "{caches}");
    assert_eq!(caches["url"], redis.url(), "{caches}");
    assert_eq!(caches["connected"], true, "{caches}");
    let listed = caches["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "listed")
        .unwrap_or_else(|| panic!("{caches}"));
    assert_eq!(listed["entries"], 30, "{caches}");
    let opts = caches["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "opts")
        .unwrap();
    assert_eq!(opts["expire_secs"], 60.0, "{caches}");
}

#[test]
fn redis_killed_under_load_then_back_every_request_answers_and_all_works_again() {
    let mut redis = RedisServer::start("outage");
    let timeout = "--cache.timeout=2s";
    let (a, b) = hosts(&redis, &[timeout], &[("FIXTURE_CACHE_WATCH", "1")]);
    let mut b = b;
    let apps = [a.app, b.app];
    // Load: sets and gets from both hosts, on fresh connections, until told to stop.
    let stop_load = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|t| {
            let stop = stop_load.clone();
            let app = apps[t % 2];
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = if i % 2 == 0 {
                        format!("/cache/set?key=l{t}-{i}&value=v")
                    } else {
                        format!("/cache/get?key=g{}", i % 7)
                    };
                    answers.push((path.clone(), get(app, &path)));
                    i += 1;
                }
                answers
            })
        })
        .collect();
    // Some traffic before, during and after the outage.
    let served = |redis: &RedisServer, n: usize| {
        eventually(SOON, || {
            redis.command(&["DBSIZE"]).is_some_and(|r| {
                r.trim_start_matches(':')
                    .trim()
                    .parse::<usize>()
                    .is_ok_and(|size| size >= n)
            })
        })
    };
    assert!(served(&redis, 20), "the load reached Redis");
    redis.kill();
    // Every call fails with an error naming the backend while Redis is away.
    assert!(eventually(SOON, || {
        get(a.app, "/cache/get?key=during")
            .is_ok_and(|r| r.status == 404 && r.body.contains("Redis at"))
    }));
    redis.restart();
    assert!(served(&redis, 20), "the load reached Redis again");
    stop_load.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut errors = 0;
    for thread in load {
        // Every request was answered (the client gives up after `SOON`): nothing waited for
        // Redis to come back.
        for (path, answer) in thread.join().unwrap() {
            let answer = answer.unwrap_or_else(|e| panic!("{path}: no answer: {e}"));
            if answer.status != 200 {
                errors += 1;
                assert!(
                    answer.body.contains("Redis at") && answer.body.contains(&redis.url()),
                    "{path}: a clear error naming the backend: {answer:?}"
                );
            }
        }
    }
    assert!(errors > 0, "the outage was seen by the load");
    // Everything works again without restarting the clusters: values, single flight, and
    // watches, which fire once per change.
    for app in apps {
        assert_eq!(
            get(app, "/cache/set?key=after&value=back").unwrap().body,
            "back"
        );
    }
    let answers = concurrently(
        (0..20)
            .map(|i| (apps[i % 2], "/cache/load?key=after-flight".to_owned()))
            .collect(),
    );
    let values: HashSet<&str> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            r.body.split(" for ").next().unwrap()
        })
        .collect();
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(
        get(a.app, "/cache/set?ns=watched&key=again&value=yes")
            .unwrap()
            .status,
        200
    );
    for _ in 0..2 {
        b.proc.wait_line("with the set after the outage", |l| {
            l.contains("watch fired") && l.contains("key=again")
        });
    }
    let (a_log, b_log) = (stop(a), stop(b));
    assert_eq!(
        count(&a_log, "loader ran") + count(&b_log, "loader ran"),
        1,
        "one load of after-flight"
    );
    assert_eq!(
        count(&b_log, "key=again"),
        2,
        "each watcher of the other host heard the change once:\n{}",
        b_log.join("\n")
    );
}
