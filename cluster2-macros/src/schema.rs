//! The option schema as the attribute writes it: what kind of literal each option takes, a valid
//! example of it, and how a nested key is written (`restart(delay = "1s")`).
//!
//! What an option is (its key, kind, range and choices) comes from `cluster2-options-schema`,
//! the table the runtime reads too: a value this macro accepts is a value the runtime accepts.

use std::time::Duration;

pub(crate) use cluster2_options_schema::{
    Invalid, Kind, MORE_THAN_ZERO, OPTIONS, Takes, did_you_mean, format_duration, format_size,
    is_group, members, spec, top_level,
};

/// The kind of the option `key`, if there is one.
pub(crate) fn kind(key: &str) -> Option<Kind> {
    spec(key).map(|s| s.kind)
}

/// The literal a kind takes, for "`key` expects …".
pub(crate) fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Port { .. } => "a port number",
        Kind::Count { .. } => "a whole number",
        Kind::HttpStatus => "an HTTP status code",
        Kind::Bool => "`true` or `false`",
        Kind::Text | Kind::Directory | Kind::File | Kind::OneOf(_) | Kind::Secret => {
            "a string literal"
        }
        Kind::Bind => "\"unix:\" and a path in a string",
        Kind::FileMode => "octal permission bits in a string",
        Kind::UrlPath { .. } => "a path in a string",
        Kind::Host => "an IP address or a host name in a string",
        Kind::Duration { never: false, .. } => "a duration string",
        Kind::Duration { never: true, .. } => "a duration string or \"never\"",
        Kind::Size { .. } => "a size string",
        Kind::LogFilter => "a log filter in a string",
        Kind::Backend => "\"local\" or a Redis URL in a string",
        Kind::Name => "a name in a string",
        Kind::LogDestination => "\"off\", \"stdout\", \"stderr\" or a file path in a string",
        Kind::Buckets => "bucket bounds in seconds in a string",
    }
}

/// How to write `key` with a valid value, as the user would in the attribute.
pub(crate) fn example(kind: Kind, key: &str) -> String {
    format!("write `{}`", written(key, &sample(kind)))
}

/// A valid value, as written in the attribute.
pub(crate) fn sample(kind: Kind) -> String {
    match kind {
        Kind::Port { .. } => "8080".to_owned(),
        Kind::Count { min, .. } => min.max(1).to_string(),
        Kind::HttpStatus => "200".to_owned(),
        Kind::Bool => "true".to_owned(),
        Kind::Text => "\"...\"".to_owned(),
        Kind::Directory => "\"/run/my-app\"".to_owned(),
        Kind::File => "\"/etc/my-app/cert.pem\"".to_owned(),
        Kind::Bind => "\"unix:/run/my-app.sock\"".to_owned(),
        Kind::FileMode => "\"660\"".to_owned(),
        Kind::UrlPath { .. } => "\"/health\"".to_owned(),
        Kind::Host => "\"127.0.0.1\"".to_owned(),
        // Short ranges (a spin of a millisecond at most) show their top; others a value in the
        // middle of every range in the table.
        Kind::Duration { max, .. } if max < Duration::from_secs(5) => {
            format!("\"{}\"", format_duration(max))
        }
        Kind::Duration { never: false, .. } => "\"5s\"".to_owned(),
        Kind::Duration { never: true, .. } => "\"3d\"".to_owned(),
        Kind::Size { min, .. } => format!("\"{}\"", format_size(min.max(512 << 20))),
        Kind::OneOf(choices) => format!("\"{}\"", choices[0]),
        Kind::LogFilter => "\"info\"".to_owned(),
        Kind::Secret => "\"a-long-random-token\"".to_owned(),
        Kind::Backend => "\"redis://127.0.0.1:6379/0\"".to_owned(),
        Kind::Name => "\"my-service\"".to_owned(),
        Kind::LogDestination => "\"stdout\"".to_owned(),
        Kind::Buckets => "\"0.005,0.05,0.5,5\"".to_owned(),
    }
}

/// `key = value` as written in the attribute: `restart(delay = "1s")` for a nested key.
pub(crate) fn written(key: &str, value: &str) -> String {
    match key.split_once('.') {
        Some((group, rest)) => format!("{group}({rest} = {value})"),
        None => format!("{key} = {value}"),
    }
}

/// "did you mean `port`?" for a name close to one or two candidates.
pub(crate) fn suggestion(name: &str, candidates: &[&str]) -> Option<String> {
    match did_you_mean(name, candidates.iter().copied()).as_slice() {
        [] => None,
        [one] => Some(format!("did you mean `{one}`?")),
        [one, two, ..] => Some(format!("did you mean `{one}` or `{two}`?")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_valid() {
        for spec in OPTIONS {
            let sample = sample(spec.kind);
            let valid = match spec.kind.takes() {
                Takes::Int => spec.kind.check_int(sample.parse().unwrap()),
                Takes::Bool => Ok(()),
                Takes::Text => spec.kind.check_text(sample.trim_matches('"')),
            };
            assert_eq!(valid, Ok(()), "{}: {sample}", spec.key);
        }
    }

    #[test]
    fn suggestions_name_one_or_two() {
        assert_eq!(
            suggestion("prot", &top_level()).as_deref(),
            Some("did you mean `port`?")
        );
        assert_eq!(suggestion("verbose", &top_level()), None);
    }
}
