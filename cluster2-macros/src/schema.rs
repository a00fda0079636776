//! The option keys `#[cluster2::main(...)]` accepts and the literal each takes.
//!
//! This mirrors `cluster2::Options`; an integration test compares the two (through the hidden
//! `__option_keys!` macro) so they cannot drift apart.

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Port,
    /// Values pass through `i64` to the runtime, so `max` never exceeds `i64::MAX`.
    Count {
        min: u64,
        max: u64,
    },
    /// An HTTP status code, 100 to 599.
    HttpStatus,
    Bool,
    Text,
    /// Text naming a directory: not empty.
    Directory,
    /// A path on an HTTP server, starting with `/`; with `or_url`, an `http://` URL too.
    UrlPath {
        or_url: bool,
    },
    Ip,
    /// With `positive`, `0` is rejected as the runtime rejects it.
    Duration {
        positive: bool,
    },
    /// A duration, or `never`.
    DurationOrNever,
    OneOf(&'static [&'static str]),
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Port => "a port number",
            Kind::Count { .. } => "a whole number",
            Kind::HttpStatus => "an HTTP status code",
            Kind::Bool => "`true` or `false`",
            Kind::Text | Kind::Directory | Kind::OneOf(_) => "a string literal",
            Kind::UrlPath { .. } => "a path in a string",
            Kind::Ip => "an IP address in a string",
            Kind::Duration { .. } => "a duration string",
            Kind::DurationOrNever => "a duration string or \"never\"",
        }
    }

    /// How to write `key` with a valid value, as the user would in the attribute.
    pub(crate) fn example(self, key: &str) -> String {
        format!("write `{}`", written(key, &self.sample()))
    }

    /// A valid value, as written in the attribute.
    pub(crate) fn sample(self) -> String {
        match self {
            Kind::Port => "8080".to_owned(),
            Kind::Count { min, .. } => min.max(1).to_string(),
            Kind::HttpStatus => "200".to_owned(),
            Kind::Bool => "true".to_owned(),
            Kind::Text => "\"...\"".to_owned(),
            Kind::Directory => "\"/run/my-app\"".to_owned(),
            Kind::UrlPath { .. } => "\"/health\"".to_owned(),
            Kind::Ip => "\"127.0.0.1\"".to_owned(),
            Kind::Duration { .. } => "\"5s\"".to_owned(),
            Kind::DurationOrNever => "\"3d\"".to_owned(),
            Kind::OneOf(choices) => format!("\"{}\"", choices[0]),
        }
    }
}

/// `key = value` as written in the attribute: `restart(delay = "1s")` for a nested key.
pub(crate) fn written(key: &str, value: &str) -> String {
    match key.split_once('.') {
        Some((group, rest)) => format!("{group}({rest} = {value})"),
        None => format!("{key} = {value}"),
    }
}

/// The largest count that fits the runtime's `u32` fields.
pub(crate) const U32: u64 = u32::MAX as u64;
/// The largest count the runtime can receive at all.
pub(crate) const I64: u64 = i64::MAX as u64;

/// Durations the runtime accepts at `0`, and those it rejects there.
const DURATION: Kind = Kind::Duration { positive: false };
const POSITIVE_DURATION: Kind = Kind::Duration { positive: true };

/// In the order of `cluster2::Options`, which `--help` follows too.
pub(crate) const KEYS: &[(&str, Kind)] = &[
    ("port", Kind::Port),
    ("host", Kind::Ip),
    ("mon_port", Kind::Port),
    ("mon_host", Kind::Ip),
    ("workers", Kind::Count { min: 1, max: I64 }),
    ("threads", Kind::Count { min: 0, max: I64 }),
    ("warm_up_port", Kind::Port),
    ("heartbeat_interval", POSITIVE_DURATION),
    ("startup_timeout", POSITIVE_DURATION),
    ("stop_timeout", DURATION),
    ("server", Kind::OneOf(&["auto", "http1", "http2"])),
    ("backlog", Kind::Count { min: 1, max: U32 }),
    ("restart.delay", DURATION),
    ("restart.max_delay", DURATION),
    ("log.level", Kind::Text),
    ("ecv.mode", Kind::OneOf(&["control", "monitor"])),
    ("ecv.root", Kind::UrlPath { or_url: false }),
    ("ecv.mark_up", Kind::UrlPath { or_url: false }),
    ("ecv.mark_down", Kind::UrlPath { or_url: false }),
    ("ecv.monitor", Kind::UrlPath { or_url: true }),
    ("ecv.timeout", DURATION),
    ("ecv.expect_status", Kind::HttpStatus),
    ("ecv.expect_body", Kind::Text),
    ("ecv.up_body", Kind::Text),
    ("ecv.down_body", Kind::Text),
    ("ecv.drain_delay", DURATION),
    ("max_age", Kind::DurationOrNever),
    ("nanny.enable", Kind::Bool),
    ("nanny.tolerance", POSITIVE_DURATION),
    ("death_queue.timeout", POSITIVE_DURATION),
    ("death_queue.retries", Kind::Count { min: 1, max: U32 }),
    ("pids", Kind::Directory),
    ("cache.enable", Kind::Bool),
    ("cache.mode", Kind::OneOf(&["standalone", "master"])),
    ("cache.persist_path", Kind::Text),
    (
        "cache.max_value",
        Kind::Count {
            min: 1,
            max: 1 << 30,
        },
    ),
    ("cache.timeout", POSITIVE_DURATION),
    ("cache.spin", DURATION),
];

