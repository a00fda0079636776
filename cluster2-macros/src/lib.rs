//! Attribute macros of [cluster2](https://docs.rs/cluster2). Depend on `cluster2`, not on this
//! crate: it re-exports every macro here.

mod args; // attribute arguments and their checks
mod errors; // error collector
mod main_attr; // #[cluster2::main]
mod register; // #[configure_app], #[warm_up] and the other single-function hooks
mod schema; // the shared option schema, as the attribute writes it
mod status; // #[status("name")]
mod values; // one option's literal against the schema, and its messages

use proc_macro::TokenStream;

/// Turns `async fn main` into the entry point of a cluster.
///
/// ```no_run
/// #[cluster2::main(port = 9090, workers = 4, restart(delay = "200ms"))]
/// async fn main(started: cluster2::Started) {
///     println!("{:?} serving on {}", started.role(), started.addr());
/// }
/// ```
///
/// The function may take no argument or one `cluster2::Started`, and may return `()` or
/// `Result<(), E>` with `E: Display` (an `Err` is logged and the process exits non-zero). It
/// runs in the master once every initial worker is serving, and in each worker once it is
/// serving.
///
/// Arguments set options: `key = literal`, nested as `group(key = literal)`. They are defaults
/// for this binary: a config file, the environment and the command line override them. Add
/// `crate = "path::to::cluster2"` when cluster2 is re-exported under another name.
///
/// Options are checked when the binary is compiled, against the same schema the runtime checks
/// them with at start-up: unknown or misspelled keys, duplicates, values of the wrong type,
/// numbers and durations outside their range (`workers = 0`, `cache(spin = "5ms")`), durations
/// without a unit and hosts that are neither an IP address nor a host name are all reported
/// together, each on its own token. Values are literals; a value known only at run time
/// belongs in the config file, the environment or on the command line, or in
/// [`Builder::option`] when building the cluster without the macro.
///
/// The application's `Cargo.lock` (the nearest one in or above the crate's directory) is
/// embedded in the binary, for the monitor's `/deps`; the crate is rebuilt when it changes.
///
/// [`Builder::option`]: https://docs.rs/cluster2/latest/cluster2/struct.Builder.html#method.option
///
/// # Equivalent code without the macro
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     async fn main(started: cluster2::Started) { /* body */ }
///     cluster2::Cluster::builder()
///         .name(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
///         // The nearest Cargo.lock, here a workspace's: the macro finds it at compile time.
///         .dependencies(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")))
///         .option("port", 9090i64)
///         .option("workers", 4i64)
///         .option("restart.delay", "200ms")
///         .run(|started| main(started))
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand(attr.into(), item.into()).into()
}

/// Marks the function that builds the application in each worker.
///
/// ```
/// use cluster2::axum::{routing::get, Router};
///
/// #[cluster2::configure_app]
/// async fn app() -> Router {
///     Router::new().route("/", get(|| async { "hello world" }))
/// }
/// # fn main() {}
/// ```
///
/// The function may be sync or async, takes no argument, and returns an `axum::Router`, a
/// `cluster2::App`, or a `Result` of either whose error is `Display` (an error aborts the
/// worker's start-up and is reported with the function's name). A binary has exactly one.
///
/// # Equivalent code without the macro
///
/// ```
/// # async fn app() -> cluster2::axum::Router { cluster2::axum::Router::new() }
/// let builder = cluster2::Cluster::builder().configure_app(app);
/// # let _ = builder;
/// ```
#[proc_macro_attribute]
pub fn configure_app(attr: TokenStream, item: TokenStream) -> TokenStream {
    register::expand(register::Hook::ConfigureApp, attr.into(), item.into()).into()
}

/// Marks the function that warms each worker up before it takes traffic.
///
/// ```
/// #[cluster2::warm_up]
/// async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
///     w.get("/").await?; // a real request to this worker's own warm-up listener
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// It runs in each worker after the app is built, while the app is served on a private
/// listener on 127.0.0.1; the worker accepts on the shared port only once it returns `Ok`.
/// An `Err` is reported to the master, and the worker is retried with back-off.
///
/// # Equivalent code without the macro
///
/// ```
/// # async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> { Ok(()) }
/// let builder = cluster2::Cluster::builder().warm_up(warm);
/// # let _ = builder;
/// ```
#[proc_macro_attribute]
pub fn warm_up(attr: TokenStream, item: TokenStream) -> TokenStream {
    register::expand(register::Hook::WarmUp, attr.into(), item.into()).into()
}

/// Registers a named status view: a function with no arguments that returns the status as it
/// is now, as any `serde::Serialize` value.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
///
/// #[cluster2::status("connections")]
/// fn connections() -> u64 {
///     CONNECTIONS.load(Ordering::Relaxed)
/// }
/// # fn main() {}
/// ```
///
/// Every process of the cluster registers it; `cluster2::status::get_status("connections")`
/// in the master collects the view of each process, and the monitor serves them on
/// `/statuses`. Views run on a blocking thread, so they are plain (not `async`) functions.
///
/// With `update = function`, `cluster2::status::set_status` can change the status too. The
/// function takes the new value, any `serde::Deserialize` type, and returns the resulting
/// view, any `serde::Serialize` type:
///
/// ```
/// # use std::sync::Mutex;
/// # static LEVEL: Mutex<String> = Mutex::new(String::new());
/// # fn current_level() -> String { LEVEL.lock().unwrap().clone() }
/// # fn apply_level(level: &str) { *LEVEL.lock().unwrap() = level.to_owned(); }
/// #[cluster2::status("log-level", update = set_level)]
/// fn log_level() -> String {
///     current_level()
/// }
///
/// fn set_level(level: String) -> String {
///     apply_level(&level);
///     current_level()
/// }
/// # fn main() {}
/// ```
///
/// The name is a string literal and cannot be empty. Of two statuses of the same name in one
/// binary, the first is kept and the second is logged as an error. Add `crate = "path::to::cluster2"`
/// when cluster2 is re-exported under another name.
///
/// # Equivalent code without the macro
///
/// Call these in every process (the master and each worker) before the status is read:
///
/// ```no_run
/// # fn connections() -> u64 { 0 }
/// # fn log_level() -> String { String::new() }
/// # fn set_level(level: String) -> String { level }
/// cluster2::status::register("connections", connections)?;
/// cluster2::status::register_with_update("log-level", log_level, set_level)?;
/// # Ok::<(), cluster2::Error>(())
/// ```
#[proc_macro_attribute]
pub fn status(attr: TokenStream, item: TokenStream) -> TokenStream {
    status::expand(attr.into(), item.into()).into()
}

