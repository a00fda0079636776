//! Every option of a cluster2 binary, described once: its dotted key, the kind of value it
//! takes (with its range or its choices), what a valid value looks like, and one line of help.
//!
//! Two very different programs read this table, and it is the only place either learns what an
//! option is:
//!
//! - the runtime (`cluster2`) types and checks every layer of options against it, prints it as
//!   `--help`, and quotes its `expected` text in error messages;
//! - `#[cluster2::main]` (`cluster2-macros`) checks the same kinds and ranges when the binary
//!   is compiled.
//!
//! The duration grammar ([`parse_duration`]), the size grammar ([`parse_size`]), the host
//! grammar ([`is_host`]), the log filter syntax ([`check_log_filter`]) and the "did you mean"
//! suggestions ([`did_you_mean`]) live here for the same reason: a value the macro accepts is a
//! value the runtime accepts, and a typo gets the same suggestion at compile time and at
//! start-up.
//!
//! This crate is a part of cluster2, which pins it to an exact version; depend on `cluster2`.

mod buckets;
mod duration;
mod host;
mod log_filter;
mod size;
mod suggest;
mod table;

pub use buckets::{BucketsError, MAX_BUCKETS, format_buckets, parse_buckets};
pub use duration::{DurationError, format_duration, is_never, parse_duration};
pub use host::is_host;
pub use log_filter::{LEVELS, LogFilterError, check_log_filter};
pub use size::{SizeError, format_size, parse_size};
pub use suggest::did_you_mean;
pub use table::{MAX_WORKERS, OPTIONS, WORKERS_PER_CPU};

use std::time::Duration;

/// One option.
#[derive(Debug)]
pub struct Spec {
    /// Dotted path in snake case: `cache.enable`. The first part of a dotted key is a group.
    pub key: &'static str,
    /// What values it takes.
    pub kind: Kind,
    /// Whether it may be unset, written `none` (or left empty) in text.
    pub optional: bool,
    /// What a valid value looks like, completing "expected …" in error messages. It names the
    /// range or the choices of [`Spec::kind`]; a unit test holds the two together.
    pub expected: &'static str,
    /// One line of help, for `--help`.
    pub help: &'static str,
}

/// The kind of value an option takes, with its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// A TCP port from `min` to 65535.
    Port {
        /// The lowest port accepted.
        min: u16,
    },
    /// A whole number from `min` to `max`. A `max` of [`U32`] or [`I64`] is only the limit of
    /// the runtime's integer type, and messages leave it out.
    Count {
        /// The lowest number accepted.
        min: u64,
        /// The highest number accepted.
        max: u64,
    },
    /// An HTTP status code, 100 to 599.
    HttpStatus,
    /// An IPv4 or IPv6 address, or a host name in the grammar of [`is_host`] that the runtime
    /// resolves at start.
    Host,
    /// A duration in the grammar of [`parse_duration`], from `min` to `max`.
    Duration {
        /// The shortest duration accepted: [`Duration::ZERO`], [`MORE_THAN_ZERO`], or a floor.
        min: Duration,
        /// The longest duration accepted. Every duration has one: the runtime adds durations
        /// to clocks, and no setting needs years.
        max: Duration,
        /// Whether `never` is accepted too.
        never: bool,
    },
    /// A number of bytes in the grammar of [`parse_size`] (`512MiB`), from `min` to `max`.
    Size {
        /// The fewest bytes accepted.
        min: u64,
        /// The most bytes accepted.
        max: u64,
    },
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A path on an HTTP server, starting with `/`.
    UrlPath {
        /// Whether an absolute `http://` URL is accepted too.
        or_url: bool,
    },
    /// Text naming a directory: not empty.
    Directory,
    /// Text naming a file: not empty.
    File,
    /// Where the application listens instead of `host` and `port`: `unix:` and the path of a
    /// Unix socket, in gunicorn's form (`unix:/run/app.sock`).
    Bind,
    /// Permission bits of a file, in octal as `chmod` takes them: `660`, `0660`, at most `777`.
    FileMode,
    /// Any text.
    Text,
    /// A log filter in the syntax of [`check_log_filter`].
    LogFilter,
    /// A credential, never shown: `--help`, `--check` and error messages leave its value out.
    /// It travels in an HTTP header, so it is visible ASCII without spaces, and not empty.
    Secret,
    /// Where a shared service lives: `local` (this host), or the URL of a Redis server:
    /// `redis://`, `rediss://` (TLS) or `redis+unix://`. A password in it is never shown
    /// ([`redact_url`]).
    Backend,
    /// A name that goes into keys and channels of a shared backend: 1 to 64 letters, digits,
    /// `-`, `_` or `.`, so that it never needs escaping, even in a `SCAN` pattern.
    Name,
    /// Where lines go: `off`, `stdout`, `stderr`, or a file: a path with a `/` in it
    /// (`./access.log`), so that a mistyped word is never taken for a file name.
    LogDestination,
    /// Histogram buckets in the grammar of [`parse_buckets`]: upper bounds in seconds,
    /// comma-separated, strictly increasing, at most [`MAX_BUCKETS`].
    Buckets,
}

