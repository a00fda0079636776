//! A two-worker cluster measuring the emitter: round trips master → worker → master, one-way
//! throughput to a worker, and round trips worker → master → worker made from inside a request
//! handler. Prints one JSON line on stdout, then stops. Run by `cluster2-bench emitter`.
//!
//! Arguments after `--`: round trips (default 20000) and one-way messages (default 500000).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use cluster2::ErrorKind;
use cluster2::emitter::{self, Target};

static FLOOD: AtomicU64 = AtomicU64::new(0);
/// Where the worker's `wpong` listener hands the master's answers to the measuring handler.
static WPONGS: Mutex<Option<tokio::sync::mpsc::UnboundedSender<u64>>> = Mutex::new(None);

#[derive(serde::Deserialize)]
struct Trips {
    n: u64,
}

/// `GET /rtt?n=N`, in a worker: N round trips worker → master → worker (after 2000 to warm
/// up), one after the other; answers the p50 and p99 in µs as JSON.
async fn worker_round_trips(Query(Trips { n }): Query<Trips>) -> String {
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    *WPONGS.lock().unwrap() = Some(tx);
    let mut latencies = Vec::with_capacity(n as usize);
    for i in 0..(n + 2_000) {
        let t = Instant::now();
        if let Err(e) = emitter::emit_to(&[Target::Master], "wping", i) {
            return format!("{{\"error\":\"{e}\"}}");
        }
        match tokio::time::timeout(Duration::from_secs(5), answers.recv()).await {
            Ok(Some(got)) if got == i => {}
            other => return format!("{{\"error\":\"no wpong {i}: {other:?}\"}}"),
        }
        if i >= 2_000 {
            latencies.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    let (p50, p99) = percentiles(latencies);
    format!("{{\"p50\":{p50:.1},\"p99\":{p99:.1}}}")
}

fn percentiles(mut latencies: Vec<f64>) -> (f64, f64) {
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (pick(0.5), pick(0.99))
}

#[cluster2::configure_app]
fn app() -> Router {
    // The worker's side: answer pings, count the flood.
    emitter::on("ping", |ev| {
        let seq: u64 = ev.args()?;
        emitter::emit_to(&[Target::Master], "pong", seq)?;
        Ok(())
    });
    emitter::on("flood", |_| {
        FLOOD.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    emitter::on("flood-end", |_| {
        emitter::emit_to(
            &[Target::Master],
            "flood-count",
            FLOOD.load(Ordering::Relaxed),
        )?;
        Ok(())
    });
    emitter::on("wpong", |ev| {
        let seq: u64 = ev.args()?;
        if let Some(tx) = WPONGS.lock().unwrap().as_ref() {
            let _ = tx.send(seq);
        }
        Ok(())
    });
    Router::new().route("/rtt", get(worker_round_trips))
}

/// `GET path` on the cluster's own port, from the master; the body.
async fn get_body(addr: std::net::SocketAddr, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .ok_or_else(|| format!("no body in {response:?}"))
}

fn arg(started: &cluster2::Started, i: usize, default: u64) -> u64 {
    started
        .args()
        .get(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Emits, waiting while the worker's queue is full (the emitter's overflow policy is to refuse).
async fn emit_waiting(worker: u32, event: &str) -> cluster2::Result<()> {
    loop {
        match emitter::emit_to(&[Target::Pid(worker)], event, ()) {
            Err(e) if e.kind() == ErrorKind::Overflow => tokio::task::yield_now().await,
            other => return other,
        }
    }
}

#[cluster2::main(workers = 2, port = 0, mon_port = 0, cache(enable = false))]
async fn main(started: cluster2::Started) -> Result<(), String> {
    if started.role() != cluster2::Role::Master {
        return Ok(());
    }
    let worker = started.worker_pids()[0];
    let (pongs, mut pong) = tokio::sync::mpsc::unbounded_channel::<u64>();
    emitter::on("pong", move |ev| {
        let _ = pongs.send(ev.args()?);
        Ok(())
    });
    emitter::on("wping", |ev| {
        let seq: u64 = ev.args()?;
        emitter::emit_to(&[Target::Pid(ev.from())], "wpong", seq)?;
        Ok(())
    });
    let (counts, mut count) = tokio::sync::mpsc::unbounded_channel::<u64>();
    emitter::on("flood-count", move |ev| {
        let _ = counts.send(ev.args()?);
        Ok(())
    });

    let round_trips = arg(&started, 0, 20_000);
    let mut latencies = Vec::with_capacity(round_trips as usize);
    for i in 0..(round_trips + 2_000) {
        let t = Instant::now();
        emitter::emit_to(&[Target::Pid(worker)], "ping", i).map_err(|e| e.to_string())?;
        let got = tokio::time::timeout(Duration::from_secs(5), pong.recv())
            .await
            .map_err(|_| "no pong within 5s".to_owned())?;
        assert_eq!(got, Some(i), "pongs come back in order");
        // The first 2000 warm up the path.
        if i >= 2_000 {
            latencies.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    let (p50, p99) = percentiles(latencies);

    let messages = arg(&started, 1, 500_000);
    let t = Instant::now();
    for _ in 0..messages {
        emit_waiting(worker, "flood")
            .await
            .map_err(|e| e.to_string())?;
    }
    emit_waiting(worker, "flood-end")
        .await
        .map_err(|e| e.to_string())?;
    let delivered = tokio::time::timeout(Duration::from_secs(60), count.recv())
        .await
        .map_err(|_| "no count within 60s".to_owned())?
        .unwrap_or(0);
    let rate = delivered as f64 / t.elapsed().as_secs_f64();

    let from_worker = get_body(started.addr(), &format!("/rtt?n={round_trips}")).await?;
    let from_worker: serde_json::Value =
        serde_json::from_str(&from_worker).map_err(|e| format!("{e}: {from_worker}"))?;
    let (w50, w99) = (
        from_worker["p50"].as_f64().ok_or(from_worker.to_string())?,
        from_worker["p99"].as_f64().ok_or(from_worker.to_string())?,
    );
    println!(
        "{{\"rtt_p50_us\":{p50:.1},\"rtt_p99_us\":{p99:.1},\"one_way_per_sec\":{rate:.0},\"delivered\":{delivered},\"sent\":{messages},\"worker_rtt_p50_us\":{w50:.1},\"worker_rtt_p99_us\":{w99:.1}}}"
    );
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
    Ok(())
}
