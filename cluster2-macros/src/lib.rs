//! Attribute macros of [cluster2](https://docs.rs/cluster2). Depend on `cluster2`, not on this
//! crate: it re-exports every macro here.

mod args; // attribute arguments and their checks
mod errors; // error collector
mod main_attr; // #[cluster2::main]
mod register; // #[configure_app], #[warm_up]
mod schema; // the option keys #[cluster2::main] accepts

use proc_macro::TokenStream;

/// Turns `async fn main` into the entry point of a cluster.
///
/// ```ignore
/// #[cluster2::main(port = 9090, workers = 4, restart(delay = "200ms"))]
/// async fn main(started: cluster2::Started) {
///     tracing::info!(role = ?started.role(), addr = %started.addr(), "up");
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
/// Options are checked when the binary is compiled: unknown or misspelled keys, duplicates,
/// values of the wrong type, ports out of range, `workers = 0`, durations without a unit and
/// hosts that are not IP addresses are all reported together, each on its own token. Values
/// are literals; a value known only at run time belongs in the config file, the environment or
/// on the command line, or in [`Builder::option`] when building the cluster without the macro.
///
/// [`Builder::option`]: https://docs.rs/cluster2/latest/cluster2/struct.Builder.html#method.option
///
/// # Equivalent code without the macro
///
/// ```ignore
/// fn main() -> std::process::ExitCode {
///     async fn main(started: cluster2::Started) { /* body */ }
///     cluster2::Cluster::builder()
///         .name(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
///         .option("port", 9090i64)
///         .option("workers", 4i64)
///         .run(|started| main(started))
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand(attr.into(), item.into()).into()
}

/// Marks the function that builds the application in each worker.
///
/// ```ignore
/// #[cluster2::configure_app]
/// async fn app() -> axum::Router {
///     axum::Router::new().route("/", axum::routing::get(|| async { "hello world" }))
/// }
/// ```
///
/// The function may be sync or async, takes no argument, and returns an `axum::Router`, a
/// `cluster2::App`, or a `Result` of either whose error is `Display` (an error aborts the
/// worker's start-up and is reported with the function's name). A binary has exactly one.
///
/// # Equivalent code without the macro
///
/// ```ignore
/// cluster2::Cluster::builder().configure_app(app)
/// ```
#[proc_macro_attribute]
pub fn configure_app(attr: TokenStream, item: TokenStream) -> TokenStream {
    register::expand(register::Hook::ConfigureApp, attr.into(), item.into()).into()
}

/// Marks the function that warms each worker up before it takes traffic.
///
/// ```ignore
/// #[cluster2::warm_up]
/// async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
///     w.get("/").await?; // a real request to this worker's own warm-up listener
///     Ok(())
/// }
/// ```
///
/// It runs in each worker after the app is built, while the app is served on a private
/// listener on 127.0.0.1; the worker accepts on the shared port only once it returns `Ok`.
/// An `Err` is reported to the master, and the worker is retried with back-off.
///
/// # Equivalent code without the macro
///
/// ```ignore
/// cluster2::Cluster::builder().warm_up(warm)
/// ```
#[proc_macro_attribute]
pub fn warm_up(attr: TokenStream, item: TokenStream) -> TokenStream {
    register::expand(register::Hook::WarmUp, attr.into(), item.into()).into()
}

/// Not public API: the option keys `#[cluster2::main]` accepts, as an array of strings, so
/// that cluster2's tests can compare them with its options.
#[doc(hidden)]
#[proc_macro]
pub fn __option_keys(_input: TokenStream) -> TokenStream {
    let keys = schema::KEYS.iter().map(|(k, _)| *k);
    quote::quote!([#(#keys),*]).into()
}
