//! `cluster2-bench`: measures cluster2's `hello` example against peers run in the same
//! invocation, and prints a Markdown section for `BENCHMARKS.md`.
//!
//! ```text
//! cargo build --release -p example-hello -p cluster2-bench
//! cargo run --release -p cluster2-bench -- <startup|rss|http|https|emitter|cache|cache-evict|redis|rolling|profile|layer|logs|scale|access-log|all> [--runs N] [--duration 10s]
//! ```
//!
//! Every figure is reported next to its peer's from the same run, and as a ratio, because
//! absolute numbers on a small shared machine move from one run to the next. Targets are
//! reported as met or not met; they never make the program fail.
//!
//! Every process the benchmark starts runs in its own process group and is stopped, and
//! checked to be gone, before the next starts; on an error, a panic or Ctrl-C every group still
//! running is killed.

mod access_log;
mod cache;
mod cache_evict;
mod cache_redis;
mod cli;
mod cpu;
mod http;
mod https;
mod ipc;
mod layer;
mod logs;
mod proc;
mod profile;
mod report;
mod retry;
mod rolling;
mod rss;
mod scale;
mod servers;
mod startup;
mod stats;
mod ticks;

use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

use cli::{Config, Parsed};
use servers::Bins;

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    // One thread: children are spawned from it, which their parent-death signal relies on, and
    // the benchmark itself takes as little CPU from the servers under test as it can.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(guarded(&config))
}

/// Runs the benchmarks until they finish or a signal arrives; either way, the processes they
/// started are gone when this returns.
async fn guarded(config: &Config) -> ExitCode {
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = signals else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    // Leaving the select drops the benchmark's future, and with it every running process,
    // whose drop kills its process group.
    let interrupted = tokio::select! {
        outcome = run(config) => {
            return match outcome {
                Ok(markdown) => {
                    println!("{markdown}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    };
    eprintln!("{interrupted}: stopped every process the benchmark had started");
    ExitCode::from(130)
}

async fn run(config: &Config) -> Result<String, String> {
    let bins = Bins::find(config)?;
    let mut md = report::header(config).await;
    if config.which.startup() {
        let section = startup::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.rss() {
        let section = rss::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.http() {
        let section = http::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.https() {
        let section = https::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.emitter() {
        let section = ipc::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.cache() {
        let section = cache::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.cache_evict() {
        let section = cache_evict::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.redis() {
        let section = cache_redis::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.rolling() {
        let section = rolling::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.profile() {
        let section = profile::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.layer() {
        let section = layer::run(config, &bins, config.hello_rps).await?;
        md.push_str(&with_load(section));
    }
    if config.which.logs() {
        let section = logs::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.scale() {
        let section = scale::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    if config.which.access_log() {
        let section = access_log::run(config, &bins).await?;
        md.push_str(&with_load(section));
    }
    Ok(md)
}

/// A section, followed by the load average at its end: one of the signs of other work on the
/// machine (the benchmark's own processes count too).
fn with_load(section: String) -> String {
    format!(
        "{section}\nLoad average (1, 5, 15 min) at the end of this section: {}.\n\n",
        report::load_average()
    )
}
