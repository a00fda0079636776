//! Options from every layer, in order of precedence, and every kind of command-line error.
//! `--check` resolves the options, prints them as JSON and exits, so no cluster starts here.

use std::process::{Command, Output};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(APP)
        .args(args)
        // It sets `log.level`; the tests' own shell must not.
        .env_remove("RUST_LOG")
        .envs(envs.iter().copied())
        .output()
        .expect("run the fixture")
}

fn check(args: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec!["--check"];
    all.extend_from_slice(args);
    let out = run(&all, envs);
    assert!(
        out.status.success(),
        "--check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--check prints JSON")
}

/// Runs, expects exit status 2 and exactly one line on stderr, and returns it.
fn usage_error(args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = run(args, envs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "args {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(out.stdout.is_empty());
    stderr.trim_end().to_owned()
}

/// A config file with `contents`, removed when dropped.
struct TempFile(cluster2_tests::TempPath);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = cluster2_tests::TempPath::new(name);
        std::fs::write(path.path(), contents).unwrap();
        Self(path)
    }

    fn arg(&self) -> String {
        format!("--config={}", self.0.as_str())
    }
}

#[test]
fn precedence_is_defaults_then_macro_then_file_then_environment_then_command_line() {
    // Built-in default (not set by the fixture's macro).
    assert_eq!(check(&[], &[])["mon_port"], 8081);
    // #[cluster2::main(port = 7001, stop_timeout = "10s")] beats the defaults.
    let o = check(&[], &[]);
    assert_eq!(o["port"], 7001);
    assert_eq!(o["stop_timeout"], "10s");
    // A config file beats the macro.
    let file = TempFile::new("layers.toml", "port = 7002\n[restart]\ndelay = \"1s\"\n");
    let o = check(&[&file.arg()], &[]);
    assert_eq!(o["port"], 7002);
    assert_eq!(o["restart"]["delay"], "1s");
    // The environment beats the file, nested keys included.
    let env = [("CLUSTER2_PORT", "7003"), ("CLUSTER2_RESTART__DELAY", "2s")];
    let o = check(&[&file.arg()], &env);
    assert_eq!(o["port"], 7003);
    assert_eq!(o["restart"]["delay"], "2s");
    // The command line beats everything.
    let o = check(&[&file.arg(), "--port=7004", "--restart.delay", "3s"], &env);
    assert_eq!(o["port"], 7004);
    assert_eq!(o["restart"]["delay"], "3s");
}

#[test]
fn flags_take_both_forms_kebab_and_snake_case_and_durations() {
    let o = check(
        &[
            "--mon-port",
            "7100",
            "--warm_up_port=9000",
            "--stop-timeout=3d",
            "--heartbeat-interval=500ms",
            "--server=http1",
            "--log.level=debug",
        ],
        &[],
    );
    assert_eq!(o["mon_port"], 7100);
    assert_eq!(o["warm_up_port"], 9000);
    assert_eq!(o["stop_timeout"], "3days");
    assert_eq!(o["heartbeat_interval"], "500ms");
    assert_eq!(o["server"], "http1");
    assert_eq!(o["log"]["level"], "debug");
    // A repeated flag: the last one wins.
    assert_eq!(check(&["--port=1", "--port=2"], &[])["port"], 2);
}

#[test]
fn unknown_flags_suggest_the_closest() {
    let line = usage_error(&["--mon-prot=8000"], &[]);
    assert!(line.contains("unknown flag --mon-prot"), "{line}");
    assert!(line.contains("did you mean --mon-port?"), "{line}");
}

