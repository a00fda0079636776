//! TLS on the application port (`tls.cert`, `tls.key`), with certificates this test makes
//! (rcgen) and a rustls client that trusts only the test's own authority: HTTPS answers (and
//! the ECV, on the plain monitor port, probes it in TLS), ALPN
//! negotiates h2 and an h2 request works, SIGHUP swaps the certificate for new handshakes and
//! leaves an open connection alone, a bad file refuses the start or keeps the old certificate,
//! and a client that never sends its ClientHello is closed after `header_timeout`. The
//! certificate's expiry: a warning naming the file and the day when it is due for renewal, an
//! error (and still served) when expired, and `/metrics`'s gauge of it, read by the reference
//! OpenMetrics parser, following SIGHUP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use cluster2_tests::{Cluster, Proc, SOON, TempPath};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use time::OffsetDateTime;

/// The test's certificate authority.
struct Authority(CertifiedIssuer<'static, KeyPair>);

impl Authority {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "cluster2 test authority");
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A certificate for `localhost` named `name`: the chain (its own first, then the
    /// authority's) and the key as PEM, and its own DER to compare with what a client sees.
    fn issue(&self, name: &str) -> Issued {
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        self.sign(name, params)
    }

    /// [`Authority::issue`], valid from `not_before` to `not_after` (unix seconds).
    fn issue_valid(&self, name: &str, not_before: i64, not_after: i64) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        params.not_after = OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        self.sign(name, params)
    }

    fn sign(&self, name: &str, mut params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.0).unwrap();
        Issued {
            chain: format!("{}{}", cert.pem(), self.0.pem()),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.0.der().to_vec()))
            .unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

struct Issued {
    chain: String,
    key: String,
    der: Vec<u8>,
}

/// The files a cluster reads, in a directory of their own.
struct Files {
    dir: TempPath,
}

impl Files {
    fn new(name: &str, issued: &Issued) -> Self {
        let dir = TempPath::new(name);
        std::fs::create_dir_all(dir.path()).unwrap();
        let files = Self { dir };
        files.write(issued);
        files
    }

    fn cert(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }

    fn key(&self) -> String {
        self.dir.path().join("key.pem").display().to_string()
    }

    /// Writes beside, then renames over: what a certificate renewal does.
    fn write(&self, issued: &Issued) {
        self.replace("cert.pem", &issued.chain);
        self.replace("key.pem", &issued.key);
    }

    fn replace(&self, name: &str, text: &str) {
        let staged = self.dir.path().join(format!("{name}.new"));
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(staged, self.dir.path().join(name)).unwrap();
    }

    fn args(&self) -> [String; 2] {
        [
            format!("--tls.cert={}", self.cert()),
            format!("--tls.key={}", self.key()),
        ]
    }
}

fn start(files: &Files, extra: &[&str]) -> Cluster {
    let tls = files.args();
    let mut args: Vec<&str> = vec![&tls[0], &tls[1], "--workers=2", "--cache.enable=false"];
    args.extend_from_slice(extra);
    Cluster::start(env!("CARGO_BIN_EXE_fixture-app"), &args, &[])
}

/// One HTTPS connection, HTTP/1.1 over blocking rustls.
struct Https {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl Https {
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Self {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(SOON)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(config, name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("TLS handshake");
        }
        Self { stream }
    }

    /// The certificate the server presented, DER.
    fn peer(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().expect("a certificate")[0].to_vec()
    }

    fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// GETs `path` on this connection (kept alive) and returns the status line and body.
    fn get(&mut self, path: &str) -> (String, String) {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        self.stream.flush().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).expect("a response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("content-length");
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).unwrap();
        (
            head.lines().next().unwrap().to_owned(),
            String::from_utf8(body).unwrap(),
        )
    }
}

#[test]
fn https_answers_with_the_configured_certificate() {
    let ca = Authority::new();
    let first = ca.issue("first");
    let files = Files::new("tls-answers", &first);
    let cluster = start(&files, &["--ecv.mode=monitor", "--ecv.monitor=/"]);
    let mut conn = Https::connect(cluster.app, ca.client(&[b"http/1.1"]));
    assert_eq!(conn.peer(), first.der);
    assert_eq!(conn.alpn().as_deref(), Some(&b"http/1.1"[..]));
    for _ in 0..3 {
        let (status, body) = conn.get("/");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "hello world");
    }
    // The monitor stays plain HTTP, and its ECV probes the application in TLS.
    let ecv = cluster2_tests::get(cluster.monitor, "/ecv").unwrap();
    assert_eq!((ecv.status, ecv.body.as_str()), (200, "OK"));
    drop(cluster);
}

#[test]
fn alpn_negotiates_h2_and_an_h2_request_works() {
    let ca = Authority::new();
    let issued = ca.issue("h2");
    let files = Files::new("tls-h2", &issued);
    let cluster = start(&files, &[]);
    let config = ca.client(&[b"h2", b"http/1.1"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(cluster.app).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (client, connection) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = http::Request::get("https://localhost/").body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = tokio::time::timeout(SOON, response).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            text.extend_from_slice(&chunk);
        }
        String::from_utf8(text).unwrap()
    });
    assert_eq!(body, "hello world");
    drop(cluster);
}

