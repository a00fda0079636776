//! Not public API: what the macros expand to. Anything here may change in any release.

pub use linkme;

pub use crate::options::OptionValue;
pub use crate::registry::{
    BoxFuture, CONFIGURE_APP, CONFIGURE_MONITOR, ConfigureAppFn, ConfigureMonitorFn, ECV_VALIDATOR,
    EcvValidatorFn, Registration, WARM_UP, WarmUpFn,
};
pub use crate::registry::{SHOULD_KILL, ShouldKillFn};

use crate::app::{App, IntoApp};
use crate::started::WarmUp;

/// Adapts what a `#[configure_app]` function returned.
pub fn into_app<T: IntoApp>(value: T) -> Result<App, String> {
    value.into_app()
}

/// Adapts what a `#[warm_up]` function returned.
pub fn warm_up_result<E: std::fmt::Display>(value: Result<(), E>) -> Result<(), String> {
    value.map_err(|e| e.to_string())
}

/// Forces the argument of a `#[warm_up]` function to be [`WarmUp`].
pub fn warm_up_arg(w: WarmUp) -> WarmUp {
    w
}

pub use crate::cluster::MainResult;

/// The option keys `#[cluster2::main]` accepts, for the test that compares them with [`Options`](crate::Options).
pub use cluster2_macros::__option_keys as option_keys;

pub use crate::registry::{STATUS, StatusRegistration};
pub use serde_json::Value;

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
