//! Where the CPUs go: the server's processes, wrk, and everything else on the machine.

use std::time::{Duration, Instant};

use nix::sys::resource::UsageWho;
use nix::sys::time::TimeValLike;

use crate::ticks::{TICKS_PER_SEC, process_ticks};

/// CPUs kept busy on average during a run, by whom.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    /// Length of the run, in seconds.
    pub(crate) wall: f64,
    /// The server's processes.
    pub(crate) server: f64,
    /// wrk (the only child reaped during the run).
    pub(crate) wrk: f64,
    /// Everything else on the machine, this program included.
    pub(crate) other: f64,
    /// Time the hypervisor gave the CPUs to someone else.
    pub(crate) steal: f64,
}

/// CPU clocks, in seconds.
pub(crate) struct CpuClocks {
    at: Instant,
    server: f64,
    children: f64,
    busy: f64,
    steal: f64,
}

impl CpuClocks {
    pub(crate) fn read(server: &[i32]) -> Self {
        let children = nix::sys::resource::getrusage(UsageWho::RUSAGE_CHILDREN)
            .map(|u| {
                (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
            })
            .unwrap_or(f64::NAN);
        let (busy, steal) = machine_ticks();
        Self {
            at: Instant::now(),
            server: process_ticks(server) as f64 / TICKS_PER_SEC,
            children,
            busy: busy as f64 / TICKS_PER_SEC,
            steal: steal as f64 / TICKS_PER_SEC,
        }
    }

    pub(crate) fn since(&self, before: &Self) -> CpuUse {
        let wall = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let server = (self.server - before.server) / wall;
        let wrk = (self.children - before.children) / wall;
        let busy = (self.busy - before.busy) / wall;
        CpuUse {
            wall,
            server,
            wrk,
            other: (busy - server - wrk).max(0.0),
            steal: (self.steal - before.steal) / wall,
        }
    }
}

/// User plus system CPU time of `pids`, in clock ticks.
/// The whole machine's busy time (steal excluded) and steal time, in clock ticks.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    // cpu user nice system idle iowait irq softirq steal guest guest_nice
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    (get(0) + get(1) + get(2) + get(5) + get(6), get(7))
}

/// CPUs kept busy by other processes over `span`, while none of the benchmark's children run:
/// a probe for other work on the machine.
pub(crate) async fn others_busy(span: Duration) -> f64 {
    let before = CpuClocks::read(&[]);
    tokio::time::sleep(span).await;
    let used = CpuClocks::read(&[]).since(&before);
    used.other + used.steal
}
