//! `layer`: what cluster2's request-counting layer (`CountLayer`, in front of every app) costs
//! per request, measured in process on an axum Router with and without it, and what that is
//! as a share of `hello`'s throughput on this machine.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use tower::{Layer, ServiceExt};

use crate::cli::Config;
use crate::http::parse_wrk;
use crate::proc::Proc;
use crate::report::met;
use crate::servers::Bins;
use crate::stats::median;

const TARGET_SHARE: f64 = 0.02;
const CALLS: u32 = 500_000;

fn router() -> axum::Router {
    axum::Router::new().route("/", get(|| async { "hello world" }))
}

async fn ns_per_call<S>(service: S) -> f64
where
    S: tower::Service<http::Request<Body>, Error = std::convert::Infallible> + Clone,
{
    let start = Instant::now();
    for _ in 0..CALLS {
        let request = http::Request::get("/")
            .body(Body::empty())
            .expect("request");
        let _ = service.clone().oneshot(request).await;
    }
    start.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

/// `hello_rps`: hello's requests per second on this machine (from the http section, or a
/// short wrk run); the layer's share of the CPU the machine spent on them.
pub(crate) async fn run(config: &Config, bins: &Bins, hello_rps: f64) -> Result<String, String> {
    let hello_rps = if hello_rps > 0.0 {
        hello_rps
    } else {
        measure_hello(config, bins).await?
    };
    let (mut plain, mut counted) = (Vec::new(), Vec::new());
    for _ in 0..config.rounds.max(1) * 3 {
        plain.push(ns_per_call(router()).await);
        counted.push(ns_per_call(cluster2::__bench::CountLayer::new().layer(router())).await);
    }
    let (p, c) = (median(&plain), median(&counted));
    let extra = (c - p).max(0.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // The machine's CPU time per hello request, at hello's throughput with every CPU busy.
    let per_request_ns = cpus * 1e9 / hello_rps;
    let share = extra / per_request_ns;
    Ok(format!(
        "## Cost of the request-counting layer\n\n\
         `cluster2-bench layer`: {CALLS} calls of an axum Router answering `hello world`, in \
         process, without and with `CountLayer` (counts, timings, 5xx, panic → 500); medians of \
         {} runs each.\n\n\
         | router alone | router + CountLayer | added per request | hello's CPU per request ({cpus} CPUs at {hello_rps:.0} req/s) | share | target | met |\n\
         |---|---|---|---|---|---|---|\n\
         | {p:.0} ns | {c:.0} ns | {extra:.0} ns | {per_request_ns:.0} ns | {:.2} % | ≤ {:.0} % | {} |\n",
        plain.len(),
        share * 100.0,
        TARGET_SHARE * 100.0,
        met(share <= TARGET_SHARE)
    ))
}

/// hello's throughput with 2 workers: one short wrk run.
async fn measure_hello(config: &Config, bins: &Bins) -> Result<f64, String> {
    let running = bins.hello(2, &[]).start(config.timeout).await?;
    let out = Proc::spawn(
        "wrk",
        &config.wrk,
        &[
            format!("-t{}", config.wrk_threads),
            format!("-c{}", config.connections),
            "-d5s".to_owned(),
            "--latency".to_owned(),
            format!("http://127.0.0.1:{}/", running.ready.port),
        ],
    )?
    .output(Duration::from_secs(30))
    .await?;
    running.proc.stop(config.timeout).await?;
    parse_wrk(&out)
        .map(|w| w.requests_per_sec)
        .ok_or_else(|| format!("cannot read wrk's report:\n{out}"))
}
