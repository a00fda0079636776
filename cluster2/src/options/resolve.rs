//! Merging the layers of options into one [`Options`], remembering where each value came from
//! so that an error can name the flag, variable or file line the user has to fix.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use cluster2_options_schema::{self as schema, Invalid, Kind, OPTIONS};
use serde_json::Value;

use super::{Options, value};
use crate::error::{Error, Result};

/// A value given to [`Builder::option`](crate::Builder::option) or `#[cluster2::main(...)]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum OptionValue {
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Text, read as the command line would read it (`"5s"`, `"http1"`, `"8080"`).
    Str(String),
}

impl From<bool> for OptionValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

macro_rules! int_option_value {
    ($($t:ty),*) => {$(
        impl From<$t> for OptionValue {
            fn from(v: $t) -> Self {
                Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_option_value!(u8, u16, u32, u64, usize, i8, i16, i32, i64);

impl From<&str> for OptionValue {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}

impl From<String> for OptionValue {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

impl From<std::time::Duration> for OptionValue {
    fn from(v: std::time::Duration) -> Self {
        Self::Str(humantime::format_duration(v).to_string())
    }
}

/// Where a value came from.
#[derive(Clone, Debug)]
enum Source {
    Default,
    Code,
    File(String),
    Env(String),
    Flag(String),
}

/// One value set by one layer.
#[derive(Debug)]
pub(crate) struct Assignment {
    key: String,
    value: Raw,
    source: Source,
}

#[derive(Debug)]
enum Raw {
    /// Already typed (code, config file).
    Typed(Value),
    /// Text to read according to the option's type (environment, command line).
    Text(String),
}

/// The command line, already split by [`super::cli`].
#[derive(Debug, Default)]
pub(crate) struct CommandLine {
    /// `(dotted key, value, the flag as written)`.
    pub(crate) values: Vec<(String, String, String)>,
    pub(crate) config: Option<std::path::PathBuf>,
}

/// The variable most Rust programs take their log filter from. It sets `log.level` over the
/// code's own choice, since it is how a developer asks any Rust program for more or less
/// output; and under the config file and `CLUSTER2_LOG__LEVEL`, since it is often set once for
/// a whole shell, while those two are set for this application.
const RUST_LOG: &str = "RUST_LOG";

/// Resolves every layer into validated options.
///
/// Lowest first: built-in defaults, `code`, `RUST_LOG` (for `log.level`), the config file,
/// `CLUSTER2_*` variables, the command line.
pub(crate) fn resolve(
    code: &[(String, OptionValue)],
    command_line: &CommandLine,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Options> {
    resolve_with(code, command_line, env, read_config)
}

/// [`resolve`], with the config file's text got by `read` (from the file, or, in a fuzz
/// target, from the input).
pub(crate) fn resolve_with(
    code: &[(String, OptionValue)],
    command_line: &CommandLine,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    read: impl FnOnce(&Path) -> Result<String>,
) -> Result<Options> {
    let env: Vec<(OsString, OsString)> = env.into_iter().collect();
    let mut assignments: Vec<Assignment> = code
        .iter()
        .map(|(key, value)| Assignment {
            key: key.clone(),
            value: raw(value),
            source: Source::Code,
        })
        .collect();
    assignments.extend(rust_log(&env)?);
    if let Some(path) = &command_line.config {
        assignments.extend(file_layer(path, &read(path)?)?);
    }
    assignments.extend(env_layer(env)?);
    for (key, value, flag) in &command_line.values {
        assignments.push(Assignment {
            key: key.clone(),
            value: Raw::Text(value.clone()),
            source: Source::Flag(flag.clone()),
        });
    }
    merge(assignments)
}

/// The options as this binary's code sets them (`#[cluster2::main]` or `Builder::option` over
/// the built-in defaults), for `--help` to show what the binary will use. A value that does not
/// check out is left at its built-in default here: running the binary reports it.
pub(crate) fn code_defaults(code: &[(String, OptionValue)]) -> Value {
    let mut tree = defaults();
    for (key, value) in code {
        let Some(spec) = schema::spec(key) else {
            continue;
        };
        let value = match raw(value) {
            Raw::Typed(v) => v,
            Raw::Text(t) => value::coerce(&t, spec),
        };
        if value::check(spec, &value).is_ok() {
            *lookup_mut(&mut tree, key).expect("schema keys are options") = value;
        }
    }
    tree
}

fn raw(value: &OptionValue) -> Raw {
    match value {
        OptionValue::Bool(b) => Raw::Typed(Value::Bool(*b)),
        OptionValue::Int(i) => Raw::Typed(Value::from(*i)),
        OptionValue::Str(s) => Raw::Text(s.clone()),
    }
}

fn defaults() -> Value {
    serde_json::to_value(Options::default()).expect("options serialize to JSON")
}

/// What was given for one key: its source, the text to quote, and whether it came typed (so
/// that a wrong type is worth naming).
struct Given {
    source: Source,
    text: String,
    typed: bool,
}

fn merge(assignments: Vec<Assignment>) -> Result<Options> {
    let mut tree = defaults();
    let mut provenance: BTreeMap<String, Given> = BTreeMap::new();

    for Assignment { key, value, source } in assignments {
        let Some(spec) = schema::spec(&key) else {
            if schema::is_group(&key) {
                let first = format!("{key}.{}", schema::members(&key)[0]);
                return Err(Error::config(format!(
                    "{} is a group of options, not a value: set one of its options, like {}",
                    describe(&key, &source),
                    spell(&first, &source)
                )));
            }
            return Err(unknown(&key, &source));
        };
        let (value, text, typed) = match value {
            Raw::Typed(v) => {
                let text = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (v, text, true)
            }
            Raw::Text(t) => (value::coerce(&t, spec), t, false),
        };
        *lookup_mut(&mut tree, &key).expect("schema keys are options") = value;
        provenance.insert(
            key,
            Given {
                source,
                text,
                typed,
            },
        );
    }

    let label = |key: &str| match provenance.get(key) {
        Some(given) => describe(key, &given.source),
        None => describe(key, &Source::Default),
    };
    // A secret's value is never repeated, not even to say what is wrong with it.
    let secret = |key: &str| schema::spec(key).is_some_and(|s| s.kind == Kind::Secret);
    let quoted = |key: &str| match provenance.get(key) {
        Some(given) if schema::spec(key).is_some_and(|s| s.kind == Kind::Backend) => {
            format!(" `{}`", schema::redact_url(&given.text))
        }
        Some(given) if !secret(key) => format!(" `{}`", given.text),
        _ => String::new(),
    };

    // Every value against the schema, in its order, before serde sees any.
    for spec in OPTIONS {
        let value = lookup(&tree, spec.key).expect("schema keys are options");
        if let Err(invalid) = value::check(spec, value) {
            // A config file or the code gave a value of another type: `port = "9400"` looks
            // like a port until one is told it is a string.
            let typed = provenance.get(spec.key).is_some_and(|given| given.typed);
            let got = match invalid {
                Invalid::Type if typed && !secret(spec.key) => {
                    format!(", got {}", value::describe(value))
                }
                _ => String::new(),
            };
            let detail = value::detail(&invalid).map_or(String::new(), |d| format!("; {d}"));
            return Err(Error::config(format!(
                "invalid value{} for {}: expected {}{got}{detail}",
                quoted(spec.key),
                label(spec.key),
                spec.expected
            )));
        }
    }

    // Only a disagreement between the schema and `Options` fails here; a test rules it out.
    let options: Options = serde_path_to_error::deserialize(tree).map_err(|err| {
        let key = err.path().to_string();
        let expected = schema::spec(&key).map_or("a valid value", |s| s.expected);
        Error::config(format!(
            "invalid value{} for {}: expected {expected}",
            quoted(&key),
            label(&key)
        ))
    })?;

    options.validate().map_err(|problem| {
        let message = match problem.other {
            None => format!(
                "invalid value{} for {}: {}",
                quoted(problem.key),
                label(problem.key),
                problem.message
            ),
            Some(other) => format!(
                "{} and {} {}",
                label(problem.key),
                label(other),
                problem.message
            ),
        };
        Error::config(message)
    })?;
    Ok(options)
}

fn lookup<'a>(tree: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.')
        .try_fold(tree, |node, part| node.as_object()?.get(part))
}

fn lookup_mut<'a>(tree: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    key.split('.')
        .try_fold(tree, |node, part| node.as_object_mut()?.get_mut(part))
}

fn unknown(key: &str, source: &Source) -> Error {
    let close = schema::did_you_mean(key, OPTIONS.iter().map(|s| s.key));
    let hint = match close.as_slice() {
        [] => String::new(),
        [one] => format!(" (did you mean {}?)", spell(one, source)),
        [one, two, ..] => format!(
            " (did you mean {} or {}?)",
            spell(one, source),
            spell(two, source)
        ),
    };
    let what = match source {
        Source::Flag(flag) => format!("unknown flag {flag}"),
        Source::Env(var) => format!("unknown environment variable {var}"),
        Source::File(path) => format!("unknown option `{key}` in config file {path}"),
        Source::Code | Source::Default => format!("unknown option `{key}` in #[cluster2::main]"),
    };
    Error::config(format!("{what}{hint}; --help lists every option"))
}

/// How the user would write `key` in the same layer as `source`.
fn spell(key: &str, source: &Source) -> String {
    match source {
        Source::Env(_) => env_name(key),
        Source::File(_) | Source::Code => format!("`{key}`"),
        Source::Flag(_) | Source::Default => super::cli::flag_name(key),
    }
}

fn describe(key: &str, source: &Source) -> String {
    match source {
        Source::Default => format!("{} (default)", super::cli::flag_name(key)),
        Source::Code => format!("`{key}` in #[cluster2::main]"),
        Source::File(path) => format!("`{key}` in config file {path}"),
        Source::Env(var) => var.clone(),
        Source::Flag(flag) => flag.clone(),
    }
}

const ENV_PREFIX: &str = "CLUSTER2_";

pub(crate) fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

fn env_layer(env: Vec<(OsString, OsString)>) -> Result<Vec<Assignment>> {
    let mut out = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        out.push(Assignment {
            key: rest.to_ascii_lowercase().replace("__", "."),
            value: Raw::Text(utf8(name, value)?),
            source: Source::Env(name.to_owned()),
        });
    }
    // The environment has no order of its own; sort so that errors are reproducible.
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// `RUST_LOG`, unless unset or empty (`RUST_LOG= app` is a common way to unset it).
fn rust_log(env: &[(OsString, OsString)]) -> Result<Option<Assignment>> {
    let Some((_, value)) = env.iter().find(|(name, _)| name == RUST_LOG) else {
        return Ok(None);
    };
    let value = utf8(RUST_LOG, value.clone())?;
    if value.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(Assignment {
        key: "log.level".to_owned(),
        value: Raw::Text(value),
        source: Source::Env(RUST_LOG.to_owned()),
    }))
}

fn utf8(name: &str, value: OsString) -> Result<String> {
    value
        .into_string()
        .map_err(|_| Error::config(format!("environment variable {name} is not valid UTF-8")))
}

/// The largest config file read: far more than any real one needs, and a bound on what a wrong
/// path (`/dev/zero`, a log file) can cost.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a config file: a regular file (not a FIFO, which would block, nor a device, which may
/// never end, nor a directory) of at most [`MAX_CONFIG_BYTES`], read with a bound even if it
/// grows meanwhile.
fn read_config(path: &Path) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = path.display();
    let cannot = |e: std::io::Error| {
        Error::config(format!("cannot read config file {shown}")).with_source(e)
    };
    // Opening a FIFO for reading waits for a writer; without blocking it cannot.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    let kind = meta.file_type();
    let not_a_file = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    };
    if let Some(what) = not_a_file {
        return Err(Error::config(format!(
            "config file {shown} is {what}, not a regular file: give a TOML file"
        )));
    }
    let too_large = || {
        Error::config(format!(
            "config file {shown} is larger than the limit of {MAX_CONFIG_BYTES} bytes (1 MiB)"
        ))
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::config(format!("config file {shown} is not UTF-8 text")))
}

fn file_layer(path: &Path, text: &str) -> Result<Vec<Assignment>> {
    let shown = path.display().to_string();
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        // toml's message spans several lines with a caret; keep the first, it names the spot.
        let first = e.to_string().lines().next().unwrap_or_default().to_owned();
        Error::config(format!("config file {shown} is not valid TOML: {first}"))
    })?;
    let mut out = Vec::new();
    flatten(&table, "", &shown, &mut out);
    Ok(out)
}

