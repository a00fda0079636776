//! The application on a Unix socket (`--bind=unix:PATH`, `--bind-mode`): requests over the
//! socket answer, the file has the permissions asked for, a stale socket file left by a
//! killed run is replaced while a live one is not taken over, the ECV probes the application
//! over the socket, and the master removes the file when it stops.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use cluster2_tests::{Cluster, Proc, SOON, TempPath, get};

/// `GET path` over the Unix socket at `socket`: the status code and the body.
fn unix_get(socket: &Path, path: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).expect("connect to the socket");
    stream.set_read_timeout(Some(SOON)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn socket_in(dir: &TempPath) -> PathBuf {
    std::fs::create_dir_all(dir.path()).unwrap();
    dir.path().join("app.sock")
}

fn args(socket: &Path, extra: &[&str]) -> Vec<String> {
    let mut all = vec![
        format!("--bind=unix:{}", socket.display()),
        "--workers=2".to_owned(),
        "--cache.enable=false".to_owned(),
    ];
    all.extend(extra.iter().map(|a| (*a).to_owned()));
    all
}

fn start(socket: &Path, extra: &[&str]) -> Cluster {
    let args = args(socket, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Cluster::start(env!("CARGO_BIN_EXE_fixture-app"), &args, &[])
}

#[test]
fn requests_answer_over_the_socket_which_has_its_mode_and_goes_at_stop() {
    let dir = TempPath::new("unix-bind");
    let socket = socket_in(&dir);
    // What a killed run leaves: the file of a socket nobody listens on.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let mut cluster = start(
        &socket,
        &["--bind-mode=600", "--ecv.mode=monitor", "--ecv.monitor=/"],
    );
    cluster.proc.rewind();
    cluster.proc.wait_for("replacing a stale socket");
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    for _ in 0..6 {
        assert_eq!(unix_get(&socket, "/"), (200, "hello world".to_owned()));
    }
    // A connection over a Unix socket has no network address.
    let (status, seq) = unix_get(&socket, "/seq");
    assert_eq!(status, 200);
    assert!(seq.ends_with(" 0.0.0.0:0"), "{seq}");
    // The ECV's monitor mode probes `/` over the socket.
    let ecv = get(cluster.monitor, "/ecv").unwrap();
    assert_eq!((ecv.status, ecv.body.as_str()), (200, "OK"));

    cluster.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(cluster.proc.wait_exit().success());
    assert!(!socket.exists(), "the socket file is removed at stop");
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_file_is_not_deleted() {
    let dir = TempPath::new("unix-live");
    let socket = socket_in(&dir);
    let cluster = start(&socket, &[]);

    let second = args(&socket, &["--port=0", "--mon-port=0"]);
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let mut other = Proc::spawn(env!("CARGO_BIN_EXE_fixture-app"), &second, &[]);
    assert!(!other.wait_exit().success());
    assert!(
        other
            .log
            .iter()
            .any(|l| l.contains("another process is serving on this socket")),
        "{}",
        other.log.join("\n")
    );
    // The first cluster still has its socket.
    assert_eq!(unix_get(&socket, "/"), (200, "hello world".to_owned()));
    drop(cluster);

    // Not a socket: never removed.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, "keep").unwrap();
    let third = args(&file, &["--port=0", "--mon-port=0"]);
    let third: Vec<&str> = third.iter().map(String::as_str).collect();
    let mut refused = Proc::spawn(env!("CARGO_BIN_EXE_fixture-app"), &third, &[]);
    assert!(!refused.wait_exit().success());
    assert!(
        refused.log.iter().any(|l| l.contains("is not a socket")),
        "{}",
        refused.log.join("\n")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
}
