//! Not public API: what the macros expand to. Anything here may change in any release.

pub use linkme;

pub use crate::options::OptionValue;
pub use crate::registry::{
    BoxFuture, CONFIGURE_APP, ConfigureAppFn, Registration, WARM_UP, WarmUpFn,
};

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
