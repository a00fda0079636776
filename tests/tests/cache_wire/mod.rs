//! The cache socket spoken by hand, as a client that does not use cluster2 would: requests
//! encoded byte by byte (postcard, in a frame of cluster2's format), answers read raw. Tests
//! use it to do what cluster2's own client never does (huge leases, hostile names, requests
//! that never finish) against a running cluster's manager.

#![allow(dead_code)] // each test file uses its own part

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use cluster2_tests::{Events, SOON};

/// The protocol version byte every frame starts with: `PROTOCOL_VERSION` of cluster2's
/// `ipc/frame.rs`, which a change to the messages bumps.
pub(crate) const VERSION: u8 = 7;

/// The socket of the cluster's cache manager, and the manager's pid, from the
/// `cache_manager_up` event.
pub(crate) fn manager(events: &mut Events) -> (String, u32) {
    let up = events.wait("cache_manager_up", |e| e["pid"].is_u64());
    (
        up["socket"].as_str().unwrap().to_owned(),
        up["pid"].as_u64().unwrap() as u32,
    )
}

/// A connection to the manager, with generous timeouts.
pub(crate) fn connect(socket: &str) -> UnixStream {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream.set_write_timeout(Some(SOON)).unwrap();
    stream
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

fn option(n: Option<u64>, out: &mut Vec<u8>) {
    match n {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            varint(n, out);
        }
    }
}

/// One request, `op` being an operation encoded below: a whole frame, ready to write.
pub(crate) fn request(id: u64, op: &[u8]) -> Vec<u8> {
    let mut body = vec![VERSION];
    varint(id, &mut body);
    body.extend_from_slice(op);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// `Use`: declares a namespace, without bounds.
pub(crate) fn use_ns(ns: &str, persist: bool) -> Vec<u8> {
    let mut op = vec![0];
    bytes(ns.as_bytes(), &mut op);
    op.push(u8::from(persist));
    option(None, &mut op); // expire_ms
    option(None, &mut op); // max_entries
    option(None, &mut op); // max_bytes
    op
}

/// `Use`: declares a namespace of at most `max_entries` entries.
pub(crate) fn use_ns_bounded(ns: &str, max_entries: u64) -> Vec<u8> {
    let mut op = vec![0];
    bytes(ns.as_bytes(), &mut op);
    op.push(0); // persist
    option(None, &mut op); // expire_ms
    option(Some(max_entries), &mut op);
    option(None, &mut op); // max_bytes
    op
}

/// `Get`, with a lease in milliseconds (a miss then takes the key's lock).
pub(crate) fn get(ns: &str, key: &str, lease_ms: Option<u64>) -> Vec<u8> {
    let mut op = vec![1];
    bytes(ns.as_bytes(), &mut op);
    bytes(key.as_bytes(), &mut op);
    option(lease_ms, &mut op);
    op
}

/// `Set`.
pub(crate) fn set(ns: &str, key: &str, value: &[u8]) -> Vec<u8> {
    let mut op = vec![5];
    bytes(ns.as_bytes(), &mut op);
    bytes(key.as_bytes(), &mut op);
    bytes(value, &mut op);
    op.push(0); // leave_if_not_null
    op
}

/// `Watch`: every change in the namespace is pushed to this connection.
pub(crate) fn watch(ns: &str) -> Vec<u8> {
    let mut op = vec![8];
    bytes(ns.as_bytes(), &mut op);
    op
}

/// What the manager answered, as far as the tests need to tell.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `Message::Reply` with this `Reply` variant (0 `Used`, 1 `Value`, 2 `Miss`, 3 `Load`,
    /// 5 `Done`, 9 `Error`, …), and the whole body.
    Reply(u8, Vec<u8>),
    /// `Message::Changed`.
    Changed(Vec<u8>),
    /// `Message::Refused`, and the whole body.
    Refused(Vec<u8>),
    /// The manager closed the connection.
    Closed,
}

impl Answer {
    /// The body as text, for looking for a message in it.
    pub(crate) fn text(&self) -> String {
        match self {
            Answer::Reply(_, b) | Answer::Changed(b) | Answer::Refused(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            Answer::Closed => String::new(),
        }
    }
}

/// Reads one message (or the end of the connection).
pub(crate) fn read(stream: &mut UnixStream) -> Answer {
    let mut head = [0u8; 4];
    match stream.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Answer::Closed,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Answer::Closed,
        Err(e) => panic!("no answer from the cache manager: {e}"),
    }
    let mut body = vec![0; u32::from_be_bytes(head) as usize];
    match stream.read_exact(&mut body) {
        Ok(()) => {}
        // Cut off in the middle of a message.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Answer::Closed,
        Err(e) => panic!("no whole answer from the cache manager: {e}"),
    }
    assert_eq!(body[0], VERSION, "{body:?}");
    match body[1] {
        0 => {
            // Skip the request id (a varint) to the reply's variant.
            let mut at = 2;
            while body[at] & 0x80 != 0 {
                at += 1;
            }
            Answer::Reply(body[at + 1], body)
        }
        1 => Answer::Changed(body),
        2 => Answer::Refused(body),
        other => panic!("unknown message {other}: {body:?}"),
    }
}

/// Sends one request and reads the answer. A manager that refused the connection may have
/// closed it before the request is written: what it said is read all the same.
pub(crate) fn call(stream: &mut UnixStream, id: u64, op: &[u8]) -> Answer {
    let _ = stream.write_all(&request(id, op));
    read(stream)
}

/// The resident memory of process `pid`, in bytes.
pub(crate) fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// How long a test waits for the manager to close a connection it should close.
pub(crate) const CLOSE_WITHIN: Duration = SOON;
