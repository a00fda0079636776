//! Deploying new code without downtime: replace the program file, send SIGHUP; successors run
//! the new file while the old workers drain.

use std::os::unix::fs::PermissionsExt;

use cluster2_tests::{Cluster, get};

#[test]
fn sighup_after_replacing_the_binary_deploys_the_new_code() {
    let dir = std::env::temp_dir().join(format!("cluster2-{}-deploy", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let installed = dir.join("app");
    std::fs::copy(env!("CARGO_BIN_EXE_fixture-app"), &installed).unwrap();
    let mut cluster = Cluster::start(installed.to_str().unwrap(), &["--workers=2"], &[]);
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");

    // Install the new version the way deploy tools do: write beside it, then rename over.
    let staged = dir.join("app.new");
    std::fs::copy(env!("CARGO_BIN_EXE_fixture-builder"), &staged).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    cluster.proc.signal(nix::sys::signal::Signal::SIGHUP);
    cluster.proc.wait_for("replaced worker");
    cluster.proc.wait_for("replaced worker");
    for _ in 0..100 {
        assert_eq!(
            get(cluster.app, "/").unwrap().body,
            "built",
            "every worker runs the new code"
        );
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
