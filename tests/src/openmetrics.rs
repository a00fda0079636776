//! The reference OpenMetrics parser, Prometheus's Python client's, for the tests that check
//! `/metrics` with a parser cluster2 did not write. Missing, it fails the test naming the
//! command that installs it: these checks are never skipped.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// How to install the parser, for the message when it is missing.
pub const INSTALL_PARSER: &str = "python3 -m pip install prometheus-client (for Debian's own \
                                  python3: apt-get install -y python3-prometheus-client); \
                                  .ci/run installs it";

/// Runs `script`, Python that imports `prometheus_client` and reads the exposition `text` on
/// its standard input, and returns how it ended. Panics, naming the install command, when
/// python3 cannot be started or the parser is not installed.
pub fn run_reference_parser(script: &str, text: &str) -> Output {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the metrics checks parse /metrics with Python's prometheus_client, and python3 \
                 cannot be started ({e}): install python3, then {INSTALL_PARSER}"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "the metrics checks parse /metrics with Python's prometheus_client, the reference \
         OpenMetrics parser, which is not installed: {INSTALL_PARSER}"
    );
    out
}
