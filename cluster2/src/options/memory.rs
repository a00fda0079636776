//! How much memory this process may use, for the default of `cache.max_memory`: the machine's
//! (`MemTotal`), or its control group's limit when that is less (a container given 2 GiB on a
//! 64 GiB host must size its cache on the 2 GiB).

use std::path::Path;

/// What the cache may take by default: a quarter of the memory available, so that a cache
/// filled to its bound leaves the application, its workers and the host their room.
pub(crate) fn default_cache_memory() -> u64 {
    // Unknown (not Linux, /proc unreadable): a size any machine that runs a cluster has.
    const UNKNOWN: u64 = 4 << 30;
    let available = [machine(), cgroup()].into_iter().flatten().min();
    // At least the option's lowest value, so that the default is always valid.
    (available.unwrap_or(UNKNOWN) / 4).max(1 << 20)
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn machine() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of this process's control group (v2, else v1), if it has one.
fn cgroup() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = Path::new("/sys/fs/cgroup");
    // v2: one line `0::/path`; v1: a line `N:memory:/path` (or `N:memory,...:/path`).
    let v2 = own.lines().find_map(|l| l.strip_prefix("0::"));
    let v1 = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    });
    let mut candidates = Vec::new();
    if let Some(path) = v2 {
        candidates.push(root.join(path.trim_start_matches('/')).join("memory.max"));
        candidates.push(root.join("memory.max"));
    }
    if let Some(path) = v1 {
        let memory = root.join("memory");
        candidates.push(
            memory
                .join(path.trim_start_matches('/'))
                .join("memory.limit_in_bytes"),
        );
        candidates.push(memory.join("memory.limit_in_bytes"));
    }
    // The first file that exists speaks; `max`, or v1's "no limit" (a number near 2^63),
    // means none.
    let text = candidates
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())?;
    text.trim().parse::<u64>().ok().filter(|&n| n < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_quarter_of_what_there_is_and_a_valid_size() {
        let default = default_cache_memory();
        assert!(default >= 1 << 20);
        if let Some(total) = machine() {
            assert!(default <= total / 4, "{default} of {total}");
        }
    }
}