/// The `min` of a duration that must be more than `0s` (an interval or a deadline that would
/// otherwise fire at once, for ever), with no other floor.
pub const MORE_THAN_ZERO: Duration = Duration::from_nanos(1);

/// The largest count that fits the runtime's `u32` fields.
pub const U32: u64 = u32::MAX as u64;
/// The largest count the runtime can receive at all: `Builder::option` takes integers as `i64`.
pub const I64: u64 = i64::MAX as u64;

/// The type of literal an option takes, before its own checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Int,
    /// Text (durations, addresses and choices are text too).
    Text,
}

/// Why a value is not valid for its option. Each reader words it in its own voice: the runtime
/// names the flag, variable or file line; the macro points at the literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A value of another type: text for a number, a number for a duration.
    Type,
    /// Below the range: a number under `min`, or a duration under its `min` (`0s` where it must
    /// be more).
    TooSmall,
    /// Above the range: a number over `max`, or a duration over its `max`.
    TooLarge,
    /// Text that is not a duration.
    Duration(DurationError),
    /// Text that is not a size.
    Size(SizeError),
    /// Not one of the choices.
    NotAChoice,
    /// Not a path starting with `/` (nor an `http://` URL, where one is accepted).
    NotAPath,
    /// Neither an IP address nor a host name.
    NotAHost,
    /// Empty where something must be named.
    Empty,
    /// Not a log filter.
    LogFilter(LogFilterError),
    /// A secret with a space, a control character or a character outside ASCII.
    NotAToken,
    /// Neither `local` nor a URL of a scheme a backend speaks.
    NotABackend,
    /// A name with a character outside its alphabet, or too long.
    NotAName,
    /// Not `unix:` followed by a path.
    NotABind,
    /// Not octal permission bits from `0` to `777`.
    NotAMode,
    /// Neither `off`, `stdout`, `stderr` nor a path with a `/`.
    NotADestination,
    /// Not a list of bucket bounds.
    Buckets(BucketsError),
}

impl Kind {
    /// The type of literal this kind takes.
    pub fn takes(self) -> Takes {
        match self {
            Kind::Bool => Takes::Bool,
            Kind::Port { .. } | Kind::Count { .. } | Kind::HttpStatus => Takes::Int,
            Kind::Host
            | Kind::Duration { .. }
            | Kind::Size { .. }
            | Kind::OneOf(_)
            | Kind::UrlPath { .. }
            | Kind::Directory
            | Kind::File
            | Kind::Bind
            | Kind::FileMode
            | Kind::Text
            | Kind::LogFilter
            | Kind::Secret
            | Kind::Backend
            | Kind::Name
            | Kind::LogDestination
            | Kind::Buckets => Takes::Text,
        }
    }

    /// The lowest and highest number accepted, for kinds that take a number.
    pub fn int_range(self) -> Option<(u64, u64)> {
        match self {
            Kind::Port { min } => Some((u64::from(min), u64::from(u16::MAX))),
            Kind::Count { min, max } => Some((min, max)),
            Kind::HttpStatus => Some((100, 599)),
            _ => None,
        }
    }

    /// The shortest and longest duration accepted, for durations.
    pub fn duration_range(self) -> Option<(Duration, Duration)> {
        match self {
            Kind::Duration { min, max, .. } => Some((min, max)),
            _ => None,
        }
    }

    /// The fewest and most bytes accepted, for sizes.
    pub fn size_range(self) -> Option<(u64, u64)> {
        match self {
            Kind::Size { min, max } => Some((min, max)),
            _ => None,
        }
    }

    /// Whether the upper bound of a count is only the limit of the runtime's integer type.
    pub fn max_is_type_limit(self) -> bool {
        matches!(self, Kind::Count { max, .. } if max == U32 || max == I64)
    }

