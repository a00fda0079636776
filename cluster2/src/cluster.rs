//! The builder that `#[cluster2::main]` expands to, and that works without macros.

use std::ffi::OsString;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use crate::app::{App, IntoApp};
use crate::error::{Error, ErrorKind, Result};
use crate::options::{self, Command, OptionValue};
use crate::registry::{self, BoxFuture};
use crate::role::{self, ProcessRole};
use crate::started::{Started, WarmUp};

pub(crate) type ConfigureApp = Arc<dyn Fn() -> BoxFuture<Result<App, String>> + Send + Sync>;
pub(crate) type WarmUpHook = Arc<dyn Fn(WarmUp) -> BoxFuture<Result<(), String>> + Send + Sync>;
pub(crate) type MainBody = Box<dyn FnOnce(Started) -> BoxFuture<Result<(), String>> + Send>;
pub(crate) use crate::robustness::ShouldKill;
type ShouldKillHook = Arc<dyn Fn(&crate::Heartbeat) -> bool + Send + Sync>;
pub(crate) type ConfigureMonitor =
    Arc<dyn Fn(axum::Router) -> BoxFuture<axum::Router> + Send + Sync>;

/// Entry point of a cluster.
///
/// ```no_run
/// use axum::{routing::get, Router};
///
/// fn main() -> std::process::ExitCode {
///     cluster2::Cluster::builder()
///         .option("port", 9090)
///         .option("workers", 2)
///         .configure_app(|| async { Router::new().route("/", get(|| async { "hello" })) })
///         .run(|started: cluster2::Started| async move {
///             println!("{:?} serving on {}", started.role(), started.addr());
///         })
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Cluster;

impl Cluster {
    /// A builder with no options set and no functions registered.
    pub fn builder() -> Builder {
        Builder {
            name: "cluster2-app".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            options: Vec::new(),
            configure_app: None,
            warm_up: None,
            configure_monitor: None,
            ecv_validator: None,
            should_kill: None,
            dependencies: None,
            args: None,
        }
    }
}

/// Configures and runs a cluster; see [`Cluster`].
///
/// Without `configure_app`/`warm_up` calls, the functions marked `#[cluster2::configure_app]`
/// and `#[cluster2::warm_up]` are used.
#[must_use = "a builder does nothing until `run` is called"]
pub struct Builder {
    name: String,
    version: String,
    options: Vec<(String, OptionValue)>,
    configure_app: Option<ConfigureApp>,
    warm_up: Option<WarmUpHook>,
    configure_monitor: Option<ConfigureMonitor>,
    ecv_validator: Option<crate::ecv::Validator>,
    should_kill: Option<ShouldKillHook>,
    dependencies: Option<&'static str>,
    args: Option<Vec<OsString>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// The application's name and version, shown by `--help` and `--version`.
    pub fn name(mut self, name: &str, version: &str) -> Self {
        self.name = name.to_owned();
        self.version = version.to_owned();
        self
    }

    /// Sets an option by its dotted key (`"port"`, `"restart.delay"`). The config file, the
    /// environment and the command line override it. Unknown keys and bad values are reported
    /// at start-up like a bad flag.
    pub fn option(mut self, key: &str, value: impl Into<OptionValue>) -> Self {
        self.options.push((key.to_owned(), value.into()));
        self
    }

    /// The function that builds the application in each worker.
    pub fn configure_app<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoApp,
    {
        self.configure_app = Some(Arc::new(move || {
            let fut = f();
            Box::pin(async move { fut.await.into_app() })
        }));
        self
    }

