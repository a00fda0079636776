//! CPU time of processes, from /proc. Shared with the `cache-bench` binary (included by path).

/// The unit of CPU times in /proc (USER_HZ, 100 on every Linux port).
pub(crate) const TICKS_PER_SEC: f64 = 100.0;

/// User and system CPU time of `pids`, in clock ticks; a process that is gone counts 0.
pub(crate) fn process_ticks(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // pid (comm) state … utime stime: fields 14 and 15, counted after the comm.
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace().skip(11);
            let utime: u64 = fields.next()?.parse().ok()?;
            let stime: u64 = fields.next()?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

/// The parent of `pid`, from /proc.
#[allow(dead_code)] // used by `cache-bench` only
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}