#[test]
fn bad_values_name_the_flag_and_what_is_valid() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--port=eighty"],
            "invalid value `eighty` for --port: expected a port number (0-65535)",
        ),
        (
            &["--port=70000"],
            "invalid value `70000` for --port: expected a port number (0-65535)",
        ),
        (
            &["--workers=0"],
            "invalid value `0` for --workers: expected a whole number from 1 to 1024",
        ),
        // Ranges come from the option schema, the one #[cluster2::main] checks at compile time.
        (
            &["--cache.spin=5ms"],
            "invalid value `5ms` for --cache.spin: expected a duration from 0s to 1ms, like 50us",
        ),
        (
            &["--warm-up-port=0"],
            "invalid value `0` for --warm-up-port: expected a port number (1-65535), or none",
        ),
        (
            &["--startup-timeout=0s"],
            "invalid value `0s` for --startup-timeout: expected a duration of more than 0s",
        ),
        (
            &["--server=http3"],
            "invalid value `http3` for --server: expected auto, http1 or http2",
        ),
        (
            &["--stop-timeout=5"],
            "invalid value `5` for --stop-timeout: expected a duration from 0s to 7days, like \
             500ms, 5s or 3d; a number needs a unit: 5s, 5ms or 5m",
        ),
        (
            &["--port"],
            "missing value for --port: expected a port number (0-65535)",
        ),
        (
            &["--log.level=[nope"],
            "invalid value `[nope` for --log.level",
        ),
    ];
    for (args, expected) in cases {
        let line = usage_error(args, &[]);
        assert!(
            line.starts_with(&format!("error: {expected}")),
            "{args:?}: {line}"
        );
    }
}

/// Every number and duration has an upper bound (and the restart delays a floor): beyond them
/// a typo forks a thousand workers, panics the runtime or overflows a clock. Each is refused
/// with exit status 2, naming the flag and the valid range.
#[test]
fn every_number_and_duration_is_bounded() {
    let cases: &[(&str, &str)] = &[
        ("--workers=100000", "a whole number from 1 to 1024"),
        (
            "--threads=100000",
            "a whole number from 0 to 1024 (0: automatic)",
        ),
        ("--backlog=70000", "a whole number from 1 to 65535"),
        ("--death-queue.retries=1000", "a whole number from 1 to 100"),
        ("--heartbeat-interval=0s", "a duration from 10ms to 1h"),
        ("--heartbeat-interval=2h", "a duration from 10ms to 1h"),
        (
            "--startup-timeout=2d",
            "a duration of more than 0s, up to 1day",
        ),
        ("--stop-timeout=30000d", "a duration from 0s to 7days"),
        // 0s gave hundreds of restarts a second: doubling nothing stays nothing.
        ("--restart.delay=0s", "a duration from 10ms to 1h"),
        ("--restart.max-delay=50ms", "a duration from 100ms to 1day"),
        ("--ecv.timeout=2h", "a duration from 0s to 1h"),
        ("--ecv.drain-delay=2h", "a duration from 0s to 1h"),
        ("--max-age=1000d", "a duration from 0s to 30days"),
        (
            "--nanny.tolerance=2d",
            "a duration of more than 0s, up to 1day",
        ),
        (
            "--death-queue.timeout=2d",
            "a duration of more than 0s, up to 1day",
        ),
        ("--cache.timeout=2h", "a duration of more than 0s, up to 1h"),
        (
            "--cache.max-value=2000000000",
            "a number of bytes (1 to 1073741824)",
        ),
    ];
    for (arg, range) in cases {
        let (flag, value) = arg.split_once('=').unwrap();
        let line = usage_error(&[arg], &[]);
        assert!(
            line.starts_with(&format!(
                "error: invalid value `{value}` for {flag}: expected {range}"
            )),
            "{arg}: {line}"
        );
    }
    // The floors themselves are accepted.
    let o = check(&["--restart.delay=10ms", "--restart.max-delay=100ms"], &[]);
    assert_eq!(o["restart"]["delay"], "10ms");
}

