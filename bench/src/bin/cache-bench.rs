//! A one-worker cluster whose worker measures the shared cache over the real transport (a
//! Unix socket to the standalone manager process) and prints one JSON line on stdout; then it
//! stops the cluster. Run by `cluster2-bench cache`, beside `redis-benchmark`.
//!
//! The first argument after `--` sets each phase's duration in seconds (default 3). With
//! `count N` instead, it does exactly N gets then N sets from one client and prints how many:
//! for counting instructions per operation under callgrind (see BENCHMARKS.md).
//!
//! With `bounded` among the arguments, the namespace is held to `BOUND` entries and filled to
//! it before anything is measured: every set of a new key then evicts one (`cluster2-bench
//! cache-evict` compares it with the unbounded namespace).
//!
//! Run by `cluster2-bench redis` with `--cache.backend` set to a Redis URL:
//! - `-- gets SECS`: only gets of an existing key, from 1 then 16 concurrent callers, then 16
//!   callers each on a key of its own.
//! - `-- flight GO RUN`: single flight under load. Every worker (of every cluster started so)
//!   prints `{"waiting":PID}`, waits for the file `GO` to exist, then runs 16 concurrent
//!   callers over the same 1,000 missing keys of namespace `flight-RUN` (each caller starting
//!   at another key), each get's loader counting the loads it ran; it prints its counts and
//!   keeps serving until the benchmark stops the cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use cluster2::cache::{self, Cache, CacheOptions, SetOptions};

#[path = "../ticks.rs"]
mod ticks;

/// The cache manager: the master's other child.
fn manager_pid() -> Option<i32> {
    let me = std::process::id() as i32;
    let master = nix::unistd::getppid().as_raw();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| pid != me && ticks::parent_of(pid) == Some(master))
}

/// CPU seconds the manager has used so far.
fn manager_cpu(manager: Option<i32>) -> f64 {
    manager.map_or(f64::NAN, |pid| {
        ticks::process_ticks(&[pid]) as f64 / ticks::TICKS_PER_SEC
    })
}

/// The bounded namespace's entries: as many as the unbounded one holds after a few seconds of
/// sets, so that both maps are of a size.
const BOUND: u64 = 20_000;

#[cluster2::configure_app]
fn app() -> Router {
    Router::new()
}

