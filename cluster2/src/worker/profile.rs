//! CPU profiles of this process, with the `pprof` crate: one at a time, sampled at
//! [`FREQUENCY`] for a number of seconds, then rendered here (only this process can resolve its
//! own symbols) as an SVG flame graph or a pprof protobuf. A worker and the standalone cache
//! manager answer the master's `Profile` request with [`answer`]; the master profiles itself
//! with [`record`].
//!
//! The sampler runs in a SIGPROF handler, so the unwinder matters: the crate's default one
//! (libgcc's) is not async-signal-safe and is known to deadlock or crash; the `frame-pointer`
//! feature walks the frame-pointer chain and checks each address before reading it. It needs
//! code built with `-C force-frame-pointers=yes` (this workspace's `.cargo/config.toml`; the
//! README tells applications), or stacks stop at the first frame. It starts from the sampled
//! frame's saved return address, so the innermost function of a sample is counted in its
//! caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ipc::channel::Sender;
use crate::ipc::frame::MAX_FRAME;
use crate::ipc::message::{ProfileFailure, ProfileFormat, ToMaster};

/// Samples per second of CPU time: not a multiple of common timer periods, so that periodic
/// work is not sampled in lockstep.
pub(crate) const FREQUENCY: i32 = 99;

/// The largest profile sent to the master: a channel frame, less room for the message around
/// it.
const MAX_PROFILE_BYTES: usize = MAX_FRAME - 64 * 1024;

/// Whether a profile of this process is being recorded: there is one profiler per process.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Clears [`RECORDING`] however the recording ends.
struct Recording;

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDING.store(false, Ordering::Release);
    }
}

/// In a child: records a profile and sends it to the master as `ProfileDone { id, .. }`.
pub(crate) fn answer(id: u64, seconds: u32, format: ProfileFormat, to_master: Sender<ToMaster>) {
    tokio::spawn(async move {
        let result = record(seconds, format).await.and_then(|bytes| {
            if bytes.len() > MAX_PROFILE_BYTES {
                Err(ProfileFailure::Failed(format!(
                    "the profile is {} bytes, more than the {MAX_PROFILE_BYTES} bytes the \
                     channel to the master carries; ask for fewer seconds or format=pprof",
                    bytes.len()
                )))
            } else {
                Ok(bytes)
            }
        });
        let _ = to_master.send(&ToMaster::ProfileDone { id, result }).await;
    });
}

/// Samples this process's CPU for `seconds` and renders the profile as `format`. Fails with
/// `Busy` while another profile of this process is being recorded.
pub(crate) async fn record(seconds: u32, format: ProfileFormat) -> Result<Vec<u8>, ProfileFailure> {
    if RECORDING.swap(true, Ordering::AcqRel) {
        return Err(ProfileFailure::Busy);
    }
    let recording = Recording;
    tracing::info!(seconds, ?format, "cpu profile started");
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .build()
        .map_err(|e| match e {
            // Someone else's profiler in this process.
            pprof::Error::Running => ProfileFailure::Busy,
            e => ProfileFailure::Failed(format!("cannot start the profiler: {e}")),
        })?;
    // An async wait, not a blocking one: a process that stops meanwhile is not held up.
    tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await;
    // Resolving symbols reads the binary's debug information: a blocking thread's work.
    let rendered = tokio::task::spawn_blocking(move || {
        let _recording = recording;
        let report = guard
            .report()
            .build()
            .map_err(|e| format!("cannot build the report: {e}"))?;
        drop(guard);
        render(&report, seconds, format)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the profiler failed: {e}")))
    .map_err(ProfileFailure::Failed)?;
    tracing::debug!(bytes = rendered.len(), "cpu profile done");
    Ok(rendered)
}

fn render(report: &pprof::Report, seconds: u32, format: ProfileFormat) -> Result<Vec<u8>, String> {
    match format {
        ProfileFormat::Pprof => {
            use pprof::protos::Message;
            let profile = report
                .pprof()
                .map_err(|e| format!("cannot encode the profile: {e}"))?;
            Ok(profile.encode_to_vec())
        }
        ProfileFormat::Svg => {
            let title = format!(
                "CPU of pid {}: {seconds} s at {FREQUENCY} Hz",
                std::process::id()
            );
            // The flame graph library draws nothing without samples: say so instead.
            if report.data.is_empty() {
                return Ok(empty_svg(&title).into_bytes());
            }
            let mut options = pprof::flamegraph::Options::default();
            options.title = title;
            let mut svg = Vec::new();
            report
                .flamegraph_with_options(&mut svg, &mut options)
                .map_err(|e| format!("cannot draw the flame graph: {e}"))?;
            Ok(svg)
        }
    }
}

/// A flame graph of no samples: the process used no CPU while it was watched.
fn empty_svg(title: &str) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"600\" y=\"30\" text-anchor=\"middle\" font-family=\"Verdana\" \
         font-size=\"17\">{title}</text>\
         <text x=\"600\" y=\"60\" text-anchor=\"middle\" font-family=\"Verdana\" \
         font-size=\"12\">no samples: the process used no CPU time</text></svg>\n"
    )
}