    /// Checks a number (negative ones included) against a kind that takes one.
    pub fn check_int(self, n: i128) -> Result<(), Invalid> {
        let Some((min, max)) = self.int_range() else {
            return Err(Invalid::Type);
        };
        if n < i128::from(min) {
            Err(Invalid::TooSmall)
        } else if n > i128::from(max) {
            Err(Invalid::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Checks text against a kind that takes text.
    pub fn check_text(self, text: &str) -> Result<(), Invalid> {
        match self {
            Kind::Bool | Kind::Port { .. } | Kind::Count { .. } | Kind::HttpStatus => {
                Err(Invalid::Type)
            }
            Kind::Host if is_host(text) => Ok(()),
            Kind::Host => Err(Invalid::NotAHost),
            Kind::Duration { never, .. } if never && is_never(text) => Ok(()),
            Kind::Duration { .. } => {
                let duration = parse_duration(text).map_err(Invalid::Duration)?;
                self.check_duration(duration)
            }
            Kind::Size { min, max } => match parse_size(text).map_err(Invalid::Size)? {
                n if n < min => Err(Invalid::TooSmall),
                n if n > max => Err(Invalid::TooLarge),
                _ => Ok(()),
            },
            Kind::OneOf(choices) if choices.contains(&text) => Ok(()),
            Kind::OneOf(_) => Err(Invalid::NotAChoice),
            Kind::UrlPath { or_url } => {
                if text.starts_with('/') || (or_url && text.starts_with("http://")) {
                    Ok(())
                } else {
                    Err(Invalid::NotAPath)
                }
            }
            Kind::Directory | Kind::File if text.is_empty() => Err(Invalid::Empty),
            Kind::Directory | Kind::File | Kind::Text => Ok(()),
            Kind::Bind => match text.strip_prefix("unix:") {
                Some(path) if !path.is_empty() && !path.contains('\0') => Ok(()),
                _ => Err(Invalid::NotABind),
            },
            Kind::FileMode => parse_mode(text).map(|_| ()).ok_or(Invalid::NotAMode),
            Kind::LogFilter => check_log_filter(text).map_err(Invalid::LogFilter),
            Kind::Secret if text.is_empty() => Err(Invalid::Empty),
            Kind::Secret if text.bytes().all(|b| b.is_ascii_graphic()) => Ok(()),
            Kind::Secret => Err(Invalid::NotAToken),
            Kind::Backend if text == "local" || is_backend_url(text) => Ok(()),
            Kind::Backend => Err(Invalid::NotABackend),
            Kind::Name if text.is_empty() => Err(Invalid::Empty),
            Kind::Name
                if text.len() <= 64
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
            {
                Ok(())
            }
            Kind::Name => Err(Invalid::NotAName),
            Kind::LogDestination if is_log_destination(text) => Ok(()),
            Kind::LogDestination => Err(Invalid::NotADestination),
            Kind::Buckets => parse_buckets(text).map(drop).map_err(Invalid::Buckets),
        }
    }

    /// Checks a parsed duration against the range of a duration kind.
    pub fn check_duration(self, duration: Duration) -> Result<(), Invalid> {
        let Some((min, max)) = self.duration_range() else {
            return Err(Invalid::Type);
        };
        if duration < min {
            Err(Invalid::TooSmall)
        } else if duration > max {
            Err(Invalid::TooLarge)
        } else {
            Ok(())
        }
    }
}

/// Permission bits written in octal, as `chmod` takes them (`660`, `0660`, `0o660`), at most
/// `777`: the setuid, setgid and sticky bits mean nothing on a socket.
pub fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
}

/// Whether `text` says where lines go: `off`, `stdout`, `stderr`, or a file path with a `/`
/// and no control character.
fn is_log_destination(text: &str) -> bool {
    matches!(text, "off" | "stdout" | "stderr")
        || (text.contains('/') && !text.ends_with('/') && !text.chars().any(char::is_control))
}

/// The schemes of a backend URL: Redis over TCP, over TLS, and over a Unix socket.
pub const BACKEND_SCHEMES: &[&str] = &["redis://", "rediss://", "redis+unix://"];

/// Whether `text` looks like a backend URL: a known scheme, something after it, and nothing
/// that is not visible ASCII. The client parses it fully when it connects.
fn is_backend_url(text: &str) -> bool {
    let Some(rest) = BACKEND_SCHEMES.iter().find_map(|s| text.strip_prefix(s)) else {
        return false;
    };
    let unix = text.starts_with("redis+unix://");
    !rest.is_empty()
        && (!unix || rest.starts_with('/'))
        && text.bytes().all(|b| b.is_ascii_graphic())
}

/// A backend URL as it may be shown: its password (`redis://user:PASSWORD@host`, or a `pass`
/// or `password` query parameter) replaced by `<redacted>`. Other text is returned as it is.
pub fn redact_url(text: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:{HIDDEN}@{host}"),
            // `redis://PASSWORD@host`: some clients take a lone user part as the password.
            None if !user.is_empty() => format!("{HIDDEN}@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((k, _)) if k == "pass" || k == "password" => format!("{k}={HIDDEN}"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The option with this dotted key.
pub fn spec(key: &str) -> Option<&'static Spec> {
    OPTIONS.iter().find(|s| s.key == key)
}

/// Whether `key` names a group of options (`restart`), rather than an option.
pub fn is_group(key: &str) -> bool {
    OPTIONS.iter().any(|s| {
        s.key
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The names at the top level, in table order: options and groups.
pub fn top_level() -> Vec<&'static str> {
    let mut names: Vec<&str> = Vec::new();
    for spec in OPTIONS {
        let name = spec
            .key
            .split_once('.')
            .map_or(spec.key, |(group, _)| group);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The options of `group`, without the group's prefix, in table order.
pub fn members(group: &str) -> Vec<&'static str> {
    OPTIONS
        .iter()
        .filter_map(|s| s.key.strip_prefix(group)?.strip_prefix('.'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_snake_case_and_one_level_deep() {
        for (i, spec) in OPTIONS.iter().enumerate() {
            assert!(
                OPTIONS[..i].iter().all(|other| other.key != spec.key),
                "{} twice",
                spec.key
            );
            assert!(
                spec.key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.'),
                "{}",
                spec.key
            );
            // Flags, environment variables and the macro's `group(key = ...)` assume one level.
            assert!(spec.key.matches('.').count() <= 1, "{}", spec.key);
            assert!(!is_group(spec.key), "{} is an option and a group", spec.key);
        }
    }

    /// The `expected` text is what users read; it must state the bounds the kind enforces.
    #[test]
    fn expected_texts_state_the_range_or_choices() {
        for spec in OPTIONS {
            let expected = spec.expected;
            if let Some((min, max)) = spec.kind.int_range() {
                if min > 0 {
                    assert!(expected.contains(&min.to_string()), "{}", spec.key);
                }
                if !spec.kind.max_is_type_limit() {
                    assert!(expected.contains(&max.to_string()), "{}", spec.key);
                }
            }
            if let Kind::Duration { min, max, never } = spec.kind {
                assert!(expected.contains("duration"), "{}", spec.key);
                assert_eq!(
                    min == MORE_THAN_ZERO,
                    expected.contains("more than 0s"),
                    "{}",
                    spec.key
                );
                if min > MORE_THAN_ZERO {
                    assert!(expected.contains(&format_duration(min)), "{}", spec.key);
                }
                assert!(expected.contains(&format_duration(max)), "{}", spec.key);
                assert_eq!(never, expected.contains("never"), "{}", spec.key);
            }
            if let Some((min, max)) = spec.kind.size_range() {
                assert!(expected.contains("size"), "{}", spec.key);
                assert!(expected.contains(&format_size(min)), "{}", spec.key);
                assert!(expected.contains(&format_size(max)), "{}", spec.key);
            }
            if let Kind::OneOf(choices) = spec.kind {
                for choice in choices {
                    assert!(expected.contains(choice), "{}: {choice}", spec.key);
                }
            }
            assert_eq!(spec.optional, expected.ends_with("or none"), "{}", spec.key);
        }
    }

    #[test]
    fn passwords_in_backend_urls_are_never_shown() {
        assert_eq!(
            redact_url("redis://app:s3cret@10.0.0.5:6379/0"),
            "redis://app:<redacted>@10.0.0.5:6379/0"
        );
        assert_eq!(
            redact_url("rediss://:s3cret@host/1"),
            "rediss://:<redacted>@host/1"
        );
        assert_eq!(redact_url("redis://s3cret@host"), "redis://<redacted>@host");
        assert_eq!(
            redact_url("redis+unix:///run/r.sock?db=1&pass=s3cret"),
            "redis+unix:///run/r.sock?db=1&pass=<redacted>"
        );
        assert_eq!(redact_url("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact_url("local"), "local");
    }

    #[test]
    fn groups_and_members() {
        assert!(is_group("restart") && !is_group("port") && !is_group("rest"));
        assert_eq!(members("restart"), ["delay", "max_delay"]);
        assert_eq!(members("death_queue"), ["timeout", "retries"]);
        assert!(is_group("cache") && !is_group("cache.enable"));
        assert!(top_level().contains(&"restart") && top_level().contains(&"port"));
        assert_eq!(spec("cache.spin").map(|s| s.key), Some("cache.spin"));
        assert!(spec("cache").is_none());
    }

    #[test]
    fn numbers_are_checked_against_their_range() {
        let port = Kind::Port { min: 1 };
        assert_eq!(port.check_int(0), Err(Invalid::TooSmall));
        assert_eq!(port.check_int(1), Ok(()));
        assert_eq!(port.check_int(65_535), Ok(()));
        assert_eq!(port.check_int(65_536), Err(Invalid::TooLarge));
        assert_eq!(Kind::HttpStatus.check_int(-1), Err(Invalid::TooSmall));
        assert_eq!(Kind::HttpStatus.check_text("200"), Err(Invalid::Type));
    }

    #[test]
    fn text_is_checked_against_its_kind() {
        let spin = spec("cache.spin").unwrap().kind;
        assert_eq!(spin.check_text("1ms"), Ok(()));
        assert_eq!(spin.check_text("0s"), Ok(()));
        assert_eq!(spin.check_text("5ms"), Err(Invalid::TooLarge));
        let tolerance = spec("nanny.tolerance").unwrap().kind;
        assert_eq!(tolerance.check_text("0ms"), Err(Invalid::TooSmall));
        let max_age = spec("max_age").unwrap().kind;
        assert_eq!(max_age.check_text("Never"), Ok(()));
        assert!(matches!(
            tolerance.check_text("never"),
            Err(Invalid::Duration(_))
        ));
        assert_eq!(Kind::Host.check_text("::1"), Ok(()));
        assert_eq!(Kind::Host.check_text("localhost"), Ok(()));
        assert_eq!(Kind::Host.check_text("my host"), Err(Invalid::NotAHost));
        let size = Kind::Size {
            min: 1 << 20,
            max: 1 << 30,
        };
        assert_eq!(size.check_text("512MiB"), Ok(()));
        assert_eq!(size.check_text("1MiB"), Ok(()));
        assert_eq!(size.check_text("1048575"), Err(Invalid::TooSmall));
        assert_eq!(size.check_text("1.5GiB"), Err(Invalid::TooLarge));
        assert!(matches!(size.check_text("5 mibs"), Err(Invalid::Size(_))));
        assert_eq!(size.check_int(1 << 20), Err(Invalid::Type));
        let monitor = Kind::UrlPath { or_url: true };
        assert_eq!(monitor.check_text("http://10.0.0.1/ping"), Ok(()));
        assert_eq!(monitor.check_text("https://x"), Err(Invalid::NotAPath));
        assert_eq!(Kind::Directory.check_text(""), Err(Invalid::Empty));
        assert!(matches!(
            Kind::LogFilter.check_text("verbose"),
            Err(Invalid::LogFilter(_))
        ));
        for good in [
            "local",
            "redis://127.0.0.1:6379/0",
            "rediss://:pw@cache.example:6380/2",
            "redis+unix:///run/redis.sock?db=1",
        ] {
            assert_eq!(Kind::Backend.check_text(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Local",
            "redis://",
            "http://x",
            "redis+unix://relative.sock",
            "redis://host /0",
        ] {
            assert_eq!(
                Kind::Backend.check_text(bad),
                Err(Invalid::NotABackend),
                "{bad:?}"
            );
        }
        assert_eq!(Kind::Name.check_text("shop-api.v2_eu"), Ok(()));
        assert_eq!(Kind::Name.check_text(""), Err(Invalid::Empty));
        for bad in ["a:b", "a*", "two words", &"x".repeat(65)] {
            assert_eq!(
                Kind::Name.check_text(bad),
                Err(Invalid::NotAName),
                "{bad:?}"
            );
        }
        assert_eq!(Kind::Secret.check_text("c2VjcmV0+/=_-.~"), Ok(()));
        assert_eq!(Kind::Secret.check_text(""), Err(Invalid::Empty));
        for bad in ["two words", "tab\tin", "line\n", "caf\u{e9}"] {
            assert_eq!(
                Kind::Secret.check_text(bad),
                Err(Invalid::NotAToken),
                "{bad:?}"
            );
        }
    }
}
