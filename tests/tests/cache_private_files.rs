//! The cache's files: the cluster's private runtime directory (0700, under `$XDG_RUNTIME_DIR`)
//! and its socket (0600), the sweep of directories that killed clusters left behind, and where
//! persisted data lives.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use cluster2_tests::{Cluster, SOON, TempPath, eventually};
use nix::sys::signal::Signal;

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A runtime base of this test's own, as a login session's `$XDG_RUNTIME_DIR` is.
fn runtime_base(name: &str) -> TempPath {
    let base = TempPath::new(name);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(base.path())
        .unwrap();
    base
}

#[test]
fn a_killed_clusters_directory_is_swept_by_the_next_one_and_others_are_left() {
    let base = runtime_base("xdg-sweep");
    let env = [("XDG_RUNTIME_DIR", base.as_str())];
    let dir_of = |pid: u32| base.path().join(format!("cluster2-{pid}"));

    let mut first = Cluster::start(APP, &["--workers=1"], &env);
    let first_dir = dir_of(first.proc.pid());
    assert_eq!(mode(&first_dir), 0o700);
    // "ready" means every worker serves; the cache manager may still be starting (a cache call
    // waits for it within its timeout), so the test waits until its socket listens, by when
    // the file must be 0600.
    let socket = first_dir.join("cache.sock");
    assert!(
        eventually(SOON, || std::os::unix::net::UnixStream::connect(&socket)
            .is_ok()),
        "the cache manager's socket {} did not listen",
        socket.display()
    );
    assert_eq!(mode(&socket), 0o600);
    // Named after a live process that is not a cluster (this test): not a leftover.
    let bystander = dir_of(std::process::id());
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&bystander)
        .unwrap();

    first.proc.signal(Signal::SIGKILL);
    first.proc.wait_exit();
    assert!(first_dir.exists(), "a killed master cannot clean up");

    let mut second = Cluster::start(APP, &["--workers=1"], &env);
    second.proc.rewind();
    second
        .proc
        .wait_for("removed 1 private directory left under");
    assert!(!first_dir.exists());
    assert!(bystander.exists());
    let second_dir = dir_of(second.proc.pid());
    assert_eq!(mode(&second_dir), 0o700);

    // A graceful stop removes the cluster's own directory.
    second.proc.signal(Signal::SIGTERM);
    assert_eq!(second.proc.wait_exit().code(), Some(0));
    assert!(!second_dir.exists());
    std::fs::remove_dir(&bystander).unwrap();
}

/// The test fixtures leave no private directory behind, even for a master they kill.
#[test]
fn a_cluster_the_fixture_kills_leaves_no_directory() {
    let base = runtime_base("xdg-fixture");
    let env = [("XDG_RUNTIME_DIR", base.as_str())];
    let cluster = Cluster::start(APP, &["--workers=1"], &env);
    let dir = base.path().join(format!("cluster2-{}", cluster.proc.pid()));
    assert!(dir.exists());
    drop(cluster);
    assert!(!dir.exists());
}

/// `cache.persist_path` is relative to where the binary was started: the log says where.
#[test]
fn the_persistence_directory_is_logged_as_an_absolute_path() {
    let mut cluster = Cluster::start(
        APP,
        &["--workers=1", "--cache.persist-path=persisted-here"],
        &[],
    );
    cluster.proc.rewind();
    let line = cluster.proc.wait_for("cache persistence directory:");
    let expected = std::env::current_dir().unwrap().join("persisted-here");
    assert!(
        line.contains(&format!(
            "directory: {} (not created yet)",
            expected.display()
        )),
        "{line}"
    );
    assert!(!expected.exists());
}
