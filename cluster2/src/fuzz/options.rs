//! Options as careless people write them: durations, log filters, every kind of option's text,
//! and whole command lines with a config file and the environment, resolved the way a binary
//! resolves them at start (through the crate's entry points, which never exit the process).
//!
//! A mistake must be one error naming what to fix, never a panic; what is accepted must mean
//! the same when written back (a duration formatted and parsed again, the resolved options
//! written as a config file and resolved again).

use std::ffi::OsString;
use std::time::Duration;

use cluster2_options_schema::{
    OPTIONS, check_log_filter, format_duration, is_never, parse_duration,
};

use super::bounded;
use crate::error::Result;
use crate::options::{Command, CommandLine, Options, log_filter, parse_command_line, resolve_with};

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A duration as any option reads it; what parses formats back to itself.
fn check_duration(text: &str) {
    let parsed = bounded("a duration", text.len(), 4096, 4, || parse_duration(text));
    let _ = is_never(text);
    if let Ok(duration) = parsed {
        let written = format_duration(duration);
        assert_eq!(
            parse_duration(&written),
            Ok(duration),
            "{text:?} → {written:?}"
        );
    }
}

#[test]
fn options_duration() {
    bolero::check!(name = "options_duration").for_each(|bytes| check_duration(&text(bytes)));
}

/// A log filter as `log.level`, `RUST_LOG` and the monitor's log-level route read it: the
/// schema's check, then tracing's own parse. What the schema accepts here must be what tracing
/// accepts, bar span filters, which only tracing reads.
fn check_filter(text: &str) {
    let schema = bounded("a log filter check", text.len(), 4096, 32, || {
        check_log_filter(text)
    });
    let runtime = bounded("a log filter", text.len(), 64 * 1024, 64, || {
        log_filter(text).map(drop)
    });
    if runtime.is_ok() {
        assert_eq!(
            schema,
            Ok(()),
            "{text:?}: tracing's parse runs after the schema's check"
        );
    }
    if let Err(message) = &runtime {
        assert!(!message.is_empty());
    }
}

#[test]
fn options_log_filter() {
    bolero::check!(name = "options_log_filter").for_each(|bytes| check_filter(&text(bytes)));
}

/// Any text for every option's kind: a verdict, never a panic.
#[test]
fn options_kind_text() {
    bolero::check!(name = "options_kind_text").for_each(|bytes| {
        let text = text(bytes);
        for spec in OPTIONS {
            bounded(spec.key, text.len(), 64 * 1024, 64, || {
                let _ = spec.kind.check_text(&text);
            });
        }
    });
}

/// A whole start: the input's lines are the command line (`CLUSTER2_…=…` and `RUST_LOG=…`
/// lines are the environment instead), and what follows a line `%%` is the config file, which
/// `--config=…` then names (any path: its text is the input's).
fn check_start(input: &str) {
    let (head, config) = match input.split_once("\n%%\n") {
        Some((head, config)) => (head, Some(config)),
        None => (input, None),
    };
    let mut args = vec![OsString::from("app")];
    let mut env = Vec::new();
    for line in head.lines() {
        match line.split_once('=') {
            Some((name, value)) if name.starts_with("CLUSTER2_") || name == "RUST_LOG" => {
                env.push((OsString::from(name), OsString::from(value)));
            }
            _ => args.push(OsString::from(line)),
        }
    }
    let outcome = bounded("a start", input.len(), 1 << 20, 256, || {
        start(args, env.clone(), config)
    });
    match outcome {
        Start::Exit { code, output } => {
            assert!(code == 0 || code == 2, "exit status {code}: {output}");
            if code == 2 {
                // One line, naming what to fix.
                assert!(
                    output.starts_with("error: ") && output.ends_with('\n'),
                    "{output:?}"
                );
                let line = output.strip_suffix('\n').unwrap_or_default();
                assert!(!line.contains(char::is_control), "{output:?}");
            }
        }
        Start::Refused(message) => {
            assert!(
                !message.is_empty() && !message.contains(char::is_control),
                "{message:?}"
            );
        }
        Start::Run(options) => written_back_reads_the_same(&options, env),
    }
}

enum Start {
    Exit { code: i32, output: String },
    Refused(String),
    Run(Box<Options>),
}

fn start(args: Vec<OsString>, env: Vec<(OsString, OsString)>, config: Option<&str>) -> Start {
    let command_line = match parse_command_line("app", "0.0.0", &[], args) {
        Command::Exit { code, output } => return Start::Exit { code, output },
        Command::Run { command_line, .. } => command_line,
    };
    let read = |_: &std::path::Path| -> Result<String> {
        config
            .map(str::to_owned)
            .ok_or_else(|| crate::error::Error::config("no config file in this input"))
    };
    match resolve_with(&[], &command_line, env, read) {
        Ok(options) => Start::Run(Box::new(options)),
        Err(e) => Start::Refused(e.to_string()),
    }
}

/// Resolved options, written as a config file (every value the user could write) and resolved
/// again with the same environment, are the same options.
fn written_back_reads_the_same(options: &Options, env: Vec<(OsString, OsString)>) {
    let tree = serde_json::to_value(options).expect("options serialize");
    let table = to_toml(&tree).expect("options are a table");
    let written = toml::to_string(&table).expect("a table writes");
    // The environment sits above the file: the file must say what the environment said.
    let command_line = CommandLine {
        config: Some("written.toml".into()),
        ..CommandLine::default()
    };
    let again = resolve_with(&[], &command_line, env, |_| Ok(written.clone()))
        .unwrap_or_else(|e| panic!("{written}\nreads back as an error: {e}"));
    assert_eq!(&again, options, "{written}");
}

fn to_toml(value: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value;
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => toml::Value::Integer(n.as_i64()?),
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().filter_map(to_toml).collect()),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), to_toml(v)?)))
                .collect(),
        ),
    })
}

#[test]
fn options_start() {
    bolero::check!(name = "options_start").for_each(|bytes| check_start(&text(bytes)));
}

/// The documented forms, and the duration each is.
#[test]
fn durations_people_write_format_back() {
    for (text, d) in [
        ("500ms", Duration::from_millis(500)),
        ("1h 30m", Duration::from_secs(5_400)),
        ("3d", Duration::from_secs(3 * 86_400)),
    ] {
        assert_eq!(parse_duration(text), Ok(d));
        check_duration(text);
    }
}

/// Found by this target: a span field's value was compiled as a regular expression, and this
/// one (`[ab]*a` then fourteen `[ab]`, an automaton of 2^14 states) took seconds and 13 MB to
/// compile in a debug build, four times more for each `[ab]` added: a monitor request or a
/// `RUST_LOG` could hold the master for hours. Values now match as text.
#[test]
fn a_field_pattern_is_not_compiled() {
    let filter = format!("my_app[{{user=[ab]*a{}}}]=debug", "[ab]".repeat(14));
    let parsed = bounded("a field pattern", filter.len(), 64 * 1024, 64, || {
        log_filter(&filter).map(drop)
    });
    assert_eq!(parsed, Ok(()));
}
