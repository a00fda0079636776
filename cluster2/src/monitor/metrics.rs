//! `/metrics`: Prometheus (OpenMetrics) text built from the latest heartbeats. Cluster totals
//! add what exited workers had reported, so they never go backwards when a worker is replaced.
//!
//! Request latency is a histogram (`request_duration_seconds`, per worker and for the
//! cluster) whose buckets (`metrics.buckets`, the same for every worker of a cluster) the
//! workers count themselves ([`Heartbeat`]'s `request_duration_buckets`, a fixed size per
//! heartbeat): here they are only added up.
//!
//! [`Heartbeat`]: crate::Heartbeat

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::ecv::Ecv;
use crate::master::{Board, WorkerState};

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

/// What the workers alive now add to the totals.
#[derive(Default)]
struct Live {
    requests: u64,
    request_seconds: f64,
    request_buckets: Vec<u64>,
    errors: u64,
    panics: u64,
    access_log_dropped: u64,
}

/// A histogram whose observations were counted elsewhere: its bounds, the sum, and a count per
/// bucket plus one for the longer ones (not cumulative).
#[derive(Debug)]
struct Counted {
    bounds: Arc<[f64]>,
    counts: std::sync::Mutex<(f64, Vec<u64>)>,
}

impl Counted {
    fn new(bounds: Arc<[f64]>) -> Self {
        Self {
            bounds,
            counts: std::sync::Mutex::default(),
        }
    }

    fn set(&self, sum: f64, per_bucket: &[u64]) {
        *self.counts.lock().expect("metrics lock") = (sum, per_bucket.to_vec());
    }
}