/// More than 8 workers per CPU is most likely a typo: refused unless forced, and the message
/// says how to force it.
#[test]
fn more_than_8_workers_per_cpu_need_force_workers() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let most = 8 * cpus;
    assert_eq!(check(&[&format!("--workers={most}")], &[])["workers"], most);
    let over = format!("--workers={}", most + 1);
    let line = usage_error(&[&over], &[]);
    assert_eq!(
        line,
        format!(
            "error: invalid value `{}` for --workers: more than 8 workers per CPU (this machine \
             has {cpus}, so at most {most}); set --force-workers to run them anyway (at most \
             1024)",
            most + 1
        )
    );
    let o = check(&[&over, "--force-workers"], &[]);
    assert_eq!(
        (o["workers"].as_u64(), o["force_workers"].as_bool()),
        (Some(most as u64 + 1), Some(true))
    );
}

/// A host name is looked up when the master starts (and by `--check`): one that does not resolve
/// is a bad value, named with its flag, before anything is bound or started.
#[test]
fn host_names_that_do_not_resolve_are_refused() {
    // `.invalid` never resolves (RFC 2606).
    for (flag, check) in [("--host", false), ("--mon-host", false), ("--host", true)] {
        let arg = format!("{flag}=no-such-host.invalid");
        let mut args = vec![arg.as_str(), "--port=0", "--mon-port=0"];
        if check {
            args.push("--check");
        }
        let line = usage_error(&args, &[]);
        let expected = format!(
            "error: invalid value `no-such-host.invalid` for {flag}: the host name does not resolve"
        );
        assert!(line.starts_with(&expected), "{args:?}: {line}");
    }
    // Written wrong, it is refused as any bad value is, before any lookup.
    let line = usage_error(&["--host=my host"], &[]);
    assert_eq!(
        line,
        "error: invalid value `my host` for --host: expected an IP address or a host name"
    );
    // localhost is the loopback addresses, which a monitor may use without a token.
    let o = check(&["--host=localhost", "--mon-host=LOCALHOST"], &[]);
    assert_eq!(
        (o["host"].as_str(), o["mon_host"].as_str()),
        (Some("localhost"), Some("LOCALHOST"))
    );
}

/// tracing reads a word that is not a level as a target to log at every level: `verbose` or
/// `infoo` would be a filter that matches nothing, and the cluster would print nothing at all.
#[test]
fn log_filters_that_match_nothing_are_refused() {
    const EXPECTED: &str = "expected a log filter like info or warn,my_app=debug: a level or \
                            target=level, comma-separated";
    assert_eq!(
        usage_error(&["--log.level=verbose"], &[]),
        format!(
            "error: invalid value `verbose` for --log.level: {EXPECTED}; `verbose` is not a \
             level (off, error, warn, info, debug, trace); to filter a target, give it a \
             level: `verbose=debug`"
        )
    );
    assert_eq!(
        usage_error(&[], &[("CLUSTER2_LOG__LEVEL", "warn,my_app=infoo")]),
        format!(
            "error: invalid value `warn,my_app=infoo` for CLUSTER2_LOG__LEVEL: {EXPECTED}; in \
             `my_app=infoo`, `infoo` is not a level; did you mean `info`?"
        )
    );
    let o = check(&["--log.level=warn,my_app::db=DEBUG,hyper=off"], &[]);
    assert_eq!(o["log"]["level"], "warn,my_app::db=DEBUG,hyper=off");
}

#[test]
fn rust_log_sets_the_log_level_under_the_config_file() {
    assert_eq!(check(&[], &[])["log"]["level"], "info");
    let rust_log = ("RUST_LOG", "warn,my_app=debug");
    assert_eq!(check(&[], &[rust_log])["log"]["level"], "warn,my_app=debug");
    let file = TempFile::new("log.toml", "[log]\nlevel = \"error\"\n");
    assert_eq!(check(&[&file.arg()], &[rust_log])["log"]["level"], "error");
    let specific = ("CLUSTER2_LOG__LEVEL", "trace");
    let o = check(&[&file.arg()], &[rust_log, specific]);
    assert_eq!(o["log"]["level"], "trace");
    let o = check(&[&file.arg(), "--log.level=off"], &[rust_log, specific]);
    assert_eq!(o["log"]["level"], "off");

    let line = usage_error(&[], &[("RUST_LOG", "verbose")]);
    assert!(
        line.starts_with("error: invalid value `verbose` for RUST_LOG: expected a log filter"),
        "{line}"
    );
}