#[test]
fn alpn_offers_only_what_the_server_option_allows() {
    let ca = Authority::new();
    let issued = ca.issue("alpn");
    let files = Files::new("tls-alpn", &issued);
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    for (server, chosen) in [
        ("--server=http1", &b"http/1.1"[..]),
        ("--server=http2", b"h2"),
    ] {
        let cluster = start(&files, &[server]);
        let conn = Https::connect(cluster.app, ca.client(both));
        assert_eq!(conn.alpn().as_deref(), Some(chosen), "{server}");
        drop(cluster);
    }
}

#[test]
fn sighup_swaps_the_certificate_for_new_handshakes_and_not_open_connections() {
    let ca = Authority::new();
    let old = ca.issue("old");
    let new = ca.issue("new");
    let files = Files::new("tls-reload", &old);
    let release = TempPath::new("tls-reload-release");
    let mut cluster = start(&files, &[]);
    let config = ca.client(&[b"http/1.1"]);

    // A connection opened before, with a request in flight across the reload.
    let mut open = Https::connect(cluster.app, config.clone());
    assert_eq!(open.peer(), old.der);
    assert_eq!(open.get("/").1, "hello world");
    write!(
        open.stream,
        "GET /hold?until={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        release.as_str()
    )
    .unwrap();
    open.stream.flush().unwrap();
    cluster.proc.wait_for("hold request started");

    files.write(&new);
    cluster.proc.signal(nix::sys::signal::Signal::SIGHUP);
    cluster
        .proc
        .wait_for("SIGHUP: new TLS certificate read; new handshakes use it");
    // Both running workers took it (successors start with it).
    cluster
        .proc
        .wait_for("new TLS certificate for new handshakes");
    cluster
        .proc
        .wait_for("new TLS certificate for new handshakes");
    for _ in 0..6 {
        let mut conn = Https::connect(cluster.app, config.clone());
        assert_eq!(
            conn.peer(),
            new.der,
            "a new handshake gets the new certificate"
        );
        assert_eq!(conn.get("/").1, "hello world");
    }

    // The open connection kept its session: its request completes, on the old certificate.
    std::fs::write(release.path(), "").unwrap();
    let mut rest = Vec::new();
    let mut byte = [0u8; 1];
    while !rest.ends_with(b"released") {
        open.stream
            .read_exact(&mut byte)
            .expect("the held request's answer");
        rest.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200 OK"));
    assert_eq!(open.peer(), old.der);
    drop(cluster);
}

#[test]
fn a_bad_certificate_at_sighup_keeps_the_old_one() {
    let ca = Authority::new();
    let good = ca.issue("good");
    let files = Files::new("tls-bad-reload", &good);
    let mut cluster = start(&files, &[]);
    let mut events = cluster.events();
    let config = ca.client(&[b"http/1.1"]);
    assert_eq!(Https::connect(cluster.app, config.clone()).peer(), good.der);

    files.replace(
        "cert.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n",
    );
    cluster.proc.signal(nix::sys::signal::Signal::SIGHUP);
    let line = cluster
        .proc
        .wait_for("SIGHUP: keeping the TLS certificate in use");
    assert!(line.contains(&files.cert()), "{line}");
    // The rolling restart goes on: the successors serve the old certificate.
    events.next_of("replaced");
    events.next_of("replaced");
    for _ in 0..4 {
        let mut conn = Https::connect(cluster.app, config.clone());
        assert_eq!(conn.peer(), good.der);
        assert_eq!(conn.get("/").1, "hello world");
    }
    drop(cluster);
}

/// Exits with status 2 and one line naming `named`.
fn refused(args: &[&str], named: &str, what: &str) {
    let mut all = vec!["--port=0", "--mon-port=0"];
    all.extend_from_slice(args);
    let mut proc = Proc::spawn(env!("CARGO_BIN_EXE_fixture-app"), &all, &[]);
    let status = proc.wait_exit();
    assert_eq!(status.code(), Some(2), "{}", proc.log.join("\n"));
    let line = proc
        .log
        .iter()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", proc.log.join("\n")));
    assert!(line.contains(named) && line.contains(what), "{line}");
}

#[test]
fn a_bad_certificate_or_key_refuses_to_start() {
    let ca = Authority::new();
    let issued = ca.issue("start");
    let other = ca.issue("other");
    let files = Files::new("tls-bad-start", &issued);
    let [cert, key] = files.args();

    // The key of another certificate.
    files.replace("key.pem", &other.key);
    refused(
        &[&cert, &key],
        &files.key(),
        "not the key of the certificate",
    );
    // No certificate in the file.
    files.replace("cert.pem", "hello\n");
    refused(&[&cert, &key], &files.cert(), "no certificate in it");
    // A certificate file that is not there.
    let missing = format!("--tls.cert={}/absent.pem", files.dir.as_str());
    refused(&[&missing, &key], "absent.pem", "No such file");
    // A key file without a key.
    files.write(&issued);
    files.replace("key.pem", &issued.chain);
    refused(&[&cert, &key], &files.key(), "no private key in it");
    // One without the other.
    refused(&[&cert], "--tls.key", "set without");
}

#[test]
fn a_client_that_never_sends_its_client_hello_is_closed_after_header_timeout() {
    let ca = Authority::new();
    let issued = ca.issue("silent");
    let files = Files::new("tls-silent", &issued);
    let cluster = start(&files, &["--header-timeout=1s"]);
    let mut silent = TcpStream::connect(cluster.app).unwrap();
    silent.set_read_timeout(Some(SOON)).unwrap();
    let mut buf = [0u8; 64];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the server sent {n} bytes to a client that said nothing"),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "closed, not left open: {e}"
        ),
    }
    // The port still serves.
    let mut conn = Https::connect(cluster.app, ca.client(&[]));
    assert_eq!(conn.get("/").1, "hello world");
    drop(cluster);
}

