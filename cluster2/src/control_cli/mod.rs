//! The commands for a running cluster, as the first argument of any cluster2 binary:
//! `status [--json]`, `reload`, `scale N|+N|-N` (`stop` is the master's own, in
//! `master/stop.rs`). Each one talks to the master through its monitor, like any other client:
//! found from the pid file (`--pids=DIR`, proven as `stop` proves it) or from
//! `--mon-host`/`--mon-port`, with `--mon.token` when the cluster has one (`find.rs`), over a
//! small HTTP/1.1 client on hyper (`client.rs`). `status` renders `/workers` (`status.rs`);
//! `reload` and `scale` ask, then wait until it is done (`wait.rs`).
//!
//! Each failure is one line on standard error naming what was wrong, and an exit status of
//! its own (`exit.rs`): 2 a bad argument, 5 no master found, 6 the monitor unreachable, 7 the
//! token missing or refused, 1 what was asked failed (a successor, a refused scale).

use std::process::ExitCode;

use crate::exit;
use crate::options::{Action, Options};

/// `println!`, through [`write_line`]; defined before the modules that use it.
macro_rules! say {
    ($($arg:tt)*) => { $crate::control_cli::write_line(format_args!($($arg)*)) };
}

mod client;
mod find;
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
            Action::Serve | Action::Stop => unreachable!("not a control command"),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

/// Writes a line of the command's output. A reader that went away (`status --json | head`)
/// is no error of the command's: what is left is dropped.
fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("error: {}", failure.message());
    exit::code(failure.status())
}
