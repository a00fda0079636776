//! `status`: the cluster's workers as a table, one row per process (as `pm2 ls`): worker id,
//! pid, state, uptime, CPU, memory, requests per second and restarts, from the monitor's
//! `GET /workers`; `--json` prints that answer as it is, for scripts (its fields are
//! documented in `docs/monitor-api.md`), its control characters escaped as JSON escapes them.
//! The monitor's words (a state, why a worker is kept) are shown escaped ([`shown`]).

use serde_json::Value;

use super::client;
use super::find::Monitor;
use super::{Failure, shown, shown_json};

pub(super) async fn run(monitor: &Monitor, json: bool) -> Result<(), Failure> {
    let workers = client::get(monitor, "/workers").await?;
    if json {
        say!("{}", shown_json(&workers));
        return Ok(());
    }
    let table = render(&workers).ok_or_else(|| {
        Failure::Unreachable(format!(
            "{} answered GET /workers with another shape than a cluster2 monitor's",
            monitor.found
        ))
    })?;
    say!("{}", table.trim_end());
    Ok(())
}

const COLUMNS: [&str; 8] = [
    "WORKER", "PID", "STATE", "UPTIME", "CPU", "MEMORY", "REQ/S", "RESTARTS",
];

/// The table, with a line above it saying how many workers there are and should be.
fn render(answer: &Value) -> Option<String> {
    let mut workers: Vec<&Value> = answer["workers"].as_array()?.iter().collect();
    workers.sort_by_key(|w| (w["worker"].as_u64(), w["pid"].as_u64()));
    let mut rows: Vec<[String; 8]> = vec![COLUMNS.map(str::to_owned)];
    for w in &workers {
        let beat = &w["heartbeat"];
        let figure = |f: &dyn Fn(&Value) -> Option<String>| f(beat).unwrap_or_else(|| "-".into());
        rows.push([
            w["worker"].as_u64()?.to_string(),
            w["pid"].as_u64()?.to_string(),
            state(w)?,
            duration(w["uptime_secs"].as_f64()?),
            figure(&|b| Some(format!("{:.1}%", b["cpu_percent"].as_f64()?))),
            figure(&|b| Some(bytes(b["memory_bytes"].as_u64()?))),
            figure(&|b| Some(format!("{:.1}", b["requests_per_second"].as_f64()?))),
            w["restarts"].as_u64()?.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let serving = workers
        .iter()
        .filter(|w| w["state"] == "listening" && w["debugging"].is_null())
        .count();
    let mut out = format!(
        "{serving} of {} workers serving",
        answer["expected"].as_u64()?
    );
    let queued = answer["death_queue"].as_array().map_or(0, Vec::len);
    if queued > 0 {
        out.push_str(&format!("; {queued} in the replacement queue"));
    }
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    Some(out)
}

/// The state, and why a worker is out of the ordinary: a successor, kept for debugging, or
/// unable to take connections.
fn state(w: &Value) -> Option<String> {
    let mut state = shown(w["state"].as_str()?).into_owned();
    if let Some(old) = w["successor_of"].as_u64() {
        state.push_str(&format!(" (successor of {old})"));
    }
    if let Some(why) = w["debugging"].as_str() {
        state.push_str(&format!(" (debug {})", shown(why)));
    }
    if w["cannot_accept"].is_string() {
        state.push_str(" (cannot accept)");
    }
    Some(state)
}

/// `4s`, `5m 2s`, `3h 7m`, `2d 5h`: the two largest units, as people read an uptime.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `512 B`, `12.3 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_process_and_dashes_before_a_heartbeat() {
        let answer = serde_json::json!({
            "expected": 2,
            "workers": [
                {"worker": 1, "pid": 12, "state": "warming", "uptime_secs": 0.5, "restarts": 1,
                 "successor_of": 11, "debugging": null, "cannot_accept": null, "heartbeat": null},
                {"worker": 0, "pid": 10, "state": "listening", "uptime_secs": 3725.0,
                 "restarts": 0, "successor_of": null, "debugging": null, "cannot_accept": null,
                 "heartbeat": {"cpu_percent": 12.34, "memory_bytes": 13_000_000,
                               "requests_per_second": 40.0}},
            ],
            "death_queue": [{}],
        });
        let table = render(&answer).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "1 of 2 workers serving; 1 in the replacement queue"
        );
        assert!(lines[1].starts_with("WORKER  PID  STATE"), "{table}");
        assert!(lines[2].starts_with("0       10   listening"), "{table}");
        assert!(
            lines[2].contains("1h 2m") && lines[2].contains("12.3%"),
            "{table}"
        );
        assert!(
            lines[2].contains("12.4 MiB") && lines[2].contains("40.0"),
            "{table}"
        );
        assert!(lines[3].contains("warming (successor of 11)"), "{table}");
        assert!(lines[3].contains(" - "), "{table}");
        assert_eq!(render(&serde_json::json!({"workers": 3})), None);
    }

    #[test]
    fn the_monitors_words_are_shown_escaped() {
        let answer = serde_json::json!({
            "expected": 1,
            "workers": [
                {"worker": 0, "pid": 10, "state": "listening\u{1b}]0;owned\u{7}",
                 "uptime_secs": 1.0, "restarts": 0, "successor_of": null,
                 "debugging": "x\ny\u{9b}2J", "cannot_accept": null, "heartbeat": null},
            ],
        });
        let table = render(&answer).unwrap();
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(
            table.contains("listening\\u{1b}]0;owned\\u{7} (debug x\\u{a}y\\u{9b}2J)"),
            "{table}"
        );
    }

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(duration(4.9), "4s");
        assert_eq!(duration(302.0), "5m 2s");
        assert_eq!(duration(2.0 * 86_400.0 + 5.0 * 3600.0), "2d 5h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
