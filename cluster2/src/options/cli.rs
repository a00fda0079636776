//! The command line: one `--flag` per option (kebab case, dotted for nested options), plus
//! `--config`, `--check`, `--help`, `--version`, and application arguments after `--`; or, as
//! the first argument, a command for the running cluster: `stop`, `status [--json]`,
//! `reload`, `scale N|+N|-N`, `logs` (carried out by `control_cli`).
//!
//! clap does the syntax (`--port 8080`, `--port=8080`, bare booleans, suggestions, help); values
//! stay text here and are typed in [`super::resolve`], so every layer reports errors alike.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction};
use cluster2_options_schema::{self as schema, Kind, OPTIONS};

use super::OptionValue;
use super::resolve::{CommandLine, code_defaults};

/// The flags that are not options, for suggestions.
const OTHER_FLAGS: &[&str] = &["config", "check", "stop", "json", "help", "version"];

/// What the process does: run the cluster, or act on the one running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Run the cluster (the default).
    Serve,
    /// `stop` (or `--stop`): stop the running cluster.
    Stop,
    /// `status`: its workers, as a table or (`--json`) as the monitor's `/workers`.
    Status { json: bool },
    /// `reload`: a rolling restart, waited for.
    Reload,
    /// `scale N`, `scale +N`, `scale -N`: the argument as given, checked by the command.
    Scale(String),
    /// `logs`: every worker's log lines, live, until interrupted.
    Logs,
}

/// The commands for a running cluster, as the first argument.
const COMMANDS: &[&str] = &["stop", "status", "reload", "scale", "logs"];

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    /// Run the cluster (or, with `check`, print the resolved options and exit).
    Run {
        command_line: CommandLine,
        app_args: Vec<String>,
        check: bool,
        /// Run the cluster, or act on the running one.
        action: Action,
    },
    /// Print `output` and exit with `code` (help, version, or a usage error).
    Exit { code: i32, output: String },
}

/// `cache.enable` → `--cache.enable`; `mon_port` → `--mon-port`.
pub(crate) fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// Reads the command line; `code` is what the binary's code set (`#[cluster2::main]`,
/// `Builder::option`), which `--help` shows as the defaults.
pub(crate) fn parse_command_line(
    name: &str,
    version: &str,
    code: &[(String, OptionValue)],
    args: impl IntoIterator<Item = OsString>,
) -> Command {
    // `app stop` is `app --stop`; the other commands are taken off before clap reads flags
    // (with `scale`'s argument, which may look like a flag: `-1`).
    let mut args: Vec<OsString> = args.into_iter().collect();
    let command = args
        .get(1)
        .and_then(|a| a.to_str())
        .filter(|a| COMMANDS.contains(a))
        .map(str::to_owned);
    let mut scale_arg = None;
    match command.as_deref() {
        Some("stop") => args[1] = OsString::from("--stop"),
        Some("scale") => {
            args.remove(1);
            if args
                .get(1)
                .is_none_or(|a| a.to_str().is_some_and(|a| a.starts_with("--")))
            {
                return usage(
                    "scale needs a number of workers: `scale 4`, or a change: `scale +1`, \
                     `scale -1`",
                );
            }
            scale_arg = Some(args.remove(1).to_string_lossy().into_owned());
        }
        Some(_) => {
            args.remove(1);
        }
        None => {}
    }
    let matches = match build(name, version, code).try_get_matches_from(args) {
        Ok(m) => m,
        Err(err) => return from_clap_error(&err),
    };
    let mut command_line = CommandLine {
        config: matches.get_one::<String>("config").map(Into::into),
        ..CommandLine::default()
    };
    for spec in OPTIONS {
        if let Some(value) = matches.get_one::<String>(spec.key) {
            command_line
                .values
                .push((spec.key.to_owned(), value.clone(), flag_name(spec.key)));
        }
    }
    // Flags apply in the order given, so that a later `--port` overrides an earlier alias.
    command_line
        .values
        .sort_by_key(|(key, _, _)| matches.index_of(key.as_str()).unwrap_or(usize::MAX));
    let app_args = matches
        .get_many::<String>("app_args")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let json = matches.get_flag("json");
    let action = match (command.as_deref(), scale_arg) {
        (Some("status"), _) => Action::Status { json },
        (Some("reload"), _) => Action::Reload,
        (Some("scale"), Some(arg)) => Action::Scale(arg),
        (Some("logs"), _) => Action::Logs,
        _ if matches.get_flag("stop") => Action::Stop,
        _ => Action::Serve,
    };
    if json && !matches!(action, Action::Status { .. }) {
        return usage("--json goes with the status command: `status --json`");
    }
    Command::Run {
        command_line,
        app_args,
        check: matches.get_flag("check"),
        action,
    }
}

fn usage(message: &str) -> Command {
    Command::Exit {
        code: 2,
        output: format!("error: {message}\n"),
    }
}

