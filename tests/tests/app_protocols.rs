//! The `server` option decides which HTTP versions the shared port speaks, and malformed
//! requests get an HTTP error instead of hurting the worker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use cluster2_tests::{Cluster, SOON, get, request};

const APP: &str = env!("CARGO_BIN_EXE_fixture-app");

/// The HTTP/2 connection preface with an empty SETTINGS frame: what an h2c client with prior
/// knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Sends the preface and returns the first bytes the server answers (empty if it closed).
fn first_bytes_after_h2_preface(addr: SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream.write_all(H2_PREFACE).unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    buf[..n].to_vec()
}

fn is_h2_settings_frame(bytes: &[u8]) -> bool {
    // A frame header is 3 bytes of length, then the type; SETTINGS is type 4.
    bytes.len() >= 9 && bytes[3] == 0x4
}

#[test]
fn auto_speaks_http1_and_h2c() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");
    assert!(is_h2_settings_frame(&first_bytes_after_h2_preface(
        cluster.app
    )));
}

#[test]
fn http1_only_refuses_h2c() {
    let cluster = Cluster::start(APP, &["--workers=1", "--server=http1"], &[]);
    assert_eq!(get(cluster.app, "/").unwrap().body, "hello world");
    assert!(!is_h2_settings_frame(&first_bytes_after_h2_preface(
        cluster.app
    )));
}

#[test]
fn http2_only_refuses_http1_and_warms_up_over_h2() {
    // The fixture's warm-up makes a real request: over HTTP/2 here.
    let cluster = Cluster::start(APP, &["--workers=1", "--server=http2"], &[]);
    assert!(is_h2_settings_frame(&first_bytes_after_h2_preface(
        cluster.app
    )));
    // An HTTP/1 request is not answered as one: the connection fails or closes unanswered.
    match get(cluster.app, "/") {
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "it must not hang"),
        Ok(response) => panic!("HTTP/1 was served by an HTTP/2-only port: {response:?}"),
    }
}

#[test]
fn malformed_requests_get_400_and_the_worker_keeps_serving() {
    let cluster = Cluster::start(APP, &["--workers=1"], &[]);
    for raw in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ] {
        let response = request(cluster.app, raw).expect("an answer, not a reset");
        assert_eq!(response.status, 400, "{raw:?}");
    }
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let response = request(cluster.app, &huge).expect("an answer to an oversized head");
    assert_eq!(response.status, 431);
    let pid = get(cluster.app, "/pid").unwrap().body;
    assert_eq!(
        pid,
        cluster.workers[0].to_string(),
        "the same worker still serves"
    );
}
