//! Child processes that never outlive the benchmark.
//!
//! Every child starts as the leader of its own process group, so that the group reaches the
//! processes it starts in turn (cluster2's workers, node's cluster workers) and a Ctrl-C in the
//! terminal reaches only this program, which then stops the groups itself. A [`Proc`] dropped
//! before [`Proc::stop`] finished (an error, a panic, Ctrl-C) kills its whole group, and each
//! child is armed with a parent-death signal in case this program is killed outright.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Lines of output kept for error messages.
const TAIL: usize = 30;

/// One line of a child's output, with the time it was read.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) at: Instant,
    pub(crate) text: String,
}

/// What a server's "ready" line says.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    /// When the line was read.
    pub(crate) at: Instant,
    /// The application port.
    pub(crate) port: u16,
    /// The processes serving it.
    pub(crate) workers: Vec<u32>,
    /// The monitor's address, when the line names one (cluster2's does).
    pub(crate) monitor: Option<std::net::SocketAddr>,
}

/// How a child stopped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopped {
    /// From the stop signal to the leader's exit.
    pub(crate) took: Duration,
}

/// A running child and its process group.
#[derive(Debug)]
pub(crate) struct Proc {
    label: String,
    child: Child,
    pid: i32,
    lines: mpsc::UnboundedReceiver<Line>,
    tail: Arc<Mutex<VecDeque<String>>>,
    finished: bool,
}

