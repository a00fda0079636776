//! Process titles: `ps` and `top` tell the master, each worker and the cache manager of one
//! binary apart, by their command line (`/proc/PID/cmdline`) and their name (`/proc/PID/comm`).

use cluster2_tests::Cluster;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// The process's arguments, argv[0] first.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read cmdline");
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The process's name, which Linux keeps to 15 bytes.
fn comm(pid: u32) -> String {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("read comm");
    name.trim_end_matches('\n').to_owned()
}

/// Checks both views of `pid` against `title`, and that the arguments after it are `args`.
fn assert_titled(pid: u32, title: &str, args: &[&str]) {
    let line = cmdline(pid);
    assert_eq!(line[0], title, "pid {pid}: {line:?}");
    assert_eq!(line[1..], *args, "pid {pid} keeps its arguments: {line:?}");
    assert_eq!(comm(pid), title[..15], "pid {pid}");
}

#[test]
fn the_master_workers_and_cache_manager_carry_their_titles() {
    let args = ["--workers=2", "--heartbeat-interval=1s"];
    let cluster = Cluster::start(APP, &args, &[]);
    // What `Cluster::start` passed: the free ports first.
    let mut given = vec!["--port=0", "--mon-port=0"];
    given.extend(args);

    // The pid the test started: the master gave itself its title without a new process.
    assert_titled(cluster.proc.pid(), "fixture-app: master", &given);

    let mut events = cluster.events();
    for &pid in &cluster.workers {
        let spawned = events.wait("spawned", |e| e["pid"] == pid);
        let id = spawned["worker"].as_u64().expect("a worker id");
        assert_titled(pid, &format!("fixture-app: worker {id}"), &given);
        events.rewind();
    }
    let up = events.next_of("cache_manager_up");
    let cache = u32::try_from(up["pid"].as_u64().expect("a standalone manager's pid")).unwrap();
    assert_titled(cache, "fixture-app: cache manager", &given);
}