#[test]
fn conflicting_ports_are_refused_naming_both_sources() {
    let line = usage_error(&["--port=7100"], &[("CLUSTER2_MON_PORT", "7100")]);
    assert_eq!(
        line,
        "error: --port and CLUSTER2_MON_PORT are both 7100: the application and the monitor \
         need different ports"
    );
}

#[test]
fn environment_and_file_errors_name_their_source() {
    let line = usage_error(&[], &[("CLUSTER2_PORTT", "1")]);
    assert!(
        line.contains("unknown environment variable CLUSTER2_PORTT"),
        "{line}"
    );
    assert!(line.contains("did you mean CLUSTER2_PORT?"), "{line}");

    let line = usage_error(&[], &[("CLUSTER2_PORT", "x")]);
    assert!(
        line.contains("invalid value `x` for CLUSTER2_PORT"),
        "{line}"
    );

    let file = TempFile::new("unknown.toml", "prot = 1\n");
    let line = usage_error(&[&file.arg()], &[]);
    assert!(
        line.contains("unknown option `prot` in config file"),
        "{line}"
    );
    assert!(line.contains("did you mean `port`?"), "{line}");

    let file = TempFile::new("typed.toml", "port = \"high\"\n");
    let line = usage_error(&[&file.arg()], &[]);
    assert!(
        line.contains("invalid value `high` for `port` in config file"),
        "{line}"
    );

    // A number in quotes looks right until one is told it is a string.
    let file = TempFile::new("quoted.toml", "port = \"9400\"\n");
    assert_eq!(
        usage_error(&[&file.arg()], &[]),
        format!(
            "error: invalid value `9400` for `port` in config file {}: expected a port number \
             (0-65535), got the string \"9400\"",
            file.0.path().display()
        )
    );
    let file = TempFile::new("duration.toml", "stop_timeout = 30\n");
    let line = usage_error(&[&file.arg()], &[]);
    assert!(
        line.contains("for `stop_timeout` in config file")
            && line.ends_with(
                "expected a duration from 0s to 7days, like 500ms, 5s or 3d, got the number 30"
            ),
        "{line}"
    );

    let file = TempFile::new("broken.toml", "port = \n");
    let line = usage_error(&[&file.arg()], &[]);
    assert!(line.contains("is not valid TOML"), "{line}");

    let line = usage_error(&["--config=/nonexistent/cluster2.toml"], &[]);
    assert!(
        line.contains("cannot read config file /nonexistent/cluster2.toml"),
        "{line}"
    );
}

