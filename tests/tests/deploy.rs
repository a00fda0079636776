//! Deploying new code without downtime: replace the program file, send SIGHUP; successors run
//! the new file while the old workers drain.

use std::os::unix::fs::PermissionsExt;

use cluster2_tests::{Cluster, TempPath, get};

#[test]
fn sighup_after_replacing_the_binary_deploys_the_new_code() {
    let dir = TempPath::new("deploy");
    std::fs::create_dir_all(dir.path()).unwrap();
    let installed = dir.path().join("app");
    std::fs::copy(env!("CARGO_BIN_EXE_fixture-app"), &installed).unwrap();
    let cluster = Cluster::start(installed.to_str().unwrap(), &["--workers=2"], &[]);
    let mut events = cluster.events();
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");

    // Install the new version the way deploy tools do: write beside it, then rename over.
    let staged = dir.path().join("app.new");
    std::fs::copy(env!("CARGO_BIN_EXE_fixture-builder"), &staged).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    cluster.proc.signal(nix::sys::signal::Signal::SIGHUP);
    events.next_of("replaced");
    events.next_of("replaced");
    for _ in 0..100 {
        assert_eq!(
            get(cluster.app, "/").unwrap().body,
            "built",
            "every worker runs the new code"
        );
    }
    drop(cluster);
}
