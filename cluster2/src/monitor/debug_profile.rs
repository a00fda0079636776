//! Live debugging of one process of the cluster, addressed by pid: a worker, the standalone
//! cache manager, or the master itself.
//!
//! - `GET /debug/workers/{pid}/profile?seconds=N&format=svg|pprof`: a CPU profile. The master
//!   asks the child over its channel and waits for the answer in a table of pending requests
//!   keyed by id (the reader of the child's channel completes them); it records its own
//!   profile in process. The child samples and renders (`worker::profile`).
//! - `GET /debug/workers/{pid}/stacks`: every thread's stack, taken from outside with
//!   `eu-stack`, so that it works when the process's runtime is wedged. The master is its
//!   children's parent, which Yama's default `ptrace_scope` (1) lets attach.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use super::error;
use crate::ipc::channel::TrySendError;
use crate::ipc::message::{ProfileFailure, ProfileFormat, ToWorker};
use crate::ipc::peers;

/// How long past `seconds` the master waits for a child's profile: resolving symbols the first
/// time reads the binary's debug information, which takes a while in a large binary.
const RENDER_GRACE: Duration = Duration::from_secs(30);

/// The program that takes the stacks, looked up on `PATH`.
const EU_STACK: &str = "eu-stack";

/// What to run to get it.
const EU_STACK_INSTALL: &str =
    "apt-get install elfutils (Debian, Ubuntu), dnf install elfutils (Fedora, RHEL)";

/// How long `eu-stack` may take; the process's threads are stopped meanwhile.
const STACKS_TIMEOUT: Duration = Duration::from_secs(10);

/// The most stack text answered; the rest is dropped, and the answer says so.
const MAX_STACKS_BYTES: usize = 4 * 1024 * 1024;

/// The most of `eu-stack`'s error output kept for an error message.
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// `max_seconds`: the longest profile one may ask for (`mon.max_profile`).
pub(super) fn routes(max_seconds: u32) -> Router {
    Router::new()
        .route(
            "/debug/workers/{pid}/profile",
            get(move |pid, query| profile(pid, query, max_seconds)),
        )
        .route("/debug/workers/{pid}/stacks", get(stacks))
}

/// Why a request gets no answer but an error: the status and the message.
type Refusal = (StatusCode, String);

/// Which process a pid names, or a 404 naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Master,
    Child,
}

fn target(pid: &str) -> Result<(u32, Target), Refusal> {
    let Ok(pid) = pid.parse::<u32>() else {
        return Err((StatusCode::BAD_REQUEST, format!("`{pid}` is not a pid")));
    };
    if pid == std::process::id() {
        return Ok((pid, Target::Master));
    }
    let workers = peers::worker_pids();
    let cache = peers::cache_manager_pid();
    if workers.contains(&pid) || cache == Some(pid) {
        return Ok((pid, Target::Child));
    }
    let mut known: Vec<String> = workers.iter().map(|p| format!("{p} (worker)")).collect();
    known.extend(cache.map(|p| format!("{p} (cache manager)")));
    known.push(format!("{} (master)", std::process::id()));
    Err((
        StatusCode::NOT_FOUND,
        format!(
            "no process of this cluster has pid {pid}; live pids: {}",
            known.join(", ")
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// Profiles

/// A profile request's query, checked.
#[derive(Debug, PartialEq, Eq)]
struct ProfileQuery {
    seconds: u32,
    format: ProfileFormat,
}

fn profile_query(
    params: &HashMap<String, String>,
    max_seconds: u32,
) -> Result<ProfileQuery, String> {
    let range = format!("a whole number of seconds from 1 to {max_seconds} (--mon.max_profile)");
    let seconds = match params.get("seconds").map(String::as_str) {
        None | Some("") => return Err(format!("`seconds` is required: {range}")),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max_seconds).contains(&n) => n,
            _ => return Err(format!("`seconds` must be {range}, not `{s}`")),
        },
    };
    let format = match params.get("format").map(String::as_str) {
        None | Some("svg") => ProfileFormat::Svg,
        Some("pprof") => ProfileFormat::Pprof,
        Some(other) => {
            return Err(format!(
                "`format` must be `svg` (the default) or `pprof`, not `{other}`"
            ));
        }
    };
    Ok(ProfileQuery { seconds, format })
}

async fn profile(
    Path(pid): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    max_seconds: u32,
) -> Response {
    let query = match query {
        Ok(Query(params)) => profile_query(&params, max_seconds),
        Err(rejection) => Err(rejection.body_text()),
    };
    let ProfileQuery { seconds, format } = match query {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let (pid, target) = match target(&pid) {
        Ok(t) => t,
        Err((status, message)) => return error(status, message),
    };
    let result = match target {
        Target::Master => crate::worker::profile::record(seconds, format)
            .await
            .map_err(|failure| failed(pid, failure)),
        Target::Child => ask(pid, seconds, format).await,
    };
    match result {
        Ok(bytes) => match format {
            ProfileFormat::Svg => {
                ([(header::CONTENT_TYPE, "image/svg+xml")], bytes).into_response()
            }
            ProfileFormat::Pprof => (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"cpu-{pid}.pb\""),
                    ),
                ],
                bytes,
            )
                .into_response(),
        },
        Err((status, message)) => error(status, message),
    }
}

