//! The request duration histograms with buckets set by `metrics.buckets`: read by the
//! reference OpenMetrics parser (Prometheus's Python client), their count is the requests sent
//! and their buckets are the ones asked for, for the cluster and per worker; bounds that make
//! no histogram are refused at start, naming what is wrong.

use cluster2_tests::{Cluster, KeepAlive, Proc, SOON, eventually, get};
use serde_json::Value;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// The histogram samples of `/metrics` as the reference parser reads them: for each sample of
/// a histogram family, its name, labels and value.
fn histograms(text: &str) -> Vec<Value> {
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        out = []\n\
        for family in parse(sys.stdin.read()):\n\
        \x20   if family.type == 'histogram':\n\
        \x20       for s in family.samples:\n\
        \x20           out.append({'family': family.name, 'name': s.name, 'labels': s.labels, 'value': s.value})\n\
        print(json.dumps(out))";
    let out = cluster2_tests::run_reference_parser(SCRIPT, text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {stderr}\n{text}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn custom_buckets_count_every_request_for_the_cluster_and_each_worker() {
    let bounds = ["0.00005", "0.002", "0.5", "3"];
    let cluster = Cluster::start(
        APP,
        &[
            "--workers=2",
            "--heartbeat-interval=100ms",
            &format!("--metrics.buckets={}", bounds.join(",")),
        ],
        &[],
    );
    const K: u64 = 40;
    let mut keep = KeepAlive::new(cluster.app);
    for _ in 0..K / 2 {
        assert_eq!(keep.get("/").unwrap().status, 200);
    }
    for _ in 0..K / 2 {
        assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    }
    let metrics = || get(cluster.monitor, "/metrics").unwrap().body;
    let samples = |text: &str, name: &str| -> Vec<Value> {
        histograms(text)
            .into_iter()
            .filter(|s| s["name"] == name)
            .collect()
    };
    // The heartbeats bring the counts in.
    assert!(eventually(SOON, || {
        samples(&metrics(), "cluster2_request_duration_seconds_count")
            .first()
            .is_some_and(|s| s["value"] == K as f64)
    }));
    let text = metrics();

    // The cluster's histogram: the buckets asked for and +Inf, cumulative, ending at the count.
    let buckets = samples(&text, "cluster2_request_duration_seconds_bucket");
    let les: Vec<&str> = buckets
        .iter()
        .map(|s| s["labels"]["le"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = bounds
        .iter()
        .map(|b| b.parse::<f64>().unwrap().to_string())
        .chain(["+Inf".to_owned()])
        .collect();
    let les_as_numbers: Vec<String> = les
        .iter()
        .map(|le| match *le {
            "+Inf" => "+Inf".to_owned(),
            le => le.parse::<f64>().unwrap().to_string(),
        })
        .collect();
    assert_eq!(les_as_numbers, expected, "{text}");
    let counts: Vec<f64> = buckets
        .iter()
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(*counts.last().unwrap(), K as f64);

    // Per worker: the same buckets, and the counts add up to the cluster's.
    let per_worker = samples(&text, "cluster2_worker_request_duration_seconds_count");
    assert_eq!(per_worker.len(), 2, "{text}");
    let sum: f64 = per_worker
        .iter()
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert_eq!(sum, K as f64);
    let worker_buckets = samples(&text, "cluster2_worker_request_duration_seconds_bucket");
    assert_eq!(worker_buckets.len(), 2 * (bounds.len() + 1), "{text}");
}

#[test]
fn bounds_that_make_no_histogram_are_refused_naming_the_mistake() {
    let cases = [
        ("0.1,0.05", "`0.05` is not above `0.1`"),
        ("0.1,0.1", "strictly increasing"),
        ("5ms,10ms", "`5ms` is not a number of seconds"),
        ("0,1", "`0` is out of range"),
        ("-1", "out of range"),
        ("0.1,,0.2", "is not a number of seconds"),
        ("inf", "`inf` is not a number of seconds"),
        ("", "no bucket bound"),
    ];
    for (value, says) in cases {
        let arg = format!("--metrics.buckets={value}");
        let mut proc = Proc::spawn(APP, &["--port=0", "--mon-port=0", &arg], &[]);
        assert_eq!(proc.wait_exit().code(), Some(2), "{arg}: {:#?}", proc.log);
        let log = proc.log.join("\n");
        assert!(
            log.contains("metrics.buckets") && log.contains(says),
            "{arg}: {log}"
        );
    }
    let many: Vec<String> = (1..=33).map(|i| format!("0.{i:02}")).collect();
    let arg = format!("--metrics.buckets={}", many.join(","));
    let mut proc = Proc::spawn(APP, &["--port=0", "--mon-port=0", &arg], &[]);
    assert_eq!(proc.wait_exit().code(), Some(2));
    let log = proc.log.join("\n");
    assert!(log.contains("33 bounds, at most 32"), "{log}");
}
