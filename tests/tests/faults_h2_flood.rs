//! An HTTP/2 rapid-reset flood: clients that open streams and reset them at once, until the
//! server closes their connections. The worker keeps serving, says so once rather than once
//! per connection, and reports the connections as protocol errors in its heartbeats (which
//! the degradation heuristic then does not judge).

use std::net::SocketAddr;

use cluster2_tests::{Cluster, SOON, eventually, get};

const BIN: &str = env!("CARGO_BIN_EXE_fixture-app");

/// Flooding connections, each closed by the server well before its streams run out.
const CONNECTIONS: usize = 30;
const STREAMS: usize = 200;

/// Opens `STREAMS` streams on one HTTP/2 connection, resetting each at once; returns once the
/// server has closed the connection.
async fn rapid_reset(addr: SocketAddr) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    for _ in 0..STREAMS {
        let request = http::Request::get(format!("http://localhost:{}/", addr.port()))
            .body(())
            .unwrap();
        match client.send_request(request, false) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
    }
    // The server's GOAWAY ends it.
    let ended = tokio::time::timeout(SOON, connection).await;
    assert!(ended.is_ok(), "the server kept a flooding connection open");
}

#[test]
fn a_rapid_reset_flood_is_logged_once_counted_and_survived() {
    let mut cluster = Cluster::start(
        BIN,
        &["--workers=1", "--server=auto", "--heartbeat-interval=2s"],
        &[],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let floods: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(rapid_reset(cluster.app)))
            .collect();
        for flood in floods {
            flood.await.unwrap();
        }
    });

    assert_eq!(get(cluster.app, "/").unwrap().status, 200);
    // The heartbeat that covers the flood counts its connections.
    let mut seen = String::new();
    let counted = eventually(SOON, || {
        let workers = get(cluster.monitor, "/workers").unwrap().body;
        let json: serde_json::Value = serde_json::from_str(&workers).unwrap();
        seen = json["workers"][0]["heartbeat"].to_string();
        json["workers"][0]["heartbeat"]["protocol_errors"]
            .as_u64()
            .is_some_and(|n| n > 0)
    });
    assert!(
        counted,
        "no heartbeat counted protocol errors; last: {seen}"
    );

    // One warning from the flood, not one per connection.
    cluster.proc.rewind();
    cluster.proc.wait_for("reached limit");
    let warnings = cluster
        .proc
        .log
        .iter()
        .filter(|l| l.contains("reached limit"))
        .count();
    assert!(
        warnings <= 2,
        "{warnings} warnings for {CONNECTIONS} connections:\n{}",
        cluster.proc.log.join("\n")
    );
}