impl Proc {
    /// Starts `program args…` in a new process group, with standard output and error read line
    /// by line.
    pub(crate) fn spawn<S: AsRef<OsStr>>(
        label: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<Self, String> {
        let program = program.as_ref();
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        arm_parent_death_signal(&mut command);
        let mut child = command.spawn().map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (not found; see --help for how to point at it)"
            } else {
                ""
            };
            format!("cannot start {label} ({}): {e}{hint}", program.display())
        })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| format!("{label} exited at once"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, tx.clone(), tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(err, tx, tail.clone()));
        }
        Ok(Self {
            label: label.to_owned(),
            child,
            pid,
            lines,
            tail,
            finished: false,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Waits up to `timeout` for a line `… ready app=ADDR … workers=PID,PID…`.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some((port, workers)) = parse_ready(&line.text) {
                        return Ok(Ready {
                            at: line.at,
                            port,
                            workers,
                            monitor: parse_monitor(&line.text),
                        });
                    }
                }
                Ok(None) => {
                    let status =
                        tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
                    let how = match status {
                        Ok(Ok(s)) => s.to_string(),
                        _ => "still running".to_owned(),
                    };
                    return Err(format!(
                        "{} closed its output before it was ready ({how}){}",
                        self.label,
                        self.tail()
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "{} was not ready within {:?}{}",
                        self.label,
                        timeout,
                        self.tail()
                    ));
                }
            }
        }
    }

    /// Waits for a line of output that satisfies `pred`.
    pub(crate) async fn wait_line(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if pred(&line.text) => return Ok(line.text),
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("{} exited{}", self.label, self.tail())),
                Err(_) => {
                    return Err(format!(
                        "{}: the expected line did not come within {timeout:?}{}",
                        self.label,
                        self.tail()
                    ));
                }
            }
        }
    }

    /// Collects every line of output until the child exits, within `timeout`; the child is
    /// killed if it runs longer.
    pub(crate) async fn output(mut self, timeout: Duration) -> Result<String, String> {
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    text.push_str(&line.text);
                    text.push('\n');
                }
                Ok(None) => break,
                Err(_) => {
                    return Err(format!(
                        "{} did not finish within {timeout:?}{}",
                        self.label,
                        self.tail()
                    ));
                }
            }
        }
        let status = tokio::time::timeout_at(deadline, self.child.wait()).await;
        match status {
            Ok(Ok(s)) if s.success() => {
                self.finish(Duration::from_secs(2)).await?;
                Ok(text)
            }
            Ok(Ok(s)) => Err(format!("{} failed ({s}){}", self.label, self.tail())),
            Ok(Err(e)) => Err(format!("cannot wait for {}: {e}", self.label)),
            Err(_) => Err(format!(
                "{} closed its output but did not exit within {timeout:?}",
                self.label
            )),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the leader to exit with status 0, then checks
    /// that nothing of its group is left (killing stragglers).
    pub(crate) async fn stop(mut self, timeout: Duration) -> Result<Stopped, String> {
        let start = Instant::now();
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        let status: ExitStatus = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(format!("cannot wait for {}: {e}", self.label)),
            Err(_) => {
                return Err(format!(
                    "{} did not stop within {timeout:?} of SIGTERM; killed{}",
                    self.label,
                    self.tail()
                ));
            }
        };
        let took = start.elapsed();
        self.finish(Duration::from_secs(3)).await?;
        if !status.success() {
            return Err(format!(
                "{} stopped with {status} after SIGTERM{}",
                self.label,
                self.tail()
            ));
        }
        Ok(Stopped { took })
    }

    /// After the leader exited: waits up to `grace` for the rest of its group to go, kills
    /// whatever is still there, and reports it.
    async fn finish(&mut self, grace: Duration) -> Result<(), String> {
        let deadline = Instant::now() + grace;
        loop {
            let left = group_members(self.pid);
            if left.is_empty() {
                self.finished = true;
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = kill(Pid::from_raw(-self.pid), Signal::SIGKILL);
                self.finished = true;
                return Err(format!(
                    "{} exited but left processes {left:?} behind (killed them)",
                    self.label
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn tail(&self) -> String {
        let tail = self.tail.lock().expect("tail lock");
        if tail.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("; its last output:\n    {}", lines.join("\n    "))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // An error, a panic or Ctrl-C got here first: no grace, and make sure it is over.
        let _ = kill(Pid::from_raw(-self.pid), Signal::SIGKILL);
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut reaped = false;
        while Instant::now() < deadline {
            reaped = reaped || matches!(self.child.try_wait(), Ok(Some(_)));
            if reaped && group_members(self.pid).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let left = group_members(self.pid);
        if !left.is_empty() {
            eprintln!(
                "warning: processes {left:?} of {} survived SIGKILL",
                self.label
            );
        }
    }
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    tx: mpsc::UnboundedSender<Line>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        let at = Instant::now();
        {
            let mut tail = tail.lock().expect("tail lock");
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(text.clone());
        }
        // The receiver may be gone (the server is being stopped); keep draining the pipe.
        let _ = tx.send(Line { at, text });
    }
}

/// Makes the kernel kill the child if this program dies without cleaning up (SIGKILL, abort).
/// The signal is tied to the thread that forks: children are only ever spawned from the main
/// thread, which runs the benchmark's single-threaded runtime for the program's whole life.
#[allow(unsafe_code)]
fn arm_parent_death_signal(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes one prctl(2) system call and turns an errno
    // value into an io::Error, neither of which allocates or takes a lock.
    unsafe {
        command
            .pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
    }
}

/// `… ready app=HOST:PORT … workers=PID,PID…` → the port and the pids.
pub(crate) fn parse_ready(line: &str) -> Option<(u16, Vec<u32>)> {
    let at = line.find("ready app=")?;
    let mut port = None;
    let mut workers = None;
    for token in line[at + "ready ".len()..].split_whitespace() {
        if let Some(addr) = token.strip_prefix("app=") {
            port = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
        } else if let Some(list) = token.strip_prefix("workers=") {
            workers = list
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok();
        }
    }
    Some((port?, workers.filter(|w| !w.is_empty())?))
}

/// `… monitor=HOST:PORT …` in a ready line → that address.
fn parse_monitor(line: &str) -> Option<std::net::SocketAddr> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix("monitor="))
        .and_then(|addr| addr.parse().ok())
}

/// Live (not zombie) processes whose process group is `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may contain anything, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") && state != Some("X") {
            members.push(pid);
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        let cluster2 = "2026-11-26T18:34:22.220905Z  INFO master[9593]: ready \
                        app=0.0.0.0:38253 monitor=127.0.0.1:45037 workers=9597,9598,9599,9600";
        assert_eq!(
            parse_ready(cluster2),
            Some((38253, vec![9597, 9598, 9599, 9600]))
        );
        let node = "ready app=0.0.0.0:36507 workers=11966,11969";
        assert_eq!(parse_ready(node), Some((36507, vec![11966, 11969])));
        assert_eq!(parse_ready("worker 0 (pid 9597) listening"), None);
        assert_eq!(parse_ready("ready app=0.0.0.0:1 workers="), None);
    }

    #[test]
    fn this_process_is_in_its_group() {
        let pgid = nix::unistd::getpgrp().as_raw();
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(group_members(pgid).contains(&me));
    }
}
