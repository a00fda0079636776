//! Logging for every process of the cluster: one line per event on standard error, prefixed
//! with the process it came from, since master and workers share the terminal; a filter that
//! can be changed while the process runs; and the lines of any process streamed to the
//! monitor while someone watches them.
//!
//! The subscriber is a registry with three layers. First the filter: one global `EnvFilter`
//! behind `reload`, so that it can be replaced live (a per-layer filter cannot be reloaded),
//! and so that both other layers see only what it lets through: what is streamed is what
//! standard error shows. Then the line writer, then the forwarding layer (`forward`), which
//! costs one atomic load per line while nobody watches. The master's side of streaming, who
//! watches which process and the fan-out to each watcher, is `hub`. Beside the filter, the
//! HTTP libraries' warnings about clients are rate-limited (`throttle`).
//!
//! With `log.format = json` the line writer writes one JSON object per line instead
//! (`json`), with the process's role, pid and worker id as fields; the filter, forwarding and
//! throttling are the same. The access log (`access`) is apart from all this: it is no tracing
//! event, it has its own writer thread and bounded buffer, and costs one branch per request
//! when it is off.

pub(crate) mod access; // one line per request, off the serving threads, to a file or stdio
pub(crate) mod forward; // a process's side of streaming: the forwarding layer and its task
pub(crate) mod hub; // the master's side: watchers per process, fan-out, each process's filter
mod human; // durations as people write them, for every line that reports one
mod json; // every other line as one JSON object, with role, pid and worker id
mod throttle; // the HTTP libraries' warnings about clients, at most one per place per window

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::ipc::channel::Sender;
use crate::ipc::message::{LogControl, ToMaster};
use crate::options::LogFormat;

pub(crate) use hub::current_filter;
pub(crate) use human::{human, human_secs};

/// Replaces the filter of this process's subscriber; set only when cluster2's subscriber is
/// the one installed.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The filter this process started with (`log.level`).
static CONFIGURED: OnceLock<String> = OnceLock::new();

struct Line {
    label: String,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let meta = event.metadata();
        write!(writer, " {:>5} {}: ", meta.level(), self.label)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(held) = throttle::held_back(meta) {
            write!(writer, " (and {held} more like this before it, not shown)")?;
        }
        writeln!(writer)
    }
}

/// The process a line comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Who {
    /// The master.
    Master,
    /// A worker, with its id.
    Worker(usize),
    /// The standalone cache manager.
    Cache,
}

impl Who {
    /// The role as JSON lines name it.
    fn role(self) -> &'static str {
        match self {
            Who::Master => "master",
            Who::Worker(_) => "worker",
            Who::Cache => "cache",
        }
    }

    /// The prefix of a text line: `master[41]`, `worker 2[43]`, `cache[42]`.
    fn label(self) -> String {
        let pid = std::process::id();
        match self {
            Who::Master => format!("master[{pid}]"),
            Who::Worker(id) => format!("worker {id}[{pid}]"),
            Who::Cache => format!("cache[{pid}]"),
        }
    }
}

/// Installs the subscriber unless the application installed its own first.
pub(crate) fn init(who: Who, level: &str, format: LogFormat) {
    // Validated with the options, and read the same way; the fallback only guards against a
    // racing change.
    let filter = crate::options::log_filter(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    // One layer type either way: the format is a choice made once, not a second subscriber.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal())
        .event_format(match format {
            LogFormat::Json => Format::Json(json::JsonLine::new(who)),
            _ => Format::Text(Line { label: who.label() }),
        });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(forward::Forward)
        .with(throttle::Throttle)
        .try_init()
        .is_ok();
    let _ = CONFIGURED.set(level.to_owned());
    if installed {
        let _ = FILTER.set(handle);
    }
}

/// The line writer's format, chosen at start.
enum Format {
    Text(Line),
    Json(json::JsonLine),
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match self {
            Format::Text(line) => line.format_event(ctx, writer, event),
            Format::Json(line) => line.write(writer, event),
        }
    }
}

/// The filter this process started with.
fn configured() -> String {
    CONFIGURED.get().cloned().unwrap_or_default()
}

/// Replaces this process's log filter, checked as `log.level` is.
pub(crate) fn set_filter(text: &str) -> Result<(), String> {
    let filter = crate::options::log_filter(text)?;
    let handle = FILTER.get().ok_or(
        "this process logs through a subscriber the application installed, whose filter \
         cluster2 cannot change",
    )?;
    handle
        .reload(filter)
        .map_err(|e| format!("cannot replace the log filter: {e}"))
}

/// What a child does when the master asks about its logs.
pub(crate) fn control(control: LogControl, to_master: &Sender<ToMaster>) {
    match control {
        LogControl::Forward(true) => forward::start(forward::Sink::Master(to_master.clone())),
        LogControl::Forward(false) => forward::stop(),
        LogControl::ReopenAccessLog => access::reopen(),
        LogControl::SetFilter { id, filter } => {
            let result = set_filter(&filter);
            let to_master = to_master.clone();
            tokio::spawn(async move {
                let _ = to_master.send(&ToMaster::LogFilterSet { id, result }).await;
            });
        }
    }
}
