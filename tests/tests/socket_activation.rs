//! Socket activation: started by systemd's `systemd-socket-activate` (Debian's `systemd`
//! package), which binds the socket and passes it as `LISTEN_FDS`/`LISTEN_PID`, the master
//! serves the application on it instead of binding `--port` or `--bind`: a TCP socket, a Unix
//! socket, and a datagram socket refused with a usage error; a socket named `monitor` serves
//! the monitor instead of `--mon-port`, under the same rule as `--mon-host` (beyond loopback,
//! a token).
//!
//! The tool starts the program on the first connection (as a `.socket` unit without
//! `Accept=yes` does when the service is not started yet): that connection waits in the
//! socket's queue while the cluster starts, and is served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use cluster2_tests::{Cluster, Proc, SOON, TempPath, get, is_ready};

const TOOL: &str = "/usr/bin/systemd-socket-activate";

/// The tool, or a failure that says how to install it: never a skipped test.
fn tool() -> &'static str {
    assert!(
        Path::new(TOOL).exists(),
        "{TOOL} is missing: install it with `apt-get install -y systemd`"
    );
    TOOL
}

/// `systemd-socket-activate -l LISTEN … fixture-app ARGS`.
fn activated(listen: &str, tool_args: &[&str], args: &[&str]) -> Proc {
    let mut all = vec!["-l", listen];
    all.extend_from_slice(tool_args);
    all.push(env!("CARGO_BIN_EXE_fixture-app"));
    all.extend_from_slice(&[
        "--mon-port=0",
        "--workers=2",
        "--cache.enable=false",
        // Not used: the passed socket is.
        "--port=1",
    ]);
    all.extend_from_slice(args);
    Proc::spawn(tool(), &all, &[])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_master_serves_on_a_passed_tcp_socket() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut proc = activated(&addr.to_string(), &["--fdname=web"], &[]);
    proc.wait_for("Listening on");
    // The first connection starts the cluster, and waits for it.
    let first = std::thread::spawn(move || get(addr, "/").unwrap());
    let ready = proc.wait_line("with the ready message", is_ready);
    let first = first.join().unwrap();
    assert_eq!((first.status, first.body.as_str()), (200, "hello world"));
    proc.rewind();
    let line = proc.wait_for("socket activation: serving on the 1 socket(s)");
    assert!(line.contains(&addr.to_string()), "{line}");
    let cluster = Cluster::from_ready(proc, &ready);
    assert_eq!(cluster.app, addr);
    for _ in 0..6 {
        let answer = get(addr, "/").unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "hello world"));
    }
    drop(cluster);
}

#[test]
fn the_master_serves_on_a_passed_unix_socket() {
    let dir = TempPath::new("activation-unix");
    std::fs::create_dir_all(dir.path()).unwrap();
    let socket = dir.path().join("app.sock");
    let mut proc = activated(socket.to_str().unwrap(), &[], &[]);
    proc.wait_for("Listening on");
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello world"), "{answer}");
    proc.wait_line("with the ready message", is_ready);
    // The service manager owns the socket file: the master leaves it.
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(proc.wait_exit().success());
    assert!(socket.exists());
}

#[test]
fn a_passed_datagram_socket_is_a_usage_error() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut proc = activated(&addr.to_string(), &["--datagram"], &[]);
    proc.wait_for("Listening on");
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"start", addr).unwrap();
    let status = proc.wait_exit();
    assert_eq!(status.code(), Some(2), "{}", proc.log.join("\n"));
    assert!(
        proc.log
            .iter()
            .any(|l| l.contains("fd 3") && l.contains("not a listening stream socket")),
        "{}",
        proc.log.join("\n")
    );
}

#[test]
fn a_passed_socket_named_monitor_serves_the_monitor() {
    let app = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let monitor = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut proc = Proc::spawn(
        tool(),
        &[
            "-l",
            &app.to_string(),
            "-l",
            &monitor.to_string(),
            "--fdname=web:monitor",
            env!("CARGO_BIN_EXE_fixture-app"),
            "--workers=2",
            "--cache.enable=false",
            // Neither is used: the passed sockets are.
            "--port=1",
            "--mon-port=2",
        ],
        &[],
    );
    proc.wait_for("Listening on");
    let first = std::thread::spawn(move || get(app, "/").unwrap());
    let ready = proc.wait_line("with the ready message", is_ready);
    assert_eq!(first.join().unwrap().status, 200);
    proc.rewind();
    let line = proc.wait_for("the monitor serves on the socket(s) named `monitor`");
    assert!(line.contains(&monitor.to_string()), "{line}");
    let cluster = Cluster::from_ready(proc, &ready);
    assert_eq!((cluster.app, cluster.monitor), (app, monitor));
    let workers = get(monitor, "/workers").unwrap();
    assert_eq!(workers.status, 200, "{}", workers.body);
    let workers: serde_json::Value = serde_json::from_str(&workers.body).unwrap();
    assert_eq!(workers["workers"].as_array().unwrap().len(), 2, "{workers}");
    // The application is not served on the monitor's socket, nor the monitor on the app's.
    assert_eq!(get(app, "/workers").unwrap().status, 404);
    drop(cluster);
}

#[test]
fn a_monitor_socket_beyond_loopback_without_a_token_unix_or_alone_is_a_usage_error() {
    let dir = TempPath::new("activation-monitor");
    std::fs::create_dir_all(dir.path()).unwrap();
    let unix = dir.path().join("monitor.sock");
    let app = || SocketAddr::from(([127, 0, 0, 1], free_port())).to_string();
    let open = SocketAddr::from(([0, 0, 0, 0], free_port())).to_string();
    for (listen, names, says) in [
        (vec![app(), open], "web:monitor", "beyond loopback"),
        (
            vec![app(), unix.display().to_string()],
            "web:monitor",
            "the monitor's must be TCP",
        ),
        (vec![app()], "monitor", "the application needs one too"),
    ] {
        let mut args = Vec::new();
        for l in &listen {
            args.extend(["-l", l.as_str()]);
        }
        let names = format!("--fdname={names}");
        args.extend([
            names.as_str(),
            env!("CARGO_BIN_EXE_fixture-app"),
            "--workers=1",
            "--cache.enable=false",
        ]);
        let mut proc = Proc::spawn(tool(), &args, &[]);
        proc.wait_for("Listening on");
        // The tool starts the program on the first connection to its first socket.
        let first: SocketAddr = listen[0].parse().unwrap();
        let _connection = std::net::TcpStream::connect(first).unwrap();
        let status = proc.wait_exit();
        assert_eq!(status.code(), Some(2), "{says}: {}", proc.log.join("\n"));
        assert!(
            proc.log.iter().any(|l| l.contains(says)),
            "{says}: {}",
            proc.log.join("\n")
        );
    }
}