pub(crate) fn kind(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

pub(crate) fn is_group(key: &str) -> bool {
    KEYS.iter().any(|(k, _)| {
        k.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The names that may appear at the top level of the attribute: options and groups.
pub(crate) fn top_level() -> Vec<&'static str> {
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in KEYS {
        let name = k.split_once('.').map_or(*k, |(group, _)| group);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The options inside `group(...)`, without the group's prefix.
pub(crate) fn members(group: &str) -> Vec<&'static str> {
    KEYS.iter()
        .filter_map(|(k, _)| k.strip_prefix(group)?.strip_prefix('.'))
        .collect()
}

/// Why a string is not a duration the runtime accepts.
#[derive(Debug, PartialEq)]
pub(crate) enum BadDuration {
    /// Not a duration at all.
    Malformed,
    /// A bare number other than `0`.
    NoUnit(String),
    /// A number followed by a word that is not a unit.
    UnknownUnit(String),
}

impl BadDuration {
    /// Completes a sentence that starts with the option's name; `or` adds another accepted
    /// value to "must be a duration like ...".
    pub(crate) fn message(&self, text: &str, or: Option<&str>) -> String {
        match self {
            BadDuration::Malformed => {
                let or = or.map_or(String::new(), |other| format!(", or {other}"));
                format!("must be a duration like \"500ms\", \"5s\" or \"1m 30s\"{or}, not `{text}`")
            }
            BadDuration::NoUnit(n) => {
                format!("needs a unit: write \"{n}s\", \"{n}ms\" or \"{n}m\"")
            }
            BadDuration::UnknownUnit(unit) => {
                format!("has an unknown unit `{unit}`: use ms, s, m, h or d")
            }
        }
    }
}

/// Accepts what the runtime's duration parser (humantime) accepts: `500ms`, `1.5s`, `1h 30m`,
/// `2 mins`; and a bare `0`. Returns whether the duration is zero.
pub(crate) fn check_duration(text: &str) -> Result<bool, BadDuration> {
    const UNITS: &[&str] = &[
        "nanos", "nsec", "ns", "usec", "us", "µs", "millis", "msec", "ms", "seconds", "second",
        "secs", "sec", "s", "minutes", "minute", "min", "mins", "m", "hours", "hour", "hr", "hrs",
        "h", "days", "day", "d", "weeks", "week", "wk", "wks", "w", "months", "month", "M",
        "years", "year", "yr", "yrs", "y",
    ];
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(true);
    }
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(BadDuration::NoUnit(trimmed.to_owned()));
    }
    if trimmed.is_empty() {
        return Err(BadDuration::Malformed);
    }
    let mut zero = true;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
                .len();
        let digits = &rest[..number];
        if !digits.starts_with(|c: char| c.is_ascii_digit())
            || digits.matches('.').count() > 1
            || digits.trim_end().ends_with('.')
        {
            return Err(BadDuration::Malformed);
        }
        zero &= digits
            .chars()
            .all(|c| matches!(c, '0' | '.') || c.is_whitespace());
        rest = &rest[number..];
        let unit = rest.len() - rest.trim_start_matches(|c: char| c.is_alphabetic()).len();
        if unit == 0 {
            return Err(BadDuration::Malformed);
        }
        if !UNITS.contains(&&rest[..unit]) {
            return Err(BadDuration::UnknownUnit(rest[..unit].to_owned()));
        }
        rest = rest[unit..].trim_start();
    }
    Ok(zero)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_runtime() {
        for ok in [
            "0", "500ms", "5s", "1.5s", "1h 30m", "1m30s", "2 mins", "5 s", "3d", "1µs",
        ] {
            assert!(check_duration(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "5",
            "fast",
            "5 parsecs",
            "1.s",
            "1..5s",
            "s",
            ".5s",
            "-1s",
        ] {
            assert!(check_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_duration("30"),
            Err(BadDuration::NoUnit("30".to_owned()))
        );
    }

    #[test]
    fn zero_durations_are_told_apart() {
        for zero in ["0", "0s", "0ms", "0.0s", "0m 0s", "00 s"] {
            assert_eq!(check_duration(zero), Ok(true), "{zero}");
        }
        for more in ["1ns", "0.5s", "0m 1s", "10s", "1.0s"] {
            assert_eq!(check_duration(more), Ok(false), "{more}");
        }
    }

    #[test]
    fn groups_and_members() {
        assert!(is_group("restart") && !is_group("port") && !is_group("rest"));
        assert_eq!(members("restart"), ["delay", "max_delay"]);
        assert_eq!(members("death_queue"), ["timeout", "retries"]);
        assert!(is_group("cache") && !is_group("cache.enable"));
        assert!(top_level().contains(&"restart") && top_level().contains(&"port"));
    }
}
