//! The master's log lines for people, read from its standard error: a SIGHUP says what it does
//! before each worker's line, a replacement is two lines (queued, replaced), durations read as
//! people write them, and a failed warm-up is one ERROR line per attempt whose exit status is
//! explained by what the worker reported.

use cluster2_tests::{Cluster, TempPath};
use nix::sys::signal::Signal;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// The master's lines in `log`, from the first that contains `from`.
fn master_lines<'a>(log: &'a [String], from: &str) -> Vec<&'a str> {
    let start = log
        .iter()
        .position(|l| l.contains(from))
        .unwrap_or_else(|| panic!("no line with {from:?}:\n{}", log.join("\n")));
    log[start..]
        .iter()
        .filter(|l| l.contains(" master["))
        .map(String::as_str)
        .collect()
}

/// A duration as the master writes one: `0.4 ms`, `12 ms`, `1.4 s`.
fn human_duration(text: &str) -> bool {
    let Some((number, unit)) = text.split_once(' ') else {
        return false;
    };
    let one_decimal = number
        .split_once('.')
        .is_none_or(|(_, decimals)| decimals.len() == 1);
    number.parse::<f64>().is_ok() && one_decimal && ["ms", "s", "min"].contains(&unit)
}

#[test]
fn a_sighup_says_what_it_does_first_and_each_replacement_is_two_lines() {
    let mut cluster = Cluster::start(APP, &["--workers=2"], &[]);
    let mut events = cluster.events();
    let old = cluster.workers.clone();
    cluster.proc.signal(Signal::SIGHUP);
    let successors: Vec<u64> = old
        .iter()
        .map(|&pid| {
            events.wait("replaced", |e| e["pid"] == pid)["successor"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // Both closing lines have been read from its standard error.
    for pid in &old {
        cluster.proc.rewind();
        cluster.proc.wait_for(&format!("(pid {pid} → pid"));
    }
    let log = cluster.proc.log.clone();
    let lines = master_lines(&log, "SIGHUP");
    assert!(
        lines[0].contains("SIGHUP: replacing 2 workers one at a time"),
        "the summary comes first:\n{}",
        lines.join("\n")
    );
    for (&pid, successor) in old.iter().zip(&successors) {
        let about: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| {
                l.contains(&format!("pid {pid}")) || l.contains(&format!("pid {successor}"))
            })
            .collect();
        assert_eq!(
            about.len(),
            2,
            "queued and replaced only:\n{}",
            about.join("\n")
        );
        assert!(about[0].contains("queued worker"), "{}", about[0]);
        let replaced = about[1];
        assert!(
            replaced.contains("replaced worker")
                && replaced.contains(&format!("(pid {pid} → pid {successor}) in ")),
            "{replaced}"
        );
        let took = replaced
            .split(") in ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .unwrap();
        assert!(human_duration(took), "{took:?} in {replaced}");
    }
}

#[test]
fn a_failed_warm_up_is_one_error_line_whose_exit_status_is_explained() {
    let marker = TempPath::new("log-lines-fail-once");
    let cluster = Cluster::start(
        APP,
        &["--workers=1"],
        &[("FIXTURE_WARM_UP_FAIL_ONCE", marker.as_str())],
    );
    let log = &cluster.proc.log;
    let failed: Vec<&String> = log.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(failed.len(), 1, "one ERROR line:\n{}", log.join("\n"));
    let line = failed[0];
    assert!(line.contains(" master["), "{line}");
    assert!(
        line.contains(
            "exited with status 3 (warm-up failed: first warm-up fails); restarting at once \
             (crash 1 in a row, up "
        ),
        "{line}"
    );
    let up = line.rsplit("up ").next().unwrap().trim_end_matches(')');
    assert!(human_duration(up), "{up:?} in {line}");
}

#[test]
fn a_failed_successor_is_one_error_line_per_try() {
    let marker = TempPath::new("log-lines-fail-after");
    let mut cluster = Cluster::start(
        APP,
        &["--workers=1", "--death-queue.retries=2"],
        &[("FIXTURE_WARM_UP_FAIL_AFTER", marker.as_str())],
    );
    let mut events = cluster.events();
    let old = cluster.workers[0];
    std::fs::write(marker.path(), b"broken").unwrap();
    assert_eq!(
        cluster2_tests::post(cluster.monitor, &format!("/workers/{old}/replace")).status,
        200
    );
    let tries: Vec<u64> = (0..2)
        .map(|_| {
            events.wait("start_failed", |e| e["stage"] == "warm-up")["pid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    events.next_of("replacement_failed");
    cluster.proc.wait_for("gave up replacing");
    let log = cluster.proc.log.clone();
    let errors: Vec<&str> = master_lines(&log, "queued worker")
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert_eq!(errors.len(), 2, "one per try:\n{}", errors.join("\n"));
    let explained = "exited with status 3 (warm-up failed: warm-up broken by the test)";
    assert!(
        errors[0].contains(&format!(
            "replacing worker 0 (pid {old}), try 1 of 2 failed"
        )) && errors[0].contains(&format!("successor pid {} {explained}", tries[0]))
            && errors[0].ends_with("trying again"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains(&format!(
            "gave up replacing worker 0 (pid {old}) after 2 tries"
        )) && errors[1].contains(&format!("successor pid {} {explained}", tries[1])),
        "{}",
        errors[1]
    );
}
