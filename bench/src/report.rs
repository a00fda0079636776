//! Formatting, and what the report says about the machine.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::Config;

pub(crate) fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

pub(crate) fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

pub(crate) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

/// The heading of the report: when, on what, with which peers.
pub(crate) async fn header(config: &Config) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Results of {} (UTC)\n", today());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read_trimmed("/proc/sys/kernel/osrelease");
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let node = version(&config.node, "--version").await;
    let wrk = version(&config.wrk, "-v").await;
    let _ = writeln!(
        md,
        "- machine: {cpus} CPUs (`nproc`), {model}, Linux {kernel} (`uname -r`)"
    );
    let load = load_average();
    let _ = writeln!(md, "- load average (1, 5, 15 min) before: {load}");
    if load
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .is_some_and(|l| l > 0.5)
    {
        eprintln!("warning: load average {load}: other work on this machine may skew the figures");
    }
    let _ = writeln!(md, "- node: {node}; wrk: {wrk}");
    md.push('\n');
    md
}

pub(crate) fn load_average() -> String {
    let avg = read_trimmed("/proc/loadavg");
    let three: Vec<&str> = avg.split_whitespace().take(3).collect();
    three.join(" ")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The first line `program flag` prints, or "not found".
async fn version(program: &Path, flag: &str) -> String {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::process::Command::new(program)
            .arg(flag)
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match out {
        Ok(Ok(out)) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        _ => format!("{} not found", program.display()),
    }
}

/// Today's UTC date, `YYYY-MM-DD`.
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn formats() {
        assert_eq!(ms(41.23), "41.2 ms");
        assert_eq!(ms(301.6), "302 ms");
        assert_eq!(mib(8192.0), "8.0 MiB");
    }
}
