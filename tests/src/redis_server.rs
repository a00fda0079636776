//! A real `redis-server` for the tests of the Redis backends, started by the test itself on a
//! Unix socket in a private temp directory (no TCP port at all), without persistence, and
//! killed when dropped. A machine without `redis-server` fails the test with the command
//! that installs it: these tests never skip.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{SOON, TempPath, eventually};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    dir: TempPath,
    socket: PathBuf,
    /// With TLS: the loopback port it listens on for TLS, beside its Unix socket.
    tls_port: Option<u16>,
}

impl RedisServer {
    /// Starts a server in a fresh temp directory named after `name`, and waits until it
    /// answers.
    pub fn start(name: &str) -> Self {
        let dir = TempPath::new(&format!("redis-{name}"));
        std::fs::create_dir_all(dir.path()).expect("create the server's directory");
        let socket = dir.path().join("redis.sock");
        let mut server = Self {
            child: None,
            dir,
            socket,
            tls_port: None,
        };
        server.restart();
        server
    }

    /// Starts a server that also takes TLS connections on a free loopback port, presenting
    /// the certificate chain `cert_pem` with its key `key_pem` (clients are not asked for
    /// certificates). Its Unix socket stays plain, for [`RedisServer::command`].
    pub fn start_tls(name: &str, cert_pem: &str, key_pem: &str) -> Self {
        let dir = TempPath::new(&format!("redis-{name}"));
        std::fs::create_dir_all(dir.path()).expect("create the server's directory");
        std::fs::write(dir.path().join("cert.pem"), cert_pem).expect("write the certificate");
        std::fs::write(dir.path().join("key.pem"), key_pem).expect("write the key");
        let socket = dir.path().join("redis.sock");
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            child: None,
            dir,
            socket,
            tls_port: Some(port),
        };
        server.restart();
        server
    }

    /// Starts the server again on the same socket (after [`RedisServer::kill`]); it starts
    /// empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .args(self.tls_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need it; install it with \
                     `apt-get install -y redis-server`"
                )
            });
        self.child = Some(child);
        assert!(
            eventually(SOON, || self.ping()),
            "redis-server did not answer on {} within {SOON:?}",
            self.socket.display()
        );
    }

    /// The URL clusters are given: `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The URL of its TLS port, `rediss://localhost:PORT` (the name its certificate must
    /// carry); `None` for a server started without TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("rediss://localhost:{port}"))
    }

    fn tls_args(&self) -> Vec<String> {
        let Some(port) = self.tls_port else {
            return Vec::new();
        };
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--tls-port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--tls-cert-file".into(),
            file("cert.pem"),
            "--tls-key-file".into(),
            file("key.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// SIGKILLs the server and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server answers `PING` now.
    pub fn ping(&self) -> bool {
        self.command(&["PING"]).is_some_and(|r| r == "+PONG\r\n")
    }

    /// Sends one command (arguments as text) and returns the raw reply, read until the server
    /// is quiet for a moment; `None` if the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = UnixStream::connect(&self.socket).ok()?;
        stream.set_read_timeout(Some(SOON)).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).ok()?;
            reply.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&reply) {
                break;
            }
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    }
}

/// Whether `reply` holds one whole RESP reply (simple, error, integer, bulk or array of those).
fn complete(reply: &[u8]) -> bool {
    fn one(r: &[u8]) -> Option<usize> {
        let line_end = r.windows(2).position(|w| w == b"\r\n")?;
        let head = std::str::from_utf8(&r[1..line_end]).ok()?;
        let after = line_end + 2;
        match r.first()? {
            b'+' | b'-' | b':' => Some(after),
            b'$' => {
                let len: i64 = head.parse().ok()?;
                if len < 0 {
                    return Some(after);
                }
                let end = after + len as usize + 2;
                (r.len() >= end).then_some(end)
            }
            b'*' => {
                let n: i64 = head.parse().ok()?;
                let mut at = after;
                for _ in 0..n.max(0) {
                    at += one(&r[at..])?;
                }
                Some(at)
            }
            _ => None,
        }
    }
    one(reply) == Some(reply.len())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The temp directory goes with `dir`, after the server.
        self.kill();
    }
}