const DAY: i64 = 86_400;

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 in UTC, as the master's lines write dates.
fn rfc3339(unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `cluster2_tls_certificate_expiry_timestamp_seconds` as the reference OpenMetrics parser
/// reads `/metrics`: its samples' values, and whether its family has a HELP text and the unit.
fn expiry_gauge(cluster: &Cluster) -> (Vec<f64>, bool) {
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        values, described = [], False\n\
        for family in parse(sys.stdin.read()):\n\
        \x20   if family.name == 'cluster2_tls_certificate_expiry_timestamp_seconds':\n\
        \x20       described = family.type == 'gauge' and family.unit == 'seconds' and len(family.documentation) > 0\n\
        \x20       values += [s.value for s in family.samples]\n\
        print(json.dumps([values, described]))";
    let text = cluster2_tests::get(cluster.monitor, "/metrics")
        .unwrap()
        .body;
    let out = cluster2_tests::run_reference_parser(SCRIPT, &text);
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_certificate_due_for_renewal_warns_and_metrics_follow_its_renewal() {
    let ca = Authority::new();
    // Issued 80 days ago, for 90 days: ten days (and an hour) left, due for renewal.
    let t = now();
    let ending = t + 10 * DAY + 3600;
    let files = Files::new(
        "tls-expiry-soon",
        &ca.issue_valid("soon", t - 80 * DAY, ending),
    );
    let mut cluster = start(&files, &[]);
    cluster.proc.rewind();
    let line = cluster.proc.wait_for("the certificate expires on");
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains(&format!(
            "--tls.cert {}: the certificate expires on {}, in 10 days: renew it and send SIGHUP",
            files.cert(),
            rfc3339(ending)
        )),
        "{line}"
    );
    assert_eq!(expiry_gauge(&cluster), (vec![ending as f64], true));

    // Renewed for a year: SIGHUP takes it, and the gauge follows.
    let renewed = now() + 365 * DAY + 3600;
    files.write(&ca.issue_valid("renewed", now() - 3600, renewed));
    cluster.proc.signal(nix::sys::signal::Signal::SIGHUP);
    cluster
        .proc
        .wait_for("SIGHUP: new TLS certificate read; new handshakes use it");
    assert_eq!(expiry_gauge(&cluster), (vec![renewed as f64], true));
    let line = cluster.proc.wait_for("the certificate expires on");
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.ends_with(&format!(
            "--tls.cert {}: the certificate expires on {}, in 365 days",
            files.cert(),
            rfc3339(renewed)
        )),
        "{line}"
    );
    drop(cluster);
}

#[test]
fn an_expired_certificate_is_an_error_and_still_served() {
    let ca = Authority::new();
    let t = now();
    let ended = t - 2 * DAY - 3600;
    let files = Files::new(
        "tls-expired",
        &ca.issue_valid("expired", t - 92 * DAY, ended),
    );
    // The cluster starts.
    let mut cluster = start(&files, &[]);
    cluster.proc.rewind();
    let line = cluster.proc.wait_for("the certificate expired on");
    assert!(line.contains(" ERROR "), "{line}");
    assert!(
        line.contains(&format!(
            "--tls.cert {}: the certificate expired on {}, 2 days ago: still served",
            files.cert(),
            rfc3339(ended)
        )),
        "{line}"
    );
    assert_eq!(expiry_gauge(&cluster), (vec![ended as f64], true));
    // It is served, and the client decides: this one checks dates and refuses it.
    let tcp = TcpStream::connect(cluster.app).unwrap();
    tcp.set_read_timeout(Some(SOON)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(ca.client(&[b"http/1.1"]), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    let refused = loop {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            break e;
        }
        assert!(
            stream.conn.is_handshaking(),
            "a client accepted an expired certificate"
        );
    };
    let refused = refused
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {refused}"));
    assert!(
        matches!(
            refused,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
            )
        ),
        "{refused:?}"
    );
    drop(cluster);
}

#[test]
fn without_tls_metrics_have_no_certificate_expiry() {
    let cluster = Cluster::start(env!("CARGO_BIN_EXE_fixture-app"), &["--workers=1"], &[]);
    assert_eq!(expiry_gauge(&cluster), (vec![], false));
    drop(cluster);
}