fn failed(pid: u32, failure: ProfileFailure) -> Refusal {
    match failure {
        ProfileFailure::Busy => (
            StatusCode::CONFLICT,
            format!(
                "pid {pid} is already being profiled: one profile at a time per process; \
                 try again when it is done"
            ),
        ),
        ProfileFailure::Failed(message) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no profile from pid {pid}: {message}"),
        ),
    }
}

type Answer = Result<Vec<u8>, ProfileFailure>;

/// Profiles awaited from children, by request id, with the pid each was asked of.
#[derive(Default)]
struct Pending {
    waiting: Mutex<HashMap<u64, (u32, oneshot::Sender<Answer>)>>,
    next_id: AtomicU64,
}

fn pending() -> &'static Pending {
    static PENDING: OnceLock<Pending> = OnceLock::new();
    PENDING.get_or_init(Pending::default)
}

/// Removes a request from the table however its wait ends (an answer, a timeout, or the
/// monitor's client going away).
struct Waiting(u64);

impl Drop for Waiting {
    fn drop(&mut self) {
        pending()
            .waiting
            .lock()
            .expect("profiles lock")
            .remove(&self.0);
    }
}

/// Asks child `pid` for a profile and waits for it.
async fn ask(pid: u32, seconds: u32, format: ProfileFormat) -> Result<Vec<u8>, Refusal> {
    let pending = pending();
    let id = pending.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    pending
        .waiting
        .lock()
        .expect("profiles lock")
        .insert(id, (pid, tx));
    let _waiting = Waiting(id);
    let request = ToWorker::Profile {
        id,
        seconds,
        format,
    };
    match peers::to_child(pid, &request) {
        Some(Ok(())) => {}
        None | Some(Err(TrySendError::Closed)) => {
            return Err((StatusCode::NOT_FOUND, format!("pid {pid} has exited")));
        }
        Some(Err(TrySendError::Full)) => {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the channel to pid {pid} is full; try again"),
            ));
        }
    }
    let patience = Duration::from_secs(u64::from(seconds)) + RENDER_GRACE;
    match tokio::time::timeout(patience, rx).await {
        Ok(Ok(answer)) => answer.map_err(|failure| failed(pid, failure)),
        Ok(Err(_)) => Err((
            StatusCode::BAD_GATEWAY,
            format!("pid {pid} exited before its profile was done"),
        )),
        Err(_) => Err((
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no profile from pid {pid} within {}",
                humantime::format_duration(patience)
            ),
        )),
    }
}

/// In the master: a child's profile arrived.
pub(crate) fn complete(id: u64, answer: Answer) {
    let waiter = pending().waiting.lock().expect("profiles lock").remove(&id);
    if let Some((_, tx)) = waiter {
        let _ = tx.send(answer);
    }
}

/// Held by the reader of a child's channel: when the channel closes, the profiles awaited from
/// that child fail at once instead of at their timeout.
#[derive(Debug)]
pub(crate) struct ForgetOnDrop(pub(crate) u32);

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        let pid = self.0;
        // Dropping the senders wakes the waiters with an error.
        pending()
            .waiting
            .lock()
            .expect("profiles lock")
            .retain(|_, (asked, _)| *asked != pid);
    }
}

// ---------------------------------------------------------------------------------------------
// Stacks

