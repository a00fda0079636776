//! The schema against what the runtime actually does: for every option, its name, its kind and
//! its range, checked through the same resolver a user's flags go through. The schema is what
//! `--help`, error messages and `#[cluster2::main]` say; these tests make it what is true.

use std::time::Duration;

use cluster2_options_schema::{
    Kind, OPTIONS, Spec, Takes, format_duration, format_size, parse_duration, parse_size,
};
use serde_json::Value;

use super::resolve::{CommandLine, resolve};
use super::{OptionValue, Options};
use crate::error::Result;

/// Resolves `key` set to `text` on the command line. The restart delays are set apart first,
/// so that neither one's bounds are refused as a conflict with the other's default, and the
/// per-CPU limit on workers is lifted, so that the schema's own range is what is tested.
fn flag(key: &str, text: &str) -> Result<Value> {
    let mut values = Vec::new();
    let apart = [
        ("restart.delay", "10ms"),
        ("restart.max_delay", "1day"),
        ("force_workers", "true"),
    ];
    for (k, v) in apart.into_iter().chain([(key, text)]) {
        values.push((k.to_owned(), v.to_owned(), super::cli::flag_name(k)));
    }
    let command_line = CommandLine {
        values,
        config: None,
    };
    let options = resolve(&[], &command_line, [])?;
    Ok(leaf(&serde_json::to_value(options).unwrap(), key).clone())
}

/// Resolves `key` set in code, as `#[cluster2::main]` and `Builder::option` set it (with the
/// per-CPU limit on workers lifted).
fn code(key: &str, value: OptionValue) -> Result<Value> {
    let force = ("force_workers".to_owned(), OptionValue::Bool(true));
    let options = resolve(
        &[force, (key.to_owned(), value)],
        &CommandLine::default(),
        [],
    )?;
    Ok(leaf(&serde_json::to_value(options).unwrap(), key).clone())
}

fn leaf<'a>(tree: &'a Value, key: &str) -> &'a Value {
    tree.pointer(&format!("/{}", key.replace('.', "/")))
        .unwrap_or_else(|| panic!("{key} is not in the options"))
}

fn assert_rejected(spec: &Spec, text: &str) {
    let err = flag(spec.key, text).expect_err(&format!("{} = {text:?} accepted", spec.key));
    let message = err.to_string();
    assert!(
        message.starts_with("invalid value") && message.contains(spec.expected),
        "{} = {text:?}: {message}",
        spec.key
    );
}

fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(v, &path, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn every_option_is_in_the_schema_and_every_schema_key_is_an_option() {
    let mut paths = Vec::new();
    leaf_paths(
        &serde_json::to_value(Options::default()).unwrap(),
        "",
        &mut paths,
    );
    paths.sort();
    let mut keys: Vec<String> = OPTIONS.iter().map(|s| s.key.to_owned()).collect();
    keys.sort();
    assert_eq!(paths, keys);
}

#[test]
fn kinds_are_the_runtime_types() {
    let defaults = serde_json::to_value(Options::default()).unwrap();
    for spec in OPTIONS {
        let default = leaf(&defaults, spec.key);
        let fits = match spec.kind.takes() {
            Takes::Bool => default.is_boolean(),
            Takes::Int => default.is_u64(),
            Takes::Text => default.is_string(),
        };
        assert!(
            fits || (spec.optional && default.is_null()),
            "{}: default {default} is not a {:?}",
            spec.key,
            spec.kind
        );
        assert_eq!(
            super::value::check(spec, default),
            Ok(()),
            "{}: default {default} does not fit the schema",
            spec.key
        );
        // Optional in the schema is `Option` in the runtime: `none` unsets it, and only it.
        let none = flag(spec.key, "none").map(|v| v.is_null());
        if spec.optional {
            assert_eq!(none.ok(), Some(true), "{}", spec.key);
        } else {
            assert_ne!(none.ok(), Some(true), "{}", spec.key);
        }
        if spec.kind == Kind::Bool {
            assert_eq!(flag(spec.key, "false").unwrap(), false, "{}", spec.key);
            assert_eq!(flag(spec.key, "true").unwrap(), true, "{}", spec.key);
            assert_rejected(spec, "maybe");
        }
    }
}

#[test]
fn number_ranges_are_the_runtimes() {
    for spec in OPTIONS {
        let Some((min, max)) = spec.kind.int_range() else {
            continue;
        };
        for n in [min, max] {
            assert_eq!(flag(spec.key, &n.to_string()).unwrap(), n, "{}", spec.key);
            let typed = OptionValue::Int(i64::try_from(n).unwrap());
            assert_eq!(code(spec.key, typed).unwrap(), n, "{}", spec.key);
        }
        let below = i128::from(min) - 1;
        let above = i128::from(max) + 1;
        assert_rejected(spec, &below.to_string());
        assert_rejected(spec, &above.to_string());
        if let Ok(above) = i64::try_from(above) {
            assert!(
                code(spec.key, OptionValue::Int(above)).is_err(),
                "{}",
                spec.key
            );
        }
        assert!(
            code(spec.key, OptionValue::Int(below as i64)).is_err(),
            "{}",
            spec.key
        );
    }
}

#[test]
fn duration_ranges_are_the_runtimes() {
    let nanosecond = Duration::from_nanos(1);
    for spec in OPTIONS {
        let Some((min, max)) = spec.kind.duration_range() else {
            continue;
        };
        let accepted = |d: Duration| {
            let out = flag(spec.key, &format_duration(d))
                .unwrap_or_else(|e| panic!("{} = {d:?}: {e}", spec.key));
            assert_eq!(parse_duration(out.as_str().unwrap()), Ok(d), "{}", spec.key);
        };
        accepted(min);
        if let Some(below) = min.checked_sub(nanosecond) {
            assert_rejected(spec, &format_duration(below));
        }
        accepted(max);
        assert_rejected(spec, &format_duration(max + nanosecond));
        let Kind::Duration { never, .. } = spec.kind else {
            unreachable!("a duration range is a duration's")
        };
        if never {
            assert_eq!(flag(spec.key, "never").unwrap(), "never", "{}", spec.key);
        } else {
            assert_rejected(spec, "never");
        }
        assert_rejected(spec, "5");
    }
}

#[test]
fn size_ranges_are_the_runtimes() {
    let mut sizes = 0;
    for spec in OPTIONS {
        let Some((min, max)) = spec.kind.size_range() else {
            continue;
        };
        sizes += 1;
        for n in [min, max] {
            for text in [format_size(n), n.to_string()] {
                let out =
                    flag(spec.key, &text).unwrap_or_else(|e| panic!("{} = {text}: {e}", spec.key));
                assert_eq!(parse_size(out.as_str().unwrap()), Ok(n), "{}", spec.key);
            }
        }
        assert_rejected(spec, &(min - 1).to_string());
        assert_rejected(spec, &(max + 1).to_string());
        assert_rejected(spec, "lots");
        // The grammar's detail follows what was expected.
        let err = flag(spec.key, "5 mibs").unwrap_err().to_string();
        assert!(err.contains("unknown unit `mibs`"), "{}: {err}", spec.key);
        // Set in code, a size is text too.
        let text = OptionValue::Str(format_size(min));
        assert_eq!(
            parse_size(code(spec.key, text).unwrap().as_str().unwrap()),
            Ok(min)
        );
    }
    assert!(sizes > 0, "no size in the schema: the test tests nothing");
}

#[test]
fn choices_are_the_runtimes() {
    let defaults = serde_json::to_value(Options::default()).unwrap();
    for spec in OPTIONS {
        let Kind::OneOf(choices) = spec.kind else {
            continue;
        };
        for choice in choices {
            assert_eq!(flag(spec.key, choice).unwrap(), *choice, "{}", spec.key);
        }
        assert_rejected(spec, "none of these");
        // The runtime's own list: serde names every variant when it meets an unknown one.
        let mut tree = defaults.clone();
        let slot = tree
            .pointer_mut(&format!("/{}", spec.key.replace('.', "/")))
            .unwrap();
        *slot = Value::from("?");
        let err = serde_json::from_value::<Options>(tree)
            .unwrap_err()
            .to_string();
        let listed = err.split_once("expected").map_or("", |(_, list)| list);
        let variants: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        assert_eq!(variants, *choices, "{}: {err}", spec.key);
    }
}

#[test]
fn text_kinds_are_checked_by_the_runtime() {
    for spec in OPTIONS {
        let (good, bad): (&[&str], &[&str]) = match spec.kind {
            Kind::Host => (
                &["127.0.0.1", "::1", "localhost", "api.internal"],
                &["", "my host", "[::1]", "10.0.1", "http://api.internal"],
            ),
            Kind::UrlPath { or_url: false } => (&["/health"], &["health", "http://x/"]),
            Kind::UrlPath { or_url: true } => (&["/", "http://10.0.0.1/ping"], &["https://x/"]),
            Kind::Directory => (&["/run/app"], &[""][..usize::from(!spec.optional)]),
            Kind::File => (&["/etc/app/cert.pem"], &[""][..usize::from(!spec.optional)]),
            Kind::Bind => (
                &["unix:/run/app.sock", "unix:app.sock"],
                &["/run/app.sock", "unix:", "127.0.0.1:8080"],
            ),
            Kind::FileMode => (&["660", "0600", "777"], &["", "8", "1777", "rw-rw----"]),
            Kind::LogFilter => (
                &["warn,my_app=debug", "TRACE", "my_app[request]=debug"],
                &["verbose", "infoo", "my_app=loud", "[nope"],
            ),
            Kind::Secret => (&["s3cr3t-T0ken+/="], &["two words", "tab\tin", "caf\u{e9}"]),
            Kind::Backend => (
                &[
                    "local",
                    "redis://127.0.0.1:6379/0",
                    "redis+unix:///run/r.sock",
                ],
                &["redis", "http://x/", "redis://x y", "redis://host:99999/0"],
            ),
            Kind::Name => (&["shop-api", "a.b_c"], &["", "a:b", "a*"]),
            Kind::LogDestination => (
                &[
                    "off",
                    "stdout",
                    "stderr",
                    "./access.log",
                    "/var/log/app/access.log",
                ],
                &["", "on", "access.log", "/var/log/", "./a\nb"],
            ),
            Kind::Buckets => (
                &["0.005,0.01,0.1,1", "0.5"],
                &["", "5ms", "0.1,0.1", "1,0.5", "0", "inf", "0.1,,0.2"],
            ),
            _ => continue,
        };
        for text in good {
            assert_eq!(flag(spec.key, text).unwrap(), *text, "{}", spec.key);
        }
        for text in bad {
            assert_rejected(spec, text);
        }
    }
}

/// The README's option table is the one users read first; it must list every option.
#[test]
fn the_readme_lists_every_option() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let section = readme
        .split("\n## Options\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has an Options section");
    let mut listed: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .flat_map(|row| {
            let first_cell = row.split(" |").next().unwrap_or_default();
            first_cell.split('`').step_by(2)
        })
        .map(|key| key.trim_matches([',', ' ']))
        .filter(|key| !key.is_empty())
        .collect();
    listed.sort_unstable();
    let mut keys: Vec<&str> = OPTIONS.iter().map(|s| s.key).collect();
    keys.sort_unstable();
    assert_eq!(listed, keys);
}
