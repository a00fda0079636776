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

/// How the `#[configure_app]` expansion converts what the function returned:
/// `AppReturn::<T>::new().into_app(value)`, with the function's return type as `T` and every
/// token spanned on it. A `Router<S>`, or a `Result` of one, finds an inherent `into_app`
/// below, whose bound [`RouterState`] explains a router still waiting for its state; any other
/// type finds [`AppReturnFallback::into_app`], whose bound [`IntoApp`](crate::IntoApp) says what
/// may be returned. Both bounds sit on the methods, not on the impls, so that rustc selects the
/// method first and then reports the unmet bound with its trait's message, on the user's type.
#[derive(Debug)]
pub struct AppReturn<T>(std::marker::PhantomData<fn() -> T>);

impl<T> AppReturn<T> {
    /// The converter for `T`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S> AppReturn<axum::Router<S>> {
    /// A router whose state is given.
    pub fn into_app(self, router: axum::Router<S>) -> Result<crate::App, String>
    where
        S: RouterState,
    {
        Ok(S::given(router).into())
    }
}

impl<S, E> AppReturn<Result<axum::Router<S>, E>> {
    /// A router whose state is given, or the error that aborts start-up.
    pub fn into_app(self, result: Result<axum::Router<S>, E>) -> Result<crate::App, String>
    where
        S: RouterState,
        E: std::fmt::Display,
    {
        result
            .map(|router| S::given(router).into())
            .map_err(|e| e.to_string())
    }
}

/// The conversion of every return type but a router's; see [`AppReturn`].
pub trait AppReturnFallback<T> {
    /// Converts by [`IntoApp`](crate::IntoApp).
    fn into_app(self, value: T) -> Result<crate::App, String>
    where
        T: crate::IntoApp;
}

impl<T> AppReturnFallback<T> for AppReturn<T> {
    fn into_app(self, value: T) -> Result<crate::App, String>
    where
        T: crate::IntoApp,
    {
        value.into_app()
    }
}

/// The state of a router cluster2 can serve: none left to give, `()`. A `Router<AppState>` is
/// still waiting for its `.with_state(state)`.
#[diagnostic::on_unimplemented(
    message = "this `Router<{Self}>` still needs its state: cluster2 serves a `Router` whose \
               state is given",
    label = "call `.with_state(state)` on the router, and return `Router`",
    note = "`Router::with_state` hands each handler its `State<{Self}>` and makes the router a \
            `Router` (that is, `Router<()>`)"
)]
pub trait RouterState: Sized {
    /// The router, its state given.
    fn given(router: axum::Router<Self>) -> Router;
}

impl RouterState for () {
    fn given(router: Router) -> Router {
        router
    }
}

/// What a `#[warm_up]` function takes. The expansion passes its `WarmUp` as
/// `<T as WarmUpArg>::from_warm_up(w)`, with the function's parameter type as `T` and spanned
/// on it, so that another type (`&WarmUp`, an address) is reported there, with this message.
#[diagnostic::on_unimplemented(
    message = "a #[cluster2::warm_up] function takes a `cluster2::WarmUp`, not `{Self}`",
    label = "take `w: cluster2::WarmUp`, by value",
    note = "the `WarmUp` is the function's own to keep; `w.get(\"/\")` and `w.request(…)` reach \
            the worker being warmed up"
)]
pub trait WarmUpArg {
    /// The argument, from the worker's `WarmUp`.
    fn from_warm_up(warm_up: crate::WarmUp) -> Self;
}

impl WarmUpArg for crate::WarmUp {
    fn from_warm_up(warm_up: crate::WarmUp) -> Self {
        warm_up
    }
}

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
