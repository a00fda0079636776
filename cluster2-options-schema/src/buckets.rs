//! Histogram buckets as people write them: the upper bounds in seconds, comma-separated and
//! strictly increasing, as Prometheus's `le` labels read: `0.005,0.01,0.025,0.1,1`. The
//! requests longer than the last bound fall in a last bucket of their own (`+Inf`), which is
//! never written.
//!
//! One grammar for the runtime and the macro, so that a mistake is named the same way at
//! compile time and at start-up.

use std::fmt;

/// The most bounds a histogram takes: every heartbeat of every worker carries one count per
/// bucket, and no latency question needs more than a few dozen.
pub const MAX_BUCKETS: usize = 32;

/// The smallest bound: the request path measures in microseconds.
pub(crate) const MIN_BUCKET: f64 = 1e-6;

/// The largest bound, an hour: a request that takes longer is beyond any histogram's interest.
pub(crate) const MAX_BUCKET: f64 = 3600.0;

/// Why text is not a list of buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucketsError {
    /// Nothing at all.
    Empty,
    /// A part that is not a number of seconds: `5ms`, `fast`, `` (two commas).
    NotANumber(String),
    /// A bound at or below zero, below a microsecond, or above an hour.
    OutOfRange(String),
    /// A bound not above the one before it.
    NotIncreasing(String, String),
    /// More than [`MAX_BUCKETS`] bounds.
    TooMany(usize),
}

impl fmt::Display for BucketsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketsError::Empty => f.write_str("no bucket bound given"),
            BucketsError::NotANumber(part) => {
                write!(
                    f,
                    "`{part}` is not a number of seconds (write 0.005, not 5ms)"
                )
            }
            BucketsError::OutOfRange(part) => write!(
                f,
                "`{part}` is out of range: every bound is from 0.000001 (a microsecond) to 3600 \
                 (an hour)"
            ),
            BucketsError::NotIncreasing(before, part) => write!(
                f,
                "`{part}` is not above `{before}`: the bounds must be strictly increasing"
            ),
            BucketsError::TooMany(n) => {
                write!(f, "{n} bounds, at most {MAX_BUCKETS} are allowed")
            }
        }
    }
}

/// Parses bucket bounds, in seconds. Whitespace around each part is ignored.
pub fn parse_buckets(text: &str) -> Result<Vec<f64>, BucketsError> {
    if text.trim().is_empty() {
        return Err(BucketsError::Empty);
    }
    let mut bounds: Vec<f64> = Vec::new();
    let mut previous = "";
    for part in text.split(',') {
        let part = part.trim();
        // `inf`, `nan` and `1e400` parse as floats; none is a bound.
        let bound: f64 = part
            .parse()
            .ok()
            .filter(|b: &f64| b.is_finite())
            .ok_or_else(|| BucketsError::NotANumber(part.to_owned()))?;
        if !(MIN_BUCKET..=MAX_BUCKET).contains(&bound) {
            return Err(BucketsError::OutOfRange(part.to_owned()));
        }
        if bounds.last().is_some_and(|&last| bound <= last) {
            return Err(BucketsError::NotIncreasing(
                previous.to_owned(),
                part.to_owned(),
            ));
        }
        if bounds.len() == MAX_BUCKETS {
            return Err(BucketsError::TooMany(text.split(',').count()));
        }
        bounds.push(bound);
        previous = part;
    }
    Ok(bounds)
}

/// Bounds as [`parse_buckets`] reads them back.
pub fn format_buckets(bounds: &[f64]) -> String {
    let parts: Vec<String> = bounds.iter().map(f64::to_string).collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_and_write_back() {
        let bounds = parse_buckets(" 0.005, 0.01,0.5 ,1,2.5e1").unwrap();
        assert_eq!(bounds, [0.005, 0.01, 0.5, 1.0, 25.0]);
        assert_eq!(format_buckets(&bounds), "0.005,0.01,0.5,1,25");
        assert_eq!(parse_buckets(&format_buckets(&bounds)).unwrap(), bounds);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", BucketsError::Empty),
            ("5ms", BucketsError::NotANumber("5ms".into())),
            ("0.1,,0.2", BucketsError::NotANumber("".into())),
            ("inf", BucketsError::NotANumber("inf".into())),
            ("NaN", BucketsError::NotANumber("NaN".into())),
            ("0", BucketsError::OutOfRange("0".into())),
            ("-1", BucketsError::OutOfRange("-1".into())),
            ("7200", BucketsError::OutOfRange("7200".into())),
            (
                "0.1,0.1",
                BucketsError::NotIncreasing("0.1".into(), "0.1".into()),
            ),
            (
                "1,0.5",
                BucketsError::NotIncreasing("1".into(), "0.5".into()),
            ),
        ];
        for (text, error) in cases {
            assert_eq!(parse_buckets(text), Err(error), "{text:?}");
        }
        let many: Vec<String> = (1..=33).map(|i| format!("{}", i as f64 / 100.0)).collect();
        assert_eq!(
            parse_buckets(&many.join(",")),
            Err(BucketsError::TooMany(33))
        );
        assert_eq!(parse_buckets(&many[..32].join(",")).unwrap().len(), 32);
    }
}