async fn stacks(Path(pid): Path<String>) -> Response {
    let (pid, target) = match target(&pid) {
        Ok(t) => t,
        Err((status, message)) => return error(status, message),
    };
    let scope = ptrace_scope();
    if scope >= 3 {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "ptrace is disabled on this host (kernel.yama.ptrace_scope = 3): no process's \
             stacks can be taken"
                .to_owned(),
        );
    }
    // eu-stack runs as the master's child; Yama lets a process trace its descendants only.
    if target == Target::Master && scope >= 1 {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the master cannot take its own stacks: kernel.yama.ptrace_scope is {scope}, so \
                 only its parent (or root) may trace pid {pid}; run `sudo eu-stack -p {pid}` \
                 from a shell"
            ),
        );
    }
    match eu_stack(pid).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err((status, message)) => error(status, message),
    }
}

/// `kernel.yama.ptrace_scope`; 0 where Yama is absent.
fn ptrace_scope() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `eu-stack` on `pid`, bounded in time and output.
///
/// Its output goes to files, not pipes: while it is attached, every thread of the traced process
/// is stopped, and when that process is the master, which would read the pipes, eu-stack
/// blocked on a full one would never be continued.
async fn eu_stack(pid: u32) -> Result<String, Refusal> {
    let scratch = |e: std::io::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot make a scratch file for {EU_STACK}'s output: {e}"),
        )
    };
    let (out, err) = (
        scratch_file("stacks").map_err(scratch)?,
        scratch_file("stacks-err").map_err(scratch)?,
    );
    let mut child = tokio::process::Command::new(EU_STACK)
        // -i: inlined frames too, which are most of a Rust program's; -s: file and line;
        // -r: names as they are in the binary, demangled here (eu-stack knows only C++'s).
        .args(["-i", "-s", "-r", "-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(scratch)?)
        .stderr(err.try_clone().map_err(scratch)?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                (
                    StatusCode::NOT_IMPLEMENTED,
                    format!(
                        "thread stacks need `{EU_STACK}`, which is not installed (not on PATH); \
                         install it with: {EU_STACK_INSTALL}"
                    ),
                )
            } else {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot run {EU_STACK}: {e}"),
                )
            }
        })?;
    let Ok(status) = tokio::time::timeout(STACKS_TIMEOUT, child.wait()).await else {
        let _ = child.start_kill();
        let _ = child.wait().await;
        // Killed while attaching, eu-stack can leave its stop signal pending on the process:
        // continue it (harmless to a process that was not stopped).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        return Err((
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{EU_STACK} took more than {} on pid {pid}; it was stopped",
                humantime::format_duration(STACKS_TIMEOUT)
            ),
        ));
    };
    let read = |e: std::io::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {EU_STACK}'s output: {e}"),
        )
    };
    // A few megabytes at most, from the page cache: still, not on the runtime's threads.
    let heads = tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>((
            read_head(out, MAX_STACKS_BYTES)?,
            read_head(err, MAX_STDERR_BYTES)?,
        ))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let ((out, truncated), (err, _)) = heads.map_err(read)?;
    let err = String::from_utf8_lossy(&err).trim().to_owned();
    let code = status.ok().and_then(|s| s.code());
    // 0: every frame shown; 1: some frames could not be unwound, the rest are worth showing.
    if matches!(code, Some(0 | 1)) && !out.is_empty() {
        let mut text = demangle(&String::from_utf8_lossy(&out));
        if truncated {
            text.push_str(&format!("\n[output cut at {MAX_STACKS_BYTES} bytes]\n"));
        }
        if code == Some(1) && !err.is_empty() {
            text.push_str(&format!(
                "\n[{EU_STACK} could not unwind everything: {err}]\n"
            ));
        }
        return Ok(text);
    }
    let lower = err.to_ascii_lowercase();
    if lower.contains("no such process") || lower.contains("no such file") {
        return Err((StatusCode::NOT_FOUND, format!("pid {pid} has exited")));
    }
    if lower.contains("operation not permitted") || lower.contains("permission denied") {
        return Err((
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{EU_STACK} may not attach to pid {pid} ({err}): ptrace is refused here. A \
                 container needs the CAP_SYS_PTRACE capability (docker run --cap-add=SYS_PTRACE), \
                 and kernel.yama.ptrace_scope must be 0 or 1"
            ),
        ));
    }
    Err((
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "{EU_STACK} failed on pid {pid} ({}): {err}",
            code.map_or_else(|| "killed".to_owned(), |c| format!("exit status {c}"))
        ),
    ))
}

