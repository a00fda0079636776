//! cluster2 runs an HTTP application on a supervised cluster of worker processes that share
//! one port.
//!
//! ```no_run
//! use cluster2::axum::{routing::get, Router};
//!
//! #[cluster2::configure_app]
//! async fn app() -> Router {
//!     Router::new().route("/", get(|| async { "hello world" }))
//! }
//!
//! #[cluster2::warm_up]
//! async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
//!     w.get("/").await?;
//!     Ok(())
//! }
//!
//! #[cluster2::main(port = 9090, workers = 4)]
//! async fn main(started: cluster2::Started) {
//!     tracing::info!(role = ?started.role(), addr = %started.addr(), "up");
//! }
//! ```
//!
//! More attributes: `#[cluster2::status("name")]` (a status view, see [`mod@status`]),
//! `#[cluster2::configure_monitor]` (routes on the monitor app), `#[cluster2::ecv_validator]`
//! (monitor-mode ECV decisions, see [`ecv`]) and `#[cluster2::should_kill]` (when to replace a
//! worker, see [`robustness`]). Events between processes are in [`emitter`], the shared cache
//! in [`cache`], operator controls in [`master`], the monitor's HTTP API in [`monitor_api`].
//!
//! The master binds the port once and re-executes the same binary as each worker, handing
//! it the listening socket; a worker configures the app, warms up on a private listener, then
//! accepts on the shared socket. The master restarts crashed workers with back-off and stops
//! the cluster gracefully on SIGTERM or SIGINT. Every option can be set in the macro, a config
//! file, the environment or on the command line; run any cluster2 binary with `--help`.
#![doc(html_root_url = "https://docs.rs/cluster2/0.1.0")]

mod app; // the App type served by workers, and what configure_app may return
mod backend; // a Redis server the hosts share (cache.backend, emitter.backend): URL, connections
mod balance; // even spread of connections: each worker takes its turn on the shared queue
pub mod cache; // the cache shared by all processes, with single-flight loads
mod cluster; // Cluster::builder(): role dispatch and the public entry point
mod conns; // connections held to account: request-head deadline, cap, open-files limit
mod control_cli; // the commands for a running cluster: status, reload, scale (via its monitor)
pub mod ecv; // the health endpoint load balancers poll
pub mod emitter; // cross-process events: on / emit / to(targets)
mod error; // Error, ErrorKind, Result, Context
mod exit; // every exit status, and what a child's means
#[cfg(test)]
mod fuzz; // fuzz targets of every decoder and parser (tests only: docs/fuzzing.md)
mod heartbeat; // what workers report to the master
mod ipc; // master <-> worker channel, messages and inherited fds
pub mod lifecycle; // the cluster's life as typed events, kept by the master
mod listen; // where the application listens: TCP on every address of its host, a Unix socket, or sockets the service manager passed; accepting on all
mod log; // log lines labelled with the process; the filter changed live; streaming to the monitor
pub mod master; // the supervising process; public: operator controls
mod monitor; // the master's monitor app on mon_port
mod tls; // TLS on the application port: the master reads and checks the files and watches the certificate's expiry, workers serve them
#[doc = include_str!("../docs/monitor-api.md")]
pub mod monitor_api {} // the monitor's routes and every field of their JSON, documented
pub mod options; // every option, its default and its layering
mod registry; // link-time registration of the attribute macros' functions
pub mod robustness; // recycle decisions: assert_old, max_requests, max_memory, AssertDegraded
mod role; // master or worker, from the environment marker
mod runtime_dir; // the cluster's private directory (cluster2-<pid>) for its sockets
mod started; // Started, Role and WarmUp, handed to user code
pub mod status; // named status views, aggregated by the master
mod title; // process titles (`hello: worker 2`) for ps and top
mod worker; // the serving process

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[doc(inline)]
pub use app::{App, ConnInfo, IntoApp};
#[doc(inline)]
pub use cluster::{Builder, Cluster, MainResult};
#[doc(inline)]
pub use error::{BoxError, Context, Error, ErrorKind, Result};
#[doc(inline)]
pub use heartbeat::{Heartbeat, REQUEST_DURATION_BUCKETS};
#[doc(inline)]
pub use options::{Options, ServerProtocol};
#[doc(inline)]
pub use started::{Role, Started, WarmUp};

/// The axum that cluster2 serves (0.8), with the features cluster2 enables: build the app with
/// it, and the `Router` your `#[configure_app]` returns is the one cluster2 takes. A direct
/// `axum` dependency must be of the same minor version (0.8) to add features; another one is a
/// different crate, whose `Router` cluster2 cannot serve.
pub use axum;

#[doc(inline)]
pub use cluster2_macros::{
    configure_app, configure_monitor, ecv_validator, main, should_kill, status, warm_up,
};

/// Not public API: what the benchmarks measure in isolation.
#[doc(hidden)]
pub mod __bench {
    pub use crate::worker::counting::{CountLayer, Counted};
}

/// The names most applications need.
pub mod prelude {
    pub use crate::{App, BoxError, Role, Started, WarmUp};
}
