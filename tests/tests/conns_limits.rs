//! Connections held to account on both ports: a connection that sends no complete request head
//! within `header_timeout` is closed (a silent one, a slow-loris one, an idle kept-alive one),
//! and a worker keeps at most `max_connections` open, making room by closing the ones idle the
//! longest, refusing new ones only when all are busy, and then the ECV says so.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use cluster2_tests::{Cluster, SOON, TempPath, eventually, get, request};

const BIN: &str = env!("CARGO_BIN_EXE_fixture-app");

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, SOON).expect("connect")
}

/// Everything the server sends until it closes the connection; panics if it keeps it open
/// for [`SOON`].
fn until_closed(mut stream: TcpStream, what: &str) -> Vec<u8> {
    stream.set_read_timeout(Some(SOON)).unwrap();
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => bytes,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => bytes,
        Err(e) => panic!("{what}: still open after {SOON:?} ({e})"),
    }
}

/// Whether the server has closed `stream`, without waiting.
fn is_closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0; 1];
    match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

#[test]
fn connections_without_a_request_head_are_closed_after_the_header_timeout_on_both_ports() {
    let cluster = Cluster::start(BIN, &["--workers=1", "--header-timeout=1s"], &[]);
    let mut open = Vec::new();
    for (port, addr) in [("app", cluster.app), ("monitor", cluster.monitor)] {
        for i in 0..10 {
            open.push((format!("{port}: silent connection {i}"), connect(addr)));
        }
        // Slow loris: a request head sent in pieces, never finished.
        let mut partial = connect(addr);
        partial
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
        open.push((format!("{port}: unfinished request head"), partial));
        // A kept-alive connection after one answered request.
        let mut kept = connect(addr);
        let path = if port == "app" { "/" } else { "/ecv" };
        kept.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        open.push((format!("{port}: idle kept-alive connection"), kept));
    }
    // HTTP/2 with prior knowledge: the preface, then nothing.
    let mut h2 = connect(cluster.app);
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    open.push(("app: HTTP/2 connection without a request".to_owned(), h2));

    // Meanwhile both ports answer.
    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    assert_eq!(get(cluster.monitor, "/ecv").unwrap().status, 200);

    for (what, stream) in open {
        let sent = String::from_utf8_lossy(&until_closed(stream, &what)).into_owned();
        if what.contains("kept-alive") {
            assert!(sent.starts_with("HTTP/1.1 200"), "{what}: {sent:?}");
        }
    }
}

#[test]
fn at_the_cap_idle_connections_make_room_and_when_all_are_busy_the_ecv_goes_down() {
    let cluster = Cluster::start(
        BIN,
        &["--workers=1", "--max-connections=8", "--header-timeout=60s"],
        &[],
    );
    let mut events = cluster.events();

    // Silent connections beyond the cap: the ones idle the longest are closed for new ones,
    // and a real request still gets through.
    let silent: Vec<TcpStream> = (0..30).map(|_| connect(cluster.app)).collect();
    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    assert!(
        eventually(SOON, || silent.iter().filter(|s| is_closed(s)).count()
            >= 30 - 8),
        "more than 8 silent connections are still open"
    );

    // Every allowed connection busy: a new one is closed unanswered, and the worker says so.
    let release = TempPath::new("release");
    let path = format!("/hold?until={}", release.as_str());
    let held: Vec<_> = (0..8)
        .map(|_| {
            let (app, path) = (cluster.app, path.clone());
            std::thread::spawn(move || get(app, &path))
        })
        .collect();
    let mut proc = cluster.proc;
    for _ in 0..8 {
        proc.wait_for("hold request started");
    }
    let refused = request(
        cluster.app,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.is_err(), "answered at the cap: {refused:?}");
    let stalled = events.wait("cannot_accept", |e| e["worker"] == 0);
    assert!(
        stalled["why"]
            .as_str()
            .unwrap()
            .contains("8 connections open"),
        "{stalled}"
    );
    let ecv = get(cluster.monitor, "/ecv").unwrap();
    assert_eq!(ecv.status, 503, "{ecv:?}");
    assert!(
        ecv.body.contains("no worker can take new connections"),
        "{ecv:?}"
    );

    // Once requests end, the worker takes connections again and the ECV is up.
    std::fs::write(release.path(), b"go").unwrap();
    for answer in held {
        let answer = answer.join().unwrap().unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "released"));
    }
    events.wait("accepting", |e| e["worker"] == 0);
    assert_eq!(get(cluster.monitor, "/ecv").unwrap().status, 200);
    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    drop(proc);
}