/// Demangles the Rust names in eu-stack's frame lines, `#3  0x000055b9df0e469b NAME …`, to
/// `path::to::function` without the hash. Other lines and other names are left as they are.
fn demangle(stacks: &str) -> String {
    let mut out = String::with_capacity(stacks.len());
    for line in stacks.lines() {
        out.push_str(demangle_frame(line).as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn demangle_frame(line: &str) -> Option<String> {
    if !line.starts_with('#') {
        return None;
    }
    // The name is the word after the address.
    let address = line.find(" 0x")? + 1;
    let name_start = address + line[address..].find(' ')? + 1;
    let name_end = line[name_start..]
        .find(' ')
        .map_or(line.len(), |n| name_start + n);
    let name = rustc_demangle::try_demangle(&line[name_start..name_end]).ok()?;
    Some(format!(
        "{}{name:#}{}",
        &line[..name_start],
        &line[name_end..]
    ))
}

/// A file for one use, already unlinked: it is gone when its last descriptor closes.
fn scratch_file(what: &str) -> std::io::Result<std::fs::File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "cluster2-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// The first `cap` bytes of `file`, and whether it holds more.
fn read_head(mut file: std::fs::File, cap: usize) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::{Read, Seek};
    let len = file.metadata()?.len();
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut kept = Vec::new();
    file.take(cap as u64).read_to_end(&mut kept)?;
    Ok((kept, len > cap as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<ProfileQuery, String> {
        let params = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        profile_query(&params, 60)
    }

    #[test]
    fn seconds_are_required_and_bounded() {
        assert_eq!(
            query(&[("seconds", "5")]),
            Ok(ProfileQuery {
                seconds: 5,
                format: ProfileFormat::Svg
            })
        );
        assert_eq!(
            query(&[("seconds", "60"), ("format", "pprof")]).map(|q| q.format),
            Ok(ProfileFormat::Pprof)
        );
        for bad in ["0", "61", "abc", "-1", "1.5", ""] {
            let err = query(&[("seconds", bad)]).unwrap_err();
            assert!(err.contains("from 1 to 60"), "{bad}: {err}");
        }
        assert!(query(&[]).unwrap_err().contains("required"));
    }

    #[test]
    fn unknown_formats_are_named() {
        let err = query(&[("seconds", "1"), ("format", "png")]).unwrap_err();
        assert!(err.contains("`png`") && err.contains("svg"), "{err}");
    }

    #[test]
    fn frame_names_are_demangled_and_the_rest_is_kept() {
        let raw = "PID 7 - process\n\
                   TID 7:\n\
                   #0  0x00007f379465b829 syscall\n\
                   #2  0x000055b9df0eedff _ZN3std4sync6poison7condvar7Condvar4wait17h35d37571033a5a1cE\n\
                   #1  0x000055b9df13e525 _RNvMNtNtNtNtCsjrHSEGnQ3l9_3std3sys4sync7condvar5futexNtB2_7Condvar4wait - 1\n\
                   \x20   src/main.rs:81:24\n";
        assert_eq!(
            demangle(raw),
            "PID 7 - process\n\
             TID 7:\n\
             #0  0x00007f379465b829 syscall\n\
             #2  0x000055b9df0eedff std::sync::poison::condvar::Condvar::wait\n\
             #1  0x000055b9df13e525 <std::sys::sync::condvar::futex::Condvar>::wait - 1\n\
             \x20   src/main.rs:81:24\n"
        );
    }

    #[test]
    fn output_past_the_cap_is_left_out() {
        use std::io::Write;
        let mut file = scratch_file("test").unwrap();
        file.write_all(&[b'x'; 200_000]).unwrap();
        let (kept, truncated) = read_head(file.try_clone().unwrap(), 100_000).unwrap();
        assert_eq!((kept.len(), truncated), (100_000, true));
        let (kept, truncated) = read_head(file, 200_000).unwrap();
        assert_eq!((kept.len(), truncated), (200_000, false));
    }
}