/// Marks the function that adds routes to the monitor app, which the master serves on
/// `mon_port` next to the ECV, `/workers`, `/statuses`, `/deps` and `/metrics`.
///
/// ```
/// use cluster2::axum::{routing::get, Router};
///
/// #[cluster2::configure_monitor]
/// async fn monitor(router: Router) -> Router {
///     router.route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
/// }
/// # fn main() {}
/// ```
///
/// The function may be sync or async; it takes the monitor's `axum::Router` and returns it
/// with routes added. It runs once, in the master. A binary has at most one.
///
/// # Equivalent code without the macro
///
/// ```
/// # async fn monitor(router: cluster2::axum::Router) -> cluster2::axum::Router { router }
/// let builder = cluster2::Cluster::builder().configure_monitor(monitor);
/// # let _ = builder;
/// ```
///
/// A sync function is wrapped: `.configure_monitor(|router| async move { monitor(router) })`.
#[proc_macro_attribute]
pub fn configure_monitor(attr: TokenStream, item: TokenStream) -> TokenStream {
    register::expand(register::Hook::ConfigureMonitor, attr.into(), item.into()).into()
}

/// Marks the function that judges the answers of monitor-mode ECV probes
/// (`ecv(mode = "monitor")`): `true` means the cluster is up.
///
/// ```
/// #[cluster2::ecv_validator]
/// fn validate(status: u16, body: &[u8]) -> bool {
///     status == 200 && body.starts_with(b"ok")
/// }
/// # fn main() {}
/// ```
///
/// It receives the status and body the probe of `ecv.monitor` got, and replaces the checks of
/// `ecv.expect_status` and `ecv.expect_body`. It runs on every probe, so it is a plain (not
/// `async`) function that answers at once. A binary has at most one.
///
/// # Equivalent code without the macro
///
/// ```
/// # fn validate(status: u16, body: &[u8]) -> bool { status == 200 && !body.is_empty() }
/// let builder = cluster2::Cluster::builder().ecv_validator(validate);
/// # let _ = builder;
/// ```
#[proc_macro_attribute]
pub fn ecv_validator(attr: TokenStream, item: TokenStream) -> TokenStream {
    register::expand(register::Hook::EcvValidator, attr.into(), item.into()).into()
}

/// Marks the function that decides, from each heartbeat of a worker, whether to replace it.
///
/// ```
/// #[cluster2::should_kill]
/// fn should_kill(heartbeat: &cluster2::Heartbeat) -> bool {
///     heartbeat.uptime > std::time::Duration::from_secs(6 * 3600)
/// }
/// # fn main() {}
/// ```
///
/// `true` queues the worker for replacement: a successor is started and warmed up before the
/// worker stops, one worker at a time. It replaces the default decision (`max_age`, and
/// degraded workers); the `max_requests` and `max_memory` options, when set, still apply
/// first. Its building blocks are in `cluster2::robustness`. It runs in the master on every
/// heartbeat, so it is a plain (not `async`) function that answers at once. A binary has at
/// most one.
///
/// # Equivalent code without the macro
///
/// ```
/// # fn should_kill(heartbeat: &cluster2::Heartbeat) -> bool { heartbeat.cpu_percent > 90.0 }
/// let builder = cluster2::Cluster::builder().should_kill(should_kill);
/// # let _ = builder;
/// ```
#[proc_macro_attribute]
pub fn should_kill(attr: TokenStream, item: TokenStream) -> TokenStream {
    register::expand(register::Hook::ShouldKill, attr.into(), item.into()).into()
}

/// Not public API: the option keys `#[cluster2::main]` accepts, as an array of strings, so
/// that cluster2's tests can compare them with its options.
#[doc(hidden)]
#[proc_macro]
pub fn __option_keys(_input: TokenStream) -> TokenStream {
    let keys = schema::OPTIONS.iter().map(|s| s.key);
    quote::quote!([#(#keys),*]).into()
}

#[cfg(test)]
mod tests {
    /// Doc examples are compiled by `cargo test --doc`, so they cannot drift from the API; an
    /// `ignore`d one would be skipped. Those that must not run are `no_run`.
    #[test]
    fn no_doc_example_is_ignored() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stack = vec![root.join("cluster2-macros/src"), root.join("cluster2/src")];
        let mut ignored = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        let fence = line.trim_start().trim_start_matches(['/', '!']).trim();
                        if fence.starts_with("```") && fence.contains("ignore") {
                            ignored.push(format!("{}:{}", path.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(ignored.is_empty(), "ignored doc examples: {ignored:?}");
    }
}
