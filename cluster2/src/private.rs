//! Not public API: what the macros expand to. Anything here may change in any release.

pub use linkme;

pub use crate::options::OptionValue;
pub use crate::registry::{
    BoxFuture, CONFIGURE_APP, CONFIGURE_MONITOR, ConfigureAppFn, ConfigureMonitorFn, ECV_VALIDATOR,
    EcvValidatorFn, Registration, WARM_UP, WarmUpFn,
};
pub use crate::registry::{SHOULD_KILL, ShouldKillFn};
pub use crate::registry::{STATUS, StatusRegistration};
pub use serde_json::Value;

pub use crate::cluster::MainResult;

/// The option keys `#[cluster2::main]` accepts, for the test that compares them with [`Options`](crate::Options).
pub use cluster2_macros::__option_keys as option_keys;

/// The type `#[configure_monitor]` functions take and return. An alias, not a re-export: rustc
/// leaves a re-exported `axum::Router` out of the types it lists in "`IntoApp` is not
/// implemented" errors.
pub type Router = axum::Router;

/// What a `#[warm_up]` function may return. The expansion names the function's return type in
/// `<T as WarmUpResult>`, so that a wrong one is reported there, with this message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a result a #[cluster2::warm_up] function can return",
    label = "return `Result<(), E>` where `E: Display`",
    note = "an `Err` keeps the worker from taking traffic; `cluster2::BoxError` takes any error"
)]
pub trait WarmUpResult {
    /// Converts into the error text reported to the master, if any.
    fn into_warm_up_result(self) -> Result<(), String>;
}

impl<E: std::fmt::Display> WarmUpResult for Result<(), E> {
    fn into_warm_up_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// What a `#[configure_monitor]` function may return: the router it was given, with routes
/// added. Used like [`WarmUpResult`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not what a #[cluster2::configure_monitor] function can return",
    label = "return the `axum::Router` the function is given, with routes added"
)]
pub trait MonitorRouter {
    /// The router the monitor serves.
    fn into_router(self) -> Router;
}

impl MonitorRouter for Router {
    fn into_router(self) -> Router {
        self
    }
}

/// What an `#[ecv_validator]` function may return. Used like [`WarmUpResult`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not what an #[cluster2::ecv_validator] function can return",
    label = "return `bool`: `true` if the probe's answer means the cluster is up"
)]
pub trait EcvVerdict {
    /// Whether the cluster is up.
    fn into_verdict(self) -> bool;
}

impl EcvVerdict for bool {
    fn into_verdict(self) -> bool {
        self
    }
}

/// What a `#[should_kill]` function may return. Used like [`WarmUpResult`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not what a #[cluster2::should_kill] function can return",
    label = "return `bool`: `true` to replace the worker"
)]
pub trait KillVerdict {
    /// Whether to replace the worker.
    fn into_verdict(self) -> bool;
}

impl KillVerdict for bool {
    fn into_verdict(self) -> bool {
        self
    }
}

/// Adapts what a `#[status]` view returned.
pub fn status_view<T: serde::Serialize>(value: T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("the view cannot be encoded: {e}"))
}

/// Calls a `#[status(update = f)]` function with a value decoded from JSON.
pub fn status_update<F, U, R>(update: F, value: Value) -> Result<Value, String>
where
    F: FnOnce(U) -> R,
    U: serde::de::DeserializeOwned,
    R: serde::Serialize,
{
    let value: U = serde_json::from_value(value).map_err(|e| format!("not a valid value: {e}"))?;
    status_view(update(value))
}
