//! Functions registered by `#[configure_app]` and `#[warm_up]`, gathered at link time.
//!
//! linkme collects each registration into one slice with no code before `main`. A binary may
//! register at most one of each; that cannot be checked at compile time, so it is checked at
//! start-up, before any worker is spawned, with an error that names every registration.

use std::future::Future;
use std::pin::Pin;

use linkme::distributed_slice;

use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::started::WarmUp;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What `#[configure_app]` registers.
pub type ConfigureAppFn = fn() -> BoxFuture<Result<App, String>>;
/// What `#[warm_up]` registers.
pub type WarmUpFn = fn(WarmUp) -> BoxFuture<Result<(), String>>;

/// One registered function and where the user wrote it.
#[derive(Debug)]
pub struct Registration<F> {
    /// The function's name.
    pub name: &'static str,
    /// `file!()` and `line!()` of the function.
    pub file: &'static str,
    /// See `file`.
    pub line: u32,
    /// The generated adapter.
    pub func: F,
}

/// Every `#[configure_app]` function of the binary.
#[distributed_slice]
pub static CONFIGURE_APP: [Registration<ConfigureAppFn>];

/// Every `#[warm_up]` function of the binary.
#[distributed_slice]
pub static WARM_UP: [Registration<WarmUpFn>];

/// The one registration of a kind, or a start-up error naming all of them.
pub(crate) fn single<F: Copy>(
    slice: &'static [Registration<F>],
    attribute: &str,
) -> Result<Option<F>> {
    match slice {
        [] => Ok(None),
        [one] => Ok(Some(one.func)),
        many => {
            let places: Vec<String> = many
                .iter()
                .map(|r| format!("{} ({}:{})", r.name, r.file, r.line))
                .collect();
            Err(Error::new(
                ErrorKind::App,
                format!(
                    "found {} #[cluster2::{attribute}] functions, expected at most one: {}",
                    many.len(),
                    places.join(", ")
                ),
            ))
        }
    }
}

/// What `#[status("name")]` registers: the view and, with `update = f`, the update.
#[derive(Debug)]
pub struct StatusRegistration {
    /// The status's name.
    pub name: &'static str,
    /// `file!()` of the function.
    pub file: &'static str,
    /// `line!()` of the function.
    pub line: u32,
    /// The generated view adapter.
    pub view: fn() -> std::result::Result<serde_json::Value, String>,
    /// The generated update adapter.
    pub update: Option<fn(serde_json::Value) -> std::result::Result<serde_json::Value, String>>,
}

/// Every `#[status]` function of the binary.
#[distributed_slice]
pub static STATUS: [StatusRegistration];

/// What `#[configure_monitor]` registers.
pub type ConfigureMonitorFn = fn(axum::Router) -> BoxFuture<axum::Router>;

/// Every `#[configure_monitor]` function of the binary.
#[distributed_slice]
pub static CONFIGURE_MONITOR: [Registration<ConfigureMonitorFn>];

/// What `#[ecv_validator]` registers.
pub type EcvValidatorFn = fn(u16, &[u8]) -> bool;

/// Every `#[ecv_validator]` function of the binary.
#[distributed_slice]
pub static ECV_VALIDATOR: [Registration<EcvValidatorFn>];

/// What `#[should_kill]` registers.
pub type ShouldKillFn = fn(&crate::heartbeat::Heartbeat) -> bool;

/// Every `#[should_kill]` function of the binary.
#[distributed_slice]
pub static SHOULD_KILL: [Registration<ShouldKillFn>];
