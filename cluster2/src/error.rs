//! The one public error type, its kinds, and a `.context()` extension.

use std::fmt;

/// A boxed error from user code (a loader, a warm-up, an app factory).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely: enough to decide what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An option, flag, environment variable or config file is invalid.
    Config,
    /// A port or address could not be bound.
    Bind,
    /// Starting a process failed.
    Spawn,
    /// The user's `#[configure_app]` or `#[warm_up]` failed, or is missing or duplicated.
    App,
    /// The channel between master and worker broke or carried a bad frame.
    Ipc,
    /// Something did not finish in the time allowed.
    Timeout,
    /// Any other I/O failure.
    Io,
    /// A value could not be encoded for another process.
    Encode,
    /// A value from another process does not have the expected shape.
    Decode,
    /// A bounded queue to another process is full; the message was dropped.
    Overflow,
    /// No such name is registered (a status, for example), or no worker has the pid.
    NotFound,
    /// What is named exists, but its state does not allow the operation now (a worker that is
    /// already being replaced, or not serving).
    Conflict,
    /// Something this operation needs is not running or not reachable.
    Unavailable,
    /// The cache manager refused or could not do what was asked.
    Cache,
    /// A cache loader failed (here, or in the process this one waited for).
    Load,
}

/// The error type of cluster2: a kind, a message that names the offending value, and the
/// underlying cause if there is one.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a lowercase message that names the offending value.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A mistake in the options: one line, whatever the values it quotes hold.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, one_line(message.into()))
    }
}

/// `text` with its control characters written as escapes (`\n`, `\u{1b}`): a value a user
/// gave may hold a line break or a terminal escape, and the message that quotes it must stay
/// one line that shows what was given.
pub(crate) fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        // One line, cause included: these messages end up in logs and on the terminal.
        let mut cause = self.source.as_deref().map(|e| e as &dyn std::error::Error);
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The Display impl already prints the chain; still expose it for callers that walk it.
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Adds context to errors from the standard library and from user code.
pub trait Context<T> {
    /// Wrap the error with `kind` and a message saying what was being done.
    fn context(self, kind: ErrorKind, message: impl Into<String>) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: Into<BoxError>,
{
    fn context(self, kind: ErrorKind, message: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::new(kind, message).with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_the_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let err = Error::new(ErrorKind::Bind, "cannot bind --port 8080").with_source(io);
        assert_eq!(err.to_string(), "cannot bind --port 8080: address in use");
        assert_eq!(err.kind(), ErrorKind::Bind);
    }

    /// Found by fuzzing the options: a config string holding a line break made the one-line
    /// error two lines.
    #[test]
    fn a_config_error_quoting_control_characters_stays_one_line() {
        let err = Error::config("invalid value `80\n80\u{1b}[2J` for `port`");
        assert_eq!(
            err.to_string(),
            "invalid value `80\\n80\\u{1b}[2J` for `port`"
        );
        assert_eq!(one_line("tab\there".to_owned()), "tab\\there");
    }
}
