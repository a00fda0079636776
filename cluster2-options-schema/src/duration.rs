//! Durations as people write them: `500ms`, `5s`, `3d`, `1h 30m`, `50us`; a bare `0`; and,
//! where an option allows it, `never`.
//!
//! The grammar is humantime's, read through this one function so that the runtime and the
//! macro accept exactly the same text, and so that a mistake can be named (a missing unit, an
//! unknown one) rather than only refused.

use std::fmt;
use std::time::Duration;

/// Why text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing like a duration: `fast`, `-1s`, `1.s`.
    Malformed,
    /// A bare number other than `0`, which could be seconds as well as milliseconds.
    NoUnit(String),
    /// A number followed by a word that is not a unit: `5 parsecs`.
    UnknownUnit(String),
    /// Longer than the runtime can hold.
    TooLong,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Malformed => f.write_str("not a duration like 500ms, 5s or 3d"),
            DurationError::NoUnit(n) => write!(f, "a number needs a unit: {n}s, {n}ms or {n}m"),
            DurationError::UnknownUnit(unit) => {
                write!(f, "unknown unit `{unit}`: use us, ms, s, m, h or d")
            }
            DurationError::TooLong => f.write_str("too long"),
        }
    }
}

/// Parses a duration. Whitespace around it is ignored; a bare `0` is the only number that
/// needs no unit, since it means the same in every unit.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            DurationError::NoUnit(value.to_string())
        }
        humantime::DurationError::UnknownUnit { unit, .. } => DurationError::UnknownUnit(unit),
        humantime::DurationError::NumberOverflow => DurationError::TooLong,
        _ => DurationError::Malformed,
    })
}

/// Whether `text` is `never`, in any case, which options that may be off accept.
pub fn is_never(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case("never")
}

/// Writes a duration so that [`parse_duration`] reads it back: `1ms`, `3days`, `1m 30s`.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("1µs"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2 mins"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1.5s "), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for zero in ["0s", "0ms", "0.0s", "0m 0s", "00 s"] {
            assert_eq!(parse_duration(zero), Ok(Duration::ZERO), "{zero}");
        }
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(
            parse_duration("30"),
            Err(DurationError::NoUnit("30".into()))
        );
        assert_eq!(
            parse_duration("5 parsecs"),
            Err(DurationError::UnknownUnit("parsecs".into()))
        );
        for bad in ["", "fast", "1.s", "1..5s", "s", ".5s", "-1s", "never"] {
            assert_eq!(parse_duration(bad), Err(DurationError::Malformed), "{bad}");
        }
        assert_eq!(
            parse_duration("99999999999999999999999s"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn formatting_reads_back() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(1_000_001),
            Duration::from_micros(50),
            Duration::from_secs(3 * 86_400),
            Duration::from_secs(5_400),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert!(is_never(" Never ") && !is_never("3d"));
    }
}