/// `--config` reads regular files only, of at most 1 MiB: a FIFO would block for ever and
/// `/dev/zero` would never end. Each is one clear line and exit status 2, at once.
#[test]
fn a_config_that_is_not_a_small_regular_file_is_refused_at_once() {
    let line = usage_error(&["--config=/dev/zero"], &[]);
    assert_eq!(
        line,
        "error: config file /dev/zero is a device, not a regular file: give a TOML file"
    );

    let dir = cluster2_tests::TempPath::new("config-dir");
    std::fs::create_dir(dir.path()).unwrap();
    let line = usage_error(&[&format!("--config={}", dir.as_str())], &[]);
    assert!(
        line.ends_with("is a directory, not a regular file: give a TOML file"),
        "{line}"
    );

    // No writer will ever come: opening it must not wait for one.
    let fifo = cluster2_tests::TempPath::new("config.fifo");
    nix::unistd::mkfifo(fifo.path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let line = usage_error(&[&format!("--config={}", fifo.as_str())], &[]);
    assert!(
        line.ends_with("is a FIFO, not a regular file: give a TOML file"),
        "{line}"
    );

    // Valid TOML, only too long: comments past the limit.
    let mut big = String::from("port = 7005\n");
    while big.len() <= 1 << 20 {
        big.push_str("# a comment line, repeated until the file is past one mebibyte\n");
    }
    let file = TempFile::new("big.toml", &big);
    let line = usage_error(&[&file.arg()], &[]);
    assert!(
        line.ends_with("is larger than the limit of 1048576 bytes (1 MiB)"),
        "{line}"
    );
    // At the limit it is read.
    big.truncate(1 << 20);
    let at_limit = big.rfind('\n').unwrap() + 1;
    big.truncate(at_limit);
    let file = TempFile::new("at-limit.toml", &big);
    assert_eq!(check(&[&file.arg()], &[])["port"], 7005);
}

#[test]
fn stray_arguments_are_refused() {
    let line = usage_error(&["serve"], &[]);
    assert!(line.contains("unexpected argument `serve`"), "{line}");
    assert!(line.contains("after --"), "{line}");
}

#[test]
fn help_lists_every_option_with_its_default_and_version_names_the_app() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--port",
        "--host",
        "--mon-port",
        "--mon-host",
        "--workers",
        "--threads",
        "--warm-up-port",
        "--heartbeat-interval",
        "--startup-timeout",
        "--stop-timeout",
        "--server",
        "--backlog",
        "--restart.delay",
        "--restart.max-delay",
        "--log.level",
        "--config",
        "--check",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    assert!(help.contains("[default: 8081]"), "{help}");

    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("cluster2-tests 0.0.0"), "{version}");
}

/// The fixture's `#[cluster2::main(port = 7001, workers = 2, stop_timeout = "10s")]` is what
/// it runs with, so `--help` must show those, and every default it shows must be what `--check`
/// resolves with nothing else given.
#[test]
fn help_shows_the_defaults_this_binary_runs_with() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let resolved = check(&[], &[]);
    let mut seen = 0;
    for line in help.lines() {
        let line = line.trim_start();
        let Some(flag) = line
            .split_whitespace()
            .next()
            .filter(|f| f.starts_with("--"))
        else {
            continue;
        };
        let Some((_, default)) = line.rsplit_once("[default: ") else {
            continue;
        };
        let default = default.trim_end_matches(']');
        let key = flag.trim_start_matches("--").replace('-', "_");
        let pointer = format!("/{}", key.replace('.', "/"));
        let value = resolved
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{key}"));
        let shown = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "unset".to_owned(),
            other => other.to_string(),
        };
        assert_eq!(default, shown, "{flag} in --help:\n{help}");
        seen += 1;
    }
    assert_eq!(seen, cluster2_macros_keys().len(), "{help}");
    for (flag, default) in [
        ("--port", "7001"),
        ("--workers", "2"),
        ("--stop-timeout", "10s"),
    ] {
        let line = help
            .lines()
            .find(|l| l.contains(&format!("{flag} <")))
            .unwrap();
        assert!(line.ends_with(&format!("[default: {default}]")), "{line}");
    }
}

#[test]
fn the_macro_options_match_the_runtime_options() {
    let mut from_macro: Vec<&str> = cluster2_macros_keys().to_vec();
    from_macro.sort_unstable();
    let o = check(&[], &[]);
    let mut from_runtime = Vec::new();
    leaves(&o, "", &mut from_runtime);
    from_runtime.sort();
    assert_eq!(from_macro, from_runtime);
}

fn cluster2_macros_keys() -> &'static [&'static str] {
    &cluster2::__private::option_keys!()
}

fn leaves(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_object() {
                leaves(v, &key, out);
            } else {
                out.push(key);
            }
        }
    }
}