fn flatten(table: &toml::Table, prefix: &str, file: &str, out: &mut Vec<Assignment>) {
    for (k, v) in table {
        // Files may use kebab case like the flags do.
        let k = k.replace('-', "_");
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(child) => flatten(child, &key, file, out),
            other => out.push(Assignment {
                key,
                value: Raw::Typed(toml_to_json(other)),
                source: Source::File(file.to_owned()),
            }),
        }
    }
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn flags(pairs: &[(&str, &str)]) -> CommandLine {
        CommandLine {
            values: pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.to_string(),
                        super::super::cli::flag_name(k),
                    )
                })
                .collect(),
            config: None,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn later_layers_win() {
        let code = vec![("port".to_owned(), OptionValue::Int(1000))];
        let o = resolve(&code, &flags(&[]), env(&[])).unwrap();
        assert_eq!(o.port, 1000);
        let o = resolve(&code, &flags(&[]), env(&[("CLUSTER2_PORT", "2000")])).unwrap();
        assert_eq!(o.port, 2000);
        let o = resolve(
            &code,
            &flags(&[("port", "3000")]),
            env(&[("CLUSTER2_PORT", "2000")]),
        )
        .unwrap();
        assert_eq!(o.port, 3000);
    }

    #[test]
    fn rust_log_sits_between_the_code_and_the_config_file() {
        let level = |command_line: &CommandLine, vars: &[(&str, &str)]| {
            let code = [("log.level".to_owned(), OptionValue::from("warn"))];
            resolve(&code, command_line, env(vars)).map(|o| o.log.level)
        };
        assert_eq!(level(&flags(&[]), &[]).unwrap(), "warn");
        assert_eq!(
            level(&flags(&[]), &[("RUST_LOG", "debug")]).unwrap(),
            "debug"
        );
        // `RUST_LOG= app` unsets it.
        assert_eq!(level(&flags(&[]), &[("RUST_LOG", " ")]).unwrap(), "warn");

        let path =
            std::env::temp_dir().join(format!("cluster2-rust-log-{}.toml", std::process::id()));
        std::fs::write(&path, "[log]\nlevel = \"error\"\n").unwrap();
        let file = |pairs: &[(&str, &str)]| CommandLine {
            config: Some(path.clone()),
            ..flags(pairs)
        };
        let rust_log = ("RUST_LOG", "debug");
        assert_eq!(level(&file(&[]), &[rust_log]).unwrap(), "error");
        let specific = ("CLUSTER2_LOG__LEVEL", "trace");
        assert_eq!(level(&file(&[]), &[rust_log, specific]).unwrap(), "trace");
        let flag = [("log.level", "off")];
        assert_eq!(level(&file(&flag), &[rust_log, specific]).unwrap(), "off");
        std::fs::remove_file(&path).unwrap();

        let err = level(&flags(&[]), &[("RUST_LOG", "verbose")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value `verbose` for RUST_LOG: expected a log filter"),
            "{err}"
        );
        // Only the value in force is checked: a layer above can override a stray RUST_LOG.
        let over = flags(&[("log.level", "info")]);
        assert_eq!(level(&over, &[("RUST_LOG", "verbose")]).unwrap(), "info");
    }

    #[test]
    fn nested_keys_and_text_values() {
        let o = resolve(
            &[],
            &flags(&[("restart.delay", "250ms"), ("server", "http2")]),
            env(&[("CLUSTER2_LOG__LEVEL", "debug")]),
        )
        .unwrap();
        assert_eq!(o.restart.delay, Duration::from_millis(250));
        assert_eq!(o.server, super::super::ServerProtocol::Http2);
        assert_eq!(o.log.level, "debug");
    }

    #[test]
    fn errors_name_the_flag_and_what_is_valid() {
        let err = resolve(&[], &flags(&[("port", "eighty")]), env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value `eighty` for --port: expected a port number (0-65535)"
        );
        let err = resolve(&[], &flags(&[]), env(&[("CLUSTER2_MON_PROT", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown environment variable CLUSTER2_MON_PROT (did you mean CLUSTER2_MON_PORT?); \
             --help lists every option"
        );
        let err = resolve(&[], &flags(&[("restart", "1")]), env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--restart is a group of options"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_another_type_is_named() {
        let code = [("host".to_owned(), OptionValue::Int(127))];
        let err = resolve(&code, &flags(&[]), env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value `127` for `host` in #[cluster2::main]: expected an IP address or a \
             host name, got the number 127"
        );
        // Text from flags and variables has no type of its own to name.
        let err = resolve(&[], &flags(&[("port", "high")]), env(&[])).unwrap_err();
        assert!(!err.to_string().contains("got"), "{err}");
    }

    #[test]
    fn a_secret_is_never_repeated_in_an_error() {
        for bad in ["two words", "caf\u{e9}"] {
            let err = resolve(&[], &flags(&[("mon.token", bad)]), env(&[])).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with("invalid value for --mon.token: expected"),
                "{message}"
            );
            assert!(!message.contains(bad), "{message}");
        }
        let code = [("mon.token".to_owned(), OptionValue::Int(123_456_789))];
        let message = resolve(&code, &flags(&[]), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!message.contains("123456789"), "{message}");
        let token = resolve(&[], &flags(&[]), env(&[("CLUSTER2_MON__TOKEN", "s3cret")]))
            .unwrap()
            .mon
            .token
            .unwrap();
        assert_eq!(token.expose(), "s3cret");
    }

    #[test]
    fn none_clears_an_optional_value() {
        let o = resolve(&[], &flags(&[("warm_up_port", "9000")]), env(&[])).unwrap();
        assert_eq!(o.warm_up_port, Some(9000));
        let o = resolve(
            &[("warm_up_port".to_owned(), OptionValue::Int(9000))],
            &flags(&[("warm_up_port", "none")]),
            env(&[]),
        )
        .unwrap();
        assert_eq!(o.warm_up_port, None);
    }
}
