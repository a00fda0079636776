//! The commands for a running cluster, as the first argument of any cluster2 binary:
//! `status [--json]`, `reload`, `scale N|+N|-N`, `logs` (`stop` is the master's own, in
//! `master/stop.rs`). Each one talks to the master through its monitor, like any other client:
//! found from the pid file (`--pids=DIR`, proven as `stop` proves it) or from
//! `--mon-host`/`--mon-port`, with `--mon.token` when the cluster has one (`find.rs`), over a
//! small HTTP/1.1 client on hyper (`client.rs`). `status` renders `/workers` (`status.rs`);
//! `reload` and `scale` ask, then wait until it is done (`wait.rs`); `logs` follows every
//! worker's live log stream (`logs.rs`).
//!
//! Each failure is one line on standard error naming what was wrong, and an exit status of
//! its own (`exit.rs`): 2 a bad argument, 5 no master found, 6 the monitor unreachable, 7 the
//! token missing or refused, 1 what was asked failed (a successor, a refused scale).
//!
//! What the monitor says is not trusted to be a monitor's: its numbers are checked against
//! what was asked and the `workers` option's bounds before anything is sized or timed by them,
//! and its words reach the terminal only with their control characters escaped ([`shown`]),
//! so an answer cannot move the cursor, retitle the window or fake a line of output.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::process::ExitCode;

use crate::exit;
use crate::options::{Action, Options};

/// `println!`, through [`write_line`]; defined before the modules that use it.
macro_rules! say {
    ($($arg:tt)*) => { $crate::control_cli::write_line(format_args!($($arg)*)) };
}

mod client;
mod find;
mod logs;
mod status;
mod wait;

/// Why a command failed; each kind has its exit status.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A bad argument or option (2).
    Usage(String),
    /// No master to talk to (5).
    NoMaster(String),
    /// The monitor cannot be reached, or is not one (6).
    Unreachable(String),
    /// The monitor refused: the token, or where the request came from (7).
    Denied(String),
    /// What was asked failed (1).
    Failed(String),
}

impl Failure {
    fn status(&self) -> u8 {
        match self {
            Failure::Usage(_) => exit::USAGE,
            Failure::NoMaster(_) => exit::NO_MASTER,
            Failure::Unreachable(_) => exit::UNREACHABLE,
            Failure::Denied(_) => exit::DENIED,
            Failure::Failed(_) => exit::FAILURE,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Usage(m)
            | Failure::NoMaster(m)
            | Failure::Unreachable(m)
            | Failure::Denied(m)
            | Failure::Failed(m) => m,
        }
    }
}

/// Runs `action` against the cluster `options` point at; returns the exit status.
pub(crate) fn run(action: Action, options: &Options) -> ExitCode {
    // Checked before anything is looked for: a bad argument is a bad argument, cluster or not.
    let scale = match &action {
        Action::Scale(arg) => match wait::parse_scale(arg) {
            Ok(target) => Some(target),
            Err(e) => return fail(&Failure::Usage(e)),
        },
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&Failure::Failed(format!("cannot start a runtime: {e}"))),
    };
    let outcome = runtime.block_on(async {
        let monitor = find::monitor(options)?;
        match action {
            Action::Status { json } => status::run(&monitor, json).await,
            Action::Reload => wait::reload(&monitor, options).await,
            Action::Scale(_) => {
                let target = scale.expect("parsed above");
                wait::scale(&monitor, options, target).await
            }
            Action::Logs => logs::run(&monitor).await,
            Action::Serve | Action::Stop => unreachable!("not a control command"),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

/// Writes a line of the command's output (line breaks kept, every other control character
/// escaped: the last guard, behind [`shown`] on each of the monitor's words). A reader that
/// went away (`status --json | head`) is no error of the command's: what is left is dropped.
fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = line.to_string();
    let _ = writeln!(std::io::stdout().lock(), "{}", escape(&line, true));
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("error: {}", shown(failure.message()));
    exit::code(failure.status())
}

/// Text from the monitor, safe to show: each character that would act on a terminal rather
/// than show (C0 and C1 controls, DEL, the bidirectional overrides that reorder a line), line
/// breaks included, written as an escape (`\u{1b}`).
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// The monitor's JSON, pretty, with the characters [`shown`] escapes that JSON itself leaves
/// raw (DEL, C1 controls, bidirectional overrides) written as JSON escapes (`\u009b`): the
/// same value, safe on a terminal.
pub(crate) fn shown_json(value: &serde_json::Value) -> String {
    // serde_json escapes C0 controls in strings; the others can only be inside strings, where
    // `\uXXXX` means the same character. Every one of them is below U+10000.
    let mut out = String::new();
    for c in format!("{value:#}").chars() {
        if acts(c) && c != '\n' {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` would act on a terminal instead of being shown.
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let escaped = |c: char| acts(c) && !(keep_lines && c == '\n');
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitors_words_cannot_act_on_the_terminal() {
        assert_eq!(shown("listening"), "listening");
        assert_eq!(
            shown("\u{1b}]0;owned\u{7}x\ny\u{9b}2J\u{202e}"),
            "\\u{1b}]0;owned\\u{7}x\\u{a}y\\u{9b}2J\\u{202e}"
        );
        assert_eq!(escape("a\nb\r", true), "a\nb\\u{d}");
        let value = serde_json::json!({"state": "\u{1b}[2J\u{9b}1m\u{7f}\u{2066}"});
        let text = shown_json(&value);
        assert!(!text.chars().any(|c| acts(c) && c != '\n'), "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }
}
