//! `https`: wrk throughput over TLS on loopback; cluster2's hello with `tls.cert`/`tls.key`
//! (2 workers) vs `bare-hyper --tls-cert --tls-key` (one process, rustls with ring, the same
//! stack), serving the same certificate, which this benchmark makes (rcgen, ECDSA P-256) in a
//! private directory and removes at the end. wrk keeps its connections alive, so the figure is
//! mostly the cost of encrypting records, with 64 handshakes at the start of each run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::Config;
use crate::http::{Measured, measure};
use crate::report::met;
use crate::retry::Disturbance;
use crate::servers::{Bins, Server};
use crate::stats::{max, median, min};

/// The target: hello over TLS at least as fast as bare hyper over TLS.
const TARGET_VS_BARE: f64 = 1.0;

/// The certificate and key files, removed when dropped.
struct Certificate {
    dir: std::path::PathBuf,
}

impl Certificate {
    fn make() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("cluster2-bench-https-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
        let certificate = Self { dir };
        std::fs::write(certificate.cert(), made.cert.pem())
            .and_then(|()| std::fs::write(certificate.key(), made.signing_key.serialize_pem()))
            .map_err(|e| format!("{}: {e}", certificate.dir.display()))?;
        Ok(certificate)
    }

    fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }

    fn key(&self) -> String {
        self.dir.join("key.pem").display().to_string()
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) async fn run(config: &Config, bins: &Bins) -> Result<String, String> {
    let certificate = Certificate::make()?;
    let cert = format!("--tls.cert={}", certificate.cert());
    let key = format!("--tls.key={}", certificate.key());
    let bare_cert = format!("--tls-cert={}", certificate.cert());
    let bare_key = format!("--tls-key={}", certificate.key());
    let mut hello = bins.hello(config.http_workers, &[&cert, &key]);
    hello.label = format!("cluster2 hello --workers={} (TLS)", config.http_workers);
    let mut bare = bins.bare_hyper(&[&bare_cert, &bare_key]);
    bare.label = "bare hyper + rustls (1 process)".to_owned();
    let servers: [Server; 2] =
        [hello, bare].map(|s| s.placed(config.server_cpus.as_deref(), config.wrk_cpus.as_deref()));
    let mut runs: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
    eprintln!(
        "https: {} rounds of wrk -t{} -c{} -d{:?} over TLS, alternating the order",
        config.rounds, config.wrk_threads, config.connections, config.duration
    );
    let mut disturbance = Disturbance::default();
    for round in 0..config.rounds {
        for k in 0..2 {
            let i = (round + k) % 2;
            let mut attempt = 0;
            loop {
                let measured = measure(config, &servers[i], "https").await?;
                let noisy = measured.cpu.other + measured.cpu.steal > config.max_other;
                eprintln!(
                    "  round {}/{}: {:<40} {:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} µs \
                     CPU/req, CPUs other {:.2}, {} errors{}",
                    round + 1,
                    config.rounds,
                    servers[i].label,
                    measured.wrk.requests_per_sec,
                    measured.wrk.latency_ms[0],
                    measured.wrk.latency_ms[3],
                    measured.cpu_us_per_request,
                    measured.cpu.other + measured.cpu.steal,
                    measured.wrk.errors,
                    if noisy { " (disturbed)" } else { "" }
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                if disturbance
                    .measure_again(noisy, &mut attempt, config.retries)
                    .await
                {
                    continue;
                }
                runs[i].push(measured);
                break;
            }
        }
    }
    drop(certificate);

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### https: `wrk -t{} -c{} -d{}s --latency` over TLS on loopback ({} rounds)\n",
        config.wrk_threads,
        config.connections,
        config.duration.as_secs_f64(),
        config.rounds
    );
    let _ = writeln!(
        md,
        "Both serve the same certificate (ECDSA P-256, made for the run) with rustls and ring; \
         wrk keeps its {} connections alive.\n",
        config.connections
    );
    let _ = writeln!(
        md,
        "| round | {} | {} | ratio |",
        servers[0].label, servers[1].label
    );
    let _ = writeln!(md, "|--:|--:|--:|--:|");
    for (round, (a, b)) in runs[0].iter().zip(&runs[1]).enumerate() {
        let _ = writeln!(
            md,
            "| {} | {:.0} req/s (p99 {:.2} ms) | {:.0} req/s (p99 {:.2} ms) | {:.2}× |",
            round + 1,
            a.wrk.requests_per_sec,
            a.wrk.latency_ms[3],
            b.wrk.requests_per_sec,
            b.wrk.latency_ms[3],
            a.wrk.requests_per_sec / b.wrk.requests_per_sec
        );
    }
    let rps =
        |runs: &[Measured]| -> Vec<f64> { runs.iter().map(|m| m.wrk.requests_per_sec).collect() };
    let cpu = |runs: &[Measured]| -> f64 {
        median(
            &runs
                .iter()
                .map(|m| m.cpu_us_per_request)
                .collect::<Vec<_>>(),
        )
    };
    let (a, b) = (rps(&runs[0]), rps(&runs[1]));
    let errors: u64 = runs.iter().flatten().map(|m| m.wrk.errors).sum();
    let ratio = median(&a) / median(&b);
    let _ = writeln!(
        md,
        "\nMedians: {:.0} req/s ({:.0} – {:.0}) vs {:.0} req/s ({:.0} – {:.0}); errors {errors}.  ",
        median(&a),
        min(&a),
        max(&a),
        median(&b),
        min(&b),
        max(&b)
    );
    let _ = writeln!(
        md,
        "cluster2 / bare hyper + rustls: **{ratio:.2}×** (target ≥ {TARGET_VS_BARE}: **{}**).  ",
        met(ratio >= TARGET_VS_BARE)
    );
    let _ = writeln!(
        md,
        "Server CPU time per request: {:.1} µs vs {:.1} µs ({:.2}×).  ",
        cpu(&runs[0]),
        cpu(&runs[1]),
        cpu(&runs[0]) / cpu(&runs[1])
    );
    let _ = writeln!(md, "{}", disturbance.summary(config.max_other));
    Ok(md)
}
