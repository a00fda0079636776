//! `bare-hyper`: the baseline of the `http` benchmark. One process, hyper 1.x over a tokio
//! multi-thread runtime, answering `hello world` to every request with HTTP/1.1 keep-alive. No
//! router, no middleware, no second process: what cluster2's `hello` example is measured
//! against.
//!
//! ```text
//! bare-hyper [--port N] [--host IP] [--threads N] [--axum] [--auto] [--header-read-timeout S]
//!            [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! `--port 0` (the default) picks a free port; `--threads 0` (the default) runs one runtime
//! thread per CPU. Once listening it prints, to standard error, a line in the same shape as
//! cluster2's:
//!
//! ```text
//! ready app=0.0.0.0:PORT workers=PID
//! ```
//!
//! SIGTERM or SIGINT stops it with exit status 0.
//!
//! The other switches add, one at a time, what a cluster2 worker does on top of bare hyper, to
//! tell their costs apart: `--axum` answers through the same `axum::Router` as the `hello`
//! example; `--auto` serves connections with hyper-util's HTTP/1 + h2c auto-detecting builder
//! (`serve_connection_with_upgrades`); `--header-read-timeout S` arms hyper's per-request
//! header read timer (a slow-loris guard) with a tokio timer.
//!
//! `--tls-cert` and `--tls-key` serve HTTPS with rustls (ring), as cluster2 does with
//! `tls.cert` and `tls.key`: the `https` benchmark's baseline. ALPN offers `http/1.1` (and
//! `h2` too with `--auto`).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: bare-hyper [--port N] [--host IP] [--threads N] [--axum] [--auto] \
     [--header-read-timeout SECONDS] [--tls-cert PEM --tls-key PEM]";

#[derive(Clone)]
struct Args {
    tls_cert: Option<String>,
    tls_key: Option<String>,
    host: IpAddr,
    port: u16,
    threads: usize,
    axum: bool,
    auto: bool,
    header_read_timeout: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tls_cert: None,
        tls_key: None,
        host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        threads: 0,
        axum: false,
        auto: false,
        header_read_timeout: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        match key.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--axum" => {
                args.axum = true;
                continue;
            }
            "--auto" => {
                args.auto = true;
                continue;
            }
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{key} needs a value"))?,
        };
        let bad = |e: &dyn std::fmt::Display| format!("{key} {value}: {e}");
        match key.as_str() {
            "--port" => args.port = value.parse().map_err(|e| bad(&e))?,
            "--host" => args.host = value.parse().map_err(|e| bad(&e))?,
            "--threads" => args.threads = value.parse().map_err(|e| bad(&e))?,
            "--tls-cert" => args.tls_cert = Some(value),
            "--tls-key" => args.tls_key = Some(value),
            "--header-read-timeout" => {
                let secs: u64 = value.trim_end_matches('s').parse().map_err(|e| bad(&e))?;
                args.header_read_timeout = Some(Duration::from_secs(secs));
            }
            _ => return Err(format!("unknown option {key}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("ready app={local} workers={}", std::process::id());
    let router = args
        .axum
        .then(|| Router::new().route("/", get(|| async { "hello world" })));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(acceptor(cert, key, args.auto)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".to_owned()),
    };
    let conn = Conn {
        auto: args.auto,
        header_read_timeout: args.header_read_timeout,
    };
    loop {
        let (stream, _) = tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            None => {
                tokio::spawn(connection(stream, conn, router.clone()));
            }
            Some(tls) => {
                let handshake = tls.accept(stream);
                let router = router.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = handshake.await {
                        connection(stream, conn, router).await;
                    }
                });
            }
        }
    }
    Ok(())
}

/// How each connection is served.
#[derive(Clone, Copy)]
struct Conn {
    auto: bool,
    header_read_timeout: Option<Duration>,
}

/// rustls with ring over the PEM files, as cluster2 serves them.
fn acceptor(cert: &str, key: &str, auto: bool) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {key}: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("TLS: {e}"))?;
    config.alpn_protocols = if auto {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// Serves one connection until the client closes it.
async fn connection<I>(stream: I, args: Conn, router: Option<Router>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    if args.auto {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(timeout) = args.header_read_timeout {
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
        }
        let _ = match router {
            None => {
                builder
                    .serve_connection_with_upgrades(io, service_fn(hello))
                    .await
            }
            Some(router) => {
                let service = TowerToHyperService::new(router);
                builder.serve_connection_with_upgrades(io, service).await
            }
        };
    } else {
        let mut builder = http1::Builder::new();
        builder.keep_alive(true);
        if let Some(timeout) = args.header_read_timeout {
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
        }
        let _ = match router {
            None => builder.serve_connection(io, service_fn(hello)).await,
            Some(router) => {
                let service = TowerToHyperService::new(router);
                builder.serve_connection(io, service).await
            }
        };
    }
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello world")));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
