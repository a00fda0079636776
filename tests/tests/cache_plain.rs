//! The cache with a manager inside this test process (`cache::enable`), over its real Unix
//! socket. One test function: the cache client is process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster2::ErrorKind;
use cluster2::cache::{self, CacheOptions, SetOptions};

/// Waits for `cond`, checking whenever the cache delivered something.
async fn until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition not met within 10s");
}

/// A signal a loader sends when it starts, which proves its process holds the key's lock.
fn started() -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    tokio::sync::oneshot::channel()
}

/// Reads that waited for a loader, as the manager counts them for `namespace`.
async fn lock_waits(namespace: &str) -> u64 {
    cache::manager_stats()
        .await
        .unwrap()
        .iter()
        .find(|ns| ns.namespace == namespace)
        .map_or(0, |ns| ns.lock_waits)
}

/// Waits until the manager counted `n` lock waits in `namespace`.
async fn until_lock_waits(namespace: &str, n: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while lock_waits(namespace).await < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the manager never counted {n} lock waits in {namespace}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_in_a_plain_process() {
    let persist = cluster2_tests::TempPath::new("cache-plain");
    // A socket in a directory this test removes: the private directory a plain process gets
    // by default would outlive it (a later cluster sweeps it, but the suite leaves none).
    let run = cluster2_tests::TempPath::new("cache-plain-run");
    let mut config = cache::Config {
        persist_path: persist.path().to_owned(),
        max_value: 64 * 1024,
        timeout: Duration::from_secs(3),
        ..Default::default()
    };
    config.socket = Some(run.path().join("cache.sock"));
    cache::enable(config.clone()).await.unwrap();
    assert_eq!(
        cache::enable(config).await.unwrap_err().kind(),
        ErrorKind::Config
    );

    // The original's scenario: a miss, watchers on the key and on all keys, get after set,
    // and the counters.
    let c = cache::use_cache("acid", CacheOptions::default())
        .await
        .unwrap();
    assert_eq!(c.peek::<String>("key").await.unwrap(), None);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let on_key = c.watch(Some("key"), move |k: &str, v: Option<String>| {
        s.lock().unwrap().push(format!("key:{k}={v:?}"))
    });
    let s = seen.clone();
    c.watch(None, move |k: &str, v: Option<String>| {
        s.lock().unwrap().push(format!("all:{k}={v:?}"))
    });
    assert!(c.set("key", &"value", SetOptions::default()).await.unwrap());
    assert_eq!(
        c.peek::<String>("key").await.unwrap().as_deref(),
        Some("value")
    );
    until(|| seen.lock().unwrap().len() == 2).await;
    assert_eq!(
        *seen.lock().unwrap(),
        ["key:key=Some(\"value\")", "all:key=Some(\"value\")"]
    );
    let stats = c.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.loads, stats.errors),
        (1, 1, 0, 0)
    );
    assert!(c.unwatch(on_key));
    assert!(!c.unwatch(on_key));

    // use_cache options, get with a loader, keys.
    let users = cache::use_cache(
        "users",
        CacheOptions {
            persist: true,
            expire: Some(Duration::from_secs(3)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(users.options().persist);
    assert_eq!(users.peek::<String>("key").await.unwrap(), None);
    let v: String = users
        .get("key", || async { Ok::<_, String>("value".to_owned()) })
        .await
        .unwrap();
    assert_eq!(v, "value");
    assert_eq!(users.keys().await.unwrap(), ["key"]);
    let stats = users.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.loads, stats.errors),
        (0, 2, 1, 0)
    );
    // The first use decides the options.
    let again = cache::use_cache("users", CacheOptions::default())
        .await
        .unwrap();
    assert!(again.options().persist);

    // Falsy values come back as stored; a missing key is not a stored null.
    let f = cache::use_cache("falsy", CacheOptions::default())
        .await
        .unwrap();
    f.set("zero", &0, SetOptions::default()).await.unwrap();
    f.set("false", &false, SetOptions::default()).await.unwrap();
    f.set("empty", &"", SetOptions::default()).await.unwrap();
    f.set("null", &Option::<u32>::None, SetOptions::default())
        .await
        .unwrap();
    assert_eq!(f.peek::<i32>("zero").await.unwrap(), Some(0));
    assert_eq!(f.peek::<bool>("false").await.unwrap(), Some(false));
    assert_eq!(
        f.peek::<String>("empty").await.unwrap().as_deref(),
        Some("")
    );
    assert_eq!(f.peek::<Option<u32>>("null").await.unwrap(), Some(None));
    assert_eq!(f.peek::<Option<u32>>("missing").await.unwrap(), None);
    // A loader that stores a falsy value is not run again.
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let r = runs.clone();
        let v: i32 = f
            .get("loaded-zero", || async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(0)
            })
            .await
            .unwrap();
        assert_eq!(v, 0);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A value of the wrong type is an error, not a wrong value.
    let err = f.peek::<u64>("empty").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);

    // set with leave_if_not_null, del returning the old value.
    assert!(
        !f.set(
            "zero",
            &7,
            SetOptions {
                leave_if_not_null: true
            }
        )
        .await
        .unwrap()
    );
    assert_eq!(f.peek::<i32>("zero").await.unwrap(), Some(0));
    assert_eq!(f.del::<i32>("zero").await.unwrap(), Some(0));
    assert_eq!(f.del::<i32>("zero").await.unwrap(), None);
    assert!(
        f.set(
            "zero",
            &7,
            SetOptions {
                leave_if_not_null: true
            }
        )
        .await
        .unwrap()
    );

    // Single flight: 50 concurrent gets, one loader.
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (f, r) = (f.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            f.get("once", || async move {
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, String>("loaded".to_owned())
            })
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // A failing loader: its caller and the waiters get the error, the lock is released, and
    // the next get loads.
    let gate = Arc::new(tokio::sync::Notify::new());
    let (g, (loading, loader_runs)) = (gate.clone(), started());
    let f2 = f.clone();
    let failing = tokio::spawn(async move {
        f2.get::<String, _, _, _>("flaky", || async move {
            let _ = loading.send(());
            g.notified().await;
            Err("backend down")
        })
        .await
    });
    // The loader runs only once this process holds the key's lock.
    loader_runs.await.unwrap();
    let waits = lock_waits("falsy").await;
    let f3 = f.clone();
    let waiter = tokio::spawn(async move {
        f3.get("flaky", || async { Ok::<_, String>("never".to_owned()) })
            .await
    });
    // The manager counts the waiter once it queued it behind the lock.
    until_lock_waits("falsy", waits + 1).await;
    gate.notify_one();
    let err = failing.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Load);
    assert!(err.to_string().contains("backend down"), "{err}");
    let err = waiter.await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("backend down"),
        "the waiter gets the error: {err}"
    );
    let v: String = f
        .get("flaky", || async {
            Ok::<_, String>("recovered".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(v, "recovered");

    // A panicking loader is a failed load, not a poisoned key.
    let err = f
        .get::<String, _, _, String>("boom", || async { panic!("loader bug") })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(
        f.get("boom", || async { Ok::<_, String>(1) })
            .await
            .unwrap(),
        1
    );

    // A waiter that gives up gets a timeout, and nothing hangs.
    let f4 = f.clone();
    let (loading, loader_runs) = started();
    let slow = tokio::spawn(async move {
        f4.get("slow", || async move {
            let _ = loading.send(());
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok::<_, String>("slow value".to_owned())
        })
        .await
    });
    loader_runs.await.unwrap();
    let err = f
        .wait(Duration::from_millis(100))
        .get("slow", || async { Ok::<_, String>("other".to_owned()) })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(slow.await.unwrap().unwrap(), "slow value");

    // A loader that outlives its lease: the waiter takes over and loads.
    let short = f.wait(Duration::from_millis(200));
    let s1 = short.clone();
    let (loading, loader_runs) = started();
    let stuck = tokio::spawn(async move {
        s1.get("lease", || async move {
            let _ = loading.send(());
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, String>("too late".to_owned())
        })
        .await
    });
    loader_runs.await.unwrap();
    let taken: String = f
        .get("lease", || async {
            Ok::<_, String>("taken over".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(taken, "taken over");
    assert_eq!(stuck.await.unwrap().unwrap_err().kind(), ErrorKind::Timeout);

    // Expiry: never returned once expired, and watchers hear of it.
    let short_lived = cache::use_cache(
        "expiring",
        CacheOptions {
            persist: false,
            expire: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let expired = Arc::new(Mutex::new(Vec::new()));
    let e = expired.clone();
    short_lived.watch(Some("k"), move |_, v: Option<u32>| {
        e.lock().unwrap().push(v)
    });
    short_lived
        .set("k", &1u32, SetOptions::default())
        .await
        .unwrap();
    assert_eq!(short_lived.peek::<u32>("k").await.unwrap(), Some(1));
    until(|| expired.lock().unwrap().len() == 2).await;
    assert_eq!(*expired.lock().unwrap(), [Some(1), None]);
    assert_eq!(short_lived.peek::<u32>("k").await.unwrap(), None);
    assert!(short_lived.keys().await.unwrap().is_empty());

    // Limits and names.
    let big = "x".repeat(100 * 1024);
    let err = f.set("big", &big, SetOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("cache.max_value"), "{err}");
    // A key so long that the request would pass what the manager reads: refused before it is
    // sent, and the connection serves on.
    let long_key = "k".repeat(200 * 1024);
    let err = f.peek::<u32>(&long_key).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the cache manager accepts"),
        "{err}"
    );
    // The message names the key without repeating all of it.
    assert!(err.to_string().contains("(204800 bytes)"), "{err}");
    assert!(err.to_string().len() < 1024, "{err}");
    assert_eq!(f.peek::<i32>("zero").await.unwrap(), Some(7));
    for bad in [
        "",
        "../etc",
        "../../x",
        "/abs/path",
        ".hidden",
        "a/b",
        &"n".repeat(200),
    ] {
        let err = cache::use_cache(bad, CacheOptions::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid cache namespace"),
            "{bad}: {err}"
        );
    }

    // The manager's figures.
    let figures = cache::manager_stats().await.unwrap();
    let flaky = figures.iter().find(|n| n.namespace == "falsy").unwrap();
    assert!(
        flaky.loads >= 4 && flaky.errors >= 2 && flaky.lock_waits >= 49,
        "{flaky:?}"
    );
}