    /// The function that warms each worker up before it takes traffic.
    pub fn warm_up<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(WarmUp) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.warm_up = Some(Arc::new(move |w| {
            let fut = f(w);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// The function that adds routes to the monitor app (in the master).
    pub fn configure_monitor<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(axum::Router) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = axum::Router> + Send + 'static,
    {
        self.configure_monitor = Some(Arc::new(move |router| Box::pin(f(router))));
        self
    }

    /// The validator of monitor-mode ECV probes: `true` means up.
    pub fn ecv_validator(mut self, validator: crate::ecv::Validator) -> Self {
        self.ecv_validator = Some(validator);
        self
    }

    /// Decides from each heartbeat whether a worker should be replaced, instead of the default
    /// (`assert_old(max_age)` or `AssertDegraded`); the `max_requests` and `max_memory`
    /// options, when set, still apply first. See [`crate::robustness`].
    pub fn should_kill<F>(mut self, f: F) -> Self
    where
        F: Fn(&crate::Heartbeat) -> bool + Send + Sync + 'static,
    {
        self.should_kill = Some(Arc::new(f));
        self
    }

    /// The application's `Cargo.lock`, served as a dependency tree on the monitor's `/deps`.
    /// `#[cluster2::main]` embeds it at compile time.
    pub fn dependencies(mut self, cargo_lock: &'static str) -> Self {
        self.dependencies = Some(cargo_lock);
        self
    }

    /// Uses these command-line arguments instead of the process's own (the first is the
    /// program name).
    pub fn args<I, T>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Runs this process's role until the cluster stops, and returns its exit code.
    ///
    /// In the master, `main` runs once every initial worker is listening; in each worker, once
    /// it accepts on the shared port. The process keeps serving after `main` returns `()` or
    /// `Ok(())`; an `Err` is logged and stops the process with a non-zero exit code.
    pub fn run<F, Fut>(self, main: F) -> ExitCode
    where
        F: FnOnce(Started) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: MainResult,
    {
        let main: MainBody = Box::new(move |started| {
            let fut = main(started);
            Box::pin(async move { fut.await.into_main_result() })
        });
        let role = role::current();
        // A child has its title as argv[0] already (the master's doing); its name is its own.
        if role != ProcessRole::Master {
            crate::title::set_name(&crate::title::of(role));
        }
        match role {
            ProcessRole::Worker(id) => crate::worker::run(self.into_parts(), id, main),
            ProcessRole::CacheManager => crate::cache::process::run(),
            ProcessRole::Master => self.run_master(main),
        }
    }

    fn run_master(self, main: MainBody) -> ExitCode {
        let args = self
            .args
            .clone()
            .unwrap_or_else(|| std::env::args_os().collect());
        let (command_line, app_args, check, action) =
            match options::parse_command_line(&self.name, &self.version, &self.options, args) {
                Command::Exit { code, output } => {
                    if code == 0 {
                        print!("{output}");
                    } else {
                        eprint!("{output}");
                    }
                    return ExitCode::from(code as u8);
                }
                Command::Run {
                    command_line,
                    app_args,
                    check,
                    action,
                } => (command_line, app_args, check, action),
            };
        let options = match options::resolve(&self.options, &command_line, std::env::vars_os()) {
            Ok(options) => options,
            Err(err) => {
                eprintln!("error: {err}");
                return crate::exit::code(crate::exit::USAGE);
            }
        };
        match action {
            options::Action::Serve => {}
            options::Action::Stop => return crate::master::stop::run(&options),
            other => return crate::control_cli::run(other, &options),
        }
        if check {
            // A host name that does not resolve is a bad value too.
            if let Err(err) = options.addresses() {
                eprintln!("error: {err}");
                return crate::exit::code(crate::exit::USAGE);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&options.redacted()).expect("JSON values serialize")
            );
            return ExitCode::SUCCESS;
        }
        let parts = self.into_parts();
        // Registration mistakes are found here, before any worker exists.
        if let Err(err) = parts.check_registrations() {
            eprintln!("error: {err}");
            return crate::exit::code(crate::exit::USAGE);
        }
        crate::master::run(parts, options, app_args, main)
    }

    fn into_parts(self) -> Parts {
        Parts {
            name: self.name,
            version: self.version,
            configure_app: self.configure_app,
            warm_up: self.warm_up,
            configure_monitor: self.configure_monitor,
            ecv_validator: self.ecv_validator,
            should_kill: self.should_kill,
            dependencies: self.dependencies,
        }
    }
}

/// The user's functions, as the master and workers need them.
pub(crate) struct Parts {
    name: String,
    version: String,
    configure_app: Option<ConfigureApp>,
    warm_up: Option<WarmUpHook>,
    configure_monitor: Option<ConfigureMonitor>,
    ecv_validator: Option<crate::ecv::Validator>,
    should_kill: Option<ShouldKillHook>,
    dependencies: Option<&'static str>,
}

impl Parts {
    pub(crate) fn check_registrations(&self) -> Result<()> {
        self.configure_app()?;
        self.warm_up()?;
        registry::single(&registry::CONFIGURE_MONITOR, "configure_monitor")?;
        registry::single(&registry::ECV_VALIDATOR, "ecv_validator")?;
        registry::single(&registry::SHOULD_KILL, "should_kill")?;
        Ok(())
    }

    pub(crate) fn should_kill(&self, options: &crate::options::Options) -> ShouldKill {
        if let Some(f) = &self.should_kill {
            return ShouldKill::custom(f.clone(), options);
        }
        match registry::single(&registry::SHOULD_KILL, "should_kill")
            .ok()
            .flatten()
        {
            Some(f) => ShouldKill::custom(Arc::new(f), options),
            None => ShouldKill::default_for(options),
        }
    }

    pub(crate) fn configure_monitor(&self) -> Option<ConfigureMonitor> {
        if let Some(f) = &self.configure_monitor {
            return Some(f.clone());
        }
        registry::single(&registry::CONFIGURE_MONITOR, "configure_monitor")
            .ok()
            .flatten()
            .map(|f| Arc::new(f) as ConfigureMonitor)
    }

    pub(crate) fn ecv_validator(&self) -> Option<crate::ecv::Validator> {
        self.ecv_validator.or_else(|| {
            registry::single(&registry::ECV_VALIDATOR, "ecv_validator")
                .ok()
                .flatten()
        })
    }

    /// The application's name, version and `Cargo.lock`, for `/deps`.
    pub(crate) fn dependencies(&self) -> crate::monitor::deps::Dependencies {
        crate::monitor::deps::Dependencies {
            name: self.name.clone(),
            version: self.version.clone(),
            cargo_lock: self.dependencies,
        }
    }

    pub(crate) fn configure_app(&self) -> Result<ConfigureApp> {
        if let Some(f) = &self.configure_app {
            return Ok(f.clone());
        }
        match registry::single(&registry::CONFIGURE_APP, "configure_app")? {
            Some(f) => Ok(Arc::new(f)),
            None => Err(Error::new(
                ErrorKind::App,
                "no application to serve: mark a function #[cluster2::configure_app], or call \
                 Builder::configure_app",
            )),
        }
    }

    pub(crate) fn warm_up(&self) -> Result<Option<WarmUpHook>> {
        if let Some(f) = &self.warm_up {
            return Ok(Some(f.clone()));
        }
        Ok(registry::single(&registry::WARM_UP, "warm_up")?.map(|f| Arc::new(f) as WarmUpHook))
    }
}

/// What the `main` body may return: `()`, or `Result<(), E>` with a displayable error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a return type cluster2 accepts for `main`",
    label = "return `()` or `Result<(), E>` where `E: Display`"
)]
pub trait MainResult {
    /// Converts into the error text to log, if any.
    fn into_main_result(self) -> std::result::Result<(), String>;
}

impl MainResult for () {
    fn into_main_result(self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> MainResult for std::result::Result<(), E> {
    fn into_main_result(self) -> std::result::Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}
