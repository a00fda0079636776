//! The option keys `#[cluster2::main(...)]` accepts and the literal each takes.
//!
//! This mirrors `cluster2::Options`; an integration test compares the two (through the hidden
//! `__option_keys!` macro) so they cannot drift apart.

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Port,
    Count { min: u64 },
    // No boolean option yet; the cache and ECV options bring the first ones.
    #[allow(dead_code)]
    Bool,
    Text,
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
            Kind::Duration => "a duration string",
            Kind::OneOf(_) => "a string literal",
        }
    }

    pub(crate) fn example(self, key: &str) -> String {
        let value = match self {
            Kind::Port => "8080".to_owned(),
            Kind::Count { min } => min.max(1).to_string(),
            Kind::Bool => "true".to_owned(),
            Kind::Text => "\"...\"".to_owned(),
            Kind::Duration => "\"5s\"".to_owned(),
            Kind::OneOf(choices) => format!("\"{}\"", choices[0]),
        };
        match key.split_once('.') {
            Some((group, rest)) => format!("write `{group}({rest} = {value})`"),
            None => format!("write `{key} = {value}`"),
        }
    }
}

pub(crate) const KEYS: &[(&str, Kind)] = &[
    ("port", Kind::Port),
    ("host", Kind::Text),
    ("mon_port", Kind::Port),
    ("mon_host", Kind::Text),
    ("workers", Kind::Count { min: 1 }),
    ("threads", Kind::Count { min: 0 }),
    ("warm_up_port", Kind::Port),
    ("heartbeat_interval", Kind::Duration),
    ("startup_timeout", Kind::Duration),
    ("stop_timeout", Kind::Duration),
    ("server", Kind::OneOf(&["auto", "http1", "http2"])),
    ("backlog", Kind::Count { min: 1 }),
    ("restart.delay", Kind::Duration),
    ("restart.max_delay", Kind::Duration),
    ("log.level", Kind::Text),
];

pub(crate) fn kind(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

pub(crate) fn is_group(key: &str) -> bool {
    KEYS.iter()
        .any(|(k, _)| k.strip_prefix(key).is_some_and(|rest| rest.starts_with('.')))
}

/// Accepts what the runtime's duration parser accepts: numbers each followed by a unit.
pub(crate) fn check_duration(text: &str) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "nsec", "ns", "usec", "us", "msec", "ms", "seconds", "second", "sec", "s", "minutes",
        "minute", "min", "m", "hours", "hour", "hr", "h", "days", "day", "d", "weeks", "week",
        "w", "months", "month", "M", "years", "year", "y",
    ];
    let invalid = || format!("`{text}` is not a duration like \"500ms\", \"5s\" or \"3d\"");
    let text = text.trim();
    if text == "0" {
        return Ok(());
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(invalid());
        }
        rest = &rest[digits..];
        let letters = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
        if !UNITS.contains(&&rest[..letters]) {
            return Err(invalid());
        }
        rest = rest[letters..].trim_start();
    }
    Ok(())
}