/// Operations per second and the median latency, for `clients` concurrent tasks.
async fn measure<F, Fut>(cache: &Cache, clients: usize, secs: f64, op: F) -> (f64, f64)
where
    F: Fn(Cache, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = cluster2::Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (cache, stop, done, op) = (cache.clone(), stop.clone(), done.clone(), op.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut i = (c as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    op(cache.clone(), i).await.expect("cache operation");
                    latencies.push(t.elapsed().as_nanos() as u64);
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let p50 = all.get(all.len() / 2).copied().unwrap_or(0) as f64 / 1000.0;
    (done.load(Ordering::Relaxed) as f64 / elapsed, p50)
}

/// Gets of one existing small value only: 1 caller, then 16.
async fn gets_only(secs: f64) -> Result<(), String> {
    let bench = cache::use_cache("bench", CacheOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    bench
        .set("key", &"xyz", SetOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let get = |c: Cache, _: u64| async move {
        c.get::<String, _, _, String>("key", || async { Err("never loads".to_owned()) })
            .await
            .map(drop)
    };
    // The same, each of the 16 callers on a key of its own: no two callers share a read, so
    // this is the client's multiplexing alone, without the per-process coalescing.
    for c in 0..16u64 {
        bench
            .set(&format!("key{c}"), &"xyz", SetOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    let get_own = |c: Cache, i: u64| async move {
        c.get::<String, _, _, String>(&format!("key{}", i >> 32), || async {
            Err("never loads".to_owned())
        })
        .await
        .map(drop)
    };
    measure(&bench, 1, 0.3, get).await;
    let (get1, get1_p50) = measure(&bench, 1, secs, get).await;
    let (get16, get16_p50) = measure(&bench, 16, secs, get).await;
    let (get16_own, _) = measure(&bench, 16, secs, get_own).await;
    println!(
        "{{\"get1\":{get1:.0},\"get1_p50_us\":{get1_p50:.1},\"get16\":{get16:.0},\"get16_p50_us\":{get16_p50:.1},\"get16_own_keys\":{get16_own:.0}}}"
    );
    stop_cluster();
    Ok(())
}

/// Single flight under load: 16 callers over 1,000 missing keys, from this worker.
async fn flight(go: String, run: String) -> Result<(), String> {
    const KEYS: u64 = 1000;
    const CALLERS: u64 = 16;
    let ns = cache::use_cache(&format!("flight-{run}"), CacheOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    println!("{{\"waiting\":{}}}", std::process::id());
    while !std::path::Path::new(&go).exists() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let loads = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (ns, loads) = (ns.clone(), loads.clone());
            tokio::spawn(async move {
                let mut errors = 0u64;
                for i in 0..KEYS {
                    let key = format!("k{}", (i + c * (KEYS / CALLERS)) % KEYS);
                    let loads = loads.clone();
                    let got = ns
                        .get(&key, || async move {
                            loads.fetch_add(1, Ordering::Relaxed);
                            // A loader takes a moment, as a database query would.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            Ok::<_, String>(i)
                        })
                        .await;
                    if got.is_err() {
                        errors += 1;
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for caller in callers {
        errors += caller.await.unwrap_or(KEYS);
    }
    println!(
        "{{\"flight_loads\":{},\"flight_gets\":{},\"flight_errors\":{errors},\"flight_secs\":{:.3},\"pid\":{}}}",
        loads.load(Ordering::Relaxed),
        KEYS * CALLERS,
        started.elapsed().as_secs_f64(),
        std::process::id()
    );
    Ok(())
}

#[cluster2::main(workers = 1, port = 0, mon_port = 0)]
async fn main(started: cluster2::Started) -> Result<(), String> {
    if started.role() == cluster2::Role::Master {
        return Ok(());
    }
    let args = started.args();
    match args.first().map(String::as_str) {
        Some("gets") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
            return gets_only(secs).await;
        }
        Some("flight") => {
            let (Some(go), Some(run)) = (args.get(1), args.get(2)) else {
                return Err("usage: -- flight GO RUN".to_owned());
            };
            return flight(go.clone(), run.clone()).await;
        }
        _ => {}
    }
    let count: Option<u64> = match args.first().map(String::as_str) {
        Some("count") => Some(
            args.get(1)
                .and_then(|n| n.parse().ok())
                .ok_or("usage: -- count N")?,
        ),
        _ => None,
    };
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let bounded = args.iter().any(|a| a == "bounded");
    let options = CacheOptions {
        max_entries: bounded.then_some(BOUND),
        ..CacheOptions::default()
    };
    let ns = if bounded { "bench-bounded" } else { "bench" };
    let bench = cache::use_cache(ns, options)
        .await
        .map_err(|e| e.to_string())?;
    if bounded {
        // At the bound before the first measured set, with keys the sets do not write.
        for i in 0..BOUND {
            bench
                .set(&format!("fill:{i}"), &"xyz", SetOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // The same 3-byte value as redis-benchmark's default. Written again before each phase of
    // gets: in the bounded namespace a phase of sets may have evicted it.
    let prime = || async {
        bench
            .set("key", &"xyz", SetOptions::default())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    prime().await?;
    let get = |c: Cache, _: u64| async move {
        c.get::<String, _, _, String>("key", || async { Err("never loads".to_owned()) })
            .await
            .map(drop)
    };
    let set = |c: Cache, i: u64| async move {
        c.set(
            &format!("key:{}", i % 100_000),
            &"xyz",
            SetOptions::default(),
        )
        .await
        .map(drop)
    };
    if let Some(n) = count {
        for i in 0..n {
            get(bench.clone(), i).await.map_err(|e| e.to_string())?;
        }
        for i in 0..n {
            set(bench.clone(), i).await.map_err(|e| e.to_string())?;
        }
        println!("{{\"gets\":{n},\"sets\":{n}}}");
        stop_cluster();
        return Ok(());
    }
    // A short warm-up, so that the first phase does not pay for connections.
    measure(&bench, 1, 0.3, get).await;
    prime().await?;
    let manager = manager_pid();
    let cpu_before = manager_cpu(manager);
    let (get1, get1_p50) = measure(&bench, 1, secs, get).await;
    let (set1, set1_p50) = measure(&bench, 1, secs, set).await;
    // What the manager spends per operation with one client, its wait before sleeping included.
    let mgr1_cpu_us = (manager_cpu(manager) - cpu_before) * 1e6 / ((get1 + set1) * secs);
    // The same at a gentle pace (a get every millisecond), where waiting cannot pay off.
    prime().await?;
    let cpu_before = manager_cpu(manager);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut paced_ops = 0u64;
    let paced_until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < paced_until {
        tick.tick().await;
        get(bench.clone(), 0).await.map_err(|e| e.to_string())?;
        paced_ops += 1;
    }
    let paced_cpu_us = (manager_cpu(manager) - cpu_before) * 1e6 / paced_ops as f64;
    prime().await?;
    let (get16, get16_p50) = measure(&bench, 16, secs, get).await;
    let (set16, set16_p50) = measure(&bench, 16, secs, set).await;
    // Proof that the bounded runs evicted (and the others did not).
    let evictions = cache::manager_stats()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|n| n.namespace == ns)
        .map_or(0, |n| n.evictions);
    println!(
        "{{\"evictions\":{evictions},\"get1\":{get1:.0},\"get1_p50_us\":{get1_p50:.1},\"set1\":{set1:.0},\"set1_p50_us\":{set1_p50:.1},\
         \"mgr1_cpu_us\":{mgr1_cpu_us:.1},\"paced_cpu_us\":{paced_cpu_us:.1},\"get16\":{get16:.0},\"get16_p50_us\":{get16_p50:.1},\"set16\":{set16:.0},\"set16_p50_us\":{set16_p50:.1}}}"
    );
    stop_cluster();
    Ok(())
}

/// Done: asks the master to stop the cluster.
fn stop_cluster() {
    let master = nix::unistd::getppid();
    let _ = nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGTERM);
}