fn build(name: &str, version: &str, code: &[(String, OptionValue)]) -> clap::Command {
    // What this binary runs with when nothing else is given: its code's values over the
    // built-in ones. `--help` describes this binary, not the library.
    let defaults = code_defaults(code);
    let mut cmd = clap::Command::new(name.to_owned())
        .version(format!(
            "{version} (cluster2 {})",
            env!("CARGO_PKG_VERSION")
        ))
        .about("A web application served by a supervised cluster of worker processes (cluster2).")
        .after_help(
            "Commands for the running cluster, as the first argument, found through --pids=DIR \
             (its pid file) or --mon-host/--mon-port, with --mon.token when it has one: \
             `stop`; `status` (its workers; --json for scripts); `reload` (replace every worker \
             one at a time, and wait); `scale N`, `scale +N`, `scale -N` (run N workers, or N \
             more or fewer); `logs` (every worker's log lines, live, until Ctrl-C).\n\n\
             The defaults shown are this application's: its #[cluster2::main(...)] values over \
             cluster2's own. Every option can also be set in the config file (--config) or as \
             an environment variable (CLUSTER2_PORT, CLUSTER2_RESTART__DELAY); the command line \
             wins over the environment, which wins over the file, which wins over RUST_LOG (for \
             --log.level), which wins over the defaults.",
        )
        .args_override_self(true)
        .disable_help_subcommand(true)
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE.toml")
                .help("read options from a TOML file (a regular file of at most 1 MiB)"),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .action(ArgAction::SetTrue)
                .help("resolve and check the options, print them as JSON, and exit"),
        )
        .arg(
            Arg::new("stop")
                .long("stop")
                .action(ArgAction::SetTrue)
                .help(
                    "stop the cluster running from --pids (also: `stop` as the first argument): \
                     SIGTERM, wait --stop-timeout, kill what is left; exit 1 if anything was",
                ),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("with `status`: print GET /workers of the monitor, as JSON, for scripts"),
        )
        .arg(
            Arg::new("app_args")
                .num_args(0..)
                .last(true)
                .value_name("APP ARGS")
                .help("arguments for the application, after --"),
        );
    for spec in OPTIONS {
        let long = flag_name(spec.key).trim_start_matches('-').to_owned();
        let default = defaults
            .pointer(&format!("/{}", spec.key.replace('.', "/")))
            .expect("schema keys are options");
        let shown = match default {
            serde_json::Value::Null => "unset".to_owned(),
            // A token the code set is the binary's, not something to print.
            _ if spec.kind == Kind::Secret => super::REDACTED.to_owned(),
            serde_json::Value::String(s) if spec.kind == Kind::Backend => {
                cluster2_options_schema::redact_url(s)
            }
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut arg = Arg::new(spec.key)
            .long(long.clone())
            .value_name(value_name(spec.kind))
            .help(format!("{} [default: {shown}]", spec.help))
            .action(ArgAction::Set);
        if long != spec.key {
            arg = arg.alias(spec.key);
        }
        if spec.kind == Kind::Bool {
            // `--cache.enable` alone means true; `--cache.enable=false` turns it off.
            arg = arg.num_args(0..=1).default_missing_value("true");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

fn value_name(kind: Kind) -> String {
    match kind {
        Kind::Bool => "BOOL".to_owned(),
        Kind::Port { .. } => "PORT".to_owned(),
        Kind::Count { .. } => "N".to_owned(),
        Kind::HttpStatus => "STATUS".to_owned(),
        Kind::Host => "HOST".to_owned(),
        Kind::Duration { .. } => "DURATION".to_owned(),
        Kind::Size { .. } => "SIZE".to_owned(),
        Kind::OneOf(choices) => choices.join("|"),
        Kind::UrlPath { .. } => "PATH".to_owned(),
        Kind::Directory => "DIR".to_owned(),
        Kind::File => "FILE".to_owned(),
        Kind::Bind => "unix:PATH".to_owned(),
        Kind::FileMode => "MODE".to_owned(),
        Kind::Text => "TEXT".to_owned(),
        Kind::LogFilter => "FILTER".to_owned(),
        Kind::Secret => "TOKEN".to_owned(),
        Kind::Backend => "URL".to_owned(),
        Kind::Name => "NAME".to_owned(),
        Kind::LogDestination => "DEST".to_owned(),
        Kind::Buckets => "BOUNDS".to_owned(),
    }
}

/// " (did you mean --mon-port?)" for a mistyped flag, by the schema's one rule.
fn suggestion(flag: &str) -> String {
    let name = flag.trim_start_matches('-').replace('_', "-");
    let flags: Vec<String> = OPTIONS
        .iter()
        .map(|s| flag_name(s.key)[2..].to_owned())
        .chain(OTHER_FLAGS.iter().map(|f| (*f).to_owned()))
        .collect();
    match schema::did_you_mean(&name, flags.iter().map(String::as_str)).as_slice() {
        [] => String::new(),
        [one] => format!(" (did you mean --{one}?)"),
        [one, two, ..] => format!(" (did you mean --{one} or --{two}?)"),
    }
}

fn context(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

fn from_clap_error(err: &clap::Error) -> Command {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Command::Exit {
            code: 0,
            output: err.render().to_string(),
        },
        kind => {
            let arg = context(err, ContextKind::InvalidArg).unwrap_or_default();
            let message = match kind {
                ErrorKind::UnknownArgument if arg.starts_with('-') => {
                    let hint = suggestion(&arg);
                    format!("unknown flag {arg}{hint}; --help lists every option")
                }
                ErrorKind::UnknownArgument => format!(
                    "unexpected argument `{arg}`: options are --flags, and arguments for the \
                     application go after --"
                ),
                ErrorKind::InvalidValue | ErrorKind::NoEquals => {
                    let flag = arg.split_whitespace().next().unwrap_or(&arg).to_owned();
                    let key = flag.trim_start_matches('-').replace('-', "_");
                    let expected = schema::spec(&key).map_or("a value", |s| s.expected);
                    format!("missing value for {flag}: expected {expected}")
                }
                _ => {
                    let text = err.render().to_string();
                    let first = text.lines().next().unwrap_or("invalid command line");
                    first.trim_start_matches("error: ").to_owned()
                }
            };
            Command::Exit {
                code: 2,
                output: format!("error: {}\n", crate::error::one_line(message)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        let argv = std::iter::once("app")
            .chain(args.iter().copied())
            .map(OsString::from);
        parse_command_line("app", "1.0.0", &[], argv)
    }

    fn values(cmd: Command) -> Vec<(String, String)> {
        match cmd {
            Command::Run { command_line, .. } => command_line
                .values
                .into_iter()
                .map(|(k, v, _)| (k, v))
                .collect(),
            Command::Exit { output, .. } => panic!("unexpected exit: {output}"),
        }
    }

    fn error(cmd: Command) -> String {
        match cmd {
            Command::Exit { code: 2, output } => output,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn both_value_forms_and_kebab_and_snake_case() {
        assert_eq!(
            values(parse(&["--port=1", "--mon-port", "2", "--warm_up_port=3"])),
            [("port", "1"), ("mon_port", "2"), ("warm_up_port", "3")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn nested_flags() {
        assert_eq!(
            values(parse(&["--restart.max-delay=1m", "--log.level", "debug"])),
            [("restart.max_delay", "1m"), ("log.level", "debug")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn the_last_occurrence_wins() {
        assert_eq!(
            values(parse(&["--port=1", "--port=2"])),
            [("port".to_owned(), "2".to_owned())]
        );
    }

    #[test]
    fn unknown_flags_suggest_the_right_one() {
        assert_eq!(
            error(parse(&["--mon-prot=1"])),
            "error: unknown flag --mon-prot (did you mean --mon-port?); --help lists every option\n"
        );
    }

    #[test]
    fn missing_values_say_what_is_valid() {
        assert_eq!(
            error(parse(&["--port"])),
            "error: missing value for --port: expected a port number (0-65535)\n"
        );
    }

    #[test]
    fn application_arguments_follow_the_double_dash() {
        match parse(&["--port=1", "--", "--not-ours", "x"]) {
            Command::Run { app_args, .. } => assert_eq!(app_args, ["--not-ours", "x"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_lists_every_option_with_its_default() {
        let Command::Exit { code: 0, output } = parse(&["--help"]) else {
            panic!("--help should exit 0")
        };
        for spec in OPTIONS {
            assert!(
                output.contains(&flag_name(spec.key)),
                "{} missing from help",
                spec.key
            );
        }
        assert!(output.contains("[default: 8080]"));
    }

    /// `#[cluster2::main(port = 9090, workers = 4)]`: that is what runs, so that is what
    /// `--help` shows.
    #[test]
    fn help_shows_the_defaults_the_code_set() {
        let code = [
            ("port".to_owned(), OptionValue::Int(9090)),
            ("workers".to_owned(), OptionValue::Int(4)),
            ("restart.delay".to_owned(), OptionValue::from("250ms")),
            // Reported when the binary runs; here it leaves the built-in default.
            ("mon_port".to_owned(), OptionValue::from("high")),
        ];
        let args = ["app", "--help"].map(OsString::from);
        let Command::Exit { code: 0, output } = parse_command_line("app", "1.0.0", &code, args)
        else {
            panic!("--help should exit 0")
        };
        let line = |flag: &str| {
            let at = output.find(&format!("{flag} <")).expect(flag);
            output[at..].split(']').next().unwrap().to_owned()
        };
        assert!(line("--port").ends_with("[default: 9090"), "{output}");
        assert!(line("--workers").ends_with("[default: 4"), "{output}");
        assert!(
            line("--restart.delay").ends_with("[default: 250ms"),
            "{output}"
        );
        assert!(line("--mon-port").ends_with("[default: 8081"), "{output}");
    }

    #[test]
    fn help_never_shows_a_token() {
        let code = [("mon.token".to_owned(), OptionValue::from("hunter2-in-code"))];
        let args = ["app", "--help"].map(OsString::from);
        let Command::Exit { code: 0, output } = parse_command_line("app", "1.0.0", &code, args)
        else {
            panic!("--help should exit 0")
        };
        assert!(!output.contains("hunter2"), "{output}");
        assert!(output.contains(&format!("[default: {}]", super::super::REDACTED)));
    }
}