impl TypedMetric for Counted {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Counted {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, per_bucket) = &*self.counts.lock().expect("metrics lock");
        // The encoder makes the buckets cumulative itself, as its own histograms keep them.
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(per_bucket.iter().copied().chain(std::iter::repeat(0)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(*sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn add_into(total: &mut Vec<u64>, more: &[u64]) {
    if total.len() < more.len() {
        total.resize(more.len(), 0);
    }
    for (t, n) in total.iter_mut().zip(more) {
        *t += n;
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) async fn render(board: Arc<Board>, ecv: Ecv, bounds: Arc<[f64]>) -> Response {
    let workers = board.snapshot().workers;
    let retired = board.totals();
    let mut registry = Registry::with_prefix("cluster2");

    let per_worker_gauge = |registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>| {
        let family = Family::<Labels, GaugeF>::default();
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
            None => registry.register(name, help, family.clone()),
        }
        family
    };
    let tps = per_worker_gauge(
        &mut registry,
        "worker_requests_per_second",
        "Requests per second over the last heartbeat interval",
        None,
    );
    let cpu = per_worker_gauge(
        &mut registry,
        "worker_cpu",
        "CPU used over the last heartbeat interval, percent of one core",
        Some(Unit::Other("percent".into())),
    );
    let memory = per_worker_gauge(
        &mut registry,
        "worker_memory",
        "Resident memory",
        Some(Unit::Bytes),
    );
    let open = per_worker_gauge(
        &mut registry,
        "worker_open_connections",
        "Connections open on the shared port",
        None,
    );
    let lag = per_worker_gauge(
        &mut registry,
        "worker_event_loop_lag",
        "Worst timer lateness over the last heartbeat interval",
        Some(Unit::Seconds),
    );
    let uptime = per_worker_gauge(
        &mut registry,
        "worker_uptime",
        "Time since the worker started",
        Some(Unit::Seconds),
    );
    let age = per_worker_gauge(
        &mut registry,
        "worker_heartbeat_age",
        "Time since the worker's last heartbeat",
        Some(Unit::Seconds),
    );

    let per_worker_counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, CounterF>::default();
        registry.register(name, help, family.clone());
        family
    };
    let requests = per_worker_counter(
        &mut registry,
        "worker_requests",
        "Requests answered by this worker",
    );
    let connections = per_worker_counter(
        &mut registry,
        "worker_connections",
        "Connections accepted by this worker",
    );
    let errors = per_worker_counter(&mut registry, "worker_errors", "5xx answers of this worker");
    let panics = per_worker_counter(
        &mut registry,
        "worker_panics",
        "Handler panics in this worker",
    );
    let access_dropped = per_worker_counter(
        &mut registry,
        "worker_access_log_dropped",
        "Access log lines this worker dropped because their file or pipe fell behind",
    );
    let restarts = per_worker_counter(
        &mut registry,
        "worker_restarts",
        "Restarts of this worker id after a crash",
    );

    let latency_bounds = bounds.clone();
    let latency = Family::<Labels, Counted, _>::new_with_constructor(move || {
        Counted::new(latency_bounds.clone())
    });
    registry.register_with_unit(
        "worker_request_duration",
        "Time to the response head of this worker's requests",
        Unit::Seconds,
        latency.clone(),
    );

    let state = Family::<Labels, Gauge>::default();
    registry.register("workers", "Worker processes by state", state.clone());
    let expected = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    expected.set(i64::try_from(board.expected()).unwrap_or(i64::MAX));
    registry.register(
        "workers_expected",
        "Workers the cluster runs: the workers option, changed by scaling",
        expected,
    );

    let mut live = Live::default();
    for w in &workers {
        let labels = vec![
            ("worker".to_owned(), w.id.to_string()),
            ("pid".to_owned(), w.pid.to_string()),
        ];
        uptime
            .get_or_create(&labels)
            .set(w.spawned_at.elapsed().as_secs_f64());
        restarts.get_or_create(&labels).inc_by(w.restarts as f64);
        errors.get_or_create(&labels).inc_by(w.errors as f64);
        panics.get_or_create(&labels).inc_by(w.panics as f64);
        live.errors += w.errors;
        live.panics += w.panics;
        if let Some((hb, at)) = &w.heartbeat {
            tps.get_or_create(&labels).set(hb.requests_per_second);
            cpu.get_or_create(&labels).set(hb.cpu_percent);
            memory.get_or_create(&labels).set(hb.memory_bytes as f64);
            open.get_or_create(&labels).set(hb.open_connections as f64);
            lag.get_or_create(&labels)
                .set(hb.event_loop_lag.as_secs_f64());
            age.get_or_create(&labels).set(at.elapsed().as_secs_f64());
            requests
                .get_or_create(&labels)
                .inc_by(hb.requests_total as f64);
            connections
                .get_or_create(&labels)
                .inc_by(hb.connections_total as f64);
            access_dropped
                .get_or_create(&labels)
                .inc_by(hb.access_log_dropped_total as f64);
            live.access_log_dropped += hb.access_log_dropped_total;
            live.requests += hb.requests_total;
            live.request_seconds += hb.request_duration_total.as_secs_f64();
            latency.get_or_create(&labels).set(
                hb.request_duration_total.as_secs_f64(),
                &hb.request_duration_buckets,
            );
            add_into(&mut live.request_buckets, &hb.request_duration_buckets);
        }
    }
    for s in WorkerState::ALL {
        let count = workers.iter().filter(|w| w.state == s).count();
        state
            .get_or_create(&vec![("state".to_owned(), s.name().to_owned())])
            .set(count as i64);
    }

    let total = |registry: &mut Registry, name: &str, help: &str, value: f64| {
        let counter = CounterF::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    };
    total(
        &mut registry,
        "requests",
        "Requests answered by the cluster, including by workers since replaced",
        (retired.requests + live.requests) as f64,
    );
    let cluster_latency = Counted::new(bounds);
    let mut buckets = retired.request_buckets.to_vec();
    add_into(&mut buckets, &live.request_buckets);
    cluster_latency.set(retired.request_seconds + live.request_seconds, &buckets);
    registry.register_with_unit(
        "request_duration",
        "Time to the response head of the cluster's requests, including by workers since replaced",
        Unit::Seconds,
        cluster_latency,
    );
    total(
        &mut registry,
        "errors",
        "5xx answers of the cluster",
        (retired.errors + live.errors) as f64,
    );
    total(
        &mut registry,
        "panics",
        "Handler panics in the cluster",
        (retired.panics + live.panics) as f64,
    );
    total(
        &mut registry,
        "access_log_dropped",
        "Access log lines the workers (and the master, the monitor's) dropped because their \
         file or pipe fell behind",
        (retired.access_log_dropped + live.access_log_dropped + crate::log::access::dropped())
            as f64,
    );
    total(
        &mut registry,
        "restarts",
        "Workers restarted after a crash",
        retired.restarts as f64,
    );
    total(
        &mut registry,
        "replacements",
        "Workers replaced through the death queue",
        retired.replacements as f64,
    );

    // Every lifecycle event by kind, from the master's journal: crashes are `exited` events
    // that the master did not expect, counted apart so that an alert needs no arithmetic.
    if let Some(journal) = crate::lifecycle::Journal::get() {
        let events = Family::<Labels, CounterF>::default();
        registry.register(
            "lifecycle_events",
            "Lifecycle events the master published, by kind (see GET /events)",
            events.clone(),
        );
        for (kind, count) in journal.counts() {
            events
                .get_or_create(&vec![("event".to_owned(), kind)])
                .inc_by(count as f64);
        }
    }
    total(
        &mut registry,
        "worker_crashes",
        "Worker exits the master did not ask for",
        retired.crashes as f64,
    );

    // The cache: whether its backend answers, and its figures when it answers quickly (with
    // Redis, the whole fleet's).
    let stats = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        crate::cache::manager_stats(),
    )
    .await;
    if let Some(backend) = crate::cache::backend_state() {
        let up = Family::<Labels, GaugeF>::default();
        registry.register(
            "cache_backend_up",
            "Whether the cache backend answers (1) or not (0), by backend (local or redis)",
            up.clone(),
        );
        let answered = matches!(stats, Ok(Ok(_))) && backend.connected.unwrap_or(true);
        up.get_or_create(&vec![("backend".to_owned(), backend.kind.to_owned())])
            .set(f64::from(u8::from(answered)));
    }
    if let Ok(Ok(all)) = stats {
        let gauges = [
            ("cache_entries", "Entries with a value, per cache namespace"),
            (
                "cache_bytes",
                "Bytes of keys and values, per cache namespace",
            ),
        ];
        let counters = [
            ("cache_hits", "Cache reads that found a value"),
            ("cache_misses", "Cache reads that found none"),
            ("cache_loads", "Values stored by a loader"),
            (
                "cache_lock_waits",
                "Reads that waited for another process's loader",
            ),
            ("cache_errors", "Cache loads that failed"),
            (
                "cache_evictions",
                "Cache entries evicted to keep within the namespace's bounds or cache.max_memory",
            ),
        ];
        let gauge_families: Vec<Family<Labels, GaugeF>> = gauges
            .iter()
            .map(|(name, help)| {
                let f = Family::<Labels, GaugeF>::default();
                registry.register(*name, *help, f.clone());
                f
            })
            .collect();
        let counter_families: Vec<Family<Labels, CounterF>> = counters
            .iter()
            .map(|(name, help)| {
                let f = Family::<Labels, CounterF>::default();
                registry.register(*name, *help, f.clone());
                f
            })
            .collect();
        for ns in all {
            let labels = vec![("namespace".to_owned(), ns.namespace.clone())];
            gauge_families[0]
                .get_or_create(&labels)
                .set(ns.entries as f64);
            gauge_families[1]
                .get_or_create(&labels)
                .set(ns.bytes as f64);
            for (family, value) in counter_families.iter().zip([
                ns.hits,
                ns.misses,
                ns.loads,
                ns.lock_waits,
                ns.errors,
                ns.evictions,
            ]) {
                family.get_or_create(&labels).inc_by(value as f64);
            }
        }
    }

    // What Traefik (`traefik_tls_certs_not_after`) and the blackbox exporter
    // (`probe_ssl_earliest_cert_expiry`) export: an alert is `… - time() < 14 * 86400`.
    if let Some(not_after) = board.tls_not_after() {
        let expiry = Gauge::<i64>::default();
        expiry.set(not_after);
        registry.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "When the application port's TLS certificate expires (its notAfter), in unix time",
            Unit::Seconds,
            expiry,
        );
    }

    // A scrape must not probe the application: in monitor mode this reports the cluster's own
    // conditions (starting, shutting down, no worker alive) only.
    let up = Gauge::<i64>::default();
    let marked = ecv.is_marked_up() || ecv.mode_is_monitor();
    up.set(i64::from(board.gate().is_none() && marked));
    registry.register(
        "ecv_up",
        "Whether the ECV lets traffic in (1) or not (0)",
        up,
    );

    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}
