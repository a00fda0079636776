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
    // No boolean option yet; the cache and ECV options bring the first ones.
    #[allow(dead_code)]
    Bool,
    Text,
    Ip,
    Duration,
    OneOf(&'static [&'static str]),
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Port => "a port number",
            Kind::Count { .. } => "a whole number",
            Kind::Bool => "`true` or `false`",
            Kind::Text => "a string literal",
            Kind::Ip => "an IP address in a string",
            Kind::Duration => "a duration string",
            Kind::OneOf(_) => "a string literal",
        }
    }

    /// How to write `key` with a valid value, as the user would in the attribute.
    pub(crate) fn example(self, key: &str) -> String {
        let value = match self {
            Kind::Port => "8080".to_owned(),
            Kind::Count { min, .. } => min.max(1).to_string(),
            Kind::Bool => "true".to_owned(),
            Kind::Text => "\"...\"".to_owned(),
            Kind::Ip => "\"127.0.0.1\"".to_owned(),
            Kind::Duration => "\"5s\"".to_owned(),
            Kind::OneOf(choices) => format!("\"{}\"", choices[0]),
        };
        format!("write `{}`", written(key, &value))
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
const U32: u64 = u32::MAX as u64;
/// The largest count the runtime can receive at all.
const I64: u64 = i64::MAX as u64;

pub(crate) const KEYS: &[(&str, Kind)] = &[
    ("port", Kind::Port),
    ("host", Kind::Ip),
    ("mon_port", Kind::Port),
    ("mon_host", Kind::Ip),
    ("workers", Kind::Count { min: 1, max: I64 }),
    ("threads", Kind::Count { min: 0, max: I64 }),
    ("warm_up_port", Kind::Port),
    ("heartbeat_interval", Kind::Duration),
    ("startup_timeout", Kind::Duration),
    ("stop_timeout", Kind::Duration),
    ("server", Kind::OneOf(&["auto", "http1", "http2"])),
    ("backlog", Kind::Count { min: 1, max: U32 }),
    ("restart.delay", Kind::Duration),
    ("restart.max_delay", Kind::Duration),
    ("log.level", Kind::Text),
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

/// Accepts what the runtime's duration parser (humantime) accepts: `500ms`, `1.5s`, `1h 30m`,
/// `2 mins`; and a bare `0`. The error completes a sentence that starts with the option's name.
pub(crate) fn check_duration(text: &str) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "nanos", "nsec", "ns", "usec", "us", "µs", "millis", "msec", "ms", "seconds", "second",
        "secs", "sec", "s", "minutes", "minute", "min", "mins", "m", "hours", "hour", "hr", "hrs",
        "h", "days", "day", "d", "weeks", "week", "wk", "wks", "w", "months", "month", "M",
        "years", "year", "yr", "yrs", "y",
    ];
    let not_a_duration =
        || format!("must be a duration like \"500ms\", \"5s\" or \"1m 30s\", not `{text}`");
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(());
    }
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "needs a unit: write \"{trimmed}s\", \"{trimmed}ms\" or \"{trimmed}m\""
        ));
    }
    if trimmed.is_empty() {
        return Err(not_a_duration());
    }
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
            return Err(not_a_duration());
        }
        rest = &rest[number..];
        let unit = rest.len() - rest.trim_start_matches(|c: char| c.is_alphabetic()).len();
        if unit == 0 {
            return Err(not_a_duration());
        }
        if !UNITS.contains(&&rest[..unit]) {
            return Err(format!(
                "has an unknown unit `{}`: use ms, s, m, h or d",
                &rest[..unit]
            ));
        }
        rest = rest[unit..].trim_start();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_runtime() {
        for ok in [
            "0", "500ms", "5s", "1.5s", "1h 30m", "1m30s", "2 mins", "5 s", "3d", "1µs",
        ] {
            assert_eq!(check_duration(ok), Ok(()), "{ok}");
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
        assert!(
            check_duration("30")
                .unwrap_err()
                .starts_with("needs a unit")
        );
    }

    #[test]
    fn groups_and_members() {
        assert!(is_group("restart") && !is_group("port") && !is_group("rest"));
        assert_eq!(members("restart"), ["delay", "max_delay"]);
        assert!(top_level().contains(&"restart") && top_level().contains(&"port"));
    }
}
